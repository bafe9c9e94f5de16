"""Time geometry.slice_indices on a 20-frame 256x256 slice (the per-slice unit of the pipeline).

Usage: python scripts/benchmark_geometry.py [--repeats N] [--spacing MM]
Prints the median wall time per 20-frame slice and per frame over N runs, after one warm-up,
on the ground-truth labels of a synthetic phantom (realistic LV/RV sizes and contraction).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "CardiacQuan"))
from cardiacquan.measure.indices import slice_indices  # noqa: E402
from cardiacquan.synthetic.phantom import make_phantom  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--spacing", type=float, nargs="+", default=[1.0, 1.5])
    args = ap.parse_args(argv)
    for sp in args.spacing:
        ph = make_phantom(seed=0, n_frames=20, size=(256, 256), spacing=sp)
        labels, spacing, direction = ph.labels[:, 0], ph.cine.spacing, ph.cine.direction
        slice_indices(labels, spacing, direction)                    # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            slice_indices(labels, spacing, direction)
            times.append(time.perf_counter() - t0)
        med = 1e3 * float(np.median(times))
        print(f"spacing {sp:.1f} mm, 20 x 256 x 256 labels: median {med:.1f} ms per slice, "
              f"{med / 20:.2f} ms per frame (min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f} ms, "
              f"{args.repeats} runs)")


if __name__ == "__main__":
    main()
