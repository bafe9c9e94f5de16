"""One study on a Dask worker: skip it when done, else read, quantify and write it; a small row back.

Runs in the worker's process: the cine is read there and never travels; what comes back is the
cohort row (a dict of a few dozen numbers and strings).  Models are loaded through
`cardiacquan.models`, whose cache lives as long as the worker's process, so a worker loads each
model once (`preload_models` does it when the worker joins, before its first study).

A study the user can fix (unreadable, not a cine, no LV found) comes back as a failed row with
the CQ-ERROR message and is not retried; an unexpected exception propagates so that Dask
retries the task, and a worker that dies is replaced by its nanny and the study rescheduled.
"""
from __future__ import annotations

import json
import os
import time

from cardiacquan import CardiacQuanError
from cardiacquan.batch.cohort import failed_row, row_from_summary
from cardiacquan.batch.fingerprint import clear_stamp, input_fingerprint, is_done, settings_key, write_stamp
from cardiacquan.contract import STATUS_QUANTIFIED, STATUS_REUSED, SUMMARY_JSON, ExchangeError
from cardiacquan.models import THREADS_VARIABLE, bundled_quan_net, load_seg_model
from cardiacquan.study import quantify_study


def set_inference_threads(threads):
    """ONNX Runtime's intra-op threads for models loaded from now on in this process."""
    if threads:
        os.environ[THREADS_VARIABLE] = str(int(threads))


def preload_models(backend=None, threads=None):
    """Load the bundled models into this process's cache (run on every worker); returns the pid."""
    set_inference_threads(threads)
    load_seg_model(backend=backend)
    bundled_quan_net(backend=backend)
    return os.getpid()


def process_study(study_id, input_path, outdir, settings):
    """The cohort row of one study (see the module docstring). settings: the run's options
    (slices, geometry_only, figures, backend, threads, software and model versions)."""
    t0 = time.time()
    folder = os.path.join(outdir, study_id)
    key = settings_key({k: v for k, v in settings.items() if k != "threads"})
    try:
        fingerprint = input_fingerprint(input_path)
    except OSError as e:
        return failed_row(study_id, input_path, f"cannot read {e.filename or input_path}: {e.strerror or e}",
                          time.time() - t0)
    done = is_done(folder, fingerprint, key, settings["figures"])
    if done is not None:
        return dict(done, status=STATUS_REUSED, input=str(input_path))
    clear_stamp(folder)
    set_inference_threads(settings.get("threads"))
    try:
        quantify_study(input_path, folder, slices=settings["slices"], geometry_only=settings["geometry_only"],
                       figures=settings["figures"], backend=settings["backend"])
        with open(os.path.join(folder, SUMMARY_JSON), encoding="utf-8") as f:
            summary = json.load(f)
    except (CardiacQuanError, ExchangeError) as e:
        return failed_row(study_id, input_path, e, time.time() - t0)
    except OSError as e:   # a disk full, a folder that vanished: like the command line says it
        where = f" {e.filename}" if e.filename else ""
        return failed_row(study_id, input_path, f"cannot read or write{where}: {e.strerror or e}", time.time() - t0)
    except MemoryError:
        return failed_row(study_id, input_path, "out of memory", time.time() - t0)
    row = row_from_summary(study_id, input_path, summary, STATUS_QUANTIFIED, time.time() - t0)
    write_stamp(folder, fingerprint, key, settings, row)
    return row
