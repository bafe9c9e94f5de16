"""`cardiacquan batch`: discovery, fingerprints, and cohorts on a 2-worker Dask LocalCluster
(small generated studies plus a broken input): cohort and failures tables, outputs identical to
`cardiacquan quantify`, a rerun that recomputes nothing, a worker killed mid-run."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import pytest

from conftest import shared_path
from test_io_dicom import write_series

from cardiacquan import CardiacQuanError
from cardiacquan.batch.cluster import Layout, local_layout, start_client
from cardiacquan.batch.fingerprint import input_fingerprint
from cardiacquan.batch.inputs import Study, discover
from cardiacquan.batch.runner import row_of, run_batch
from cardiacquan.cli import main as cli_main
from cardiacquan.contract import (
    BATCH_STAMP,
    COHORT_COLUMN_NAMES,
    COHORT_CSV,
    COHORT_PARQUET,
    FAILURE_COLUMNS,
    FAILURES_CSV,
    REPORT_HTML,
    STATUS_QUANTIFIED,
    outputs_made,
)
from cardiacquan.io.dicom import read_dicom_cine
from cardiacquan.io.files import read_cine
from cardiacquan.io.volume import write_cine
from cardiacquan.synthetic.phantom import make_phantom

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.path.join(REPO, "CardiacQuan"))
GOOD = ("p0", "p1", "p2", "p3")


def small_study(path, seed):
    """Small on purpose (80^2 px, 3 slices, 6 frames): a few seconds each on a loaded 2-core machine."""
    write_cine(make_phantom(seed=seed, n_frames=6, n_slices=3, size=(80, 80), spacing=2.0).cine, str(path))


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder):
    return {os.path.join(d, n): os.stat(os.path.join(d, n)).st_mtime_ns
            for d, _, names in os.walk(folder) for n in names}


# ---------------------------------------------------------------------------- discovery
def test_discover_files_folders_series_and_manifests(tmp_path):
    root = tmp_path / "data"
    (root / "site1").mkdir(parents=True)
    small_study(root / "site1" / "a.nii.gz", 1)
    shutil.copy(root / "site1" / "a.nii.gz", root / "site1" / "b.nrrd.nii.gz")
    write_series(root / "one_series")                               # the folder is the study
    write_series(root / "two_series" / "x", series=("1.2.3", 1))     # two series in one folder:
    write_series(root / "two_series" / "y", series=("4.5.6", 2))     # one study per series
    for f in os.listdir(root / "two_series" / "y"):
        os.replace(root / "two_series" / "y" / f, root / "two_series" / "x" / f"y_{f}")
    (root / "notes.txt").write_text("not a study")
    out = root / "out"                                               # the output folder is never scanned
    out.mkdir()
    small_study(out / "segmentation.nii.gz", 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("study_id,path\nM-1,data/site1/a.nii.gz\n")
    studies = discover([root, manifest, root / "site1" / "a.nii.gz"], exclude=out)
    ids = [s.study_id for s in studies]
    assert ids[:3] == ["one_series", "site1_a", "site1_b.nrrd"], ids            # sorted by path
    assert ids[-2:] == ["M-1", "a"], ids                                        # then the other inputs, in order
    two = [s for s in studies if s.study_id.startswith("two_series_x_")]
    assert len(two) == 2 and len(ids) == 7 and len(set(i.lower() for i in ids)) == len(ids)
    assert [s.path for s in studies if s.study_id == "one_series"] == [str(root / "one_series")]
    assert {read_dicom_cine(s.path).metadata["series_instance_uid"] for s in two} == {"1.2.3", "4.5.6"}
    assert all(read_dicom_cine(s.path).image.shape[:2] == (4, 3) for s in two)
    assert studies[-2].path == str(root / "site1" / "a.nii.gz")
    # the same file twice gets a second id, never a shared folder
    again = discover([root / "site1" / "a.nii.gz", root / "site1" / "a.nii.gz"])
    assert [s.study_id for s in again] == ["a", "a_2"]


def test_manifest_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,file\nx,y\n")
    with pytest.raises(CardiacQuanError, match="study_id,path"):
        discover([bad])
    bad.write_text("study_id,path\n../evil,x.nii.gz\n")
    with pytest.raises(CardiacQuanError, match="letters, digits"):
        discover([bad])
    bad.write_text("study_id,path\nA,x.nii.gz\na,y.nii.gz\n")
    with pytest.raises(CardiacQuanError, match="more than once"):
        discover([bad])
    with pytest.raises(CardiacQuanError, match="not found"):
        discover([tmp_path / "nothing"])


def test_fingerprint_follows_content_not_time(tmp_path):
    small_study(tmp_path / "a.nii.gz", 1)
    f0 = input_fingerprint(tmp_path / "a.nii.gz")
    os.utime(tmp_path / "a.nii.gz", (1, 1))
    assert input_fingerprint(tmp_path / "a.nii.gz") == f0
    small_study(tmp_path / "a.nii.gz", 2)
    assert input_fingerprint(tmp_path / "a.nii.gz") != f0
    write_series(tmp_path / "s")
    g0 = input_fingerprint(tmp_path / "s")
    name = sorted(os.listdir(tmp_path / "s"))[0]
    data = bytearray((tmp_path / "s" / name).read_bytes())
    data[-1] ^= 1
    (tmp_path / "s" / name).write_bytes(bytes(data))
    assert input_fingerprint(tmp_path / "s") != g0


def test_local_layout_never_oversubscribes():
    for cores in (1, 2, 4, 16, 64):
        lay = local_layout(cores, 256 << 30)
        assert lay.n_workers * lay.threads_per_worker * lay.onnx_threads <= cores
        assert lay.n_workers * lay.threads_per_worker * lay.onnx_threads >= cores // 2
    assert local_layout(16, 4 << 30).n_workers == 2             # memory caps the workers
    assert local_layout(8, 64 << 30, n_workers=2) == Layout(2, 1, 4)


def test_a_worker_that_died_each_time_is_a_failed_row():
    import distributed

    class Dead:
        def result(self):
            raise distributed.KilledWorker("k", types.SimpleNamespace(address="tcp://w:1"), 2)

    row = row_of(Dead(), Study("s1", "/x"))
    assert row["status"] == "failed" and "died each time it was tried (3 times)" in row["error"]
    assert "tcp://w:1" in row["error"]


def test_nothing_to_do_or_outputs_inside_inputs_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["batch", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().startswith("CQ-ERROR no study found")
    write_series(tmp_path / "s1")
    assert cli_main(["batch", str(tmp_path / "s1"), "-o", str(tmp_path / "s1" / "..")]) == 2   # OUT/s1 = the input
    assert "would be inside its input" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_progress_bar_counts_rate_eta_and_summary():
    import io
    from cardiacquan.batch.progress import BatchProgress
    stream = io.StringIO()
    p = BatchProgress(3, stream=stream, bar=True)
    p.update({"study_id": "a", "status": "quantified"})
    p.update({"study_id": "b", "status": "failed", "error": "not a cine"})
    p.close()
    text = stream.getvalue()
    assert "2/3" in text and "study" in text and "1 quantified, 0 reused, 1 failed" in text
    assert "failed: b: not a cine" in text
    assert p.summary().startswith("batch: 3 studies: 1 quantified, 0 reused, 1 failed in ")
    lines = io.StringIO()
    q = BatchProgress(2, stream=lines, bar=False)                  # not a terminal: protocol lines
    q.update({"study_id": "a", "status": "reused"})
    assert lines.getvalue().startswith("CQ-PROGRESS 1 2 a reused; 0 quantified, 1 reused, 0 failed; ")
    assert "studies/min, ETA" in lines.getvalue()


def test_sunnybrook_folder_is_one_study():
    folder = shared_path("sunnybrook", "dicoms", "SCD0000101")
    studies = discover([folder])
    assert [(s.study_id, s.path) for s in studies] == [("SCD0000101", os.path.abspath(folder))]


# ---------------------------------------------------------------------------- on Dask
@pytest.fixture(scope="module")
def cluster():
    client, cluster, _ = start_client(layout=Layout(2, 1, 1), allowed_failures=2)
    yield client, cluster
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    for k, sid in enumerate(GOOD):
        small_study(d / f"{sid}.nii.gz", 20 + k)
    (d / "broken.nii.gz").write_bytes(b"not an image")
    return d


@pytest.fixture(scope="module")
def first_run(cluster, cohort, tmp_path_factory):
    """The command as a user runs it, submitting to the module's cluster by address."""
    client, lc = cluster
    out = tmp_path_factory.mktemp("batch") / "out"
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "batch", str(cohort), "-o", str(out),
                        "--scheduler", lc.scheduler_address], env=ENV, capture_output=True, text=True, timeout=300)
    return r, out


