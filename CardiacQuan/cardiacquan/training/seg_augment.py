"""Random training patches that look like other scanners' cines.

ACDC is one vendor (Siemens) at one site with cropped-ish fields of view; real inputs come
from anywhere.  Each patch is drawn at the network's physical resolution with random scale
(also absorbing the unknown ACDC pixel size), rotation, mirroring and position (heart
anywhere, sometimes absent), then contrast (gamma), coil bias field, blur, lower resolution
and Rician noise are randomised, so none of these can serve as a cue.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from cardiacquan.segmentation.network import PATCH, WORK_SPACING_MM
from cardiacquan.segmentation.resample import patch_affine, sample_patch


def _bias_field(shape, rng, strength):
    """Smooth multiplicative field: a few random low-frequency cosines."""
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W] / float(max(H, W))
    log_field = np.zeros(shape, np.float32)
    for _ in range(3):
        fy, fx = rng.uniform(0.2, 1.2, 2)
        ph = rng.uniform(0, 2 * np.pi)
        log_field += np.cos(2 * np.pi * (fy * yy + fx * xx) + ph).astype(np.float32)
    return np.exp(strength * log_field / 3.0)


def augment_intensity(x, rng):
    x = np.clip(x, 0.0, 1.0)
    x = x ** np.exp(rng.normal(0.0, 0.3))                       # contrast (gamma)
    if rng.random() < 0.7:
        x = x * _bias_field(x.shape, rng, rng.uniform(0.1, 0.6))  # coil inhomogeneity
    if rng.random() < 0.25:                                     # lower acquired resolution
        f = rng.uniform(1.2, 2.0)
        small = ndimage.zoom(x, 1.0 / f, order=1)
        x = ndimage.zoom(small, np.array(x.shape) / np.array(small.shape), order=1)
    if rng.random() < 0.3:
        x = ndimage.gaussian_filter(x, rng.uniform(0.3, 1.2))
    x = x * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)
    if rng.random() < 0.6:                                      # Rician noise (magnitude images)
        s = rng.uniform(0.0, 0.08)
        x = np.sqrt((x + rng.normal(0, s, x.shape)) ** 2 + rng.normal(0, s, x.shape) ** 2)
    return np.clip(x, 0.0, 1.5).astype(np.float32)


def random_patch(img, lab, spacing, rng, patch=PATCH, work_spacing=WORK_SPACING_MM, augment=True):
    """One (image, label) patch pair; `spacing` is the (assumed) isotropic pixel size of img."""
    scale = float(np.exp(rng.uniform(np.log(0.75), np.log(1.35)))) if augment else 1.0
    angle = rng.uniform(0, 2 * np.pi) if augment else 0.0
    flip = bool(rng.random() < 0.5) if augment else False
    heart = np.argwhere(lab > 0)
    if heart.size and (rng.random() < 0.9 or not augment):
        centre = heart.mean(axis=0)
        if augment:
            centre = centre + np.clip(rng.normal(0, 25.0, 2), -60, 60) / spacing
    else:
        centre = rng.uniform([0, 0], img.shape)
    M, o = patch_affine(centre, (spacing, spacing), (patch, patch), work_spacing, angle, flip, scale)
    x = sample_patch(img, M, o, (patch, patch), order=1, cval=0.0)
    y = sample_patch(lab, M, o, (patch, patch), order=0, cval=0)
    if augment:
        x = augment_intensity(x, rng)
    return x, y.astype(np.uint8)
