"""Training-data readers: ACDC h5, LVQuan18 .mat (a small file written here), Sunnybrook contours."""
import glob
import os

import h5py
import numpy as np
import pytest
import scipy.io

from cardiacquan import CardiacQuanError
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM
from cardiacquan.io.cine import Cine
from cardiacquan.io.datasets import (acdc_assumed_spacing, read_acdc_h5, read_lvquan_mat,
                                        read_sunnybrook_contours)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
ACDC = os.path.join(SHARED, "acdc", "data")
SUNNYBROOK = os.path.join(SHARED, "sunnybrook")


def test_acdc_synthetic(tmp_path):
    for name, shape in [("slice.h5", (20, 18)), ("stack.h5", (3, 20, 18))]:
        with h5py.File(tmp_path / name, "w") as h:
            h["image"] = np.random.default_rng(0).random(shape).astype(np.float32)
            h["label"] = np.random.default_rng(1).integers(0, 4, shape).astype(np.int64)
        image, label = read_acdc_h5(tmp_path / name)
        assert image.shape == label.shape == shape and image.dtype == np.float32 and label.dtype == np.uint8
    with h5py.File(tmp_path / "bad.h5", "w") as h:
        h["image"] = np.zeros((4, 4), np.float32)
    with pytest.raises(CardiacQuanError, match="'label'"):
        read_acdc_h5(tmp_path / "bad.h5")
    (tmp_path / "text.h5").write_text("no")
    with pytest.raises(CardiacQuanError, match="HDF5"):
        read_acdc_h5(tmp_path / "text.h5")
    assert acdc_assumed_spacing((256, 216)) == pytest.approx(350 / 256)
    assert acdc_assumed_spacing((10, 428, 512)) == pytest.approx(350 / 512)


def test_acdc_real():
    if not os.path.isdir(ACDC):
        pytest.skip(f"../shared/data not present (user clone): {ACDC}")
    image, label = read_acdc_h5(sorted(glob.glob(os.path.join(ACDC, "*_slice_*.h5")))[0])
    assert image.ndim == 2 and set(np.unique(label)) <= {0, 1, 2, 3}
    image, label = read_acdc_h5(os.path.join(ACDC, "patient002_frame01.h5"))
    assert image.ndim == 3 and image.shape == label.shape and label.max() == 3


def _lvquan_arrays(S=3):
    """A small file of the cardiac-dig.mat layout: 80x80xN masks, 2/3/6/1 x N indices."""
    N = 20 * S
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    endo = np.repeat((r < 15)[:, :, None], N, axis=2).astype(np.uint8)
    epi = np.repeat((r < 22)[:, :, None], N, axis=2).astype(np.uint8)
    rng = np.random.default_rng(0)
    return dict(images_LV=rng.integers(0, 255, (80, 80, N)).astype(np.uint8), endo_LV=endo, epi_LV=epi,
                areas=rng.random((2, N)) * 0.1, dims=rng.random((3, N)) * 0.5, rwt=rng.random((6, N)) * 0.1,
                lv_phase=rng.integers(0, 2, (1, N)).astype(float),
                pix_spa=np.array([[1.5, 1.8, 2.0]]), ratio_resize_inverse=np.array([[2.5, 3.0, 2.0]]))


def _check_lvquan(out, m):
    N = 60
    assert out["n_subjects"] == 3 and out["images"].shape == (N, 80, 80) and out["labels"].dtype == np.uint8
    np.testing.assert_array_equal(out["subject"], np.repeat([0, 1, 2], 20))
    px = np.repeat([1.5 * 2.5, 1.8 * 3.0, 2.0 * 2.0], 20)
    np.testing.assert_allclose(out["pixel_mm"], px)
    np.testing.assert_allclose(out["areas_mm2"], m["areas"].T * (80 * px[:, None]) ** 2)
    np.testing.assert_allclose(out["dims_mm"], m["dims"].T * 80 * px[:, None])
    np.testing.assert_allclose(out["rwt_mm"], m["rwt"].T * 80 * px[:, None])
    np.testing.assert_array_equal(out["phase"], m["lv_phase"][0])
    np.testing.assert_array_equal(out["images"][7], m["images_LV"][:, :, 7])
    lab = out["labels"][25]
    assert lab[40, 40] == LV_CAVITY and lab[40, 40 + 18] == MYOCARDIUM and lab[0, 0] == 0
    assert (lab == LV_CAVITY).sum() == (m["endo_LV"][:, :, 25] > 0).sum()


