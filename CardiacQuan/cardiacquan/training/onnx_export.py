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
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.frameworks import import_onnxruntime, import_tensorflow, import_tf2onnx
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
from cardiacquan.segmentation.network import PATCH

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
    p.set_defaults(func=_cli)
    return p


def _cli(args):
    if not args.models:
        export_bundled()
        return 0
    for name in args.models:
        path = Path(name)
        if not path.exists():
            raise CardiacQuanError(f"not found: {path}")
        if path.suffix != ".keras":
            raise CardiacQuanError(f"{path.name}: give a .keras file")
        (export_quan_net if path.with_suffix(".json").exists() else export_seg_model)(path)
    return 0
