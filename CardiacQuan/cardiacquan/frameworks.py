"""The one place that imports the heavy frameworks, lazily: ONNX Runtime (what the product runs
the bundled models on) and Keras on TensorFlow (training, export, the reference backend).

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
