"""The one place that finds and loads the bundled weights.

Every command, the pipeline, training and evaluation ask this module, so `quantify`,
`evaluate` and the Slicer module always use the same files: ``$CARDIACQUAN_MODEL_DIR`` when
it is set, else ``Resources/Models`` of the module folder (beside this package, in the
repository and in a Slicer installation alike).  Loaded models are cached per file, so a
process that quantifies many studies loads each model once.

Two backends run the same weights: ``onnxruntime`` (the default: the `.onnx` files that
`cardiacquan export-onnx` writes beside the `.keras` ones; no TensorFlow in the process) and
``tensorflow`` (the `.keras` files: the training framework and the reference the ONNX files
are tested against).  ``$CARDIACQUAN_BACKEND`` or the commands' ``--backend`` choose.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.contract import SAMPLE_CINE
from cardiacquan.frameworks import import_keras, import_onnxruntime
from cardiacquan.quannet.encoding import FILL_RADIUS_PX, SIZE
from cardiacquan.quannet.network import QuanNet, custom_layers, sidecar_path

MODEL_DIR_VARIABLE = "CARDIACQUAN_MODEL_DIR"
BACKEND_VARIABLE = "CARDIACQUAN_BACKEND"
#: ONNX Runtime's intra-op threads per session (unset: ONNX Runtime's default, one per core)
THREADS_VARIABLE = "CARDIACQUAN_THREADS"
BACKENDS = ("onnxruntime", "tensorflow")
#: precision of the segmentation network's fine pass on ONNX Runtime: fp32 (the default) or int8
#: (static, per-channel, calibrated on ACDC training patches; figures in seg_model.md)
PRECISION_VARIABLE = "CARDIACQUAN_PRECISION"
PRECISIONS = ("fp32", "int8")
INT8_SUFFIX = ".int8"
SEG_MODEL_FILE = "seg_model.keras"
QUAN_MODEL_FILE = "quan_net.keras"
#: the fine pass's fixed-size export of the segmentation network ends with this
FINE_SUFFIX = "_160"
BUNDLED_MODEL_FILES = (SEG_MODEL_FILE, "seg_model.onnx", f"seg_model{FINE_SUFFIX}.onnx",
                       f"seg_model{FINE_SUFFIX}.int8.onnx", QUAN_MODEL_FILE, "quan_net.onnx")
#: sidecar keys that describe the network itself; the others go to QuanNet.meta
_QUAN_SIDECAR_KEYS = {"format", "index_names", "index_power", "norm_mean", "norm_std", "n_frames", "size",
                      "fill_radius_px"}

_CACHE = {}


def model_dir() -> Path:
    """Folder of the bundled weights: $CARDIACQUAN_MODEL_DIR, else <module folder>/Resources/Models."""
    env = os.environ.get(MODEL_DIR_VARIABLE)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "Resources" / "Models"


def sample_cine_path() -> Path:
    """The sample cine shipped with the module: <module folder>/Resources/<contract.SAMPLE_CINE>."""
    return Path(__file__).resolve().parent.parent / "Resources" / Path(*SAMPLE_CINE)


def seg_model_path() -> Path:
    return model_dir() / SEG_MODEL_FILE


def quan_net_path() -> Path:
    return model_dir() / QUAN_MODEL_FILE


def default_backend() -> str:
    """$CARDIACQUAN_BACKEND when set, else onnxruntime."""
    backend = os.environ.get(BACKEND_VARIABLE) or BACKENDS[0]
    if backend not in BACKENDS:
        raise CardiacQuanError(f"{BACKEND_VARIABLE}={backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


def onnx_path(keras_path) -> Path:
    """The ONNX export beside a .keras file."""
    return Path(keras_path).with_suffix(".onnx")


def fine_seg_onnx_path(keras_path, precision="fp32") -> Path:
    """The fixed-size (fine pass) ONNX export beside a segmentation .keras file (or its int8 model)."""
    p = Path(keras_path)
    return p.with_name(p.stem + FINE_SUFFIX + (INT8_SUFFIX if precision == "int8" else "") + ".onnx")


def default_precision() -> str:
    """$CARDIACQUAN_PRECISION when set, else fp32."""
    precision = os.environ.get(PRECISION_VARIABLE) or PRECISIONS[0]
    if precision not in PRECISIONS:
        raise CardiacQuanError(f"{PRECISION_VARIABLE}={precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


class OnnxModel:
    """An ONNX Runtime session behind the part of the Keras model API the engine calls.

    `predict_on_batch(x)` returns the single output as an array, or a dict by output name.
    A graph exported at batch 1 (the quantification network) is run one sample at a time."""

    def __init__(self, path):
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = False
        threads = os.environ.get(THREADS_VARIABLE)
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:   # onnxruntime raises its own exception types for a bad file
            raise CardiacQuanError(f"{path}: not an ONNX model ({str(e).splitlines()[0][:200]})") from None
        self.path = Path(path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def predict_on_batch(self, x):
        x = np.asarray(x, np.float32)
        if self.input_shape[0] == 1 and len(x) != 1:
            parts = [self.session.run(None, {self.input_name: x[i:i + 1]}) for i in range(len(x))]
            outs = [np.concatenate([p[k] for p in parts]) for k in range(len(self.output_names))]
        else:
            outs = self.session.run(None, {self.input_name: x})
        return outs[0] if len(outs) == 1 else dict(zip(self.output_names, outs))


class OnnxSegModel:
    """The segmentation network on ONNX Runtime: the fixed-size graph for the fine pass's
    patches (faster), the any-size graph for everything else (the coarse pass)."""

    def __init__(self, any_size, fine=None):
        self.any_size, self.fine = any_size, fine
        self.input_shape = any_size.input_shape
        self.output_shape = (None, None, None, 4)

    def predict_on_batch(self, x):
        x = np.asarray(x, np.float32)
        if self.fine is not None and tuple(x.shape[1:3]) == tuple(self.fine.input_shape[1:3]):
            return self.fine.predict_on_batch(x)
        return self.any_size.predict_on_batch(x)


def _keras_seg_model(path):
    keras = import_keras()
    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, OSError, TypeError) as e:
        raise CardiacQuanError(f"{path}: not a Keras model file ({str(e).splitlines()[0][:200]})")
    if len(model.inputs) != 1 or model.output_shape[-1] != 4:
        raise CardiacQuanError(f"{path}: not a CardiacQuan segmentation model (4 output classes)")
    return model


def _onnx_seg_model(path, precision):
    fine = fine_seg_onnx_path(path, precision)
    if precision == "int8" and not fine.exists():
        raise CardiacQuanError(f"no int8 model beside {path.name} ({fine.name}): run "
                               "`cardiacquan export-onnx --int8 --acdc DIR` or use fp32")
    model = OnnxSegModel(OnnxModel(path), OnnxModel(fine) if fine.exists() else None)
    if len(model.any_size.output_names) != 1 or model.any_size.input_shape[-1] != 1:
        raise CardiacQuanError(f"{path}: not a CardiacQuan segmentation model (one image in, probabilities out)")
    return model


def _backend_file(path, backend, bundled=False):
    """(file to load, backend) for a model path: a .onnx file runs on ONNX Runtime; any other file
    a user names runs on TensorFlow unless a backend is asked for; the bundled models (named by
    their .keras file) run on the default backend, ONNX Runtime on their .onnx export."""
    path = Path(path)
    if path.suffix == ".onnx":
        return path, "onnxruntime"
    backend = backend or (default_backend() if bundled else "tensorflow")
    if backend not in BACKENDS:
        raise CardiacQuanError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime" and path.suffix == ".keras":
        if not onnx_path(path).exists() and path.exists():
            raise CardiacQuanError(f"{path.name} has no ONNX export beside it ({onnx_path(path).name}): run "
                                   "`cardiacquan export-onnx` or use --backend tensorflow")
        return onnx_path(path), backend
    return path, backend


def load_seg_model(path=None, backend=None, precision=None):
    """The segmentation network, cached per file: the bundled one when path is None.  precision
    (fp32 or int8) chooses the fine pass's graph on ONNX Runtime."""
    file, backend = _backend_file(Path(path) if path else seg_model_path(), backend, bundled=path is None)
    if not file.exists():
        raise CardiacQuanError(f"segmentation model not found at {file} (set {MODEL_DIR_VARIABLE})")
    precision = precision or default_precision()
    if precision not in PRECISIONS:
        raise CardiacQuanError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if backend != "onnxruntime" and precision != "fp32":
        raise CardiacQuanError(f"{precision} runs on ONNX Runtime only (--backend onnxruntime)")
    key = ("seg", str(file.resolve()), precision)
    if key not in _CACHE:
        _CACHE[key] = _onnx_seg_model(file, precision) if backend == "onnxruntime" else _keras_seg_model(file)
    return _CACHE[key]