def test_batch_tables_and_failures(first_run, cohort):
    r, out = first_run
    assert r.returncode == 1, r.stderr[-3000:]                    # 1: some study failed, the others are done
    assert "CQ-PROGRESS 5 5" in r.stderr and "4 quantified, 0 reused, 1 failed" in r.stderr.splitlines()[-1]
    rows = read_rows(out / COHORT_CSV)
    assert list(rows[0]) == list(COHORT_COLUMN_NAMES)
    by_id = {row["study_id"]: row for row in rows}
    assert sorted(by_id) == sorted(GOOD + ("broken",))
    for sid in GOOD:
        row = by_id[sid]
        assert row["status"] == STATUS_QUANTIFIED and row["input"] == str(cohort / f"{sid}.nii.gz")
        summary = json.loads((out / sid / "summary.json").read_text())
        assert float(row["ef_percent"]) == summary["volumes"]["ef_percent"] and 20 < float(row["ef_percent"]) < 80
        assert int(row["ed_frame"]) == summary["ed_frame"] and int(row["n_slices"]) == 3
        assert float(row["mid_ed_cavity_area_mm2"]) == summary["mid_slice_ed_indices"]["A1"]
        used = ("seg_model.onnx@", "seg_model_160.onnx@", "quan_net.onnx@")   # the bundled files' hashes
        assert all(m in row["model_versions"] for m in used) and row["software_version"]
        assert set(os.listdir(out / sid)) == set(outputs_made()) | {BATCH_STAMP}
    failures = read_rows(out / FAILURES_CSV)
    assert [list(f) for f in failures] == [list(FAILURE_COLUMNS)] and len(failures) == 1
    assert failures[0]["study_id"] == "broken" and "cannot read" in failures[0]["error"]
    assert by_id["broken"]["status"] == "failed" and by_id["broken"]["error"] == failures[0]["error"]
    import pyarrow.parquet as pq
    table = pq.read_table(out / COHORT_PARQUET)
    assert table.column_names == list(COHORT_COLUMN_NAMES) and table.num_rows == 5
    assert str(table.schema.field("ef_percent").type) == "double"


