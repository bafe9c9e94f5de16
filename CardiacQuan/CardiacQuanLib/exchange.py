"""File exchange between a host application (the 3D Slicer module) and the engine process.

numpy only, on purpose: the Slicer module imports this file inside Slicer's own Python, where
the engine's other dependencies (TensorFlow, pynrrd, h5py...) may not be installed yet.

Files
-----
- cine ``.npz`` (host -> engine), written by :func:`save_cine_npz`:
  ``image`` (T, Z, R, C) float32, ``spacing`` (2,) = (row_mm, col_mm), ``origins`` (Z, 3) LPS mm,
  ``direction`` (3, 3) (columns: LPS direction of increasing column, of increasing row, slice
  normal; absent when the orientation is unknown), ``times_ms`` (T,), ``times_known`` bool,
  optional ``slice_thickness`` and ``source``.  Same conventions as ``CardiacQuanLib.cine.Cine``;
  ``Cine(**load_cine_npz(path))`` builds one.
- results ``.npz`` (engine -> host, and host -> engine for ``--labels``), written by
  :func:`save_results_npz`: ``labels`` (T, Z, R, C) uint8 (0 background, 1 RV cavity,
  2 LV myocardium, 3 LV cavity) and ``sectors`` (T, Z, R, C) uint8 (0 background, k = 1..6 the
  RWTk sector of a myocardium pixel); ``sectors`` may be absent in a labels-only file.

Progress protocol (engine stderr, one message per line)
-------------------------------------------------------
- ``CQ-PROGRESS <done> <total> <message>``: :func:`progress_line` / :func:`parse_progress`.
- ``CQ-ERROR <one-line message>``: the last stderr line of a failed run (non-zero exit),
  :func:`error_line` / :func:`parse_error`.
- Any other line is log text.
"""
from __future__ import annotations

import os

import numpy as np

PROGRESS_PREFIX = "CQ-PROGRESS"
ERROR_PREFIX = "CQ-ERROR"

CINE_KEYS = ("image", "spacing", "origins", "direction", "times_ms", "times_known",
             "slice_thickness", "source")


class ExchangeError(ValueError):
    """A malformed exchange file; the message says what is wrong."""


