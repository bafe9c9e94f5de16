"""One entry point for every input: `read_cine(path)` picks the reader from what the path is.

Dispatch (by content where the name is not enough, never by guessing pixel layouts):
folder -> DICOM series; .dcm/.ima or a file with the DICM preamble -> DICOM; .seq.nrrd ->
Slicer volume sequence; .nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd -> volume file.  Readers only
read: input files are never modified.
"""
from __future__ import annotations

import os

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.contract import ExchangeError, load_cine_npz, load_results_npz
from cardiacquan.io.cine import Cine
from cardiacquan.io.dicom import read_dicom_cine
from cardiacquan.io.integrity import check_complete
from cardiacquan.io.volume import read_labels, read_sequence_nrrd, read_volume, write_cine, write_labels

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

__all__ = ["read_cine", "read_labels", "write_labels", "write_cine"]


def _has_dicm_preamble(path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as e:
        raise CardiacQuanError(f"cannot open {path}: {e.strerror}")
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_cine_npz(path) -> Cine:
    """The Slicer module's exchange file (see exchange.py)."""
    check_complete(path)
    try:
        d = load_cine_npz(path)
    except (ExchangeError, OSError, ValueError, KeyError) as e:
        raise CardiacQuanError(f"{os.path.basename(path)}: not a CardiacQuan cine file ({e})")
    return Cine(**d)


def read_labels_any(path, cine: Cine):
    """Labels from a label image, or from a results/labels .npz of the exchange format."""
    if os.fspath(path).lower().endswith(".npz"):
        check_complete(path)
        try:
            labels = load_results_npz(path)["labels"]
        except (ExchangeError, OSError, ValueError) as e:
            raise CardiacQuanError(f"{os.path.basename(path)}: not a labels file ({e})")
        if labels.shape != cine.image.shape:
            raise CardiacQuanError(f"labels are {'x'.join(map(str, labels.shape))}, the cine is "
                                   f"{'x'.join(map(str, cine.image.shape))}")
        return np.asarray(labels, np.uint8)
    return read_labels(path, cine)


def read_cine(path, third_axis_is_time: bool = False, series=None) -> Cine:
    """Read a cine from a DICOM folder/file or a volume file (see module docstring).

    `series`: the SeriesNumber to read from a DICOM folder holding several cines."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CardiacQuanError(f"no such file or folder: {path}")
    if series is not None and os.path.isfile(path) and path.lower().endswith(VOLUME_SUFFIXES + (".npz",)):
        raise CardiacQuanError("--series chooses a series of a DICOM folder; the input is a single volume file")
    if os.path.isdir(path):
        return read_dicom_cine(path, series=series)
    low = path.lower()
    if low.endswith(".npz"):
        return _read_cine_npz(path)
    if low.endswith(".seq.nrrd"):
        return read_sequence_nrrd(path)
    if low.endswith(VOLUME_SUFFIXES):
        return read_volume(path, third_axis_is_time=third_axis_is_time)
    if low.endswith((".dcm", ".ima", ".dicom")) or _has_dicm_preamble(path):
        return read_dicom_cine(path, series=series)
    if low.endswith((".gz", ".bz2", ".zip", ".tgz", ".xz")):
        raise CardiacQuanError(f"{os.path.basename(path)} is a compressed archive or file: decompress it first "
                               "(e.g. gunzip, unzip) and give the DICOM folder or file it holds; only .nii.gz, "
                               ".nrrd and .mha are read compressed")
    raise CardiacQuanError(f"unsupported input {os.path.basename(path)}: give a DICOM folder or file, "
                           ".nii/.nii.gz, .nrrd/.nhdr/.seq.nrrd or .mha/.mhd")
