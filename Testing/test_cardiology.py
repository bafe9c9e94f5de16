"""A cardiologist's result: one ED/ES for the heart, AHA 16 segments, the report, DICOM SEG."""
import csv
import json
import os
import re
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cardiacquan.contract import (
    AHA_SEGMENTS,
    BULLSEYE_PNG,
    DICOM_SEG_FILE,
    REPORT_HTML,
    SEGMENTS_COLUMN_NAMES,
    SEGMENTS_CSV,
    SLICES_PNG,
    SUMMARY_JSON,
)
from cardiacquan.io.results import write_outputs
from cardiacquan.measure.segments import level_counts, segment_rays
from cardiacquan.measure.volumes import heart_phase
from cardiacquan.pipeline import quantify
from cardiacquan.synthetic.phantom import make_phantom

#: basal/mid segment k (1..6) -> RWT index (0-based) of the same 60-degree sector
SEGMENT_RWT = {1: 4, 2: 5, 3: 0, 4: 1, 5: 2, 6: 3}


@pytest.fixture(scope="module")
def stack():
    ph = make_phantom(seed=11, n_frames=12, n_slices=9, size=(192, 192), spacing=1.0, ed_frame=3,
                      noise=0.0, bias=0.0)
    return ph, quantify(ph.cine, labels=ph.labels, use_quan_net=False)


def _truth_segment(ph, number, level_slices, frame):
    tr = ph.truth
    k = (number - 1) % 6 + 1
    if number <= 12:
        return float(np.mean([tr["rwt"][frame, z, SEGMENT_RWT[k]] for z in level_slices]))
    return float(np.mean([tr["wall_quadrants"][frame, z, number - 13] for z in level_slices]))


# -- one phase for the heart ----------------------------------------------------------------

