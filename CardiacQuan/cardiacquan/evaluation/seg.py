"""`cardiacquan evaluate-seg`: Dice per class and per phase on labelled stacks.

Dice is computed per 3-D stack (all slices of one patient at one phase), the way ACDC
reports it, then averaged over stacks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.io.cine import Cine
from cardiacquan.io.datasets import acdc_assumed_spacing, read_acdc_h5, read_sunnybrook_contours
from cardiacquan.io.dicom import read_dicom_cine
from cardiacquan.models import load_seg_model
from cardiacquan.segmentation.inference import segment_cine

CLASSES = {"RV": RV, "MYO": MYOCARDIUM, "LV": LV_CAVITY}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / s) if s else 1.0


def dice_per_class(pred, truth):
    return {name: dice(pred == k, truth == k) for name, k in CLASSES.items()}


def evaluate_acdc_stacks(acdc_dir, model=None, log=print, tta=True):
    """Segment each validation stack (ED and ES) as a one-frame cine; Dice per class/phase."""
    acdc_dir = Path(acdc_dir)
    if not (acdc_dir / "val.list").is_file():
        raise CardiacQuanError(f"{acdc_dir}: no val.list (the ACDC validation stacks to evaluate)")
    names = [n.strip() for n in (acdc_dir / "val.list").read_text().split() if n.strip()]
    if not names:
        raise CardiacQuanError(f"{acdc_dir / 'val.list'} lists no stacks")
    rows = []
    for name in sorted(names):
        img, lab = read_acdc_h5(acdc_dir / "data" / f"{name}.h5")
        sp = acdc_assumed_spacing(img.shape)
        cine = Cine(image=img[None], spacing=(sp, sp), origins=np.zeros((img.shape[0], 3)))
        pred = segment_cine(cine, model=model, tta=tta).labels[0]
        d = dice_per_class(pred, lab)
        phase = "ED" if name.endswith("frame01") else "ES"
        rows.append((name, phase, d))
        log(f"{name} {phase} " + " ".join(f"{k} {v:.3f}" for k, v in d.items()))
    return rows


def summarise(rows, log=print):
    table = {}
    for phase in ("ED", "ES", "all"):
        sel = [d for _, p, d in rows if phase in ("all", p)]
        table[phase] = {k: float(np.mean([d[k] for d in sel])) for k in CLASSES}
        log(f"{phase:>3}: " + "  ".join(f"{k} {v:.3f}" for k, v in table[phase].items())
            + f"  mean {np.mean(list(table[phase].values())):.3f}  (n={len(sel)})")
    return table


def evaluate_sunnybrook(study_dir, model=None, log=print, tta=True):
    """LV cavity Dice on every contoured frame; myocardium Dice where an epicardium exists.

    Per frame (the Sunnybrook challenge's way) and per stack of each contoured frame (ACDC's)."""
    study_dir = Path(study_dir)
    found = {}
    for sub in ("dicoms", "contourfiles"):
        folders = sorted(p for p in (study_dir / sub).glob("*") if p.is_dir()) if (study_dir / sub).is_dir() else []
        if not folders:
            raise CardiacQuanError(f"{study_dir}: expected {sub}/<study>/ (the Sunnybrook layout), found none")
        found[sub] = folders[0]
    dicom_dir, contour_dir = found["dicoms"], found["contourfiles"]
    cine = read_dicom_cine(dicom_dir)
    cavity, myo = read_sunnybrook_contours(contour_dir, cine)
    seg = segment_cine(cine, model=model, tta=tta)
    lv = [dice(seg.labels[t, z] == LV_CAVITY, m) for (z, t), m in sorted(cavity.items())]
    my = [dice(seg.labels[t, z] == MYOCARDIUM, m) for (z, t), m in sorted(myo.items())]
    log(f"Sunnybrook: LV cavity Dice {np.mean(lv):.3f} over {len(lv)} contoured frames "
        f"(min {np.min(lv):.3f}); myocardium Dice {np.mean(my):.3f} over {len(my)} ED frames "
        f"(min {np.min(my):.3f})")
    # the same pooled per frame of the cycle (all contoured slices as one stack), as ACDC scores
    stacks = {}
    for name, masks, k in (("LV", cavity, LV_CAVITY), ("MYO", myo, MYOCARDIUM)):
        for t in sorted({t for _, t in masks}):
            keys = sorted(key for key in masks if key[1] == t)
            stacks[f"{name} t={t}"] = dice(np.stack([seg.labels[tt, z] == k for z, tt in keys]),
                                           np.stack([masks[key] for key in keys]))
    log("  per stack (slices pooled): " + ", ".join(f"{k} {v:.3f}" for k, v in stacks.items()))
    return {"lv_dice": float(np.mean(lv)), "myo_dice_ed": float(np.mean(my)), "n_lv": len(lv),
            "n_myo": len(my), "lv_per_frame": lv, "myo_per_frame": my, "per_stack": stacks}, seg, cine


def add_evaluate_seg_parser(sub):
    p = sub.add_parser("evaluate-seg", help="Dice of the segmentation model on labelled data")
    p.add_argument("--acdc", default=None, help="ACDC folder: evaluates its validation stacks")
    p.add_argument("--sunnybrook", default=None, help="Sunnybrook study folder (dicoms/, contourfiles/)")
    p.add_argument("--model", default=None, help="segmentation model (.keras); default: bundled")
    p.add_argument("--no-tta", action="store_true", help="no flip test-time augmentation")
    p.set_defaults(func=_cli)


def _cli(args):
    if not args.acdc and not args.sunnybrook:
        raise CardiacQuanError("evaluate-seg: give --acdc and/or --sunnybrook")
    model = load_seg_model(args.model)
    if args.acdc:
        summarise(evaluate_acdc_stacks(args.acdc, model, tta=not args.no_tta))
    if args.sunnybrook:
        evaluate_sunnybrook(args.sunnybrook, model, tta=not args.no_tta)
    return 0
