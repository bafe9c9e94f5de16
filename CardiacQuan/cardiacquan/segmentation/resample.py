"""Sampling a square patch at a fixed physical resolution out of a 2-D frame, and back.

The segmentation network works at one pixel size (`WORK_SPACING_MM`) whatever the scanner
used, so scale is removed by geometry instead of being learnt.  The same affine map serves
training augmentation (rotation, mirroring, scale) and inference (pure resampling), and its
inverse brings probabilities back onto the input's own pixel grid.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def patch_affine(center_rc, spacing, out_shape, out_spacing, angle_rad=0.0, flip=False, scale=1.0):
    """Matrix M and offset o with native (row, col) = M @ (i, j) + o for patch pixel (i, j).

    `scale` > 1 makes anatomy look larger in the patch (the physical field of view shrinks).
    """
    dr, dc = spacing
    H, W = out_shape
    s = out_spacing / scale
    # patch pixel -> physical offset (y down, x right) in mm around the centre
    P = np.array([[s, 0.0], [0.0, s]])
    if flip:
        P = P @ np.array([[1.0, 0.0], [0.0, -1.0]])
    c, si = np.cos(angle_rad), np.sin(angle_rad)
    Rm = np.array([[c, -si], [si, c]])
    to_native = np.diag([1.0 / dr, 1.0 / dc])
    M = to_native @ Rm @ P
    centre_patch = np.array([(H - 1) / 2.0, (W - 1) / 2.0])
    o = np.asarray(center_rc, dtype=float) - M @ centre_patch
    return M, o


def sample_patch(image, M, o, out_shape, order=1, cval=0.0):
    return ndimage.affine_transform(image, M, offset=o, output_shape=tuple(out_shape), order=order,
                                    mode="constant", cval=cval, prefilter=False)


def patch_to_native(channels, M, o, native_shape, order=1, cval=0.0):
    """Resample patch channels (H, W, K) back onto the native grid (R, C, K).

    Native pixels outside the patch get `cval`."""
    Minv = np.linalg.inv(M)
    oinv = -Minv @ o
    out = np.empty(tuple(native_shape) + (channels.shape[-1],), dtype=np.float32)
    for k in range(channels.shape[-1]):
        out[..., k] = ndimage.affine_transform(channels[..., k], Minv, offset=oinv, output_shape=tuple(native_shape),
                                               order=order, mode="constant", cval=cval if k else 1.0,
                                               prefilter=False)
    return out
