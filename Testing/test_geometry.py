"""geometry.slice_indices / sector_map against analytic truth.

Shapes are defined in the standard short-axis view ("anatomical" coordinates: septum at
180 deg, anterior at 90 deg, about the cavity centre, mm), then rasterised (pixel centre
inside -> label) into a display that is rotated by rho and optionally mirrored, with the
direction matrix such a display has.  Truth is the exact shape: areas and sector means by
fine quadrature of the analytic border radii, never by re-measuring masks.
"""
import numpy as np
import pytest

from cardiacquan import CardiacQuanError
from cardiacquan.measure.indices import is_mirrored, sector_map, slice_indices

FINE = 360000                      # quadrature points (0.001 deg)
ALPHA = np.deg2rad((np.arange(FINE) + 0.5) * 360.0 / FINE)


# -- analytic shapes (radius from the cavity centre as a function of anatomical angle) ------

def ellipse_r(a, b, tilt):
    return lambda al: 1.0 / np.sqrt((np.cos(al - tilt) / a) ** 2 + (np.sin(al - tilt) / b) ** 2)


def offset_circle_r(radius, ox, oy):
    """Circle of `radius` centred at (ox, oy): distance from the origin along each ray."""
    def r(al):
        uo = np.cos(al) * ox + np.sin(al) * oy
        return uo + np.sqrt(uo ** 2 - ox ** 2 - oy ** 2 + radius ** 2)
    return r


