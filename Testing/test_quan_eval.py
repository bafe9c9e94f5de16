"""LVQuan table, fusion choice, the LVQuan18 .mat protocol (on a small generated file) and the
`evaluate` command on a small prepared set."""
import argparse

import numpy as np

from cardiacquan.evaluation.quan import format_table, lvquan_table
from cardiacquan.quannet.fusion import apply_fusion, choose_fusion, source_label

TINY = dict(channels=(4, 4, 8), head_units=8)


def test_lvquan_table_figures():
    truth = np.zeros((2, 4, 11))
    pred = truth.copy()
    pred[..., 0] = 10.0              # A1 off by 10 mm2
    pred[..., 2] = 1.0               # D1 off by 1 mm
    pred[..., 5:] = 0.5              # every RWT off by 0.5 mm
    truth[0, 0, 1] = np.nan          # a missing truth is left out of that index only
    tp = np.array([[0, 1, 1, 0], [0, 0, 1, 1]])
    pp = tp.copy()
    pp[0, 0] = 1
    t = lvquan_table(pred, truth, pp, tp)
    assert t["index"]["A1"]["mae"] == 10.0 and t["index"]["A2"]["n"] == 7
    assert t["group"]["areas"]["mae"] == 5.0
    assert np.isclose(t["group"]["dims"]["mae"], 1 / 3)
    assert np.isclose(t["group"]["rwt"]["mae"], 0.5)
    assert t["phase_error"] == 1 / 8 and t["n_frames"] == 8
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 11))
    assert np.isclose(lvquan_table(y + 0.01 * rng.normal(size=y.shape), y)["index"]["D2"]["r"], 1.0, atol=1e-3)
    txt = format_table({"network": t, "geometry": t, "final": t}, "demo")
    for word in ("demo", "RWT6 (mm)", "areas (mm2)", "phase error", "12.5 %", "network", "final"):
        assert word in txt


def test_fusion_picks_the_better_source_per_index_and_never_loses_on_its_data():
    rng = np.random.default_rng(0)
    truth = rng.uniform(5, 50, (40, 20, 11))
    net = truth + rng.normal(0, 1.0, truth.shape)
    geo = truth + rng.normal(0, 1.0, truth.shape)
    net[..., 0] = truth[..., 0] + rng.normal(0, 0.2, truth[..., 0].shape)     # network clearly better on A1
    geo[..., 2] = truth[..., 2] + rng.normal(0, 0.2, truth[..., 2].shape)     # geometry clearly better on D1
    geo[3, 5, 4] = np.nan                                                      # missing -> the other source
    phase = np.zeros((40, 20), int)
    phase[:, 1:8] = 1
    prob = np.where(phase == 1, 0.9, 0.1)
    c = choose_fusion(net, geo, truth, prob, phase)
    assert c["weights"]["A1"] == 1.0 and c["weights"]["D1"] == 0.0
    assert 0.0 < c["weights"]["D2"] < 1.0            # equally noisy, independent: a blend wins
    for name, f in c["holdout_mae"].items():
        assert f["final"] <= min(f["network"], f["geometry"]) + 1e-12
    assert c["phase_source"] in ("network", "geometry", "final-area")
    r = apply_fusion(net[3], geo[3], c, prob[3])
    assert np.isfinite(r["indices"]).all() and r["indices"][5, 4] == net[3, 5, 4]
    assert r["source"][0] == "network" and r["source"][2] == "geometry" and r["source"][3].startswith("fusion")
    assert source_label(0.3) == "fusion 0.3*network+0.7*geometry"
    assert r["phase"].shape == (20,) and r["phase"][r["ed"]] == 0 and r["phase"][r["es"]] == 1


