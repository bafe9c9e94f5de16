"""Cines and label maps as volume files: NIfTI, NRRD, MetaImage (SimpleITK) and Slicer's .seq.nrrd.

Why SimpleITK: it returns geometry in LPS whatever the format (NIfTI stores RAS), so the
`Cine` conventions hold without per-format sign juggling.  Slicer's `.seq.nrrd` (a NRRD with a
`list` axis = sequence index) is read and written with pynrrd because ITK does not know the
list axis or the `axis N index values` field that carries the frame times.

Geometry: ITK index axes (x, y, z[, t]) map to cine (column, row, slice[, time]).  Slices keep
the file's order (so label files map 1:1 onto the cine); `origins[z]` carries it, and
`direction[:, 2]` is always the cross product of the in-plane axes (see cine.py).  The file's own
3x3 direction (which may be mirrored, det < 0) is kept in metadata['file_direction'] and is
rebuilt from the origins on writing.

Times: NIfTI/NRRD/MHA store one time step; it is taken as milliseconds when the header unit
says so or the value is a plausible cine frame interval (5-300 ms; ITK labels every NIfTI time
axis "seconds").  Otherwise times are evenly spaced placeholders with times_known=False.
"""
from __future__ import annotations

import os
import tempfile
import warnings as _warnings

import numpy as np
import SimpleITK as sitk

from cardiacquan import CardiacQuanError
from cardiacquan.io.cine import Cine
from cardiacquan.io.integrity import check_complete
from cardiacquan.io.nifti import check_complete as check_nifti_complete
from cardiacquan.io.nifti import geometry_notes, orthonormal_sform, read_array

NIFTI_TIME_UNITS = {8: "s", 16: "ms", 24: "us"}
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _plausible_ms(step, unit):
    """Frame interval in ms, or None when the step cannot be read as a cardiac frame interval."""
    scale = {"s": 1000.0, "sec": 1000.0, "ms": 1.0, "msec": 1.0, "us": 1e-3, "usec": 1e-3}.get(unit)
    for cand in ([step * scale] if scale else []) + [step]:
        if 5.0 <= cand <= 300.0:
            return cand
    return None


def _cine_from_grid(arr, origin, spacing3, dir3, times, known, source, meta, thickness="z"):
    """arr (T,Z,R,C); ITK-style origin/spacing (x, y, z)/direction columns (x, y, z).

    Volume files hold no slice thickness: the file's slice spacing stands in for it (so a
    Z == 1 cine written back keeps its z spacing)."""
    dir3 = np.asarray(dir3, float).reshape(3, 3)
    Z = arr.shape[1]
    origins = np.asarray(origin, float)[None, :] + np.arange(Z)[:, None] * spacing3[2] * dir3[:, 2][None, :]
    normal = np.cross(dir3[:, 0], dir3[:, 1])
    meta = dict(meta, file_direction=dir3.copy(), warnings=meta.get("warnings", []))
    return Cine(image=arr, spacing=(spacing3[1], spacing3[0]), origins=origins,
                direction=np.column_stack([dir3[:, 0], dir3[:, 1], normal / np.linalg.norm(normal)]),
                times_ms=times, times_known=known, slice_thickness=float(spacing3[2]) if thickness == "z" else thickness,
                source=source, metadata=meta)


def _time_axis(n, step, t0, unit, meta):
    ms = _plausible_ms(step, unit) if n > 1 else None
    if ms is None:
        if n > 1:
            meta["warnings"].append(f"time step {step:g} ({unit or 'no unit'}) is not a frame interval in ms: times unknown")
        return None, False
    factor = ms / step
    return t0 * factor + np.arange(n) * ms, True


def _nrrd_list_axis(path):
    if not path.lower().endswith((".nrrd", ".nhdr")):
        return None
    try:
        import nrrd   # optional (pynrrd): only .nrrd / .seq.nrrd files need it
        hdr = nrrd.read_header(path)
    except Exception as e:
        raise CardiacQuanError(f"cannot read {path} as NRRD: {e}".splitlines()[0])
    kinds = [str(k).lower() for k in hdr.get("kinds", [])]
    return kinds.index("list") if "list" in kinds else None


