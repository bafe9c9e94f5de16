"""Segment every frame of a cine: find the LV on the full field of view, then segment a
fixed-size physical region around it in every frame, and return labels on the input grid.

Two passes because real studies show the heart anywhere in a 250–400 mm field of view at
0.7–2.1 mm pixels: a coarse pass on the whole frame (resampled to the network's pixel size)
locates the LV; the fine pass then sees the heart where training showed it, and one region
per slice for the whole cycle keeps masks from jittering between frames.  Probabilities go
back to the input's own pixel grid before the arg-max, so labels land in the input geometry
exactly.  Post-processing enforces anatomy (one LV cavity, myocardium around it, no holes,
no islands); a frame with no LV found is flagged, never silently filled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.models import load_seg_model
from cardiacquan.segmentation.intensity import normalize_intensity
from cardiacquan.segmentation.network import PATCH, WORK_SPACING_MM
from cardiacquan.segmentation.resample import patch_affine, patch_footprint, patch_to_native, sample_patch

COARSE_MAX_FOV_MM = 480.0   # larger fields of view are centre-cropped for the coarse pass
# Pixels per network call: 8 fine-pass patches.  The network's activations grow with the batch
# (a 12-slice study peaked at 2.2 GB with 32 patches per call and ONNX Runtime's arena); 8
# patches keep the whole process near 0.7 GB at the same speed on 2 cores.
PIXELS_PER_CALL = 8 * PATCH * PATCH


@dataclass
class SegmentationResult:
    labels: np.ndarray                 # (T, Z, R, C) uint8
    lv_found: np.ndarray               # (T, Z) bool
    centres_rc: np.ndarray             # (Z, 2) fine-pass region centre per slice (pixels)
    warnings: list = field(default_factory=list)


def _predict(model, patches):
    """Probabilities of a stack of patches, PIXELS_PER_CALL pixels per network call."""
    x = np.asarray(patches, np.float32)[..., None]
    step = max(1, PIXELS_PER_CALL // (x.shape[1] * x.shape[2]))
    return np.concatenate([np.asarray(model.predict_on_batch(x[i:i + step])) for i in range(0, len(x), step)])


def _predict_tta(model, patches, tta):
    """Average of the predictions on mirrored/rotated copies (tta: False, True = one flip, or an int
    number of dihedral transforms 1..8)."""
    n = 2 if tta is True else (1 if not tta else int(tta))
    acc = 0.0
    for k in range(n):
        rot, flip = k % 4, k >= 4
        if n == 2:
            rot, flip = 0, k == 1
        x = patches[:, :, ::-1] if flip else patches
        x = np.rot90(x, rot, axes=(1, 2))
        p = np.rot90(_predict(model, np.ascontiguousarray(x)), -rot, axes=(1, 2))
        acc = acc + (p[:, :, ::-1] if flip else p)
    return acc / n


def _coarse_grid(frame_shape, spacing):
    """(M, o, n): the coarse pass's square grid over the whole field of view at the working pixel size."""
    R, C = frame_shape
    fov = min(max(R * spacing[0], C * spacing[1]), COARSE_MAX_FOV_MM)
    n = int(np.ceil(fov / WORK_SPACING_MM / 16.0) * 16)
    centre = ((R - 1) / 2.0, (C - 1) / 2.0)
    M, o = patch_affine(centre, spacing, (n, n), WORK_SPACING_MM)
    return M, o, n


def _coarse_centre(probs, M, o):
    """LV centre (row, col) from the coarse pass's probabilities of a few frames of one slice, and
    the cavity area behind it (mm^2); (None, 0) if no LV is found."""
    heart = (probs[..., LV_CAVITY] + probs[..., MYOCARDIUM]).mean(axis=0) > 0.5
    cav = probs[..., LV_CAVITY].mean(axis=0) > 0.5
    lab, nlab = ndimage.label(heart)
    if nlab == 0 or not cav.any():
        return None, 0.0
    # the heart component holding the most cavity
    scores = ndimage.sum(cav, lab, index=np.arange(1, nlab + 1))
    best = int(np.argmax(scores)) + 1
    ij = np.argwhere((lab == best) & cav).mean(axis=0)
    rc = M @ ij + o
    return rc, float(scores.max()) * WORK_SPACING_MM ** 2


