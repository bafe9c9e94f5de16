"""The Dask client a batch runs on: a LocalCluster sized to this machine, or an existing
cluster by address (`--scheduler tcp://HOST:8786`, or DASK_SCHEDULER_ADDRESS).

The local layout: one single-threaded worker process per ONNX_THREADS_PER_WORKER cores, each
with ONNX Runtime on that many threads, so the inference runtime's threads and Dask's together
never exceed the cores; fewer workers where memory is short (MEMORY_PER_WORKER each).  Measured
on a 2-core machine (scripts/benchmark_batch.py, figures in the README): two 1-thread workers
with 1 ONNX thread each give about 1.5-2x the throughput of one worker with 2 ONNX threads, at a
quarter less CPU per study, because most of a study (reading, resampling, geometry, writing,
figures) runs on one core whatever ONNX Runtime does.  One worker with 2 Dask threads is even
with two workers within the noise; processes are the default because a crash or a memory
overrun then takes one study down, not two.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

from cardiacquan import CardiacQuanError
from cardiacquan.frameworks import import_distributed
from cardiacquan.models import THREADS_VARIABLE

SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
ONNX_THREADS_PER_WORKER = 1
#: peak resident memory of a worker quantifying a 12-slice x 20-frame 256^2 study, with headroom
#: for larger cines (measured peak: README "Cohorts")
MEMORY_PER_WORKER = 2 << 30


@dataclass
class Layout:
    n_workers: int
    threads_per_worker: int
    onnx_threads: int

    def describe(self):
        return (f"{self.n_workers} worker process(es) x {self.threads_per_worker} thread(s), "
                f"ONNX Runtime {self.onnx_threads} thread(s) each")


def machine():
    """(cores this process may use, memory in bytes), cgroup limits included (Dask's own figures)."""
    dask, distributed = import_distributed()
    return max(1, int(dask.system.CPU_COUNT)), int(distributed.system.MEMORY_LIMIT)


def local_layout(cores, memory, n_workers=None, threads_per_worker=None, onnx_threads=None):
    """The LocalCluster layout for `cores` and `memory` (see the module docstring); any of the
    three figures given is kept and the others fitted around it."""
    onnx = onnx_threads or ONNX_THREADS_PER_WORKER
    threads = threads_per_worker or 1
    if n_workers is None:
        n_workers = max(1, cores // max(1, onnx * threads))
        n_workers = max(1, min(n_workers, memory // MEMORY_PER_WORKER))
    if onnx_threads is None:
        onnx = max(1, cores // max(1, n_workers * threads))
    return Layout(int(n_workers), int(threads), int(onnx))


def start_client(scheduler=None, layout=None, allowed_failures=3):
    """(client, local cluster or None, layout or None).  A local cluster's scheduler reschedules a
    study whose worker died up to `allowed_failures` times; an existing cluster keeps its own
    setting (distributed.scheduler.allowed-failures)."""
    dask, distributed = import_distributed()
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as e:
            raise CardiacQuanError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        return client, None, None
    if layout is None:
        layout = local_layout(*machine())
    with dask.config.set({"distributed.scheduler.allowed-failures": int(allowed_failures)}):
        cluster = distributed.LocalCluster(
            n_workers=layout.n_workers, threads_per_worker=layout.threads_per_worker, processes=True,
            silence_logs=logging.ERROR, dashboard_address=":8787",
            env={THREADS_VARIABLE: str(layout.onnx_threads)})
    return distributed.Client(cluster), cluster, layout


def dashboard(client, local):
    """The Dask dashboard's address, or why there is none (its pages need bokeh on the scheduler)."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:   # an old or unreachable scheduler: no address to show
        services = {}
    if "dashboard" not in services:
        return "not running"
    if local and importlib.util.find_spec("bokeh") is None:
        return "not available (pip install bokeh for it)"
    return client.dashboard_link