def write_lvquan_mat(path, n_subjects=5, seed=0):
    """A small file in the LVQuan18 layout (80x80 frames, 20 per subject, normalised indices)."""
    import scipy.io
    from cardiacquan.measure.indices import slice_indices
    rng = np.random.default_rng(seed)
    N = 20 * n_subjects
    img = np.zeros((80, 80, N), np.float32)
    endo = np.zeros((80, 80, N), np.uint8)
    epi = np.zeros((80, 80, N), np.uint8)
    areas, dims, rwt, phase = np.zeros((2, N)), np.zeros((3, N)), np.zeros((6, N)), np.zeros((1, N))
    pix = rng.uniform(1.2, 1.8, n_subjects)
    ratio = rng.uniform(1.0, 1.6, n_subjects)
    rr, cc = np.mgrid[0:80, 0:80].astype(float)
    for s in range(n_subjects):
        a, b, w = rng.uniform(12, 16), rng.uniform(10, 14), rng.uniform(4, 6)
        t = np.arange(20)
        f = 1 - 0.35 * np.sin(np.pi * np.clip(t / 14, 0, 1)) ** 2       # ED at 0, ES at 7
        px = pix[s] * ratio[s]
        for k in range(20):
            n = 20 * s + k
            ang = np.arctan2(rr - 40, cc - 40)
            d = np.hypot((rr - 40) / (b * np.sqrt(f[k])), (cc - 40) / (a * np.sqrt(f[k])))
            en = d < 1
            ep = np.hypot(rr - 40, cc - 40) < np.sqrt(a * b * f[k]) + w * (1 + 0.2 * np.cos(ang))
            ep |= en
            endo[..., n], epi[..., n] = en, ep
            img[..., n] = 0.3 + 0.7 * en
            lab = np.where(en, 3, np.where(ep, 2, 0)).astype(np.uint8)
            si = slice_indices(lab, (px, px))
            areas[:, n] = [si.cavity_area[0], si.myocardium_area[0]] / (80 * px) ** 2
            dims[:, n] = si.dims[0] / (80 * px)
            rwt[:, n] = si.rwt[0] / (80 * px)
        phase[0, 20 * s:20 * s + 20] = (np.arange(20) >= 1) & (np.arange(20) <= 7)
    scipy.io.savemat(path, dict(images_LV=img, endo_LV=endo, epi_LV=epi, areas=areas, dims=dims, rwt=rwt,
                                lv_phase=phase, pix_spa=pix[None], ratio_resize_inverse=ratio[None]))
    return path


def test_lvquan_protocol_on_a_small_generated_file(tmp_path):
    from cardiacquan.training.quan_data import lvquan_arrays
    from cardiacquan.training.quan_train import add_train_quan_parser, lvquan_cv
    path = write_lvquan_mat(tmp_path / "cardiac-dig.mat")
    d = lvquan_arrays(path)
    assert d["x"].shape == (5, 20, 80, 80, 2) and d["y_mm"].shape == (5, 20, 11)
    # the engine's geometry of the expert masks reproduces the file's own indices (in mm)
    assert np.nanmax(np.abs(d["geo_mm"] - d["y_mm"])) < 1e-6
    logs = []
    res = lvquan_cv(path, folds=5, epochs=1, batch_size=4, seed=0, log=logs.append, model_kw=TINY)
    text = "\n".join(logs)
    assert "5 folds of 1 subjects" in text and "fold 5/5" in text and "LVQuan 5-fold cross-validation" in text
    for src in ("network", "geometry", "final"):
        t = res["tables"][src]
        assert t["n_frames"] == 100 and np.isfinite(t["group"]["areas"]["mae"]) and "phase_error" in t
    assert res["tables"]["geometry"]["group"]["areas"]["mae"] < 1e-6
    # the command line reaches the same path
    ap = argparse.ArgumentParser()
    add_train_quan_parser(ap.add_subparsers())
    args = ap.parse_args(["train-quan", "--lvquan", str(path), "--folds", "5", "--epochs", "1"])
    assert args.lvquan == str(path) and args.folds == 5 and callable(args.func)


