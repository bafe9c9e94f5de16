"""Runs the bad-input corpus (Testing/bad_inputs.py) through the command line, as a user would.

For every case: the exit code (0 or 2), never a traceback, a refusal ends with exactly one
`CQ-ERROR` line that says what the case expects, inputs are byte-for-byte unchanged, the
results of an earlier run in the output folder are intact after a refusal, and no temporary
folder stays behind.  The counts by class and outcome are printed.

Speed: each case is `cardiacquan.cli.main(argv)` (what `python -m cardiacquan` runs) in one of
two worker processes that import the engine once, with stderr captured; an exception escaping
main() is recorded as the traceback a user would see.  Process start-up would otherwise be
most of the corpus' time.  The earlier-results run goes through a real `python -m cardiacquan`.
"""
import concurrent.futures
import contextlib
import hashlib
import io
import multiprocessing
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import traceback
from collections import Counter

import pytest

from bad_inputs import CLASSES, build
from conftest import shared_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.path.join(REPO, "CardiacQuan"), TF_CPP_MIN_LOG_LEVEL="3")
PARTIAL = ".cardiacquan-partial-"


def _cli(args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cardiacquan", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _main_in_worker(args):
    """(exit code, stdout, stderr) of cardiacquan.cli.main(args), run in a worker process."""
    from cardiacquan import cli                      # imported once per worker (sys.path from the parent)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in args])
        except SystemExit as e:                      # argparse usage errors
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc(file=err)
            rc = 1
    return rc, out.getvalue(), err.getvalue()


class _Result:
    def __init__(self, rc, stdout, stderr):
        self.returncode, self.stdout, self.stderr = rc, stdout, stderr


def _tree(path):
    """{relative path: sha256 | 'dir' | mode} of a file or folder (None when absent)."""
    if not os.path.lexists(path):
        return None
    if os.path.isfile(path):
        return {".": hashlib.sha256(open(path, "rb").read()).hexdigest()}
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = "dir"
        for f in files:
            full = os.path.join(root, f)
            out[os.path.relpath(full, path)] = (hashlib.sha256(open(full, "rb").read()).hexdigest(),
                                               stat.S_IMODE(os.stat(full).st_mode))
    return out


def _prepare(case, out):
    if case.prepare == "readonly-summary":
        os.chmod(os.path.join(out, "summary.json"), 0o444)
    elif case.prepare in ("folder-summary", "folder-indices"):
        name = "summary.json" if case.prepare == "folder-summary" else "indices.csv"
        os.remove(os.path.join(out, name))
        os.makedirs(os.path.join(out, name, "kept"))
    elif case.prepare == "readonly-segment":
        target = next(a for a in case.args if str(a).endswith("ro_labels.nii.gz"))
        open(target, "wb").write(b"earlier labels")
        os.chmod(target, 0o444)


def _run(case, work, earlier, workers):
    out = os.path.join(work, "out")
    os.makedirs(work)
    if case.earlier and "OUT" in case.args:
        shutil.copytree(earlier, out)
    _prepare(case, out)
    args = [out if a == "OUT" else a for a in case.args]
    target = args[args.index("-o") + 1] if "-o" in args else None
    before_in = {i: _tree(i) for i in case.inputs}
    before_out = _tree(target) if target else None
    r = _Result(*workers.submit(_main_in_worker, args).result(timeout=300))
    problems = []
    if "Traceback" in r.stderr or "Traceback" in r.stdout:
        problems.append("traceback:\n" + r.stderr[-1500:])
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("CQ-ERROR")]
    last = (r.stderr.strip().splitlines() or [""])[-1]
    if case.expect == "refuse":
        if r.returncode != 2:
            problems.append(f"exit code {r.returncode}, expected 2 (refusal); stderr tail: {r.stderr[-600:]}")
        if len(errors) != 1 or not last.startswith("CQ-ERROR"):
            problems.append(f"{len(errors)} CQ-ERROR lines (expected one, last): {errors}")
        elif case.pattern and not re.search(case.pattern, errors[0]):
            problems.append(f"CQ-ERROR does not say /{case.pattern}/: {errors[0]}")
        if target and _tree(target) != before_out:
            problems.append(f"the output {target} changed although the run was refused")
    else:
        if r.returncode != 0:
            problems.append(f"exit code {r.returncode}, expected 0: {(errors or [r.stderr[-600:]])[-1]}")
        else:
            try:
                summary = json.loads(open(os.path.join(target, "summary.json")).read())
                if case.pattern and not any(re.search(case.pattern, w) for w in summary["warnings"]):
                    problems.append(f"no summary.json warning says /{case.pattern}/: {summary['warnings']}")
                if case.check:
                    case.check(summary)
            except (OSError, ValueError, AssertionError, KeyError) as e:
                problems.append(f"summary.json: {e}")
    if target and os.path.isdir(target) and any(n.startswith(PARTIAL) for n in os.listdir(target)):
        problems.append("a temporary output folder stayed behind")
    for i, h in before_in.items():
        if _tree(i) != h:
            problems.append(f"the input {i} changed")
    return r, problems


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    cases = build(root / "inputs")
    earlier = root / "earlier"
    nii = str(root / "inputs" / "cine.nii")
    r = _cli(["quantify", nii, "-o", earlier, "--labels", str(root / "inputs" / "labels.nii.gz"), "--no-figures"])
    assert r.returncode == 0, r.stderr[-2000:]
    runnable = [(k, c) for k, c in enumerate(cases) if not c.skip]
    env = {k: os.environ.get(k) for k in ("TF_CPP_MIN_LOG_LEVEL",)}
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) \
                as workers, concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            results = dict(zip([k for k, _ in runnable], pool.map(
                lambda kc: _run(kc[1], str(root / "runs" / f"{kc[0]:03d}"), str(earlier), workers), runnable)))
    finally:
        for k, v in env.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return cases, results


def test_the_corpus_covers_every_class(corpus):
    cases, _ = corpus
    assert len(cases) >= 80, len(cases)
    assert len({c.name for c in cases}) == len(cases), "case names repeat"
    counts = Counter(c.cls for c in cases)
    assert set(counts) == set(CLASSES), counts
    assert all(c.expect in ("ok", "refuse") for c in cases)


def test_every_case_has_its_expected_outcome(corpus, capsys):
    cases, results = corpus
    failed = [f"[{c.cls}] {c.name}: " + "; ".join(results[k][1]) for k, c in enumerate(cases) if k in results and results[k][1]]
    table = Counter((c.cls, c.expect, "skipped" if c.skip else ("FAILED" if results[k][1] else "as expected"))
                    for k, c in enumerate(cases))
    lines = [f"bad-input corpus: {len(cases)} cases, {sum(1 for c in cases if c.skip)} skipped, "
             f"{len(failed)} failed; " + ", ".join(f"{o} {sum(n for (_, e, _), n in table.items() if e == o)}"
                                                  for o in ("ok", "refuse"))]
    for cls in CLASSES:
        lines.append(f"  {cls:16s} " + ", ".join(f"{e} {s}: {n}" for (c, e, s), n in sorted(table.items()) if c == cls))
    with capsys.disabled():                  # the counts show in every run's log, CI's too
        print("\n" + "\n".join(lines))
    assert not failed, "\n".join(failed)


def test_the_real_study_cases_ran(corpus):
    shared_path("sunnybrook", "dicoms", "SCD0000101")
    cases, results = corpus
    real = [k for k, c in enumerate(cases) if c.name.startswith("Sunnybrook")]
    assert real and all(k in results for k in real)
