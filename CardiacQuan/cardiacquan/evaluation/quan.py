"""The LVQuan table: MAE and Pearson r per index and grouped, phase error rate.

`cardiacquan evaluate` prints it side by side for the network, the engine's geometry and the
final (fused) values, on any labelled set it can read:
- `--set phantom`: phantom test cines (exact truth); inputs = the phantom masks, and the same
  masks degraded by simulated segmentation errors;
- `--set acdc-val`: pseudo-cines of the 10 ACDC validation patients; inputs = expert masks,
  simulated-error masks and, with `--predict-fn`, the segmentation model's predictions;
- `--set sunnybrook`: the Sunnybrook study; every frame segmented by the project's
  segmentation model (or `--predict-fn`, or read from `--labels`), scored on every contoured
  slice: cavity indices at the contoured ED and ES frames, myocardium area and wall
  thickness at ED (the only frame with an epicardial contour), phase on all frames ("final":
  the heart's one ED/ES, as indices.csv writes it; truth: each slice's contoured ED/ES);
- `--set npz --data FILE --split S`: any split of a `quan_data` file;
- `--set lvquan --lvquan cardiac-dig.mat`: the frames of an LVQuan18 file (expert masks).

Metrics as the challenge scores them (docs/indices.md): MAE over all frames of all
subjects; groups are the mean of their indices' MAE (areas A1, A2 in mm^2; dims D1-D3 and
RWT1-6 in mm); r is Pearson's over all frames (the group r is the mean of its indices' r);
phase error = fraction of frames with the wrong label.  Frames whose truth is missing (NaN)
are left out of that index only.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.contract import INDEX_NAMES, LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.io.datasets import read_sunnybrook_contours
from cardiacquan.io.files import read_cine, read_labels
from cardiacquan.io.output_paths import prepare_output_file
from cardiacquan.measure.indices import slice_indices
from cardiacquan.measure.phase import phase_from_ed_es
from cardiacquan.models import as_quan_net, load_quan_net
from cardiacquan.pipeline import quantify
from cardiacquan.quannet.encoding import decode_phase, from_scale_free
from cardiacquan.quannet.fusion import GIVEN_MASKS_CHOICE, apply_fusion_batch
from cardiacquan.quannet.network import to_jsonable
from cardiacquan.quannet.predict import predict_indices_many, run_network
from cardiacquan.training.quan_data import (
    build_quan_dataset,
    load_predict_fn,
    load_quan_npz,
    lvquan_arrays,
    phantom_samples,
    stack_samples,
)

GROUPS = {"areas": (0, 1), "dims": (2, 3, 4), "rwt": (5, 6, 7, 8, 9, 10)}
GROUP_UNITS = {"areas": "mm2", "dims": "mm", "rwt": "mm"}


def _pearson(a, b):
    if a.size < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def lvquan_table(pred, truth, pred_phase=None, truth_phase=None) -> dict:
    """pred, truth (..., 11) in mm; phases (...,) 0/1 (truth < 0 = unknown)."""
    p = np.asarray(pred, float).reshape(-1, 11)
    t = np.asarray(truth, float).reshape(-1, 11)
    out = {"index": {}, "group": {}, "n_frames": int(p.shape[0])}
    for j, name in enumerate(INDEX_NAMES):
        ok = np.isfinite(t[:, j])
        okp = ok & np.isfinite(p[:, j])
        d = np.abs(p[okp, j] - t[okp, j])
        out["index"][name] = {"mae": float(d.mean()) if d.size else float("nan"),
                              "r": _pearson(p[okp, j], t[okp, j]), "n": int(ok.sum()),
                              "missing_pred": int((ok & ~okp).sum())}
    for g, idx in GROUPS.items():
        maes = [out["index"][INDEX_NAMES[j]]["mae"] for j in idx]
        rs = [out["index"][INDEX_NAMES[j]]["r"] for j in idx]
        out["group"][g] = {"mae": _nanmean(maes), "r": _nanmean(rs)}
    if pred_phase is not None and truth_phase is not None:
        pp = np.asarray(pred_phase).reshape(-1)
        tp = np.asarray(truth_phase).reshape(-1)
        ok = tp >= 0
        out["phase_error"] = float(np.mean(pp[ok] != tp[ok])) if ok.any() else float("nan")
        out["phase_frames"] = int(ok.sum())
    return out


def _nanmean(v):
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _fmt(v, nd=2):
    return "   -  " if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def format_table(tables: dict, title: str = "") -> str:
    """Side-by-side text table: rows = indices, groups, phase; per source MAE and r."""
    names = list(tables)
    w = 18
    lines = []
    if title:
        lines.append(title)
    head = f"{'':<14}" + "".join(f"{n:>{w}}" for n in names)
    sub = f"{'':<14}" + "".join(f"{'MAE':>{w - 7}}{'r':>7}" for _ in names)
    lines += [head, sub]
    for name in INDEX_NAMES:
        unit = "mm2" if name in ("A1", "A2") else "mm"
        row = f"{name + ' (' + unit + ')':<14}"
        for n in names:
            e = tables[n]["index"][name]
            row += f"{_fmt(e['mae'], 1 if unit == 'mm2' else 2):>{w - 7}}{_fmt(e['r'], 3):>7}"
        lines.append(row)
    lines.append("-" * len(head))
    for g in GROUPS:
        row = f"{g + ' (' + GROUP_UNITS[g] + ')':<14}"
        for n in names:
            e = tables[n]["group"][g]
            row += f"{_fmt(e['mae'], 1 if g == 'areas' else 2):>{w - 7}}{_fmt(e['r'], 3):>7}"
        lines.append(row)
    if any("phase_error" in tables[n] for n in names):
        row = f"{'phase error':<14}"
        for n in names:
            v = tables[n].get("phase_error")
            row += f"{(_fmt(100 * v, 1) + ' %') if v is not None else '-':>{w}}"
        lines.append(row)
    nf = tables[names[0]]["n_frames"] if names else 0
    lines.append(f"({nf} frames)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Evaluating arrays: network vs geometry vs final
# ----------------------------------------------------------------------------------------
def network_mm(qn, x_uint8, scale_mm, batch_size=16):
    """Network outputs in mm for stored samples: (y (N, T, 11), systole prob (N, T))."""
    ys, ps = [], []
    for i in range(0, len(x_uint8), 64):
        z, p = run_network(qn, np.asarray(x_uint8[i:i + 64], np.float32) / 255.0, batch_size=batch_size)
        ys.append(from_scale_free(qn.denormalise(z), np.asarray(scale_mm[i:i + 64], float)))
        ps.append(p)
    if not ys:
        return np.zeros((0,) + tuple(np.shape(x_uint8)[1:2]) + (11,)), np.zeros((0,) + tuple(np.shape(x_uint8)[1:2]))
    return np.concatenate(ys), np.concatenate(ps)


def compare_sources(net, net_prob, geo, geo_phase, truth, truth_phase, choice=None):
    """{network, geometry, final} tables for (N, T, 11) arrays."""
    net_phase = np.stack([decode_phase(p)[0] for p in net_prob]) if len(net_prob) else np.zeros_like(truth_phase)
    fin, fin_phase = apply_fusion_batch(net, geo, choice, net_prob)
    return {"network": lvquan_table(net, truth, net_phase, truth_phase),
            "geometry": lvquan_table(geo, truth, geo_phase, truth_phase),
            "final": lvquan_table(fin, truth, fin_phase, truth_phase)}


def evaluate_arrays(qn, d, mask=None, choice=None):
    """Tables of the samples `mask` of a quan_data dict (x, scale_mm, y_mm, geo_mm, phase, geo_phase)."""
    m = np.ones(len(d["x"]), bool) if mask is None else np.asarray(mask, bool)
    idx = np.flatnonzero(m)
    net, prob = network_mm(qn, d["x"][idx], d["scale_mm"][idx])
    if choice is None:
        choice = qn.meta.get("fusion") if hasattr(qn, "meta") else None
    return compare_sources(net, prob, d["geo_mm"][idx], d["geo_phase"][idx], d["y_mm"][idx], d["phase"][idx], choice)


#: input groups whose masks are the truth masks themselves (quan_data): the product's final values
#: for masks a user gives are their geometry, so that is what "final" scores there
GIVEN_MASK_GROUPS = ("acdc", "phantom")


def evaluate_groups(qn, d, split, choice=None, log=print, title_prefix=""):
    """One table per input group of a split; returns {group: tables}."""
    if not np.any(d["split"] == split):
        raise CardiacQuanError(f"no cines in split {split!r} (the data has: {', '.join(sorted(set(map(str, d['split']))))})")
    out = {}
    for g in sorted(np.unique(d["group"][d["split"] == split])):
        m = (d["split"] == split) & (d["group"] == g)
        if not m.any():
            continue
        t = evaluate_arrays(qn, d, m, GIVEN_MASKS_CHOICE if g in GIVEN_MASK_GROUPS else choice)
        out[g] = t
        n_sl = len(set(zip(d["patient"][m], d["slice_id"][m])))
        log(format_table(t, f"{title_prefix}{split} / {g}: {int(m.sum())} cines ({n_sl} slices)"))
        log("")
    return out


# ----------------------------------------------------------------------------------------
# Data sets
# ----------------------------------------------------------------------------------------
def phantom_set(n=10, first_seed=200_000, simulate=True):
    return stack_samples(phantom_samples(range(first_seed, first_seed + n), "test", simulate=simulate))


def acdc_val_set(acdc_dir, predict_fn=None, simulate=True, seed=0, max_patients=None, workers=None):
    """Pseudo-cines of the ACDC validation patients (same construction as quan_data)."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "val.npz"
        build_quan_dataset(p, acdc_dir, predict_fn=predict_fn, simulate=simulate, variants=1, n_holdout=0,
                           phantoms=(0, 0, 0), seed=seed, workers=workers, log=lambda *a: None,
                           only_val=True, max_patients=max_patients)
        return load_quan_npz(p)


