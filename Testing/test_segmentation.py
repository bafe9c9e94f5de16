"""The bundled segmentation model on phantoms and on real MRI; outputs in the input geometry."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_path, tiny_packed
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.io.cine import Cine
from cardiacquan.evaluation.seg import dice
from cardiacquan.synthetic.phantom import make_phantom
from cardiacquan.segmentation.inference import clean_labels, segment_cine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.path.join(REPO, "CardiacQuan"), TF_CPP_MIN_LOG_LEVEL="3")


def test_phantom_cine_segmented_in_every_frame(seg_model):
    ph = make_phantom(seed=3, n_frames=6, spacing=1.4, rotation_deg=40)
    seg = segment_cine(ph.cine, model=seg_model)
    assert seg.labels.shape == ph.cine.image.shape and seg.labels.dtype == np.uint8
    assert seg.lv_found.all()
    lv = [dice(seg.labels[t, 0] == LV_CAVITY, ph.labels[t, 0] == LV_CAVITY) for t in range(6)]
    myo = [dice(seg.labels[t, 0] == MYOCARDIUM, ph.labels[t, 0] == MYOCARDIUM) for t in range(6)]
    assert min(lv) > 0.85, lv
    assert np.mean(myo) > 0.6, myo


def test_heart_off_centre_in_a_large_field_of_view(seg_model):
    """The coarse pass finds the LV anywhere: shift a phantom into a corner of a bigger frame."""
    ph = make_phantom(seed=5, n_frames=3, spacing=1.0, rotation_deg=0)
    img = ph.cine.image
    big = np.zeros(img.shape[:2] + (400, 400), np.float32) + float(np.percentile(img, 5))
    big[:, :, 130:130 + img.shape[2], 10:10 + img.shape[3]] = img
    cine = Cine(image=big, spacing=ph.cine.spacing, origins=ph.cine.origins, direction=ph.cine.direction)
    seg = segment_cine(cine, model=seg_model)
    truth = np.zeros(big.shape, np.uint8)
    truth[:, :, 130:130 + img.shape[2], 10:10 + img.shape[3]] = ph.labels
    assert dice(seg.labels == LV_CAVITY, truth == LV_CAVITY) > 0.85


def test_no_heart_is_flagged_not_filled(seg_model):
    rng = np.random.default_rng(0)
    noise = rng.rayleigh(1.0, (3, 1, 128, 128)).astype(np.float32)
    seg = segment_cine(Cine(image=noise, spacing=(1.5, 1.5), origins=np.zeros((1, 3))), model=seg_model)
    assert not seg.lv_found.any()
    assert (seg.labels == LV_CAVITY).sum() == 0
    assert any("not found" in w or "no left ventricle" in w for w in seg.warnings)


def test_clean_labels_keeps_one_cavity_fills_holes_drops_islands():
    lab = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 30, xx - 30)
    lab[r < 16] = MYOCARDIUM
    lab[r < 10] = LV_CAVITY
    lab[30, 30] = 0                       # hole in the cavity
    lab[2:5, 60:63] = LV_CAVITY           # stray island
    lab[58:61, 2:5] = MYOCARDIUM          # stray myocardium
    out = clean_labels(lab)
    assert out[30, 30] == LV_CAVITY
    assert out[3, 61] == 0 and out[59, 3] == 0
    assert (out == MYOCARDIUM).sum() > 0
    wall_less = np.zeros((64, 64), np.uint8)   # a cavity-like blob with no myocardium: not an LV
    wall_less[r < 6] = LV_CAVITY
    wall_less[40:50, 5:15] = RV
    out = clean_labels(wall_less)
    assert not (out == LV_CAVITY).any() and (out == RV).sum() == 100


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_segment_cli_writes_labels_in_input_geometry(tmp_path):
    import SimpleITK as sitk
    from cardiacquan.io.volume import write_cine
    ph = make_phantom(seed=11, n_frames=4, n_slices=2, spacing=(1.3, 1.3), oblique=True)
    src = tmp_path / "cine.nii.gz"
    write_cine(ph.cine, str(src))
    before = _sha(src)
    out = tmp_path / "labels.nii.gz"
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "segment", str(src), "-o", str(out)],
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _sha(src) == before
    a, b = sitk.ReadImage(str(src)), sitk.ReadImage(str(out))
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)
    lab = sitk.GetArrayFromImage(b)
    assert set(np.unique(lab)) <= {0, 1, 2, 3} and (lab == LV_CAVITY).any()
    assert "CQ-PROGRESS" in r.stderr


def test_real_acdc_stack(seg_model):
    from cardiacquan.io.datasets import acdc_assumed_spacing, read_acdc_h5
    path = shared_path("acdc", "data", "patient028_frame01.h5")
    img, lab = read_acdc_h5(path)
    sp = acdc_assumed_spacing(img.shape)
    cine = Cine(image=img[None], spacing=(sp, sp), origins=np.zeros((img.shape[0], 3)))
    pred = segment_cine(cine, model=seg_model).labels[0]
    assert pred.shape == lab.shape
    assert dice(pred == LV_CAVITY, lab == LV_CAVITY) > 0.9
    assert dice(pred == MYOCARDIUM, lab == MYOCARDIUM) > 0.8


def test_real_sunnybrook_mid_slice(seg_model):
    from cardiacquan.io.dicom import read_dicom_cine
    from cardiacquan.io.datasets import read_sunnybrook_contours
    d = shared_path("sunnybrook", "dicoms", "SCD0000101")
    cine = read_dicom_cine(d)
    cavity, _ = read_sunnybrook_contours(shared_path("sunnybrook", "contourfiles", "SC-HF-I-1"), cine)
    z = sorted({z for z, _ in cavity})[len(cavity) // 4]
    seg = segment_cine(cine, model=seg_model, slices=[z])
    assert seg.labels.shape == cine.image.shape
    assert not seg.labels[:, [k for k in range(cine.n_slices) if k != z]].any()
    for (zz, t), m in cavity.items():
        if zz == z:
            assert dice(seg.labels[t, z] == LV_CAVITY, m) > 0.85


def test_sunnybrook_evaluation_per_frame_and_per_stack(seg_model):
    """The whole study, scored as the model card quotes it: LV cavity over the 18 contoured
    frames meets the issue's 0.90; myocardium at ED is reported per frame and pooled."""
    from cardiacquan.evaluation.seg import evaluate_sunnybrook
    lines = []
    res, seg, cine = evaluate_sunnybrook(shared_path("sunnybrook"), seg_model, log=lines.append)
    assert res["n_lv"] == 18 and res["n_myo"] == 9
    assert res["lv_dice"] >= 0.90 and min(res["lv_per_frame"]) > 0.75
    assert res["myo_dice_ed"] > 0.74                      # 0.775 on 2026-11-29 (target 0.80 missed)
    assert set(res["per_stack"]) == {"LV t=7", "LV t=18", "MYO t=18"}
    assert all(0.75 < v <= 1 for v in res["per_stack"].values())
    assert "per stack" in lines[-2] and seg.labels.shape == cine.image.shape
    # the bundled model's cavity is ~9 % smaller than the readers' here (0.904 / 0.913; model card)
    assert set(res["cavity_area_ratio"]) == {7, 18} and all(0.85 < r < 1.05 for r in res["cavity_area_ratio"].values())
    assert "predicted / manual cavity area" in lines[-1]