def load_quan_net(path=None, backend=None) -> QuanNet:
    """A quantification network with its sidecar (read afresh: training reloads what it wrote)."""
    file, backend = _backend_file(Path(path) if path else quan_net_path(), backend, bundled=path is None)
    path = Path(path) if path else quan_net_path()
    if not file.exists():
        raise CardiacQuanError(f"quantification network weights not found: {file} "
                               f"(train them with `cardiacquan train-quan`)")
    sc = sidecar_path(path)
    if not sc.exists():   # without it the outputs would be unscaled: mean 0, std 1
        raise CardiacQuanError(f"{path} has no {sc.name} beside it (index normalisation, fusion choice); "
                               "keep the two files together")
    try:
        meta = json.loads(sc.read_text())
        if backend == "onnxruntime":
            model = OnnxModel(file)
            n_outputs = len(model.output_names)
        else:
            keras = import_keras()
            custom_layers()
            model = keras.saving.load_model(str(file), compile=False)
            n_outputs = len(model.outputs)
    except (ValueError, OSError, TypeError) as e:
        raise CardiacQuanError(f"{path}: not a CardiacQuan quantification network ({str(e).splitlines()[0][:200]})")
    if len(model.input_shape) != 5 or n_outputs != 2:
        raise CardiacQuanError(f"{path}: not a quantification network (input (T, H, W, 2), two outputs)")
    return QuanNet(model=model, norm_mean=np.asarray(meta.get("norm_mean", np.zeros(11)), float),
                   norm_std=np.asarray(meta.get("norm_std", np.ones(11)), float),
                   n_frames=int(meta.get("n_frames", model.input_shape[1])), size=int(meta.get("size", SIZE)),
                   fill_radius_px=float(meta.get("fill_radius_px", FILL_RADIUS_PX)),
                   meta={k: v for k, v in meta.items() if k not in _QUAN_SIDECAR_KEYS})


