"""The one place that finds and loads the bundled weights.

Every command, the pipeline, training and evaluation ask this module, so `quantify`,
`evaluate` and the Slicer module always use the same files: ``$CARDIACQUAN_MODEL_DIR`` when
it is set, else ``Resources/Models`` of the module folder (beside this package, in the
repository and in a Slicer installation alike).  Loaded models are cached per file, so a
process that quantifies many studies loads each model once.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.frameworks import import_keras
from cardiacquan.quannet.encoding import FILL_RADIUS_PX, SIZE
from cardiacquan.quannet.network import QuanNet, custom_layers, sidecar_path

MODEL_DIR_VARIABLE = "CARDIACQUAN_MODEL_DIR"
SEG_MODEL_FILE = "seg_model.keras"
QUAN_MODEL_FILE = "quan_net.keras"
BUNDLED_MODEL_FILES = (SEG_MODEL_FILE, QUAN_MODEL_FILE)
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


def seg_model_path() -> Path:
    return model_dir() / SEG_MODEL_FILE


def quan_net_path() -> Path:
    return model_dir() / QUAN_MODEL_FILE


def load_seg_model(path=None):
    """The segmentation network (a Keras model), cached per file; the bundled one when path is None."""
    path = Path(path) if path else seg_model_path()
    if not path.exists():
        raise CardiacQuanError(f"segmentation model not found at {path} (set {MODEL_DIR_VARIABLE})")
    key = ("seg", str(path.resolve()))
    if key not in _CACHE:
        keras = import_keras()
        try:
            model = keras.saving.load_model(path, compile=False)
        except (ValueError, OSError, TypeError) as e:
            raise CardiacQuanError(f"{path}: not a Keras model file ({str(e).splitlines()[0][:200]})")
        if len(model.inputs) != 1 or model.output_shape[-1] != 4:
            raise CardiacQuanError(f"{path}: not a CardiacQuan segmentation model (4 output classes)")
        _CACHE[key] = model
    return _CACHE[key]


def load_quan_net(path=None) -> QuanNet:
    """A quantification network with its sidecar (read afresh: training reloads what it wrote)."""
    path = Path(path) if path else quan_net_path()
    if not path.exists():
        raise CardiacQuanError(f"quantification network weights not found: {path} "
                               f"(train them with `cardiacquan train-quan`)")
    keras = import_keras()
    custom_layers()
    sc = sidecar_path(path)
    if not sc.exists():   # without it the outputs would be unscaled: mean 0, std 1
        raise CardiacQuanError(f"{path} has no {sc.name} beside it (index normalisation, fusion choice); "
                               "keep the two files together")
    try:
        model = keras.saving.load_model(str(path), compile=False)
        meta = json.loads(sc.read_text())
    except (ValueError, OSError, TypeError) as e:
        raise CardiacQuanError(f"{path}: not a CardiacQuan quantification network ({str(e).splitlines()[0][:200]})")
    if len(model.inputs) != 1 or len(model.input_shape) != 5 or len(model.outputs) != 2:
        raise CardiacQuanError(f"{path}: not a quantification network (input (T, H, W, 2), two outputs)")
    return QuanNet(model=model, norm_mean=np.asarray(meta.get("norm_mean", np.zeros(11)), float),
                   norm_std=np.asarray(meta.get("norm_std", np.ones(11)), float),
                   n_frames=int(meta.get("n_frames", model.input_shape[1])), size=int(meta.get("size", SIZE)),
                   fill_radius_px=float(meta.get("fill_radius_px", FILL_RADIUS_PX)),
                   meta={k: v for k, v in meta.items() if k not in _QUAN_SIDECAR_KEYS})


def bundled_quan_net():
    """The bundled QuanNet (cached), or None when no weights are bundled."""
    path = quan_net_path()
    key = ("quan", str(path))
    if key not in _CACHE:
        if not path.exists():
            return None
        _CACHE[key] = load_quan_net(path)
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
