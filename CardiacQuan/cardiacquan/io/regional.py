"""The heart's phase curve and the AHA 16 segments as they are written: `segments.csv` and the
'phase_curve' and 'segments' parts of summary.json."""
from __future__ import annotations

import csv

import numpy as np

from cardiacquan.contract import SEGMENTS_COLUMN_NAMES


def _num(v, nd=2):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def phase_curve_dict(result) -> dict:
    """summary.json 'phase_curve': the curve the study's ED/ES are the largest/smallest of."""
    h = result.phase_curve or {}
    if not h:
        return {}
    unit = h.get("unit", "mL")
    return {"ed_frame": int(h["ed"]) if h["ed"] >= 0 else None, "es_frame": int(h["es"]) if h["es"] >= 0 else None,
            "from": h.get("source", ""), "slices": [int(z) for z in h.get("slices", [])],
            ("cavity_volume_ml" if unit == "mL" else "cavity_area_mm2"): [_num(v) for v in h["curve"]]}


def segments_dict(result) -> dict:
    """summary.json 'segments': the AHA 16 segments, numbers rounded, NaN as null."""
    seg = result.segments or {}
    if not seg:
        return {}
    rows = [dict(r, thickness_ed_mm=_num(r["thickness_ed_mm"]), thickness_es_mm=_num(r["thickness_es_mm"]),
                 thickening_percent=_num(r["thickening_percent"], 1)) for r in seg.get("segments", [])]
    return dict(seg, segments=rows)


def _cell(v, nd):
    return "" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def write_segments_csv(result, path):
    """segments.csv: one row per AHA segment (columns: contract.SEGMENTS_COLUMNS); header only when
    the segments could not be computed (summary.json 'segments' says why)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SEGMENTS_COLUMN_NAMES)
        for r in (result.segments or {}).get("segments", []):
            w.writerow([r["segment"], r["level"], r["name"], " ".join(map(str, r["slices"])),
                        _cell(r["thickness_ed_mm"], 3), _cell(r["thickness_es_mm"], 3),
                        _cell(r["thickening_percent"], 2)])
