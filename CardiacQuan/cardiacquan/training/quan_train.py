"""`cardiacquan train-quan`: training of the quantification network, and the LVQuan protocol.

Two stages, separable on purpose:
1. data preparation (numpy/scipy, this machine): `quan_data.build_quan_dataset` -> one .npz
   (`--prepare-only` stops there);
2. training (Keras 3, any backend: TensorFlow-CPU here, JAX on a GPU machine) from that .npz,
   then the fusion of network and geometry chosen on the held-out ACDC patients, the
   validation figures (ACDC validation patients, phantom test cines), and the weights with
   their JSON sidecar (normalisation constants, fusion choice, validation figures).

`--lvquan cardiac-dig.mat --folds 5` runs the paper's protocol instead: 5-fold
cross-validation by subject on the LVQuan18 file (folds of 29 subjects), inputs = the file's
expert masks, targets = the file's indices; prints the challenge table for network,
geometry and final.

Training: Adam, cosine-decayed learning rate, masked L2 on the z-scored scale-free indices
(frames whose truth is missing are left out) + binary cross-entropy on the phase; a random
cyclic shift of each cine in time as augmentation (a cine is one period).  Seeded.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import time
from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.cli_args import at_least, int_triple, positive_float, positive_int
from cardiacquan.evaluation.quan import compare_sources, evaluate_groups, format_table, lvquan_table, network_mm
from cardiacquan.frameworks import import_keras
from cardiacquan.io.output_paths import prepare_output_file
from cardiacquan.models import QUAN_MODEL_FILE, load_quan_net, quan_net_path
from cardiacquan.quannet.encoding import to_scale_free
from cardiacquan.quannet.fusion import apply_fusion_batch, choose_fusion
from cardiacquan.quannet.network import QuanNet, build_quan_net, save_quan_net, to_jsonable
from cardiacquan.training.onnx_export import export_quan_net
from cardiacquan.training.quan_data import build_quan_dataset, load_predict_fn, load_quan_npz, lvquan_arrays
from cardiacquan.training.run import run_detached, timestamped_logger

DEFAULT_DATA = Path("work_local") / "quan_data.npz"
FAITHFUL = dict(batchnorm=False, cyclic=False, head_units=0)


# ----------------------------------------------------------------------------------------
# Targets and batches
# ----------------------------------------------------------------------------------------
def norm_constants(y_mm, scale_mm):
    """Per-index mean and std of the scale-free targets (NaN-aware)."""
    y = to_scale_free(y_mm, scale_mm).reshape(-1, 11)
    mean = np.nanmean(y, axis=0)
    std = np.nanstd(y, axis=0)
    return np.nan_to_num(mean), np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)


def masked_mse(y_true, y_pred):
    """Mean squared error over the finite targets only (missing truth = NaN)."""
    ops = import_keras().ops
    ok = ops.logical_not(ops.isnan(y_true))
    diff = ops.where(ok, y_pred - ops.where(ok, y_true, 0.0), 0.0)
    return ops.sum(diff * diff) / ops.maximum(ops.sum(ops.cast(ok, "float32")), 1.0)


def make_sequence(x, z, phase, batch_size, shuffle=True, roll=True, seed=0):
    """A keras PyDataset over uint8 masks (decoded per batch, so memory stays small)."""
    keras = import_keras()

    class QuanSequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(x))
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            xb = np.asarray(x[idx], np.float32) / 255.0
            zb = np.asarray(z[idx], np.float32)
            pb = np.asarray(phase[idx], np.float32)
            if roll:
                for k in range(len(idx)):
                    s = int(self.rng.integers(xb.shape[1]))
                    xb[k], zb[k], pb[k] = np.roll(xb[k], s, 0), np.roll(zb[k], s, 0), np.roll(pb[k], s, 0)
            return xb, {"indices": zb, "phase": pb}

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    return QuanSequence()


def _epoch_logger(log, t0, max_minutes=None, lr=None):
    """Per-epoch log line; with `max_minutes`, a time-based cosine learning rate (lr -> 0.02 lr
    as the budget runs out, so a run cut by the clock still ends annealed) and a stop as soon
    as the budget is spent (checked after every batch)."""
    keras = import_keras()

    class EpochLog(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if max_minutes and lr is not None:
                f = min((time.time() - t0) / (60.0 * max_minutes), 1.0)
                self.model.optimizer.learning_rate.assign(float(lr) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * f))))

        def on_train_batch_end(self, batch, logs=None):
            if max_minutes and time.time() - t0 > 60 * max_minutes and not self.model.stop_training:
                log(f"time budget of {max_minutes} min reached during epoch: stopping")
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            keys = ["loss", "indices_loss", "phase_loss", "val_loss", "val_indices_loss", "val_phase_loss"]
            txt = " ".join(f"{k}={logs[k]:.4f}" for k in keys if k in logs)
            log(f"epoch {epoch + 1}: {txt} ({time.time() - t0:.0f} s)")
            if max_minutes and time.time() - t0 > 60 * max_minutes:
                log(f"time budget of {max_minutes} min reached: stopping")
                self.model.stop_training = True

    return EpochLog()


def fit_network(x, y_mm, scale_mm, phase, val=None, epochs=60, batch_size=16, lr=1e-3, seed=1, log=print,
                max_minutes=None, model_kw=None, phase_loss_weight=1.0, init_weights=None):
    """Train a network (fresh, or continued from the weights of a saved one, `init_weights`);
    returns (QuanNet, history dict).  val = (x, y_mm, scale, phase)."""
    keras = import_keras()
    keras.utils.set_random_seed(int(seed))
    mean, std = norm_constants(y_mm, scale_mm)
    z = ((to_scale_free(y_mm, scale_mm) - mean) / std).astype(np.float32)
    model = build_quan_net(compile=False, **(model_kw or {}))
    if init_weights:
        model.set_weights(load_quan_net(init_weights).model.get_weights())
        log(f"continuing from the weights of {init_weights}")
    steps = max(1, math.ceil(len(x) / batch_size)) * int(epochs)
    # the learning rate follows a cosine over the epochs, or over the time budget when one is set
    sched = float(lr) if max_minutes else keras.optimizers.schedules.CosineDecay(float(lr), decay_steps=steps,
                                                                                 alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(sched), loss={"indices": masked_mse, "phase": "binary_crossentropy"},
                  loss_weights={"indices": 1.0, "phase": float(phase_loss_weight)})
    train_seq = make_sequence(x, z, phase, batch_size, shuffle=True, roll=True, seed=seed)
    val_seq = None
    if val is not None and len(val[0]):
        vz = ((to_scale_free(val[1], val[2]) - mean) / std).astype(np.float32)
        val_seq = make_sequence(val[0], vz, val[3], batch_size, shuffle=False, roll=False)
    log(f"backend={keras.backend.backend()} params={model.count_params()} train={len(x)} "
        f"val={0 if val is None else len(val[0])} epochs={epochs} batch={batch_size} lr={lr} seed={seed}")
    t0 = time.time()
    hist = model.fit(train_seq, validation_data=val_seq, epochs=int(epochs), verbose=0,
                     callbacks=[_epoch_logger(log, t0, max_minutes, lr=lr)])
    qn = QuanNet(model=model, norm_mean=mean, norm_std=std,
                 meta={"backend": keras.backend.backend(),
                       "training": {"epochs_run": len(hist.history.get("loss", [])), "batch_size": batch_size,
                                    "lr": lr, "seed": seed, "n_train": int(len(x)), "seconds": time.time() - t0,
                                    "model": {**build_kw_defaults(), **(model_kw or {})}}})
    return qn, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def build_kw_defaults():
    sig = inspect.signature(build_quan_net)
    return {k: v.default for k, v in sig.parameters.items() if k not in ("compile",)}


# ----------------------------------------------------------------------------------------
# Training from a quan_data file
# ----------------------------------------------------------------------------------------
SEG_LIKE = ("acdc-seg", "acdc-sim", "phantom-sim")


def fusion_selection(d, split="holdout"):
    """Samples to choose the fusion on: inputs like the ones at inference (segmentation
    masks): 'acdc-seg' when present, else the simulated-error groups."""
    s = d["split"] == split
    if np.any(s & (d["group"] == "acdc-seg")):
        return s & (d["group"] == "acdc-seg"), "acdc-seg"
    sim = s & np.isin(d["group"], ["acdc-sim", "phantom-sim"])
    if sim.any():
        return sim, "+".join(sorted(set(d["group"][sim])))
    return s, "all holdout"


def _summary(tables):
    """Compact figures of a {source: table} dict for the sidecar."""
    out = {}
    for src, t in tables.items():
        out[src] = {"mae": {k: v["mae"] for k, v in t["index"].items()},
                    "r": {k: v["r"] for k, v in t["index"].items()},
                    "group_mae": {k: v["mae"] for k, v in t["group"].items()},
                    "phase_error": t.get("phase_error"), "n_frames": t["n_frames"]}
    return out


def train_quan(data_path, out_path=None, epochs=60, batch_size=16, lr=1e-3, seed=1, log=print,
               max_minutes=None, max_train=None, model_kw=None, groups=None, init_weights=None):
    """Train on split 'train', choose the fusion on 'holdout', report on 'holdout', 'val' and
    'test'; save the weights and the sidecar (to the bundled weights when out_path is None).
    Returns the QuanNet."""
    out_path = out_path or quan_net_path()
    d = load_quan_npz(data_path)
    log(f"data {data_path}: {len(d['x'])} samples; " + ", ".join(f"{k}={v}" for k, v in
                                                              d["meta"].get("counts", {}).items() if v))
    tr = d["split"] == "train"
    if groups:
        tr &= np.isin(d["group"], list(groups))
    idx = np.flatnonzero(tr)
    if max_train and len(idx) > max_train:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_train, replace=False))
    if not len(idx):
        raise CardiacQuanError(f"{data_path} has no training sample")
    ho = np.flatnonzero(d["split"] == "holdout")
    val = (d["x"][ho], d["y_mm"][ho], d["scale_mm"][ho], d["phase"][ho]) if len(ho) else None
    qn, hist = fit_network(d["x"][idx], d["y_mm"][idx], d["scale_mm"][idx], d["phase"][idx], val=val, epochs=epochs,
                           batch_size=batch_size, lr=lr, seed=seed, log=log, max_minutes=max_minutes,
                           model_kw=model_kw, init_weights=init_weights)
    qn.meta["training"].update(data=str(data_path), data_meta={k: v for k, v in d["meta"].items()
                                                                if k not in ("train_patients",)},
                               history=hist)
    # fusion, chosen on held-out data the network never saw
    sel, sel_name = fusion_selection(d)
    if sel.any():
        net, prob = network_mm(qn, d["x"][sel], d["scale_mm"][sel])
        choice = choose_fusion(net, d["geo_mm"][sel], d["y_mm"][sel], prob, d["phase"][sel],
                               data=f"holdout / {sel_name} ({len(set(d['patient'][sel]))} patients/phantoms)")
        qn.meta["fusion"] = choice
        log("fusion (chosen on " + choice["data"] + "): " +
            ", ".join(f"{k}={v}" for k, v in choice["sources"].items()) + f"; phase from {choice['phase_source']}")
    else:
        log("no holdout data: final values = geometry")
    validation = {}
    for split in ("holdout", "val", "test"):
        if np.any(d["split"] == split):
            res = evaluate_groups(qn, d, split, qn.meta.get("fusion"), log=log)
            validation[split] = {g: _summary(t) for g, t in res.items()}
    qn.meta["validation"] = validation
    save_quan_net(qn, out_path)
    log(f"saved {out_path} (+ {Path(out_path).with_suffix('.json').name})")
    export_quan_net(out_path, log=log)        # the file the product runs
    return qn


# ----------------------------------------------------------------------------------------
# LVQuan18 protocol
# ----------------------------------------------------------------------------------------
def lvquan_cv(path, folds=5, epochs=60, batch_size=16, lr=1e-3, seed=1, log=print, model_kw=None,
              inner_holdout=0.1, max_minutes=None):
    """The paper's protocol: k-fold cross-validation by subject; prints the challenge table."""
    d = lvquan_arrays(path)
    S = len(d["x"])
    if folds < 2 or S < folds or S - S // folds < 2:   # every fold: >= 1 test, 1 fusion-holdout, 1 train subject
        raise CardiacQuanError(f"{S} subjects are too few for {folds} folds")
    fs = S // folds
    log(f"LVQuan {path}: {S} subjects, {folds} folds of {fs} subjects (by subject)")
    preds = {k: [None] * S for k in ("net", "prob")}
    choices = []
    for k in range(folds):
        test = np.arange(k * fs, S if k == folds - 1 else (k + 1) * fs)
        rest = np.setdiff1d(np.arange(S), test)
        n_in = max(1, int(round(inner_holdout * len(rest))))
        inner = rest[np.linspace(0, len(rest) - 1, n_in).round().astype(int)]
        train = np.setdiff1d(rest, inner)
        log(f"fold {k + 1}/{folds}: train {len(train)}, fusion holdout {len(inner)}, test {len(test)} subjects")
        qn, _ = fit_network(d["x"][train], d["y_mm"][train], d["scale_mm"][train], d["phase"][train],
                            epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + k, log=log, model_kw=model_kw,
                            max_minutes=max_minutes)
        net_i, prob_i = network_mm(qn, d["x"][inner], d["scale_mm"][inner])
        choice = choose_fusion(net_i, d["geo_mm"][inner], d["y_mm"][inner], prob_i, d["phase"][inner],
                               data=f"fold {k + 1} inner holdout")
        choices.append(choice)
        net_t, prob_t = network_mm(qn, d["x"][test], d["scale_mm"][test])
        fin_t, _ = apply_fusion_batch(net_t, d["geo_mm"][test], choice, prob_t)
        for j, s in enumerate(test):
            preds["net"][s], preds["prob"][s] = net_t[j], prob_t[j]
        log(f"fold {k + 1}: test MAE A1 network {np.nanmean(np.abs(net_t[..., 0] - d['y_mm'][test][..., 0])):.1f} "
            f"geometry {np.nanmean(np.abs(d['geo_mm'][test][..., 0] - d['y_mm'][test][..., 0])):.1f} "
            f"final {np.nanmean(np.abs(fin_t[..., 0] - d['y_mm'][test][..., 0])):.1f} mm2")
    net = np.stack(preds["net"])
    prob = np.stack(preds["prob"])
    # the final values of each subject use the choice of the fold it was tested in
    fins, fin_ph = [], []
    for k in range(folds):
        test = np.arange(k * fs, S if k == folds - 1 else (k + 1) * fs)
        f, p = apply_fusion_batch(net[test], d["geo_mm"][test], choices[k], prob[test])
        fins.append(f)
        fin_ph.append(p)
    tables = compare_sources(net, prob, d["geo_mm"], d["geo_phase"], d["y_mm"], d["phase"], None)
    tables["final"] = lvquan_table(np.concatenate(fins), d["y_mm"], np.concatenate(fin_ph), d["phase"])
    log(format_table(tables, f"LVQuan {folds}-fold cross-validation ({S} subjects x 20 frames)"))
    return {"tables": tables, "choices": choices}


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------
def _repo_root():
    return Path(__file__).resolve().parents[3]   # <repo>/CardiacQuan/cardiacquan/training


