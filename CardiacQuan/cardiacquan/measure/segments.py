"""AHA 16-segment wall thickness and systolic thickening of a short-axis stack.

The segment model of Cerqueira et al., "Standardized myocardial segmentation and nomenclature
for tomographic imaging of the heart", Circulation 105:539-542, 2002, without the apical cap
(segment 17): the ventricle is cut into basal, mid-cavity and apical thirds along its long axis;
the basal and mid thirds into six 60-degree segments, the apical third into four of 90 degrees,
all oriented from the septum.  The rule as applied here (docs/indices.md, "AHA 16 segments"):

- thirds from the quantified slices that hold a complete myocardial ring at the study's ED
  (every 1-degree ray from the cavity centroid crosses myocardium: wall > half a pixel), ordered
  from base to apex; the apical third gets n // 3 of the n slices (Cerqueira's 35/35/30 %
  distribution of myocardium), the basal third half of the rest rounded up, the mid third the
  remainder (9 slices: 3/3/3; 10: 4/3/3; 11: 4/4/3);
- base and apex from the patient orientation (the slice normal against the anatomical
  apex direction, left-anterior-inferior); without a usable orientation, the end of the ring
  slices with the larger ED cavity area is the base;
- angles, rotation (LV -> RV centroid = septum, 180 degrees) and mirroring are those of the
  LVQuan sectors (`measure.indices`, per frame), so segments 7-12 are the RWT sectors;
- per segment and frame: the mean wall thickness r_epi - r_endo over the segment's rays on each
  slice of its third, averaged over those slices; thickening = (ES - ED) / ED at the study's
  ED and ES frames.
"""
from __future__ import annotations

import numpy as np

from cardiacquan.contract import AHA_LEVELS, AHA_SEGMENTS

APEX_LPS = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)   # left, anterior, inferior: base -> apex
MIN_APEX_PROJECTION = 0.3
RING_MIN_WALL_PX = 0.5
_CENTRE_DEG = {"anterior": 90.0, "anteroseptal": 150.0, "inferoseptal": 210.0, "inferior": 270.0,
               "inferolateral": 330.0, "anterolateral": 30.0, "septal": 180.0, "lateral": 0.0}
#: segment number -> (centre, width) in sector degrees (counter-clockwise, septum 180, anterior 90)
SEGMENT_SECTORS = {n: (_CENTRE_DEG[name], 90.0 if level == "apical" else 60.0) for n, level, name in AHA_SEGMENTS}


def segment_rays(n_rays, number) -> np.ndarray:
    """(n_rays,) bool: the rays (at sector angle (j + 1/2) * 360 / n_rays) inside segment `number`."""
    centre, width = SEGMENT_SECTORS[int(number)]
    alpha = (np.arange(n_rays) + 0.5) * 360.0 / n_rays
    return np.mod(alpha - (centre - width / 2.0), 360.0) < width


def has_complete_ring(idx, frame, spacing) -> bool:
    """A complete myocardial ring in `frame`: every ray crosses more than half a pixel of wall."""
    if idx.wall_rays is None or frame < 0 or not idx.valid[frame]:
        return False
    w = idx.wall_rays[frame]
    return bool(np.all(np.isfinite(w)) and w.min() > RING_MIN_WALL_PX * min(spacing))


def base_to_apex(cine, slices, per_slice, ed) -> tuple:
    """(slices ordered from base to apex, how that order was found)."""
    pos = np.asarray(cine.slice_positions_mm, float)
    order = sorted(slices, key=lambda z: pos[z])
    if cine.direction is not None:
        s = float(cine.normal @ APEX_LPS) / max(float(np.linalg.norm(cine.normal)), 1e-12)
        if abs(s) >= MIN_APEX_PROJECTION:
            return (order if s > 0 else order[::-1]), "patient orientation (slice normal vs the apex direction)"
    first, last = (float(per_slice[z].cavity_area[ed]) for z in (order[0], order[-1]))
    return (order[::-1] if last > first else order), "cavity size (the larger ED cavity is the base)"


def level_counts(n) -> tuple:
    """(basal, mid, apical) slice counts for n ring slices."""
    apical = n // 3
    basal = -(-(n - apical) // 2)
    return basal, n - apical - basal, apical


def _mean(values):
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def aha_segments(cine, per_slice, slices, ed, es, warnings) -> dict:
    """The 16 segments' thickness at ED and ES and their thickening (summary.json 'segments').

    Returns dict(segments=[row per segment], levels={level: slices}, ring_slices, base_to_apex,
    order_from, ed_frame, es_frame, note); segments is empty (with the reason in note and a
    warning) when fewer than 3 quantified slices hold a complete ring."""
    out = dict(segments=[], levels={lv: [] for lv in AHA_LEVELS}, ring_slices=[], base_to_apex=[],
               order_from="", ed_frame=int(ed), es_frame=int(es),
               note="AHA 16 segments (Cerqueira et al., Circulation 2002, without the apical cap): thirds of the "
                    "slices with a complete myocardial ring at ED; wall thickness from the masks' geometry")
    if ed < 0 or es < 0 or len(slices) < 3:
        out["note"] = "not computed: the AHA segments need a stack of at least 3 quantified slices"
        return out
    ordered, how = base_to_apex(cine, slices, per_slice, ed)
    ring = [z for z in ordered if has_complete_ring(per_slice[z], ed, cine.spacing)]
    out.update(ring_slices=[int(z) for z in ring], base_to_apex=[int(z) for z in ordered], order_from=how)
    if len(ring) < 3:
        out["note"] = (f"not computed: {len(ring)} quantified slice(s) hold a complete myocardial ring at ED "
                       "(3 are needed for basal, mid and apical thirds)")
        warnings.append(f"AHA segments {out['note']}")
        return out
    nb, nm, _ = level_counts(len(ring))
    levels = dict(zip(AHA_LEVELS, (ring[:nb], ring[nb:nb + nm], ring[nb + nm:])))
    out["levels"] = {lv: [int(z) for z in zs] for lv, zs in levels.items()}
    for number, level, name in AHA_SEGMENTS:
        zs = levels[level]
        th = []
        for frame in (ed, es):
            th.append(_mean([_mean(per_slice[z].wall_rays[frame][segment_rays(per_slice[z].wall_rays.shape[1], number)])
                             for z in zs]))
        t_ed, t_es = th
        thick = 100.0 * (t_es - t_ed) / t_ed if np.isfinite(t_ed) and t_ed > 0 and np.isfinite(t_es) else float("nan")
        out["segments"].append(dict(segment=number, level=level, name=name, slices=[int(z) for z in zs],
                                    thickness_ed_mm=t_ed, thickness_es_mm=t_es, thickening_percent=thick))
    return out
