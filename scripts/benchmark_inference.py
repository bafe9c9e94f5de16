#!/usr/bin/env python
"""How fast `cardiacquan quantify` is, and how close its network runs to this machine's limit.

Prints (a benchmark, not a test; run it on a quiet machine):
- this machine's fp32 peak, measured in the same run: numpy's sgemm (OpenBLAS) on 2048^2 float32
  matrices with the process's threads;
- the segmentation network on a batch of 20 fine-pass patches (160^2; GFLOP counted from the
  ONNX graph): seconds, GFLOP/s and % of that peak, per runtime and precision (TensorFlow only
  where it is installed);
- for a 20-frame 256^2 one-slice cine (a phantom) and the 12-slice x 20-frame Sunnybrook study
  (../shared/data, when present): `cardiacquan quantify` cold (a fresh process, as a user or the
  Slicer module runs it, figures included) with its peak resident memory, and warm (models
  loaded, `quantify` + outputs, median of --repeat), per precision.

    python scripts/benchmark_inference.py [--repeat 3]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CardiacQuan"))
SUNNYBROOK = ROOT.parent / "shared" / "data" / "sunnybrook" / "dicoms" / "SCD0000101"

from cardiacquan import models  # noqa: E402
from cardiacquan.io.files import read_cine  # noqa: E402
from cardiacquan.io.results import write_outputs  # noqa: E402
from cardiacquan.io.volume import write_cine  # noqa: E402
from cardiacquan.pipeline import quantify  # noqa: E402
from cardiacquan.segmentation.network import PATCH  # noqa: E402
from cardiacquan.synthetic.phantom import make_phantom  # noqa: E402


def median_seconds(fn, repeat):
    fn()                                    # warm-up: sessions, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def sgemm_peak(n=2048, repeat=5):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def conv_gflop(onnx_file, size=PATCH):
    """GFLOP of one size x size patch: 2 x multiply-adds of every Conv / ConvTranspose."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        return 2.28                          # measured on the bundled network (onnx not installed)
    model = onnx.load(str(onnx_file))
    inp = model.graph.input[0].type.tensor_type.shape.dim
    inp[0].dim_value, inp[1].dim_value, inp[2].dim_value = 1, size, size
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    weights = {w.name: list(w.dims) for w in model.graph.initializer}
    flop = 0.0
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in weights:
            w = weights[node.input[1]]
            out = shapes.get(node.output[0]) if node.op_type == "Conv" else shapes.get(node.input[0])
            if out:
                flop += 2.0 * np.prod(w) * np.prod(out[2:])     # (Cout x Cin x kh x kw) per output pixel
    return flop / 1e9


def network_rates(peak, gflop_per_patch):
    x = np.random.default_rng(0).random((20, PATCH, PATCH, 1), dtype=np.float32)
    rows = []
    runners = [("onnxruntime", "fp32", lambda: models.load_seg_model(backend="onnxruntime", precision="fp32")),
               ("onnxruntime", "int8", lambda: models.load_seg_model(backend="onnxruntime", precision="int8"))]
    try:
        import tensorflow  # noqa: F401  (the reference runtime, when the 'train' extra is installed)
        runners.insert(0, ("tensorflow", "fp32", lambda: models.load_seg_model(backend="tensorflow")))
    except ImportError:
        pass
    for runtime, precision, load in runners:
        try:
            model = load()
        except Exception as e:                               # an int8 file not exported, ...
            print(f"  {runtime:12s} {precision}: not available ({e})")
            continue
        s = median_seconds(lambda: model.predict_on_batch(x), 3)
        rate = 20 * gflop_per_patch / s
        rows.append((runtime, precision, s, rate))
        note = " (int8: GFLOP/s counts the same fp32 work)" if precision == "int8" else ""
        print(f"  {runtime:12s} {precision}: {s:.2f} s for 20 patches, {rate:.0f} GFLOP/s, "
              f"{100 * rate / peak:.0f} % of the fp32 peak{note}")
    return rows


#: runs `cardiacquan quantify` and prints its wall seconds and peak RSS.  A small launcher process,
#: because Linux keeps a child's ru_maxrss from the parent's size at fork (here: models and the
#: sgemm matrices already loaded), which would overstate the child's own peak.
LAUNCHER = """
import os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen([sys.executable, "-m", "cardiacquan", "quantify"] + sys.argv[1:],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss / 1024.0, status)
sys.stderr.write(err.decode()[-500:] if status else "")
"""


def cold_run(source, precision):
    """Seconds and peak RSS (MiB) of `cardiacquan quantify SOURCE` in a fresh process."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "CardiacQuan"))
        r = subprocess.run([sys.executable, "-c", LAUNCHER, str(source), "-o", out, "--precision", precision],
                           env=env, capture_output=True, text=True)
        seconds, rss, status = r.stdout.split()
        if int(status) != 0:
            raise SystemExit(f"quantify failed on {source}: {r.stderr}")
    return float(seconds), float(rss)


def study_times(name, source, repeat):
    cine = read_cine(str(source))
    for precision in ("fp32", "int8"):
        try:
            models.load_seg_model(precision=precision)
        except Exception:
            continue
        cold = [cold_run(source, precision) for _ in range(2)]
        cold_s = min(c[0] for c in cold)
        rss = max(c[1] for c in cold)
        with tempfile.TemporaryDirectory() as out:
            warm = median_seconds(lambda: write_outputs(quantify(cine, precision=precision), out), repeat)
        print(f"  {name}, {precision}: cold {cold_s:.2f} s (peak RSS {rss:.0f} MiB), warm {warm:.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"cardiacquan inference benchmark, {os.cpu_count()} CPU cores")
    peak = sgemm_peak()
    print(f"fp32 peak (numpy sgemm 2048^2): {peak:.0f} GFLOP/s")
    gflop = conv_gflop(models.fine_seg_onnx_path(models.seg_model_path()))
    print(f"segmentation network: {gflop:.2f} GFLOP per {PATCH}^2 patch")
    rows = network_rates(peak, gflop)
    ort_fp32 = next((r[3] for r in rows if r[:2] == ("onnxruntime", "fp32")), None)
    if ort_fp32:
        # the limit: a 12 x 20 study's fine pass is 240 frames x 2 (flip test-time augmentation)
        fine = 480 * gflop
        print(f"the limit for a 12x20 study: its fine pass alone is {fine:.0f} GFLOP, {fine / peak:.1f} s at 100 % "
              f"of the fp32 peak, {fine / ort_fp32:.1f} s at ONNX Runtime's measured rate")
    with tempfile.TemporaryDirectory() as tmp:
        cine_file = Path(tmp) / "cine.nii.gz"
        write_cine(make_phantom(seed=7, n_frames=20, n_slices=1, size=(256, 256)).cine, str(cine_file))
        print("quantify (figures included):")
        study_times("20-frame 256^2 cine", cine_file, args.repeat)
        if SUNNYBROOK.is_dir():
            study_times("Sunnybrook 12x20 study", SUNNYBROOK, args.repeat)
        else:
            print(f"  Sunnybrook study: skipped ({SUNNYBROOK} not present)")


if __name__ == "__main__":
    main()