def _write_dicom_cine(cine, folder):
    """The phantom as single-frame MR DICOM files (names shuffled w.r.t. time and position)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    os.makedirs(folder)
    T, Z, R, C = cine.image.shape
    d = np.asarray(cine.direction)
    series = generate_uid()
    for k, (t, z) in enumerate([(t, z) for z in range(Z) for t in range(T)][::-1]):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
        ds.Modality, ds.PatientID, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", "PHANTOM", series, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = R, C
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.clip(cine.image[t, z], 0, 65535).astype(np.uint16).tobytes()
        ds.ImageOrientationPatient = [float(v) for v in np.r_[d[:, 0], d[:, 1]]]
        ds.ImagePositionPatient = [float(v) for v in cine.origins[z]]
        ds.PixelSpacing = [float(s) for s in cine.spacing]
        ds.SliceThickness = 8.0
        ds.TriggerTime = float(cine.times_ms[t])
        ds.InstanceNumber = k + 1
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(os.path.join(folder, f"{k:04d}.dcm"), enforce_file_format=True)


def test_segment_cli_on_a_dicom_cine_writes_a_4d_label_image(tmp_path):
    """A DICOM cine gives a 4-D (x, y, z, t) label image in the DICOM geometry."""
    import SimpleITK as sitk
    from cardiacquan.io.dicom import read_dicom_cine
    ph = make_phantom(seed=5, n_frames=4, n_slices=2, size=(160, 176), spacing=(1.4, 1.4), oblique=True)
    src = tmp_path / "dicom"
    _write_dicom_cine(ph.cine, src)
    cine = read_dicom_cine(src)
    out = tmp_path / "labels.nii.gz"
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "segment", str(src), "-o", str(out)],
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    img = sitk.ReadImage(str(out))
    assert img.GetDimension() == 4 and img.GetSize() == (176, 160, 2, 4)
    np.testing.assert_allclose(img.GetSpacing()[:2], (1.4, 1.4), atol=1e-4)
    np.testing.assert_allclose(img.GetOrigin()[:3], cine.origins[0], atol=1e-3)
    direction = np.array(img.GetDirection()).reshape(4, 4)[:3, :3]
    np.testing.assert_allclose(direction, cine.direction, atol=1e-5)
    lab = sitk.GetArrayFromImage(img)                      # (t, z, rows, cols)
    assert lab.shape == (4, 2, 160, 176)
    # the reader orders slices along the normal; match them to the phantom's by position
    order = [int(np.argmin(np.linalg.norm(ph.cine.origins - o, axis=1))) for o in cine.origins]
    truth = ph.labels[:, order]
    assert dice(lab == LV_CAVITY, truth == LV_CAVITY) > 0.85


def test_train_seg_command_trains_and_saves_a_loadable_model(tmp_path):
    """The training command end to end on the real ACDC slices (two tiny steps)."""
    acdc = shared_path("acdc")
    out = tmp_path / "seg.keras"
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "train-seg", "--acdc", str(acdc), "-o", str(out),
                        "--steps", "2", "--batch", "2", "--workers", "1"],
                       env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.exists() and out.with_suffix(".train.json").exists()
    from cardiacquan.models import load_seg_model
    model = load_seg_model(out)
    assert model.output_shape[-1] == 4


def test_train_seg_in_the_background_writes_a_log_and_a_model(tmp_path):
    """`train-seg --background --log`: detaches, logs with timestamps, ends with a loadable model."""
    import time
    packed = tiny_packed(tmp_path)
    out, log = tmp_path / "seg.keras", tmp_path / "logs" / "train_seg.log"
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "train-seg", "--packed", str(packed), "-o", str(out),
                        "--steps", "2", "--batch", "2", "--workers", "1", "--background", "--log", str(log)],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "background" in r.stdout and str(log) in r.stdout
    deadline = time.time() + 600
    while time.time() < deadline and "saved" not in (log.read_text() if log.exists() else ""):
        time.sleep(2)
    text = log.read_text()
    assert "saved" in text, text[-2000:]
    assert "epoch 1/" in text and text.lstrip().startswith("[")       # timestamped lines, no banner
    from cardiacquan.models import load_seg_model
    assert load_seg_model(out).output_shape[-1] == 4


def test_train_seg_with_a_time_budget_ends_on_time_with_the_rate_annealed(tmp_path):
    """A schedule far too long for the budget: the run re-plans, stops near --max-minutes, and its
    last epochs run at the bottom of the cosine (so a short CPU run still converges)."""
    import re
    out = tmp_path / "seg.keras"
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "train-seg", "--packed", str(tiny_packed(tmp_path)),
                        "-o", str(out), "--steps", "100000", "--batch", "2", "--workers", "1",
                        "--steps-per-epoch", "2", "--max-minutes", "0.75"],
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "planning" in r.stdout
    secs = float(re.search(r"saved .* after (\d+)s", r.stdout).group(1))
    assert secs < 45 + 30, r.stdout[-1500:]
    lrs = [float(v) for v in re.findall(r"lr ([0-9.e+-]+) ", r.stdout)]
    assert lrs[0] == pytest.approx(2e-3) and lrs[-1] < 0.15 * 2e-3, r.stdout[-1500:]
    assert out.exists()


def test_training_batches_are_made_only_a_few_steps_ahead():
    """Patch workers must not run ahead of a slow trainer (unbounded look-ahead filled 24 GB)."""
    from cardiacquan.training.seg_train import prefetch

    class Done:
        def __init__(self, v):
            self.v = v

        def get(self):
            return self.v

    class RecordingPool:
        submitted = 0

        def apply_async(self, fn, args):
            self.submitted += 1
            return Done(fn(*args))

    pool = RecordingPool()
    it = prefetch(pool, lambda a: a * 10, iter(range(1000)), depth=4)
    assert [next(it) for _ in range(3)] == [0, 10, 20]
    assert pool.submitted <= 3 + 4
    assert list(it)[-1] == 9990 and pool.submitted == 1000


def test_one_slice_is_segmented_as_within_the_whole_stack():
    # an apical slice alone gives a weak localisation signal: the stack still places it
    cine = make_phantom(seed=7, n_frames=20, n_slices=4).cine
    whole = segment_cine(cine)
    alone = segment_cine(cine, slices=[3])
    assert alone.lv_found[:, 3].all()
    np.testing.assert_array_equal(alone.labels[:, 3], whole.labels[:, 3])
    assert not alone.labels[:, :3].any(), "only the slice asked for is segmented"
