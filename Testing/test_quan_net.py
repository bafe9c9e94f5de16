"""The quantification network: pre-processing (crop, scale, standard orientation, time),
architecture, save/load, prediction in mm, phase decoding, and a tiny training that learns."""
import numpy as np

from cardiacquan.synthetic.phantom import make_phantom
from cardiacquan.models import load_quan_net
from cardiacquan.quannet.encoding import (crop_geometry, decode_phase, from_scale_free, prepare_masks, resample_time,
                                          to_scale_free)
from cardiacquan.quannet.network import QuanNet, build_quan_net, save_quan_net
from cardiacquan.quannet.predict import predict_indices

TINY = dict(channels=(4, 4, 8), head_units=8)


def phantom(rot=0.0, mirrored=False, T=4, seed=5, spacing=1.3):
    return make_phantom(seed=seed, n_frames=T, n_slices=1, rotation_deg=rot, mirrored=mirrored, spacing=spacing,
                        noise=0, bias=0, size=(160, 160))


def test_crop_is_the_standard_view_whatever_the_display():
    """Same anatomy shown rotated and/or mirrored (with the matching patient orientation):
    the 80x80 crops agree, and the (thicker) septum sits on the left of the crop."""
    crops = []
    for rot, mir in [(0, False), (75, False), (200, True), (310, True)]:
        ph = phantom(rot, mir)
        x, g = prepare_masks(ph.labels[:, 0], ph.cine.spacing, ph.cine.direction, n_frames=4)
        assert x.shape == (4, 80, 80, 2) and x.dtype == np.float32
        assert g.mirrored == mir and g.orientation_source == "anatomy"
        crops.append(x)
    for x in crops[1:]:
        assert np.abs(x - crops[0]).mean() < 0.02
    myo = crops[0][0, :, :, 1]
    assert myo[:, :40].sum() > myo[:, 40:].sum()           # septum (thicker wall) at 180 deg


def test_crop_scale_makes_the_lv_fill_the_crop_the_same_way():
    small, big = phantom(spacing=0.9), phantom(spacing=1.8)
    xs = []
    for ph in (small, big):
        x, g = prepare_masks(ph.labels[:, 0], ph.cine.spacing, ph.cine.direction, n_frames=4)
        lv = (x[..., 0] + x[..., 1]).sum(axis=(1, 2))
        assert np.isclose(lv.max(), np.pi * 26.0 ** 2, rtol=0.03)    # max epicardial radius = 26 px
        xs.append(x)
    assert np.abs(xs[0] - xs[1]).mean() < 0.03


def test_no_lv_gives_no_geometry():
    x, g = prepare_masks(np.zeros((3, 50, 50), np.uint8), (1.0, 1.0), n_frames=20)
    assert g is None and x.shape == (20, 80, 80, 2) and not x.any()
    assert crop_geometry(np.zeros((50, 50), np.uint8), (1, 1)) is None


def test_time_resampling_is_cyclic_and_exact_on_the_common_frames():
    a = np.sin(2 * np.pi * np.arange(20) / 20)
    assert np.array_equal(resample_time(a, 20), a)
    b = resample_time(a, 40)
    assert np.allclose(b[::2], a) and np.isclose(b[-1], 0.5 * (a[-1] + a[0]))
    assert np.allclose(resample_time(resample_time(a, 40), 20), a)


def test_scale_free_round_trip():
    y = np.random.default_rng(0).uniform(1, 2000, (3, 20, 11))
    s = np.array([0.7, 1.3, 2.0])
    assert np.allclose(from_scale_free(to_scale_free(y, s), s), y)
    assert np.allclose(to_scale_free(y, s)[1, :, 0], y[1, :, 0] / 1.3 ** 2)
    assert np.allclose(to_scale_free(y, s)[1, :, 5], y[1, :, 5] / 1.3)


def test_decode_phase_gives_one_systolic_interval():
    truth = np.zeros(20, int)
    truth[[17, 18, 19, 0, 1, 2, 3]] = 1          # ED = 16, ES = 3 (wraps)
    rng = np.random.default_rng(1)
    prob = np.clip(np.where(truth == 1, 0.8, 0.2) + rng.normal(0, 0.15, 20), 0.01, 0.99)
    prob[10] = 0.9                                # an isolated outlier
    ph, ed, es = decode_phase(prob)
    assert (ed, es) == (16, 3) and np.array_equal(ph, truth)
    # exactly one run of systole, cyclically
    assert np.sum(np.diff(np.r_[ph, ph[0]]) == 1) == 1


