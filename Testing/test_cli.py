"""The command line as a user runs it: outputs, contract columns, clear errors, inputs untouched."""
import csv
import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cardiacquan.io.volume import write_cine, write_labels
from cardiacquan.synthetic.phantom import make_phantom
from cardiacquan.contract import INDICES_COLUMN_NAMES as CSV_COLUMNS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.path.join(REPO, "CardiacQuan"), TF_CPP_MIN_LOG_LEVEL="3")


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "cardiacquan", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ph")
    ph = make_phantom(seed=4, n_frames=12, n_slices=3, spacing=(1.2, 1.2))
    cine, labels = str(d / "cine.nii.gz"), str(d / "labels.nii.gz")
    write_cine(ph.cine, cine)
    write_labels(ph.labels, ph.cine, labels)
    return ph, cine, labels, d


def test_quantify_given_labels_writes_the_contract(phantom_files, tmp_path):
    ph, cine, labels, _ = phantom_files
    before = (sha(cine), sha(labels))
    r = run("quantify", cine, "-o", tmp_path / "out", "--labels", labels)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (sha(cine), sha(labels)) == before
    out = tmp_path / "out"
    for name in ("indices.csv", "summary.json", "segmentation.nii.gz", "sectors.nii.gz", "results.npz",
                 "phase_curve.png", "mid_slice_ed_es.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "indices.csv")))
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert len(rows) == 3 * 12
    # exact truth of the phantom, through the whole file round trip
    for r_ in rows:
        t, z = int(r_["frame"]), int(r_["slice"])
        assert abs(float(r_["cavity_area_mm2"]) - ph.truth["cavity_area"][t, z]) < 0.02 * ph.truth["cavity_area"][t, z] + 15.0
        assert int(r_["phase"]) == ph.truth["phase"][t, z]
        for k in range(6):
            assert abs(float(r_[f"rwt{k + 1}_mm"]) - ph.truth["rwt"][t, z, k]) < 0.6
    pos = sorted({float(r_["slice_position_mm"]) for r_ in rows})
    np.testing.assert_allclose(np.diff(pos), 10.0, atol=0.05)
    s = json.loads((out / "summary.json").read_text())
    assert s["segmented_by"] == "given labels"
    assert s["ed_frame"] == int(np.argmax(ph.truth["cavity_area"].sum(axis=1)))
    assert s["volumes"]["ef_percent"] > 20
    assert s["software_version"]


def test_quantify_mid_slice_only(phantom_files, tmp_path):
    _, cine, labels, _ = phantom_files
    r = run("quantify", cine, "-o", tmp_path / "o", "--labels", labels, "--slices", "mid", "--no-figures")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "o" / "indices.csv")))
    assert {r_["slice"] for r_ in rows} == {"1"} and len(rows) == 12


def test_quantify_with_network_on_a_phantom(tmp_path):
    ph = make_phantom(seed=2, n_frames=8, n_slices=1, spacing=1.5)
    src = tmp_path / "c.nii.gz"
    write_cine(ph.cine, str(src))
    r = run("quantify", src, "-o", tmp_path / "o")
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["segmented_by"] == "network"
    assert "seg_model.keras" in s["model"]
    rows = list(csv.DictReader(open(tmp_path / "o" / "indices.csv")))
    areas = np.array([float(r_["cavity_area_mm2"]) for r_ in rows])
    truth = ph.truth["cavity_area"][:, 0]
    assert np.mean(np.abs(areas - truth) / truth) < 0.12
    assert "CQ-PROGRESS" in r.stderr


