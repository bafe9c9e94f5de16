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


def patch_footprint(M, o, patch_shape, native_shape):
    """(row slice, col slice): the native pixels a patch's values reach when resampled back.

    Linear interpolation blends the constant outside the patch into native pixels whose patch
    coordinates lie within one pixel of its edge, so the patch rectangle grown by one pixel is
    mapped to the native grid and rounded outwards; every native pixel outside this box gets the
    constant alone.  Working inside it (resampling, arg-max, clean-up) gives the same labels as on
    the whole frame at a fraction of the cost: a 200 mm patch covers about a third of a typical
    field of view."""
    H, W = patch_shape
    corners = np.array([[i, j] for i in (-1.0, H) for j in (-1.0, W)])
    native = corners @ np.asarray(M, float).T + np.asarray(o, float)
    lo = np.maximum(np.floor(native.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(native.max(axis=0)).astype(int) + 2, np.asarray(native_shape))
    hi = np.maximum(hi, lo)
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def patch_to_native(channels, M, o, native_shape, order=1, cval=0.0, box=None):
    """Resample patch channels (H, W, K) back onto the native grid (R, C, K), or onto the native
    sub-grid `box` (row slice, col slice) only.

    Native pixels outside the patch get `cval` in every channel but the first, which gets 1
    (background: the arg-max there is 0)."""
    Minv = np.linalg.inv(M)
    oinv = -Minv @ o
    shape = tuple(native_shape)
    if box is not None:
        oinv = oinv + Minv @ np.array([box[0].start, box[1].start], float)
        shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
    out = np.empty(shape + (channels.shape[-1],), dtype=np.float32)
    for k in range(channels.shape[-1]):
        out[..., k] = ndimage.affine_transform(channels[..., k], Minv, offset=oinv, output_shape=shape,
                                               order=order, mode="constant", cval=cval if k else 1.0,
                                               prefilter=False)
    return out
