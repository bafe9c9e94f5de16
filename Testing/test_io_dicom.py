"""DICOM cine reader: synthetic series written with pydicom, plus the real Sunnybrook study."""
import os
import shutil
import random
import warnings

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cardiacquan import CardiacQuanError
from cardiacquan.io.dicom import read_dicom_cine

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
SUNNYBROOK = os.path.join(SHARED, "sunnybrook", "dicoms", "SCD0000101")
MR, ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1"

# oblique short-axis orientation: row cosine, column cosine
ROW_COS = np.array([0.6, 0.8, 0.0])
COL_COS = np.array([0.0, 0.0, -1.0])
NORMAL = np.cross(ROW_COS, COL_COS)
R, C = 12, 10
SPACING = (1.5, 0.8)           # (row, col) as in PixelSpacing


def _save(ds, path, sop_class=MR):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def _pixels_ds(arr, sop_class=MR):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.Modality, ds.Manufacturer, ds.PatientID = "MR", "ACME", "P1"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(arr, dtype=np.int16).tobytes()
    return ds


def write_mr(path, value, pos_mm, trigger=None, instance=None, acq_time=None, iop=None, series=("1.2.3", 1),
             omit=(), slope=2.0, intercept=-10.0, shape=(R, C)):
    """One single-frame MR file whose pixels are all `value` (stored as (value - intercept) / slope)."""
    ds = _pixels_ds(np.full(shape, (value - intercept) / slope))
    row, col = (ROW_COS, COL_COS) if iop is None else (np.asarray(iop[:3]), np.asarray(iop[3:]))
    ds.ImageOrientationPatient = [float(v) for v in np.r_[row, col]]
    ds.ImagePositionPatient = [float(v) for v in np.array([5.0, -3.0, 40.0]) + pos_mm * np.cross(row, col)]
    ds.PixelSpacing, ds.SliceThickness = list(SPACING), 8.0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.SeriesInstanceUID, ds.SeriesNumber = series
    ds.SeriesDescription = "cine sax"
    if trigger is not None:
        ds.TriggerTime = trigger
    if instance is not None:
        ds.InstanceNumber = instance
    if acq_time is not None:
        ds.AcquisitionTime = acq_time
    for tag in omit:
        delattr(ds, tag)
    _save(ds, path)


def value_of(z, t):
    return 200 * z + 2 * t      # even: exact after (value - intercept) / slope storage