def read_volume(path, third_axis_is_time: bool = False) -> Cine:
    """Read a NIfTI/NRRD/MetaImage cine (4-D x,y,z,t) or stack (3-D); Slicer sequences too."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CardiacQuanError(f"no such file: {path}")
    name = os.path.basename(path)
    is_nifti = path.lower().endswith((".nii", ".nii.gz"))
    notes, disagree, own = [], None, False
    if is_nifti:       # size, NaN/inf and sform/qform checked before ITK (which hides all three)
        hdr = check_nifti_complete(path)
        own, notes, disagree = geometry_notes(path, hdr)
    else:
        check_complete(path)
    if _nrrd_list_axis(path) is not None:
        return read_sequence_nrrd(path)
    img = _nifti_orthonormalised(path, hdr) if own else _itk_read(path)
    dim, ncomp = img.GetDimension(), img.GetNumberOfComponentsPerPixel()
    if ncomp != 1:
        raise CardiacQuanError(f"{name} has {ncomp} values per pixel (colour/vector); a grey-level cine is needed")
    if dim == 2:
        raise CardiacQuanError(f"{name}: a single 2-D image is not a cine; give a 4-D (x, y, z, t) file, or a 3-D "
                               "one (one slice over time with --third-axis-is-time)")
    if dim not in (3, 4):
        raise CardiacQuanError(f"{name} has {dim} dimensions; expected 3-D (x,y,z) or 4-D (x,y,z,t)")
    if disagree is not None:
        d_itk = np.asarray(img.GetDirection(), float).reshape(dim, dim)[:3, :3]
        used = min(disagree, key=lambda k: np.abs(RAS_TO_LPS @ disagree[k] - d_itk).max())
        notes.append(f"{name}: the sform and the qform disagree (orientation or origin); the {used}'s geometry was "
                     "used, as ITK and 3D Slicer read it: check the orientation")
    arr = sitk.GetArrayFromImage(img)            # (t,) z, y, x
    sp, org = img.GetSpacing(), img.GetOrigin()
    d = np.asarray(img.GetDirection(), float).reshape(dim, dim)[:3, :3]
    unit = None
    if img.HasMetaDataKey("xyzt_units"):
        unit = NIFTI_TIME_UNITS.get(int(img.GetMetaData("xyzt_units")) & 0x38)
    meta = {"format": os.path.basename(path).split(".", 1)[-1].lower(), "warnings": notes}
    if dim == 4:
        times, known = _time_axis(arr.shape[0], sp[3], org[3], unit, meta)
        return _cine_from_grid(arr, org[:3], sp[:3], d, times, known, path, meta)
    if third_axis_is_time:
        times, known = _time_axis(arr.shape[0], sp[2], 0.0, unit, meta)
        meta["time_axis_grid"] = (tuple(org), tuple(sp), d.ravel().tolist())   # written back as read
        return _cine_from_grid(arr[:, None], org, (sp[0], sp[1], 1.0), d, times, known, path, meta, thickness=None)
    meta["single_frame_hint"] = (f"{name} is a 3-D image ({arr.shape[2]}x{arr.shape[1]}x{arr.shape[0]}): if its third "
                                 "axis is time (one slice over the cycle), add --third-axis-is-time")
    return _cine_from_grid(arr[None], org, sp, d, None, False, path, meta)


def _itk_read(path):
    """SimpleITK's reader; its own warnings (sform scales...) are said in our words instead."""
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        return sitk.ReadImage(path)
    except RuntimeError as e:
        raise CardiacQuanError(f"cannot read {os.path.basename(path)} as an image: "
                               f"{str(e).strip().splitlines()[-1][:200]}; is it damaged, or another format?")
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(True)


