"""One study from its input to its output folder: read, quantify, write.

`cardiacquan quantify` and `cardiacquan batch` (each Dask task) both call `quantify_study`, so a
study quantified in a cohort has exactly the outputs of the single-study command.
"""
from __future__ import annotations

from pathlib import Path

from cardiacquan import CardiacQuanError
from cardiacquan.io.files import read_cine
from cardiacquan.io.files import read_labels_any as read_labels
from cardiacquan.io.output_paths import prepare_output_dir
from cardiacquan.io.results import write_outputs
from cardiacquan.pipeline import quantify


def read_input(path, third_axis_is_time=False, series=None):
    if not Path(path).exists():
        raise CardiacQuanError(f"input not found: {path}")
    return read_cine(path, third_axis_is_time=third_axis_is_time, series=series)


def quantify_study(input_path, output, labels_path=None, slices="all", third_axis_is_time=False, series=None,
                   no_network=False, geometry_only=False, figures=True, bullseye=None, dicom_seg=False,
                   backend=None, precision=None, progress=None, log=None):
    """Quantify the cine at `input_path` into the folder `output`; returns (QuantResult, folder).

    progress(done, total, message) and log(text) receive what the command line prints."""
    log = log or (lambda message: None)
    prepare_output_dir(output, [input_path, labels_path], create=False)   # before any work
    cine = read_input(input_path, third_axis_is_time, series)
    cine.validate_for_quantification()      # refuse a single frame, NaN or a constant image before the labels
    log(f"read {input_path}: {cine.n_frames} frames x {cine.n_slices} slices of "
        f"{cine.frame_shape[0]}x{cine.frame_shape[1]} px at {cine.spacing[0]:.3g}x{cine.spacing[1]:.3g} mm")
    if dicom_seg and (cine.metadata or {}).get("format") != "dicom":   # before any work
        raise CardiacQuanError("--dicom-seg needs a DICOM input (a DICOM folder or file): the DICOM Segmentation "
                               "references the source images")
    labels = None
    if labels_path:
        if not Path(labels_path).exists():
            raise CardiacQuanError(f"labels not found: {labels_path}")
        labels = read_labels(labels_path, cine)
    elif no_network:
        raise CardiacQuanError("--no-network needs --labels")
    result = quantify(cine, labels=labels, slices=slices, progress=progress,
                      use_quan_net=not geometry_only, backend=backend, precision=precision)
    out = write_outputs(result, output, input_path=input_path, figures=figures, dicom_seg=dicom_seg,
                        bullseye=bullseye)
    return result, out