# --------------------------------------------------------------------------------------
# cine
# --------------------------------------------------------------------------------------
def save_cine_npz(path, image, spacing, origins, direction=None, times_ms=None, *,
                  times_known=None, slice_thickness=None, source=""):
    """Write a cine for the engine. Returns ``path``.

    image (T, Z, R, C); spacing (row_mm, col_mm); origins (Z, 3) LPS position of pixel (0, 0)
    of each slice; direction 3x3 (columns: column direction, row direction, slice normal, LPS)
    or None; times_ms (T,) or None (then evenly spaced placeholders, ``times_known`` False).
    The file is written uncompressed (it is a short-lived temporary file, speed matters).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 4:
        raise ExchangeError(f"cine image must have 4 axes (T, Z, R, C), got shape {image.shape}")
    T, Z = image.shape[:2]
    spacing = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if spacing.shape != (2,):
        raise ExchangeError(f"spacing must be (row_mm, col_mm), got {spacing.tolist()}")
    origins = np.asarray(origins, dtype=np.float64)
    if origins.shape != (Z, 3):
        raise ExchangeError(f"origins must have shape ({Z}, 3), got {origins.shape}")
    arrays = dict(image=image, spacing=spacing, origins=origins)
    if direction is not None:
        direction = np.asarray(direction, dtype=np.float64)
        if direction.shape != (3, 3):
            raise ExchangeError(f"direction must be 3x3, got {direction.shape}")
        arrays["direction"] = direction
    if times_ms is None:
        arrays["times_ms"] = np.arange(T, dtype=np.float64)
        times_known = False if times_known is None else bool(times_known)
    else:
        times_ms = np.asarray(times_ms, dtype=np.float64).reshape(-1)
        if times_ms.shape != (T,):
            raise ExchangeError(f"times_ms must have {T} values, got {times_ms.shape[0]}")
        arrays["times_ms"] = times_ms
        times_known = True if times_known is None else bool(times_known)
    arrays["times_known"] = np.asarray(times_known)
    if slice_thickness is not None:
        arrays["slice_thickness"] = np.asarray(float(slice_thickness))
    arrays["source"] = np.asarray(str(source or ""))
    _savez(path, arrays, compressed=False)
    return path


def load_cine_npz(path) -> dict:
    """Read a file written by :func:`save_cine_npz`.

    Returns a dict with the keys of ``CINE_KEYS`` (``direction`` and ``slice_thickness`` may be
    None), ready for ``Cine(**d)``.
    """
    with _open(path) as z:
        for key in ("image", "spacing", "origins"):
            if key not in z.files:
                raise ExchangeError(f"{os.path.basename(str(path))}: not a cine exchange file (no '{key}')")
        image = np.asarray(z["image"], dtype=np.float32)
        if image.ndim != 4:
            raise ExchangeError(f"cine image must have 4 axes (T, Z, R, C), got shape {image.shape}")
        T, Z = image.shape[:2]
        out = dict(
            image=image,
            spacing=tuple(float(v) for v in np.asarray(z["spacing"]).reshape(-1)),
            origins=np.asarray(z["origins"], dtype=np.float64).reshape(Z, 3),
            direction=np.asarray(z["direction"], dtype=np.float64).reshape(3, 3) if "direction" in z.files else None,
            times_ms=(np.asarray(z["times_ms"], dtype=np.float64).reshape(T) if "times_ms" in z.files
                      else np.arange(T, dtype=np.float64)),
            times_known=bool(z["times_known"]) if "times_known" in z.files else ("times_ms" in z.files),
            slice_thickness=float(z["slice_thickness"]) if "slice_thickness" in z.files else None,
            source=str(z["source"]) if "source" in z.files else "",
        )
    return out


# --------------------------------------------------------------------------------------
# results / labels
# --------------------------------------------------------------------------------------
def checked_labels(labels):
    """(T, Z, R, C) uint8 labels 0..3, or ExchangeError saying what is wrong."""
    labels = _as_label_array(labels, "labels")
    if labels.size and labels.max() > 3:
        raise ExchangeError(f"label values must be 0..3, found {int(labels.max())}")
    return labels


def save_results_npz(path, labels, sectors=None):
    """Write label maps (T, Z, R, C) and, optionally, sector maps of the same shape."""
    labels = checked_labels(labels)
    arrays = dict(labels=labels)
    if sectors is not None:
        sectors = _as_label_array(sectors, "sectors")
        if sectors.shape != labels.shape:
            raise ExchangeError(f"sectors shape {sectors.shape} differs from labels shape {labels.shape}")
        if sectors.size and int(sectors.max()) > 6:
            raise ExchangeError(f"sector values must be 0..6, found {int(sectors.max())}")
        arrays["sectors"] = sectors
    _savez(path, arrays, compressed=True)
    return path


def load_results_npz(path) -> dict:
    """Read a results (or labels-only) file: dict(labels=uint8 (T,Z,R,C), sectors=uint8 or None)."""
    with _open(path) as z:
        if "labels" not in z.files:
            raise ExchangeError(f"{os.path.basename(str(path))}: no 'labels' array")
        labels = _as_label_array(z["labels"], "labels")
        sectors = _as_label_array(z["sectors"], "sectors") if "sectors" in z.files else None
    if sectors is not None and sectors.shape != labels.shape:
        raise ExchangeError(f"sectors shape {sectors.shape} differs from labels shape {labels.shape}")
    return dict(labels=labels, sectors=sectors)


# --------------------------------------------------------------------------------------
# progress protocol
# --------------------------------------------------------------------------------------
def progress_line(done, total, message="") -> str:
    """The stderr line reporting progress (without newline)."""
    message = " ".join(str(message).split())
    return f"{PROGRESS_PREFIX} {int(done)} {int(total)} {message}".rstrip()


def error_line(message) -> str:
    """The last stderr line of a failed run (without newline); the message is made one line."""
    return f"{ERROR_PREFIX} {' '.join(str(message).split())}"


def parse_progress(line):
    """(done, total, message) for a progress line, else None."""
    parts = line.strip().split(None, 3)
    if len(parts) < 3 or parts[0] != PROGRESS_PREFIX:
        return None
    try:
        done, total = int(parts[1]), int(parts[2])
    except ValueError:
        return None
    return done, total, parts[3] if len(parts) > 3 else ""


def parse_error(line):
    """The message of an error line, else None."""
    s = line.strip()
    if s == ERROR_PREFIX:
        return ""
    if s.startswith(ERROR_PREFIX + " "):
        return s[len(ERROR_PREFIX) + 1:].strip()
    return None


# --------------------------------------------------------------------------------------
def _as_label_array(a, name):
    a = np.asarray(a)
    if a.ndim != 4:
        raise ExchangeError(f"{name} must have 4 axes (T, Z, R, C), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer) and not np.issubdtype(a.dtype, np.bool_):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ExchangeError(f"{name} must hold integer label values")
    if a.size and int(a.min()) < 0:
        raise ExchangeError(f"{name} must not hold negative values")
    if a.size and int(a.max()) > 255:   # uint8 would wrap 259 to 3 (cavity)
        raise ExchangeError(f"{name} hold the value {int(a.max())}; label values are 0..255")
    return a.astype(np.uint8, copy=False)


def _savez(path, arrays, compressed):
    path = os.fspath(path)
    # np.savez appends ".npz" to names without it; write to the exact name asked for.
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def _open(path):
    try:
        return np.load(os.fspath(path), allow_pickle=False)
    except FileNotFoundError:
        raise ExchangeError(f"file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise ExchangeError(f"{os.path.basename(str(path))}: not a readable .npz file ({e})") from None
