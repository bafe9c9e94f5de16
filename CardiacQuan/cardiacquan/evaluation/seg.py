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
from cardiacquan.io.datasets import (acdc_assumed_spacing, read_acdc_h5, read_sunnybrook_contours,
                                     read_sunnybrook_endo_h5, sunnybrook_endo_subjects)
from cardiacquan.io.dicom import read_dicom_cine
from cardiacquan.models import load_seg_model
from cardiacquan.segmentation.inference import segment_cine

CLASSES = {"RV": RV, "MYO": MYOCARDIUM, "LV": LV_CAVITY}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / s) if s else 1.0


def dice_per_class(pred, truth):
    return {name: dice(pred == k, truth == k) for name, k in CLASSES.items()}


def _cavity_pairs(border, images, truth, pred):
    """Add (image, reference cavity, predicted cavity) of each slice where both exist to `border`."""
    if border is None:
        return
    for img, t, p in zip(images, truth, pred):
        if t.sum() >= 20 and p.sum() >= 20:
            border.append((img, t, p))


def evaluate_acdc_stacks(acdc_dir, model=None, log=print, tta=True, border=None):
    """Segment each validation stack (ED and ES) as a one-frame cine; Dice per class/phase.
    With a list `border`, adds (image, expert cavity, predicted cavity) per slice to it."""
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
        _cavity_pairs(border, img, lab == LV_CAVITY, pred == LV_CAVITY)
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


def evaluate_sunnybrook(study_dir, model=None, log=print, tta=True, border=None):
    """LV cavity Dice on every contoured frame; myocardium Dice where an epicardium exists.

    Per frame (the Sunnybrook challenge's way) and per stack of each contoured frame (ACDC's);
    predicted / manual cavity area of each contoured frame of the cycle (all its slices)."""
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
    area_ratio = {}
    for t in sorted({t for _, t in cavity}):
        keys = [key for key in cavity if key[1] == t]
        area_ratio[t] = float(sum(np.count_nonzero(seg.labels[t, z] == LV_CAVITY) for z, _ in keys)
                              / sum(np.count_nonzero(cavity[key]) for key in keys))
    log("  predicted / manual cavity area: " + ", ".join(f"t={t} {r:.3f}" for t, r in area_ratio.items()))
    keys = sorted(cavity)
    _cavity_pairs(border, [cine.image[t, z] for z, t in keys], [cavity[k] for k in keys],
                  [seg.labels[t, z] == LV_CAVITY for z, t in keys])
    return {"lv_dice": float(np.mean(lv)), "myo_dice_ed": float(np.mean(my)), "n_lv": len(lv),
            "n_myo": len(my), "lv_per_frame": lv, "myo_per_frame": my, "per_stack": stacks,
            "cavity_area_ratio": area_ratio}, seg, cine


def evaluate_sunnybrook_endo(folder, model=None, log=print, tta=True, border=None):
    """LV cavity Dice and predicted / reader cavity area on the held-out sunnybrook-endo subjects.

    Each subject's contoured slices of one phase are segmented as one stack (a one-frame cine;
    the copies have no pixel spacing, so the ACDC assumption of a 350 mm field of view is used).
    The phase with the larger reader cavity is ED."""
    rows = []
    for path in sunnybrook_endo_subjects(folder, held_out=True):
        image, cavity, _, phase = read_sunnybrook_endo_h5(path)
        stacks = {ph: np.flatnonzero(phase == ph) for ph in np.unique(phase)}
        if len(stacks) != 2:
            raise CardiacQuanError(f"{Path(path).name}: expected the ED and ES frames, found phases {sorted(stacks)}")
        ed = max(stacks, key=lambda ph: cavity[stacks[ph]].sum())
        for ph, idx in stacks.items():
            sp = acdc_assumed_spacing(image.shape)
            cine = Cine(image=image[idx][None], spacing=(sp, sp), origins=np.zeros((len(idx), 3)))
            pred = segment_cine(cine, model=model, tta=tta).labels[0] == LV_CAVITY
            truth = cavity[idx]
            _cavity_pairs(border, image[idx], truth, pred)
            rows.append({"subject": Path(path).stem, "phase": "ED" if ph == ed else "ES",
                         "dice": [dice(p, t) for p, t in zip(pred, truth)],
                         "pred_area": int(pred.sum()), "reader_area": int(truth.sum())})
    out = {}
    for phase in ("ED", "ES", "all"):
        sel = [r for r in rows if phase in ("all", r["phase"])]
        out[phase] = {"dice_per_frame": float(np.mean([d for r in sel for d in r["dice"]])),
                      "area_ratio": float(sum(r["pred_area"] for r in sel) / sum(r["reader_area"] for r in sel)),
                      "n_frames": sum(len(r["dice"]) for r in sel)}
        log(f"sunnybrook-endo held out {phase:>3}: LV cavity Dice per frame {out[phase]['dice_per_frame']:.3f}, "
            f"predicted / reader area {out[phase]['area_ratio']:.3f} ({out[phase]['n_frames']} frames, "
            f"{len({r['subject'] for r in sel})} subjects)")
    return out


def border_offsets(pairs, name, log=print):
    """Where the reference's and the model's cavity borders run relative to the image's own
    blood-myocardium edge (outward offset in pixels; `edge_alignment`), on the same slices."""
    from cardiacquan.evaluation.edge_alignment import edge_fit   # scikit-image: not on the quantify path
    ref = edge_fit([(img, t) for img, t, _ in pairs])
    mod = edge_fit([(img, p) for img, _, p in pairs])
    log(f"border vs image edge, {name}: reference {ref.outward_px:+.2f} px, model {mod.outward_px:+.2f} px "
        f"(model - reference {mod.outward_px - ref.outward_px:+.2f} px; {len(pairs)} slices)")
    return {"reference_px": ref.outward_px, "model_px": mod.outward_px}


def add_evaluate_seg_parser(sub):
    p = sub.add_parser("evaluate-seg", help="Dice of the segmentation model on labelled data")
    p.add_argument("--acdc", default=None, help="ACDC folder: evaluates its validation stacks")
    p.add_argument("--sunnybrook", default=None, help="Sunnybrook study folder (dicoms/, contourfiles/)")
    p.add_argument("--sunnybrook-endo", default=None,
                   help="sunnybrook-endo folder: evaluates its held-out subjects (LV cavity only)")
    p.add_argument("--border", action="store_true",
                   help="also fit where reference and model cavity borders run relative to the image edge")
    p.add_argument("--model", default=None, help="segmentation model (.keras); default: bundled")
    p.add_argument("--no-tta", action="store_true", help="no flip test-time augmentation")
    p.set_defaults(func=_cli)


def _cli(args):
    if not args.acdc and not args.sunnybrook and not args.sunnybrook_endo:
        raise CardiacQuanError("evaluate-seg: give --acdc, --sunnybrook and/or --sunnybrook-endo")
    model = load_seg_model(args.model)
    tta = not args.no_tta
    runs = ((args.acdc, "ACDC validation", lambda b: summarise(evaluate_acdc_stacks(args.acdc, model, tta=tta, border=b))),
            (args.sunnybrook, "Sunnybrook study", lambda b: evaluate_sunnybrook(args.sunnybrook, model, tta=tta, border=b)),
            (args.sunnybrook_endo, "sunnybrook-endo held out",
             lambda b: evaluate_sunnybrook_endo(args.sunnybrook_endo, model, tta=tta, border=b)))
    for given, name, run in runs:
        if given:
            pairs = [] if args.border else None
            run(pairs)
            if args.border:
                border_offsets(pairs, name)
    return 0