def _nifti_orthonormalised(path, hdr):
    """A NIfTI whose only transform is a nearly orthonormal sform, which ITK refuses: the pixels
    and header read here, the direction orthonormalised (nifti.orthonormal_sform), as an ITK image."""
    arr = read_array(path, hdr)
    origin, spacing, direction = orthonormal_sform(hdr)
    img = sitk.GetImageFromArray(arr, isVector=False)
    n = img.GetDimension()
    d = np.eye(n)
    d[:3, :3] = RAS_TO_LPS @ direction
    img.SetDirection(d.ravel().tolist())
    img.SetOrigin(tuple(RAS_TO_LPS @ origin) + ((float(hdr["toffset"]),) if n == 4 else ()))
    img.SetSpacing(tuple(spacing[:n]))
    img.SetMetaData("xyzt_units", str(int(hdr["xyzt_units"])))
    return img


def read_sequence_nrrd(path) -> Cine:
    """Read Slicer's volume sequence (.seq.nrrd): a `list` axis (first or last) + 3 spatial axes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CardiacQuanError(f"no such file: {path}")
    check_complete(path)
    try:
        import nrrd   # optional (pynrrd): only .nrrd / .seq.nrrd files need it
        data, hdr = nrrd.read(path, index_order="F")
    except Exception as e:
        raise CardiacQuanError(f"cannot read {os.path.basename(path)} as NRRD: {e}".splitlines()[0])
    kinds = [str(k).lower() for k in hdr.get("kinds", [])]
    if data.ndim != 4 or kinds.count("list") != 1:
        raise CardiacQuanError(f"{os.path.basename(path)} is not a volume sequence (needs one 'list' axis and 3 spatial axes, "
                               f"got sizes {list(data.shape)} kinds {kinds})")
    L = kinds.index("list")
    spatial = [a for a in range(4) if a != L]
    arr = np.moveaxis(data, L, 0).transpose(0, 3, 2, 1)  # (T, k, j, i)
    if "space directions" in hdr:
        sd = np.asarray(hdr["space directions"], float)[spatial]
        sp = np.linalg.norm(sd, axis=1)
        d = (sd / sp[:, None]).T
    else:
        sp = np.asarray(hdr.get("spacings", [1.0] * 4), float)[spatial]
        d = np.eye(3)
    org = np.asarray(hdr.get("space origin", np.zeros(3)), float)
    if "right-anterior" in str(hdr.get("space", "")).lower():
        d, org = RAS_TO_LPS @ d, RAS_TO_LPS @ org
    meta = {"format": "seq.nrrd", "warnings": []}
    values = str(hdr.get(f"axis {L} index values", "")).split()
    units = hdr.get("units") or []
    unit = str(units[L]).strip().lower() if len(units) > L else ""
    times, known = None, False
    try:
        vals = np.asarray([float(v) for v in values])
    except ValueError:
        vals = np.array([])
    if len(vals) == arr.shape[0]:
        if unit in ("s", "sec", "second", "seconds"):
            times, known = vals * 1000.0, True
        elif unit in ("ms", "msec") or (not np.array_equal(vals, np.arange(len(vals))) and arr.shape[0] > 1):
            times, known = vals, True
            if not unit:
                meta["warnings"].append("sequence index has no unit: assumed milliseconds")
    return _cine_from_grid(arr, org, sp, d, times, known, path, meta)


# -- writing ----------------------------------------------------------------------------
def _write_geometry(cine):
    """ITK-style (origin, spacing (x,y,z), direction columns) reproducing the cine's slices."""
    d = np.eye(3) if cine.direction is None else np.asarray(cine.direction, float)
    col, row = d[:, 0], d[:, 1]
    normal = np.cross(col, row)
    normal /= np.linalg.norm(normal)
    Z = cine.n_slices
    if Z > 1:
        step = (cine.origins[-1] - cine.origins[0]) / (Z - 1)
        dz = float(np.linalg.norm(step))
        if dz < 1e-6:
            raise CardiacQuanError("the cine's slices share one position: cannot write them as a volume")
        axis = step / dz
        if abs(abs(axis @ normal) - 1.0) > 1e-4:          # sheared stack: keep the slice-normal axis
            axis = normal * np.sign(axis @ normal)
            dz = abs(float(step @ normal))
            _warnings.warn("slice origins are not along the normal; written on a grid along the normal")
        fit = cine.origins[0] + np.arange(Z)[:, None] * step[None, :]
        if np.abs(fit - cine.origins).max() > 0.05 * dz:
            _warnings.warn("slices are unevenly spaced; a volume file stores their mean spacing")
    else:
        axis, dz = normal, float(cine.slice_thickness or 1.0)
    return cine.origins[0], (cine.spacing[1], cine.spacing[0], dz), np.column_stack([col, row, axis])