def bundled_quan_net(backend=None):
    """The bundled QuanNet (cached), or None when no weights are bundled."""
    path = quan_net_path()
    file, backend = _backend_file(path, backend, bundled=True)   # a .keras without its export: error
    key = ("quan", str(file))
    if key not in _CACHE:
        if not file.exists():
            return None
        _CACHE[key] = load_quan_net(path, backend)
    return _CACHE[key]


def forget_loaded_models():
    """Drop the cached models (after the model folder changed: a test, a long session)."""
    _CACHE.clear()


def as_quan_net(model) -> QuanNet:
    """A QuanNet from a QuanNet, a path, None (the bundled weights) or a bare Keras model (no normalisation)."""
    if isinstance(model, QuanNet):
        return model
    if model is None:
        return bundled_quan_net() or load_quan_net()   # the latter says which file is missing
    if isinstance(model, (str, Path)):
        return load_quan_net(model)
    return QuanNet(model=model, n_frames=int(model.input_shape[1]), size=int(model.input_shape[2]))


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_info() -> dict:
    """What summary.json records of the bundled weights: SHA-256, size and model card per file."""
    out = {}
    for name in BUNDLED_MODEL_FILES:
        p = model_dir() / name
        if p.exists():
            out[name] = {"sha256": sha256(p), "bytes": p.stat().st_size}
            card = p.with_suffix(".md")
            if card.exists():
                out[name]["model_card"] = str(card)
    return out
