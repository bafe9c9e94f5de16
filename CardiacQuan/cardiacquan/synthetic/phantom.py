"""Synthetic short-axis cine MRI with exact ground truth, for tests and demos.

Every shape is analytic, defined in the standard short-axis view ("anatomical" frame, mm,
origin at the LV cavity centre, +x toward the lateral wall, +y anterior, septum at 180 deg)
and then shown rotated and optionally mirrored, with the patient orientation (direction
matrix) that such a display really has.  Because the shapes are analytic the truth is exact:
areas, cavity dimensions and regional wall thickness come from the border radii by fine
quadrature, in the sectors the shared index document defines (rotation from the LV->RV
centroid direction, which is itself integrated exactly; reflection from anterior x septum;
image axes where a slice has no RV).

Physiology: LV cavity ellipse scaled by a smooth area curve (ejection, rapid filling,
diastasis, atrial kick; ES at 35-40 % of the cycle, area EF 50-65 %); the wall follows a
fixed regional thickness profile (thicker septum, random asymmetry) scaled so that the
myocardial area is conserved exactly (systolic thickening).  RV crescent hugging the septum.
Image: bSSFP-like contrast (bright blood and fat, dark myocardium and lungs), papillary
muscles (labelled cavity, as the LVQuan/ACDC protocol counts them), pericardial fat, chest
wall, lungs, liver, aorta; 2x2 supersampled partial volume, Gaussian PSF, smooth coil bias
field, Rician noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.io.cine import Cine
from cardiacquan.measure.phase import phase_from_areas

_NQ = 7200                                  # truth quadrature points per turn (0.05 deg)
_QA = (np.arange(_NQ) + 0.5) * 2 * np.pi / _NQ
_INTENSITY = dict(air=0.02, fat=0.85, muscle=0.30, soft=0.38, lung=0.06, liver=0.42, blood=1.0,
                  rv_blood=0.95, myo=0.28, aorta=0.90, spine=0.22, papillary=0.30)


@dataclass
class Phantom:
    cine: Cine
    labels: np.ndarray                      # (T, Z, R, C) uint8
    truth: dict                             # exact per-frame values, arrays (T, Z, ...)
    params: dict = field(default_factory=dict)


# -- physiology --------------------------------------------------------------------------

def _smoothstep(u):
    u = np.clip(u, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def area_curve(tau, ef, tau_es):
    """Cavity area / ED area at cycle fraction tau (0 = ED): 1 at ED, 1 - ef at ES.

    Systolic ejection as a half cosine; diastole = rapid filling (75 % of the stroke area
    over 0.22 of the cycle), slow diastasis (7 %) and the atrial kick (18 %) ending at ED, all
    with zero slope at the ends so ED and ES are smooth, unique extrema.
    """
    tau = np.mod(tau, 1.0)
    syst = _smoothstep(tau / tau_es)
    refill = (0.75 * _smoothstep((tau - tau_es) / 0.22)
              + 0.07 * _smoothstep((tau - tau_es - 0.1) / (0.8 - tau_es))
              + 0.18 * _smoothstep((tau - 0.82) / 0.18))
    return np.where(tau <= tau_es, 1.0 - ef * syst, 1.0 - ef * (1.0 - refill))


def _wall_profile(ang, p):
    """Regional ED wall thickness (mm) at anatomical angle: thicker septum, random asymmetry."""
    return p["w0"] * (1.0 + p["w_sep"] * np.cos(ang - np.pi) + p["w_c2"] * np.cos(2 * (ang - p["w_b2"]))
                      + p["w_s1"] * np.sin(ang) + p["w_c3"] * np.cos(3 * (ang - p["w_b3"])))


def _draw_anatomy(rng):
    a = rng.uniform(22.0, 27.0)
    return dict(
        a=a, b=a * rng.uniform(0.88, 1.12), tilt=rng.uniform(0, np.pi),
        w0=rng.uniform(7.0, 9.0), w_sep=rng.uniform(0.08, 0.2), w_c2=rng.uniform(-0.08, 0.08),
        w_b2=rng.uniform(0, np.pi), w_s1=rng.uniform(-0.1, 0.1), w_c3=rng.uniform(-0.05, 0.05),
        w_b3=rng.uniform(0, np.pi), ef=rng.uniform(0.50, 0.65), ef_rv=rng.uniform(0.45, 0.6),
        tau_es=rng.uniform(0.35, 0.40), rv_c=rng.uniform(0.55, 0.7), rv_w=rng.uniform(0.45, 0.65),
        rv_by=rng.uniform(1.0, 1.15), pm_r=rng.uniform(2.5, 3.5),
    )


class _Angles:
    """Angle-only terms of the borders, computed once per set of directions (speed)."""

    def __init__(self, ang, p):
        ang = np.asarray(ang, dtype=float)
        self.ang, self.w = ang, _wall_profile(ang, p)
        self.c2, self.s2 = np.cos(ang - p["tilt"]) ** 2, np.sin(ang - p["tilt"]) ** 2


class _Slice:
    """Analytic LV/RV shapes of one slice at one frame (anatomical frame, mm).

    Borders are polar about the cavity centre: r_endo = ellipse, r_epi = r_endo + g * wall,
    with g solved so the myocardial area equals the ED one (systolic thickening).
    """

    def __init__(self, p, qtab, f_lv, f_rv, size_z, wall_z, rv_z, myo_area0=None):
        s = np.sqrt(f_lv) * size_z
        self.a, self.b = p["a"] * s, p["b"] * s
        self.p, self.q, self.wall_z = p, qtab, wall_z     # q: quadrature directions
        re, w = self.r_endo(qtab), qtab.w * wall_z
        if myo_area0 is None:                      # ED: the reference myocardial area
            self.g = 1.0
        else:                                      # thicken the wall to conserve the area
            P, Q = np.mean(re * w) * 2 * np.pi, 0.5 * np.mean(w ** 2) * 2 * np.pi
            self.g = (-P + np.sqrt(P * P + 4 * Q * myo_area0)) / (2 * Q)
        self.myo_area = 0.5 * np.mean((re + self.g * w) ** 2 - re ** 2) * 2 * np.pi
        # RV: ellipse centred on the septal axis, reaching `width` beyond the septum; the
        # crescent width follows the RV's own area curve and tapers toward the apex
        r_ref = np.mean(re + self.g * w)
        self.rv = None
        if rv_z > 0:
            width = p["rv_w"] * r_ref * np.sqrt(f_rv) * rv_z
            xc = -p["rv_c"] * r_ref
            self.rv = (xc, float(self.r_epi(_Angles([np.pi], p))[0]) + width + xc,
                       p["rv_by"] * r_ref * (0.8 + 0.2 * rv_z))

    def r_endo(self, tab):
        return 1.0 / np.sqrt(tab.c2 / self.a ** 2 + tab.s2 / self.b ** 2)

    def r_epi(self, tab):
        return self.r_endo(tab) + (self.g * self.wall_z) * tab.w

    def in_rv(self, x, y, grow=0.0):
        xc, ax, by = self.rv
        return ((x - xc) / (ax + grow)) ** 2 + (y / (by + grow)) ** 2 < 1.0

    def rv_centroid(self):
        """Exact centroid of RV = ellipse minus the epicardial region (ray-wise integration)."""
        xc, ax, by = self.rv
        u, v = np.cos(_QA), np.sin(_QA)
        qa, qb, qc = (u / ax) ** 2 + (v / by) ** 2, -2 * xc * u / ax ** 2, (xc / ax) ** 2 - 1.0
        d2 = qb ** 2 - 4 * qa * qc
        disc = np.sqrt(np.maximum(d2, 0.0))
        t_out = (-qb + disc) / (2 * qa)
        t_in = np.maximum(np.maximum((-qb - disc) / (2 * qa), 0.0), self.r_epi(self.q))
        hit = (d2 > 0) & (t_out > t_in)                                  # RV part of each ray
        m2 = np.where(hit, (t_out ** 3 - t_in ** 3) / 3.0, 0.0)           # int rho^2 drho
        area = np.where(hit, (t_out ** 2 - t_in ** 2) / 2.0, 0.0).sum()
        return np.array([(m2 * u).sum(), (m2 * v).sum()]) / area

    def extent(self):
        r = float(np.max(self.r_epi(self.q)))
        if self.rv is not None:                    # farthest point of the RV ellipse
            xc, ax, by = self.rv
            t = np.linspace(0, 2 * np.pi, 721)
            r = max(r, float(np.max(np.hypot(xc + ax * np.cos(t), by * np.sin(t)))))
        return r


# -- orientation ---------------------------------------------------------------------------

def _display_map(rho_deg, mirrored):
    """2x2 map anatomical (x, y) -> display (x right, y up): rotate by rho, then mirror x."""
    t = np.deg2rad(rho_deg)
    m = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.diag([-1.0, 1.0]) @ m if mirrored else m


def _direction(long_axis, m, mirrored):
    """Direction matrix of a display `m` of the plane normal to the LV long axis (base->apex).

    Standard view basis: display up = anterior projected in the plane, display right =
    anterior x long axis (viewer at the apex); then d0 = display x axis, d1 = -display y axis.
    Mirrored: the third column keeps the unmirrored normal (slice stacking direction), so
    det = -1, as for an image whose columns were flipped.
    """
    L = long_axis / np.linalg.norm(long_axis)
    ant = np.array([0.0, -1.0, 0.0])
    ey = ant - (ant @ L) * L
    ey /= np.linalg.norm(ey)
    ex = np.cross(ey, L)
    d0 = m[0, 0] * ex + m[0, 1] * ey
    d1 = -(m[1, 0] * ex + m[1, 1] * ey)
    normal = np.cross(d0, d1)
    if mirrored:
        normal = -normal
    return np.column_stack([d0, d1, normal])


def _doc_orientation(direction, septum_deg):
    """Mirrored? by the document's rule: sign of anterior x septum in the display."""
    a = np.array([-direction[1, 0], direction[1, 1]])      # (0,-1,0).d0, -(0,-1,0).d1
    if np.hypot(*a) < 0.05:
        return False
    s = np.deg2rad(septum_deg)
    return bool(a[0] * np.sin(s) - a[1] * np.cos(s) < 0)