def sunnybrook_set(qn, study_dir, predict_fn=None, labels=None, log=print):
    """Network / geometry / final against the Sunnybrook contours of every contoured slice.

    study_dir holds dicoms/<folder> and contourfiles/<patient>.  "final" is what a user gets:
    `pipeline.quantify` of the whole study (the shipped path: segmentation, geometry, the fusion
    stored with `qn`, phase), scored on the contoured slices.  Its masks: `labels` (T, Z, R, C)
    when given, else predict_fn(frames of one slice, spacing) on the contoured slices when given
    (both then quantified as given masks, i.e. by their geometry), else the project's own
    segmentation.  "network" and "geometry" score the two sources on the same masks.  Returns
    the tables."""
    study_dir = Path(study_dir)
    dic = sorted(p for p in (study_dir / "dicoms").iterdir() if p.is_dir()) if (study_dir / "dicoms").is_dir() else []
    con = sorted(p for p in (study_dir / "contourfiles").iterdir() if p.is_dir()) \
        if (study_dir / "contourfiles").is_dir() else []
    if not dic or not con:
        raise CardiacQuanError(f"{study_dir} needs dicoms/<series> and contourfiles/<patient> folders")
    qn = as_quan_net(qn)
    cine = read_cine(str(dic[0]))
    cav, myo = read_sunnybrook_contours(str(con[0]), cine)
    T = cine.n_frames
    slices = sorted({z for z, _ in cav})
    if labels is None and predict_fn is not None:
        labels = np.zeros(cine.image.shape, np.uint8)
        for z in slices:
            labs = predict_fn([cine.image[t, z] for t in range(T)], cine.spacing)
            labels[:, z] = np.stack([np.asarray(lab, np.uint8) for lab in labs])
    result = quantify(cine, labels=labels, quan_net=qn)
    labels = result.labels
    nets = predict_indices_many([{"labels": labels[:, z], "spacing": cine.spacing, "direction": cine.direction}
                                 for z in slices], model=qn)
    rows = {"network": [], "geometry": [], "final": [], "truth": []}
    phases = {"network": [], "geometry": [], "final": [], "truth": []}
    for z, net in zip(slices, nets):
        geo = slice_indices(labels[:, z], cine.spacing, cine.direction)
        fin = result.per_slice[z]
        truth = np.full((T, 11), np.nan)
        frames = sorted(t for (zz, t) in cav if zz == z)
        for t in frames:
            lab = np.zeros(cine.frame_shape, np.uint8)
            lab[labels[t, z] == RV] = RV              # orientation from the same RV as the prediction
            has_myo = (z, t) in myo
            if has_myo:
                lab[myo[(z, t)]] = MYOCARDIUM
            lab[cav[(z, t)]] = LV_CAVITY
            y = slice_indices(lab[None], cine.spacing, cine.direction).as_array()[0]
            if not has_myo:
                y[[1] + list(range(5, 11))] = np.nan
            truth[t] = y
        a = {t: np.count_nonzero(cav[(z, t)]) for t in frames}
        tph = phase_from_ed_es(T, max(a, key=a.get), min(a, key=a.get)).astype(int) if len(frames) >= 2 \
            else np.full(T, -1)
        for k, (y, p) in {"network": (net["indices"], net["phase"]), "geometry": (geo.as_array(), geo.phase),
                          "final": (fin.as_array(), result.phase)}.items():
            rows[k].append(y)
            phases[k].append(p)
        rows["truth"].append(truth)
        phases["truth"].append(tph)
    tables = {k: lvquan_table(np.stack(rows[k]), np.stack(rows["truth"]), np.stack(phases[k]),
                              np.stack(phases["truth"])) for k in ("network", "geometry", "final")}
    log(format_table(tables, f"Sunnybrook {con[0].name}: {len(slices)} contoured slices, "
                             f"{sum(1 for _ in cav)} contoured frames (final = cardiacquan quantify)"))
    log(f"study ED/ES (cardiacquan quantify: {result.phase_curve.get('source', '')}): frames "
        f"{result.ed_frame}/{result.es_frame}; 'final' phase = indices.csv's phase column (one ED/ES for the heart), "
        "'network' and 'geometry' = each slice's own phase")
    return tables


