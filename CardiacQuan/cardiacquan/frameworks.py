"""The one place that imports the deep-learning framework (Keras on TensorFlow), lazily.

TensorFlow costs seconds and hundreds of MB to import, so nothing imports it at module level:
code that runs a network calls :func:`import_keras` when it first needs it.  It imports Keras
once, on the TensorFlow backend, without TensorFlow's C++ start-up banner.

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
