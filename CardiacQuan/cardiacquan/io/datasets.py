"""Readers for the training / validation data sets: ACDC h5 copies, LVQuan18 .mat, Sunnybrook contours.

They return plain arrays in the project's label convention (0 background, 2 LV myocardium,
3 LV cavity, 1 RV) so training and validation code never sees a data set's own quirks.

h5py and scikit-image (requirements-train.txt) are imported where a reader needs them: the CLI
imports this file with the training and evaluation commands, and `cardiacquan quantify` must run
without them (the Slicer module's requirements).
"""
from __future__ import annotations

import glob
import os
import re

import numpy as np
import scipy.io

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM
from cardiacquan.io.cine import Cine

ACDC_ASSUMED_FOV_MM = 350.0
LVQUAN_SIZE = 80
LVQUAN_FRAMES = 20


def read_acdc_h5(path):
    """(image float32, label uint8), both (R,C) or (Z,R,C), from an ACDC h5 copy."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CardiacQuanError(f"no such file: {path}")
    import h5py   # optional (training only)
    try:
        with h5py.File(path, "r") as h:
            if "image" not in h or "label" not in h:
                raise CardiacQuanError(f"{os.path.basename(path)}: needs datasets 'image' and 'label', has {sorted(h)}")
            image, label = np.asarray(h["image"], np.float32), np.asarray(h["label"])
    except OSError as e:
        raise CardiacQuanError(f"cannot read {os.path.basename(path)} as HDF5: {e}".splitlines()[0])
    if image.shape != label.shape or image.ndim not in (2, 3):
        raise CardiacQuanError(f"{os.path.basename(path)}: image {image.shape} and label {label.shape} "
                               "must be equal 2-D or 3-D shapes")
    return image, label.astype(np.uint8)


def acdc_assumed_spacing(shape) -> float:
    """Pixel size (mm) assumed for ACDC copies that lost their header.

    ASSUMPTION: a typical 350 mm field of view spans the larger image side; ACDC's real
    in-plane spacing is 1.2-1.9 mm, which this gives for the usual 216-512 pixel matrices.
    """
    return ACDC_ASSUMED_FOV_MM / float(max(shape[-2:]))


def _load_mat(path):
    """MATLAB file -> {name: array} in MATLAB axis order (v7.3 files are HDF5, read with h5py)."""
    import h5py   # optional (training only)
    try:
        if h5py.is_hdf5(path):       # h5py shows MATLAB's column-major axes reversed
            with h5py.File(path, "r") as h:
                return {k: np.asarray(h[k]).T for k in h if isinstance(h[k], h5py.Dataset)}
        return {k: np.asarray(v) for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except Exception as e:
        raise CardiacQuanError(f"cannot read {os.path.basename(path)} as a MATLAB file: {e}".splitlines()[0])


def read_lvquan_mat(path) -> dict:
    """Read an LVQuan18 `cardiac-dig.mat` into per-frame arrays in mm, with label masks.

    Returns images (N,80,80) float32, labels (N,80,80) uint8 (3 cavity = inside endo_LV,
    2 myocardium = inside epi_LV but not endo_LV), areas_mm2 (N,2) [cavity, myocardium],
    dims_mm (N,3), rwt_mm (N,6), phase (N,) int, subject (N,) int (0-based; frames
    20s..20s+19), pixel_mm (N,) = pix_spa * ratio_resize_inverse (the 80-pixel image's pixel
    size), pix_spa (S,), ratio_resize_inverse (S,), n_subjects.  Indices are stored normalised
    by the 80-pixel size: mm = value * 80 * pixel size (squared for areas).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CardiacQuanError(f"no such file: {path}")
    m = _load_mat(path)
    need = ["images_LV", "endo_LV", "epi_LV", "areas", "dims", "rwt", "lv_phase", "pix_spa", "ratio_resize_inverse"]
    missing = [k for k in need if k not in m]
    if missing:
        raise CardiacQuanError(f"{os.path.basename(path)} is not an LVQuan18 file: missing {', '.join(missing)}")
    pix, ratio = m["pix_spa"].astype(float).ravel(), m["ratio_resize_inverse"].astype(float).ravel()
    S = len(pix)
    N = S * LVQUAN_FRAMES
    imgs = m["images_LV"]
    if imgs.ndim != 3 or imgs.shape[:2] != (LVQUAN_SIZE, LVQUAN_SIZE) or imgs.shape[2] != N or len(ratio) != S:
        raise CardiacQuanError(f"{os.path.basename(path)}: images_LV is {imgs.shape}, expected 80x80x{N} "
                               f"for {S} subjects of {LVQUAN_FRAMES} frames")

    def rows(key, k):
        a = m[key].astype(float)
        if a.shape != (k, N):
            raise CardiacQuanError(f"{os.path.basename(path)}: {key} is {a.shape}, expected {(k, N)}")
        return a.T

    subject = np.repeat(np.arange(S), LVQUAN_FRAMES)
    px = (pix * ratio)[subject]
    endo = np.moveaxis(m["endo_LV"], 2, 0) > 0
    epi = np.moveaxis(m["epi_LV"], 2, 0) > 0
    labels = np.zeros(endo.shape, np.uint8)
    labels[epi] = MYOCARDIUM
    labels[endo] = LV_CAVITY
    scale = (LVQUAN_SIZE * px)[:, None]
    return dict(images=np.moveaxis(imgs, 2, 0).astype(np.float32), labels=labels,
                areas_mm2=rows("areas", 2) * scale ** 2, dims_mm=rows("dims", 3) * scale,
                rwt_mm=rows("rwt", 6) * scale, phase=rows("lv_phase", 1)[:, 0].astype(int),
                subject=subject, pixel_mm=px, pix_spa=pix, ratio_resize_inverse=ratio, n_subjects=S)