def test_batch_outputs_are_identical_to_quantify(first_run, cohort, tmp_path):
    _, out = first_run
    for sid in GOOD:
        single = tmp_path / sid
        assert cli_main(["quantify", str(cohort / f"{sid}.nii.gz"), "-o", str(single)]) == 0
        for name in outputs_made():
            a, b = (single / name).read_bytes(), (out / sid / name).read_bytes()
            if name == REPORT_HTML:   # the page says when it was written
                a, b = (re.sub(rb"written \d{4}-\d\d-\d\d \d\d:\d\d UTC", b"", x) for x in (a, b))
            assert a == b, f"{sid}/{name}"


def test_rerun_recomputes_nothing_then_only_what_changed(first_run, cluster, cohort, capsys, monkeypatch):
    _, out = first_run
    _, lc = cluster
    before = snapshot(out)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", lc.scheduler_address)
    assert cli_main(["batch", str(cohort), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "0 quantified, 4 reused, 1 failed" in err.splitlines()[-1]
    after = snapshot(out)
    study_files = {p for p in before if os.path.dirname(os.path.dirname(p)) == str(out)}
    assert all(after[p] == before[p] for p in study_files)        # no study output touched
    assert {row["status"] for row in read_rows(out / COHORT_CSV) if row["study_id"] != "broken"} == {"reused"}
    # a changed input is quantified again, the rest reused; the table lists them all
    small_study(cohort / "p1.nii.gz", 99)
    try:
        assert cli_main(["batch", str(cohort), "-o", str(out)]) == 1
        assert "1 quantified, 3 reused, 1 failed" in capsys.readouterr().err.splitlines()[-1]
        status = {row["study_id"]: row["status"] for row in read_rows(out / COHORT_CSV)}
        assert status == {"p0": "reused", "p1": "quantified", "p2": "reused", "p3": "reused", "broken": "failed"}
    finally:
        small_study(cohort / "p1.nii.gz", 21)


def test_the_slicer_console_snippet_runs_a_batch_in_the_background(first_run, cluster, cohort):
    """docs/slicer-module.md: the engine-process helper starts `cardiacquan batch`; nothing blocks."""
    from CardiacQuanLib.engine_process import EngineProcess, enginePython
    _, out = first_run
    _, lc = cluster
    job = EngineProcess([enginePython(), "-m", "cardiacquan", "batch", str(cohort), "-o", str(out),
                         "--scheduler", lc.scheduler_address], env=ENV).start()
    lines, deadline = [], time.time() + 120
    while not job.finished() and time.time() < deadline:
        lines += [line for _, line in job.events()]
        time.sleep(0.2)
    lines += [line for _, line in job.events()]
    assert job.returncode == 1 and any(line.startswith("CQ-PROGRESS 5 5") for line in lines), lines
    assert re.match(r"batch: 5 studies: \d quantified, \d reused, 1 failed in ", lines[-1]), lines[-1]


def test_without_dask_the_command_says_what_to_install(cohort, tmp_path):
    code = ("import sys; sys.modules['distributed'] = None; from cardiacquan.cli import main; "
            f"sys.exit(main(['batch', {str(cohort)!r}, '-o', {str(tmp_path / 'o')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("CQ-ERROR cardiacquan batch needs Dask")
    assert "cardiacquan[batch]" in r.stderr


def test_tables_without_pyarrow(tmp_path, monkeypatch):
    import cardiacquan.batch.cohort as cohort_module
    (tmp_path / COHORT_PARQUET).write_text("stale")
    monkeypatch.setattr(cohort_module, "import_pyarrow", lambda: None)
    row = cohort_module.failed_row("x", "/in/x", "bad\ninput")
    written = cohort_module.write_tables(str(tmp_path), [row])
    assert [os.path.basename(w) for w in written] == [COHORT_CSV, FAILURES_CSV]
    assert not (tmp_path / COHORT_PARQUET).exists()                # a stale table never outlives its csv
    assert read_rows(tmp_path / FAILURES_CSV) == [{"study_id": "x", "input": "/in/x", "error": "bad input"}]


def test_a_worker_killed_mid_run_loses_no_study(cluster, cohort, tmp_path):
    client, _ = cluster
    studies = [Study(sid, str(cohort / f"{sid}.nii.gz")) for sid in GOOD]
    settings = {"slices": "all", "geometry_only": False, "figures": False, "backend": "onnxruntime",
                "software_version": "test", "models": "", "threads": 1}
    killed = []

    def kill_a_busy_worker(row, pending):
        if killed or not pending:
            return
        busy = {w: keys for w, keys in client.processing().items() if keys}
        if busy:
            worker, keys = sorted(busy.items())[0]
            pid = client.run(os.getpid, workers=[worker])[worker]
            os.kill(pid, signal.SIGKILL)
            killed.append((worker, keys))

    rows = run_batch(client, studies, str(tmp_path), settings, retries=1, on_row=kill_a_busy_worker)
    assert killed, "no worker was busy after the first study"
    assert sorted(r["study_id"] for r in rows) == sorted(GOOD)
    assert all(r["status"] == STATUS_QUANTIFIED for r in rows), rows
    for sid in GOOD:
        assert read_cine(tmp_path / sid / "segmentation.nii.gz").n_frames == 6