@pytest.mark.parametrize("case", ["nan", "single_frame", "missing", "not_an_image", "bad_labels", "bad_slice"])
def test_bad_input_gives_one_clear_error_line(case, tmp_path, phantom_files):
    ph, cine, labels, _ = phantom_files
    args = ["quantify", cine, "-o", tmp_path / "o"]
    if case == "nan":
        c = make_phantom(seed=1, n_frames=3).cine
        c.image[1, 0, 10, 10] = np.nan
        src = tmp_path / "nan.seq.nrrd"  # NIfTI through ITK turns NaN into 0; NRRD keeps it
        write_cine(c, str(src))
        args[1] = src
    elif case == "single_frame":
        c = make_phantom(seed=1, n_frames=2).cine
        c = dataclasses.replace(c, image=c.image[:1], times_ms=c.times_ms[:1])
        src = tmp_path / "one.nii.gz"
        write_cine(c, str(src))
        args[1] = src
    elif case == "missing":
        args[1] = tmp_path / "nope.nii.gz"
    elif case == "not_an_image":
        src = tmp_path / "notes.nii.gz"
        src.write_text("hello")
        args[1] = src
    elif case == "bad_labels":
        small = make_phantom(seed=1, n_frames=2).labels
        lab = tmp_path / "l.nii.gz"
        write_labels(small, make_phantom(seed=1, n_frames=2).cine, str(lab))
        args += ["--labels", lab]
    elif case == "bad_slice":
        args += ["--labels", labels, "--slices", "7"]
    r = run(*args, timeout=300)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("CQ-ERROR ") and len(last) > 20, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists(), "a failed run leaves no (empty) output folder behind"


def test_source_cell_names_the_common_source_then_the_exceptions():
    from cardiacquan.io.results import _source_summary
    assert _source_summary(["geometry"] * 11) == "geometry"
    src = ["geometry"] * 6 + ["fusion 0.4*network+0.6*geometry"] + ["geometry"] * 4
    assert _source_summary(src) == "geometry (RWT2: fusion 0.4*network+0.6*geometry)"
    tie = ["network"] * 4 + ["geometry"] * 4 + ["fusion 0.5*network+0.5*geometry"] * 3
    assert _source_summary(tie).startswith("network (")      # ties: first in index order, every run


def test_an_output_never_replaces_an_input(phantom_files, tmp_path):
    ph, cine, labels, _ = phantom_files
    src = tmp_path / "x.nii.gz"
    src.write_bytes(open(cine, "rb").read())
    before = sha(src)
    r = run("segment", src, "-o", src)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("CQ-ERROR the output")
    (tmp_path / "d").mkdir()
    inside = tmp_path / "d" / "segmentation.nii.gz"          # an input named like an output, in -o
    inside.write_bytes(open(cine, "rb").read())
    r = run("quantify", inside, "-o", tmp_path / "d", "--labels", labels)
    assert r.returncode == 2 and "would replace the input" in r.stderr
    assert sha(src) == before and sha(inside) == before


def test_an_unwritable_output_fails_before_any_work(phantom_files, tmp_path):
    ph, cine, labels, _ = phantom_files
    (tmp_path / "afile").write_text("x")
    for args in (["quantify", cine, "-o", tmp_path / "afile" / "out", "--labels", labels],
                 ["segment", cine, "-o", tmp_path / "afile" / "seg.nii.gz"],
                 ["segment", cine, "-o", tmp_path / "seg.png"]):
        r = run(*args, timeout=120)
        assert r.returncode == 2, r.stderr[-1000:]
        assert "Traceback" not in r.stderr and "CQ-PROGRESS" not in r.stderr, "refused before any work"
        assert r.stderr.strip().splitlines()[-1].startswith("CQ-ERROR ")


def test_a_rerun_without_figures_removes_the_earlier_figures(phantom_files, tmp_path):
    ph, cine, labels, _ = phantom_files
    assert run("quantify", cine, "-o", tmp_path / "o", "--labels", labels, "--geometry-only").returncode == 0
    assert (tmp_path / "o" / "phase_curve.png").exists()
    assert run("quantify", cine, "-o", tmp_path / "o", "--labels", labels, "--geometry-only",
               "--no-figures").returncode == 0
    assert not (tmp_path / "o" / "phase_curve.png").exists() and not (tmp_path / "o" / "mid_slice_ed_es.png").exists()


