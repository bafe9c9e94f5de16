"""Training the segmentation network across vendors: partial labels, domain randomisation,
checkpoints that a later run continues from, and the held-out GE yardstick."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_path, tiny_packed
from cardiacquan.contract import LV_CAVITY
from cardiacquan.synthetic.phantom import make_phantom
from cardiacquan.segmentation.network import NOT_LV_CAVITY
from cardiacquan.training import seg_augment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.path.join(REPO, "CardiacQuan"), TF_CPP_MIN_LOG_LEVEL="3")


def _loss(labels, probs):
    from cardiacquan.segmentation.network import dice_ce_loss
    return float(dice_ce_loss(np.asarray(labels)[..., None].astype(np.int32), np.asarray(probs, np.float32)))


def _old_loss(labels, probs):
    """The loss before partial labels, in numpy: it must not change on fully labelled batches."""
    onehot = np.eye(4)[labels]
    p = np.clip(probs, 1e-7, 1.0)
    ce = -np.mean(np.sum(onehot * np.log(p), -1))
    inter = (onehot * p).sum((0, 1, 2))
    dice = (2 * inter + 1) / (onehot.sum((0, 1, 2)) + p.sum((0, 1, 2)) + 1)
    return ce + 1 - dice[1:].mean()


def test_partial_labels_score_only_what_they_say():
    rng = np.random.default_rng(0)
    full = rng.integers(0, 4, (2, 16, 16))
    probs = rng.dirichlet(np.ones(4), (2, 16, 16))
    assert _loss(full, probs) == pytest.approx(_old_loss(full, probs), rel=1e-5)

    partial = np.where(full == LV_CAVITY, LV_CAVITY, NOT_LV_CAVITY)
    # how the network splits "not cavity" among background, RV and myocardium is not scored ...
    shuffled = probs.copy()
    unknown = partial == NOT_LV_CAVITY
    shuffled[unknown, :3] = probs[unknown, :3][:, rng.permutation(3)]
    assert _loss(partial, shuffled) == pytest.approx(_loss(partial, probs), rel=1e-5)
    # ... but cavity where the readers say "not cavity" is
    worse = probs.copy()
    worse[..., 3] = np.where(partial == NOT_LV_CAVITY, 0.9, probs[..., 3])
    worse[..., :3] *= ((1 - worse[..., 3]) / probs[..., :3].sum(-1))[..., None]
    assert _loss(partial, worse) > _loss(partial, probs) + 0.1


def test_partially_labelled_patches_are_padded_as_unknown_not_background():
    img = np.full((120, 120), 0.3, np.float32)
    lab = np.full(img.shape, NOT_LV_CAVITY, np.uint8)
    lab[5:30, 5:30] = LV_CAVITY                          # cavity near the corner: the patch leaves the image
    img[5:30, 5:30] = 0.9                                # bright blood
    for seed in range(6):
        x, y = seg_augment.random_patch(img, lab, 1.4, np.random.default_rng(seed), augment=seed > 0)
        assert set(np.unique(y)) <= {LV_CAVITY, NOT_LV_CAVITY} and (y == LV_CAVITY).any()
        assert np.isfinite(x).all() and x.shape == (160, 160)
        assert x[y == LV_CAVITY].mean() > x[y == NOT_LV_CAVITY].mean(), "labels stay on their pixels"
    x, y = seg_augment.random_patch(img, lab, 1.4, np.random.default_rng(0), augment=False)
    assert np.all(x[y == LV_CAVITY] > 0.8)


def test_domain_randomisation_never_inverts_contrast():
    ph = make_phantom(seed=2, n_frames=2, size=(160, 160), spacing=1.25)
    x = np.clip(ph.cine.image[0, 0] / ph.cine.image.max(), 0, 1).astype(np.float32)
    blood = ph.labels[0, 0] == LV_CAVITY
    muscle = ph.labels[0, 0] == 2
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ramp = np.linspace(0, 1, 101)
        assert np.all(np.diff(seg_augment._monotone_curve(ramp, rng)) >= -1e-12)
        g = seg_augment._random_conv_net(x, rng)
        assert g[blood].mean() > g[muscle].mean(), "bright blood stays brighter than myocardium"
        k = seg_augment._kspace_truncation(x, rng)
        assert k.shape == x.shape and k[blood].mean() > k[muscle].mean()
        a = seg_augment.augment_intensity(x, rng)
        assert a.dtype == np.float32 and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1.5


def _write_endo_subject(path, n=2, size=96, seed=0):
    import h5py
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cav = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < 15 ** 2).astype(np.uint8)
    image = (rng.random((n, size, size)) * 60 + 150 * cav).astype(np.uint8)
    with h5py.File(path, "w") as h:
        h["image"], h["cavity"] = image, np.repeat(cav[None], n, 0)
        h["instance"], h["series"] = np.array([7, 20][:n]), np.ones(n, int)


def _packed_with_partial(tmp_path):
    from cardiacquan.training.seg_data import _load_partial, _pack_partial
    endo = tmp_path / "endo"
    endo.mkdir()
    _write_endo_subject(endo / "SC-N-02.h5")
    _write_endo_subject(endo / "SC-N-40.h5", seed=1)     # held out: never packed for training
    partial = _pack_partial(endo, log=lambda *a: None)
    packed = tiny_packed(tmp_path, **partial)
    return packed, _load_partial(np.load(packed))


def test_partial_subjects_are_packed_without_the_held_out_ones(tmp_path):
    _, partial = _packed_with_partial(tmp_path)
    assert len(partial["partial_images"]) == 2                  # SC-N-02's two frames; SC-N-40 held out
    for lab in partial["partial_labels"]:
        assert set(np.unique(lab)) == {LV_CAVITY, NOT_LV_CAVITY}


def test_a_run_checkpoints_and_the_next_run_continues_from_it(tmp_path):
    packed, _ = _packed_with_partial(tmp_path)
    ckpt = tmp_path / "ckpt"
    base = [sys.executable, "-m", "cardiacquan", "train-seg", "--packed", str(packed), "--steps", "2",
            "--batch", "2", "--workers", "1", "--steps-per-epoch", "1", "--partial-fraction", "0.5"]
    r = subprocess.run(base + ["-o", str(tmp_path / "a.keras"), "--checkpoint-dir", str(ckpt)],
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["steps_done"] == 2 and len(state["runs"]) == 1 and (ckpt / "seg_model.keras").is_file()
    r = subprocess.run(base + ["-o", str(tmp_path / "b.keras"), "--resume", str(ckpt)],
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(2 steps done before)" in r.stdout
    state = json.loads((ckpt / "state.json").read_text())
    assert state["steps_done"] == 4 and [run["steps"] for run in state["runs"]] == [2, 2]
    for bad, says in ((["--resume", str(tmp_path / "nothing")], "to continue from"),
                      (["--checkpoint-dir", str(ckpt)], "already holds a checkpoint"),
                      (["--partial-fraction", "1.5"], "between 0 and 1")):
        r = subprocess.run(base + ["-o", str(tmp_path / "c.keras")] + bad,
                           env=ENV, capture_output=True, text=True, timeout=600)
        assert r.returncode != 0 and says in r.stderr + r.stdout, (bad, r.stderr[-500:])
    assert json.loads((ckpt / "state.json").read_text())["steps_done"] == 4, "a refused run changes nothing"


def test_distillation_pulls_only_the_fully_labelled_patches_towards_the_teacher():
    from cardiacquan.training.seg_distill import distillation_loss
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 8, 8))
    student = rng.dirichlet(np.ones(4), (2, 8, 8)).astype(np.float32)
    teacher = rng.dirichlet(np.ones(4), (2, 8, 8)).astype(np.float32)

    def loss(flags, t, weight=2.0):
        y = np.stack([labels, np.broadcast_to(np.asarray(flags)[:, None, None], labels.shape)], -1)
        return float(distillation_loss(weight)(y.astype(np.int32), np.concatenate([student, t], -1)))

    assert loss([0, 0], teacher) == pytest.approx(_old_loss(labels, student), abs=1e-5)
    assert loss([1, 1], student) == pytest.approx(_old_loss(labels, student), abs=1e-5)   # agreeing: no cost
    kl = (teacher * (np.log(teacher) - np.log(student))).sum(-1)
    assert loss([1, 0], teacher) == pytest.approx(_old_loss(labels, student) + 2.0 * kl[0].mean(), abs=1e-4)


def test_a_teacher_that_is_not_a_segmentation_model_is_refused(tmp_path):
    import keras
    from cardiacquan import CardiacQuanError
    from cardiacquan.segmentation.network import build_seg_model
    from cardiacquan.training.seg_distill import with_teacher
    other = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(3, 1)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(CardiacQuanError, match="not a segmentation model"):
        with_teacher(build_seg_model(), tmp_path / "other.keras")


def test_a_distilled_run_saves_the_student_alone(tmp_path):
    packed, _ = _packed_with_partial(tmp_path)
    teacher = tmp_path / "teacher.keras"
    base = [sys.executable, "-m", "cardiacquan", "train-seg", "--packed", str(packed), "--steps", "2",
            "--batch", "2", "--workers", "1", "--steps-per-epoch", "1", "--partial-fraction", "0.5"]
    r = subprocess.run(base + ["-o", str(teacher)], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(base + ["-o", str(tmp_path / "s.keras"), "--init", str(teacher), "--distill", str(teacher),
                               "--checkpoint-dir", str(tmp_path / "ckpt")],
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"distill={teacher}" in r.stdout
    import keras
    student = keras.saving.load_model(tmp_path / "s.keras", compile=False)
    assert student.name == "cardiacquan_seg" and student.input_shape == (None, None, None, 1)
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["runs"][0]["distill"] == str(teacher)
    run = json.loads((tmp_path / "ckpt" / "state.json").read_text())["runs"][0]
    assert len(run["distill_sha256"]) == 64 and run["distill_weight"] == 1.0
    for bad, says in ((["--distill", str(tmp_path / "none.keras")], "no such model file"),
                      (["--distill-weight", "2"], "needs --distill")):
        r = subprocess.run(base + ["-o", str(tmp_path / "x.keras")] + bad,
                           env=ENV, capture_output=True, text=True, timeout=600)
        assert r.returncode != 0 and says in r.stderr + r.stdout, (bad, r.stderr[-500:])


def test_held_out_sunnybrook_subjects_are_a_yardstick_of_the_cavity_border():
    from cardiacquan.evaluation.seg import border_offsets, evaluate_sunnybrook_endo
    folder = shared_path("sunnybrook-endo")
    pairs = []
    out = evaluate_sunnybrook_endo(folder, border=pairs, log=lambda *a: None)
    assert out["all"]["n_frames"] > 100
    # a yardstick, not a bar: the bundled model's figures are in its card
    assert out["all"]["dice_per_frame"] > 0.75 and 0.75 < out["all"]["area_ratio"] < 1.25
    offsets = border_offsets(pairs, "held out", log=lambda *a: None)
    assert 0 < offsets["reference_px"] < 2 and 0 < offsets["model_px"] < 2
