"""Training data for the segmentation network, packed once into one compact .npz.

ACDC slices keep their native grid (no resampling here: scale is an augmentation), as uint8
after percentile normalisation, so the whole training set travels in a few tens of MB to
whatever machine trains.  These ACDC copies carry no pixel spacing; each slice gets the
estimate `acdc_assumed_spacing` (a 350 mm field of view) and training randomises scale
around it, so the error of that estimate is absorbed by augmentation.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY
from cardiacquan.io.datasets import (SUNNYBROOK_ENDO_HELD_OUT, acdc_assumed_spacing, read_acdc_h5,
                                     read_sunnybrook_endo_h5, sunnybrook_endo_subjects)
from cardiacquan.segmentation.intensity import normalize_intensity
from cardiacquan.segmentation.network import NOT_LV_CAVITY

CONTEXT_MM = 90.0  # tissue kept around the heart: more than the 200 mm patch needs around its centre


def _crop_to_heart(img, lab, spacing, heart=None):
    """Keep the heart with CONTEXT_MM of surroundings; halves the data, keeps what training samples."""
    rows, cols = np.nonzero(lab if heart is None else heart)
    if rows.size == 0:
        return img, lab
    m = int(round(CONTEXT_MM / spacing))
    r0, r1 = max(rows.min() - m, 0), min(rows.max() + m + 1, img.shape[0])
    c0, c1 = max(cols.min() - m, 0), min(cols.max() + m + 1, img.shape[1])
    return img[r0:r1, c0:c1], lab[r0:r1, c0:c1]


def _pack_partial(folder, log):
    """The sunnybrook-endo training subjects as partially labelled slices: LV cavity where the
    readers drew it, NOT_LV_CAVITY elsewhere (myocardium, RV and background are not told apart)."""
    imgs, labs, shapes, spacing, names = [], [], [], [], []
    subjects = sunnybrook_endo_subjects(folder, held_out=False)
    for path in subjects:
        image, cavity, _, _ = read_sunnybrook_endo_h5(path)
        for img, cav in zip(image, cavity):
            names.append(Path(path).stem)
            sp = acdc_assumed_spacing(img.shape)     # also unknown here: Sunnybrook is 1.25-1.45 mm
            lab = np.where(cav, LV_CAVITY, NOT_LV_CAVITY).astype(np.uint8)
            img, lab = _crop_to_heart(normalize_intensity(img), lab, sp, heart=cav)
            imgs.append((img * 255 + 0.5).astype(np.uint8).ravel())
            labs.append(lab.ravel())
            shapes.append(img.shape)
            spacing.append(sp)
    log(f"packed {len(shapes)} partially labelled frames of {len(subjects)} sunnybrook-endo subjects")
    return {"partial_image": np.concatenate(imgs), "partial_label": np.concatenate(labs),
            "partial_shape": np.array(shapes), "partial_spacing": np.array(spacing),
            "partial_subject": np.array(names, dtype=str)}


def pack_acdc(acdc_dir, out_path, log=print, with_validation=True, sunnybrook_endo=None):
    """Write train slices (and validation stacks) of `acdc_dir`, and the partially labelled
    training subjects of `sunnybrook_endo` if given, into `out_path` (.npz)."""
    acdc_dir = Path(acdc_dir)
    names = [n.strip() for n in (acdc_dir / "train_slices.list").read_text().split() if n.strip()]
    imgs, labs, shapes, spacing, patient, phase = [], [], [], [], [], []
    for k, name in enumerate(sorted(names)):
        img, lab = read_acdc_h5(acdc_dir / "data" / f"{name}.h5")
        sp = acdc_assumed_spacing(img.shape)
        img, lab = _crop_to_heart(normalize_intensity(img), lab, sp)
        imgs.append((img * 255 + 0.5).astype(np.uint8).ravel())
        labs.append(lab.ravel())
        shapes.append(img.shape)
        spacing.append(sp)
        m = re.match(r"patient(\d+)_frame(\d+)", name)
        patient.append(int(m.group(1)))
        phase.append(int(m.group(2)))
        if k % 200 == 0:
            log(f"packed {k}/{len(names)} training slices")
    val_names = [n.strip() for n in (acdc_dir / "val.list").read_text().split() if n.strip()]
    if not with_validation:
        val_names = []
    vimgs, vlabs, vshapes, vnames = [], [], [], []
    for name in sorted(val_names):
        img, lab = read_acdc_h5(acdc_dir / "data" / f"{name}.h5")
        # normalise per slice, as inference does per 2-D frame's slice
        norm = np.stack([normalize_intensity(s) for s in img])
        vimgs.append((norm * 255 + 0.5).astype(np.uint8).ravel())
        vlabs.append(lab.ravel())
        vshapes.append(img.shape)
        vnames.append(name)
    partial = _pack_partial(sunnybrook_endo, log) if sunnybrook_endo else {}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out_path,
        train_image=np.concatenate(imgs), train_label=np.concatenate(labs),
        train_shape=np.array(shapes), train_spacing=np.array(spacing),
        train_patient=np.array(patient), train_phase=np.array(phase),
        val_image=np.concatenate(vimgs) if vimgs else np.zeros(0, np.uint8),
        val_label=np.concatenate(vlabs) if vlabs else np.zeros(0, np.uint8),
        val_shape=np.array(vshapes).reshape(-1, 3), val_name=np.array(vnames, dtype=str),
        **partial,
    )
    log(f"wrote {out_path}: {len(names)} training slices, {len(vnames)} validation stacks")


def _split(flat, shapes):
    out, pos = [], 0
    for sh in shapes:
        n = int(np.prod(sh))
        out.append(flat[pos:pos + n].reshape(sh))
        pos += n
    return out


def _open_packed(path):
    """The packed arrays (lazily) and the image shapes, or CardiacQuanError for another file."""
    try:
        d = np.load(path, allow_pickle=False)
        return d, [tuple(s) for s in d["train_shape"]], [tuple(s) for s in d["val_shape"]]
    except (OSError, ValueError, KeyError) as e:
        raise CardiacQuanError(f"{path}: not a packed ACDC file made by `train-seg --pack-only` ({e})")


def check_packed(path) -> int:
    """Fail early on a file that is not a packed training set, or whose partially labelled frames
    include a held-out subject (only index arrays are read); -> number of partially labelled frames."""
    d, _, _ = _open_packed(path)
    if "partial_shape" not in d:
        return 0
    subjects = set(d["partial_subject"]) if "partial_subject" in d else None
    if subjects is None or subjects & set(SUNNYBROOK_ENDO_HELD_OUT):
        raise CardiacQuanError(f"{path}: its partially labelled frames are not known to exclude the held-out "
                               "subjects: pack it again")
    return len(d["partial_shape"])


def load_packed(path):
    """-> dict with lists: train_images (float32 0..1), train_labels, train_spacing, ...; val likewise."""
    d, tshape, vshape = _open_packed(path)
    return {
        "train_images": [a.astype(np.float32) / 255.0 for a in _split(d["train_image"], tshape)],
        "train_labels": _split(d["train_label"], tshape),
        "train_spacing": d["train_spacing"].astype(float),
        "train_patient": d["train_patient"],
        "train_phase": d["train_phase"],
        "val_images": [a.astype(np.float32) / 255.0 for a in _split(d["val_image"], vshape)],
        "val_labels": _split(d["val_label"], vshape),
        "val_names": [str(n) for n in d["val_name"]],
        **_load_partial(d),
    }


def _load_partial(d):
    """Partially labelled slices (sunnybrook-endo), or empty lists in a file packed without them."""
    if "partial_shape" not in d:
        return {"partial_images": [], "partial_labels": [], "partial_spacing": np.zeros(0)}
    shapes = [tuple(s) for s in d["partial_shape"]]
    return {"partial_images": [a.astype(np.float32) / 255.0 for a in _split(d["partial_image"], shapes)],
            "partial_labels": _split(d["partial_label"], shapes),
            "partial_spacing": d["partial_spacing"].astype(float)}