def _cylinder_stack(n_slices=7, n_frames=3, n=64):
    """Labels of a cylinder LV (same areas on every slice), 10 mm apart, the last slice an apical
    cap of solid myocardium; the cine of it, and the same with the 30 mm slice left out."""
    import dataclasses
    from cardiacquan.io.cine import Cine
    rr, cc = np.mgrid[0:n, 0:n]
    d = np.hypot(rr - 32, cc - 32)
    lab = np.zeros((n_frames, n_slices, n, n), np.uint8)
    for t in range(n_frames):
        for z in range(n_slices - 1):
            lab[t, z][d < 18] = 2
            lab[t, z][d < 12 - 2 * t] = 3
            lab[t, z][np.hypot(rr - 32, cc - 6) < 5] = 1
        lab[t, n_slices - 1][d < 10] = 2
    cine = Cine(np.random.default_rng(0).random(lab.shape).astype(np.float32), (1.0, 1.0),
                np.outer(np.arange(n_slices) * 10.0, [0.0, 0.0, 1.0]), direction=np.eye(3))
    keep = [z for z in range(n_slices) if z != 3]
    part = dataclasses.replace(cine, image=cine.image[:, keep], origins=cine.origins[keep])
    return d, cine, lab, part, lab[:, keep]


def test_volumes_keep_the_slab_of_a_missing_slice_and_count_the_apical_cap():
    """Each slice counts for half the distance to each neighbour: a stack the reader left a
    slice out of keeps that slice's slab (the median spacing for every slice lost it, -17 to
    -21 % of EDV); solid myocardium on a slice without cavity is in the mass."""
    from cardiacquan.measure.volumes import slice_slabs_mm
    from cardiacquan.pipeline import quantify
    np.testing.assert_allclose(slice_slabs_mm([0, 10, 20, 40, 50]), [10, 10, 15, 15, 10])
    np.testing.assert_allclose(slice_slabs_mm([0, 10, 20, 30]), [10, 10, 10, 10])
    d, cine, lab, part, part_lab = _cylinder_stack()
    whole = quantify(cine, labels=lab, use_quan_net=False)
    full = whole.volumes
    res = quantify(part, labels=part_lab, use_quan_net=False)
    vol = res.volumes
    assert vol["slice_spacing_mm"] == 10 and vol["slice_slab_mm"] == [10, 10, 15, 15, 10, 10]
    assert vol["edv_ml"] == pytest.approx(full["edv_ml"], rel=0.002)       # was -1/6 with the median rule
    assert vol["lv_mass_ed_g"] == pytest.approx(full["lv_mass_ed_g"], rel=0.002)
    assert any("unevenly spaced" in w for w in res.warnings)
    cap_ml = (d < 10).sum() * 10.0 / 1000.0
    ring_ml = 6 * ((d < 18) & ~(d < 12)).sum() * 10.0 / 1000.0
    assert full["myocardium_volume_ml"][0] == pytest.approx(ring_ml + cap_ml, abs=0.01)
    assert full["lv_mass_ed_g"] == pytest.approx(1.05 * (ring_ml + cap_ml), abs=0.1)
    assert any("apical cap" in w for w in whole.warnings)


def test_report_of_an_uneven_stack_says_what_its_files_cannot_hold(tmp_path):
    """Rows of a slice without LV have the heart's phase (one ED/ES for every slice) and no
    mirroring flag; the mid slice's
    own ED/ES are named; label files that cannot keep uneven slice positions say so in the
    summary, not only on stderr."""
    from cardiacquan.pipeline import quantify
    from cardiacquan.io.results import write_outputs
    _, _, _, cine, lab = _cylinder_stack()
    res = quantify(cine, labels=lab, use_quan_net=False)
    write_outputs(res, tmp_path / "out", figures=True)
    with open(tmp_path / "out" / "indices.csv") as f:
        rows = list(csv.DictReader(f))
    cap = [r for r in rows if r["slice"] == str(cine.n_slices - 1)]
    assert cap and all(r["phase"] == str(res.phase[int(r["frame"])]) and r["mirrored"] == "" and r["valid"] == "0"
                       for r in cap)
    assert all(r["phase"] in ("0", "1") and r["mirrored"] in ("0", "1") for r in rows if r["valid"] == "1")
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    mid = s["mid_slice"]
    assert s["mid_slice_ed_frame"] == res.per_slice[mid].ed and s["mid_slice_es_frame"] == res.per_slice[mid].es
    assert any(w.startswith("segmentation.nii.gz, sectors.nii.gz: slices are unevenly spaced") for w in s["warnings"])
    assert s["volumes"]["slice_slab_mm"] == [10, 10, 15, 15, 10, 10]


