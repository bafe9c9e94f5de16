"""What makes a rerun skip a study: its input's content fingerprint and the run's settings.

A study is done when OUTDIR/<id>/batch.json (BATCH_STAMP, written after every output) records
the fingerprint of the input as it is now and the settings of this run (options that change
the outputs, software version, SHA-256 of the weights), and every output file is there.
Anything else (no stamp, a changed input, other settings, a missing file) is quantified again.

The fingerprint is a SHA-256 over the files `read_cine` reads (relative name, size, content):
a folder's files below it; a single DICOM file's folder (its series lives there); a .mhd/.nhdr
header with the data files beside it that share its stem.
"""
from __future__ import annotations

import hashlib
import json
import os

from cardiacquan.contract import BATCH_STAMP, outputs_made

CHUNK = 1 << 20


def input_files(path):
    """The files whose content makes the study (sorted)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        out = []
        for folder, dirs, names in os.walk(path):
            dirs.sort()
            out += [os.path.join(folder, n) for n in sorted(names)]
        return out
    low = path.lower()
    folder, name = os.path.split(path)
    if low.endswith((".mhd", ".nhdr")):
        stem = name.rsplit(".", 1)[0]
        return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                      if n == name or (n.startswith(stem + ".") and not n.lower().endswith((".mhd", ".nhdr"))))
    if low.endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".npz")):
        return [path]
    # a DICOM file: read_cine reads the files of its series in its folder
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))


def input_fingerprint(path) -> str:
    """SHA-256 of the study's input files: names relative to the study, sizes and contents."""
    path = os.path.abspath(os.fspath(path))
    base = path if os.path.isdir(path) else os.path.dirname(path)
    h = hashlib.sha256()
    for f in input_files(path):
        h.update(os.path.relpath(f, base).encode("utf-8", "surrogateescape") + b"\0")
        h.update(str(os.path.getsize(f)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


def settings_key(settings) -> str:
    """SHA-256 of the settings that change a study's outputs (a dict of JSON values)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def expected_outputs(figures=True):
    """What a complete study folder holds (a batch never asks for --dicom-seg)."""
    return list(outputs_made(figures))


def read_stamp(folder):
    """The stamp of an output folder, or None (none, unreadable)."""
    try:
        with open(os.path.join(folder, BATCH_STAMP), encoding="utf-8") as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_done(folder, fingerprint, key, figures=True):
    """The stored cohort row when the folder holds complete outputs of this input and settings."""
    stamp = read_stamp(folder)
    if not stamp or stamp.get("fingerprint") != fingerprint or stamp.get("settings_key") != key:
        return None
    if not all(os.path.isfile(os.path.join(folder, n)) for n in expected_outputs(figures)):
        return None
    row = stamp.get("row")
    return row if isinstance(row, dict) else None


def clear_stamp(folder):
    """Before a study's outputs are (re)written: they are incomplete until write_stamp."""
    try:
        os.unlink(os.path.join(folder, BATCH_STAMP))
    except FileNotFoundError:
        pass


def write_stamp(folder, fingerprint, key, settings, row):
    """Written last, under a temporary name then renamed: a stamp is never half-written."""
    path = os.path.join(folder, BATCH_STAMP)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"fingerprint": fingerprint, "settings_key": key, "settings": settings, "row": row}, f, indent=1)
    os.replace(tmp, path)