CONTOUR_NAME = re.compile(r"IM-\d+-(\d+)-([io])contour", re.IGNORECASE)


def polygon_mask(txt, shape, first_pixel=1.0):
    """Pixels whose centres lie inside a Sunnybrook contour (first_pixel: the coordinate of the
    first pixel's centre in the file; other values only to compare readings).

    The files count pixels from 1 (MATLAB's convention: the first pixel's centre is (1, 1)),
    which nothing in the data says; the images do.  Read from 0, the contours sit 0.4-0.5 px
    down and right of the study's own blood-pool edges by a model-free fit along their normals
    (`edge_alignment`; a 1-px shift reads as 0.5-0.65 px in that fit), where the ACDC experts'
    masks and our segmentations fit at 0.1 px or less.  Read from 1 they fit at 0.04 / 0.17 px,
    the pixel-corner reading (-0.5 px) at 0.24 / 0.37 px.  `scripts/contour_alignment.py`.
    """
    try:
        xy = np.loadtxt(txt, ndmin=2)
    except ValueError as e:
        raise CardiacQuanError(f"{os.path.basename(txt)}: not a list of 'x y' points ({e})")
    if xy.shape[0] < 3 or xy.shape[1] != 2:
        raise CardiacQuanError(f"{os.path.basename(txt)}: needs at least 3 'x y' points")
    from skimage.draw import polygon2mask   # optional (training and evaluation only)

    return polygon2mask(shape, xy[:, ::-1] - first_pixel)   # (row, col) = (y, x), now 0-based


def read_sunnybrook_contours(contour_dir, cine: Cine):
    """Sunnybrook manual contours -> (cavity, myocardium): dicts {(z, t): bool (R,C) mask}.

    `cavity` has one mask per i-contour; `myocardium` (inside the o-contour, outside the
    i-contour) only where both contours exist.  File IM-0001-NNNN-... belongs to the DICOM image
    with InstanceNumber NNNN, placed through cine.metadata['instance_map'] (so the cine must
    come from read_dicom_cine on the matching DICOM folder).
    """
    contour_dir = os.fspath(contour_dir)
    if not os.path.isdir(contour_dir):
        raise CardiacQuanError(f"no such folder: {contour_dir}")
    imap = cine.metadata.get("instance_map")
    if not imap:
        raise CardiacQuanError("the cine has no DICOM instance map: read it with read_dicom_cine from the study's folder")
    shape = cine.frame_shape
    masks = {"i": {}, "o": {}}
    for txt in sorted(glob.glob(os.path.join(contour_dir, "**", "*contour*.txt"), recursive=True)):
        m = CONTOUR_NAME.search(os.path.basename(txt))
        if not m:
            continue
        inst = int(m.group(1))
        if inst not in imap:
            raise CardiacQuanError(f"{os.path.basename(txt)} refers to image {inst}, which is not in the cine")
        masks[m.group(2).lower()][tuple(imap[inst])] = polygon_mask(txt, shape)
    if not masks["i"]:
        raise CardiacQuanError(f"no Sunnybrook i-contour files (IM-....-NNNN-icontour-manual.txt) in {contour_dir}")
    cavity = masks["i"]
    myocardium = {k: o & ~cavity[k] for k, o in masks["o"].items() if k in cavity}
    return cavity, myocardium


# Sunnybrook subjects kept out of training (two per group): a GE yardstick of the cavity border
# beside the full-cycle study, which is never trained on either.
SUNNYBROOK_ENDO_HELD_OUT = ("SC-HF-I-12", "SC-HF-I-40", "SC-HF-NI-34", "SC-HF-NI-36",
                            "SC-HYP-38", "SC-HYP-40", "SC-N-11", "SC-N-40")
SUNNYBROOK_FRAMES = 20   # phases per slice in the Sunnybrook studies: InstanceNumber = 20 * slice + phase + 1


def sunnybrook_endo_subjects(folder, held_out: bool):
    """Paths of the `sunnybrook-endo` subjects for training (held_out=False) or validation."""
    paths = sorted(glob.glob(os.path.join(os.fspath(folder), "SC-*.h5")))
    if not paths:
        raise CardiacQuanError(f"{folder}: no SC-*.h5 subjects (the sunnybrook-endo layout)")
    return [p for p in paths if (os.path.basename(p)[:-3] in SUNNYBROOK_ENDO_HELD_OUT) == held_out]


def read_sunnybrook_endo_h5(path):
    """(image float32 (N,R,C), cavity bool (N,R,C), slice (N,), phase (N,)) of one subject.

    Only the LV cavity is labelled there: 0 means myocardium, RV or background alike."""
    import h5py   # optional (training only)
    try:
        with h5py.File(os.fspath(path), "r") as h:
            image, cavity = np.asarray(h["image"], np.float32), np.asarray(h["cavity"]) > 0
            instance = np.asarray(h["instance"], int)
    except (OSError, KeyError) as e:
        raise CardiacQuanError(f"cannot read {os.path.basename(os.fspath(path))} as a sunnybrook-endo subject: {e}")
    return image, cavity, (instance - 1) // SUNNYBROOK_FRAMES, (instance - 1) % SUNNYBROOK_FRAMES