def test_volumes_skip_frames_with_a_gap_in_the_stack_and_no_lv_is_an_error(phantom_files):
    from cardiacquan import CardiacQuanError
    from cardiacquan.pipeline import quantify
    ph = phantom_files[0]
    full = quantify(ph.cine, labels=ph.labels, use_quan_net=False)
    assert all(v is not None for v in full.volumes["cavity_volume_ml"])
    lab = ph.labels.copy()
    es = full.volumes["es_frame"]
    lab[es, 1][lab[es, 1] == 3] = 2            # the mid slice's cavity lost at ES (an erased mask)
    gap = quantify(ph.cine, labels=lab, use_quan_net=False)
    vol = gap.volumes
    assert vol["cavity_volume_ml"][es] is None and vol["myocardium_volume_ml"][es] is None
    # one ED/ES for the heart from the slices with a cavity in every frame: the gap does not move ES,
    # the volume there is unknown, so EDV/ESV/EF are not given rather than wrong
    assert gap.es_frame == es and vol["es_frame"] == es and gap.phase_curve["slices"] == [0, 2]
    assert vol["esv_ml"] is None and vol["ef_percent"] is None and vol["edv_ml"] == full.volumes["edv_ml"]
    assert any("volume not computed" in w for w in gap.warnings)
    assert any("EDV/ESV/SV/EF not computed" in w for w in gap.warnings)
    apex = ph.labels.copy()                     # an end slice losing its cavity is physiology, not a gap
    apex[es, 0][apex[es, 0] == 3] = 2
    assert quantify(ph.cine, labels=apex, use_quan_net=False).volumes["cavity_volume_ml"][es] is not None
    with pytest.raises(CardiacQuanError, match="no LV cavity in any frame"):
        quantify(ph.cine, labels=np.where(ph.labels == 3, 0, ph.labels), use_quan_net=False)


@pytest.mark.parametrize("args, says", [
    (["train-seg", "--batch", "0"], "--batch: 0 must be at least 1"),
    (["train-seg", "--max-minutes", "-3"], "--max-minutes: -3 must be greater than 0"),
    (["train-quan", "--phantoms", "x,1"], "--phantoms"),
    (["train-quan", "--folds", "1", "--lvquan", "x.mat"], "--folds: 1 must be at least 2"),
    (["train-seg", "--out", "model.txt"], "must end with .keras"),
    (["train-quan", "--out", "/proc/nowhere/q.keras", "--epochs", "1"], "cannot write in"),
    (["train-seg", "--packed", "BAD", "--out", "m.keras", "--steps", "2"], "not a packed ACDC file"),
    (["train-quan", "--data", "BAD", "--out", "q.keras", "--epochs", "1"], "not a prepared data file"),
    (["train-quan", "--prepare-only", "--predict-fn", "no.such:fn", "--data", "NEW"], "cannot import no.such"),
    (["evaluate-seg"], "give --acdc, --sunnybrook and/or --sunnybrook-endo"),
    (["evaluate-seg", "--model", "BAD", "--acdc", "."], "not a Keras model file"),
    (["evaluate", "--set", "phantom", "--model", "SEG"], "beside it"),
])
def test_training_and_evaluation_commands_refuse_bad_arguments_before_any_work(args, says, tmp_path):
    from cardiacquan.models import model_dir as default_model_dir
    bundled = {p.name: sha(p) for p in default_model_dir().iterdir() if p.is_file()}
    (tmp_path / "bad.npz").write_text("not numpy")
    swap = {"BAD": tmp_path / "bad.npz", "NEW": tmp_path / "new.npz", "SEG": default_model_dir() / "seg_model.keras"}
    r = subprocess.run([sys.executable, "-m", "cardiacquan", *[str(swap.get(a, a)) for a in args]], env=ENV,
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("CQ-ERROR ") and says in last, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert {p.name: sha(p) for p in default_model_dir().iterdir() if p.is_file()} == bundled


def test_train_quan_writes_to_the_working_folder_unless_told_otherwise():
    from cardiacquan.cli import build_parser
    args = build_parser().parse_args(["train-quan"])
    assert args.out == "quan_net.keras" and args.phantoms == (60, 10, 10)
