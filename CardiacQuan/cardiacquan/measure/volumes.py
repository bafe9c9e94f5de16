"""LV volumes, EF and mass of a short-axis stack: summation of discs over the quantified slices.

Each slice stands for its slab of tissue (half the distance to each neighbour), so a slice the
reader left out or an uneven spacing neither loses nor adds tissue.  No base or apex
correction (partial slices, the valve plane) is applied.
"""
from __future__ import annotations

import numpy as np

from cardiacquan.contract import MYOCARDIUM
from cardiacquan.measure.indices import SliceIndices, largest_per_frame
from cardiacquan.measure.phase import ed_es_frames

MYOCARDIUM_DENSITY_G_PER_ML = 1.05


def slice_slabs_mm(positions_sorted):
    """Thickness of tissue each slice stands for along the normal (mm), slices in stack order.

    Half the distance to each neighbour; an end slice, the distance to its one neighbour.  An
    evenly spaced stack gives every slice its spacing (the usual summation of discs), and a
    slice the reader left out or an uneven spacing neither loses nor adds tissue: the median
    spacing applied to every slice lost a missing slice's whole slab (EDV -17 % to -21 %)."""
    d = np.diff(np.asarray(positions_sorted, float))
    w = np.empty(d.size + 1)
    w[1:-1] = (d[:-1] + d[1:]) / 2.0
    w[0], w[-1] = d[0], d[-1]
    return w


def _myocardium_areas(idx: SliceIndices, lab_tz, spacing):
    """A2 where the frame has a cavity; elsewhere the largest piece of myocardium the labels hold
    (the apical cap, solid muscle with no cavity, belongs to the LV mass; stray specks do not, as
    in A2), 0 when none."""
    cap = largest_per_frame(lab_tz == MYOCARDIUM).sum(axis=(1, 2)) * float(spacing[0]) * float(spacing[1])
    return np.where(idx.valid, idx.myocardium_area, cap)


def _stack_sum(areas, slabs):
    """Per-frame sum of area x slab over slices ordered along the stack (Z, T); NaN where a frame has a gap.

    A slice at either end of the stack may lose its area in some frames (the base moves out of
    plane, the apical cavity closes at end-systole): that adds 0.  A missing area between
    slices that have one is a segmentation gap (an erased mask, a frame where the LV was not
    found): the frame's volume is then unknown rather than too small."""
    a = np.asarray(areas, float)
    out = np.full(a.shape[1], np.nan)
    for t in range(a.shape[1]):
        have = np.flatnonzero(np.isfinite(a[:, t]) & (a[:, t] > 0))
        if have.size and np.all(np.isfinite(a[have[0]:have[-1] + 1, t]) & (a[have[0]:have[-1] + 1, t] > 0)):
            out[t] = (a[have, t] * np.asarray(slabs, float)[have]).sum()
    return out


def _slabs_of(cine, slices):
    """{slice: slab mm} of the quantified slices in stack order; None when their positions do
    not stack (repeated or unknown positions)."""
    pos = np.asarray(cine.slice_positions_mm, float)
    order = [slices[i] for i in np.argsort(pos[slices])]
    d = np.diff(pos[order])
    if len(order) < 2 or not np.all(np.isfinite(d)) or d.min() <= 0:
        return None
    return dict(zip(order, slice_slabs_mm(pos[order])))


def heart_phase(cine, per_slice, slices, mid, warnings):
    """One ED and one ES for the heart (docs/indices.md, "Phase").

    Several slices: the frames of largest and smallest LV cavity volume, summed (area x slab) over
    the quantified slices that hold an LV cavity in every frame.  A slice that has the cavity in
    some frames only (the valve plane or the apex moving through it, or frames where the
    segmentation lost the LV) adds or removes a whole slab between frames, a step in the curve
    that is not ejection; it stays in the volumes.  When no slice has the cavity in every frame:
    the volume of all quantified slices, over the frames where it is known (a frame with a gap
    inside the stack cannot be ED or ES).  When fewer than two frames have a volume, or a single
    slice is quantified: that slice's (the mid slice's) own cavity area curve.

    Returns dict(ed, es, curve (T,) mL or mm^2, unit, slices (those summed), source (text))."""
    T = cine.n_frames
    cav = {z: np.asarray(per_slice[z].cavity_area, float) for z in slices}
    if len(slices) > 1:
        slabs = _slabs_of(cine, slices) or {z: 1.0 for z in slices}
        whole = [z for z in slices if np.all(np.isfinite(cav[z]) & (cav[z] > 0))]
        if whole:
            curve = sum(cav[z] * slabs[z] for z in whole) / 1000.0
            ed, es = ed_es_frames(curve)
            left = [z for z in slices if z not in whole and np.isfinite(cav[z]).any()]
            return dict(ed=ed, es=es, curve=curve, unit="mL", slices=whole,
                        source=f"LV cavity volume of the {len(whole)} quantified slice(s) with an LV cavity in "
                               "every frame" + (f" (left out: {', '.join(map(str, left))})" if left else ""))
        pos = np.asarray(cine.slice_positions_mm, float)
        order = sorted(slices, key=lambda z: pos[z])
        curve = _stack_sum(np.array([cav[z] for z in order]), [slabs[z] for z in order]) / 1000.0
        known = np.isfinite(curve)
        if known.sum() >= 2:
            ed, es = ed_es_frames(curve)
            warnings.append("no quantified slice has an LV cavity in every frame: ED/ES from the LV volume of "
                            f"the {int(known.sum())} of {T} frames where it is known")
            return dict(ed=ed, es=es, curve=curve, unit="mL", slices=list(order),
                        source="LV cavity volume of all quantified slices, frames where it is known")
        warnings.append("the LV cavity volume is known in fewer than 2 frames: ED/ES from the cavity area "
                        f"of slice {mid}")
    idx = per_slice[mid]
    return dict(ed=int(idx.ed), es=int(idx.es), curve=np.asarray(idx.cavity_area, float), unit="mm2",
                slices=[mid], source=f"LV cavity area of slice {mid}")


