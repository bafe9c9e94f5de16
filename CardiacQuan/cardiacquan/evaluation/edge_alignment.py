"""Is a reference contour registered to its image?  A model-free check.

Reference contours come in files whose coordinate conventions are rarely documented (pixel
centre or pixel corner, 0- or 1-based).  Half a pixel of misregistration costs a 5-pixel
myocardial ring several points of Dice, so an evaluation must know.  The check here uses only
the image: along each contour point's outward normal it finds where the intensity crosses half
way between the two sides (the edge), and fits the contour-minus-edge distances with a common
translation plus a uniform outward offset.  A reader's habit of drawing outside or inside the
edge goes into the outward offset; a coordinate-convention error shows up as a translation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import find_contours

from cardiacquan import CardiacQuanError


@dataclass(frozen=True)
class EdgeFit:
    translation_rc: tuple     # (rows, columns) in pixels: where the contour sits relative to the edges
    outward_px: float         # how far outside the edges the contour runs, on average
    n_points: int             # contour points with a clear edge along their normal


def mask_contour(mask: np.ndarray) -> np.ndarray:
    """The longest iso-contour (row, col) of a binary mask, between its pixel centres."""
    contours = find_contours(np.asarray(mask, float), 0.5)
    if not contours:
        raise CardiacQuanError("empty mask: no contour to align")
    return max(contours, key=len)


def edge_distances(image: np.ndarray, points_rc: np.ndarray, bright_inside: bool, reach_px=4.0):
    """Outward normals (N, 2) and contour-minus-edge distances (N,; NaN where no clear edge)."""
    img = ndimage.gaussian_filter(np.asarray(image, float), 0.5)
    pts = np.asarray(points_rc, float)
    tangent = np.roll(pts, -2, 0) - np.roll(pts, 2, 0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    normal[((pts - pts.mean(0)) * normal).sum(1) < 0] *= -1
    s = np.arange(-reach_px, reach_px + 1e-9, 0.25)
    where = pts[:, None, :] + s[None, :, None] * normal[:, None, :]
    prof = ndimage.map_coordinates(img, [where[..., 0], where[..., 1]], order=1)
    side = 8                                    # samples (2 px) averaged at each end of a profile
    inner, outer = prof[:, :side].mean(1), prof[:, -side:].mean(1)
    high, low = (inner, outer) if bright_inside else (outer, inner)
    contrast_ok = (high - low) > 0.175 * img.max()
    sign = (prof - ((high + low) / 2)[:, None]) * (1 if bright_inside else -1)
    dist = np.full(len(pts), np.nan)
    for k in np.flatnonzero(contrast_ok):
        cross = np.flatnonzero((sign[k, :-1] > 0) & (sign[k, 1:] <= 0))
        if len(cross):
            j = cross[np.argmin(np.abs(s[cross]))]
            edge = s[j] + 0.25 * sign[k, j] / (sign[k, j] - sign[k, j + 1])
            dist[k] = -edge
    return normal, dist


def fit_translation(normals, distances) -> EdgeFit:
    """Least squares: distance = normal . translation + outward, over all points with an edge."""
    normals, distances = np.concatenate(normals), np.concatenate(distances)
    ok = np.isfinite(distances)
    if ok.sum() < 10:
        raise CardiacQuanError("too few contour points with a clear edge to fit a translation")
    A = np.c_[normals[ok], np.ones(ok.sum())]
    sol = np.linalg.lstsq(A, distances[ok], rcond=None)[0]
    return EdgeFit((float(sol[0]), float(sol[1])), float(sol[2]), int(ok.sum()))


def edge_fit(pairs, bright_inside=True) -> EdgeFit:
    """Fit over (image, mask) pairs.

    bright_inside: the mask is brighter than its surroundings (LV blood inside the cavity);
    False for an epicardial mask, where only the stretches with brighter fat or blood outside
    have a clear edge."""
    normals, dists = [], []
    for image, mask in pairs:
        n, d = edge_distances(image, mask_contour(mask), bright_inside=bright_inside)
        normals.append(n)
        dists.append(d)
    return fit_translation(normals, dists)
