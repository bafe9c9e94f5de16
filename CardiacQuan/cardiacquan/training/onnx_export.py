"""`cardiacquan export-onnx`: the trained Keras models as the ONNX files the product runs.

TensorFlow/Keras is the training framework; the bundled models run on ONNX Runtime (no
framework import, about 3 s and 500 MB less per process).  The export (tf2onnx from a traced
`tf.function`, batch-norm folded, dilations kept native) writes, beside each `.keras` file:

- `seg_model_160.onnx`: the segmentation network at the fine pass's fixed 160 x 160 patch with
  an open batch (ORT optimises a fixed-size graph better: about 10 % faster on that pass),
- `seg_model.onnx`: the same network for any patch size (the coarse pass over the whole
  field of view),
- `quan_net.onnx`: the spatio-temporal network at batch 1 (an open batch fails ORT's shape
  inference); its sidecar `quan_net.json` serves both files.

Every export is checked before it is kept: the ONNX outputs must match Keras on random inputs
(max |difference| <= `TOLERANCE`), else nothing is written.

`--int8` also writes `seg_model_160.int8.onnx`: the fine pass's graph quantised statically
(QDQ, per-channel int8 weights, uint8 activations, min-max ranges calibrated on fine-pass-like
patches of ACDC training slices).  Dynamic int8 is about 4x slower on this network: not offered.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY
from cardiacquan.frameworks import import_onnx_quantization, import_onnxruntime, import_tensorflow, import_tf2onnx
from cardiacquan.io.datasets import acdc_assumed_spacing, read_acdc_h5
from cardiacquan.models import (
    QUAN_MODEL_FILE,
    SEG_MODEL_FILE,
    fine_seg_onnx_path,
    load_quan_net,
    load_seg_model,
    model_dir,
    onnx_path,
    sha256,
)
from cardiacquan.segmentation.intensity import normalize_intensity
from cardiacquan.segmentation.network import PATCH, WORK_SPACING_MM
from cardiacquan.segmentation.resample import patch_affine, sample_patch

OPSET = 17
TOLERANCE = 1e-4


def _convert(function, signature, path):
    """tf2onnx conversion of a traced function to `path` (written whole, then renamed)."""
    tf2onnx = import_tf2onnx()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET, output_path=tmp)
        return Path(tmp)
    except Exception:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_and_keep(tmp, path, reference, inputs, log):
    """Keep `tmp` as `path` only when ONNX Runtime reproduces `reference` on `inputs`."""
    ort = import_onnxruntime()
    try:
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        got = session.run(None, {session.get_inputs()[0].name: inputs})
        want = reference(inputs)
        want = [want[n] for n in names] if isinstance(want, dict) else [want]
        diff = max(float(np.max(np.abs(np.asarray(g) - np.asarray(w)))) for g, w in zip(got, want))
        if diff > TOLERANCE:
            raise CardiacQuanError(f"{path.name}: ONNX Runtime differs from Keras by {diff:.2e} (> {TOLERANCE})")
        os.chmod(tmp, 0o644)   # mkstemp made it private; a bundled model is read by everyone
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log(f"wrote {path} (max |ONNX - Keras| {diff:.1e}; SHA-256 {sha256(path)})")
    return path


def export_seg_model(keras_path, log=print):
    """seg_model.onnx (any size) and seg_model_160.onnx (the fine pass) beside `keras_path`."""
    keras_path = Path(keras_path)
    model = load_seg_model(keras_path, backend="tensorflow")
    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    out = []
    for size, path in ((None, onnx_path(keras_path)), (PATCH, fine_seg_onnx_path(keras_path))):
        signature = (tf.TensorSpec((None, size, size, 1), tf.float32, name="image"),)
        function = tf.function(lambda x: {"probabilities": model(x, training=False)}, input_signature=signature)
        tmp = _convert(function, signature, path)
        x = rng.random((2, PATCH if size else 96, PATCH if size else 112, 1), dtype=np.float32)
        out.append(_check_and_keep(tmp, path, lambda v: {"probabilities": np.asarray(model.predict_on_batch(v))},
                                   x, log))
    return out


def export_quan_net(keras_path, log=print):
    """quan_net.onnx beside `keras_path` (batch 1; the sidecar .json is shared)."""
    keras_path = Path(keras_path)
    qn = load_quan_net(keras_path, backend="tensorflow")
    tf = import_tensorflow()
    shape = (1, qn.n_frames, qn.size, qn.size, 2)
    signature = (tf.TensorSpec(shape, tf.float32, name="masks"),)
    function = tf.function(lambda x: qn.model(x, training=False), input_signature=signature)
    path = onnx_path(keras_path)
    tmp = _convert(function, signature, path)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    return _check_and_keep(tmp, path, lambda v: {k: np.asarray(a) for k, a in qn.model.predict_on_batch(v).items()},
                           x, log)


def calibration_patches(acdc_dir, n=200, seed=0):
    """Fine-pass-like patches (N, 160, 160, 1) of ACDC training slices: normalised, at the working
    pixel size, centred near the LV as the coarse pass would place them (+-10 mm)."""
    acdc_dir = Path(acdc_dir)
    names_file = acdc_dir / "train_slices.list"
    if not names_file.exists():
        raise CardiacQuanError(f"{acdc_dir} has no train_slices.list (give the ACDC folder)")
    names = names_file.read_text().split()
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(names), min(n, len(names)), replace=False):
        img, lab = read_acdc_h5(acdc_dir / "data" / f"{names[i]}.h5")
        sp = acdc_assumed_spacing(img.shape)
        rc = np.argwhere(lab == LV_CAVITY).mean(axis=0) if (lab == LV_CAVITY).any() else np.array(img.shape) / 2
        M, o = patch_affine(rc + rng.normal(0.0, 10.0 / sp, 2), (sp, sp), (PATCH, PATCH), WORK_SPACING_MM)
        out.append(sample_patch(normalize_intensity(img), M, o, (PATCH, PATCH)))
    return np.stack(out)[..., None].astype(np.float32)


def export_int8(keras_path, acdc_dir, log=print, n_patches=200):
    """seg_model_160.int8.onnx beside `keras_path`, from its fp32 fine-pass export."""
    q = import_onnx_quantization()
    source = fine_seg_onnx_path(keras_path)
    if not source.exists():
        raise CardiacQuanError(f"{source} is missing: export the fp32 models first")
    x = calibration_patches(acdc_dir, n_patches)

    class Patches(q.CalibrationDataReader):
        def __init__(self):
            self.starts = iter(range(0, len(x), 8))

        def get_next(self):
            i = next(self.starts, None)
            return None if i is None else {"image": x[i:i + 8]}

    path = fine_seg_onnx_path(keras_path, "int8")
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        prepared, quantised = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        q.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        q.quantize_static(str(prepared), str(quantised), Patches(), quant_format=q.QuantFormat.QDQ,
                          per_channel=True, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax)
        ort = import_onnxruntime()
        fp32, int8 = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (source, quantised))
        a, b = (s.run(None, {"image": x[:32]})[0] for s in (fp32, int8))
        agree = float((a.argmax(-1) == b.argmax(-1)).mean())
        os.chmod(quantised, 0o644)
        os.replace(quantised, path)
    log(f"wrote {path} ({len(x)} calibration patches; labels equal to fp32 on {100 * agree:.2f} % of the "
        f"calibration pixels; SHA-256 {sha256(path)})")
    return path


def export_bundled(folder=None, log=print):
    """Export the .keras models of `folder` (default: the bundled model folder)."""
    folder = Path(folder) if folder else model_dir()
    written = []
    for name, export in ((SEG_MODEL_FILE, export_seg_model), (QUAN_MODEL_FILE, export_quan_net)):
        path = folder / name
        if path.exists():
            result = export(path, log=log)
            written += result if isinstance(result, list) else [result]
    if not written:
        raise CardiacQuanError(f"no {SEG_MODEL_FILE} or {QUAN_MODEL_FILE} in {folder}")
    return written


def add_export_parser(subparsers):
    p = subparsers.add_parser("export-onnx", help="write the .keras models as the ONNX files the product runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help=".keras files to export (default: the bundled ones)")
    p.add_argument("--int8", action="store_true", help="also write the int8 fine-pass model (needs --acdc)")
    p.add_argument("--acdc", default=None, help="ACDC folder whose training slices calibrate the int8 model")
    p.set_defaults(func=_cli)
    return p


def _cli(args):
    if args.int8 and not args.acdc:
        raise CardiacQuanError("--int8 needs --acdc DIR (the calibration patches)")
    if not args.models:
        export_bundled()
        if args.int8:
            export_int8(model_dir() / SEG_MODEL_FILE, args.acdc)
        return 0
    for name in args.models:
        path = Path(name)
        if not path.exists():
            raise CardiacQuanError(f"not found: {path}")
        if path.suffix != ".keras":
            raise CardiacQuanError(f"{path.name}: give a .keras file")
        is_quan = path.with_suffix(".json").exists()
        (export_quan_net if is_quan else export_seg_model)(path)
        if args.int8 and not is_quan:
            export_int8(path, args.acdc)
    return 0