def _truth_indices(sl, m, septum_deg, mirrored):
    """Exact D1-D3 and RWT1-6 of a slice in the sector convention (septum angle, mirrored)."""
    alpha = _QA
    theta = np.deg2rad(septum_deg) + (np.pi - alpha if mirrored else alpha - np.pi)
    std = np.stack([np.cos(theta), np.sin(theta)], axis=-1) @ m        # display dir -> anatomical
    tab = _Angles(np.arctan2(std[:, 1], std[:, 0]), sl.p)
    re, rp = sl.r_endo(tab), sl.r_epi(tab)
    k = _NQ // 6
    dims = (re[: _NQ // 2] + re[_NQ // 2:]).reshape(3, k).mean(axis=1)
    rwt = (rp - re).reshape(6, k).mean(axis=1)[[3, 4, 5, 0, 1, 2]]
    # the four 90-degree apical AHA sectors (lateral 315-45, anterior, septal, inferior) -> A, S, I, L
    quad = np.roll(rp - re, _NQ // 8).reshape(4, _NQ // 4).mean(axis=1)[[1, 2, 3, 0]]
    return dims, rwt, quad


# -- image ---------------------------------------------------------------------------------

def _static_tissue(x, y, zeta):
    """Intensity of the surroundings (anatomical mm): body, chest wall, lungs, liver, aorta."""
    img = np.full(x.shape, _INTENSITY["air"], np.float32)
    body = ((x + 25) / 175) ** 2 + ((y + 45) / 125) ** 2
    img[body < 1] = _INTENSITY["fat"]
    img[((x + 25) / 163) ** 2 + ((y + 45) / 113) ** 2 < 1] = _INTENSITY["muscle"]
    img[((x + 25) / 153) ** 2 + ((y + 45) / 103) ** 2 < 1] = _INTENSITY["soft"]
    img[((x - 78) / 42) ** 2 + ((y + 5) / 72) ** 2 < 1] = _INTENSITY["lung"]
    img[((x + 118) / 44) ** 2 + ((y - 10) / 70) ** 2 < 1] = _INTENSITY["lung"]
    liver = ((x + 60) / (70 + 20 * zeta)) ** 2 + ((y + 95 - 15 * zeta) / (45 + 10 * zeta)) ** 2 < 1
    img[liver] = _INTENSITY["liver"]
    img[np.hypot(x - 15, y + 62) < 11] = _INTENSITY["aorta"]
    img[np.hypot(x + 5, y + 105) < 18] = _INTENSITY["spine"]
    return img


def _heart_intensity(sl, x, y, rho, tab, base):
    """Supersampled intensities: pericardial fat, RV (wall, blood), LV wall, blood, PMs."""
    img = base.copy()
    r_epi = sl.r_epi(tab)
    fat = rho < r_epi + 2.5 + 1.5 * np.cos(3 * tab.ang) ** 2
    if sl.rv is not None:
        fat |= sl.in_rv(x, y, grow=4.0)
        img[fat] = _INTENSITY["fat"]
        img[sl.in_rv(x, y, grow=2.5)] = _INTENSITY["myo"]
        img[sl.in_rv(x, y)] = _INTENSITY["rv_blood"]
    else:
        img[fat] = _INTENSITY["fat"]
    img[rho < r_epi] = _INTENSITY["myo"]
    img[rho < sl.r_endo(tab)] = _INTENSITY["blood"]
    pms = np.deg2rad([45.0, 285.0])                               # anterolateral, posteromedial
    for pa, rc in zip(pms, sl.r_endo(_Angles(pms, sl.p))):
        c = 0.72 * rc
        radius = sl.p["pm_r"] * np.sqrt(sl.a / sl.p["a"])
        img[np.hypot(x - c * np.cos(pa), y - c * np.sin(pa)) < radius] = _INTENSITY["papillary"]
    return img


def _bias_field(rng, shape, strength):
    """Smooth multiplicative coil sensitivity: exp(strength * unit-variance smooth field)."""
    R, C = shape
    rr, cc = np.mgrid[0:R, 0:C] / max(R, C)
    f = np.zeros(shape)
    for _ in range(4):
        r0, c0, w = rng.uniform(-0.2, 1.2), rng.uniform(-0.2, 1.2), rng.uniform(0.3, 0.7)
        f += rng.choice([-1.0, 1.0]) * np.exp(-((rr - r0) ** 2 + (cc - c0) ** 2) / (2 * w * w))
    f = (f - f.mean()) / (f.std() + 1e-12)
    return np.exp(strength * f)


# -- public API ----------------------------------------------------------------------------

def make_phantom(seed=0, n_frames=20, n_slices=1, size=(256, 256), spacing=None, rotation_deg=None,
                 mirrored=False, oblique=True, noise=0.05, bias=0.25, blur_px=0.6, ed_frame=0,
                 slice_gap_mm=10.0, rr_ms=None, scale=800.0) -> Phantom:
    """A synthetic short-axis cine with exact truth (see the module docstring).

    size: (rows, cols) or None (random 192-288).  spacing: (row_mm, col_mm), a number, or None
    (random 0.7-2.1 mm, anisotropic one time in three).  rotation_deg: display rotation of
    the anatomy (None: random).  mirrored: show the anatomy mirrored, with a matching
    direction (det -1) that the document's rule reads as mirrored.  oblique: a realistic
    double-oblique short-axis plane (else an axial-like one).  noise: Rician sigma relative to
    blood; bias: log-amplitude of the coil field; blur_px: Gaussian PSF sigma in pixels.
    ed_frame: frame of end-diastole (None: random); slices go base (z=0) to apex, the RV is
    missing on the most apical slice when there are 4 or more.

    truth: cavity_area, myocardium_area (T, Z) mm^2; dims (T, Z, 3), rwt (T, Z, 6) mm;
    septum_angle_deg, mirrored (T, Z) (the sector convention the values are in); wall_quadrants
    (T, Z, 4) mean wall thickness in the 90-degree apical AHA sectors anterior, septal, inferior,
    lateral (segments 13-16); phase (T, Z);
    ed, es, has_rv, orientation_source (Z,); area_curve (T,) cavity area / ED area;
    lv_centre_rc (row, col) pixel position of the LV centre on every slice.
    """
    if n_frames < 2 or n_slices < 1:
        raise CardiacQuanError("a phantom needs at least 2 frames and 1 slice")
    rng = np.random.default_rng(seed)
    p = _draw_anatomy(rng)
    if spacing is None:
        row = rng.uniform(0.7, 2.1)
        col = float(np.clip(row * rng.uniform(0.8, 1.25), 0.7, 2.1)) if rng.random() < 1 / 3 else row
        spacing = (row, col)
    sp = tuple(float(v) for v in np.broadcast_to(np.asarray(spacing, float), (2,)))
    rho = float(rng.uniform(0, 360)) if rotation_deg is None else float(rotation_deg)
    ed = int(rng.integers(n_frames)) if ed_frame is None else int(ed_frame) % n_frames
    rr_ms = float(rng.uniform(800, 1100)) if rr_ms is None else float(rr_ms)
    long_axis = (np.array([0.55, -0.45, -0.70]) + rng.uniform(-0.1, 0.1, 3)) if oblique else np.array([0.0, 0.0, -1.0])
    long_axis /= np.linalg.norm(long_axis)
    m = _display_map(rho, mirrored)
    direction = _direction(long_axis, m, mirrored)
    T, Z = n_frames, n_slices

    # per-frame cycle position (ES on a frame so that ED/ES are unambiguous), per-slice taper
    lo, hi = int(np.ceil(0.35 * T - 1e-9)), int(np.floor(0.40 * T + 1e-9))
    k_es = int(np.clip(round(p["tau_es"] * T), lo, hi)) if lo <= hi else int(round(p["tau_es"] * T))
    k_es = min(max(k_es, 1), T - 1)
    tau = np.mod((np.arange(T) - ed) / T, 1.0)
    f_lv = area_curve(tau, p["ef"], k_es / T)
    f_rv = area_curve(tau, p["ef_rv"], k_es / T)
    zeta = np.linspace(0.0, 1.0, Z) if Z > 1 else np.array([0.3])
    size_z = 1.05 * np.sqrt(1.0 - (0.9 * zeta) ** 2)
    wall_z = 1.0 - 0.2 * zeta
    rv_z = np.where((zeta > 0.85) & (Z >= 4), 0.0, 1.0 - 0.5 * zeta ** 2)

    qtab = _Angles(_QA, p)
    slices = [[None] * Z for _ in range(T)]
    for z in range(Z):
        ref = _Slice(p, qtab, 1.0, 1.0, size_z[z], wall_z[z], rv_z[z])
        for t in range(T):
            slices[t][z] = _Slice(p, qtab, f_lv[t], f_rv[t], size_z[z], wall_z[z], rv_z[z], ref.myo_area)

    # field of view: put the LV centre at a random place where the whole heart fits
    reach = max(s.extent() for row in slices for s in row) + 6.0     # + fat and RV wall
    if size is None:                        # random matrix, at least large enough for the heart
        need = np.ceil((2 * reach + 10.0) / np.array(sp) / 8.0) * 8
        size = tuple(int(v) for v in np.maximum(8 * rng.integers(24, 37, 2), need))
    R, C = (int(v) for v in np.broadcast_to(np.asarray(size), (2,)))
    fov = np.array([R * sp[0], C * sp[1]])
    if np.any(fov < 2 * reach):
        raise CardiacQuanError(f"field of view {fov.round(0)} mm too small for the heart ({2 * reach:.0f} mm)")
    # the body sits near the middle of the field of view; the heart at its place in the chest
    heart_disp = m @ np.array([25.0, 45.0])                    # LV centre from the body centre
    centre_mm = fov / 2 + fov * rng.uniform(-0.08, 0.08, 2) + np.array([-heart_disp[1], heart_disp[0]])
    centre_mm = np.clip(centre_mm, reach, fov - reach)
    centre_rc = centre_mm / np.array(sp) - 0.5

    # pixel grids: labels at pixel centres, image at 2x2 sub-samples (anatomical mm)
    def anat_grid(offsets):
        rr, cc = np.mgrid[0:R, 0:C].astype(float)
        out = []
        for dr, dc in offsets:
            disp = np.stack([(cc + dc - centre_rc[1]) * sp[1], -(rr + dr - centre_rc[0]) * sp[0]], axis=-1)
            out.append(disp @ m)                             # display -> anatomical (m orthogonal)
        return np.stack(out)

    centres = anat_grid([(0.0, 0.0)])[0]
    subs = anat_grid([(-0.25, -0.25), (-0.25, 0.25), (0.25, -0.25), (0.25, 0.25)])
    box = np.hypot(centres[..., 0], centres[..., 1]) < reach + 4 * max(sp)   # heart region
    x0, y0 = centres[box][:, 0], centres[box][:, 1]
    rho0, tab0 = np.hypot(x0, y0), _Angles(np.arctan2(y0, x0), p)
    xs, ys = subs[..., 0], subs[..., 1]
    bx, by = xs[:, box], ys[:, box]
    brho, btab = np.hypot(bx, by), _Angles(np.arctan2(by, bx), p)

    labels = np.zeros((T, Z, R, C), np.uint8)
    image = np.zeros((T, Z, R, C), np.float32)
    truth = {k: np.zeros((T, Z) + s) for k, s in (("cavity_area", ()), ("myocardium_area", ()),
                                                   ("dims", (3,)), ("rwt", (6,)), ("septum_angle_deg", ()))}
    truth["mirrored"] = np.zeros((T, Z), bool)
    truth["wall_quadrants"] = np.zeros((T, Z, 4))
    sigma_n = noise * _INTENSITY["blood"]
    for z in range(Z):
        static = _static_tissue(xs, ys, zeta[z]).mean(axis=0)
        static_box = _static_tissue(bx, by, zeta[z])
        field_z = _bias_field(rng, (R, C), bias) if bias > 0 else np.ones((R, C))
        for t in range(T):
            sl = slices[t][z]
            lab = np.zeros(rho0.shape, np.uint8)
            r_epi0 = sl.r_epi(tab0)
            if sl.rv is not None:
                lab[sl.in_rv(x0, y0) & (rho0 >= r_epi0)] = RV
            lab[rho0 < r_epi0] = MYOCARDIUM
            lab[rho0 < sl.r_endo(tab0)] = LV_CAVITY
            labels[t, z][box] = lab
            img = static.copy()
            img[box] = _heart_intensity(sl, bx, by, brho, btab, static_box).mean(axis=0)
            if blur_px > 0:
                img = ndimage.gaussian_filter(img, blur_px)
            img = img * field_z
            n1, n2 = rng.normal(0, sigma_n, (2, R, C))
            image[t, z] = scale * np.sqrt((img + n1) ** 2 + n2 ** 2)
            # truth in the document's sector convention for this display
            if sl.rv is not None:
                cx, cy = m @ sl.rv_centroid()
                phi = float(np.degrees(np.arctan2(cy, cx)) % 360.0)
            else:
                phi = 180.0
            mir = _doc_orientation(direction, phi)
            if sl.rv is not None and mir != mirrored:        # construction and rule must agree
                raise AssertionError("phantom orientation inconsistent with the document's rule")
            dims, rwt, quad = _truth_indices(sl, m, phi, mir)
            truth["wall_quadrants"][t, z] = quad
            truth["cavity_area"][t, z] = np.pi * sl.a * sl.b
            truth["myocardium_area"][t, z] = sl.myo_area
            truth["dims"][t, z], truth["rwt"][t, z] = dims, rwt
            truth["septum_angle_deg"][t, z], truth["mirrored"][t, z] = phi, mir
    phases = [phase_from_areas(truth["cavity_area"][:, z]) for z in range(Z)]
    truth["phase"] = np.stack([ph[0] for ph in phases], axis=1)
    truth["ed"] = np.array([ph[1] for ph in phases])
    truth["es"] = np.array([ph[2] for ph in phases])
    truth["has_rv"] = rv_z > 0
    truth["orientation_source"] = np.where(rv_z > 0, "rv", "image-axes")
    truth["area_curve"] = f_lv
    truth["lv_centre_rc"] = centre_rc

    centre_lps = np.array([30.0, 20.0, 40.0]) + rng.uniform(-20, 20, 3)
    pos = centre_lps + np.outer(np.arange(Z) * slice_gap_mm, long_axis)   # base -> apex
    origins = pos - centre_rc[1] * sp[1] * direction[:, 0] - centre_rc[0] * sp[0] * direction[:, 1]
    cine = Cine(image=image, spacing=sp, origins=origins, direction=direction,
                times_ms=np.arange(T) * rr_ms / T, slice_thickness=min(8.0, slice_gap_mm),
                source=f"phantom(seed={seed})",
                metadata=dict(phantom=True, rr_ms=rr_ms, seed=seed))
    params = dict(p, seed=seed, spacing=sp, size=(R, C), rotation_deg=rho, mirrored=mirrored, ed_frame=ed,
                  es_fraction=k_es / T, oblique=oblique, long_axis=long_axis, noise=noise, bias=bias,
                  blur_px=blur_px, rr_ms=rr_ms)
    return Phantom(cine=cine, labels=labels, truth=truth, params=params)
