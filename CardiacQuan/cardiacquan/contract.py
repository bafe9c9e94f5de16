"""What crosses the process boundary between a host (the 3D Slicer module) and the engine.

Both sides import this one file, so a column name, a unit, a label value or a file name is
written once.  numpy only, on purpose: the Slicer module imports it inside Slicer's own
Python, where the engine's other dependencies may not be installed yet.

Labels and indices
------------------
Label maps everywhere (the ACDC convention): 0 background, 1 RV cavity, 2 LV myocardium,
3 LV cavity, uint8, shape (T, Z, R, C) for a cine.  Sector maps: 0 elsewhere, k = 1..6 the
RWTk sector of a myocardium pixel.  The 11 LVQuan indices in their fixed order:
:data:`INDEX_NAMES`; the exact definitions are in docs/indices.md.

Output folder (``cardiacquan quantify -o OUTDIR``)
-------------------------------------------------
:data:`OUTPUT_FILES`; ``indices.csv`` has the columns :data:`INDICES_COLUMNS` (name, unit,
meaning) in that order, ``segments.csv`` the columns :data:`SEGMENTS_COLUMNS` (the AHA 16 segments,
:data:`AHA_SEGMENTS`); ``summary.json`` the top-level keys :data:`SUMMARY_KEYS`.
A cohort (``cardiacquan batch INPUTS -o OUTDIR``): those files in ``OUTDIR/<study_id>/`` with
:data:`BATCH_STAMP`; ``OUTDIR/cohort.csv`` with :data:`COHORT_COLUMNS`, ``failures.csv`` with
:data:`FAILURE_COLUMNS`.

Exchange files
--------------
- cine ``.npz`` (host -> engine), written by :func:`save_cine_npz`:
  ``image`` (T, Z, R, C) float32, ``spacing`` (2,) = (row_mm, col_mm), ``origins`` (Z, 3) LPS mm,
  ``direction`` (3, 3) (columns: LPS direction of increasing column, of increasing row, slice
  normal; absent when the orientation is unknown), ``times_ms`` (T,), ``times_known`` bool,
  optional ``slice_thickness`` and ``source``.  Same conventions as ``cardiacquan.io.cine.Cine``;
  ``Cine(**load_cine_npz(path))`` builds one.
- results ``.npz`` (engine -> host, and host -> engine for ``--labels``), written by
  :func:`save_results_npz`: ``labels`` (T, Z, R, C) uint8 and ``sectors`` (T, Z, R, C) uint8;
  ``sectors`` may be absent in a labels-only file.

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

# --------------------------------------------------------------------------------------
# labels, indices, sectors
# --------------------------------------------------------------------------------------
BACKGROUND, RV, MYOCARDIUM, LV_CAVITY = 0, 1, 2, 3
LABEL_NAMES = {RV: "RV cavity", MYOCARDIUM: "LV myocardium", LV_CAVITY: "LV cavity"}

#: the 11 LVQuan indices, in the order every array of indices uses
INDEX_NAMES = ("A1", "A2", "D1", "D2", "D3", "RWT1", "RWT2", "RWT3", "RWT4", "RWT5", "RWT6")
#: RWT1..RWT6 and D1..D3 are measured in the six mid-cavity AHA segments, named here in RWT order
SECTOR_NAMES = ("IS", "I", "IL", "AL", "A", "AS")
SECTOR_AHA_SEGMENTS = (9, 10, 11, 12, 7, 8)
SECTOR_TITLES = ("inferoseptal", "inferior", "inferolateral", "anterolateral", "anterior", "anteroseptal")

# --------------------------------------------------------------------------------------
# the output folder
# --------------------------------------------------------------------------------------
INDICES_CSV = "indices.csv"
SUMMARY_JSON = "summary.json"
SEGMENTATION_FILE = "segmentation.nii.gz"
SECTORS_FILE = "sectors.nii.gz"
RESULTS_NPZ = "results.npz"
PHASE_CURVE_PNG, MID_SLICE_PNG = "phase_curve.png", "mid_slice_ed_es.png"
SLICES_PNG = "slices_ed_es.png"            # every quantified slice at ED and ES
BULLSEYE_PNG = "bullseye.png"              # AHA 16-segment thickness at ED, ES and thickening
SEGMENTS_CSV = "segments.csv"              # AHA 16-segment wall thickness and thickening
REPORT_HTML = "report.html"                # one self-contained page for a reader
DICOM_SEG_FILE = "segmentation_seg.dcm"    # `--dicom-seg`: DICOM Segmentation of a DICOM input
#: the pictures (left out with --no-figures, as is the report that shows them)
FIGURE_FILES = (PHASE_CURVE_PNG, MID_SLICE_PNG, SLICES_PNG, BULLSEYE_PNG)
#: every file `cardiacquan quantify` writes into its output folder
OUTPUT_FILES = (INDICES_CSV, SUMMARY_JSON, SEGMENTATION_FILE, SECTORS_FILE, RESULTS_NPZ, SEGMENTS_CSV,
                REPORT_HTML, DICOM_SEG_FILE) + FIGURE_FILES


def outputs_made(figures=True, dicom_seg=False, bullseye=None):
    """The files of OUTPUT_FILES that a quantification with these options writes; it removes the
    others an earlier run left (figures and the report without figures, the bull's-eye unless
    asked for, a DICOM SEG without --dicom-seg)."""
    made = {BULLSEYE_PNG: figures if bullseye is None else bullseye, DICOM_SEG_FILE: dicom_seg}
    optional = FIGURE_FILES + (REPORT_HTML, DICOM_SEG_FILE)
    return tuple(n for n in OUTPUT_FILES if n not in optional or made.get(n, figures))

#: the sample cine both sides offer (`cardiacquan demo`, Slicer's Sample Data module), relative to the
#: module's Resources folder (cardiacquan.models finds it): a cropped short-axis cine from the
#: Sunnybrook Cardiac Data (CC0), made by scripts/make_sample_cine.py; attribution in its README.md
SAMPLE_CINE = ("SampleData", "SunnybrookSCHFI1-cine.seq.nrrd")

#: the AHA 16 segments (Cerqueira et al., Circulation 2002): (number, level, name); 1-6 basal and
#: 7-12 mid in 60 degree sectors, 13-16 apical in 90 degree sectors (docs/indices.md)
AHA_LEVELS = ("basal", "mid", "apical")
AHA_SEGMENTS = (
    (1, "basal", "anterior"), (2, "basal", "anteroseptal"), (3, "basal", "inferoseptal"),
    (4, "basal", "inferior"), (5, "basal", "inferolateral"), (6, "basal", "anterolateral"),
    (7, "mid", "anterior"), (8, "mid", "anteroseptal"), (9, "mid", "inferoseptal"),
    (10, "mid", "inferior"), (11, "mid", "inferolateral"), (12, "mid", "anterolateral"),
    (13, "apical", "anterior"), (14, "apical", "septal"), (15, "apical", "inferior"), (16, "apical", "lateral"),
)
#: segments.csv: (column, unit, meaning), in the file's order; one row per segment
SEGMENTS_COLUMNS = (
    ("segment", "", "AHA segment number 1-16"),
    ("level", "", "basal, mid or apical third of the slices with a complete myocardial ring"),
    ("name", "", "AHA segment name"),
    ("slices", "", "the quantified slices averaged in this segment (space-separated)"),
    ("thickness_ed_mm", "mm", "wall thickness at the study's end-diastole (mean over the segment's rays and slices)"),
    ("thickness_es_mm", "mm", "wall thickness at the study's end-systole"),
    ("thickening_percent", "%", "systolic wall thickening (ES - ED) / ED x 100"),
)
SEGMENTS_COLUMN_NAMES = tuple(name for name, _, _ in SEGMENTS_COLUMNS)

#: indices.csv: (column, unit, meaning), in the file's order
INDICES_COLUMNS = (
    ("slice", "", "Slice index (0-based, in the order of the input)"),
    ("slice_position_mm", "mm", "Slice position along the slice normal, in patient coordinates"),
    ("frame", "", "Frame index (0-based, in time order)"),
    ("time_ms", "ms", "Time of the frame in the cardiac cycle"),
    ("cavity_area_mm2", "mm\u00b2", "A1: LV cavity area (papillary muscles count as cavity)"),
    ("myocardium_area_mm2", "mm\u00b2", "A2: LV myocardium area"),
    ("dim1_mm", "mm", "D1: cavity diameter along the inferoseptal-anterolateral axis"),
    ("dim2_mm", "mm", "D2: cavity diameter along the inferior-anterior axis"),
    ("dim3_mm", "mm", "D3: cavity diameter along the inferolateral-anteroseptal axis"),
) + tuple(
    (f"rwt{k}_mm", "mm", f"RWT{k}: wall thickness, {title} sector (AHA {aha})")
    for k, (title, aha) in enumerate(zip(SECTOR_TITLES, SECTOR_AHA_SEGMENTS), start=1)
) + (
    ("phase", "", "Cardiac phase of the heart: 1 systole, 0 diastole (one ED/ES for every slice)"),
    ("septum_angle_deg", "\u00b0", "Direction of the septum (LV to RV centroid) in the image, counter-clockwise"),
    ("orientation_source", "", "How the sectors were oriented: rv = from the RV position, image-axes = RV "
                               "assumed on the image's left (no RV found)"),
    ("mirrored", "", "1 when the image is a mirrored short-axis view (sectors then run clockwise)"),
    ("valid", "", "0 when the frame has no LV cavity (its indices are empty); myocardium and wall thickness "
                  "are also empty where the frame has no myocardium"),
    ("source", "", "What produced the final values (network, geometry of the masks, ...)"),
)
INDICES_COLUMN_NAMES = tuple(name for name, _, _ in INDICES_COLUMNS)
#: the columns of the 11 indices, in INDEX_NAMES order
INDEX_COLUMNS = INDICES_COLUMN_NAMES[4:15]
INTEGER_COLUMNS = ("slice", "frame", "phase", "mirrored", "valid")
TEXT_COLUMNS = ("orientation_source", "source")

# What a host (the Slicer module) looks up in indices.csv, named here so that it never spells a
# column again.  Derived from INDICES_COLUMNS / INDEX_NAMES; the engine does not use these.
#: (unit, meaning) of each indices.csv column, by column name
INDICES_COLUMN_INFO = {name: (unit, meaning) for name, unit, meaning in INDICES_COLUMNS}
#: the indices.csv column of each index: INDEX_COLUMN["A1"] == "cavity_area_mm2"
INDEX_COLUMN = dict(zip(INDEX_NAMES, INDEX_COLUMNS))
#: the columns that place a row: its slice, its frame, the frame's time, the cardiac phase
SLICE_COLUMN, FRAME_COLUMN, TIME_COLUMN, PHASE_COLUMN = "slice", "frame", "time_ms", "phase"

#: summary.json: the top-level keys, in the file's order (docs: README, "Outputs")
SUMMARY_KEYS = ("input", "n_frames", "n_slices", "frame_shape", "pixel_spacing_mm", "times_ms", "times_known",
                "ed_frame", "es_frame", "ed_es_from", "mid_slice", "mid_slice_ed_frame", "mid_slice_es_frame",
                "mid_slice_ed_indices", "mid_slice_es_indices", "slices", "volumes", "segmented_by",
                "phase_curve", "segments", "frames_without_lv", "quantification", "warnings",
                "software_version", "model", "python")
#: summary.json keys that describe the run rather than the result (they differ between two runs)
SUMMARY_PROVENANCE_KEYS = ("input", "software_version", "model", "python")

# --------------------------------------------------------------------------------------
# a cohort (``cardiacquan batch INPUTS -o OUTDIR``): OUTDIR/<study_id>/ holds the OUTPUT_FILES of
# each study plus BATCH_STAMP; OUTDIR holds the cohort table and the failures
# --------------------------------------------------------------------------------------
COHORT_CSV = "cohort.csv"
COHORT_PARQUET = "cohort.parquet"
FAILURES_CSV = "failures.csv"
#: per study: the input's content fingerprint, the settings and the cohort row (written last)
BATCH_STAMP = "batch.json"
#: a manifest CSV: one study per row
MANIFEST_COLUMNS = ("study_id", "path")
#: a study's status in the cohort table
STATUS_QUANTIFIED, STATUS_REUSED, STATUS_FAILED = "quantified", "reused", "failed"
#: cohort.csv: (column, unit, meaning), in the file's order; empty cells where not measurable
COHORT_COLUMNS = (
    ("study_id", "", "Study name (its output folder OUTDIR/<study_id>)"),
    ("input", "", "The study's input (DICOM folder or file, volume file) as given or found"),
    ("status", "", "quantified (this run), reused (an earlier run's outputs, input and settings unchanged) "
                   "or failed (reason in failures.csv and in error)"),
    ("error", "", "Why a failed study was refused (the CQ-ERROR message)"),
    ("n_frames", "", "Frames of the cine"),
    ("n_slices", "", "Slices of the cine"),
    ("ed_frame", "", "End-diastolic frame of the study (0-based; from the stack's volume when >= 3 slices)"),
    ("es_frame", "", "End-systolic frame of the study (0-based)"),
    ("edv_ml", "mL", "LV end-diastolic volume"),
    ("esv_ml", "mL", "LV end-systolic volume"),
    ("sv_ml", "mL", "Stroke volume, EDV - ESV"),
    ("ef_percent", "%", "Ejection fraction, SV / EDV"),
    ("lv_mass_ed_g", "g", "LV myocardial mass at ED (1.05 g/mL)"),
    ("mid_slice", "", "Mid-ventricular slice (0-based)"),
    ("mid_slice_ed_frame", "", "The mid slice's own ED frame (largest cavity area of that slice)"),
    ("mid_slice_es_frame", "", "The mid slice's own ES frame (smallest cavity area of that slice)"),
) + tuple(
    (f"mid_{phase}_{name}", unit, f"{meaning.split(':')[0]} of the mid slice at its {phase.upper()} frame")
    for phase in ("ed", "es") for name, unit, meaning in INDICES_COLUMNS[4:15]
) + (
    ("frames_without_lv", "", "Images (frame, slice) in which the segmentation found no LV"),
    ("n_warnings", "", "Number of warnings in summary.json"),
    ("warnings", "", "The warnings of summary.json, separated by ' | '"),
    ("seconds", "s", "Time the study took on its worker (read, quantify, write)"),
    ("software_version", "", "cardiacquan version that quantified the study"),
    ("model_versions", "", "Bundled weights used: file@first 12 hex digits of their SHA-256"),
)
COHORT_COLUMN_NAMES = tuple(name for name, _, _ in COHORT_COLUMNS)
#: failures.csv: one row per refused study
FAILURE_COLUMNS = ("study_id", "input", "error")

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