def test_evaluate_command_on_a_prepared_set(tmp_path, capsys):
    from cardiacquan.evaluation.quan import add_evaluate_parser
    from cardiacquan.training.quan_data import phantom_samples, stack_samples
    from cardiacquan.quannet.network import QuanNet, build_quan_net, save_quan_net
    d = stack_samples(phantom_samples([7], "test", simulate=True, size=(128, 128), spacing=1.6))
    np.savez_compressed(tmp_path / "set.npz", meta=np.array("{}"), **d)
    qn = QuanNet(build_quan_net(**TINY), norm_mean=np.r_[900, 600, np.full(9, 20.0)],
                 norm_std=np.r_[300, 200, np.full(9, 5.0)])
    model = save_quan_net(qn, tmp_path / "q.keras")
    ap = argparse.ArgumentParser()
    add_evaluate_parser(ap.add_subparsers())
    args = ap.parse_args(["evaluate", "--set", "npz", "--data", str(tmp_path / "set.npz"), "--split", "test",
                          "--model", str(model), "--json", str(tmp_path / "t.json")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "test / phantom:" in out and "test / phantom-sim:" in out and "geometry" in out
    import json
    tables = json.loads((tmp_path / "t.json").read_text())
    # phantom masks: the engine's geometry is close to the exact truth
    assert tables["phantom"]["geometry"]["group"]["dims"]["mae"] < 0.5


def test_pipeline_uses_bundled_weights_and_says_where_final_values_come_from(tmp_path, monkeypatch):
    """quantify() with a quan_net.keras in the model folder: final values per the stored fusion
    choice, sources per index, the choice and its figures in the info; none there -> geometry."""
    import json

    from cardiacquan import models
    from cardiacquan.contract import INDEX_NAMES
    from cardiacquan.pipeline import quantify
    from cardiacquan.quannet import fusion as quan_fusion
    from cardiacquan.quannet.network import QuanNet, build_quan_net, save_quan_net
    from cardiacquan.synthetic.phantom import make_phantom
    load_seg_model = models.load_seg_model
    ph = make_phantom(seed=3, n_frames=20, n_slices=1, size=(128, 128), spacing=1.5, noise=0, bias=0)
    seg = load_seg_model()                                         # the bundled one, before the folder moves
    monkeypatch.setenv("CARDIACQUAN_MODEL_DIR", str(tmp_path))
    models.forget_loaded_models()
    res = quantify(ph.cine, seg_model=seg)                         # no weights: geometry, said so
    assert res.sources[0] == ["geometry"] * 11 and "not bundled" in res.quan_info["quan_net"]
    weights = {k: 0.0 for k in INDEX_NAMES}
    weights.update(A1=1.0, D2=0.5)
    choice = {"weights": weights, "phase_source": "geometry", "data": "test holdout",
              "sources": {k: quan_fusion.source_label(w) for k, w in weights.items()},
              "holdout_mae": {k: {"network": 1.0, "geometry": 2.0, "final": 1.0} for k in INDEX_NAMES}}
    qn = QuanNet(build_quan_net(**TINY), norm_mean=np.r_[900, 600, np.full(9, 20.0)],
                 norm_std=np.r_[300, 200, np.full(9, 5.0)],
                 meta={"fusion": choice, "validation": {"val": {"acdc-seg": {"final": {
                     "group_mae": {"areas": 90.0, "dims": 1.2, "rwt": 0.9}, "phase_error": 0.05, "n_frames": 20}}}}})
    save_quan_net(qn, tmp_path / "quan_net.keras")
    from cardiacquan.training.onnx_export import export_quan_net
    export_quan_net(tmp_path / "quan_net.keras", log=lambda *a: None)   # what the product runs
    models.forget_loaded_models()
    given = quantify(ph.cine, labels=res.labels)         # the user's masks: their geometry, said so
    assert given.sources[0] == ["geometry"] * 11 and "given masks" in given.quan_info["final_values"]
    np.testing.assert_array_equal(given.per_slice[0].as_array(), res.per_slice[0].as_array())
    res2 = quantify(ph.cine, seg_model=seg)              # the network's masks: the stored fusion
    src = dict(zip(INDEX_NAMES, res2.sources[0]))
    assert src["A1"] == "network" and src["A2"] == "geometry" and src["D2"].startswith("fusion 0.5")
    geo, fin = res.per_slice[0].as_array(), res2.per_slice[0].as_array()
    assert np.allclose(fin[:, 1], geo[:, 1]) and not np.allclose(fin[:, 0], geo[:, 0])   # A1 from the network
    info = res2.quan_info["quan_net"]
    assert info["index_sources"]["A1"] == "network" and info["chosen_on"] == "test holdout"
    assert info["validation"]["val"]["acdc-seg"]["final"]["group_mae"]["dims"] == 1.2
    from cardiacquan.io.results import summary_dict, write_indices_csv
    write_indices_csv(res2, tmp_path / "indices.csv")
    head, first = (tmp_path / "indices.csv").read_text().splitlines()[:2]
    assert head.endswith(",source") and "network" in first.split(",")[-1]
    s = json.loads(json.dumps(summary_dict(res2), default=str))
    assert s["quantification"]["quan_net"]["phase_source"] == "geometry"
    models.forget_loaded_models()


def test_train_quan_in_the_background_logs_the_protocol(tmp_path):
    """`train-quan --background --log`: returns at once, the detached run writes the LVQuan table."""
    import os
    import subprocess
    import sys
    import time
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.path.join(repo, "CardiacQuan"), TF_CPP_MIN_LOG_LEVEL="3")
    path = write_lvquan_mat(tmp_path / "cardiac-dig.mat")
    log, js = tmp_path / "quan.log", tmp_path / "cv.json"
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "train-quan", "--lvquan", str(path), "--folds", "5",
                        "--epochs", "1", "--json", str(js), "--background", "--log", str(log)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "background" in r.stdout and str(log) in r.stdout
    deadline = time.time() + 600
    while time.time() < deadline and not js.exists():
        time.sleep(2)
    text = log.read_text()
    assert js.exists(), text[-2000:]
    assert "LVQuan 5-fold cross-validation" in text and text.lstrip().startswith("[")
