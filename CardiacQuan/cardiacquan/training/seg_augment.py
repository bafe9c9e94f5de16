"""Random training patches that look like other scanners' cines.

ACDC is one vendor (Siemens) at one site with cropped-ish fields of view; real inputs come
from anywhere.  Each patch is drawn at the network's physical resolution with random scale
(also absorbing the unknown pixel size), rotation, mirroring and position (heart anywhere,
sometimes absent).  Then what differs between scanners and sites is randomised (domain
randomisation), so none of it can serve as a cue:

- contrast: gamma, a random monotone transfer curve (a vendor's reconstruction and windowing;
  monotone because a bright-blood cine never inverts), and random shallow convolutional
  networks blended into the image (GIN; Ouyang et al., "Causality-inspired single-source
  domain generalization for medical image segmentation", IEEE TMI 2022), kept inversion-free;
- coil bias fields (the bias-field family of Chen et al., "Realistic adversarial data
  augmentation for MR image segmentation", MICCAI 2020, drawn at random, not adversarially);
- resolution: blur, lower acquired resolution, and k-space truncation in one or both
  directions (Gibbs ringing at sharp edges, as real acquisitions show);
- noise: Rician, with a smooth spatially varying level (parallel imaging's g-factor).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from cardiacquan.contract import LV_CAVITY
from cardiacquan.segmentation.network import NOT_LV_CAVITY, PATCH, WORK_SPACING_MM
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


def _monotone_curve(x, rng):
    """A random increasing transfer curve through sorted control points, blended with the identity."""
    k = int(rng.integers(2, 6))
    xs = np.r_[0.0, np.sort(rng.uniform(0, 1, k)), 1.0]
    ys = np.r_[0.0, np.sort(rng.uniform(0, 1, k)), 1.0]
    a = rng.uniform(0.3, 1.0)
    return a * np.interp(x, xs, ys) + (1 - a) * x


def _random_conv_net(x, rng, channels=4, layers=3):
    """GIN: the image through a random 3-layer convolutional net (kernels 1 or 3, leaky ReLU),
    rescaled to the image's range, its sign chosen so that contrast is not inverted, then blended."""
    h = x[None]
    for layer in range(layers):
        k = 1 if rng.random() < 0.5 else 3
        c_out = 1 if layer == layers - 1 else channels
        w = rng.normal(0, 1, (c_out, h.shape[0], k, k))
        out = np.stack([sum(ndimage.correlate(h[i], w[o, i], mode="nearest") for i in range(h.shape[0]))
                        for o in range(c_out)])
        h = out if layer == layers - 1 else np.where(out > 0, out, 0.2 * out)
    g = h[0]
    if np.corrcoef(g.ravel(), x.ravel())[0, 1] < 0:
        g = -g
    lo, hi = np.percentile(g, [1, 99.5])
    g = np.clip((g - lo) / max(hi - lo, 1e-6), 0, 1)
    a = rng.uniform(0.2, 0.8)
    return a * g + (1 - a) * x


def _kspace_truncation(x, rng):
    """Keep a centred fraction of k-space in one or both directions: lower resolution with ringing."""
    f = np.fft.fftshift(np.fft.fft2(x))
    keep = rng.uniform(0.35, 0.85, 2)
    if rng.random() < 0.5:
        keep[int(rng.integers(2))] = 1.0          # phase-encode direction only
    mask = np.ones_like(x)
    for ax, frac in enumerate(keep):
        if frac >= 1.0:
            continue
        n = x.shape[ax]
        half = int(round(frac * n / 2))
        m = np.zeros(n)
        m[n // 2 - half:n // 2 + half] = 1.0
        mask = mask * (m[:, None] if ax == 0 else m[None, :])
    return np.abs(np.fft.ifft2(np.fft.ifftshift(f * mask)))


def augment_intensity(x, rng):
    x = np.clip(x, 0.0, 1.0)
    if rng.random() < 0.5:
        x = _monotone_curve(x, rng)
    x = x ** np.exp(rng.normal(0.0, 0.3))                       # contrast (gamma)
    if rng.random() < 0.3:
        x = _random_conv_net(x, rng)
    if rng.random() < 0.7:
        x = x * _bias_field(x.shape, rng, rng.uniform(0.1, 0.6))  # coil inhomogeneity
    if rng.random() < 0.25:                                     # lower acquired resolution
        f = rng.uniform(1.2, 2.0)
        small = ndimage.zoom(x, 1.0 / f, order=1)
        x = ndimage.zoom(small, np.array(x.shape) / np.array(small.shape), order=1)
    if rng.random() < 0.3:
        x = _kspace_truncation(x, rng)
    if rng.random() < 0.3:
        x = ndimage.gaussian_filter(x, rng.uniform(0.3, 1.2))
    x = x * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)
    if rng.random() < 0.6:                                      # Rician noise (magnitude images)
        s = rng.uniform(0.0, 0.08)
        if rng.random() < 0.5:
            s = s * _bias_field(x.shape, rng, rng.uniform(0.2, 0.8))   # g-factor: noise varies in space
        x = np.sqrt((x + rng.normal(0, 1, x.shape) * s) ** 2 + (rng.normal(0, 1, x.shape) * s) ** 2)
    return np.clip(x, 0.0, 1.5).astype(np.float32)


def random_patch(img, lab, spacing, rng, patch=PATCH, work_spacing=WORK_SPACING_MM, augment=True, intensity=True):
    """One (image, label) patch pair; `spacing` is the (assumed) isotropic pixel size of img.
    With intensity=False only the geometry is random (the caller randomises the intensities
    after keeping the clean patch, e.g. for a teacher network).

    A partially labelled image (LV cavity and NOT_LV_CAVITY only) is centred on its cavity and
    padded with NOT_LV_CAVITY: outside the image is unknown there too, not background."""
    scale = float(np.exp(rng.uniform(np.log(0.75), np.log(1.35)))) if augment else 1.0
    angle = rng.uniform(0, 2 * np.pi) if augment else 0.0
    flip = bool(rng.random() < 0.5) if augment else False
    partial = bool((lab == NOT_LV_CAVITY).any())
    heart = np.argwhere(lab == LV_CAVITY) if partial else np.argwhere(lab > 0)
    if heart.size and (rng.random() < 0.9 or not augment):
        centre = heart.mean(axis=0)
        if augment:
            centre = centre + np.clip(rng.normal(0, 25.0, 2), -60, 60) / spacing
    else:
        centre = rng.uniform([0, 0], img.shape)
    M, o = patch_affine(centre, (spacing, spacing), (patch, patch), work_spacing, angle, flip, scale)
    x = sample_patch(img, M, o, (patch, patch), order=1, cval=0.0)
    y = sample_patch(lab, M, o, (patch, patch), order=0, cval=NOT_LV_CAVITY if partial else 0)
    if augment and intensity:
        x = augment_intensity(x, rng)
    return x, y.astype(np.uint8)