def _mean_step(times):
    return float(np.mean(np.diff(times))) if len(times) > 1 else 1.0


def _write_sitk(arr, cine, path):
    origin, sp, d = _write_geometry(cine)
    T = arr.shape[0]
    grid = (cine.metadata or {}).get("time_axis_grid")
    if grid is not None and arr.shape[1] == 1:         # one slice over time read from a 3-D file
        img = sitk.GetImageFromArray(arr[:, 0])
        img.SetOrigin(grid[0])
        img.SetSpacing(grid[1])
        img.SetDirection(grid[2])
    elif T > 1:
        img = sitk.JoinSeries([sitk.GetImageFromArray(a) for a in arr])  # 4-D: the 4x4 direction is set below
        d4 = np.eye(4)
        d4[:3, :3] = d
        img.SetDirection(d4.ravel().tolist())
        img.SetOrigin(tuple(origin) + (float(cine.times_ms[0]),))
        img.SetSpacing(tuple(sp) + (_mean_step(cine.times_ms) if cine.times_known else 1.0,))
    else:
        img = sitk.GetImageFromArray(arr[0])
        img.SetDirection(d.ravel().tolist())
        img.SetOrigin(tuple(origin))
        img.SetSpacing(sp)
    try:
        sitk.WriteImage(img, path, useCompression=path.lower().endswith(".gz"))
    except RuntimeError as e:
        raise CardiacQuanError(f"cannot write {path}: {str(e).strip().splitlines()[-1][:200]}")


def _write_seq_nrrd(arr, cine, path, labelmap):
    """Slicer's classic layout: list axis first, then i, j, k; LPS; times in `axis 0 index values`."""
    origin, sp, d = _write_geometry(cine)
    data = arr.transpose(0, 3, 2, 1)                     # (T, C, R, Z) = list, i, j, k
    sd = np.vstack([np.full(3, np.nan), (d * np.asarray(sp)[None, :]).T])
    hdr = {"space": "left-posterior-superior", "space directions": sd, "kinds": ["list", "domain", "domain", "domain"],
           "labels": ["time", "", "", ""], "units": ["ms" if cine.times_known else "", "", "", ""],
           "space origin": np.asarray(origin, float), "encoding": "gzip",
           "axis 0 index type": "numeric",
           "axis 0 index values": " ".join(f"{t:.6g}" for t in cine.times_ms),
           "DataNodeClassName": "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"}
    import nrrd   # optional (pynrrd): only .nrrd / .seq.nrrd files need it
    nrrd.write(path, data, hdr, index_order="F")


SINGLE_FILE_SUFFIXES = (".seq.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")
WRITABLE_SUFFIXES = SINGLE_FILE_SUFFIXES + (".nhdr", ".mhd")


def check_writable_name(path):
    """Refuse an output name whose format this module cannot write."""
    if not os.fspath(path).lower().endswith(WRITABLE_SUFFIXES):
        raise CardiacQuanError(f"cannot write {os.path.basename(path)}: use .nii, .nii.gz, .nrrd, .seq.nrrd or .mha")


