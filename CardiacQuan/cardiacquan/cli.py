"""`cardiacquan`: the engine's command line (also what the Slicer module runs in a subprocess).

Errors the user can fix come out as one line (`CQ-ERROR <message>`) on stderr with exit code
2; progress of long work as `CQ-PROGRESS <done> <total> <message>` lines on stderr.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from cardiacquan import CardiacQuanError, __version__
from cardiacquan.cli_args import CQArgumentParser
from cardiacquan.contract import (
    BULLSEYE_PNG,
    DICOM_SEG_FILE,
    FIGURE_FILES,
    INDEX_COLUMNS,
    INDICES_CSV,
    REPORT_HTML,
    SEGMENTATION_FILE,
    SEGMENTS_CSV,
    SUMMARY_JSON,
    ExchangeError,
    error_line,
    progress_line,
)
from cardiacquan.io.files import write_cine, write_labels
from cardiacquan.io.output_paths import prepare_output_file
from cardiacquan.models import (
    BACKEND_VARIABLE,
    BACKENDS,
    PRECISION_VARIABLE,
    PRECISIONS,
    load_seg_model,
    sample_cine_path,
)
from cardiacquan.segmentation.inference import segment_cine
from cardiacquan.study import quantify_study, read_input
from cardiacquan.synthetic.phantom import make_phantom

#: stage packages that bring commands of their own (`add_parsers`).  The Slicer extension
#: installs runtime code only: there training and evaluation, and so their commands, are absent.
STAGE_COMMANDS = ("cardiacquan.training.commands", "cardiacquan.evaluation.commands", "cardiacquan.batch.commands")


def _progress(done, total, message=""):
    print(progress_line(done, total, message), file=sys.stderr, flush=True)


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Python warnings as plain `warning:` lines, like the engine's own (no source lines)."""
    _log(f"warning: {message}")


def cmd_quantify(args):
    t0 = time.time()
    result, out = quantify_study(args.input, args.output, labels_path=args.labels, slices=args.slices,
                                 third_axis_is_time=args.third_axis_is_time, series=getattr(args, "series", None),
                                 no_network=args.no_network, geometry_only=args.geometry_only,
                                 figures=not args.no_figures, bullseye=True if args.bullseye else None,
                                 dicom_seg=bool(getattr(args, "dicom_seg", False)), backend=args.backend,
                                 precision=args.precision, progress=_progress, log=_log)
    _log(f"ED frame {result.ed_frame}, ES frame {result.es_frame}; mid-ventricular slice {result.mid_slice}")
    for w in dict.fromkeys(result.warnings):
        _log(f"warning: {w}")
    _log(f"wrote {out} in {time.time() - t0:.1f} s")
    return 0


def cmd_segment(args):
    prepare_output_file(args.output, [args.input], create=False)   # before any work
    cine = read_input(args.input, args.third_axis_is_time, getattr(args, "series", None))
    cine.validate_for_quantification() if cine.n_frames > 1 else None
    seg = segment_cine(cine, model=load_seg_model(backend=args.backend, precision=args.precision), progress=_progress)
    prepare_output_file(args.output, [args.input])
    write_labels(seg.labels, cine, args.output)
    for w in seg.warnings:
        _log(f"warning: {w}")
    _log(f"wrote {args.output}")
    return 0


def cmd_demo(args):
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.phantom:
        ph = make_phantom(seed=args.seed, n_frames=20, n_slices=args.slices_count)
        src = out / "phantom_cine.nii.gz"
        write_cine(ph.cine, str(src))
        _log(f"generated a phantom cine ({ph.cine.n_frames} frames x {ph.cine.n_slices} slices, "
             f"{ph.cine.spacing[0]:.2f} mm pixels) -> {src}")
    else:
        ph, src = None, sample_cine_path()
        if not src.is_file():
            raise CardiacQuanError(f"the sample cine {src} is missing (a pip install without the module's "
                                   "Resources/): run `cardiacquan demo --phantom`")
        _log(f"sample cine: {src} (Sunnybrook Cardiac Data, patient SC-HF-I-1, CC0; Radau et al., MIDAS Journal "
             "2009): a real short-axis cine, whole stack, all frames")
    ns = argparse.Namespace(input=str(src), output=str(out), labels=None, slices="all",
                            third_axis_is_time=False, series=None, no_network=False, geometry_only=False,
                            no_figures=False, bullseye=False, dicom_seg=False, backend=args.backend,
                            precision=args.precision)
    rc = cmd_quantify(ns)
    if ph is not None:
        _compare_with_truth(ph, out)
    else:
        _print_study(out)
    return rc


def _print_study(out):
    """The study's result in a few lines: ED/ES, volumes and EF, the outputs."""
    with open(out / SUMMARY_JSON) as f:
        summary = json.load(f)
    vol = summary.get("volumes") or {}
    print(f"Study: ED frame {summary.get('ed_frame')}, ES frame {summary.get('es_frame')}; "
          + (f"EDV {vol['edv_ml']:.0f} mL, ESV {vol['esv_ml']:.0f} mL, EF {vol['ef_percent']:.0f} %, "
             f"LV mass {vol['lv_mass_ed_g']:.0f} g"
             if all(vol.get(k) is not None for k in ("edv_ml", "esv_ml", "ef_percent", "lv_mass_ed_g"))
             else "volumes not available"))
    print(f"Results: {out}/{INDICES_CSV}, {SEGMENTS_CSV}, {SUMMARY_JSON}, {SEGMENTATION_FILE}, "
          f"{', '.join(FIGURE_FILES)}, {REPORT_HTML} (open it in a browser)")


