"""Final per-frame values: network, geometry, or a per-index weighted fusion of the two.

The choice is made on held-out data that neither the network nor anything else was fitted
on (`choose_fusion`), and applied to any slice (`apply_fusion`).  For every index the
candidates are w * network + (1 - w) * geometry for w in 0, 0.1, ..., 1: w = 0 is the pure
geometry and w = 1 the pure network, so on the data it is chosen on the final value is never
worse than the better of the two.  A blend is only kept when it beats the better pure source
by `min_gain` (relative), so that noise in a small held-out set does not pick a blend.

The phase is chosen the same way among: the network's phase head (decoded into one systolic
interval per cycle), the geometry's area curve (ED = largest, ES = smallest cavity area) and
the area curve of the final A1.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cardiacquan.contract import INDEX_NAMES
from cardiacquan.measure.indices import slice_indices
from cardiacquan.measure.phase import ed_es_frames, phase_from_ed_es
from cardiacquan.models import as_quan_net, bundled_quan_net, quan_net_path
from cardiacquan.quannet.encoding import decode_phase
from cardiacquan.quannet.predict import predict_indices

WEIGHTS = np.round(np.linspace(0.0, 1.0, 11), 2)
PHASE_SOURCES = ("network", "geometry", "final-area")
DEFAULT_CHOICE = {"weights": {k: 0.0 for k in INDEX_NAMES}, "phase_source": "geometry",
                  "note": "default (no held-out measurement): geometry everywhere"}
#: what the product does with masks a user gives (expert or corrected): their geometry, which is
#: the index definition itself; the stored fusion is for the segmentation network's masks
GIVEN_MASKS_CHOICE = dict(DEFAULT_CHOICE, note="masks given by the user: their geometry")


def source_label(w: float) -> str:
    w = float(w)
    if w >= 1.0:
        return "network"
    if w <= 0.0:
        return "geometry"
    return f"fusion {w:.1f}*network+{1 - w:.1f}*geometry"


def _blend(net, geo, w):
    net = np.asarray(net, float)
    geo = np.asarray(geo, float)
    f = w * net + (1.0 - w) * geo
    f = np.where(np.isfinite(geo), f, net)        # a missing value falls back on the other source
    return np.where(np.isfinite(net), f, geo)


def _mae(a, b):
    d = np.abs(np.asarray(a, float) - np.asarray(b, float))
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def phase_from_area_curve(areas):
    """(phase, ed, es) from a cavity-area curve, tolerating NaN frames (ignored)."""
    a = np.asarray(areas, float)
    ed, es = ed_es_frames(a)
    if ed < 0:
        return np.zeros(a.size, np.int64), -1, -1
    return phase_from_ed_es(a.size, ed, es).astype(np.int64), ed, es


def phases(source, net_prob, geo_a1, final_a1):
    """(phase (T,), ed, es) of one slice from the named source."""
    if source == "network" and net_prob is not None and np.isfinite(net_prob).all():
        return decode_phase(net_prob)
    if source == "final-area":
        return phase_from_area_curve(final_a1)
    return phase_from_area_curve(geo_a1)


def choose_fusion(net, geo, truth, net_prob=None, truth_phase=None, weights=WEIGHTS, min_gain=0.01, data=""):
    """Per-index weights and the phase source that minimise the held-out MAE / error rate.

    net, geo, truth: (N, T, 11) mm; net_prob (N, T) systole probability; truth_phase (N, T).
    Returns a JSON-able dict: weights {index: w}, phase_source, and the held-out figures
    (MAE of network, geometry and final per index, phase error rate per source)."""
    net, geo, truth = (np.asarray(a, float) for a in (net, geo, truth))
    chosen, figures = {}, {}
    for j, name in enumerate(INDEX_NAMES):
        maes = np.array([_mae(_blend(net[..., j], geo[..., j], w), truth[..., j]) for w in weights])
        m_geo, m_net = maes[0], maes[-1]
        k = int(np.nanargmin(maes)) if np.isfinite(maes).any() else 0
        best_pure_w = 1.0 if (np.isfinite(m_net) and (not np.isfinite(m_geo) or m_net < m_geo)) else 0.0
        best_pure = min(v for v in (m_geo, m_net) if np.isfinite(v)) if np.isfinite([m_geo, m_net]).any() else np.nan
        w = float(weights[k])
        if 0.0 < w < 1.0 and not maes[k] < best_pure * (1.0 - min_gain):
            w = best_pure_w
        chosen[name] = w
        figures[name] = {"network": m_net, "geometry": m_geo,
                         "final": _mae(_blend(net[..., j], geo[..., j], w), truth[..., j])}
    choice = {"weights": chosen, "data": data, "n_samples": int(net.shape[0]), "holdout_mae": figures}
    if truth_phase is not None:
        truth_phase = np.asarray(truth_phase)
        fin_a1 = np.stack([_blend(net[n, :, 0], geo[n, :, 0], chosen["A1"]) for n in range(len(net))]) \
            if len(net) else np.zeros((0, truth_phase.shape[-1]))
        errs = {}
        for src in PHASE_SOURCES:
            if src == "network" and net_prob is None:
                continue
            wrong = []
            for n in range(len(net)):
                p = phases(src, None if net_prob is None else net_prob[n], geo[n, :, 0], fin_a1[n])[0]
                ok = truth_phase[n] >= 0
                wrong.append(p[ok] != truth_phase[n][ok])
            errs[src] = float(np.concatenate(wrong).mean()) if wrong else float("nan")
        finite = {k: v for k, v in errs.items() if np.isfinite(v)}
        # ties go to the simpler, model-free source
        order = ["geometry", "final-area", "network"]
        choice["phase_source"] = min(finite, key=lambda k: (finite[k], order.index(k))) if finite else "geometry"
        choice["holdout_phase_error"] = errs
    else:
        choice["phase_source"] = "geometry"
    choice["sources"] = {k: source_label(w) for k, w in chosen.items()}
    return choice


def apply_fusion(net_y, geo_y, choice=None, net_prob=None) -> dict:
    """Final values of one slice.  net_y, geo_y (T, 11) mm (NaN where missing).

    Returns indices (T, 11), source (11 strings, per index), phase (T,), ed, es, phase_source."""
    choice = choice or DEFAULT_CHOICE
    net_y = np.asarray(net_y, float)
    geo_y = np.asarray(geo_y, float)
    ws = [float(choice["weights"].get(k, 0.0)) for k in INDEX_NAMES]
    final = np.column_stack([_blend(net_y[:, j], geo_y[:, j], w) for j, w in enumerate(ws)])
    src = choice.get("phase_source", "geometry")
    phase, ed, es = phases(src, net_prob, geo_y[:, 0], final[:, 0])
    return {"indices": final, "source": [source_label(w) for w in ws], "phase": phase, "ed": ed, "es": es,
            "phase_source": src}


def apply_fusion_batch(net, geo, choice=None, net_prob=None):
    """(N, T, 11) arrays -> (final (N, T, 11), phase (N, T))."""
    fin, ph = [], []
    for n in range(len(net)):
        r = apply_fusion(net[n], geo[n], choice, None if net_prob is None else net_prob[n])
        fin.append(r["indices"])
        ph.append(r["phase"])
    T = np.shape(net)[1] if np.ndim(net) > 1 else 0
    return (np.stack(fin) if fin else np.zeros((0, T, 11)), np.stack(ph) if ph else np.zeros((0, T), int))


def quantify_slice(labels, spacing, direction=None, model=None, geometry=None) -> dict:
    """Network, geometry and final per-frame values of one slice's label cine (T, R, C).

    model: a QuanNet, a path, or None (the bundled weights); geometry: a precomputed
    `geometry.slice_indices` result (computed here when None).  The fusion is the one
    stored with the weights (DEFAULT_CHOICE, i.e. geometry, when none is stored).

    Returns network / geometry / final (T, 11) arrays in mm (INDEX_NAMES order), source
    (per index: "network", "geometry" or "fusion w*network+(1-w)*geometry"), phase (T,),
    ed, es, phase_source, network_phase_prob (T,), fusion (the choice with the held-out
    figures behind it) and validation (the figures stored with the weights)."""
    qn = as_quan_net(model)
    net = predict_indices(labels, spacing, direction, model=qn)
    geo = geometry if geometry is not None else slice_indices(labels, spacing, direction)
    geo_y = geo.as_array() if hasattr(geo, "as_array") else np.asarray(geo, float)
    choice = qn.meta.get("fusion") or DEFAULT_CHOICE
    fin = apply_fusion(net["indices"], geo_y, choice, net["phase_prob"])
    return {"network": net["indices"], "geometry": geo_y, "final": fin["indices"], "source": fin["source"],
            "phase": fin["phase"], "ed": fin["ed"], "es": fin["es"], "phase_source": fin["phase_source"],
            "network_phase_prob": net["phase_prob"], "index_names": list(INDEX_NAMES), "fusion": choice,
            "validation": qn.meta.get("validation", {})}


# ----------------------------------------------------------------------------------------
# The pipeline's hook: final values of one slice from the bundled network + geometry
# ----------------------------------------------------------------------------------------
def _compact_validation(validation):
    """{split: {group: {source: {group_mae, phase_error, n_frames}}}} from the sidecar figures."""
    out = {}
    for split, groups in (validation or {}).items():
        for g, srcs in groups.items():
            out.setdefault(split, {})[g] = {
                s: {"group_mae": {k: (None if v is None else round(float(v), 3)) for k, v in f["group_mae"].items()},
                    "phase_error": None if f.get("phase_error") is None else round(float(f["phase_error"]), 4),
                    "n_frames": f.get("n_frames")} for s, f in srcs.items()}
    return out


def bundled_info(qn, path=None) -> dict:
    """What summary.json records about the final values: the choice and the figures behind it."""
    choice = qn.meta.get("fusion") or DEFAULT_CHOICE
    path = path or quan_net_path()
    return {"final_values": "per index: network, geometry or a fusion of the two, chosen on held-out data "
                            "(see index_sources / the csv 'source' column)",
            "quan_net": {"file": Path(path).name,
                         "method": "spatio-temporal multi-task network (Vesal et al., IEEE JBHI 2021)",
                         "fusion_weights_network": choice.get("weights"), "index_sources": choice.get("sources"),
                         "phase_source": choice.get("phase_source"), "chosen_on": choice.get("data", choice.get("note")),
                         "holdout_mae": choice.get("holdout_mae"),
                         "holdout_phase_error": choice.get("holdout_phase_error"),
                         "validation": _compact_validation(qn.meta.get("validation"))}}


def apply_bundled_fusion(idx, labels_tz, cine, model=None, backend=None):
    """Pipeline hook: (final SliceIndices, 11 source names, info for summary.json).

    idx: the geometry (`geometry.slice_indices`) of the slice's label cine labels_tz (T, R, C).
    Without bundled weights the geometry is returned unchanged."""
    qn = as_quan_net(model) if model is not None else bundled_quan_net(backend)
    if qn is None:
        return idx, ["geometry"] * 11, {"final_values": "geometry of the masks (LVQuan definitions)",
                                        "quan_net": f"not bundled ({quan_net_path()} missing)"}
    net = predict_indices(labels_tz, cine.spacing, cine.direction, model=qn)
    geo_y = idx.as_array()
    choice = qn.meta.get("fusion") or DEFAULT_CHOICE
    fin = apply_fusion(net["indices"], geo_y, choice, net["phase_prob"])
    y = fin["indices"]
    new = dataclasses.replace(idx, cavity_area=y[:, 0].copy(), myocardium_area=y[:, 1].copy(),
                              dims=y[:, 2:5].copy(), rwt=y[:, 5:11].copy(),
                              phase=np.asarray(fin["phase"], np.int8), ed=int(fin["ed"]), es=int(fin["es"]))
    return new, list(fin["source"]), bundled_info(qn, None if model is not None else quan_net_path())
