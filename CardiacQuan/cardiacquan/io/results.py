"""Everything a quantification writes: the per-frame table other tools read, the study
summary, label images in the input's geometry, and the pictures (`figures.py`).
"""
from __future__ import annotations

import csv
import json
import platform
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from cardiacquan import __version__
from cardiacquan.contract import (
    BULLSEYE_PNG,
    DICOM_SEG_FILE,
    INDEX_NAMES,
    INDICES_COLUMN_NAMES,
    INDICES_CSV,
    OUTPUT_FILES,
    REPORT_HTML,
    RESULTS_NPZ,
    SECTORS_FILE,
    SEGMENTS_CSV,
    SEGMENTATION_FILE,
    SUMMARY_JSON,
    outputs_made,
    save_results_npz,
)
from cardiacquan.io.output_paths import prepare_output_dir, staged_output_dir
from cardiacquan.io.regional import phase_curve_dict, segments_dict, write_segments_csv
from cardiacquan.io.report import write_report
from cardiacquan.io.volume import write_labels
from cardiacquan.models import model_info


def _fmt(v, nd=3):
    return "" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def _source_summary(src):
    """One cell for the 11 per-index sources: the common one, then the exceptions by index."""
    src = list(src)
    common = Counter(src).most_common(1)[0][0]          # ties: the first in index order (stable)
    others = [f"{name}: {s}" for name, s in zip(INDEX_NAMES, src) if s != common]
    return common if not others else f"{common} ({'; '.join(others)})"


def write_indices_csv(result, path):
    cine = result.cine
    pos = cine.slice_positions_mm
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(INDICES_COLUMN_NAMES)
        for z in result.slices:
            idx = result.per_slice[z]
            arr = idx.as_array()
            for t in range(cine.n_frames):
                w.writerow([z, _fmt(pos[z]), t, _fmt(cine.times_ms[t], 1)]
                           + [_fmt(v) for v in arr[t]]
                           # the heart's phase (one ED/ES for every slice): a time in the cycle,
                           # so a frame or a slice without LV has one too
                           + [_phase_cell(result, idx, t), _fmt(idx.septum_angle_deg[t], 1),
                              idx.orientation_source[t], int(bool(idx.mirrored[t])) if idx.valid[t] else "",
                              int(bool(idx.valid[t])),
                              _source_summary(result.sources[z])])


def _phase_cell(result, idx, t):
    phase = result.phase if result.phase is not None else idx.phase
    return "" if phase[t] < 0 else int(phase[t])


def _frame_or_none(f):
    """Frame numbers as JSON: null, not -1, where a slice has no LV in any frame."""
    return int(f) if f is not None and int(f) >= 0 else None


def summary_dict(result, input_path=None):
    cine = result.cine
    slices = []
    for z in result.slices:
        idx = result.per_slice[z]
        slices.append({"slice": z, "slice_position_mm": float(cine.slice_positions_mm[z]),
                       "ed_frame": _frame_or_none(idx.ed), "es_frame": _frame_or_none(idx.es),
                       "valid_frames": int(idx.valid.sum()),
                       "mirrored": bool(np.any(idx.mirrored)),
                       "orientation_source": sorted(set(s for s in idx.orientation_source if s)),
                       "index_sources": dict(zip(INDEX_NAMES, result.sources[z]))})
    mid = result.per_slice[result.mid_slice]
    mid_ed = {k: (None if not np.isfinite(v) else round(float(v), 2))
              for k, v in zip(INDEX_NAMES, mid.as_array()[mid.ed])} if mid.ed >= 0 else {}
    mid_es = {k: (None if not np.isfinite(v) else round(float(v), 2))
              for k, v in zip(INDEX_NAMES, mid.as_array()[mid.es])} if mid.es >= 0 else {}
    return {
        "input": str(input_path) if input_path else cine.source,
        "n_frames": cine.n_frames, "n_slices": cine.n_slices,
        "frame_shape": list(cine.frame_shape), "pixel_spacing_mm": list(cine.spacing),
        "times_ms": [round(float(t), 1) for t in cine.times_ms], "times_known": bool(cine.times_known),
        "ed_frame": _frame_or_none(result.ed_frame), "es_frame": _frame_or_none(result.es_frame),
        "ed_es_from": result.phase_curve.get("source") or f"cavity area of slice {result.mid_slice}",
        "mid_slice": result.mid_slice,
        # the mid slice's own ED/ES (largest/smallest cavity area of that slice), which can differ
        # from the study's ED/ES above (from the stack's volume); the figures show these frames
        "mid_slice_ed_frame": _frame_or_none(mid.ed), "mid_slice_es_frame": _frame_or_none(mid.es),
        "mid_slice_ed_indices": mid_ed, "mid_slice_es_indices": mid_es,
        "slices": slices, "volumes": result.volumes,
        "phase_curve": phase_curve_dict(result), "segments": segments_dict(result),
        "segmented_by": result.segmented_by,
        "frames_without_lv": ([[int(t), int(z)] for t, z in zip(*np.nonzero(~result.lv_found[:, result.slices]))]
                              if result.lv_found is not None else []),
        "quantification": result.quan_info or {"final_values": "geometry of the masks (LVQuan definitions)"},
        "warnings": list(dict.fromkeys(result.warnings)),
        "software_version": __version__, "model": model_info() if result.segmented_by == "network" else {},
        "python": platform.python_version(),
    }


