"""Throughput of `cardiacquan batch`: studies per minute one at a time in one process, and on a
Dask LocalCluster in several worker layouts; per-study cost cold (a fresh `cardiacquan quantify`
process) vs warm (models loaded); peak resident memory per worker.

Studies: generated phantom cines of realistic size (12 slices x 20 frames at 256^2, 1.4 mm pixels,
written as NIfTI) plus the real Sunnybrook study when ../shared/data is present.

    .venv/bin/python scripts/benchmark_batch.py [--studies 6] [--layouts 2x1x1,1x1x2,1x2x1]

A layout WxTxO is W worker processes x T Dask threads each, ONNX Runtime O threads per worker.
Prints a Markdown table (the README's "Cohorts" figures come from it).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "CardiacQuan"))

from cardiacquan.batch.cluster import Layout, machine, start_client  # noqa: E402
from cardiacquan.batch.inputs import Study  # noqa: E402
from cardiacquan.batch.runner import run_batch  # noqa: E402
from cardiacquan.batch.task import preload_models, set_inference_threads  # noqa: E402
from cardiacquan.contract import STATUS_QUANTIFIED  # noqa: E402
from cardiacquan.io.volume import write_cine  # noqa: E402
from cardiacquan.study import quantify_study  # noqa: E402
from cardiacquan.synthetic.phantom import make_phantom  # noqa: E402

SUNNYBROOK = os.path.join(HERE, "..", "..", "shared", "data", "sunnybrook", "dicoms", "SCD0000101")
SETTINGS = {"slices": "all", "geometry_only": False, "figures": True, "backend": "onnxruntime",
            "software_version": "benchmark", "models": ""}


def make_studies(folder, n, write=True):
    studies = []
    for k in range(n):
        path = os.path.join(folder, f"phantom{k}.nii.gz")
        if write:
            write_cine(make_phantom(seed=100 + k, n_frames=20, n_slices=12, size=(256, 256), spacing=1.4).cine, path)
        studies.append(Study(f"phantom{k}", path))
    if os.path.isdir(SUNNYBROOK):
        studies.append(Study("SCD0000101", os.path.abspath(SUNNYBROOK)))
    return studies


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds():
    """CPU time (user + system) of this process so far: all its threads, ONNX Runtime's included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_process(studies, out, onnx_threads):
    """One study at a time in this process, models loaded first (what a loop over `quantify_study` does)."""
    set_inference_threads(onnx_threads)
    t = time.time()
    preload_models("onnxruntime", onnx_threads)
    load = time.time() - t
    per = []
    t0, c0 = time.time(), cpu_seconds()
    for s in studies:
        t = time.time()
        quantify_study(s.path, os.path.join(out, s.study_id))
        per.append(time.time() - t)
    return dict(seconds=time.time() - t0, per_study=per, load=load, peak_mb=peak_rss_mb(),
                cpu=cpu_seconds() - c0)


def cold_quantify(study, out):
    """A fresh `python -m cardiacquan quantify` process: start, imports, model load, the study."""
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "..", "CardiacQuan"))
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "cardiacquan", "quantify", study.path, "-o", out], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return time.time() - t


def dask_run(studies, out, layout):
    t = time.time()
    client, cluster, _ = start_client(layout=layout)
    try:
        client.run(preload_models, "onnxruntime", layout.onnx_threads)
        start = time.time() - t
        c0 = client.run(cpu_seconds)
        t0 = time.time()
        rows = run_batch(client, studies, out, dict(SETTINGS, threads=layout.onnx_threads))
        seconds = time.time() - t0
        assert all(r["status"] == STATUS_QUANTIFIED for r in rows), [r["error"] for r in rows]
        peaks = client.run(peak_rss_mb)
        cpu = sum(client.run(cpu_seconds).values()) - sum(c0.values())
    finally:
        client.close()
        cluster.close()
    return dict(seconds=seconds, start=start, per_study=[float(r["seconds"]) for r in rows],
                peak_mb=max(peaks.values()), cpu=cpu)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=6, help="generated phantom studies (default 6)")
    ap.add_argument("--layouts", default="2x1x1,1x1x2,1x2x1", help="Dask layouts WxTxO (default 2x1x1,1x1x2,1x2x1)")
    ap.add_argument("--rounds", type=int, default=1, help="run the layouts this many times, interleaved (a loaded "
                                                           "machine's load drifts; default 1)")
    ap.add_argument("--no-sequential", action="store_true", help="skip the one-process run and the cold start")
    ap.add_argument("--make", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_studies(args.make, args.studies)
        return
    cores, memory = machine()
    print(f"machine: {cores} cores, {memory / 2**30:.1f} GiB; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "in"))
        # generated in a child process, so that this process's peak memory is the quantification's
        subprocess.run([sys.executable, __file__, "--make", os.path.join(tmp, "in"), "--studies", str(args.studies)],
                       check=True)
        studies = make_studies(os.path.join(tmp, "in"), args.studies, write=False)
        n = len(studies)
        print(f"{n} studies ({args.studies} phantoms 12x20x256^2" + (" + Sunnybrook SCD0000101)" if n > args.studies
                                                                     else ")"))
        rows = []
        if not args.no_sequential:
            cold = cold_quantify(studies[0], os.path.join(tmp, "cold"))
            seq = one_process(studies, os.path.join(tmp, "seq"), onnx_threads=cores)
            rows.append(("1 process, 1 study at a time", f"ONNX {cores} threads", seq))
            print(f"per-study cost: cold (fresh `cardiacquan quantify` process, {studies[0].study_id}) {cold:.1f} s; "
                  f"warm (models loaded, same study) {seq['per_study'][0]:.1f} s; model load {seq['load']:.1f} s",
                  flush=True)
        for k in range(args.rounds):
            for spec in args.layouts.split(","):
                w, t, o = (int(x) for x in spec.split("x"))
                res = dask_run(studies, os.path.join(tmp, f"dask{spec}-{k}"), Layout(w, t, o))
                rows.append((f"Dask LocalCluster {w} worker(s) x {t} thread(s)", f"ONNX {o} thread(s) each", res))
                print(f"round {k + 1}, {spec}: {60.0 * n / res['seconds']:.2f} studies/min, load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
        print("\n| run | inference threads | studies/min | mean s/study (on its worker) | CPU s/study | "
              "peak RSS per worker | cluster start |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, threads, r in rows:
            mean = sum(r["per_study"]) / len(r["per_study"])
            start = f"{r['start']:.1f} s" if "start" in r else "-"
            print(f"| {name} | {threads} | {60.0 * n / r['seconds']:.2f} | {mean:.1f} | {r['cpu'] / n:.1f} | "
                  f"{r['peak_mb']:.0f} MB | {start} |")
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
