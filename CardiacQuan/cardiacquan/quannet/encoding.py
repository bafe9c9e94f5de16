"""How a slice's masks are put before the spatio-temporal network, and its outputs read back.

Pre-processing (`prepare_masks`): the masks are resampled (bilinear, so sub-pixel border
positions survive as soft values) onto an 80x80 grid that is
- centred on the LV (cavity + myocardium, all frames pooled),
- isotropic, with a pixel size `scale_mm` chosen so that the largest epicardial equivalent
  radius over the cycle measures `FILL_RADIUS_PX` pixels (the LV fills the crop the same way
  whatever the patient or scanner),
- in the standard short-axis orientation of docs/indices.md: rotated so that the
  LV->RV direction points to 180 degrees and un-mirrored, so the six sectors always sit at the
  same place of the crop.
Cines with another number of frames are resampled in time (cyclic, linear) to the network's
T, and the outputs are mapped back to the input's frames.

Targets are scale-free: areas / scale_mm**2 and lengths / scale_mm (crop pixels), then
z-scored with the training set's mean and standard deviation (`QuanNet.norm`).  Outputs are
de-normalised back to mm / mm^2 in the input's true geometry.  numpy/scipy only: no framework.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.measure.indices import is_mirrored
from cardiacquan.measure.phase import phase_from_ed_es

N_FRAMES = 20
SIZE = 80
FILL_RADIUS_PX = 26.0          # epicardial equivalent radius (max over the cycle) in crop pixels
INDEX_POWER = np.array([2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=float)  # mm**power per crop pixel**power


# ----------------------------------------------------------------------------------------
# Index arrays <-> dicts
# ----------------------------------------------------------------------------------------
def indices_to_array(d) -> np.ndarray:
    """(T, 11) array in INDEX_NAMES order from a dict / SliceIndices-like object with
    cavity_area, myocardium_area (T,), dims (T, 3), rwt (T, 6)."""
    get = (lambda k: d[k]) if isinstance(d, dict) else (lambda k: getattr(d, k))
    a1 = np.asarray(get("cavity_area"), float).reshape(-1, 1)
    a2 = np.asarray(get("myocardium_area"), float).reshape(-1, 1)
    dims = np.asarray(get("dims"), float).reshape(-1, 3)
    rwt = np.asarray(get("rwt"), float).reshape(-1, 6)
    return np.concatenate([a1, a2, dims, rwt], axis=1)


def array_to_indices(y) -> dict:
    y = np.asarray(y, float)
    return {"cavity_area": y[:, 0], "myocardium_area": y[:, 1], "dims": y[:, 2:5], "rwt": y[:, 5:11]}


# ----------------------------------------------------------------------------------------
# Orientation, crop, scale
# ----------------------------------------------------------------------------------------
def _pooled_centroid(mask):
    """(row, col) pixel centroid of a (T, R, C) boolean mask, all frames pooled, or None."""
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:
        return None
    return np.array([idx[1].mean(), idx[2].mean()])


@dataclass
class CropGeometry:
    """How a slice's frames map onto the network's 80x80 standard-view crop."""
    center_rc: np.ndarray          # (row, col) native pixel coordinates of the crop centre
    spacing: tuple                 # native (row_mm, col_mm)
    scale_mm: float                # crop pixel size (isotropic)
    septum_angle_deg: float        # LV->RV direction in the native display frame
    mirrored: bool
    orientation_source: str        # "anatomy" (RV found) or "image axes"
    size: int = SIZE

    def matrix(self):
        """M, o with native (row, col) = M @ (i, j) + o for crop pixel (i, j)."""
        s = self.scale_mm
        dr, dc = self.spacing
        B = np.array([[0.0, s], [-s, 0.0]])            # crop (i, j) offsets -> standard display (x, y)
        if self.mirrored:
            t = np.deg2rad(self.septum_angle_deg + 180.0)
            G = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.diag([1.0, -1.0])
        else:
            t = np.deg2rad(self.septum_angle_deg - 180.0)
            G = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        N = np.array([[0.0, -1.0 / dr], [1.0 / dc, 0.0]])  # native display (X, Y) -> (row, col) offsets
        M = N @ G @ B
        c = (self.size - 1) / 2.0
        o = np.asarray(self.center_rc, float) - M @ np.array([c, c])
        return M, o

    def to_dict(self):
        return {"center_rc": [float(v) for v in self.center_rc], "spacing": [float(v) for v in self.spacing],
                "scale_mm": float(self.scale_mm), "septum_angle_deg": float(self.septum_angle_deg),
                "mirrored": bool(self.mirrored), "orientation_source": self.orientation_source}


def crop_geometry(labels, spacing, direction=None, septum_angle_deg=None, mirrored=None,
                  fill_radius_px=FILL_RADIUS_PX, size=SIZE) -> Optional[CropGeometry]:
    """Crop centre, scale and orientation for a (T, R, C) label cine; None when there is no LV."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    dr, dc = (float(spacing[0]), float(spacing[1])) if np.ndim(spacing) else (float(spacing), float(spacing))
    cav = labels == LV_CAVITY
    lv = cav | (labels == MYOCARDIUM)
    c_lv = _pooled_centroid(lv)
    if c_lv is None or not cav.any():
        return None
    source = "anatomy"
    if septum_angle_deg is None:
        c_cav = _pooled_centroid(cav)
        c_rv = _pooled_centroid(labels == RV)
        if c_rv is None:
            septum_angle_deg, source = 180.0, "image axes"
        else:
            v = c_rv - c_cav
            septum_angle_deg = float(np.degrees(np.arctan2(-v[0] * dr, v[1] * dc)))
    if mirrored is None:
        mirrored = is_mirrored(direction, septum_angle_deg)
    areas = lv.reshape(lv.shape[0], -1).sum(1) * dr * dc
    r_epi = float(np.sqrt(areas.max() / np.pi))
    scale = max(r_epi / float(fill_radius_px), 1e-3)
    return CropGeometry(center_rc=c_lv, spacing=(dr, dc), scale_mm=scale, septum_angle_deg=float(septum_angle_deg),
                        mirrored=bool(mirrored), orientation_source=source, size=size)