def lvquan_set(path):
    """LVQuan18 frames as quan_data-like arrays (expert masks as input)."""
    return lvquan_arrays(path)


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------
def add_evaluate_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="LVQuan table (network vs geometry vs final) on a labelled set",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", required=True, choices=["phantom", "acdc-val", "sunnybrook", "npz", "lvquan"])
    p.add_argument("--model", default=None, help="quan_net .keras file (default: the bundled weights)")
    p.add_argument("--acdc", default=None, help="ACDC folder (train_slices.list, val.list, data/)")
    p.add_argument("--sunnybrook", default=None, help="Sunnybrook study folder (dicoms/, contourfiles/)")
    p.add_argument("--labels", default=None, help="Sunnybrook: label file (T,Z,R,C) instead of --predict-fn")
    p.add_argument("--data", default=None, help="npz: a quan_data file")
    p.add_argument("--split", default="val", help="npz: split to evaluate (train, holdout, val, test)")
    p.add_argument("--lvquan", default=None, help="lvquan: cardiac-dig.mat")
    p.add_argument("--predict-fn", default=None, help="segmentation model as package.module:function")
    p.add_argument("--no-simulate", action="store_true", help="skip the simulated-segmentation-error inputs")
    p.add_argument("--n", type=int, default=10, help="phantom: number of test cines")
    p.add_argument("--json", default=None, help="also write the tables to this JSON file")
    p.set_defaults(func=_cli)
    return p


