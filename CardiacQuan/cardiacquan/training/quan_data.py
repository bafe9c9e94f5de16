"""Training / validation arrays for the quantification network, written once into one .npz.

Everything here is numpy/scipy (no deep-learning backend), so the arrays are prepared on
this machine and training runs wherever there is a GPU (`quan_train` reads the .npz).

Sources (column `group`):
- "phantom": phantom cines (`phantom.make_phantom`) with their exact analytic truth;
- "acdc": pseudo-cines morphed from the expert ED/ES masks of ACDC slices
  (`pseudo_cine`); truth = the engine's geometry of the expert pseudo-cine (so geometry on
  these inputs is exact by construction: they teach the network the indices themselves);
- "acdc-seg": the same slices and the same cycle, morphed from the segmentation model's own
  predictions on the ED/ES images (`predict_fn`), paired with the expert truth, so the
  network learns to correct segmentation errors;
- "acdc-sim" / "phantom-sim": a stand-in for "acdc-seg" while no segmentation model is
  plugged in: expert / phantom masks degraded by `simulated_segmentation` (smooth random
  border displacement per frame plus a per-cine bias), with the clean truth.

Splits (column `split`): ACDC training patients -> "train", except `n_holdout` of them
(stratified over the five pathology groups) -> "holdout", used only to choose the fusion of
network and geometry; the 10 ACDC validation patients -> "val" (reporting only); phantom
seeds likewise train / holdout / "test".

Arrays: x (N, T, 80, 80, 2) uint8 (soft masks x 255), scale_mm (N,), y_mm (N, T, 11) truth,
geo_mm (N, T, 11) the engine's geometry of the input masks, phase / geo_phase (N, T) int8,
ed, es (N,), septum_deg, mirrored (N,), group, split, patient, slice_id (N,) strings, and
`meta` (a JSON string with the parameters used).
"""
from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import os
import re
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.io.cine import Cine
from cardiacquan.io.datasets import acdc_assumed_spacing, read_acdc_h5, read_lvquan_mat
from cardiacquan.measure.indices import slice_indices
from cardiacquan.quannet.encoding import N_FRAMES, SIZE, prepare_masks
from cardiacquan.segmentation.inference import segment_cine
from cardiacquan.synthetic.phantom import make_phantom
from cardiacquan.synthetic.pseudo_cine import make_pseudo_cine, quantifiable, signed_distance, volume_curve

ACDC_GROUPS = ((1, 20), (21, 40), (41, 60), (61, 80), (81, 100))


# ----------------------------------------------------------------------------------------
# Simulated segmentation errors (stand-in for a segmentation model)
# ----------------------------------------------------------------------------------------
def simulated_segmentation(labels, spacing, rng, bias_mm=0.6, noise_mm=0.8, smooth_px=6.0):
    """Degrade a (T, R, C) label cine like an imperfect segmenter would: every border (LV
    cavity, epicardium, RV) moves by a per-cine bias ~ N(0, bias_mm) plus a smooth per-frame
    random displacement field of amplitude ~ noise_mm.  Cavity stays inside the epicardium."""
    labels = np.asarray(labels)
    T = labels.shape[0]
    out = np.zeros_like(labels)
    bias = {k: rng.normal(0.0, bias_mm) for k in ("cav", "epi", "rv")}
    for t in range(T):
        lab = labels[t]
        cav = lab == LV_CAVITY
        epi = ndimage.binary_fill_holes(cav | (lab == MYOCARDIUM))
        rv = lab == RV
        res = np.zeros_like(lab)
        masks = {}
        for k, m in (("cav", cav), ("epi", epi), ("rv", rv)):
            if not m.any():
                masks[k] = m
                continue
            field = ndimage.gaussian_filter(rng.standard_normal(lab.shape), smooth_px, mode="wrap")
            field *= noise_mm / max(field.std(), 1e-9)
            masks[k] = signed_distance(m, spacing) - bias[k] - field < 0
        res[masks["rv"] & ~masks["epi"]] = RV
        res[masks["epi"] | masks["cav"]] = MYOCARDIUM
        res[masks["cav"]] = LV_CAVITY
        out[t] = res
    return out


# ----------------------------------------------------------------------------------------
# Reading ACDC
# ----------------------------------------------------------------------------------------
def _spacing(shape):
    s = acdc_assumed_spacing(shape)
    return (s, s)