def resample_time(x, n_out: int, axis: int = 0):
    """Cyclic linear resampling of a sequence covering one cycle from len to n_out samples."""
    x = np.asarray(x)
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    pos = np.arange(n_out) * (n_in / float(n_out))
    i0 = np.floor(pos).astype(int) % n_in
    i1 = (i0 + 1) % n_in
    w = (pos - np.floor(pos)).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
    return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def prepare_masks(labels, spacing, direction=None, n_frames=N_FRAMES, geometry: Optional[CropGeometry] = None,
                  fill_radius_px=FILL_RADIUS_PX, size=SIZE, **orient):
    """(T, R, C) labels -> (n_frames, size, size, 2) float32 soft masks [cavity, myocardium] and
    the CropGeometry used (None and zeros when the slice holds no LV)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if geometry is None:
        geometry = crop_geometry(labels, spacing, direction, fill_radius_px=fill_radius_px, size=size, **orient)
    T = labels.shape[0]
    out = np.zeros((T, size, size, 2), np.float32)
    if geometry is None:
        return resample_time(out, n_frames), None
    M, o = geometry.matrix()
    for t in range(T):
        for k, lab in enumerate((LV_CAVITY, MYOCARDIUM)):
            m = (labels[t] == lab).astype(np.float32)
            if m.any():
                out[t, :, :, k] = ndimage.affine_transform(m, M, offset=o, output_shape=(size, size), order=1,
                                                           mode="constant", cval=0.0, prefilter=False)
    return resample_time(out, n_frames).astype(np.float32), geometry


def to_scale_free(y_mm, scale_mm):
    """(..., 11) indices in mm -> crop-pixel units (areas / s^2, lengths / s)."""
    s = np.asarray(scale_mm, float)
    s = s.reshape(s.shape + (1,) * (np.ndim(y_mm) - s.ndim))
    return np.asarray(y_mm, float) / s ** INDEX_POWER


def from_scale_free(y_px, scale_mm):
    s = np.asarray(scale_mm, float)
    s = s.reshape(s.shape + (1,) * (np.ndim(y_px) - s.ndim))
    return np.asarray(y_px, float) * s ** INDEX_POWER


# ----------------------------------------------------------------------------------------
# Phase decoding: one systolic interval per cycle
# ----------------------------------------------------------------------------------------
def decode_phase(prob):
    """Most likely single cyclic systolic interval given per-frame systole probabilities.

    Returns (phase (T,) int, ed, es): systole = frames ed+1 .. es (cyclic), ED = ed, ES = es."""
    p = np.clip(np.asarray(prob, float).ravel(), 1e-6, 1 - 1e-6)
    T = p.size
    gain = np.log(p) - np.log1p(-p)          # gain of calling a frame systolic
    g2 = np.concatenate([gain, gain])
    best, arg = -np.inf, (0, 1)
    for a in range(T):                        # a = first systolic frame
        c = np.cumsum(g2[a:a + T - 1])        # lengths 1 .. T-1
        L = int(np.argmax(c))
        if c[L] > best:
            best, arg = c[L], (a, a + L)
    a, b = arg
    ed, es = (a - 1) % T, b % T
    return phase_from_ed_es(T, ed, es).astype(np.int64), ed, es
