#!/usr/bin/env python
"""Time of the quantification network on CPU: one 20-frame slice, and a whole 12-slice study.

Measures, on a phantom cine's masks: pre-processing (crop / scale / orient, 80x80), the
network, post-processing (de-normalisation, phase decoding) = `predict_indices`, and for
comparison the engine's geometry (`geometry.slice_indices`).  The first call (graph
tracing, weight loading) is reported apart; the steady-state figure is the median of
--repeat runs.  Uses the bundled weights when present, else an untrained network of the
same architecture (the time is the same).

    python scripts/benchmark_quan.py [--model PATH] [--slices 12] [--repeat 10] [--threads N]
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CardiacQuan"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--slices", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="limit CPU threads (TensorFlow backend)")
    args = ap.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.threads:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import numpy as np
    import keras
    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from cardiacquan.measure.indices import slice_indices
    from cardiacquan.synthetic.phantom import make_phantom
    from cardiacquan.models import load_quan_net, quan_net_path
    from cardiacquan.quannet.encoding import prepare_masks
    from cardiacquan.quannet.network import QuanNet, build_quan_net
    from cardiacquan.quannet.predict import predict_indices, predict_indices_many

    path = Path(args.model) if args.model else quan_net_path()
    t = time.perf_counter()
    if path.exists():
        qn = load_quan_net(path)
        what = str(path)
    else:
        qn = QuanNet(build_quan_net(compile=False))
        what = "untrained network (no weights at %s)" % path
    t_load = time.perf_counter() - t
    ph = make_phantom(seed=1, n_frames=20, n_slices=args.slices, noise=0, bias=0)
    sp, di = ph.cine.spacing, ph.cine.direction
    lab = ph.labels[:, args.slices // 2]
    t = time.perf_counter()
    predict_indices(lab, sp, di, model=qn)
    t_first = time.perf_counter() - t

    def med(fn):
        ts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    t_prep = med(lambda: prepare_masks(lab, sp, di))
    t_one = med(lambda: predict_indices(lab, sp, di, model=qn))
    x = prepare_masks(lab, sp, di)[0][None]
    t_net = med(lambda: qn.model.predict_on_batch(x))
    t_geo = med(lambda: slice_indices(lab, sp, di))
    study = [{"labels": ph.labels[:, z], "spacing": sp, "direction": di} for z in range(args.slices)]
    predict_indices_many(study, model=qn)
    t_study = med(lambda: predict_indices_many(study, model=qn))
    print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs; model: {what}")
    print(f"load weights                  {t_load:7.3f} s (once)")
    print(f"first call (tracing)          {t_first:7.3f} s (once)")
    print("one 20-frame slice:")
    print(f"  pre-processing              {t_prep:7.3f} s")
    print(f"  network alone               {t_net:7.3f} s")
    print(f"  predict_indices (all)       {t_one:7.3f} s")
    print(f"  engine geometry (compare)   {t_geo:7.3f} s")
    print(f"{args.slices}-slice study, 20 frames:")
    print(f"  predict_indices_many        {t_study:7.3f} s")


if __name__ == "__main__":
    main()