def _robust_centres(cands, areas, shape, spacing, warnings, report=None):
    """One centre per slice; slices that disagree with the stack (or found nothing) take the
    median, since the LV axis is nearly perpendicular to short-axis slices."""
    Z = len(cands)
    found = [c for c in cands if c is not None]
    if not found:
        return None
    # weight the median by cavity size: mid-ventricular slices are the most reliable
    pts = np.array([c for c in cands if c is not None])
    w = np.array([a for c, a in zip(cands, areas) if c is not None])
    order = np.argsort(w)[::-1]
    ref = np.median(pts[order[: max(1, (len(order) + 1) // 2)]], axis=0)
    out = np.zeros((Z, 2))
    for z, c in enumerate(cands):
        if c is None or np.hypot(*((np.asarray(c) - ref) * spacing)) > 40.0:
            if c is not None and (report is None or z in report):
                warnings.append(f"slice {z}: LV candidate far from the others, using the stack's centre")
            out[z] = ref
        else:
            out[z] = c
    return out


def clean_labels(lab: np.ndarray) -> np.ndarray:
    """Anatomical post-processing of one frame's labels (R, C)."""
    out = np.zeros_like(lab)
    cav = lab == LV_CAVITY
    if not cav.any():
        return out
    cc, n = ndimage.label(cav)
    if n > 1:
        cav = cc == (np.argmax(ndimage.sum(cav, cc, range(1, n + 1))) + 1)
    cav = ndimage.binary_fill_holes(cav)
    myo = (lab == MYOCARDIUM) & ~cav
    if myo.any():
        cc, n = ndimage.label(myo | cav)
        keep = cc == cc[tuple(np.argwhere(cav)[0])]
        myo = myo & keep
    if not myo.any():      # a cavity with no wall around it is not an LV (a vessel, the atrium)
        cav = np.zeros_like(cav)
    heart = ndimage.binary_fill_holes(cav | myo)
    cav = cav | (heart & ~cav & ~myo)           # enclosed gaps belong to the cavity
    rv = (lab == RV) & ~heart
    if rv.any():
        cc, n = ndimage.label(rv)
        rv = cc == (np.argmax(ndimage.sum(rv, cc, range(1, n + 1))) + 1)
        rv = ndimage.binary_fill_holes(rv) & ~heart
    out[rv] = RV
    out[myo] = MYOCARDIUM
    out[cav] = LV_CAVITY
    return out


def segment_cine(cine, model=None, progress=None, tta=True, slices=None) -> SegmentationResult:
    """Labels (T, Z, R, C) for every frame of `cine` (slices: iterable of indices, default all)."""
    model = model if model is not None else load_seg_model()
    T, Z, R, C = cine.image.shape
    slices = list(range(Z)) if slices is None else list(slices)
    spacing = cine.spacing
    warnings = []
    coarse_frames = sorted({0, T // 3, (2 * T) // 3})
    norm = np.empty((T, Z, R, C), np.float32)
    for z in range(Z):
        for t in (range(T) if z in slices else coarse_frames):
            norm[t, z] = normalize_intensity(cine.image[t, z])
    total = len(slices) * T
    if progress:
        progress(0, total, "locating the heart")
    # the heart is located on every slice even when only some are segmented: a single apical
    # or basal slice is placed by the whole stack, exactly as when all slices are asked for
    M, o, n = _coarse_grid((R, C), spacing)
    coarse = _predict(model, [sample_patch(norm[t, z], M, o, (n, n)) for z in range(Z) for t in coarse_frames])
    coarse = coarse.reshape((Z, len(coarse_frames)) + coarse.shape[1:])   # one network call for the stack
    cands, areas = [], []
    for z in range(Z):
        c, a = _coarse_centre(coarse[z], M, o)
        cands.append(c)
        areas.append(a)
    centres = _robust_centres(cands, areas, (R, C), np.asarray(spacing), warnings, report=set(slices))
    labels = np.zeros((T, Z, R, C), np.uint8)
    lv_found = np.zeros((T, Z), bool)
    all_centres = np.full((Z, 2), np.nan)
    if centres is None:
        warnings.append("no left ventricle found in any slice")
        return SegmentationResult(labels, lv_found, all_centres, warnings)
    done = 0
    for z in slices:
        all_centres[z] = centres[z]
        M, o = patch_affine(centres[z], spacing, (PATCH, PATCH), WORK_SPACING_MM)
        patches = np.stack([sample_patch(norm[t, z], M, o, (PATCH, PATCH)) for t in range(T)])
        probs = _predict_tta(model, patches, tta)
        box = patch_footprint(M, o, (PATCH, PATCH), (R, C))   # outside it: background
        for t in range(T):
            native = patch_to_native(probs[t], M, o, (R, C), box=box)
            labels[t, z][box] = clean_labels(np.argmax(native, axis=-1).astype(np.uint8))
            lab = labels[t, z]
            lv_found[t, z] = bool((lab == LV_CAVITY).any())
            done += 1
            if progress:
                progress(done, total, f"slice {z + 1} of {Z}, frame {t + 1} of {T}")
    missing = [(t, z) for z in slices for t in range(T) if not lv_found[t, z]]
    if missing:
        warnings.append(f"LV not found in {len(missing)} of {total} frames (flagged, left empty)")
    return SegmentationResult(labels, lv_found, all_centres, warnings)