def truth(r_endo, r_epi):
    """Exact indices (fine midpoint quadrature) of star-shaped borders about the centre."""
    re, rp = r_endo(ALPHA), r_epi(ALPHA)
    k = FINE // 6
    cav = 0.5 * np.mean(re ** 2) * 2 * np.pi
    myo = 0.5 * np.mean(rp ** 2) * 2 * np.pi - cav
    dims = (re[: FINE // 2] + re[FINE // 2:]).reshape(3, k).mean(axis=1)
    rwt = (rp - re).reshape(6, k).mean(axis=1)[[3, 4, 5, 0, 1, 2]]
    return cav, myo, dims, rwt


def display_map(rho_deg, mirrored):
    """2x2 map standard-view (x, y) -> display (x, y): rotate by rho, then mirror x."""
    t = np.deg2rad(rho_deg)
    m = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.diag([-1.0, 1.0]) @ m if mirrored else m


def direction_for(rho_deg, mirrored):
    """Direction matrix of such a display of an axial-like plane (standard view = identity).

    Standard view basis in LPS: display right ex = +x (patient left), display up ey = -y
    (anterior).  display = M (x_std, y_std), so d0 = M[0,0] ex + M[0,1] ey and
    -d1 = M[1,0] ex + M[1,1] ey.
    """
    m = display_map(rho_deg, mirrored)
    ex, ey = np.array([1.0, 0, 0]), np.array([0, -1.0, 0])
    d0 = m[0, 0] * ex + m[0, 1] * ey
    d1 = -(m[1, 0] * ex + m[1, 1] * ey)
    return np.column_stack([d0, d1, np.cross(d0, d1)])


def render(r_endo, r_epi, spacing=(1.0, 1.0), rho=0.0, mirrored=False, shape=(192, 192),
           centre=None, rv=(55.0, 12.0)):
    """Hard label mask; rv = (distance, radius) of an RV disc on the septal axis, or None."""
    sp = np.broadcast_to(np.asarray(spacing, float), (2,))
    if centre is None:
        centre = (shape[0] / 2 + 0.37, shape[1] / 2 - 0.21)
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    disp = np.stack([(cc - centre[1]) * sp[1], -(rr - centre[0]) * sp[0]], axis=-1)
    std = disp @ display_map(rho, mirrored)            # inverse of an orthogonal map = transpose
    rad = np.hypot(std[..., 0], std[..., 1])
    al = np.arctan2(std[..., 1], std[..., 0])
    lab = np.zeros(shape, np.uint8)
    if rv is not None:
        lab[np.hypot(std[..., 0] + rv[0], std[..., 1]) < rv[1]] = 1
    lab[rad < r_epi(al)] = 2
    lab[rad < r_endo(al)] = 3
    return lab


def errors(si, t, frame=0):
    cav, myo, dims, rwt = t
    return (abs(si.cavity_area[frame] / cav - 1), abs(si.myocardium_area[frame] / myo - 1),
            np.abs(si.dims[frame] - dims), np.abs(si.rwt[frame] - rwt))


def random_shape(rng):
    a, b = rng.uniform(15, 28, 2)
    ox, oy = rng.uniform(-3, 3, 2)
    re = max(a, b) + np.hypot(ox, oy) + rng.uniform(5, 10)
    return ellipse_r(a, b, rng.uniform(0, np.pi)), offset_circle_r(re, ox, oy), re + np.hypot(ox, oy)


# -- accuracy ------------------------------------------------------------------------------

@pytest.mark.parametrize("spacing, area_tol, mae_tol, max_tol", [
    (1.0, 0.01, 0.10, 0.30),
    ((0.7, 1.3), 0.012, 0.12, 0.36),
    (2.0, 0.02, 0.25, 0.75),
])
def test_accuracy_random_rings_and_ellipses(spacing, area_tol, mae_tol, max_tol):
    """Eccentric rings around elliptic cavities, random rotation/mirroring/sub-pixel position.

    Limits reflect the digitisation of hard masks; measured here (24 shapes each): 1 mm areas
    <= 0.5 %, dims/RWT mean abs 0.067 mm, max 0.20 mm; (0.7, 1.3) mm 0.7 %, 0.058, 0.30 mm;
    2 mm 1.6 %, 0.165, 0.60 mm.  (60 other shapes at 1 mm: areas 0.7 %, max 0.29 mm.)
    """
    rng = np.random.default_rng(7)
    area_err, lin_err = [], []
    for _ in range(24):
        r_endo, r_epi, r_out = random_shape(rng)
        rho, mir = rng.uniform(0, 360), bool(rng.integers(2))
        sp = np.broadcast_to(np.asarray(spacing, float), (2,))
        centre = (96 + rng.uniform(-3, 3), 96 + rng.uniform(-3, 3))
        lab = render(r_endo, r_epi, sp, rho, mir, shape=(int(192 * 1.3 / sp[0]) + 8, int(192 * 1.3 / sp[1]) + 8),
                     centre=(centre[0] * 1.3 / sp[0], centre[1] * 1.3 / sp[1]), rv=(r_out + 14, 10.0))
        si = slice_indices(lab, sp, direction_for(rho, mir))
        assert si.valid[0] and si.orientation_source[0] == "rv" and si.mirrored[0] == mir
        ea, em, ed, ew = errors(si, truth(r_endo, r_epi))
        area_err += [ea, em]
        lin_err.append(np.r_[ed, ew])
    lin_err = np.array(lin_err)
    assert max(area_err) <= area_tol
    assert lin_err.mean() <= mae_tol
    assert lin_err.max() <= max_tol


def test_concentric_ring_exact_values():
    r_endo, r_epi = ellipse_r(22.0, 22.0, 0.0), ellipse_r(30.0, 30.0, 0.0)
    si = slice_indices(render(r_endo, r_epi), 1.0)
    assert si.cavity_area[0] == pytest.approx(np.pi * 22 ** 2, rel=0.01)
    assert si.myocardium_area[0] == pytest.approx(np.pi * (30 ** 2 - 22 ** 2), rel=0.01)
    np.testing.assert_allclose(si.dims[0], 44.0, atol=0.3)
    np.testing.assert_allclose(si.rwt[0], 8.0, atol=0.3)
    assert abs(si.septum_angle_deg[0] - 180) < 0.5 and not si.mirrored[0]


def test_eccentric_ring_orders_sectors():
    """Epicentre shifted toward the inferoseptum (210 deg): RWT1 thickest, RWT4 (AL) thinnest."""
    off = 4.0 * np.array([np.cos(np.deg2rad(210)), np.sin(np.deg2rad(210))])
    r_endo, r_epi = ellipse_r(20.0, 20.0, 0.0), offset_circle_r(28.0, *off)
    t = truth(r_endo, r_epi)
    for rho, mir in [(0, False), (63, False), (200, True), (311, True)]:
        si = slice_indices(render(r_endo, r_epi, 1.0, rho, mir), 1.0, direction_for(rho, mir))
        assert np.argmax(si.rwt[0]) == 0 and np.argmin(si.rwt[0]) == 3
        np.testing.assert_allclose(si.rwt[0], t[3], atol=0.3)


def test_anisotropic_spacing_sees_true_shape():
    """A circle in mm rendered at (0.7, 1.3) mm stays a circle: all three diameters equal."""
    r = ellipse_r(24.0, 24.0, 0.0)
    lab = render(r, ellipse_r(31.0, 31.0, 0.0), (0.7, 1.3), shape=(260, 140), centre=(130.2, 70.4))
    si = slice_indices(lab, (0.7, 1.3))
    np.testing.assert_allclose(si.dims[0], 48.0, atol=0.35)
    np.testing.assert_allclose(si.rwt[0], 7.0, atol=0.35)
    assert si.cavity_area[0] == pytest.approx(np.pi * 24 ** 2, rel=0.01)
    assert abs(si.septum_angle_deg[0] - 180) < 0.5


def test_ellipse_dims():
    """Long axis along the anterior direction: D2 (I-A axis) is the longest diameter."""
    r_endo = ellipse_r(18.0, 26.0, 0.0)                # b along anatomical y (anterior)
    t = truth(r_endo, ellipse_r(34.0, 34.0, 0.0))
    si = slice_indices(render(r_endo, ellipse_r(34.0, 34.0, 0.0), 1.0, 25, False), 1.0, direction_for(25, False))
    assert np.argmax(si.dims[0]) == 1
    np.testing.assert_allclose(si.dims[0], t[2], atol=0.3)


# -- orientation -------------------------------------------------------------------------

def _asymmetric():
    off = np.array([2.5, -1.5])
    return ellipse_r(21.0, 17.0, 0.4), offset_circle_r(29.0, *off)


def test_mirrored_image_with_mirrored_direction_gives_same_indices():
    r_endo, r_epi = _asymmetric()
    lab = render(r_endo, r_epi, 1.0, 30, False)
    d = direction_for(30, False)
    a = slice_indices(lab, 1.0, d)
    d_flip = d.copy()
    d_flip[:, 0] *= -1                                  # columns reversed: column direction flips
    b = slice_indices(lab[:, ::-1], 1.0, d_flip)
    assert b.mirrored[0] and not a.mirrored[0]
    np.testing.assert_allclose(b.rwt, a.rwt, atol=1e-9)
    np.testing.assert_allclose(b.dims, a.dims, atol=1e-9)
    np.testing.assert_allclose(b.septum_angle_deg, (180 - a.septum_angle_deg) % 360, atol=1e-9)


def test_mirrored_image_without_direction_swaps_sectors():
    """Flipped pixels read as a standard view (no orientation, or one that says unmirrored):
    sector angles become -alpha, so IS<->AS, I<->A, IL<->AL and D1<->D3."""
    r_endo, r_epi = _asymmetric()
    lab = render(r_endo, r_epi, 1.0, 30, False)
    a = slice_indices(lab, 1.0, direction_for(30, False))
    # septum now at display 330 deg: looks like a standard view rotated by 150 deg
    for d in (None, direction_for(150, False)):
        b = slice_indices(lab[:, ::-1], 1.0, d)
        assert not b.mirrored[0]
        np.testing.assert_allclose(b.rwt[0], a.rwt[0][::-1], atol=1e-9)
        np.testing.assert_allclose(b.dims[0], a.dims[0][::-1], atol=1e-9)


def test_rendered_mirror_matches_truth():
    r_endo, r_epi = _asymmetric()
    t = truth(r_endo, r_epi)
    for rho in (0, 140, 270):
        si = slice_indices(render(r_endo, r_epi, 1.0, rho, True), 1.0, direction_for(rho, True))
        assert si.mirrored[0]
        np.testing.assert_allclose(si.rwt[0], t[3], atol=0.3)
        np.testing.assert_allclose(si.dims[0], t[2], atol=0.3)


def test_view_rotated_180_is_not_mirrored():
    r_endo, r_epi = _asymmetric()
    lab = render(r_endo, r_epi, 1.0, 0, False)
    d = direction_for(0, False)
    a = slice_indices(lab, 1.0, d)
    b = slice_indices(lab[::-1, ::-1], 1.0, np.column_stack([-d[:, 0], -d[:, 1], d[:, 2]]))
    assert not b.mirrored[0]
    np.testing.assert_allclose(b.rwt, a.rwt, atol=1e-9)
    assert abs(b.septum_angle_deg[0] - 0) < 0.5 or abs(b.septum_angle_deg[0] - 360) < 0.5
    t = truth(r_endo, r_epi)
    c = slice_indices(render(r_endo, r_epi, 1.0, 180, False), 1.0, direction_for(180, False))
    assert not c.mirrored[0]
    np.testing.assert_allclose(c.rwt[0], t[3], atol=0.3)


def test_is_mirrored_rules():
    assert not is_mirrored(None, 180.0)
    assert not is_mirrored(np.eye(3), 180.0)            # axial, RV on the left: standard
    assert is_mirrored(np.eye(3), 0.0)                  # RV on the right with anterior up
    coronal_like = np.column_stack([[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # anterior = normal
    assert not is_mirrored(coronal_like, 0.0)           # unusable projection -> unmirrored


def test_no_rv_falls_back_to_image_axes():
    r_endo, r_epi = _asymmetric()
    si = slice_indices(render(r_endo, r_epi, 1.0, 0, False, rv=None), 1.0, direction_for(0, False))
    assert si.orientation_source[0] == "image-axes" and si.septum_angle_deg[0] == 180.0
    np.testing.assert_allclose(si.rwt[0], truth(r_endo, r_epi)[3], atol=0.3)
    with_rv = slice_indices(render(r_endo, r_epi, 1.0, 0, False), 1.0, direction_for(0, False))
    assert with_rv.orientation_source[0] == "rv"


# -- robustness ----------------------------------------------------------------------------

def test_empty_frames_are_invalid_not_errors():
    r_endo, r_epi = ellipse_r(20.0, 20.0, 0.0), ellipse_r(27.0, 27.0, 0.0)
    lab = np.stack([render(r_endo, r_epi), np.zeros((192, 192), np.uint8), render(r_endo, r_epi)])
    lab[2][lab[2] == 3] = 2                              # myocardium only: no cavity
    si = slice_indices(lab, 1.0)
    assert si.valid.tolist() == [True, False, False]
    assert np.isnan(si.rwt[1:]).all() and np.isnan(si.cavity_area[1:]).all()
    assert si.ed == 0 and si.es == 0
    none = slice_indices(np.zeros((3, 40, 40), np.uint8), 1.0)
    assert not none.valid.any() and none.ed == -1 and (none.phase == -1).all()
    assert np.isnan(none.as_array()).all()


def test_cavity_without_myocardium_leaves_the_wall_empty_not_zero():
    r_endo, r_epi = ellipse_r(20.0, 20.0, 0.0), ellipse_r(27.0, 27.0, 0.0)
    lab = np.stack([render(r_endo, r_epi), render(r_endo, r_epi)])
    lab[1][lab[1] == 2] = 0                              # the myocardium erased, the cavity kept
    si = slice_indices(lab, 1.0)
    assert si.valid.tolist() == [True, True]
    assert np.isnan(si.myocardium_area[1]) and np.isnan(si.rwt[1]).all()
    assert si.cavity_area[1] == pytest.approx(si.cavity_area[0]) and np.isfinite(si.dims[1]).all()
    assert np.isfinite(si.rwt[0]).all() and si.myocardium_area[0] > 0


def test_papillary_muscle_counts_as_cavity_and_stray_blobs_ignored():
    r_endo, r_epi = ellipse_r(20.0, 20.0, 0.0), ellipse_r(27.0, 27.0, 0.0)
    lab = render(r_endo, r_epi)
    ref = slice_indices(lab, 1.0)
    lab2 = lab.copy()
    lab2[100:104, 110:113] = 2                           # papillary muscle labelled myocardium
    lab2[5:9, 5:9] = 3                                   # stray cavity blob
    lab2[180:186, 10:16] = 2                             # stray myocardium blob
    si = slice_indices(lab2, 1.0)
    np.testing.assert_allclose(si.as_array(), ref.as_array(), atol=1e-9)
    assert (sector_map(lab2, 1.0)[100:104, 110:113] == 0).all()


def test_cavity_cut_by_a_muscle_band_or_met_at_a_corner_is_all_cavity():
    """Blood cut off from the main cavity by a papillary muscle or trabecular band (or touching
    it only at a corner) is still LV cavity: A1 counts it, A2 does not."""
    rr, cc = np.mgrid[0:80, 0:80]
    d = np.hypot(rr - 40, cc - 40)
    lab = np.zeros((80, 80), np.uint8)
    lab[d < 20] = 2
    lab[d < 12] = 3
    lab[np.hypot(rr - 40, cc - 10) < 8] = 1
    ring = slice_indices(lab, 1.0)
    band = lab.copy()
    band[(rr == 40) & (lab == 3)] = 2                   # a 1-px band across the cavity
    si = slice_indices(band, 1.0)
    assert si.cavity_area[0] == (band == 3).sum() == (lab == 3).sum() - 23
    assert si.myocardium_area[0] == (band == 2).sum()
    np.testing.assert_allclose(si.rwt[0], ring.rwt[0], atol=0.05)
    corner = lab.copy()                                  # quadrants meeting only diagonally
    corner[(lab == 3) & (cc == 40) & (rr <= 40)] = 2
    corner[(lab == 3) & (rr == 40) & (cc <= 40)] = 2
    corner[(lab == 3) & (cc == 41) & (rr > 40)] = 2
    corner[(lab == 3) & (rr == 41) & (cc > 41)] = 2
    corner[40, 41] = corner[41, 40] = 3
    assert slice_indices(corner, 1.0).cavity_area[0] == (corner == 3).sum()


def test_septum_follows_the_whole_rv():
    """180 deg is the LV -> RV centroid direction of the whole RV, however far it reaches, and
    a frame's orientation does not depend on the other frames of the cine."""
    rr, cc = np.mgrid[0:200, 0:200]
    lab = np.zeros((200, 200), np.uint8)
    lab[np.hypot(rr - 100, cc - 103) < 13] = 2
    lab[np.hypot(rr - 100, cc - 100) < 8] = 3
    lab[(cc >= 60) & (cc < 86) & (rr >= 95) & (rr < 195) & (lab == 0)] = 1   # long inferior RV
    c, v = np.argwhere(lab == 3).mean(0), np.argwhere(lab == 1).mean(0)
    expected = np.degrees(np.arctan2(-(v[0] - c[0]), v[1] - c[1])) % 360
    alone = slice_indices(lab, 1.0)
    assert alone.septum_angle_deg[0] == pytest.approx(expected, abs=1e-6)
    big = np.where(lab == 1, 1, 0).astype(np.uint8)
    big[np.hypot(rr - 100, cc - 103) < 22] = 2
    big[np.hypot(rr - 100, cc - 100) < 17] = 3
    both = slice_indices(np.stack([big, lab]), 1.0)
    assert both.septum_angle_deg[1] == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(both.rwt[1], alone.rwt[0], atol=1e-9)


def test_a_stray_myocardium_speck_is_no_wall():
    rr, cc = np.mgrid[0:100, 0:100]
    lab = np.zeros((100, 100), np.uint8)
    lab[np.hypot(rr - 50, cc - 50) < 12] = 3
    lab[np.hypot(rr - 50, cc - 20) < 8] = 1
    lab[5:9, 90:94] = 2                                  # far from the cavity
    si = slice_indices(lab, 1.0)
    assert si.valid[0] and si.cavity_area[0] == (lab == 3).sum()
    assert np.isnan(si.myocardium_area[0]) and np.isnan(si.rwt[0]).all()


def test_bad_inputs_are_refused():
    with pytest.raises(CardiacQuanError):
        slice_indices(np.zeros((2, 2, 16, 16), np.uint8), 1.0)
    with pytest.raises(CardiacQuanError):
        slice_indices(np.zeros((16, 16), np.uint8), (1.0, 0.0))
    with pytest.raises(CardiacQuanError):
        slice_indices(np.zeros((16, 16), np.uint8), 1.0, step_deg=7.0)
    with pytest.raises(CardiacQuanError, match="step_deg"):
        slice_indices(np.zeros((16, 16), np.uint8), 1.0, step_deg=0)
    with pytest.raises(CardiacQuanError, match="spacing"):
        slice_indices(np.zeros((16, 16), np.uint8), (1.0, 1.0, 1.0))
    lab = np.zeros((16, 16), np.int32)
    lab[5:9, 5:9] = 259                                  # would wrap to 3 (cavity) as uint8
    with pytest.raises(CardiacQuanError, match="0..255"):
        slice_indices(lab, 1.0)
    with pytest.raises(CardiacQuanError, match="direction"):
        slice_indices(np.zeros((16, 16), np.uint8), 1.0, direction=np.zeros((3, 3)))
    with pytest.raises(CardiacQuanError, match="direction"):
        sector_map(np.zeros((16, 16), np.uint8), 1.0, direction=[1, 0, 0])


def test_finer_rays_agree():
    r_endo, r_epi = _asymmetric()
    lab = render(r_endo, r_epi, 1.0, 50, False)
    a = slice_indices(lab, 1.0, step_deg=1.0)
    b = slice_indices(lab, 1.0, step_deg=0.25)
    np.testing.assert_allclose(a.as_array(), b.as_array(), atol=0.05)


def test_phase_and_rows_over_a_cycle():
    radii = [22, 21, 19, 17, 16, 17, 18, 20, 21.5, 22.3]          # ED at 9, ES at 4
    lab = np.stack([render(ellipse_r(r, r, 0), ellipse_r(r + 8, r + 8, 0)) for r in radii])
    si = slice_indices(lab, 1.0)
    assert (si.ed, si.es) == (9, 4)
    assert si.phase.tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    rows = si.to_rows()
    assert len(rows) == 10 and rows[4]["es"] and rows[9]["ed"]
    assert set(rows[0]) >= {"A1", "A2", "D1", "D3", "RWT1", "RWT6", "phase", "mirrored"}


# -- sector map ----------------------------------------------------------------------------

def _point_sector(smap, centre, ang_deg, radius, spacing=1.0):
    x, y = radius * np.cos(np.deg2rad(ang_deg)), radius * np.sin(np.deg2rad(ang_deg))
    return smap[int(round(centre[0] - y / spacing)), int(round(centre[1] + x / spacing))]


def test_sector_map_standard_and_mirrored():
    r_endo, r_epi = ellipse_r(20.0, 20.0, 0.0), ellipse_r(30.0, 30.0, 0.0)
    centre = (96.37, 95.79)
    # display angles in the standard view -> expected sector (RWT index)
    expect = {210: 1, 270: 2, 330: 3, 30: 4, 90: 5, 150: 6}
    smap = sector_map(render(r_endo, r_epi, centre=centre), 1.0, direction_for(0, False))
    for ang, k in expect.items():
        assert _point_sector(smap, centre, ang, 25) == k
    lab_m = render(r_endo, r_epi, 1.0, 0, True, centre=centre)      # mirrored display
    smap_m = sector_map(lab_m, 1.0, direction_for(0, True))
    for ang, k in expect.items():
        assert _point_sector(smap_m, centre, 180 - ang, 25) == k
    myo = render(r_endo, r_epi, centre=centre) == 2
    assert ((smap > 0) == myo).all()
    counts = np.bincount(smap[myo], minlength=7)[1:]
    assert counts.min() > 0.95 * myo.sum() / 6
    smap_given = sector_map(render(r_endo, r_epi, centre=centre), 1.0, None, septum_angle_deg=0.0)
    assert _point_sector(smap_given, centre, 30, 25) == 1            # septum now on the right


def test_sector_map_matches_slice_indices_orientation():
    r_endo, r_epi = _asymmetric()
    lab = render(r_endo, r_epi, (0.8, 1.2), 77, True, shape=(240, 160), centre=(120.3, 80.6))
    d = direction_for(77, True)
    si = slice_indices(lab, (0.8, 1.2), d)
    smap = sector_map(lab, (0.8, 1.2), d)
    # the septum direction (display angle from slice_indices) lies on the RWT1/RWT6 border
    phi = np.deg2rad(si.septum_angle_deg[0])
    r, c = si.centre_rc[0]
    for da, k in ((-8, 1), (8, 6)):                       # mirrored: clockwise = increasing alpha
        a = phi + np.deg2rad(da)
        rr, cc = r - 23.5 * np.sin(a) / 0.8, c + 23.5 * np.cos(a) / 1.2
        assert smap[int(round(rr)), int(round(cc))] == k
