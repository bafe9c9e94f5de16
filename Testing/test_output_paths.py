"""All or nothing: a failed run leaves the earlier results in OUTDIR exactly as they were."""
import hashlib
import os

import pytest

from cardiacquan import CardiacQuanError
from cardiacquan.io import output_paths, results
from cardiacquan.io.output_paths import prepare_output_dir, staged_output_dir
from cardiacquan.pipeline import quantify
from cardiacquan.synthetic.phantom import make_phantom


def _state(folder):
    return {n: hashlib.sha256(open(os.path.join(folder, n), "rb").read()).hexdigest() if os.path.isfile(os.path.join(folder, n))
            else "dir" for n in sorted(os.listdir(folder))}


@pytest.fixture()
def earlier(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for n in ("indices.csv", "summary.json", "segmentation.nii.gz", "phase_curve.png"):
        (out / n).write_text(f"earlier {n}")
    return out


def test_an_error_while_writing_changes_nothing(earlier):
    before = _state(earlier)
    with pytest.raises(RuntimeError):
        with staged_output_dir(earlier) as stage:
            (stage / "indices.csv").write_text("new")
            raise RuntimeError("disk full")
    assert _state(earlier) == before


def test_a_failed_move_puts_the_earlier_results_back(earlier, monkeypatch):
    before = _state(earlier)
    real = os.replace

    def failing(src, dst):
        if str(dst).endswith(os.path.join("out", "summary.json")) and \
                os.path.basename(os.path.dirname(str(src))).startswith(".cardiacquan-partial-"):
            raise OSError(28, "No space left on device")
        return real(src, dst)
    monkeypatch.setattr(output_paths.os, "replace", failing)
    with pytest.raises(CardiacQuanError, match="earlier results there are unchanged"):
        with staged_output_dir(earlier, remove=("phase_curve.png",)) as stage:
            for n in ("indices.csv", "segmentation.nii.gz", "summary.json"):
                (stage / n).write_text("new")
    monkeypatch.setattr(output_paths.os, "replace", real)
    assert _state(earlier) == before


def test_complete_outputs_replace_the_earlier_ones(earlier):
    with staged_output_dir(earlier, remove=("phase_curve.png",)) as stage:
        (stage / "indices.csv").write_text("new")
    assert (earlier / "indices.csv").read_text() == "new"
    assert not (earlier / "phase_curve.png").exists()
    assert (earlier / "summary.json").read_text() == "earlier summary.json"
    assert [n for n in os.listdir(earlier) if n.startswith(".")] == []


def test_write_outputs_failing_late_leaves_the_folder_as_it_was(earlier, monkeypatch):
    ph = make_phantom(seed=2, n_frames=4, n_slices=1, size=(64, 64), spacing=2.5)
    result = quantify(ph.cine, labels=ph.labels, use_quan_net=False)
    before = _state(earlier)

    def broken(result, outdir):
        raise CardiacQuanError("cannot draw")
    monkeypatch.setattr(results, "write_figures", broken)
    with pytest.raises(CardiacQuanError, match="cannot draw"):
        results.write_outputs(result, earlier)
    assert _state(earlier) == before


def test_every_output_name_is_checked_before_any_work(earlier):
    os.chmod(earlier / "summary.json", 0o444)
    with pytest.raises(CardiacQuanError, match="summary.json is read-only"):
        prepare_output_dir(earlier, create=False)
    os.chmod(earlier / "summary.json", 0o644)
    os.remove(earlier / "indices.csv")
    (earlier / "indices.csv").mkdir()
    with pytest.raises(CardiacQuanError, match="indices.csv is a folder"):
        prepare_output_dir(earlier, create=False)
