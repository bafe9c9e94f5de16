"""Does int8 change what a user gets?  Labels and indices of `quantify` with the fine pass in int8
against fp32, on the ACDC validation stacks (ED + ES as a 2-frame cine, assumed spacing) and the
Sunnybrook study of ../shared/data.

The default may become int8 only if, on both, its labels' Dice against fp32 is >= 0.995 per
structure and every index moves by <= 0.1 mm / 1 % (areas: 1 % of the fp32 value).

    python scripts/precision_check.py [--acdc DIR] [--sunnybrook DIR]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "CardiacQuan"))

from cardiacquan.contract import INDEX_NAMES, LV_CAVITY, MYOCARDIUM, RV  # noqa: E402
from cardiacquan.io.cine import Cine  # noqa: E402
from cardiacquan.io.datasets import acdc_assumed_spacing, read_acdc_h5  # noqa: E402
from cardiacquan.io.files import read_cine  # noqa: E402
from cardiacquan.pipeline import quantify  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
STRUCTURES = {"RV": RV, "myocardium": MYOCARDIUM, "LV cavity": LV_CAVITY}


def acdc_cines(acdc):
    for name in sorted({n.rsplit("_frame", 1)[0] for n in (acdc / "val.list").read_text().split()}):
        pair = [read_acdc_h5(acdc / "data" / f"{name}_frame0{k}.h5") for k in (1, 2)]
        img = np.stack([p[0] for p in pair])
        sp = acdc_assumed_spacing(img.shape)
        yield name, Cine(image=img, spacing=(sp, sp), origins=np.c_[np.zeros((img.shape[1], 2)),
                                                                    10.0 * np.arange(img.shape[1])])


def compare(cines):
    inter = {k: 0 for k in STRUCTURES}
    total = {k: 0 for k in STRUCTURES}
    moves = {k: [] for k in INDEX_NAMES}
    rel = {k: [] for k in INDEX_NAMES[:2]}
    seconds = {"fp32": 0.0, "int8": 0.0}
    for name, cine in cines:
        res = {}
        for precision in ("fp32", "int8"):
            t = time.perf_counter()
            res[precision] = quantify(cine, precision=precision)
            seconds[precision] += time.perf_counter() - t
        a, b = res["fp32"], res["int8"]
        for k, v in STRUCTURES.items():
            inter[k] += 2 * np.count_nonzero((a.labels == v) & (b.labels == v))
            total[k] += np.count_nonzero(a.labels == v) + np.count_nonzero(b.labels == v)
        for z in set(a.slices) & set(b.slices):
            ya, yb = a.per_slice[z].as_array(), b.per_slice[z].as_array()
            ok = np.isfinite(ya) & np.isfinite(yb)
            for j, k in enumerate(INDEX_NAMES):
                d = np.abs(ya[ok[:, j], j] - yb[ok[:, j], j])
                moves[k] += d.tolist()
                if k in rel:
                    rel[k] += (100 * d / np.maximum(ya[ok[:, j], j], 1e-9)).tolist()
    dice = {k: inter[k] / max(total[k], 1) for k in STRUCTURES}
    return dice, moves, rel, seconds


def report(title, dice, moves, rel, seconds):
    print(f"\n{title}")
    print("  Dice int8 vs fp32: " + ", ".join(f"{k} {v:.4f}" for k, v in dice.items()))
    for k in INDEX_NAMES:
        m = np.asarray(moves[k])
        if not m.size:
            continue
        extra = f", relative mean {np.mean(rel[k]):.2f} % max {np.max(rel[k]):.2f} %" if k in rel else ""
        unit = "mm2" if k in rel else "mm"
        print(f"  {k:5s} moves: mean {m.mean():.3f} {unit}, 95th pct {np.percentile(m, 95):.3f}, "
              f"max {m.max():.3f}{extra} ({m.size} values)")
    print(f"  quantify time: fp32 {seconds['fp32']:.1f} s, int8 {seconds['int8']:.1f} s")
    ok_dice = min(dice.values()) >= 0.995
    lengths = [np.max(moves[k]) for k in INDEX_NAMES[2:] if moves[k]]
    ok_idx = (max(lengths) <= 0.1 if lengths else True) and all(np.max(rel[k]) <= 1.0 for k in rel if rel[k])
    print(f"  criterion (Dice >= 0.995 per structure, every index <= 0.1 mm / 1 %): "
          f"Dice {'met' if ok_dice else 'NOT met'}, indices {'met' if ok_idx else 'NOT met'}")
    return ok_dice and ok_idx


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--acdc", default=str(SHARED / "acdc"))
    ap.add_argument("--sunnybrook", default=str(SHARED / "sunnybrook" / "dicoms" / "SCD0000101"))
    args = ap.parse_args()
    ok = report("ACDC validation (10 patients, ED + ES)", *compare(acdc_cines(Path(args.acdc))))
    sb = read_cine(args.sunnybrook)
    ok &= report("Sunnybrook SC-HF-I-1 (12 slices x 20 frames)", *compare([("sunnybrook", sb)]))
    print(f"\nint8 {'may' if ok else 'may not'} be the default")


if __name__ == "__main__":
    main()
