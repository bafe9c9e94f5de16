"""Which studies a batch holds: study files, folders to scan, CSV manifests -> [Study].

- a CSV file is a manifest: a header `study_id,path` (MANIFEST_COLUMNS), one study per row;
  relative paths are relative to the manifest's folder;
- any other file is one study (a cine file, or one DICOM file: its series in that folder);
- a folder is scanned: every cine volume file in it or below is one study, and so is every DICOM
  series (by SeriesInstanceUID). A folder holding one series and no DICOM below it is the study
  itself (its path is the folder); where a folder holds several series, each study's path is
  the first file of its series (`read_cine` then reads that series from the folder only).

Study ids name the output folders: a manifest's ids are kept (letters, digits, `._-`; anything
else is refused), found studies are named after their path below the scanned folder (the
folder's own name for the folder itself), with `_2`, `_3` ... added where two would collide.
Only headers are read here (SeriesInstanceUID): pixels are read by the workers.
"""
from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import dataclass

import pydicom

from cardiacquan import CardiacQuanError
from cardiacquan.contract import MANIFEST_COLUMNS
from cardiacquan.io.files import VOLUME_SUFFIXES

#: cine files a scan takes as studies (beside DICOM): volume files and Slicer sequences
CINE_SUFFIXES = VOLUME_SUFFIXES + (".seq.nrrd",)
#: files a scan never takes for a study: detached data of .mhd/.nhdr headers, tables, pictures
SKIPPED_SUFFIXES = (".raw", ".zraw", ".raw.gz", ".csv", ".json", ".txt", ".png", ".jpg", ".md", ".npz")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Study:
    study_id: str
    path: str


def _stem(name):
    low = name.lower()
    for suffix in sorted(CINE_SUFFIXES + (".dcm", ".ima", ".dicom"), key=len, reverse=True):
        if low.endswith(suffix):
            return name[:-len(suffix)]
    return name


def safe_id(text):
    """A folder name from any text: runs of other characters become '_'."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return s or "study"


def _dicom_series(path):
    """SeriesInstanceUID of a DICOM image file (header only), or None for anything else."""
    low = path.lower()
    if not low.endswith((".dcm", ".ima", ".dicom")):
        try:
            with open(path, "rb") as f:
                head = f.read(132)
        except OSError:
            return None
        if len(head) < 132 or head[128:132] != b"DICM":
            return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                 specific_tags=["SeriesInstanceUID", "SOPClassUID"])
            uid = str(ds.get("SeriesInstanceUID", "") or "")   # values are checked when read
    except Exception:   # pydicom raises many types for a file that is not DICOM
        return None
    return uid or None


def scan_folder(root, exclude=None):
    """[(name below root, path)] of the studies in `root` (see the module docstring); the folder
    `exclude` (the batch's own output folder) is not entered."""
    root = os.path.abspath(root)
    exclude = os.path.realpath(exclude) if exclude else None
    found, dicom_dirs = [], {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(folder, d)) != exclude)
        if exclude and os.path.realpath(folder) == exclude:
            continue
        series = {}
        for name in sorted(names):
            path = os.path.join(folder, name)
            low = name.lower()
            if low.endswith(CINE_SUFFIXES):
                found.append((os.path.relpath(os.path.join(folder, _stem(name)), root), path))
            elif not low.endswith(SKIPPED_SUFFIXES):
                uid = _dicom_series(path)
                if uid:
                    series.setdefault(uid, path)
        if series:
            dicom_dirs[folder] = series
    for folder, series in dicom_dirs.items():
        below = any(other != folder and other.startswith(folder + os.sep) for other in dicom_dirs)
        rel = os.path.relpath(folder, root)
        if len(series) == 1 and not below:
            found.append((rel, folder))
        else:
            for first in series.values():   # the first file of each series, in name order
                found.append((os.path.join(rel, _stem(os.path.basename(first))), first))
    return sorted(found)


def read_manifest(path):
    """[Study] of a manifest CSV (header `study_id,path`)."""
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CardiacQuanError(f"cannot read the manifest {path}: {e}")
    if not rows or any(c not in header for c in MANIFEST_COLUMNS):
        raise CardiacQuanError(f"{path}: a manifest needs the header {','.join(MANIFEST_COLUMNS)} and one row per study")
    studies = []
    for i, row in enumerate(rows, start=2):
        sid, p = ((row.get(c) or "").strip() for c in MANIFEST_COLUMNS)
        if not sid or not p:
            raise CardiacQuanError(f"{path}, line {i}: empty study_id or path")
        if not SAFE_ID.match(sid):
            raise CardiacQuanError(f"{path}, line {i}: study_id {sid!r} must be letters, digits, '.', '_' or '-' "
                                   "(it names the study's output folder)")
        studies.append(Study(sid, p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))))
    return studies


def _unique(studies):
    """Ids made unique: the second 'x' becomes 'x_2' (in input order, so a rerun gets the same)."""
    seen, out = set(), []
    for s in studies:
        sid, k = s.study_id, 1
        while sid.lower() in seen:   # case-insensitive file systems
            k += 1
            sid = f"{s.study_id}_{k}"
        seen.add(sid.lower())
        out.append(Study(sid, s.path))
    return out


def discover(inputs, exclude=None):
    """[Study] for the command's INPUTS (files, folders to scan, manifests), in input order;
    folder scans never enter `exclude` (the output folder)."""
    studies = []
    for item in inputs:
        item = os.fspath(item)
        if not os.path.exists(item):
            raise CardiacQuanError(f"input not found: {item}")
        if os.path.isfile(item) and item.lower().endswith(".csv"):
            manifest = read_manifest(item)
            ids = [s.study_id.lower() for s in manifest]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise CardiacQuanError(f"{item}: study_id {dup[0]!r} appears more than once")
            studies += manifest
        elif os.path.isfile(item):
            studies.append(Study(safe_id(_stem(os.path.basename(item))), os.path.abspath(item)))
        else:
            name = os.path.basename(os.path.abspath(item))
            for rel, path in scan_folder(item, exclude):
                studies.append(Study(safe_id(name if rel == "." else rel), path))
    return _unique(studies)
