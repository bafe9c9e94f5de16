"""Run the spatio-temporal network on slices: masks in, indices (mm) and phase out."""
from __future__ import annotations

import numpy as np

from cardiacquan.models import as_quan_net
from cardiacquan.quannet.encoding import array_to_indices, decode_phase, from_scale_free, prepare_masks, resample_time
from cardiacquan.quannet.network import QuanNet


def run_network(qn: QuanNet, x, batch_size=16):
    """x (B, T, S, S, 2) -> (z indices (B, T, 11) normalised, phase prob (B, T))."""
    x = np.asarray(x, np.float32)
    outs_z, outs_p = [], []
    for i in range(0, len(x), batch_size):
        out = qn.model.predict_on_batch(x[i:i + batch_size])
        outs_z.append(np.asarray(out["indices"], float))
        outs_p.append(np.asarray(out["phase"], float))
    if not outs_z:
        return np.zeros((0, qn.n_frames, 11)), np.zeros((0, qn.n_frames))
    return np.concatenate(outs_z), np.concatenate(outs_p)


def predict_indices_many(slices, model=None, batch_size=16):
    """Several slices in one batch.  `slices`: list of (labels (T,R,C), spacing, direction) or of
    dicts with those keys (+ optional septum_angle_deg, mirrored).  Returns a list of
    `predict_indices` dicts."""
    qn = as_quan_net(model)
    xs, geoms, Ts = [], [], []
    for s in slices:
        if isinstance(s, dict):
            lab, sp, dr = s["labels"], s["spacing"], s.get("direction")
            orient = {k: s[k] for k in ("septum_angle_deg", "mirrored") if s.get(k) is not None}
        else:
            lab, sp, dr = s
            orient = {}
        lab = np.asarray(lab)
        lab = lab[None] if lab.ndim == 2 else lab
        x, g = prepare_masks(lab, sp, dr, n_frames=qn.n_frames, fill_radius_px=qn.fill_radius_px, size=qn.size,
                             **orient)
        xs.append(x)
        geoms.append(g)
        Ts.append(lab.shape[0])
    z, p = run_network(qn, np.stack(xs) if xs else np.zeros((0,)), batch_size=batch_size)
    results = []
    for k, (g, T) in enumerate(zip(geoms, Ts)):
        if g is None:
            y = np.full((T, 11), np.nan)
            prob = np.full(T, np.nan)
            phase, ed, es = np.zeros(T, np.int64), -1, -1
        else:
            y_px = qn.denormalise(z[k])
            y = from_scale_free(resample_time(y_px, T), g.scale_mm)
            prob = np.clip(resample_time(p[k], T), 0.0, 1.0)
            phase, ed, es = decode_phase(prob)
        r = array_to_indices(y)
        r.update(indices=y, phase_prob=prob, phase=phase, ed=int(ed), es=int(es),
                 crop=None if g is None else g.to_dict())
        results.append(r)
    return results


def predict_indices(labels, spacing, direction=None, model=None, **orient) -> dict:
    """Network estimate for one slice.

    labels (T, R, C) uint8 in the project's label convention; spacing (row_mm, col_mm);
    direction the cine's 3x3 direction or None; model a QuanNet, a path to a .keras file, a bare
    Keras model (no normalisation) or None (the bundled weights).

    Returns per-frame arrays in mm / mm^2: cavity_area, myocardium_area (T,), dims (T, 3),
    rwt (T, 6), indices (T, 11), phase_prob (T,) (probability of systole), phase (T,) (one
    systolic interval), ed, es, and crop (the crop geometry used)."""
    d = {"labels": labels, "spacing": spacing, "direction": direction, **orient}
    return predict_indices_many([d], model=model)[0]