def acdc_group(patient: str) -> int:
    n = int(re.sub(r"\D", "", patient))
    for g, (a, b) in enumerate(ACDC_GROUPS):
        if a <= n <= b:
            return g
    return len(ACDC_GROUPS)


def acdc_train_slices(acdc_dir):
    """{patient: {slice k: (ed_image, ed_label, es_image, es_label)}} of the 2-D training slices."""
    acdc_dir = Path(acdc_dir)
    names = [n.strip() for n in (acdc_dir / "train_slices.list").read_text().split() if n.strip()]
    pat = re.compile(r"(patient\d+)_frame0([12])_slice_(\d+)$")
    found = defaultdict(dict)
    for n in names:
        m = pat.match(n)
        if m:
            found[(m.group(1), int(m.group(3)))][int(m.group(2))] = n
    out = defaultdict(dict)
    for (p, k), fr in sorted(found.items()):
        if 1 in fr and 2 in fr:
            ei, el = read_acdc_h5(acdc_dir / "data" / f"{fr[1]}.h5")
            si, sl = read_acdc_h5(acdc_dir / "data" / f"{fr[2]}.h5")
            if ei.shape == si.shape:
                out[p][k] = (ei, el, si, sl)
    return dict(out)


def acdc_val_slices(acdc_dir):
    """{patient: {z: (ed_image, ed_label, es_image, es_label)}} of the validation stacks."""
    acdc_dir = Path(acdc_dir)
    names = [n.strip() for n in (acdc_dir / "val.list").read_text().split() if n.strip()]
    patients = sorted({n.split("_")[0] for n in names})
    out = {}
    for p in patients:
        ei, el = read_acdc_h5(acdc_dir / "data" / f"{p}_frame01.h5")
        si, sl = read_acdc_h5(acdc_dir / "data" / f"{p}_frame02.h5")
        if ei.shape != si.shape:
            continue
        out[p] = {z: (ei[z], el[z], si[z], sl[z]) for z in range(ei.shape[0])}
    return out


def split_patients(patients, n_holdout=10, seed=0):
    """(train, holdout) lists; the holdout is spread evenly over the ACDC pathology groups."""
    rng = np.random.default_rng(seed)
    by_group = defaultdict(list)
    for p in sorted(patients):
        by_group[acdc_group(p)].append(p)
    holdout = []
    groups = sorted(by_group)
    k = 0
    while len(holdout) < min(n_holdout, len(patients)):
        g = groups[k % len(groups)]
        rest = [p for p in by_group[g] if p not in holdout]
        if rest:
            holdout.append(rest[int(rng.integers(len(rest)))])
        k += 1
    return [p for p in sorted(patients) if p not in holdout], sorted(holdout)


# ----------------------------------------------------------------------------------------
# Samples
# ----------------------------------------------------------------------------------------
def make_sample(input_labels, spacing, y_mm, phase, ed, es, direction=None, n_frames=N_FRAMES, **info):
    """One training sample from an input label cine (T, R, C) and its truth (T, 11) in mm."""
    x, g = prepare_masks(input_labels, spacing, direction, n_frames=n_frames)
    if g is None:
        return None
    si = slice_indices(input_labels, spacing, direction)
    return dict(x=np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), scale_mm=g.scale_mm,
                y_mm=np.asarray(y_mm, np.float32), geo_mm=si.as_array().astype(np.float32),
                phase=np.asarray(phase, np.int8), geo_phase=np.asarray(si.phase, np.int8), ed=int(ed), es=int(es),
                septum_deg=g.septum_angle_deg, mirrored=g.mirrored, **info)


def _pseudo_jobs(ed_lab, es_lab, spacing, seed, n_frames, inputs):
    """Samples of one slice and one cycle: expert pseudo-cine (+ truth), then each input
    variant ("acdc", "acdc-seg" with predicted masks, "acdc-sim") along the same cycle."""
    rng = np.random.default_rng(seed)
    es_frac = float(rng.uniform(0.33, 0.42))
    curve = volume_curve(n_frames, es_frac, ed_frame=int(rng.integers(n_frames)), rng=rng, jitter=1.0)
    truth_pc = make_pseudo_cine(ed_lab, es_lab, spacing, curve=curve, rng=np.random.default_rng(seed + 1))
    truth = slice_indices(truth_pc.labels, spacing)
    y = truth.as_array()
    phase = truth_pc.phase
    out = []
    for group, pair in inputs:
        if pair == "expert":
            lab = truth_pc.labels
        elif pair == "simulated":
            lab = simulated_segmentation(truth_pc.labels, spacing, np.random.default_rng(seed + 2))
        else:
            ped, pes = pair
            if not ((ped == LV_CAVITY).any() and (pes == LV_CAVITY).any()):
                continue
            lab = make_pseudo_cine(ped, pes, spacing, curve=curve, rng=np.random.default_rng(seed + 1)).labels
        s = make_sample(lab, spacing, y, phase, truth_pc.ed, truth_pc.es, n_frames=n_frames, group=group)
        if s is not None:
            out.append(s)
    return out