def _compare_with_truth(ph, out):
    """Print how far the product's numbers are from the phantom's exact truth."""
    with open(out / INDICES_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    names = INDEX_COLUMNS
    truth = np.concatenate([ph.truth["cavity_area"][..., None], ph.truth["myocardium_area"][..., None],
                            ph.truth["dims"], ph.truth["rwt"]], axis=-1)   # (T, Z, 11)
    err = {n: [] for n in names}
    phase_wrong = []
    for r in rows:
        t, z = int(r["frame"]), int(r["slice"])
        for k, n in enumerate(names):
            if r[n] != "" and np.isfinite(truth[t, z, k]):
                err[n].append(abs(float(r[n]) - truth[t, z, k]))
        phase_wrong.append(int(r["phase"]) != int(ph.truth["phase"][t, z]))
    print("Phantom truth vs CardiacQuan (mean absolute error over all frames):")
    print(f"  cavity area {np.mean(err[names[0]]):.1f} mm², myocardium area {np.mean(err[names[1]]):.1f} mm², "
          f"dims {np.mean(sum((err[n] for n in names[2:5]), [])):.2f} mm, "
          f"RWT {np.mean(sum((err[n] for n in names[5:]), [])):.2f} mm, phase error {100 * np.mean(phase_wrong):.1f} %")
    print(f"Results: {out}/{INDICES_CSV}, {SUMMARY_JSON}, {SEGMENTATION_FILE}, {', '.join(FIGURE_FILES)}, "
          f"{REPORT_HTML}")


def _add_backend(parser):
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help=f"how the networks run: onnxruntime (default; ${BACKEND_VARIABLE} changes it) or "
                             "tensorflow (the Keras models, the training framework: needs the 'train' extra)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help=f"the segmentation's fine pass on ONNX Runtime: fp32 (default; ${PRECISION_VARIABLE} "
                             "changes it) or int8 (about 1.9x faster; agreement with fp32 in seg_model.md)")


def build_parser():
    p = CQArgumentParser(prog="cardiacquan", description="Full left-ventricle quantification "
                                "from short-axis cine MRI (LVQuan indices, phase, segmentation).")
    p.add_argument("--version", action="version", version=f"cardiacquan {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=CQArgumentParser)

    q = sub.add_parser("quantify", help="segment (or take --labels) and quantify a cine")
    q.add_argument("input", help="DICOM folder/file, NIfTI, NRRD, .seq.nrrd, or the Slicer module's .npz")
    q.add_argument("-o", "--output", required=True, help="output folder (created)")
    q.add_argument("--labels", help="label image to quantify instead of running the network "
                   "(0 background, 1 RV, 2 LV myocardium, 3 LV cavity; same grid as the input)")
    q.add_argument("--slices", default="all", help="'all' (default), 'mid', or slice numbers such as 3 or 2,3,4")
    q.add_argument("--third-axis-is-time", action="store_true", help="a 3-D input is one slice over time")
    q.add_argument("--series", type=int, metavar="N",
                   help="the SeriesNumber of the cine to read when a DICOM folder holds several")
    q.add_argument("--geometry-only", action="store_true",
                   help="final values from the geometry of the masks only (no spatio-temporal network)")
    q.add_argument("--no-network", action="store_true", help="refuse to run the segmentation network")
    q.add_argument("--no-figures", action="store_true", help="no pictures and no report.html")
    q.add_argument("--bullseye", action="store_true",
                   help=f"write {BULLSEYE_PNG} also with --no-figures (the Slicer module shows it)")
    q.add_argument("--dicom-seg", action="store_true",
                   help=f"also write {DICOM_SEG_FILE}: a DICOM Segmentation (LV cavity, LV myocardium, RV; every "
                        "frame referencing its source image) for a PACS; DICOM input only")
    _add_backend(q)
    q.set_defaults(func=cmd_quantify)

    s = sub.add_parser("segment", help="label every frame: INPUT -> LABELS in the input's geometry")
    s.add_argument("input")
    s.add_argument("-o", "--output", required=True, help="label image (.nii.gz, .nrrd)")
    s.add_argument("--third-axis-is-time", action="store_true")
    s.add_argument("--series", type=int, metavar="N", help="SeriesNumber of the cine in a DICOM folder holding several")
    _add_backend(s)
    s.set_defaults(func=cmd_segment)

    d = sub.add_parser("demo", help="quantify the bundled sample cine (real MRI), or a generated phantom with "
                                    "exact truth (--phantom)")
    d.add_argument("-o", "--output", default="demo_output")
    d.add_argument("--phantom", action="store_true",
                   help="a generated phantom cine instead of the sample, compared with its exact truth")
    d.add_argument("--seed", type=int, default=7, help="phantom only")
    d.add_argument("--slices-count", type=int, default=1, help="slices of the phantom (1 = 2-D+t)")
    _add_backend(d)
    d.set_defaults(func=cmd_demo)

    for name in STAGE_COMMANDS:
        if importlib.util.find_spec(name.rpartition(".")[0]) is not None:
            importlib.import_module(name).add_parsers(sub)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except (CardiacQuanError, ExchangeError) as e:
        print(error_line(e), file=sys.stderr, flush=True)
        return 2
    except OSError as e:     # a disk full, a folder that vanished: the user's to fix, not a bug
        where = f" {e.filename}" if e.filename else ""
        print(error_line(f"cannot read or write{where}: {e.strerror or e}"), file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(error_line("interrupted"), file=sys.stderr, flush=True)
        return 130
    except MemoryError:
        print(error_line("out of memory"), file=sys.stderr, flush=True)
        return 3


if __name__ == "__main__":
    sys.exit(main())