def _write(arr, cine, path, labelmap):
    """Write to exactly `path`.

    Single-file formats go through a temporary file renamed at the end: ITK rewrites some names
    (`x.nii.nii.gz` would land on `x.nii.gz`, possibly the input), and a crash never leaves a
    half-written file behind.  Header + data formats (.nhdr, .mhd) are written in place."""
    path = os.fspath(path)
    low = path.lower()
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CardiacQuanError(f"output folder does not exist: {folder}")
    if os.path.isdir(path):
        raise CardiacQuanError(f"cannot write {path}: it is a folder")
    check_writable_name(path)
    if low.endswith((".nrrd", ".nhdr")) and (arr.shape[0] > 1 or low.endswith(".seq.nrrd")):
        writer = lambda p: _write_seq_nrrd(arr, cine, p, labelmap)     # noqa: E731
    else:
        writer = lambda p: _write_sitk(arr, cine, p)                   # noqa: E731
    suffix = next((x for x in SINGLE_FILE_SUFFIXES if low.endswith(x)), None)
    if suffix is None:
        writer(path)
        return path
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cardiacquan-", suffix=suffix, dir=folder)
    except OSError as e:
        raise CardiacQuanError(f"cannot write in {folder}: {e.strerror}")
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_cine(cine: Cine, path, dtype=np.float32) -> str:
    """Write a cine as 4-D NIfTI/MHA (3-D when T == 1) or a Slicer .seq.nrrd.

    dtype: the stored pixel type; float32 by default, int16 for a scanner's integer pixels
    (half the size, and gzip packs them far better)."""
    image = np.asarray(cine.image)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        if image.min() < info.min or image.max() > info.max or not np.array_equal(image, np.round(image)):
            raise CardiacQuanError(f"the cine's pixels are not {np.dtype(dtype).name} values")
    return _write(image.astype(dtype), cine, path, labelmap=False)


def write_labels(labels, cine: Cine, path) -> str:
    """Write (T,Z,R,C) labels in the cine's geometry (NRRD with T > 1: Slicer labelmap sequence)."""
    labels = np.asarray(labels)
    if labels.shape != cine.image.shape:
        raise CardiacQuanError(f"labels are {'x'.join(map(str, labels.shape))}, "
                               f"the cine is {'x'.join(map(str, cine.image.shape))}")
    return _write(labels.astype(np.uint8), cine, path, labelmap=True)


def read_labels(path, cine: Cine) -> np.ndarray:
    """Read a label file written by write_labels (or a 3-D label image when T or Z is 1)."""
    path = os.fspath(path)
    lab = read_volume(path)
    arr = lab.image
    T, Z, R, C = cine.image.shape
    if arr.shape != (T, Z, R, C):
        if arr.shape[0] == 1 and Z == 1 and arr.shape[1:] == (T, R, C):   # 3-D file whose z axis is time
            arr = arr[0][:, None]
        elif arr.shape[0] == 1 and T == 1 and arr.shape[1:] == (Z, R, C):
            pass
        else:
            shape = arr.shape[1:] if arr.shape[0] == 1 else arr.shape
            raise CardiacQuanError(f"labels are {'x'.join(map(str, shape))}, the cine is {'x'.join(map(str, (T, Z, R, C)))}")
        arr = arr.reshape(T, Z, R, C)
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or arr.min() < 0 or arr.max() > 255:
        raise CardiacQuanError(f"{os.path.basename(path)} is not a label map (values must be integers 0-255)")
    for note in _grid_differences(lab, cine):
        cine.metadata.setdefault("warnings", []).append(f"{os.path.basename(path)}: {note}; "
                                                          "labels were matched to the cine pixel by pixel")
    return arr.astype(np.uint8)


def _grid_differences(lab: Cine, cine: Cine) -> list:
    """How a label file's grid differs from the cine's (spacing, position, orientation)."""
    out = []
    if not np.allclose(lab.spacing, cine.spacing, rtol=0.01):
        out.append(f"pixel spacing {tuple(round(float(v), 4) for v in lab.spacing)} mm differs from the cine's "
                   f"{tuple(round(float(v), 4) for v in cine.spacing)} mm")
    if lab.direction is not None and cine.direction is not None and \
            np.abs(np.asarray(lab.direction)[:, :2] - np.asarray(cine.direction)[:, :2]).max() > 1e-3:
        out.append("orientation differs from the cine's")
    if lab.origins is not None and cine.origins is not None and len(lab.origins) and len(cine.origins) and \
            np.linalg.norm(np.asarray(lab.origins)[0] - np.asarray(cine.origins)[0]) > 0.5 * min(cine.spacing):
        out.append("position (origin) differs from the cine's")
    return out