def _slice_task(args):
    (patient, sid, split, ed_lab, es_lab, spacing, seeds, n_frames, inputs) = args
    out = []
    for seed in seeds:
        for s in _pseudo_jobs(ed_lab, es_lab, spacing, seed, n_frames, inputs):
            s.update(patient=patient, slice_id=str(sid), split=split)
            out.append(s)
    return out


def crop_to_heart(label_maps, margin=24):
    """Crop 2-D label maps to the box around all their labels (+ margin pixels): every
    index is translation-invariant, so this only saves time (ACDC frames are mostly
    background)."""
    any_lab = np.any([np.asarray(m) > 0 for m in label_maps], axis=0)
    if not any_lab.any():
        return list(label_maps)
    rows, cols = np.flatnonzero(any_lab.any(1)), np.flatnonzero(any_lab.any(0))
    r0, r1 = max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, any_lab.shape[0])
    c0, c1 = max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, any_lab.shape[1])
    return [np.asarray(m)[r0:r1, c0:c1] for m in label_maps]


def usable_pair(ed_lab, es_lab, min_ratio=1.05) -> bool:
    """A slice worth a pseudo-cine: quantifiable at ED and ES, cavity larger at ED."""
    if not (quantifiable(ed_lab) and quantifiable(es_lab)):
        return False
    return np.count_nonzero(ed_lab == LV_CAVITY) >= min_ratio * np.count_nonzero(es_lab == LV_CAVITY)


def phantom_truth(ph, z):
    """(y (T, 11) mm, phase (T,), ed, es) of slice z of a phantom: its exact analytic truth."""
    tr = ph.truth
    y = np.column_stack([tr["cavity_area"][:, z], tr["myocardium_area"][:, z], tr["dims"][:, z], tr["rwt"][:, z]])
    return y, np.asarray(tr["phase"][:, z]), int(tr["ed"][z]), int(tr["es"][z])


def phantom_samples(seeds, split, n_frames=N_FRAMES, simulate=True, **phantom_kw):
    """Samples of every quantifiable slice of the phantoms `make_phantom(seed, ...)`; unless
    given, ED frame, rotation and spacing are random and every other phantom is mirrored."""
    out = []
    for seed in seeds:
        kw = dict(n_slices=1, ed_frame=None, mirrored=bool(int(seed) % 2))
        kw.update(phantom_kw)
        ph = make_phantom(seed=int(seed), n_frames=n_frames, **kw)
        labels = np.asarray(ph.labels)
        for z in range(labels.shape[1]):
            lab = labels[:, z]
            if not all(quantifiable(lab[t]) for t in range(lab.shape[0])):
                continue
            y, phase, ed, es = phantom_truth(ph, z)
            inputs = [("phantom", lab)]
            if simulate:
                inputs.append(("phantom-sim", simulated_segmentation(lab, ph.cine.spacing,
                                                                     np.random.default_rng(int(seed) * 1000 + z))))
            for group, inp in inputs:
                s = make_sample(inp, ph.cine.spacing, y, phase, ed, es, ph.cine.direction, n_frames=n_frames,
                                group=group, patient=f"phantom{int(seed)}", slice_id=str(z), split=split)
                if s is not None:
                    out.append(s)
    return out


# ----------------------------------------------------------------------------------------
# The whole data set
# ----------------------------------------------------------------------------------------
_FIELDS = ("x", "scale_mm", "y_mm", "geo_mm", "phase", "geo_phase", "ed", "es", "septum_deg", "mirrored",
           "group", "split", "patient", "slice_id")


def stack_samples(samples) -> dict:
    if not samples:
        raise CardiacQuanError("no training sample could be made")
    d = {}
    for k in _FIELDS:
        vals = [s[k] for s in samples]
        if k in ("group", "split", "patient", "slice_id"):
            d[k] = np.array([str(v) for v in vals])
        elif k == "scale_mm" or k == "septum_deg":
            d[k] = np.array(vals, np.float32)
        elif k == "mirrored":
            d[k] = np.array(vals, bool)
        elif k in ("ed", "es"):
            d[k] = np.array(vals, np.int16)
        else:
            d[k] = np.stack(vals)
    return d


