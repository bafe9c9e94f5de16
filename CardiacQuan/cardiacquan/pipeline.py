"""Quantify a cine: segmentation (or given labels) -> per-frame indices, phase, sectors.

This is the one entry point the command line, the Slicer module's engine process and batch
scripts share, so all of them produce identical numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM
from cardiacquan.io.cine import Cine
from cardiacquan.measure.indices import SliceIndices, sector_map, slice_indices
from cardiacquan.measure.phase import phase_from_ed_es
from cardiacquan.measure.segments import aha_segments
from cardiacquan.measure.volumes import heart_phase, stack_volumes
from cardiacquan.models import load_seg_model
from cardiacquan.quannet.fusion import apply_bundled_fusion
from cardiacquan.segmentation.inference import segment_cine


@dataclass
class QuantResult:
    cine: Cine
    labels: np.ndarray                       # (T, Z, R, C) uint8
    sectors: np.ndarray                      # (T, Z, R, C) uint8, 0 or RWT sector 1..6
    slices: list                             # quantified slice indices
    per_slice: dict                          # z -> SliceIndices (final values)
    sources: dict                            # z -> list of 11 source names ('geometry', 'network', ...)
    mid_slice: int
    ed_frame: int
    es_frame: int
    segmented_by: str                        # 'network' or 'given labels'
    lv_found: Optional[np.ndarray] = None    # (T, Z) bool when the network segmented
    warnings: list = field(default_factory=list)
    quan_info: dict = field(default_factory=dict)
    volumes: dict = field(default_factory=dict)
    phase: Optional[np.ndarray] = None       # (T,) int8: the heart's phase, 1 systole / 0 diastole
    phase_curve: dict = field(default_factory=dict)   # heart_phase(): the curve ED/ES come from
    segments: dict = field(default_factory=dict)      # aha_segments(): AHA 16 segments


def choose_slices(spec, n_slices, labels=None, lv_found=None):
    """'all', 'mid', an int or a comma list -> sorted slice indices."""
    if spec is None or spec == "all":
        return list(range(n_slices))
    if spec == "mid":
        return [mid_ventricular_slice(n_slices, labels)]
    try:
        idx = [int(s) for s in str(spec).split(",")] if not isinstance(spec, (list, tuple)) else list(spec)
    except ValueError:
        raise CardiacQuanError(f"--slices must be 'all', 'mid' or slice numbers, got {spec!r}")
    bad = [i for i in idx if not 0 <= i < n_slices]
    if bad:
        raise CardiacQuanError(f"slice {bad[0]} does not exist (the cine has {n_slices} slices, 0..{n_slices - 1})")
    return sorted(set(idx))


def mid_ventricular_slice(n_slices, labels=None):
    """Middle of the slices that hold an LV cavity (between base and apex); the middle slice
    of the stack when that is unknown."""
    if labels is not None:
        has = np.flatnonzero((labels == LV_CAVITY).any(axis=(0, 2, 3)))
        if has.size:
            return int(has[len(has) // 2])
    return n_slices // 2


def _sectors_for_slice(lab_tz, idx: SliceIndices, spacing, direction):
    out = np.zeros_like(lab_tz)
    for t in range(lab_tz.shape[0]):
        if idx.valid[t]:
            out[t] = sector_map(lab_tz[t], spacing, direction, septum_angle_deg=float(idx.septum_angle_deg[t]))
    return out


def quantify(cine: Cine, labels=None, slices="all", progress: Optional[Callable] = None,
             seg_model=None, use_quan_net=True, quan_net=None, backend=None, precision=None) -> QuantResult:
    """Quantify `cine`. labels: (T, Z, R, C) uint8 to quantify as given (e.g. corrected by a
    clinician), or None to segment with the bundled network.  seg_model / quan_net: models to
    use instead of the bundled ones (evaluation of other weights through this same path);
    backend: how the bundled ones run ('onnxruntime', the default, or 'tensorflow'); precision: the
    segmentation's fine pass in fp32 (default) or int8 (ONNX Runtime)."""
    cine.validate_for_quantification()
    T, Z = cine.n_frames, cine.n_slices
    warnings = list(cine.metadata.get("warnings", []))
    lv_found = None
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != cine.image.shape:
            raise CardiacQuanError(f"labels are {'x'.join(map(str, labels.shape))}, the cine is "
                                   f"{'x'.join(map(str, cine.image.shape))}")
        if labels.size and (labels.max() > 3 or labels.min() < 0):
            raise CardiacQuanError("labels must be 0 background, 1 RV, 2 LV myocardium, 3 LV cavity")
        labels = labels.astype(np.uint8)
        sel = choose_slices(slices, Z, labels)
        segmented_by = "given labels"
    else:
        seg_model = seg_model if seg_model is not None else load_seg_model(backend=backend, precision=precision)
        if slices == "mid" and Z > 1:
            # locate the LV on every slice cheaply first? The full stack is cheap enough
            # relative to a study read; segment all, then pick the mid slice from them.
            seg = segment_cine(cine, model=seg_model, progress=progress)
        else:
            seg = segment_cine(cine, model=seg_model, progress=progress,
                               slices=choose_slices(slices, Z))
        labels, lv_found = seg.labels, seg.lv_found
        warnings += seg.warnings
        sel = choose_slices(slices, Z, labels)
        segmented_by = "network"
    per_slice, sources = {}, {}
    sectors = np.zeros_like(labels)
    quan_info = {} if segmented_by == "network" else {
        "final_values": "geometry of the given masks (the indices are defined on the masks; the "
                        "network/geometry fusion applies to the segmentation network's masks only)"}
    for z in sel:
        idx = slice_indices(labels[:, z], cine.spacing, cine.direction)
        if not idx.valid.any():
            warnings.append(f"slice {z}: LV myocardium but no cavity in any frame (the apical cap?): in the "
                            "myocardial volume and mass, no indices" if (labels[:, z] == MYOCARDIUM).any() else
                            f"slice {z}: no LV cavity in any frame (outside the ventricle?)")
        elif not idx.valid.all():
            warnings.append(f"slice {z}: no LV cavity in {int((~idx.valid).sum())} of {T} frames")
        no_myo = np.flatnonzero(idx.valid & ~np.isfinite(idx.myocardium_area))
        if no_myo.size:
            warnings.append(f"slice {z}: no myocardium in frame(s) {', '.join(map(str, no_myo))}: "
                            "myocardium area and wall thicknesses left empty")
        src = ["geometry"] * 11
        # the network/geometry fusion was chosen for the segmentation network's masks; on masks
        # the user gives (expert or corrected) the indices are their geometry by definition,
        # and validation shows any fusion only adds error there
        if use_quan_net and segmented_by == "network" and idx.valid.all():
            idx, src, info = apply_bundled_fusion(idx, labels[:, z], cine, model=quan_net, backend=backend)
            quan_info.update(info)
        per_slice[z], sources[z] = idx, src
        sectors[:, z] = _sectors_for_slice(labels[:, z], idx, cine.spacing, cine.direction)
        if any(s == "image-axes" for s in idx.orientation_source):
            warnings.append(f"slice {z}: no right ventricle in some frames, sectors oriented by the image axes")
    if not any(per_slice[z].valid.any() for z in sel):
        where = "the given labels hold" if segmented_by == "given labels" else "the segmentation found"
        raise CardiacQuanError(f"{where} no LV cavity in any frame of the quantified slice(s) "
                               f"{', '.join(map(str, sel))}: nothing to quantify (is this a short-axis cine of the heart?)")
    mid = mid_ventricular_slice(Z, labels) if len(sel) > 1 else sel[0]
    if mid not in per_slice:
        mid = sel[len(sel) // 2]
    # one ED/ES for the heart: every slice of a gated cine is the same heart at the same times
    heart = heart_phase(cine, per_slice, [z for z in sel if per_slice[z].valid.any()], mid, warnings)
    ed, es = heart["ed"], heart["es"]
    volumes = stack_volumes(cine, per_slice, labels, sel, warnings, ed=ed, es=es)
    segments = aha_segments(cine, per_slice, sel, ed, es, warnings)
    return QuantResult(cine=cine, labels=labels, sectors=sectors, slices=sel, per_slice=per_slice,
                       sources=sources, mid_slice=mid, ed_frame=int(ed), es_frame=int(es),
                       segmented_by=segmented_by, lv_found=lv_found, warnings=warnings,
                       quan_info=quan_info, volumes=volumes, phase=phase_from_ed_es(T, ed, es),
                       phase_curve=heart, segments=segments)