def write_figures(result, stage):
    """The PNG figures (io/figures.py); matplotlib and scikit-image are imported only when figures are made."""
    from cardiacquan.io.figures import write_figures as write   # optional: matplotlib, scikit-image
    return write(result, stage)


def write_bullseye(result, path):
    """The AHA bull's-eye PNG (io/bullseye.py); matplotlib is imported only when figures are made."""
    from cardiacquan.io.bullseye import write_bullseye as write   # optional: matplotlib
    return write(result, path)


def write_dicom_seg(result, path):
    """The DICOM Segmentation (io/dicom_seg.py); highdicom is imported only for --dicom-seg."""
    from cardiacquan.io.dicom_seg import write_dicom_seg as write   # optional: highdicom
    return write(result, path)


def write_outputs(result, outdir, input_path=None, figures=True, dicom_seg=False, bullseye=None):
    """Write every output into a temporary folder inside `outdir`, then move them into place
    together (output_paths.staged_output_dir): a run that fails leaves earlier results as they were.

    bullseye: write bullseye.png (None: with the figures; True also without them, as the Slicer
    module asks: it shows the bull's-eye and draws its own table and chart)."""
    outdir = Path(outdir)
    prepare_output_dir(outdir, [input_path] if input_path else [])
    bullseye = figures if bullseye is None else bullseye
    # outputs of an earlier run that this one does not make would sit beside results they do not
    # show: figures and the report (which shows them) without figures, a SEG without --dicom-seg
    made = outputs_made(figures, dicom_seg, bullseye)
    stale = tuple(n for n in OUTPUT_FILES if n not in made)
    with staged_output_dir(outdir, remove=stale) as stage:
        write_indices_csv(result, stage / INDICES_CSV)
        write_segments_csv(result, stage / SEGMENTS_CSV)
        if dicom_seg:
            write_dicom_seg(result, stage / DICOM_SEG_FILE)
        with warnings.catch_warnings(record=True) as caught:   # a stack a volume file cannot hold
            warnings.simplefilter("always")                      # exactly belongs in the summary too
            write_labels(result.labels, result.cine, str(stage / SEGMENTATION_FILE))
            write_labels(result.sectors, result.cine, str(stage / SECTORS_FILE))
        for message in dict.fromkeys(str(w.message) for w in caught):
            result.warnings.append(f"{SEGMENTATION_FILE}, {SECTORS_FILE}: {message} (slice positions then differ "
                                   "from the input's; indices.csv and summary.json keep the true ones)")
        summary = summary_dict(result, input_path)
        (stage / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
        save_results_npz(stage / RESULTS_NPZ, result.labels, result.sectors)
        if figures:
            write_figures(result, stage)
        if bullseye:
            write_bullseye(result, stage / BULLSEYE_PNG)
        if figures:
            write_report(result, summary, stage, stage / REPORT_HTML)
    return outdir
