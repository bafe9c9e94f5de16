"""Where results may be written: checked before any work, so that a long run never ends in a
traceback, and a user's input is never replaced by an output that happens to share its name."""
from __future__ import annotations

import os
import tempfile

from cardiacquan import CardiacQuanError
from cardiacquan.contract import OUTPUT_FILES
from cardiacquan.io.volume import check_writable_name


def _same_file(a, b) -> bool:
    a, b = os.fspath(a), os.fspath(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_inputs(outputs, inputs):
    for out in outputs:
        for inp in inputs:
            if inp and os.path.isfile(inp) and _same_file(out, inp):
                raise CardiacQuanError(f"the output {out} would replace the input {inp}: choose another output")


def _existing_ancestor(folder):
    folder = os.path.abspath(os.fspath(folder))
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def _check_folder(folder, create):
    """`folder` can hold new files; created when `create`, else only its nearest existing
    ancestor is tried (a run that fails on its input leaves no empty folder behind)."""
    folder = os.fspath(folder)
    if create:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise CardiacQuanError(f"cannot create the output folder {folder}: {e.strerror}")
        probe = folder
    else:
        probe = _existing_ancestor(folder)
        if not os.path.isdir(probe):
            raise CardiacQuanError(f"cannot create the output folder {folder}: {probe} is a file")
    try:   # a real write: permissions, read-only mounts and pseudo file systems all show here
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise CardiacQuanError(f"cannot write in {probe}: {e.strerror}")


def prepare_output_dir(outdir, inputs=(), create=True):
    """Check (and with `create`, make) `outdir`; refuse when one of its outputs is an input file."""
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise CardiacQuanError(f"the output {outdir} is a file; give a folder")
    _refuse_inputs([os.path.join(outdir, n) for n in OUTPUT_FILES], inputs)
    _check_folder(outdir, create)


def prepare_output_file(path, inputs=(), create=True, suffix=None):
    """Check an output file before the work that makes it: its format (`suffix`, or a label image
    format), a writable folder, and that it is not one of the inputs."""
    path = os.fspath(path)
    if suffix is None:
        check_writable_name(path)
    elif not path.lower().endswith(suffix):
        raise CardiacQuanError(f"{os.path.basename(path)}: the file name must end with {suffix}")
    if os.path.isdir(path):
        raise CardiacQuanError(f"the output {path} is a folder; give a file name such as "
                               f"{'labels.nii.gz' if suffix is None else 'out' + suffix}")
    _refuse_inputs([path], inputs)
    _check_folder(os.path.dirname(os.path.abspath(path)), create)