def stack_volumes(cine, per_slice, labels, slices, warnings, ed=None, es=None):
    """LV volumes by summation of discs when the whole stack was quantified (no base/apex correction).

    ed, es: the study's ED and ES frames (`heart_phase`); EDV and ESV are the volumes there.  None:
    the frames of largest and smallest volume."""
    if len(slices) < 3 or len(slices) != cine.n_slices:
        return {}
    pos = np.asarray(cine.slice_positions_mm, float)
    order = [slices[i] for i in np.argsort(pos[slices])]
    d = np.diff(pos[order])
    if not np.all(np.isfinite(d)) or d.min() <= 0:
        return {}
    slabs = slice_slabs_mm(pos[order])
    spacing = float(np.median(d))
    if d.max() - d.min() > max(0.1, 0.02 * spacing):
        warnings.append(f"slices are unevenly spaced ({d.min():.3g}-{d.max():.3g} mm apart): each slice's areas "
                        "count for half the distance to each neighbour in the volumes and mass")
    cav_areas = np.array([per_slice[z].cavity_area for z in order], float)
    myo_areas = np.array([_myocardium_areas(per_slice[z], labels[:, z], cine.spacing) for z in order])
    has_cavity = np.isfinite(cav_areas) & (cav_areas > 0)
    for t in range(cav_areas.shape[1]):       # solid myocardium is a cap only beyond the cavity's
        k = np.flatnonzero(has_cavity[:, t])  # ends; inside them it is a lost cavity (a gap)
        if k.size:
            inside = np.zeros(len(order), bool)
            inside[k[0]:k[-1] + 1] = True
            myo_areas[inside & ~has_cavity[:, t], t] = np.nan
    cav = _stack_sum(cav_areas, slabs) / 1000.0
    myo = _stack_sum(myo_areas, slabs) / 1000.0
    known = np.isfinite(cav)
    if not known.any():
        warnings.append("no frame has an LV cavity on consecutive slices: volumes, EF and mass not computed")
        return {}
    if not known.all():
        warnings.append(f"LV volume not computed for frame(s) {', '.join(map(str, np.flatnonzero(~known)))}: "
                        "a slice inside the stack has no LV cavity there (EDV/ESV and EF are not given if that is the heart's ED or ES)")
    if ed is None or es is None or ed < 0 or es < 0:
        ed, es = ed_es_frames(cav)
    edv, esv = float(cav[ed]), float(cav[es])
    if not (np.isfinite(edv) and np.isfinite(esv)):
        warnings.append(f"the LV volume is not known at the study's ED (frame {ed}) or ES (frame {es}): "
                        "EDV/ESV/SV/EF not computed")
    mass = float(myo[ed]) * MYOCARDIUM_DENSITY_G_PER_ML if np.isfinite(myo[ed]) else None

    def rounded(v, nd=1):
        return round(float(v), nd) if v is not None and np.isfinite(v) else None

    def listed(x):
        return [round(float(v), 2) if np.isfinite(v) else None for v in x]
    slab_of = dict(zip(order, slabs))
    return {"slice_spacing_mm": round(spacing, 3),
            "slice_slab_mm": [round(float(slab_of[z]), 3) for z in range(cine.n_slices)],
            "cavity_volume_ml": listed(cav),
            "myocardium_volume_ml": listed(myo), "ed_frame": int(ed), "es_frame": int(es),
            "edv_ml": rounded(edv), "esv_ml": rounded(esv), "sv_ml": rounded(edv - esv),
            "ef_percent": rounded(100.0 * (edv - esv) / edv) if np.isfinite(edv) and edv > 0 else None,
            "lv_mass_ed_g": round(mass, 1) if mass is not None else None,
            "note": "summation of discs over the short-axis stack: each slice's area x its slab (half the "
                    "centre-to-centre distance to each neighbour; slice thickness is not used), no base/apex "
                    "correction; EDV/ESV at the study's ED/ES (summary.json 'phase_curve'); mass = myocardial volume at ED (apical slices of solid myocardium included) "
                    f"x {MYOCARDIUM_DENSITY_G_PER_ML} g/mL; null where a slice inside the stack has no LV "
                    "cavity (or myocardium) in that frame"}