def add_train_quan_parser(subparsers):
    p = subparsers.add_parser("train-quan", help="train the quantification network (or run the LVQuan protocol)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--acdc", default=None, help="ACDC folder (train_slices.list, val.list, data/); "
                                                "default ../shared/data/acdc beside the checkout when present")
    p.add_argument("--data", default=None, help=f"prepared arrays (.npz; default {DEFAULT_DATA}); built when missing")
    p.add_argument("--out", default=QUAN_MODEL_FILE,
                   help="weights to write (.keras; sidecar .json beside); the bundled weights are replaced only "
                        f"when this names them ({quan_net_path()})")
    p.add_argument("--prepare-only", action="store_true", help="build the .npz and stop (train elsewhere)")
    p.add_argument("--rebuild-data", action="store_true", help="rebuild the .npz even if it exists")
    p.add_argument("--predict-fn", default=None, help="segmentation model for the 'acdc-seg' inputs, "
                                                      "as package.module:function(images, spacing) -> labels")
    p.add_argument("--no-simulate", action="store_true", help="no simulated-segmentation-error inputs")
    p.add_argument("--variants", type=positive_int, default=2, help="pseudo-cines per training slice")
    p.add_argument("--phantoms", type=int_triple, default=(60, 10, 10), help="phantom cines train,holdout,test")
    p.add_argument("--workers", type=positive_int, default=None, help="data preparation processes")
    p.add_argument("--epochs", type=positive_int, default=60)
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-minutes", type=positive_float, default=None, help="stop training after this many minutes")
    p.add_argument("--init-weights", default=None, help="continue training from these weights (.keras)")
    p.add_argument("--max-train", type=positive_int, default=None, help="use at most this many training cines (smoke runs)")
    p.add_argument("--faithful", action="store_true",
                   help="the paper's exact network (no batch norm, zero time padding, linear heads)")
    p.add_argument("--lvquan", default=None, help="LVQuan18 cardiac-dig.mat: run the k-fold protocol on it")
    p.add_argument("--folds", type=at_least(2), default=5)
    p.add_argument("--json", default=None, help="LVQuan protocol: write the tables to this JSON file")
    p.add_argument("--log", default=None, help="also append the log to this file")
    p.add_argument("--background", action="store_true", help="run detached; the log goes to --log "
                                                             "(default work_local/train_quan.log)")
    p.set_defaults(func=_cli)
    return p


