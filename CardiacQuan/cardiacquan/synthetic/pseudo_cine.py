"""Pseudo-cines: a whole cardiac cycle of label maps morphed from one slice's ED and ES masks.

No full-cycle labelled cine set is available here (the ACDC copy holds ED and ES only), so
training and validation cines for the quantification network are synthesised from the two
expert-labelled frames of each slice:

- a physiological LV volume curve over one R-R interval (`volume_curve`): ED at the first
  frame, a fast ejection to ES at about 35-40 % of the cycle, rapid early filling, diastasis
  and the atrial kick back to the ED volume (monotone cubic through knots, randomisable);
- every frame's masks interpolate the signed-distance maps of the ED and ES masks (LV
  cavity, LV epicardium, RV cavity), with the interpolation weight of each frame chosen so
  the cavity area follows the volume curve exactly (the map from weight to area is measured
  on a grid and inverted, since the area of an interpolated SDF is not linear in the weight).

The ED frame reproduces the ED masks exactly and the ES frame the ES masks exactly.  The
truth of any frame is then the engine's own geometry of that frame's masks
(`geometry.slice_indices`), and the truth phase follows from where ED and ES were placed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import PchipInterpolator

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.measure.phase import phase_from_ed_es

ES_FRACTION = 0.37            # ES at 37 % of the R-R interval (typical at 60-75 bpm)


def volume_curve(n_frames=20, es_fraction=ES_FRACTION, ed_frame=0, rng=None, jitter=0.0):
    """Normalised LV volume over one cycle: 1 at ED, 0 at ES, shape (n_frames,).

    `rng` with `jitter` > 0 perturbs the knot values (early filling fraction, diastasis,
    atrial contribution, ejection profile) for variety; ED and ES stay exactly at 1 and 0.
    Returns (curve, ed, es) with frame indices of ED and ES."""
    T = int(n_frames)
    if T < 4:
        raise CardiacQuanError(f"a pseudo-cine needs at least 4 frames, got {T}")
    es_rel = int(np.clip(round(es_fraction * T), 1, T - 2))
    fes = es_rel / T
    j = (lambda s: float(rng.normal(0.0, s * jitter))) if (rng is not None and jitter > 0) else (lambda s: 0.0)
    mid_ej = np.clip(0.42 + j(0.08), 0.2, 0.7)                  # volume half-way through ejection
    early = np.clip(0.65 + j(0.10), 0.35, 0.85)                  # after rapid filling
    dias = np.clip(early + 0.12 + j(0.05), early + 0.02, 0.93)   # end of diastasis
    t_early = fes + (1 - fes) * np.clip(0.30 + j(0.05), 0.15, 0.45)
    t_dias = fes + (1 - fes) * np.clip(0.78 + j(0.04), 0.6, 0.88)
    x = [0.0, 0.5 * fes, fes, t_early, t_dias, 1.0]
    y = [1.0, mid_ej, 0.0, early, dias, 1.0]
    f = PchipInterpolator(x, y)
    v = np.clip(f(np.arange(T) / T), 0.0, 1.0)
    v[0], v[es_rel] = 1.0, 0.0
    v[1:][v[1:] >= 1.0] = 1.0 - 1e-3                             # ED is the unique maximum
    ed = int(ed_frame) % T
    return np.roll(v, ed), ed, (ed + es_rel) % T


def signed_distance(mask, spacing):
    """mm, negative inside: the boundary sits half a pixel off every border pixel centre."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.full(mask.shape, np.inf)
    if mask.all():
        return np.full(mask.shape, -np.inf)
    s = tuple(float(v) for v in spacing)
    half = 0.5 * min(s)
    inside = ndimage.distance_transform_edt(mask, sampling=s)
    outside = ndimage.distance_transform_edt(~mask, sampling=s)
    return np.where(mask, -(inside - half), outside - half)


def _structures(labels):
    lab = np.asarray(labels)
    cav = lab == LV_CAVITY
    epi = ndimage.binary_fill_holes(cav | (lab == MYOCARDIUM))
    return {"cav": cav, "epi": epi, "rv": lab == RV}