def write_series(folder, Z=3, T=4, positions=(0.0, 8.0, 16.0), skip=(), **kw):
    """Z slices x T frames under shuffled names and shuffled instance numbers; returns {instance: (z, t)}."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(1)
    cells = [(z, t) for z in range(Z) for t in range(T) if (z, t) not in skip]
    instances = list(range(1, len(cells) + 1))
    rng.shuffle(instances)
    order = list(range(len(cells)))
    rng.shuffle(order)
    truth = {}
    for k in order:
        z, t = cells[k]
        name = f"img_{rng.randrange(10**6):06d}_{k}.dcm"
        write_mr(os.path.join(folder, name), value_of(z, t), positions[z], trigger=30.0 * t + 10.0 + 0.2 * z,
                 instance=instances[k], acq_time=f"1200{10 + t:02d}.5", **kw)
        truth[instances[k]] = (z, t)
    return truth


def expected(Z=3, T=4):
    return np.array([[np.full((R, C), value_of(z, t), np.float32) for z in range(Z)] for t in range(T)])


def test_shuffled_series(tmp_path):
    # positions given in descending order: the cine must still ascend along the normal
    truth = write_series(tmp_path / "s", positions=(16.0, 8.0, 0.0))
    cine = read_dicom_cine(tmp_path / "s")
    assert cine.image.shape == (4, 3, R, C)
    exp = expected()[:, ::-1]           # z index 0 of the truth is the highest position
    np.testing.assert_array_equal(cine.image, exp)   # rescale slope/intercept applied
    assert cine.spacing == SPACING
    np.testing.assert_allclose(cine.slice_positions_mm - cine.slice_positions_mm[0], [0, 8, 16], atol=1e-6)
    np.testing.assert_allclose(cine.direction[:, 0], ROW_COS)
    np.testing.assert_allclose(cine.direction[:, 1], COL_COS)
    np.testing.assert_allclose(cine.direction[:, 2], NORMAL)
    np.testing.assert_allclose(cine.times_ms, 30.0 * np.arange(4) + 10.2)
    assert cine.times_known and cine.metadata["frame_order"] == "TriggerTime"
    assert cine.slice_thickness == 8.0 and cine.metadata["n_files"] == 12
    assert cine.metadata["manufacturer"] == "ACME" and cine.metadata["series_description"] == "cine sax"
    assert cine.metadata["warnings"] == []
    imap = cine.metadata["instance_map"]
    assert {i: (2 - z, t) for i, (z, t) in truth.items()} == imap


def test_fallback_orders(tmp_path):
    write_series(tmp_path / "a", omit=("TriggerTime",))
    cine = read_dicom_cine(tmp_path / "a")
    assert cine.metadata["frame_order"] == "AcquisitionTime" and not cine.times_known
    np.testing.assert_array_equal(cine.image, expected())
    # no times at all: instance numbers (here in time order within each slice)
    d = tmp_path / "b"
    os.makedirs(d)
    for z in range(2):
        for t in range(3):
            write_mr(d / f"x{random.random()}.dcm", value_of(z, t), 8.0 * z, instance=10 * z + t + 1)
    cine = read_dicom_cine(d)
    assert cine.metadata["frame_order"] == "InstanceNumber"
    np.testing.assert_array_equal(cine.image, expected(2, 3))


def test_recursive_skips_non_images(tmp_path):
    write_series(tmp_path / "study" / "series1")
    (tmp_path / "study" / "README.txt").write_text("not dicom")
    ds = Dataset()                                   # a DICOMDIR-like file: DICOM, no pixels
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.1.3.10", generate_uid()
    _save(ds, tmp_path / "study" / "DICOMDIR", sop_class="1.2.840.10008.1.3.10")
    cine = read_dicom_cine(tmp_path / "study")
    assert cine.image.shape == (4, 3, R, C) and cine.metadata["n_files"] == 12


def test_single_file(tmp_path):
    write_mr(tmp_path / "one.dcm", 7, 0.0, trigger=5.0, instance=1)
    cine = read_dicom_cine(tmp_path / "one.dcm")
    assert cine.image.shape == (1, 1, R, C)
    assert any("folder" in w for w in cine.metadata["warnings"])


def test_one_file_of_a_series_reads_the_whole_series(tmp_path):
    write_series(tmp_path / "s")
    write_mr(tmp_path / "s" / "other_series.dcm", 5, 0.0, trigger=10.0, instance=1, series=("9.9.9", 7))
    one = sorted(os.listdir(tmp_path / "s"))[0]
    cine = read_dicom_cine(tmp_path / "s" / one)
    assert cine.image.shape == (4, 3, R, C) and cine.metadata["n_files"] == 12
    np.testing.assert_array_equal(cine.image, expected())
    assert any("its folder" in w for w in cine.metadata["warnings"])


def test_a_copied_file_is_read_once(tmp_path):
    write_series(tmp_path / "s")
    first = sorted(os.listdir(tmp_path / "s"))[0]
    shutil.copy(tmp_path / "s" / first, tmp_path / "s" / "zz_copy_of_first.dcm")
    cine = read_dicom_cine(tmp_path / "s")
    assert cine.image.shape == (4, 3, R, C) and cine.metadata["n_files"] == 12
    np.testing.assert_array_equal(cine.image, expected())
    assert any("zz_copy_of_first.dcm is a copy" in w for w in cine.metadata["warnings"])


def test_mixed_orientations(tmp_path):
    other = [1.0, 0, 0, 0, 1.0, 0]
    d = tmp_path / "equal"
    write_series(d, Z=2, T=2, positions=(0.0, 8.0))
    for t in range(4):
        write_mr(d / f"ax{t}.dcm", 1, 0.0, trigger=float(t), instance=100 + t, iop=other)
    with pytest.raises(CardiacQuanError, match="mixed orientations"):
        read_dicom_cine(d)
    d = tmp_path / "localizer"               # one stray localizer: the cine dominates
    write_series(d)
    write_mr(d / "loc.dcm", 1, 0.0, trigger=0.0, instance=999, iop=other, shape=(16, 16))
    cine = read_dicom_cine(d)
    np.testing.assert_array_equal(cine.image, expected())
    assert any("another orientation" in w for w in cine.metadata["warnings"])


def test_unequal_frame_counts(tmp_path):
    write_series(tmp_path / "tail", skip={(1, 3)})       # last frame missing in slice 1: cut to 3
    cine = read_dicom_cine(tmp_path / "tail")
    assert cine.image.shape == (3, 3, R, C)
    np.testing.assert_array_equal(cine.image, expected()[:3])
    assert any("kept the first 3" in w for w in cine.metadata["warnings"])
    write_series(tmp_path / "mid", skip={(1, 1)})        # a middle frame missing: slice 1 left out
    cine = read_dicom_cine(tmp_path / "mid")
    assert cine.image.shape == (4, 2, R, C)
    np.testing.assert_array_equal(cine.image, expected()[:, [0, 2]])
    assert any("left out" in w for w in cine.metadata["warnings"])


def test_repeated_slice_keeps_last_series(tmp_path):
    d = tmp_path / "rep"
    write_series(d)
    for t in range(4):   # slice 0 acquired again in series 2, brighter
        write_mr(d / f"rep{t}.dcm", 1000 + 2 * t, 0.0, trigger=30.0 * t + 10.0, instance=200 + t, series=("1.2.4", 2))
    cine = read_dicom_cine(d)
    assert cine.image.shape == (4, 3, R, C)
    np.testing.assert_array_equal(cine.image[:, 0, 0, 0], 1000 + 2 * np.arange(4))
    assert any("repeated acquisition" in w for w in cine.metadata["warnings"])


def test_enhanced_multiframe(tmp_path):
    Z, T = 2, 5
    cells = [(z, t) for z in range(Z) for t in range(T)]
    random.Random(3).shuffle(cells)
    ds = _pixels_ds(np.stack([np.full((R, C), value_of(z, t)) for z, t in cells]), sop_class=ENHANCED_MR)
    ds.NumberOfFrames = len(cells)
    shared = Dataset()
    pm, po, pvt = Dataset(), Dataset(), Dataset()
    pm.PixelSpacing, pm.SliceThickness = list(SPACING), 6.0
    po.ImageOrientationPatient = [float(v) for v in np.r_[ROW_COS, COL_COS]]
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1.0, 0.0, "US"
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [pm], [po]
    shared.PixelValueTransformationSequence = [pvt]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for z, t in cells:
        item, pos, card = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [float(v) for v in 7.0 * z * NORMAL]
        card.NominalCardiacTriggerDelayTime = 40.0 * t
        item.PlanePositionSequence, item.CardiacSynchronizationSequence = [pos], [card]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.SeriesInstanceUID = generate_uid()
    _save(ds, tmp_path / "enhanced.dcm", sop_class=ENHANCED_MR)
    cine = read_dicom_cine(tmp_path / "enhanced.dcm")
    np.testing.assert_array_equal(cine.image, expected(Z, T))
    np.testing.assert_allclose(cine.times_ms, 40.0 * np.arange(T))
    np.testing.assert_allclose(np.diff(cine.slice_positions_mm), [7.0])
    assert cine.spacing == SPACING and cine.slice_thickness == 6.0


def test_bad_inputs(tmp_path):
    with pytest.raises(CardiacQuanError, match="no such file"):
        read_dicom_cine(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("hello")
    with pytest.raises(CardiacQuanError, match="no DICOM image"):
        read_dicom_cine(tmp_path / "empty")
    write_series(tmp_path / "noipp")
    write_mr(tmp_path / "noipp" / "bad.dcm", 1, 0.0, trigger=1.0, omit=("ImagePositionPatient",))
    with pytest.raises(CardiacQuanError, match="ImagePositionPatient"):
        read_dicom_cine(tmp_path / "noipp")


def test_sunnybrook_real():
    if not os.path.isdir(SUNNYBROOK):
        pytest.skip(f"../shared/data not present (user clone): {SUNNYBROOK}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # pydicom's complaints about the study's UIDs stay quiet
        cine = read_dicom_cine(SUNNYBROOK)
    assert cine.image.shape == (20, 12, 256, 256)
    assert cine.spacing == pytest.approx((1.367188, 1.367188))
    assert cine.metadata["frame_order"] == "TriggerTime" and cine.metadata["n_files"] == 240
    assert np.all(np.diff(cine.times_ms) > 0) and cine.times_ms[0] == pytest.approx(19.1, abs=1)
    assert np.all(np.diff(cine.slice_positions_mm) == pytest.approx(10.0, abs=0.01))
    assert len(cine.metadata["instance_map"]) == 240 and cine.metadata["warnings"] == []
    # each slice holds 20 consecutive instance numbers in time order (README: phase = (N-1) % 20)
    for n, (z, t) in cine.metadata["instance_map"].items():
        assert t == (n - 1) % 20
