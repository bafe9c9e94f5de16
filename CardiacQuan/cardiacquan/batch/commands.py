"""`cardiacquan batch INPUTS... -o OUTDIR`: a cohort on Dask (see README "Cohorts").

Exit code 0 when every study is quantified (or reused), 1 when some failed (listed in
failures.csv; the others are done), 2 with a CQ-ERROR line when nothing could start (no
study found, Dask missing, an unreachable scheduler, an output folder that cannot be written).
"""
from __future__ import annotations

import csv
import os
import sys

from cardiacquan import CardiacQuanError, __version__
from cardiacquan.batch.cluster import SCHEDULER_VARIABLE, dashboard, local_layout, machine, start_client
from cardiacquan.batch.cohort import model_versions, write_tables
from cardiacquan.batch.inputs import discover
from cardiacquan.batch.progress import BatchProgress
from cardiacquan.batch.runner import BatchInterrupted, run_batch
from cardiacquan.batch.task import preload_models
from cardiacquan.cli_args import at_least, positive_int
from cardiacquan.contract import MANIFEST_COLUMNS, STATUS_FAILED
from cardiacquan.io.output_paths import prepare_output_dir
from cardiacquan.models import BACKENDS, default_backend, model_info


def _log(text):
    print(text, file=sys.stderr, flush=True)


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_outputs(studies, outdir):
    """Refuse a layout where a study's outputs would land in (or be) an input."""
    for s in studies:
        target = os.path.join(outdir, s.study_id)
        if _inside(s.path, target) or (os.path.isdir(s.path) and _inside(target, s.path)):
            raise CardiacQuanError(f"the output folder of study {s.study_id} ({target}) would be inside its "
                                   f"input {s.path} or hold it: choose an output folder outside the inputs")


def run_settings(args):
    """What changes a study's outputs: a rerun with other settings quantifies again."""
    backend = args.backend or default_backend()
    return {"slices": args.slices, "geometry_only": bool(args.geometry_only), "figures": not args.no_figures,
            "backend": backend, "software_version": __version__, "models": model_versions(model_info()),
            "threads": args.onnx_threads}


def cmd_batch(args):
    outdir = os.path.abspath(args.output)
    studies = discover(args.inputs, exclude=outdir)
    if not studies:
        raise CardiacQuanError(f"no study found in {', '.join(args.inputs)} (DICOM series, NIfTI/NRRD/MHA cines, "
                               f"or a manifest CSV with the header {','.join(MANIFEST_COLUMNS)})")
    if args.list:
        w = csv.writer(sys.stdout)
        w.writerow(MANIFEST_COLUMNS)
        w.writerows((s.study_id, s.path) for s in studies)
        return 0
    check_outputs(studies, outdir)
    prepare_output_dir(outdir, [], create=True)
    settings = run_settings(args)
    scheduler = args.scheduler or os.environ.get(SCHEDULER_VARIABLE)
    layout = None if scheduler else local_layout(*machine(), n_workers=args.workers,
                                                 threads_per_worker=args.threads_per_worker,
                                                 onnx_threads=args.onnx_threads)
    if layout is not None:
        settings["threads"] = layout.onnx_threads
    _log(f"batch: {len(studies)} studies -> {outdir}")
    client, cluster, layout = start_client(scheduler, layout, allowed_failures=args.retries)
    try:
        where = f"local cluster: {layout.describe()}" if layout else f"Dask cluster {scheduler}"
        _log(f"batch: {where}; Dask dashboard: {dashboard(client, cluster is not None)}")
        client.run(preload_models, settings["backend"], settings["threads"])   # each worker loads the models once
        progress = BatchProgress(len(studies))
        try:
            rows = run_batch(client, studies, outdir, settings, progress=progress, retries=args.retries)
        except BatchInterrupted as e:
            progress.close()
            write_tables(outdir, e.rows)
            raise KeyboardInterrupt from None
        progress.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    files = write_tables(outdir, rows)
    _log(f"{progress.summary()}; {', '.join(files)}")
    return 1 if any(r["status"] == STATUS_FAILED for r in rows) else 0


def add_parsers(subparsers):
    b = subparsers.add_parser(
        "batch", help="quantify a cohort on Dask (local or a cluster): per-study outputs, cohort.csv, failures.csv",
        description="Quantify many studies on Dask: OUTDIR/<study_id>/ holds what `quantify` writes; "
                    "OUTDIR/cohort.csv one row per study, failures.csv the refused ones. A rerun skips studies "
                    "whose input and settings are unchanged. Exit 0: all done; 1: some failed; 2: nothing ran.")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a study (DICOM folder/file, NIfTI, NRRD, MHA), a folder to scan (one study per DICOM "
                        "series or cine file found), or a manifest CSV with the header study_id,path")
    b.add_argument("-o", "--output", required=True, help="output folder (created)")
    b.add_argument("--scheduler", help=f"address of a running Dask scheduler, e.g. tcp://HOST:8786 (default: "
                                       f"${SCHEDULER_VARIABLE}, else a local cluster sized to this machine)")
    b.add_argument("--workers", type=positive_int, help="local cluster: worker processes (default: fitted to the "
                                                        "cores and memory)")
    b.add_argument("--threads-per-worker", type=positive_int, help="local cluster: Dask threads per worker (default 1)")
    b.add_argument("--onnx-threads", type=positive_int,
                   help="ONNX Runtime threads per worker (default: the cores shared out over the local workers; on "
                        "an existing cluster, the workers' own setting)")
    b.add_argument("--retries", type=at_least(0), default=2,
                   help="times a study is tried again after its worker died or it raised an unexpected error "
                        "(default 2)")
    b.add_argument("--slices", default="all", help="'all' (default), 'mid', or slice numbers, as for quantify")
    b.add_argument("--geometry-only", action="store_true", help="as for quantify")
    b.add_argument("--no-figures", action="store_true", help="as for quantify")
    b.add_argument("--backend", choices=BACKENDS, default=None, help="as for quantify")
    b.add_argument("--list", action="store_true",
                   help="only list the studies found, as a manifest (study_id,path) on stdout, and stop")
    b.set_defaults(func=cmd_batch)