def quantifiable(labels, min_pixels=20, min_closure=0.85) -> bool:
    """A slice the LVQuan indices make sense on: LV cavity and myocardium present, and the
    cavity (nearly) ringed by myocardium (not a basal slice open to the atrium)."""
    lab = np.asarray(labels)
    cav = lab == LV_CAVITY
    myo = lab == MYOCARDIUM
    if cav.sum() < min_pixels or myo.sum() < min_pixels:
        return False
    ring = ndimage.binary_dilation(cav) & ~cav
    if not ring.any():
        return False
    return float((myo[ring]).mean()) >= min_closure


def _tie_breaker(shape, spacing, rng, sigma_px=1.5, amplitude=0.45):
    """Smooth random offset (mm, |.| < amplitude pixel) added to a pair of SDFs.

    Pixel-grid SDFs of similar masks differ by near-constant amounts along straight borders,
    so whole rows of pixels would flip at the same weight and the area would move in jumps;
    a fixed (time-constant) smooth offset below half a pixel spreads the flips out, and
    cannot change any pixel at ED or ES, whose |SDF| is at least half a pixel."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    n /= max(np.abs(n).max(), 1e-12)
    return n * amplitude * min(float(v) for v in spacing)


def morph_labels(ed_labels, es_labels, spacing, curve, n_grid=81, rng=None):
    """(T, R, C) uint8 label cine whose cavity area follows `curve` (1 = ED area, 0 = ES area).

    `rng` seeds the sub-pixel tie-breaking offsets (fixed seed when None: deterministic)."""
    rng = np.random.default_rng(12345) if rng is None else rng
    ed_s, es_s = _structures(ed_labels), _structures(es_labels)
    if not ed_s["cav"].any() or not es_s["cav"].any():
        raise CardiacQuanError("both ED and ES masks need an LV cavity to morph a pseudo-cine")
    sdf = {}
    for k in ("cav", "epi", "rv"):
        a, b = ed_s[k], es_s[k]
        if not a.any() and not b.any():
            continue
        if not a.any():
            a = b
        if not b.any():
            b = a
        tb = _tie_breaker(a.shape, spacing, rng)
        sdf[k] = (signed_distance(a, spacing) + tb, signed_distance(b, spacing) + tb)
    d_ed, d_es = sdf["cav"]
    # weight -> cavity area (pixels), measured then inverted
    w_grid = np.linspace(0.0, 1.0, n_grid)
    area = np.array([np.count_nonzero(w * d_ed + (1 - w) * d_es < 0) for w in w_grid], float)
    area = np.maximum.accumulate(area)
    a_ed, a_es = area[-1], area[0]
    curve = np.asarray(curve, float)
    T = curve.size
    out = np.zeros((T,) + np.shape(ed_labels), np.uint8)
    for t in range(T):
        v = curve[t]
        if v >= 1.0:
            w = 1.0
        elif v <= 0.0:
            w = 0.0
        elif a_ed > a_es:
            target = a_es + v * (a_ed - a_es)
            # first grid weight reaching the target, interpolated (area is non-decreasing)
            w = float(np.interp(target, area + np.arange(n_grid) * 1e-9, w_grid))
        else:
            w = v
        lab = np.zeros(out.shape[1:], np.uint8)
        masks = {k: (w * a + (1 - w) * b) < 0 for k, (a, b) in sdf.items()}
        if "rv" in masks:
            lab[masks["rv"]] = RV
        epi = masks["epi"] | masks["cav"]
        lab[epi] = MYOCARDIUM
        lab[masks["cav"]] = LV_CAVITY
        out[t] = lab
    return out


@dataclass
class PseudoCine:
    labels: np.ndarray     # (T, R, C) uint8
    curve: np.ndarray      # (T,) normalised volume, 1 at ED, 0 at ES
    ed: int
    es: int

    @property
    def phase(self) -> np.ndarray:
        return phase_from_ed_es(self.curve.size, self.ed, self.es)


def make_pseudo_cine(ed_labels, es_labels, spacing, n_frames=20, es_fraction=ES_FRACTION, ed_frame=0,
                     rng=None, jitter=0.0, curve=None) -> PseudoCine:
    """One slice's pseudo-cine.  Pass `curve=(v, ed, es)` (from `volume_curve`) to morph
    several mask pairs (e.g. expert and predicted) along exactly the same cycle."""
    if curve is None:
        curve = volume_curve(n_frames, es_fraction, ed_frame, rng=rng, jitter=jitter)
    v, ed, es = curve
    labels = morph_labels(ed_labels, es_labels, spacing, v, rng=rng)
    return PseudoCine(labels, np.asarray(v, float), int(ed), int(es))
