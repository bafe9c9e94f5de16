"""Volume files (NIfTI/NRRD/MHA/.seq.nrrd): geometry round trips, labels, read_cine dispatch."""
import hashlib
import os

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from cardiacquan import CardiacQuanError
from cardiacquan.io.cine import Cine
from cardiacquan.io.files import read_cine, read_labels, write_cine, write_labels
from cardiacquan.io.volume import read_sequence_nrrd, read_volume

T, Z, R, C = 5, 4, 12, 10


def oblique_cine(mirrored=False, T=T, Z=Z, times=True):
    """Oblique orientation, anisotropic pixels; `mirrored`: slices stacked against the normal."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    d = np.column_stack([q[:, 0], q[:, 1], np.cross(q[:, 0], q[:, 1])])
    step = (-7.5 if mirrored else 7.5) * d[:, 2]
    origins = np.array([10.0, -20.0, 30.0]) + np.arange(Z)[:, None] * step
    img = np.random.default_rng(1).normal(100, 30, size=(T, Z, R, C)).astype(np.float32)
    return Cine(img, (1.3, 0.9), origins, d, 40.0 * np.arange(T) + 20.0 if times else None, slice_thickness=6.0)


def assert_same_geometry(a, b):
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-4)
    np.testing.assert_allclose(a.origins, b.origins, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-4)


@pytest.mark.parametrize("ext", ["nii", "nii.gz", "mha", "seq.nrrd"])
@pytest.mark.parametrize("mirrored", [False, True])
def test_cine_round_trip(tmp_path, ext, mirrored):
    cine = oblique_cine(mirrored)
    path = str(tmp_path / f"cine.{ext}")
    write_cine(cine, path)
    back = read_cine(path)
    np.testing.assert_array_equal(back.image, cine.image)
    assert_same_geometry(back, cine)
    np.testing.assert_allclose(back.times_ms, cine.times_ms, atol=1e-3)
    assert back.times_known and back.slice_thickness == pytest.approx(7.5)   # the file's slice spacing
    det = np.linalg.det(back.metadata["file_direction"])
    assert det == pytest.approx(-1.0 if mirrored else 1.0, abs=1e-4)
    if ext != "seq.nrrd":   # what other ITK tools see
        d = np.array(sitk.ReadImage(path).GetDirection()).reshape(4, 4)[:3, :3]
        assert np.linalg.det(d) == pytest.approx(det, abs=1e-4)


@pytest.mark.parametrize("ext", ["nii.gz", "nrrd"])
@pytest.mark.parametrize("shape", [(T, Z), (1, Z), (T, 1)])
def test_labels_round_trip(tmp_path, ext, shape):
    cine = oblique_cine(True, T=shape[0], Z=shape[1])
    labels = np.random.default_rng(2).integers(0, 4, size=cine.image.shape).astype(np.uint8)
    path = str(tmp_path / f"seg.{ext}")
    write_labels(labels, cine, path)
    back = read_labels(path, cine)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)
    again = read_cine(path)
    assert_same_geometry(again, cine)
    if shape[1] == 1:
        assert again.slice_thickness == pytest.approx(6.0)


def test_labels_3d_time_stack_and_mismatch(tmp_path):
    cine = oblique_cine(T=T, Z=1)
    labels = np.random.default_rng(3).integers(0, 4, size=(T, R, C)).astype(np.uint8)
    img = sitk.GetImageFromArray(labels)                                          # z axis = time
    img.SetSpacing((0.9, 1.3, 1.0))
    sitk.WriteImage(img, str(tmp_path / "t.nii.gz"))
    np.testing.assert_array_equal(read_labels(tmp_path / "t.nii.gz", cine)[:, 0], labels)
    big = oblique_cine(T=T, Z=3)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, R, C), np.uint8)), str(tmp_path / "w.nii.gz"))
    with pytest.raises(CardiacQuanError, match=f"labels are 10x{R}x{C}, the cine is {T}x3x{R}x{C}"):
        read_labels(tmp_path / "w.nii.gz", big)
    with pytest.raises(CardiacQuanError, match="labels are"):
        write_labels(np.zeros((2, 2, R, C), np.uint8), big, tmp_path / "x.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.full((T, R, C), 0.5, np.float32)), str(tmp_path / "f.nii.gz"))
    with pytest.raises(CardiacQuanError, match="not a label map"):
        read_labels(tmp_path / "f.nii.gz", cine)


def test_3d_stack_and_time_axis(tmp_path):
    arr = np.random.default_rng(4).normal(size=(6, R, C)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.9, 1.3, 40.0))
    sitk.WriteImage(img, str(tmp_path / "s.nii.gz"))
    stack = read_cine(tmp_path / "s.nii.gz")
    assert stack.image.shape == (1, 6, R, C) and stack.spacing == pytest.approx((1.3, 0.9))
    assert not stack.times_known
    cine = read_cine(tmp_path / "s.nii.gz", third_axis_is_time=True)
    assert cine.image.shape == (6, 1, R, C)
    np.testing.assert_array_equal(cine.image[:, 0], arr)
    np.testing.assert_allclose(cine.times_ms, 40.0 * np.arange(6))


def test_labels_of_a_slice_over_time_come_back_in_the_files_geometry(tmp_path):
    d = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])    # rotated and mirrored
    img = sitk.GetImageFromArray(np.random.default_rng(5).normal(size=(6, R, C)).astype(np.float32))
    img.SetSpacing((0.9, 1.3, 40.0))
    img.SetOrigin((3.0, -4.0, 5.0))
    img.SetDirection(d.ravel().tolist())
    sitk.WriteImage(img, str(tmp_path / "s.nii.gz"))
    cine = read_cine(tmp_path / "s.nii.gz", third_axis_is_time=True)
    labels = np.random.default_rng(6).integers(0, 4, size=cine.image.shape).astype(np.uint8)
    write_labels(labels, cine, tmp_path / "lab.nii.gz")
    out = sitk.ReadImage(str(tmp_path / "lab.nii.gz"))
    assert out.GetSize() == img.GetSize()
    np.testing.assert_allclose(out.GetSpacing(), img.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(out.GetOrigin(), img.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(out.GetDirection(), img.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(read_labels(tmp_path / "lab.nii.gz", cine), labels)
    assert not cine.metadata["warnings"], "labels written by us sit on the cine's grid"


@pytest.mark.parametrize("ext", ["nii", "nii.gz"])
def test_nan_and_inf_in_nifti_are_refused(tmp_path, ext):
    # ITK's NIfTI reader turns NaN into 0: the file itself is checked
    for bad, dtype in ((np.nan, np.float32), (np.inf, np.float64)):
        arr = np.random.default_rng(7).normal(size=(3, 2, R, C)).astype(dtype)
        arr[1, 1, 2, 3] = bad
        img = sitk.JoinSeries([sitk.GetImageFromArray(a) for a in arr])
        sitk.WriteImage(img, str(tmp_path / f"bad.{ext}"))
        with pytest.raises(CardiacQuanError, match="1 NaN/infinite"):
            read_cine(tmp_path / f"bad.{ext}")


def test_written_files_have_exactly_the_name_asked_for(tmp_path):
    cine = oblique_cine()
    labels = np.ones(cine.image.shape, np.uint8)
    write_cine(cine, tmp_path / "x.nii.gz")
    before = hashlib.sha256(open(tmp_path / "x.nii.gz", "rb").read()).hexdigest()
    write_labels(labels, cine, tmp_path / "x.nii.nii.gz")    # ITK alone would write x.nii.gz
    assert sorted(os.listdir(tmp_path)) == ["x.nii.gz", "x.nii.nii.gz"]
    assert hashlib.sha256(open(tmp_path / "x.nii.gz", "rb").read()).hexdigest() == before
    np.testing.assert_array_equal(read_labels(tmp_path / "x.nii.nii.gz", cine), labels)


def test_labels_on_another_grid_are_matched_with_a_warning(tmp_path):
    cine = oblique_cine()
    labels = np.random.default_rng(8).integers(0, 4, size=cine.image.shape).astype(np.uint8)
    img = sitk.JoinSeries([sitk.GetImageFromArray(a) for a in labels])     # default geometry: 1 mm, origin 0
    sitk.WriteImage(img, str(tmp_path / "plain.nii.gz"))
    np.testing.assert_array_equal(read_labels(tmp_path / "plain.nii.gz", cine), labels)
    text = " ".join(cine.metadata["warnings"])
    assert "pixel spacing" in text and "orientation" in text and "origin" in text


def test_unknown_time_step(tmp_path):
    img = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((2, R, C), np.int16))] * 3)   # time step 1.0
    sitk.WriteImage(img, str(tmp_path / "u.nii"))
    cine = read_cine(tmp_path / "u.nii")
    assert cine.image.shape == (3, 2, R, C) and not cine.times_known
    np.testing.assert_array_equal(cine.times_ms, np.arange(3))


def test_new_slicer_layout_ras_seconds(tmp_path):
    """List axis last, RAS space, times in seconds (what recent Slicer versions write)."""
    data = np.random.default_rng(5).normal(size=(C, R, 2, 3)).astype(np.float32)   # i, j, k, list
    sd = np.array([[0.9, 0, 0], [0, 1.3, 0], [0, 0, 8.0], [np.nan] * 3])
    hdr = {"space": "right-anterior-superior", "space directions": sd, "kinds": ["domain"] * 3 + ["list"],
           "space origin": np.array([1.0, 2.0, 3.0]), "labels": ["", "", "", "time"], "units": ["", "", "", "s"],
           "axis 3 index type": "numeric", "axis 3 index values": "0 0.04 0.08"}
    nrrd.write(str(tmp_path / "new.seq.nrrd"), data, hdr)
    cine = read_cine(tmp_path / "new.seq.nrrd")
    assert cine.image.shape == (3, 2, R, C)
    np.testing.assert_array_equal(cine.image[1, 1], data[:, :, 1, 1].T)
    np.testing.assert_allclose(cine.times_ms, [0, 40, 80])
    np.testing.assert_allclose(cine.origins, [[-1, -2, 3], [-1, -2, 11]])
    np.testing.assert_allclose(cine.direction[:, :2], [[-1, 0], [0, -1], [0, 0]])
    # the same file under a plain .nrrd name is recognised by its list axis
    os.rename(tmp_path / "new.seq.nrrd", tmp_path / "plain.nrrd")
    assert read_cine(tmp_path / "plain.nrrd").image.shape == (3, 2, R, C)


def _md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def test_read_cine_dispatch_and_inputs_untouched(tmp_path):
    from test_io_dicom import write_series
    cine = oblique_cine()
    write_cine(cine, str(tmp_path / "c.nii.gz"))
    write_cine(cine, str(tmp_path / "c.seq.nrrd"))
    write_series(tmp_path / "dcm")
    dcm = sorted(os.listdir(tmp_path / "dcm"))[0]
    os.link(tmp_path / "dcm" / dcm, tmp_path / "IM0001")          # no extension, DICM preamble
    files = [tmp_path / "c.nii.gz", tmp_path / "c.seq.nrrd", tmp_path / "IM0001"]
    before = [_md5(f) for f in files] + [_md5(tmp_path / "dcm" / f) for f in sorted(os.listdir(tmp_path / "dcm"))]
    assert read_cine(tmp_path / "c.nii.gz").image.shape == (T, Z, R, C)
    assert read_cine(tmp_path / "c.seq.nrrd").metadata["format"] == "seq.nrrd"
    assert read_cine(tmp_path / "dcm").metadata["format"] == "dicom"
    assert read_cine(tmp_path / "IM0001").image.shape == (1, 1, 12, 10)
    after = [_md5(f) for f in files] + [_md5(tmp_path / "dcm" / f) for f in sorted(os.listdir(tmp_path / "dcm"))]
    assert before == after


def test_bad_volume_inputs(tmp_path):
    with pytest.raises(CardiacQuanError, match="no such file"):
        read_cine(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(CardiacQuanError, match="cannot read"):
        read_cine(tmp_path / "junk.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CardiacQuanError, match="unsupported input"):
        read_cine(tmp_path / "notes.txt")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((R, C), np.float32)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(CardiacQuanError, match="a single 2-D image is not a cine"):
        read_cine(tmp_path / "flat.nii.gz")
    rgb = sitk.GetImageFromArray(np.zeros((3, R, C, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(CardiacQuanError, match="values per pixel"):
        read_volume(tmp_path / "rgb.mha")
    nrrd.write(str(tmp_path / "bad.seq.nrrd"), np.zeros((R, C, 3), np.float32))
    with pytest.raises(CardiacQuanError, match="not a volume sequence"):
        read_sequence_nrrd(tmp_path / "bad.seq.nrrd")
    with pytest.raises(CardiacQuanError, match="cannot write"):
        write_cine(oblique_cine(), tmp_path / "c.png")