def _cli(args):
    if args.background:
        return run_detached("train-quan", args.log or Path("work_local") / "train_quan.log")
    if args.json:                                   # before the work, not after
        prepare_output_file(args.json, suffix=".json", create=False)
    if not args.lvquan and not args.prepare_only:
        prepare_output_file(args.out, suffix=".keras", create=False)
    log = timestamped_logger(args.log)
    model_kw = dict(FAITHFUL) if args.faithful else None
    if args.lvquan:
        res = lvquan_cv(args.lvquan, folds=args.folds, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                        seed=args.seed, log=log, model_kw=model_kw, max_minutes=args.max_minutes)
        if args.json:
            Path(args.json).write_text(json.dumps(to_jsonable(res), indent=2))
        return 0
    data = Path(args.data) if args.data else DEFAULT_DATA
    if args.rebuild_data or not data.exists() or args.prepare_only:
        acdc = args.acdc
        if acdc is None:
            cand = _repo_root().parent / "shared" / "data" / "acdc"
            acdc = str(cand) if cand.exists() else None
        if acdc is None:
            log("no ACDC folder (--acdc): phantom data only")
        ph = tuple(args.phantoms)
        build_quan_dataset(data, acdc, predict_fn=load_predict_fn(args.predict_fn), simulate=not args.no_simulate,
                           variants=args.variants, phantoms=ph, seed=args.seed, workers=args.workers, log=log)
        if args.prepare_only:
            return 0
    elif args.predict_fn or args.acdc:
        log(f"using the prepared {data}; --acdc/--predict-fn/--phantoms apply only when it is built "
            "(--rebuild-data)")
    train_quan(data, args.out, epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed, log=log,
               max_minutes=args.max_minutes, max_train=args.max_train, model_kw=model_kw,
               init_weights=args.init_weights)
    return 0
