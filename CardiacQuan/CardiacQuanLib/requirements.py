"""Which Python requirements of the engine are missing in Slicer's Python, and installing them.

The engine runs in Slicer's own Python (PythonSlicer), which does not ship scipy, ONNX Runtime
and the rest (TensorFlow is the training framework, never needed here).  Nothing is installed when the module loads; the widget asks the user first, console
users call ``installRequirements`` themselves.  numpy comes with Slicer and is never reinstalled.
"""
import importlib.metadata
import importlib.util
import re

import slicer

from CardiacQuanLib.application import inSlicerApplication
from CardiacQuanLib.errors import CardiacQuanRunError

# import name -> (distribution, minimum version, pip spec); pip spec None: comes with Slicer.
ENGINE_REQUIREMENTS = {
    "numpy": ("numpy", "1.26", None),
    "scipy": ("scipy", "1.11", "scipy>=1.11"),
    "SimpleITK": ("SimpleITK", "2.3", "SimpleITK>=2.3"),
    "skimage": ("scikit-image", "0.22", "scikit-image>=0.22"),
    "pydicom": ("pydicom", "2.4", "pydicom>=2.4"),
    "nrrd": ("pynrrd", "1.0", "pynrrd>=1.0"),
    "matplotlib": ("matplotlib", "3.7", "matplotlib>=3.7"),
    "highdicom": ("highdicom", "0.28", "highdicom>=0.28"),   # DICOM Segmentation output
}
#: only for the network (re-quantifying from masks does not need them)
NETWORK_REQUIREMENTS = {
    "onnxruntime": ("onnxruntime", "1.17", "onnxruntime>=1.17"),
}


def missingRequirements(network=True):
    """Engine packages absent or too old in this Python: list of dicts (name, pipSpec, text)."""
    reqs = dict(ENGINE_REQUIREMENTS)
    if network:
        reqs.update(NETWORK_REQUIREMENTS)
    missing = []
    for importName, (dist, minimum, pipSpec) in reqs.items():
        if importlib.util.find_spec(importName) is None:
            missing.append(dict(name=dist, pipSpec=pipSpec, text=f"{dist} (not installed)"))
            continue
        version = None
        for candidate in (dist, importName):   # the distribution's name, else the import name's
            try:
                version = importlib.metadata.version(candidate)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        if version is not None and versionTuple(version) < versionTuple(minimum):
            missing.append(dict(name=dist, pipSpec=pipSpec, text=f"{dist} {version} (needs >= {minimum})"))
    return missing


def installRequirements(missing=None, network=True):
    """Install the missing engine packages with Slicer's pip helper (inside Slicer only)."""
    if missing is None:
        missing = missingRequirements(network=network)
    specs = [m["pipSpec"] for m in missing if m["pipSpec"]]
    if not specs:
        return
    if not inSlicerApplication():
        raise CardiacQuanRunError("install the engine requirements with pip: " + " ".join(specs))
    slicer.util.pip_install(" ".join(specs))


def versionTuple(v):
    """(2, 16, 1) for "2.16.1rc0": the leading numeric parts of a version string."""
    parts = []
    for p in re.split(r"[.+-]", str(v)):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts) or (0,)
