"""The bundled ONNX files against the Keras models they were exported from, and the runtime
that runs them: same probabilities (max |difference| <= 1e-4), same labels, same indices
(within 0.01 mm / 0.01 mm^2), and no TensorFlow in a quantifying process."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import shared_path

from cardiacquan import models
from cardiacquan.contract import LV_CAVITY
from cardiacquan.io.datasets import acdc_assumed_spacing, read_acdc_h5
from cardiacquan.io.volume import write_cine
from cardiacquan.pipeline import quantify
from cardiacquan.segmentation.intensity import normalize_intensity
from cardiacquan.segmentation.network import PATCH, WORK_SPACING_MM
from cardiacquan.segmentation.resample import patch_affine, sample_patch
from cardiacquan.synthetic.phantom import make_phantom

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.path.join(REPO, "CardiacQuan"), TF_CPP_MIN_LOG_LEVEL="3")
MAX_PROB_DIFF = 1e-4
MAX_INDEX_DIFF = 0.01


@pytest.fixture(scope="module")
def seg_models():
    return models.load_seg_model(backend="tensorflow"), models.load_seg_model(backend="onnxruntime")


def _patches_around_lv(frames, labels, spacing, size):
    """Fine-pass-like patches: normalised frames resampled at the working pixel size around the LV."""
    out = []
    for img, lab in zip(frames, labels):
        rc = np.argwhere(lab == LV_CAVITY).mean(axis=0) if (lab == LV_CAVITY).any() else np.array(img.shape) / 2
        M, o = patch_affine(rc, spacing, (size, size), WORK_SPACING_MM)
        out.append(sample_patch(normalize_intensity(img), M, o, (size, size)))
    return np.stack(out)[..., None].astype(np.float32)


def _assert_same_probabilities(tf_model, ort_model, x):
    p_tf = np.asarray(tf_model.predict_on_batch(x))
    p_ort = np.asarray(ort_model.predict_on_batch(x))
    assert p_tf.shape == p_ort.shape
    assert np.abs(p_tf - p_ort).max() <= MAX_PROB_DIFF
    assert np.array_equal(p_tf.argmax(-1), p_ort.argmax(-1))


def test_both_segmentation_graphs_match_keras_on_phantom_patches(seg_models):
    ph = make_phantom(seed=11, n_frames=6, n_slices=1, size=(224, 224), spacing=1.4)
    frames, labels = ph.cine.image[:, 0], ph.labels[:, 0]
    for size in (PATCH, 224):      # the fine pass's fixed graph, the any-size graph
        _assert_same_probabilities(*seg_models, _patches_around_lv(frames, labels, ph.cine.spacing, size))


def test_segmentation_matches_keras_on_real_acdc_and_sunnybrook_patches(seg_models):
    img, lab = read_acdc_h5(shared_path("acdc", "data", "patient028_frame01.h5"))
    sp = acdc_assumed_spacing(img.shape)
    _assert_same_probabilities(*seg_models, _patches_around_lv(img, lab, (sp, sp), PATCH))
    from cardiacquan.io.dicom import read_dicom_cine
    cine = read_dicom_cine(shared_path("sunnybrook", "dicoms", "SCD0000101"))
    frames = cine.image[::4, 5]
    _assert_same_probabilities(*seg_models, _patches_around_lv(frames, np.zeros(frames.shape, np.uint8),
                                                               cine.spacing, PATCH))


def test_quantification_network_matches_keras():
    tf_qn = models.load_quan_net(backend="tensorflow")
    ort_qn = models.load_quan_net(backend="onnxruntime")
    x = (np.random.default_rng(3).random((3, tf_qn.n_frames, tf_qn.size, tf_qn.size, 2)) > 0.5).astype(np.float32)
    a, b = tf_qn.model.predict_on_batch(x), ort_qn.model.predict_on_batch(x)
    for k in ("indices", "phase"):
        assert np.abs(np.asarray(a[k]) - np.asarray(b[k])).max() <= MAX_PROB_DIFF
    assert ort_qn.meta == tf_qn.meta and np.array_equal(ort_qn.norm_mean, tf_qn.norm_mean)


def _assert_same_quantification(cine, slices="all"):
    ref = quantify(cine, slices=slices, backend="tensorflow")
    got = quantify(cine, slices=slices, backend="onnxruntime")
    assert np.array_equal(ref.labels, got.labels)
    assert (ref.ed_frame, ref.es_frame) == (got.ed_frame, got.es_frame)
    for z in ref.slices:
        a, b = ref.per_slice[z].as_array(), got.per_slice[z].as_array()
        assert np.array_equal(np.isfinite(a), np.isfinite(b))
        assert np.nanmax(np.abs(a - b)) <= MAX_INDEX_DIFF
        assert np.array_equal(ref.per_slice[z].phase, got.per_slice[z].phase)
        assert ref.sources[z] == got.sources[z]


def test_the_pipeline_gives_the_same_result_on_both_backends():
    ph = make_phantom(seed=4, n_frames=12, n_slices=3, size=(192, 192), spacing=1.5)
    _assert_same_quantification(ph.cine)


def test_the_pipeline_gives_the_same_result_on_both_backends_on_real_mri():
    from cardiacquan.io.dicom import read_dicom_cine
    cine = read_dicom_cine(shared_path("sunnybrook", "dicoms", "SCD0000101"))
    _assert_same_quantification(cine, slices=[3, 6])


def test_quantify_never_imports_tensorflow(tmp_path):
    ph = make_phantom(seed=2, n_frames=8, n_slices=1, size=(160, 160), spacing=1.5)
    src = tmp_path / "cine.nii.gz"
    write_cine(ph.cine, str(src))
    code = ("import sys; from cardiacquan.cli import main; rc = main(sys.argv[1:]); "
            "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc or (3 if heavy else 0))")
    r = subprocess.run([sys.executable, "-c", code, "quantify", str(src), "-o", str(tmp_path / "out"), "--no-figures"],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "HEAVY []" in r.stdout
    assert (tmp_path / "out" / "indices.csv").exists()


def test_a_keras_file_without_its_export_is_refused_clearly(tmp_path):
    from cardiacquan import CardiacQuanError
    (tmp_path / "seg_model.keras").write_bytes(b"x")
    with pytest.raises(CardiacQuanError, match="export-onnx"):
        models.load_seg_model(tmp_path / "seg_model.keras", backend="onnxruntime")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(CardiacQuanError, match="not an ONNX model"):
        models.load_seg_model(tmp_path / "bad.onnx")


def test_export_onnx_writes_files_that_match_the_keras_model(tmp_path):
    from cardiacquan.quannet.network import QuanNet, build_quan_net, save_quan_net
    from cardiacquan.segmentation.network import build_seg_model
    seg = build_seg_model(filters=(4, 4, 8, 8))
    seg.save(tmp_path / "seg_model.keras")
    qn = QuanNet(build_quan_net(channels=(4, 4, 8), head_units=8, compile=False))
    save_quan_net(qn, tmp_path / "quan_net.keras")
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "export-onnx", str(tmp_path / "seg_model.keras"),
                        str(tmp_path / "quan_net.keras")], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("seg_model.onnx", "seg_model_160.onnx", "quan_net.onnx"):
        assert (tmp_path / name).exists(), name
    x = np.random.default_rng(0).random((2, PATCH, PATCH, 1), dtype=np.float32)
    ort_seg = models.load_seg_model(tmp_path / "seg_model.keras", backend="onnxruntime")
    assert ort_seg.fine is not None
    assert np.abs(ort_seg.predict_on_batch(x) - np.asarray(seg.predict_on_batch(x))).max() <= MAX_PROB_DIFF
    ort_qn = models.load_quan_net(tmp_path / "quan_net.keras", backend="onnxruntime")
    y = np.random.default_rng(1).random((2, qn.n_frames, qn.size, qn.size, 2), dtype=np.float32)
    want, got = qn.model.predict_on_batch(y), ort_qn.model.predict_on_batch(y)
    assert np.abs(np.asarray(want["indices"]) - got["indices"]).max() <= MAX_PROB_DIFF
