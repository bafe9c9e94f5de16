"""Where results may be written: checked before any work, so that a long run never ends in a
traceback, and a user's input is never replaced by an output that happens to share its name.

All or nothing: a quantification writes its files into a temporary folder inside OUTDIR
(`staged_output_dir`) and moves them into place only when every one is complete; the earlier
results are set aside first and put back if a move fails, so a failed run leaves OUTDIR as it was.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

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


def _check_replaceable(path):
    """An existing output name must be a file we may replace: not a folder, not write-protected."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CardiacQuanError(f"{path} is a folder where an output file goes: rename or remove it, or choose "
                               "another output folder")
    if os.path.lexists(path):
        mode = os.lstat(path).st_mode
        if stat.S_ISREG(mode) and (not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK)):
            raise CardiacQuanError(f"{path} is read-only (kept from an earlier run?): make it writable "
                                   f"(chmod u+w) or choose another output folder")
        if not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
            raise CardiacQuanError(f"{path} is not a regular file: remove it or choose another output folder")


def prepare_output_dir(outdir, inputs=(), create=True):
    """Check (and with `create`, make) `outdir`; refuse when one of its outputs is an input file,
    a folder, or a write-protected file (every output name is checked before any work)."""
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise CardiacQuanError(f"the output {outdir} is a file; give a folder")
    _refuse_inputs([os.path.join(outdir, n) for n in OUTPUT_FILES], inputs)
    for name in OUTPUT_FILES:
        _check_replaceable(os.path.join(outdir, name))
    _check_folder(outdir, create)


def _commit(stage, outdir, names, remove):
    """Move `names` from `stage` into `outdir` and take `remove` away, all or nothing."""
    previous = Path(tempfile.mkdtemp(prefix="previous-", dir=stage))
    done = []                                   # (name, old one set aside, new one in place)
    try:
        for name in list(names) + [n for n in remove if n not in names]:
            dst, old = outdir / name, os.path.lexists(outdir / name)
            if old:
                os.replace(dst, previous / name)
            done.append([name, old, False])
            if name in names:
                os.replace(stage / name, dst)
                done[-1][2] = True
    except OSError as e:
        for name, old, new in reversed(done):   # put the earlier results back as they were
            if new:
                os.remove(outdir / name)
            if old:
                os.replace(previous / name, outdir / name)
        raise CardiacQuanError(f"cannot move the results into {outdir}: {e.strerror or e}; the earlier results "
                               "there are unchanged")


@contextmanager
def staged_output_dir(outdir, remove=()):
    """A temporary folder inside `outdir` to write into; when the block ends without an error its
    files replace those of `outdir` (and the names in `remove` are taken away), all or nothing.
    On an error nothing in `outdir` changes.  The temporary folder never stays behind."""
    outdir = Path(outdir)
    try:
        stage = Path(tempfile.mkdtemp(prefix=".cardiacquan-partial-", dir=outdir))
    except OSError as e:
        raise CardiacQuanError(f"cannot write in {outdir}: {e.strerror or e}")
    try:
        yield stage
        names = sorted(p.name for p in stage.iterdir() if p.is_file() and not p.name.startswith("."))
        _commit(stage, outdir, names, remove)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def prepare_output_file(path, inputs=(), create=True, suffix=None):
    """Check an output file before the work that makes it: its format (`suffix`, or a label image
    format), a writable folder, and that it is not one of the inputs."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CardiacQuanError(f"the output {path} is a folder; give a file name such as "
                               f"{'labels.nii.gz' if suffix is None else 'out' + suffix}")
    if suffix is None:
        check_writable_name(path)
    elif not path.lower().endswith(suffix):
        raise CardiacQuanError(f"{os.path.basename(path)}: the file name must end with {suffix}")
    _refuse_inputs([path], inputs)
    _check_replaceable(path)
    _check_folder(os.path.dirname(os.path.abspath(path)), create)
