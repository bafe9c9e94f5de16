"""The one place that imports the heavy and the optional frameworks, lazily: ONNX Runtime (what
the product runs the bundled models on), Keras on TensorFlow (training, export, the reference
backend), and Dask, tqdm and pyarrow (`cardiacquan batch`: the 'batch' extra).

`import tensorflow` costs about 3.7 s and 550 MB, `import onnxruntime` about 0.15 s and 55 MB;
neither is imported at module level anywhere, so a command pays only for what it runs.  Keras
is imported once, on the TensorFlow backend, without TensorFlow's C++ start-up banner.

TensorFlow prints absl/oneDNN notices straight to file descriptor 2 while it loads, before any
Python logging setting can apply. On the command line and in the Slicer module's progress
stream those lines read like errors to a clinician, so stderr is pointed at /dev/null for the
duration of the import only. oneDNN itself stays on: it makes CPU inference about 1.5x faster.
"""
from __future__ import annotations

import os
import sys

from cardiacquan import CardiacQuanError


def import_keras():
    """The keras module (imported on first call; TensorFlow backend unless KERAS_BACKEND says otherwise)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in sys.modules:
        return sys.modules["keras"]
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # lazy on purpose: TensorFlow is heavy (see the module docstring)
        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401  (its native libraries print when first loaded)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras


def import_tensorflow():
    """The tensorflow module (training and export only; imports Keras first, quietly)."""
    import_keras()
    import tensorflow  # lazy on purpose: see the module docstring
    return tensorflow


def import_tf2onnx():
    """The tf2onnx converter (export only; needs TensorFlow)."""
    import_tensorflow()
    import tf2onnx  # lazy on purpose: a training-time dependency
    return tf2onnx


def import_onnxruntime():
    """The onnxruntime module (the product's inference runtime)."""
    import onnxruntime  # lazy on purpose: only code that runs a network pays for it
    onnxruntime.set_default_logger_severity(3)   # its optimiser notes are not for a clinician
    return onnxruntime


def import_onnx_quantization():
    """onnxruntime.quantization (building the int8 models)."""
    import onnxruntime.quantization  # lazy on purpose: export-time only
    return onnxruntime.quantization


#: what `cardiacquan batch` needs beyond the runtime (the 'batch' extra, requirements-batch.txt)
BATCH_INSTALL_HINT = "pip install 'cardiacquan[batch]' (or -r requirements-batch.txt)"


def import_distributed():
    """dask.distributed (`cardiacquan batch` only: Client, LocalCluster, as_completed)."""
    try:
        import dask  # lazy on purpose: an optional dependency of the batch command only
        import dask.system
        import distributed
    except ImportError as e:
        raise CardiacQuanError(f"cardiacquan batch needs Dask ({e.name or e} is not installed): "
                               f"{BATCH_INSTALL_HINT}") from None
    return dask, distributed


def import_tqdm():
    """tqdm's progress bar, or None where it is not installed (batch progress falls back to lines)."""
    try:
        import tqdm  # lazy on purpose: optional
    except ImportError:
        return None
    return tqdm.tqdm


def import_pyarrow():
    """(pyarrow, pyarrow.parquet), or None where pyarrow is not installed (no cohort.parquet then)."""
    try:
        import pyarrow  # lazy on purpose: optional
        import pyarrow.parquet
    except ImportError:
        return None
    return pyarrow, pyarrow.parquet