def test_network_shapes_and_the_faithful_variant():
    m = build_quan_net(**TINY)
    out = m.predict_on_batch(np.zeros((2, 20, 80, 80, 2), np.float32))
    assert out["indices"].shape == (2, 20, 11) and out["phase"].shape == (2, 20)
    f = build_quan_net(channels=(4, 4, 8), batchnorm=False, cyclic=False, head_units=0)
    names = [layer.__class__.__name__ for layer in f.layers]
    assert "BatchNormalization" not in names and "CyclicTimePad" not in names
    conv = [layer for layer in f.layers if layer.__class__.__name__ == "Conv3D"]
    assert [tuple(layer.kernel_size) for layer in conv] == [(3, 1, 1), (1, 3, 3)] * 3
    pools = [layer for layer in f.layers if layer.__class__.__name__ == "MaxPooling3D"]
    assert all(tuple(p.pool_size) == (1, 3, 3) for p in pools)


def test_cyclic_padding_makes_the_network_equivariant_to_time_shifts():
    m = build_quan_net(**TINY)
    x = np.random.default_rng(0).random((1, 20, 80, 80, 2)).astype(np.float32)
    a = m.predict_on_batch(x)["indices"]
    b = m.predict_on_batch(np.roll(x, 3, axis=1))["indices"]
    assert np.allclose(np.roll(a, 3, axis=1), b, atol=1e-4)


def test_save_load_and_predict_in_mm_for_another_number_of_frames(tmp_path):
    qn = QuanNet(build_quan_net(**TINY), norm_mean=np.r_[900, 600, np.full(9, 20.0)],
                 norm_std=np.r_[300, 200, np.full(9, 5.0)], meta={"fusion": {"weights": {}, "phase_source": "x"}})
    path = save_quan_net(qn, tmp_path / "q.keras")
    assert (tmp_path / "q.json").exists()
    back = load_quan_net(path)
    assert np.allclose(back.norm_mean, qn.norm_mean) and back.meta["fusion"]["phase_source"] == "x"
    ph = make_phantom(seed=2, n_frames=25, n_slices=1, noise=0, bias=0, size=(160, 160))
    lab = ph.labels[:, 0]
    r1 = predict_indices(lab, ph.cine.spacing, ph.cine.direction, model=qn)
    r2 = predict_indices(lab, ph.cine.spacing, ph.cine.direction, model=str(path))
    assert r1["cavity_area"].shape == (25,) and r1["dims"].shape == (25, 3) and r1["rwt"].shape == (25, 6)
    assert r1["phase"].shape == (25,) and 0 <= r1["ed"] < 25 and 0 <= r1["es"] < 25
    assert np.allclose(r1["indices"], r2["indices"], rtol=1e-4, atol=1e-3)
    # de-normalisation: mm = network units x crop pixel size (squared for areas)
    s = r1["crop"]["scale_mm"]
    assert np.all(np.isfinite(r1["indices"])) and r1["cavity_area"].mean() > 0.1 * 900 * s * s


def test_a_tiny_training_learns():
    """Loss falls on a handful of phantom cines (mechanics of the loop, not accuracy)."""
    from cardiacquan.training.quan_data import phantom_samples, stack_samples
    from cardiacquan.training.quan_train import fit_network
    d = stack_samples(phantom_samples(range(300, 304), "train", simulate=False, size=(128, 128), spacing=1.6))
    logs = []
    qn, hist = fit_network(d["x"], d["y_mm"], d["scale_mm"], d["phase"], epochs=6, batch_size=2, lr=3e-3, seed=0,
                           log=logs.append, model_kw=TINY)
    assert hist["loss"][-1] < hist["loss"][0]
    assert any(line.startswith("epoch 6:") for line in logs)
    assert np.all(np.isfinite(qn.norm_std)) and qn.norm_std.shape == (11,)


def test_training_continues_from_saved_weights(tmp_path):
    """--init-weights: the second run starts from the first run's weights, not from scratch."""
    from cardiacquan.training.quan_data import phantom_samples, stack_samples
    from cardiacquan.quannet.network import save_quan_net
    from cardiacquan.training.quan_train import fit_network
    d = stack_samples(phantom_samples(range(310, 312), "train", simulate=False, size=(128, 128), spacing=1.6))
    args = (d["x"], d["y_mm"], d["scale_mm"], d["phase"])
    first, _ = fit_network(*args, epochs=1, batch_size=2, lr=3e-3, seed=0, log=lambda *a: None, model_kw=TINY)
    save_quan_net(first, tmp_path / "first.keras")
    logs = []
    second, _ = fit_network(*args, epochs=1, batch_size=2, lr=0.0, seed=5, log=logs.append, model_kw=TINY,
                            init_weights=tmp_path / "first.keras")
    assert any("continuing from" in line for line in logs)
    # lr 0: no trainable weight moved from the loaded ones (batch-norm statistics still update)
    for a, b in zip(first.model.trainable_weights, second.model.trainable_weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
