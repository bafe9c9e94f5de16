#!/usr/bin/env python
"""Seconds to segment a cine on the CPU with the bundled model (a benchmark, not a test).

Prints, for (a) one 20-frame 256x256 phantom cine (one slice) and (b) the 12-slice x
20-frame Sunnybrook DICOM study when ../shared is present:
  - "loaded": `segment_cine` alone, model already in memory (median of --repeat runs after
    one warm-up call that traces the graph);
  - for the one-slice cine also the whole `pipeline.quantify` (segmentation, spatio-temporal
    network, geometry, sectors), models loaded;
  - "cold": `cardiacquan segment INPUT -o LABELS` as a user runs it, a fresh process
    including Python and TensorFlow start-up, model loading and writing the label file.
Both with and without the flip test-time augmentation the product uses by default.

    python scripts/benchmark_segmentation.py [--repeat 3] [--threads N]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CardiacQuan"))
SUNNYBROOK = ROOT.parent / "shared" / "data" / "sunnybrook"


def _median_seconds(fn, repeat):
    fn()                                                   # warm-up: graph tracing, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def _cold_run(input_path, extra_env):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "labels.nii.gz"
        env = dict(os.environ, **extra_env)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "cardiacquan", "segment", str(input_path),
                               "-o", str(out)], cwd=ROOT / "CardiacQuan", env=env,
                              capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"cardiacquan segment failed: {proc.stderr.strip().splitlines()[-1:]}")
        return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="limit TensorFlow CPU threads")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(args.threads)

    from cardiacquan.io.files import read_cine
    from cardiacquan.io.volume import write_cine
    from cardiacquan.synthetic.phantom import make_phantom
    from cardiacquan.models import load_seg_model
    from cardiacquan.segmentation.inference import segment_cine

    print(f"CPU cores visible: {os.cpu_count()}")
    t0 = time.perf_counter()
    model = load_seg_model()
    print(f"model load (in-process, after import): {time.perf_counter() - t0:.2f} s")

    cases = []
    phantom = make_phantom(seed=3, n_frames=20, n_slices=1, size=(256, 256), spacing=1.4)
    tmp = tempfile.TemporaryDirectory()
    phantom_path = Path(tmp.name) / "phantom_cine.nii.gz"
    write_cine(phantom.cine, phantom_path)
    cases.append(("20-frame 256x256 cine (1 slice, phantom)", phantom.cine, phantom_path))
    if SUNNYBROOK.is_dir():
        sb = read_cine(SUNNYBROOK)
        cases.append((f"Sunnybrook study ({sb.n_slices} slices x {sb.n_frames} frames, "
                      f"{sb.frame_shape[0]}x{sb.frame_shape[1]})", sb, SUNNYBROOK))
    else:
        print(f"(Sunnybrook study skipped: {SUNNYBROOK} not found)")

    for name, cine, path in cases:
        for tta in (False, True):
            sec = _median_seconds(lambda: segment_cine(cine, model=model, tta=tta), args.repeat)
            print(f"{name}: loaded, TTA {'on ' if tta else 'off'}: {sec:.2f} s "
                  f"({sec / cine.n_frames / cine.n_slices * 1e3:.0f} ms per frame)")
        if cine.n_slices == 1:
            from cardiacquan.pipeline import quantify
            sec = _median_seconds(lambda: quantify(cine, seg_model=model), args.repeat)
            print(f"{name}: loaded, whole quantification (segmentation with TTA + network + geometry + "
                  f"sectors): {sec:.2f} s")
        cold = _cold_run(path, {})
        print(f"{name}: cold `cardiacquan segment` (process start, TF import, model load, "
              f"read, segment with TTA, write): {cold:.2f} s")
    tmp.cleanup()


if __name__ == "__main__":
    main()
