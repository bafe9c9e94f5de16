#!/usr/bin/env python
"""How the bundled segmentation model holds up when the same study arrives differently.

The product is used on scanners and protocols it has not seen.  This takes the Sunnybrook
study (../shared/data/sunnybrook, GE, 1.37 mm pixels, manual contours) and changes one thing
at a time, as other sites would: rotated or mirrored views, the heart near the edge of a
larger field of view, finer or coarser pixels, raw intensities on another scale, noise.
Each variant goes through `segment_cine` like any input; the predicted labels are mapped back
onto the original pixel grid (nearest neighbour) and compared with the manual contours.

Prints LV cavity Dice over all contoured frames and myocardium Dice at end-diastole per
variant (a measurement, not a test).

    python scripts/robustness_segmentation.py [--variants all|name,name]
"""
import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CardiacQuan"))
SUNNYBROOK = ROOT.parent / "shared" / "data" / "sunnybrook"


def _resample_cine(cine, new_spacing):
    """The cine on a grid of `new_spacing` mm pixels covering the same field of view."""
    from scipy import ndimage
    f = np.asarray(cine.spacing) / new_spacing
    img = ndimage.zoom(cine.image, (1, 1, f[0], f[1]), order=1)
    return dataclasses.replace(cine, image=img.astype(np.float32), spacing=(new_spacing, new_spacing))


def _back_to_grid(labels, shape):
    """Nearest-neighbour labels (T, Z, r, c) -> (T, Z, R, C) on the original pixel centres."""
    from scipy import ndimage
    f = (1, 1, shape[-2] / labels.shape[-2], shape[-1] / labels.shape[-1])
    out = ndimage.zoom(labels, f, order=0, grid_mode=True, mode="nearest")
    return out[..., :shape[-2], :shape[-1]]


def variants(cine, rng):
    """name -> (cine as another site would send it, function mapping its labels back)."""
    T, Z, R, C = cine.image.shape
    ident = lambda lab: lab                                                        # noqa: E731
    out = {"as acquired": (cine, ident)}
    out["rotated 90 deg"] = (dataclasses.replace(cine, image=np.rot90(cine.image, 1, axes=(2, 3)).copy(),
                                                 spacing=cine.spacing[::-1]),
                             lambda lab: np.rot90(lab, -1, axes=(2, 3)))
    out["mirrored"] = (dataclasses.replace(cine, image=cine.image[..., ::-1].copy()), lambda lab: lab[..., ::-1])
    big = np.zeros((T, Z, 384, 384), np.float32) + np.percentile(cine.image, 5)
    big[:, :, 128:, :C] = cine.image                   # heart towards a corner of a 384x384 field of view
    out["heart near the corner of 384x384"] = (dataclasses.replace(cine, image=big), lambda lab: lab[:, :, 128:, :C])
    for sp in (0.8, 2.0):
        out[f"{sp} mm pixels"] = (_resample_cine(cine, sp), lambda lab: _back_to_grid(lab, (R, C)))
    out["intensities x40 + 3000"] = (dataclasses.replace(cine, image=cine.image * 40 + 3000), ident)
    sigma = 0.06 * np.percentile(cine.image, 99)
    noisy = np.hypot(cine.image + rng.normal(0, sigma, cine.image.shape), rng.normal(0, sigma, cine.image.shape))
    out["Rician noise (6 % of the 99th percentile)"] = (dataclasses.replace(cine, image=noisy.astype(np.float32)), ident)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="all")
    args = ap.parse_args()
    if not SUNNYBROOK.is_dir():
        raise SystemExit(f"needs the Sunnybrook study at {SUNNYBROOK}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cardiacquan.contract import LV_CAVITY, MYOCARDIUM
    from cardiacquan.evaluation.seg import dice
    from cardiacquan.io.dicom import read_dicom_cine
    from cardiacquan.io.datasets import read_sunnybrook_contours
    from cardiacquan.models import load_seg_model
    from cardiacquan.segmentation.inference import segment_cine
    cine = read_dicom_cine(next((SUNNYBROOK / "dicoms").iterdir()))
    cavity, myo = read_sunnybrook_contours(next((SUNNYBROOK / "contourfiles").iterdir()), cine)
    model = load_seg_model()
    todo = variants(cine, np.random.default_rng(0))
    if args.variants != "all":
        todo = {k: v for k, v in todo.items() if k in args.variants.split(",")}
    print(f"Sunnybrook SC-HF-I-1: {len(cavity)} contoured frames (LV), {len(myo)} at ED (myocardium)")
    print(f"{'variant':<44} {'LV Dice':>8} {'min':>6} {'myo ED':>7} {'seconds':>8}")
    for name, (c, back) in todo.items():
        t0 = time.perf_counter()
        lab = back(segment_cine(c, model=model).labels)
        dt = time.perf_counter() - t0
        lv = [dice(lab[t, z] == LV_CAVITY, m) for (z, t), m in cavity.items()]
        my = [dice(lab[t, z] == MYOCARDIUM, m) for (z, t), m in myo.items()]
        print(f"{name:<44} {np.mean(lv):8.3f} {np.min(lv):6.3f} {np.mean(my):7.3f} {dt:8.1f}", flush=True)


if __name__ == "__main__":
    main()