def test_one_ed_es_for_the_heart(stack, tmp_path):
    ph, res = stack
    assert (res.ed_frame, res.es_frame) == (int(ph.truth["ed"][0]), int(ph.truth["es"][0]))
    assert res.phase.tolist() == ph.truth["phase"][:, 0].tolist()
    write_outputs(res, tmp_path, figures=False)
    with open(tmp_path / "indices.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(int(r["phase"]) == res.phase[int(r["frame"])] for r in rows)     # every slice, one phase
    s = json.loads((tmp_path / SUMMARY_JSON).read_text())
    assert s["phase_curve"]["ed_frame"] == res.ed_frame and len(s["phase_curve"]["cavity_volume_ml"]) == 12
    assert all("ed_frame" in sl and "es_frame" in sl for sl in s["slices"])    # per-slice ED/ES stay
    assert s["volumes"]["ed_frame"] == res.ed_frame and s["volumes"]["es_frame"] == res.es_frame


def _idx(areas):
    a = np.asarray(areas, float)
    return SimpleNamespace(cavity_area=a, valid=np.isfinite(a), ed=int(np.nanargmax(a)), es=int(np.nanargmin(a)))


def test_heart_phase_rules_when_the_volume_is_partly_unknown():
    cine = SimpleNamespace(n_frames=5, slice_positions_mm=np.array([0.0, 10.0, 20.0]))
    big = [100, 90, 50, 60, 80]
    # a slice that loses its cavity in some frames (the base moving through it) is left out
    per = {0: _idx(big), 1: _idx([100, 95, 60, 55, 90]), 2: _idx([np.nan, 500, 10, 10, 10])}
    w = []
    h = heart_phase(cine, per, [0, 1, 2], 1, w)
    assert h["slices"] == [0, 1] and (h["ed"], h["es"]) == (0, 2) and "left out: 2" in h["source"]
    # no slice covers every frame: the frames where the summed volume is known
    # (a slice at either end may lose its cavity, adding 0; a gap inside the stack makes the frame unknown)
    per = {0: _idx([100, 90, 50, 60, np.nan]), 1: _idx([np.nan, 95, 60, 55, 90]), 2: _idx([100, np.nan, 60, 55, 90])}
    w = []
    h = heart_phase(cine, per, [0, 1, 2], 1, w)
    assert (h["ed"], h["es"]) == (1, 2) and np.isnan(h["curve"][0]) and np.isfinite(h["curve"][1:]).all() and w
    # fewer than two frames with a volume: the mid slice's own area curve
    per = {0: _idx([100, 90, 20, 60, np.nan]), 1: _idx([np.nan, np.nan, np.nan, 60, np.nan]),
           2: _idx([100, 90, 20, 60, np.nan])}
    w = []
    h = heart_phase(cine, per, [0, 1, 2], 0, w)
    assert (h["ed"], h["es"], h["unit"]) == (0, 2, "mm2") and w
    # a single slice keeps its own area curve
    h = heart_phase(cine, {0: _idx(big)}, [0], 0, [])
    assert (h["ed"], h["es"], h["slices"]) == (0, 2, [0])


# -- AHA 16 segments ------------------------------------------------------------------------

def test_level_counts_and_segment_rays():
    assert [level_counts(n) for n in (3, 4, 5, 9, 10, 11, 12)] == \
        [(1, 1, 1), (2, 1, 1), (2, 2, 1), (3, 3, 3), (4, 3, 3), (4, 4, 3), (4, 4, 4)]
    assert segment_rays(360, 7).sum() == 60 and segment_rays(360, 13).sum() == 90
    for level_segments in ((1, 2, 3, 4, 5, 6), (13, 14, 15, 16)):      # each level tiles the circle once
        assert (sum(segment_rays(360, n).astype(int) for n in level_segments) == 1).all()
    assert segment_rays(360, 14)[179] and segment_rays(360, 16)[0] and segment_rays(360, 7)[89]


@pytest.mark.parametrize("mirrored", [False, True])
def test_aha_segments_exact_on_a_phantom(mirrored):
    """Known regional thickness (thicker septum, random asymmetry, systolic thickening): every
    segment's thickness at ED and ES and its thickening match the phantom's exact truth."""
    ph = make_phantom(seed=5 + mirrored, n_frames=10, n_slices=9, size=(192, 192), spacing=1.0, ed_frame=2,
                      mirrored=mirrored, noise=0.0, bias=0.0)
    res = quantify(ph.cine, labels=ph.labels, use_quan_net=False)
    seg = res.segments
    assert seg["base_to_apex"] == list(range(9)) and seg["ring_slices"] == list(range(9))   # z = 0 is the base
    assert seg["levels"] == {"basal": [0, 1, 2], "mid": [3, 4, 5], "apical": [6, 7, 8]}
    ed, es = res.ed_frame, res.es_frame
    assert (ed, es) == (2, int(ph.truth["es"][0]))
    assert [(r["segment"], r["level"], r["name"]) for r in seg["segments"]] == list(AHA_SEGMENTS)
    errs, thick_errs = [], []
    for r in seg["segments"]:
        t_ed = _truth_segment(ph, r["segment"], r["slices"], ed)
        t_es = _truth_segment(ph, r["segment"], r["slices"], es)
        errs += [abs(r["thickness_ed_mm"] - t_ed), abs(r["thickness_es_mm"] - t_es)]
        thick_errs.append(abs(r["thickening_percent"] - 100 * (t_es - t_ed) / t_ed))
        assert r["thickening_percent"] > 0                                   # the phantom thickens everywhere
    assert max(errs) < 0.3 and np.mean(errs) < 0.12, (max(errs), np.mean(errs))
    assert max(thick_errs) < 4.0 and np.mean(thick_errs) < 1.5, (max(thick_errs), np.mean(thick_errs))


def test_a_broken_ring_leaves_the_slice_out_of_the_thirds():
    ph = make_phantom(seed=3, n_frames=8, n_slices=7, size=(160, 160), spacing=1.25, ed_frame=0, noise=0.0, bias=0.0)
    lab = ph.labels.copy()
    ed = int(ph.truth["ed"][0])
    r, c = np.round(ph.truth["lv_centre_rc"]).astype(int)
    wall = lab[ed, 0] == 2                                     # cut the basal ring open at ED
    rr, cc = np.nonzero(wall)
    gap = (np.abs(np.arctan2(-(rr - r), cc - c)) < 0.25)
    lab[ed, 0][rr[gap], cc[gap]] = 0
    res = quantify(ph.cine, labels=lab, use_quan_net=False)
    assert 0 not in res.segments["ring_slices"] and res.segments["ring_slices"] == list(range(1, 7))
    assert res.segments["levels"]["basal"] == [1, 2]


def test_too_few_slices_give_no_segments_and_say_why(tmp_path):
    ph = make_phantom(seed=2, n_frames=8, n_slices=1, size=(128, 128), spacing=1.5)
    res = quantify(ph.cine, labels=ph.labels, use_quan_net=False)
    assert res.segments["segments"] == [] and "not computed" in res.segments["note"]
    write_outputs(res, tmp_path)
    with open(tmp_path / SEGMENTS_CSV) as f:
        assert list(csv.reader(f)) == [list(SEGMENTS_COLUMN_NAMES)]
    assert (tmp_path / BULLSEYE_PNG).stat().st_size > 0 and (tmp_path / REPORT_HTML).exists()


# -- the files: segments.csv, bull's-eye, report ------------------------------------------------

def test_segments_csv_summary_and_self_contained_report(stack, tmp_path):
    ph, res = stack
    write_outputs(res, tmp_path)
    with open(tmp_path / SEGMENTS_CSV) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(SEGMENTS_COLUMN_NAMES) and [int(r["segment"]) for r in rows] == list(range(1, 17))
    s = json.loads((tmp_path / SUMMARY_JSON).read_text())
    assert len(s["segments"]["segments"]) == 16
    assert abs(float(rows[0]["thickness_ed_mm"]) - s["segments"]["segments"][0]["thickness_ed_mm"]) < 0.01
    page = (tmp_path / REPORT_HTML).read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:)""", page)       # nothing fetched from anywhere
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    assert page.count("src='data:image/png;base64,") == 4
    for text in ("EDV", "EF", "AHA 16 segments", "Per-frame values", "Warnings", "cardiacquan"):
        assert text in page
    assert (tmp_path / SLICES_PNG).exists() and (tmp_path / BULLSEYE_PNG).exists()


def test_report_renders_in_headless_chromium(stack, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium): the report's rendering "
                    "in a real browser is not checked here")
    from matplotlib.image import imread
    ph, res = stack
    write_outputs(res, tmp_path / "out")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
                    f"--screenshot={shot}", (tmp_path / "out" / REPORT_HTML).as_uri()],
                   check=True, timeout=120, capture_output=True)
    img = imread(str(shot))[..., :3]
    assert img.shape[0] >= 2000 and img.shape[1] >= 1100
    not_white = (img < 0.9).any(axis=-1).mean()
    assert not_white > 0.1 and img.std() > 0.1, (not_white, img.std())       # text and pictures, not blank


# -- DICOM SEG ----------------------------------------------------------------------------

def _write_dicom_series(cine, folder):
    """The cine as single-frame MR files (one per slice and frame); {SOPInstanceUID: (z, t)}."""
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    iop = [float(v) for v in np.r_[cine.direction[:, 0], cine.direction[:, 1]]]
    where = {}
    os.makedirs(folder)
    for z in range(cine.n_slices):
        for t in range(cine.n_frames):
            ds = Dataset()
            ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
            ds.Modality, ds.Manufacturer, ds.PatientID, ds.PatientName = "MR", "ACME", "P1", "Phantom^Heart"
            ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "19700101", "O", "20260101", "120000"
            ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "A1", ""
            ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 7, z * cine.n_frames + t + 1, "cine sax"
            ds.ImageOrientationPatient = iop
            ds.ImagePositionPatient = [float(v) for v in cine.origins[z]]
            ds.PixelSpacing, ds.SliceThickness = list(cine.spacing), 8.0
            ds.TriggerTime = float(cine.times_ms[t])
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows, ds.Columns = cine.frame_shape
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = np.clip(cine.image[t, z], 0, 65535).astype(np.uint16).tobytes()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.save_as(os.path.join(folder, f"im{len(where):04d}.dcm"), enforce_file_format=True)
            where[ds.SOPInstanceUID] = (z, t, [float(v) for v in cine.origins[z]])
    return where


def test_dicom_seg_reads_back_to_the_labels_and_its_sources(tmp_path):
    import highdicom as hd
    from cardiacquan.io.dicom import read_dicom_cine
    ph = make_phantom(seed=4, n_frames=5, n_slices=4, size=(96, 96), spacing=2.0, noise=0.02)
    where = _write_dicom_series(ph.cine, str(tmp_path / "dicom"))
    cine = read_dicom_cine(str(tmp_path / "dicom"))
    assert cine.image.shape == ph.cine.image.shape
    # the reader orders slices along the normal; the labels follow the images it placed
    perm = [int(np.argmin(np.abs(ph.cine.origins - o).sum(axis=1))) for o in cine.origins]
    res = quantify(cine, labels=ph.labels[:, perm], use_quan_net=False)
    res.segmented_by = "network"                       # as the shipped path marks it: an AUTOMATIC segmentation
    write_outputs(res, tmp_path / "out", figures=False, dicom_seg=True)
    seg = hd.seg.segread(str(tmp_path / "out" / DICOM_SEG_FILE))
    assert seg.Modality == "SEG" and int(seg.NumberOfFrames) == 3 * 5 * 4        # 3 segments, every frame and slice
    names = {int(d.SegmentNumber): (d.SegmentLabel, d.SegmentedPropertyTypeCodeSequence[0].CodeValue,
                                    d.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
                                    d.SegmentAlgorithmType, d.SegmentAlgorithmName) for d in seg.SegmentSequence}
    assert names[1][:3] == ("RV cavity", "87612001", "SCT") and names[2][:3] == ("LV myocardium", "49848007", "SCT")
    assert names[3][:3] == ("LV cavity", "87612001", "SCT")
    assert all(n[3] == "AUTOMATIC" and n[4] == "CardiacQuan" for n in names.values())
    assert seg.SegmentSequence[2].AnatomicRegionSequence[0].CodeValue == "87878005"     # left ventricle
    # every frame points at the image it was drawn on, at that image's place and time
    pixels = seg.pixel_array
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z, t, ipp = where[uid]
        assert item.FrameContentSequence[0].TemporalPositionIndex == t + 1
        assert np.allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient], ipp, atol=1e-3)
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        assert np.array_equal(pixels[k].astype(bool), ph.labels[t, z] == number)
    uids = list(where)
    masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2, 3])
    for i, uid in enumerate(uids):
        z, t, _ = where[uid]
        for number in (1, 2, 3):
            assert np.array_equal(masks[i, ..., number - 1].astype(bool), ph.labels[t, z] == number)
    refs = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == set(uids)


def test_dicom_seg_needs_a_dicom_input(tmp_path, capsys):
    from cardiacquan.cli import main
    from cardiacquan.io.files import write_cine
    ph = make_phantom(seed=1, n_frames=4, n_slices=1, size=(96, 96), spacing=2.0)
    write_cine(ph.cine, str(tmp_path / "c.nii.gz"))
    rc = main(["quantify", str(tmp_path / "c.nii.gz"), "-o", str(tmp_path / "o"), "--dicom-seg", "--no-figures"])
    assert rc == 2 and "--dicom-seg needs a DICOM input" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