def build_quan_dataset(out_path, acdc_dir=None, predict_fn=None, simulate=True, variants=2, n_holdout=10,
                       phantoms=(40, 10, 10), n_frames=N_FRAMES, seed=0, workers=None, max_patients=None,
                       log=print, phantom_kw=None, only_val=False):
    """Write the training / holdout / validation arrays to `out_path` (.npz).

    acdc_dir: the ACDC folder (with train_slices.list, val.list, data/); None skips ACDC.
    predict_fn(images: list of 2-D float arrays, spacing) -> list of label maps: the
    segmentation model, for the "acdc-seg" inputs; None skips them.
    simulate: also add "acdc-sim"/"phantom-sim" inputs (simulated segmentation errors).
    variants: pseudo-cines (different cycles) per training slice; holdout and val get one.
    phantoms: number of (train, holdout, test) phantom cines (0 to skip).
    only_val: only the ACDC validation patients (for evaluation).
    """
    t0 = time.time()
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    ctx = None
    pool = None
    if workers > 1:
        ctx = mp.get_context("fork")     # fork before any deep-learning backend starts threads
        pool = ProcessPoolExecutor(workers, mp_context=ctx)
        pool.submit(int, 0).result()     # start the workers now, before predict_fn loads a backend
    samples = []
    meta = dict(created=time.strftime("%Y-%m-%d %H:%M:%S"), n_frames=n_frames, size=SIZE, seed=seed,
                variants=variants, n_holdout=n_holdout, simulate=simulate, phantoms=list(phantoms),
                predict_fn=getattr(predict_fn, "__name__", None) if predict_fn else None)
    try:
        if acdc_dir is not None:
            train = {} if only_val else acdc_train_slices(acdc_dir)
            val = acdc_val_slices(acdc_dir)
            tr_p, ho_p = split_patients(list(train), n_holdout=n_holdout, seed=seed)
            if max_patients:
                tr_p, ho_p = tr_p[:max_patients], ho_p[:max(1, max_patients // 5)]
                val = {p: val[p] for p in sorted(val)[:max(1, max_patients // 5)]}
            meta.update(train_patients=tr_p, holdout_patients=ho_p, val_patients=sorted(val))
            log(f"ACDC: {len(tr_p)} train, {len(ho_p)} holdout, {len(val)} validation patients")
            plan = [(p, "train", train[p], variants) for p in tr_p] + [(p, "holdout", train[p], 1) for p in ho_p] \
                + [(p, "val", val[p], 1) for p in sorted(val)]
            skipped, n_tasks, futures = 0, 0, []
            for pi, (p, split, slices, nv) in enumerate(plan):
                keys = [k for k in sorted(slices) if usable_pair(slices[k][1], slices[k][3])]
                skipped += len(slices) - len(keys)
                if not keys:
                    continue
                sp = _spacing(slices[keys[0]][0].shape)
                preds = {}
                if predict_fn is not None:          # one call per slice: its ED and ES images
                    for k in keys:
                        labs = predict_fn([slices[k][0], slices[k][2]], sp)
                        preds[k] = (np.asarray(labs[0], np.uint8), np.asarray(labs[1], np.uint8))
                tasks = []
                for k in keys:
                    ei, el, si, sl = slices[k]
                    el, sl, *pr = crop_to_heart([el, sl] + list(preds.get(k, ())))
                    inputs = [("acdc", "expert")]
                    if predict_fn is not None:
                        inputs.append(("acdc-seg", tuple(pr)))
                    if simulate:
                        inputs.append(("acdc-sim", "simulated"))
                    base = (seed * 7919 + pi * 131 + k) * 10
                    seeds = [base + 1_000_000 * v for v in range(nv)]
                    tasks.append((p, k, split, el, sl, sp, seeds, n_frames, inputs))
                n_tasks += len(tasks)
                # workers morph this patient while the next one is segmented
                futures.extend(pool.submit(_slice_task, t) for t in tasks) if pool else \
                    samples.extend(s for t in tasks for s in _slice_task(t))
                if (pi + 1) % 10 == 0:
                    log(f"  {pi + 1}/{len(plan)} patients queued, {time.time() - t0:.0f} s")
            log(f"ACDC: {n_tasks} slices usable, {skipped} skipped (not quantifiable at ED or ES, or no ED>ES)")
            for i, f in enumerate(futures):
                samples.extend(f.result())
                if (i + 1) % 100 == 0:
                    log(f"  {i + 1}/{len(futures)} slices, {len(samples)} samples, {time.time() - t0:.0f} s")
        if phantoms and any(phantoms):
            kw = dict(phantom_kw or {})
            n_tr, n_ho, n_te = (list(phantoms) + [0, 0, 0])[:3]
            splits = [("train", range(0, n_tr)), ("holdout", range(100_000, 100_000 + n_ho)),
                      ("test", range(200_000, 200_000 + n_te))]
            jobs = [([s], name, n_frames, simulate, kw) for name, seeds in splits for s in seeds]
            res = pool.map(_phantom_job, jobs) if pool else map(_phantom_job, jobs)
            nph = 0
            for r in res:
                samples.extend(r)
                nph += len(r)
            log(f"phantoms: {nph} samples")
    finally:
        if pool:
            pool.shutdown()
    d = stack_samples(samples)
    meta["counts"] = {f"{g}/{s}": int(np.sum((d["group"] == g) & (d["split"] == s)))
                      for g in np.unique(d["group"]) for s in np.unique(d["split"])}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, meta=np.array(json.dumps(meta)), **d)
    log(f"wrote {out_path} ({len(d['x'])} samples, {out_path.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
    log("counts: " + ", ".join(f"{k}={v}" for k, v in meta["counts"].items() if v))
    return out_path


def _phantom_job(args):
    seeds, split, n_frames, simulate, kw = args
    return phantom_samples(seeds, split, n_frames=n_frames, simulate=simulate, **kw)


def load_quan_npz(path) -> dict:
    """The arrays of a `build_quan_dataset` file (+ 'meta' as a dict)."""
    path = Path(path)
    if not path.exists():
        raise CardiacQuanError(f"no such data file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CardiacQuanError(f"{path}: not a prepared data file made by `train-quan --prepare-only` ({e})")
    if "x" not in d or "y_mm" not in d:
        raise CardiacQuanError(f"{path}: not a prepared data file made by `train-quan --prepare-only`")
    d["meta"] = json.loads(str(d["meta"])) if "meta" in d else {}
    return d


def segmentation_predict_fn(images, spacing):
    """predict_fn of the project's segmentation model (`segment.segment_cine`): the images
    are frames of one slice (here its ED and ES frames), segmented as a one-slice cine."""
    img = np.stack([np.asarray(i, np.float32) for i in images])[:, None]
    sp = tuple(float(v) for v in np.broadcast_to(np.asarray(spacing, float), (2,)))
    res = segment_cine(Cine(image=img, spacing=sp, origins=np.zeros((1, 3))))
    return [res.labels[t, 0] for t in range(len(images))]


def load_predict_fn(spec):
    """'package.module:function' -> the callable (the segmentation model's predict_fn)."""
    if spec is None or callable(spec):
        return spec
    mod, _, fn = str(spec).partition(":")
    if not fn:
        raise CardiacQuanError(f"--predict-fn must look like package.module:function, got {spec!r}")
    try:
        return getattr(importlib.import_module(mod), fn)
    except ImportError as e:
        raise CardiacQuanError(f"--predict-fn {spec}: cannot import {mod} ({e})")
    except AttributeError:
        raise CardiacQuanError(f"--predict-fn {spec}: {mod} has no {fn}")


def lvquan_arrays(path, log=None):
    """LVQuan18 file -> per-subject arrays like quan_data's (inputs = expert masks)."""
    m = read_lvquan_mat(path)
    F = 20
    samples = []
    for s in range(int(m["n_subjects"])):
        sl = slice(F * s, F * (s + 1))
        y = np.column_stack([m["areas_mm2"][sl], m["dims_mm"][sl], m["rwt_mm"][sl]])
        px = float(m["pixel_mm"][F * s])
        ph = np.asarray(m["phase"][sl], int)
        a = y[:, 0]
        smp = make_sample(m["labels"][sl], (px, px), y, ph, int(np.argmax(a)), int(np.argmin(a)),
                          group="lvquan", split="all", patient=str(s), slice_id="0")
        if smp is None:
            raise CardiacQuanError(f"LVQuan subject {s}: no LV in the masks")
        samples.append(smp)
    d = stack_samples(samples)
    d["subject"] = np.arange(len(samples))
    return d