def test_lvquan_mat(tmp_path):
    m = _lvquan_arrays()
    scipy.io.savemat(tmp_path / "cardiac-dig.mat", m)
    _check_lvquan(read_lvquan_mat(tmp_path / "cardiac-dig.mat"), m)
    # v7.3 = HDF5 with a 512-byte user block; MATLAB's column-major axes appear reversed in h5py
    with h5py.File(tmp_path / "v73.mat", "w", userblock_size=512) as h:
        for k, v in m.items():
            h[k] = np.asarray(v).T
    _check_lvquan(read_lvquan_mat(tmp_path / "v73.mat"), m)
    bad = dict(m)
    del bad["rwt"]
    scipy.io.savemat(tmp_path / "bad.mat", bad)
    with pytest.raises(CardiacQuanError, match="missing rwt"):
        read_lvquan_mat(tmp_path / "bad.mat")
    bad = dict(m, pix_spa=np.array([[1.5, 1.8]]), ratio_resize_inverse=np.array([[1.0, 1.0]]))
    scipy.io.savemat(tmp_path / "bad2.mat", bad)
    with pytest.raises(CardiacQuanError, match="80x80x40"):
        read_lvquan_mat(tmp_path / "bad2.mat")
    (tmp_path / "junk.mat").write_text("junk")
    with pytest.raises(CardiacQuanError, match="MATLAB"):
        read_lvquan_mat(tmp_path / "junk.mat")


def test_sunnybrook_contours_synthetic(tmp_path):
    cine = Cine(np.zeros((3, 2, 40, 50), np.float32), (1.0, 2.0), np.zeros((2, 3)),
                metadata={"instance_map": {7: (1, 2), 8: (1, 0)}})
    d = tmp_path / "SC" / "i-contours"
    os.makedirs(d)
    # square: columns 10..20, rows 5..15 (x y = column row, counted from 1); pixel centres
    # inside: 11x11, at 0-based columns 9..19, rows 4..14
    (d / "IM-0001-0007-icontour-manual.txt").write_text("10 5\n20 5\n20 15\n10 15\n")
    os.makedirs(tmp_path / "SC" / "o-contours")
    (tmp_path / "SC" / "o-contours" / "IM-0001-0007-ocontour-manual.txt").write_text("5 1\n25 1\n25 21\n5 21\n")
    (tmp_path / "SC" / "o-contours" / "IM-0001-0008-ocontour-manual.txt").write_text("5 1\n25 1\n25 21\n5 21\n")
    cavity, myo = read_sunnybrook_contours(tmp_path / "SC", cine)
    assert set(cavity) == {(1, 2)} and set(myo) == {(1, 2)}      # an o-contour alone gives no myocardium
    assert cavity[(1, 2)].shape == (40, 50) and cavity[(1, 2)].sum() == 121
    assert cavity[(1, 2)][4, 9] and cavity[(1, 2)][14, 19]
    assert not cavity[(1, 2)][3, 9] and not cavity[(1, 2)][4, 8] and not cavity[(1, 2)][15, 20]
    assert myo[(1, 2)].sum() == 21 * 21 - 121 and not (myo[(1, 2)] & cavity[(1, 2)]).any()
    (d / "IM-0001-0009-icontour-manual.txt").write_text("1 1\n5 1\n5 5\n")
    with pytest.raises(CardiacQuanError, match="image 9"):
        read_sunnybrook_contours(tmp_path / "SC", cine)
    cine.metadata = {}
    with pytest.raises(CardiacQuanError, match="instance map"):
        read_sunnybrook_contours(tmp_path / "SC", cine)


