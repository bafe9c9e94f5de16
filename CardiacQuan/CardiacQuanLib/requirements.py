"""Which Python packages the engine needs in Slicer's Python, and installing the missing ones safely.

The engine runs in Slicer's own Python (PythonSlicer).  What it imports on the module's path
(``quantify`` on an exchange .npz, no figures but the bull's-eye) is numpy, scipy, SimpleITK and
pydicom, which Slicer 5.10 and 5.12 ship, ONNX Runtime for the network and matplotlib for the
bull's-eye.  ``Resources/requirements.txt``
lists the installable ones (one place; CMake installs it next to the module); numpy and SimpleITK
are checked but never installed (``SHIPPED_WITH_SLICER``).

Installing never upgrades or replaces what Slicer's Python already has (numpy, SimpleITK, scipy,
pydicom, ... and other extensions' packages): every installed distribution is pinned in a pip
constraints file for the install (``constraintsFile``), the way ``slicer.packaging`` takes
constraints.  Nothing is installed when the module loads; the widget asks first, console users
call ``installRequirements`` themselves:

- Slicer 5.12: ``slicer.packaging.pip_ensure(load_requirements(...), requester="CardiacQuan")``
  (its own question, progress dialog, restart advice);
- Slicer 5.10 (no ``slicer.packaging``): ``slicer.util.pip_install`` with pip's line-per-step
  progress (``--progress-bar raw``), so Slicer's log reader keeps the GUI drawing during downloads.

Afterwards ``importlib.invalidate_caches()`` lets this Python see the new packages.
"""
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import tempfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

import slicer

from CardiacQuanLib.application import inSlicerApplication
from CardiacQuanLib.errors import CardiacQuanRunError

#: the module's runtime requirements (installed by CMake as <module>/Resources/requirements.txt)
REQUIREMENTS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "Resources", "requirements.txt")
#: distributions only the network needs (re-quantifying from masks runs without them)
NETWORK_ONLY = frozenset({"onnxruntime"})
#: import name -> (distribution, minimum version): come with Slicer, checked, never installed
SHIPPED_WITH_SLICER = {"numpy": ("numpy", "1.26"), "SimpleITK": ("SimpleITK", "2.3")}
#: who asks, in Slicer's dialogs
REQUESTER = "CardiacQuan"


def loadRequirements(path=None):
    """The requirements of a requirements file, by default the module's (slicer.packaging.load_requirements
    where it exists)."""
    path = path or REQUIREMENTS_FILE
    packaging = _slicerPackaging()
    if packaging is not None:
        return packaging.load_requirements(path)
    reqs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                reqs.append(Requirement(line))
    return reqs


def requirementsFor(network=True, path=None):
    """The requirements of the geometry path, plus the network's when network is True."""
    return [r for r in loadRequirements(path)
            if network or canonicalize_name(r.name) not in NETWORK_ONLY]


def missingRequirements(network=True, path=None):
    """Engine packages absent or not matching their version in this Python: list of dicts
    (name, pipSpec, text); pipSpec None for what comes with Slicer (a newer Slicer is needed)."""
    missing = []
    for importName, (dist, minimum) in SHIPPED_WITH_SLICER.items():
        if importlib.util.find_spec(importName) is None:
            missing.append(dict(name=dist, pipSpec=None, text=f"{dist} (comes with Slicer; not found)"))
            continue
        version = installedVersion(dist)
        if version is not None and versionTuple(version) < versionTuple(minimum):
            missing.append(dict(name=dist, pipSpec=None, text=f"{dist} {version} (needs >= {minimum})"))
    for req in requirementsFor(network, path):
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = installedVersion(req.name)
        if version is None:
            missing.append(dict(name=req.name, pipSpec=str(req), text=f"{req.name} (not installed)"))
        elif req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(dict(name=req.name, pipSpec=str(req), text=f"{req.name} {version} (needs {req.specifier})"))
    return missing


def installedVersion(distribution):
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def constraintsFile(folder=None, exclude=()):
    """A pip constraints file pinning every distribution this Python has (name==version), so an
    install adds packages and never upgrades or replaces one: what Slicer ships (numpy, SimpleITK,
    scipy, pydicom, ...) nor what another extension installed.  `exclude`: the distributions being
    installed (an old copy of one is upgraded).  Returns its path."""
    skip = {canonicalize_name(n) for n in exclude}
    pins = {}
    importlib.invalidate_caches()
    for dist in importlib.metadata.distributions():
        name, version = dist.metadata["Name"], dist.version
        if not name or not version or canonicalize_name(name) in skip:
            continue
        try:
            Version(version)
        except InvalidVersion:
            continue
        pins.setdefault(canonicalize_name(name), f"{name}=={version}")
    fd, path = tempfile.mkstemp(prefix="CardiacQuan-constraints-", suffix=".txt", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# What this Python already has: never upgraded or replaced by CardiacQuan's install\n")
        f.write("\n".join(pins[k] for k in sorted(pins)) + "\n")
    return path


def installRequirements(missing=None, network=True, askFirst=True):
    """Install the missing engine packages into Slicer's Python (inside Slicer only).

    Returns True when the installer ran, False when the user declined.  Raises CardiacQuanRunError
    outside Slicer (with the pip command to run) and when pip fails.
    """
    if missing is None:
        missing = missingRequirements(network=network)
    specs = [m["pipSpec"] for m in missing if m["pipSpec"]]
    if not specs:
        return True
    if not inSlicerApplication():
        raise CardiacQuanRunError("install the engine requirements with pip: " + " ".join(specs))
    constraints = constraintsFile(exclude=[Requirement(s).name for s in specs])
    try:
        packaging = _slicerPackaging()
        if packaging is not None and hasattr(packaging, "pip_ensure"):   # Slicer 5.12
            try:
                packaging.pip_ensure([Requirement(s) for s in specs], constraints=constraints, requester=REQUESTER,
                                     prompt_install=askFirst)
            except RuntimeError as e:
                if "declined" in str(e).lower():
                    return False
                raise
        else:                                                            # Slicer 5.10
            if askFirst and not slicer.util.confirmOkCancelDisplay(
                    "CardiacQuan needs these Python packages in Slicer's Python:\n  " + "\n  ".join(specs) +
                    "\n\nInstall them now? (Nothing Slicer already has is upgraded or replaced.)",
                    f"{REQUESTER} - Install Python Packages"):
                return False
            slicer.util.pip_install(["--progress-bar", "raw", "-c", constraints, *specs])
    except CardiacQuanRunError:
        raise
    except Exception as e:  # pip failed (CalledProcessError) or the installer did
        logging.exception("CardiacQuan: installing Python packages failed")
        raise CardiacQuanRunError(f"installing {' '.join(specs)} failed: {e}".splitlines()[0]) from None
    finally:
        os.remove(constraints)
        importlib.invalidate_caches()
    return True


def _slicerPackaging():
    """slicer.packaging (Slicer 5.12 and later), or None (Slicer 5.10)."""
    try:
        return importlib.import_module("slicer.packaging")
    except ImportError:
        return None


def versionTuple(v):
    """(2, 16, 1) for "2.16.1rc0": the leading numeric parts of a version string."""
    parts = []
    for p in re.split(r"[.+-]", str(v)):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts) or (0,)