def _cli(args):
    if args.json:
        prepare_output_file(args.json, suffix=".json", create=False)
    qn = load_quan_net(args.model)
    choice = qn.meta.get("fusion")
    predict_fn = load_predict_fn(args.predict_fn)
    results = {}
    if args.set == "phantom":
        d = phantom_set(args.n, simulate=not args.no_simulate)
        results = evaluate_groups(qn, d, "test", choice)
    elif args.set == "acdc-val":
        if not args.acdc:
            raise CardiacQuanError("--set acdc-val needs --acdc DIR")
        d = acdc_val_set(args.acdc, predict_fn=predict_fn, simulate=not args.no_simulate)
        results = evaluate_groups(qn, d, "val", choice)
    elif args.set == "npz":
        if not args.data:
            raise CardiacQuanError("--set npz needs --data FILE")
        results = evaluate_groups(qn, load_quan_npz(args.data), args.split, choice)
    elif args.set == "lvquan":
        if not args.lvquan:
            raise CardiacQuanError("--set lvquan needs --lvquan cardiac-dig.mat")
        d = lvquan_set(args.lvquan)
        t = evaluate_arrays(qn, d, None, GIVEN_MASKS_CHOICE)       # expert masks: final = their geometry
        print(format_table(t, f"LVQuan {args.lvquan}: {len(d['x'])} subjects (expert masks)"))
        results = {"lvquan": t}
    else:
        if not args.sunnybrook:
            raise CardiacQuanError("--set sunnybrook needs --sunnybrook DIR")
        labels = None
        if args.labels:
            study = Path(args.sunnybrook)
            cine = read_cine(str(sorted(p for p in (study / "dicoms").iterdir() if p.is_dir())[0]))
            labels = read_labels(args.labels, cine)
        results = {"sunnybrook": sunnybrook_set(qn, args.sunnybrook, predict_fn, labels)}
    if args.json:
        Path(args.json).write_text(json.dumps(to_jsonable(results), indent=2))
    return 0