def test_sunnybrook_contours_real():
    if not os.path.isdir(SUNNYBROOK):
        pytest.skip(f"../shared/data not present (user clone): {SUNNYBROOK}")
    from cardiacquan.io.dicom import read_dicom_cine
    cine = read_dicom_cine(os.path.join(SUNNYBROOK, "dicoms", "SCD0000101"))
    cavity, myo = read_sunnybrook_contours(os.path.join(SUNNYBROOK, "contourfiles", "SC-HF-I-1"), cine)
    assert len(cavity) == 18 and len(myo) == 9
    px = cine.spacing[0] * cine.spacing[1]
    areas = {k: m.sum() * px for k, m in cavity.items()}
    assert all(500 < a < 5000 for a in areas.values())
    assert all(0 < m.sum() * px < 5000 and not (m & cavity[k]).any() for k, m in myo.items())
    # two phases per contoured slice; the o-contoured one (end-diastole) has the larger cavity
    for k in myo:
        es = [j for j in cavity if j[0] == k[0] and j != k]
        assert len(es) == 1 and areas[k] > areas[es[0]]


def _disk_image(centre, radius, shape=(96, 96), supersample=8, noise=4.0, seed=0):
    """A bright disk (exact pixel coverage, then blurred and noisy) on a darker background."""
    from scipy import ndimage
    f = supersample
    y, x = (np.mgrid[:shape[0] * f, :shape[1] * f] + 0.5) / f - 0.5
    cover = (((y - centre[0]) ** 2 + (x - centre[1]) ** 2) < radius ** 2).reshape(shape[0], f, shape[1], f).mean((1, 3))
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(cover * 300 + 80, 0.8) + rng.normal(0, noise, shape)


def test_edge_fit_finds_a_known_translation():
    from cardiacquan.evaluation.edge_alignment import edge_fit
    pairs = []
    for k, (cy, cx, r) in enumerate([(47.3, 48.6, 14.0), (50.8, 45.2, 20.5), (44.1, 49.9, 11.2)]):
        img = _disk_image((cy, cx), r, seed=k)
        yy, xx = np.mgrid[:96, :96]
        pairs.append((img, (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2))
    fit = edge_fit(pairs)
    assert abs(fit.translation_rc[0]) < 0.1 and abs(fit.translation_rc[1]) < 0.1 and abs(fit.outward_px) < 0.15
    shifted = edge_fit([(img, np.roll(m, (1, -1), (0, 1))) for img, m in pairs])
    assert abs(shifted.translation_rc[0] - 1) < 0.15 and abs(shifted.translation_rc[1] + 1) < 0.15
    with pytest.raises(CardiacQuanError, match="empty mask"):
        edge_fit([(pairs[0][0], np.zeros((96, 96), bool))])


def test_sunnybrook_contours_sit_on_their_image():
    """The 1-based reading puts the manual cavities on the study's own blood-pool edges, as
    registered as the ACDC experts' masks are on theirs (within 0.1 px); the 0-based reading
    (the same masks one pixel down and right) is off by the half-pixel-plus that a known 1-px
    shift reads as in this fit."""
    if not os.path.isdir(SUNNYBROOK):
        pytest.skip(f"../shared/data not present (user clone): {SUNNYBROOK}")
    from cardiacquan.evaluation.edge_alignment import edge_fit
    from cardiacquan.io.dicom import read_dicom_cine
    cine = read_dicom_cine(os.path.join(SUNNYBROOK, "dicoms", "SCD0000101"))
    cavity, _ = read_sunnybrook_contours(os.path.join(SUNNYBROOK, "contourfiles", "SC-HF-I-1"), cine)
    as_read = edge_fit([(cine.image[t, z], m) for (z, t), m in cavity.items()])
    zero_based = edge_fit([(cine.image[t, z], np.roll(m, (1, 1), (0, 1))) for (z, t), m in cavity.items()])
    assert max(abs(v) for v in as_read.translation_rc) < 0.3
    assert min(zero_based.translation_rc) > 0.35
