"""What a NIfTI header declares, read without trusting the file: size, pixel type, geometry.

Why a header reader of our own beside SimpleITK: ITK reads a file whose data ends early as
if the missing part were zeros (an interrupted copy quantified as a cine with black frames),
turns NaN into 0, and refuses the slightly non-orthonormal sform that several scanners'
converters write (the M&Ms multi-vendor data).  Here the header is parsed (NIfTI-1 and -2,
either byte order), the data the header declares is compared with what the file holds
(decompressed for .nii.gz), and the sform/qform are checked so that the caller can refuse a
degenerate one and read a nearly orthonormal one with ITK's permissive mode.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from cardiacquan import CardiacQuanError
from cardiacquan.io.integrity import check_not_empty, chunks, truncated

#: NIfTI datatype code -> numpy kind (complex and RGB are listed so that they are named, then refused)
DATATYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4",
             1024: "i8", 1280: "u8", 32: "c8", 128: "V3", 1792: "c16", 2304: "V4"}
#: largest |R^T R - I| entry (cosine of the angle error between two axes, about 2.9 degrees)
#: up to which a non-orthonormal sform/qform direction is orthonormalised; above: refused
ORTHONORMAL_TOLERANCE = 0.05
#: smallest |det| of the normalised direction below which a transform is degenerate (axes parallel)
DEGENERATE_DET = 1e-3


def _read_head(path, name):
    if os.fspath(path).lower().endswith(".gz"):
        with open(path, "rb") as f:
            start = f.read(4)
        if start[:2] != b"\x1f\x8b":
            if start in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c", b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c"):
                raise CardiacQuanError(f"{name} is an uncompressed NIfTI named .gz: rename it to .nii (or "
                                       "compress it with gzip) and try again")
            raise CardiacQuanError(f"cannot read {name}: it is not gzip-compressed although its name ends in .gz "
                                   "(damaged, or another format)")
    head = b""
    with open(path, "rb") as f:
        for chunk in chunks(f, name, wbits=31 if name.lower().endswith(".gz") else None):
            head += chunk
            if len(head) >= 544:
                break
    return head


def read_header(path) -> dict:
    """The header fields this project uses; CardiacQuanError for a file that is no NIfTI."""
    path = os.fspath(path)
    name = os.path.basename(path)
    check_not_empty(path)
    head = _read_head(path, name)
    for e in "<>":
        size = struct.unpack(e + "i", head[:4])[0] if len(head) >= 4 else 0
        if size in (348, 540):
            break
    else:
        raise CardiacQuanError(f"{name} is not a NIfTI file (no NIfTI header: damaged, or another format "
                               "with a .nii name); give a NIfTI, NRRD, MHA or DICOM cine")
    if len(head) < size:
        raise truncated(name, len(head), size, name.lower().endswith(".gz"))
    u = lambda fmt, off: struct.unpack_from(e + fmt, head, off)     # noqa: E731
    if size == 348:
        h = dict(version=1, dim=u("8h", 40), datatype=u("h", 70)[0], bitpix=u("h", 72)[0], pixdim=u("8f", 76),
                 vox_offset=u("f", 108)[0], scl_slope=u("f", 112)[0], scl_inter=u("f", 116)[0], toffset=u("f", 132)[0],
                 xyzt_units=head[123], qform_code=u("h", 252)[0], sform_code=u("h", 254)[0],
                 quatern=u("3f", 256), qoffset=u("3f", 268), srow=np.array(u("12f", 280), float).reshape(3, 4),
                 magic=head[344:348])
    else:
        h = dict(version=2, dim=u("8q", 16), datatype=u("h", 12)[0], bitpix=u("h", 14)[0], pixdim=u("8d", 104),
                 vox_offset=u("q", 168)[0], scl_slope=u("d", 176)[0], scl_inter=u("d", 184)[0], toffset=u("d", 216)[0],
                 xyzt_units=u("i", 500)[0], qform_code=u("i", 344)[0], sform_code=u("i", 348)[0],
                 quatern=u("3d", 352), qoffset=u("3d", 376), srow=np.array(u("12d", 400), float).reshape(3, 4),
                 magic=head[4:8])
    h.update(endian=e, header_size=size)
    ndim = h["dim"][0]
    if not 1 <= ndim <= 7 or min(h["dim"][1:1 + ndim]) < 1:
        raise CardiacQuanError(f"{name}: corrupted NIfTI header (dimensions {list(h['dim'][:ndim + 1 if 0 < ndim < 8 else 8])}); "
                               "copy or export the file again")
    if h["datatype"] not in DATATYPES:
        raise CardiacQuanError(f"{name}: corrupted NIfTI header (unknown datatype code {h['datatype']})")
    if not np.isfinite(h["vox_offset"]) or h["vox_offset"] < 0:
        raise CardiacQuanError(f"{name}: corrupted NIfTI header (data offset {h['vox_offset']})")
    h["shape"] = tuple(int(v) for v in h["dim"][1:1 + ndim])
    h["dtype"] = np.dtype(e + DATATYPES[h["datatype"]]) if DATATYPES[h["datatype"]][0] != "V" else \
        np.dtype(DATATYPES[h["datatype"]])
    h["data_bytes"] = int(np.prod(h["shape"], dtype=np.int64)) * h["dtype"].itemsize
    h["offset"] = max(int(h["vox_offset"]), size + 4 if h["version"] == 1 else size)
    return h


def scan_data(path, h) -> tuple:
    """(bytes of data present after the header, NaN/inf values among them), reading the whole
    (decompressed) file once.  CardiacQuanError when the gzip stream is damaged."""
    name = os.path.basename(os.fspath(path))
    float_kind = h["dtype"].kind == "f"
    present, bad, pos, carry = 0, 0, 0, b""
    with open(path, "rb") as f:
        for chunk in chunks(f, name, wbits=31 if name.lower().endswith(".gz") else None):
            start = max(0, h["offset"] - pos)
            pos += len(chunk)
            data = chunk[start:]
            present += len(data)
            if float_kind and data:
                data = carry + data
                cut = len(data) - len(data) % h["dtype"].itemsize
                bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(data[:cut], h["dtype"]))))
                carry = data[cut:]
    return present, bad


def check_complete(path) -> dict:
    """The header, after refusing a file whose data is shorter than the header declares (and,
    for float data, one holding NaN/inf, which ITK would turn into 0).  Returns the header."""
    h = read_header(path)
    name = os.path.basename(os.fspath(path))
    if not os.fspath(path).lower().endswith(".gz"):
        present = max(0, os.path.getsize(path) - h["offset"])
        bad = 0
        if h["dtype"].kind == "f" and present >= h["data_bytes"]:
            present, bad = scan_data(path, h)
    else:
        present, bad = scan_data(path, h)
    if present < h["data_bytes"]:
        raise truncated(name, h["offset"] + present, h["offset"] + h["data_bytes"], name.lower().endswith(".gz"))
    if bad:
        raise CardiacQuanError(f"the image holds {bad} NaN/infinite pixel values; fix or re-export the image")
    return h


def _quaternion_matrix(h):
    b, c, d = h["quatern"]
    a2 = 1.0 - (b * b + c * c + d * d)
    a = np.sqrt(a2) if a2 > 1e-7 else 0.0
    r = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                  [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                  [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c]])
    qfac = -1.0 if h["pixdim"][0] < 0 else 1.0
    return r * np.array([1.0, 1.0, qfac])[None, :]


def direction_quality(m) -> tuple:
    """(largest |R^T R - I| entry, |det R|) of a 3x3 matrix whose columns are normalised."""
    m = np.asarray(m, float)
    norms = np.linalg.norm(m, axis=0)
    if not np.all(np.isfinite(m)) or norms.min() <= 1e-12:
        return np.inf, 0.0
    r = m / norms[None, :]
    return float(np.abs(r.T @ r - np.eye(3)).max()), float(abs(np.linalg.det(r)))


def transforms(h) -> dict:
    """{'sform'|'qform': (3x3 matrix, origin)} in RAS, for the transforms whose code is set."""
    out = {}
    if h["sform_code"] > 0:
        out["sform"] = (h["srow"][:, :3], h["srow"][:, 3])
    if h["qform_code"] > 0:
        sp = np.abs(np.asarray(h["pixdim"][1:4], float))
        sp[sp == 0] = 1.0
        out["qform"] = (_quaternion_matrix(h) * sp[None, :], np.asarray(h["qoffset"], float))
    return out


def geometry_notes(path, h) -> tuple:
    """(read permissively, warnings, {'sform', 'qform': RAS direction} when the two disagree).

    A transform whose direction is degenerate, or further from orthonormal than
    ORTHONORMAL_TOLERANCE, is refused when it is the only one; a nearly orthonormal sform is
    read with its direction orthonormalised (ITK's permissive mode), and said so."""
    name = os.path.basename(os.fspath(path))
    notes, permissive = [], False
    tf = transforms(h)
    if "sform" in tf:
        dev, det = direction_quality(tf["sform"][0])
        if det < DEGENERATE_DET or not np.isfinite(dev):
            if "qform" not in tf:
                raise CardiacQuanError(f"{name}: the sform is degenerate (its axes are parallel or zero), so the "
                                       "image cannot be placed in space; re-export it with a valid orientation")
            notes.append(f"{name}: the sform is degenerate; the qform's geometry was used")
        elif dev > 1e-4 and "qform" not in tf:
            if dev > ORTHONORMAL_TOLERANCE:
                raise CardiacQuanError(
                    f"{name}: the sform is sheared (its axes are {np.degrees(np.arcsin(min(dev, 1.0))):.1f} degrees from "
                    f"perpendicular; at most {np.degrees(np.arcsin(ORTHONORMAL_TOLERANCE)):.1f} is corrected): the pixels "
                    "do not lie on a rectangular grid; resample the image onto one (e.g. in 3D Slicer) and try again")
            permissive = True
            notes.append(f"{name}: the sform is not orthonormal (axes {np.degrees(np.arcsin(dev)):.2f} degrees from "
                         f"perpendicular, within the {np.degrees(np.arcsin(ORTHONORMAL_TOLERANCE)):.1f} degrees corrected); "
                         "its direction was orthonormalised (nearest rotation), the pixel spacing is the header's pixdim")
        elif dev > 1e-4:
            notes.append(f"{name}: the sform is not orthonormal ({np.degrees(np.arcsin(min(dev, 1.0))):.2f} degrees "
                         "from perpendicular): the qform's geometry was used")
    disagree = None
    if "sform" in tf and "qform" in tf and not notes:
        (ms, os_), (mq, oq) = tf["sform"], tf["qform"]
        dir_s = ms / np.linalg.norm(ms, axis=0)[None, :]
        dir_q = mq / np.linalg.norm(mq, axis=0)[None, :]
        if np.abs(dir_s - dir_q).max() > 1e-3 or np.linalg.norm(np.asarray(os_) - np.asarray(oq)) > 0.1:
            disagree = {"sform": dir_s, "qform": dir_q}
    return permissive, notes, disagree


def read_array(path, h) -> np.ndarray:
    """The pixels as ITK returns them ((t,) z, y, x; scl_slope/scl_inter applied), for a file
    ITK will not read (a nearly orthonormal sform); check_complete(path) has passed."""
    name = os.path.basename(os.fspath(path))
    with open(path, "rb") as f:
        raw = b"".join(chunks(f, name, wbits=31 if name.lower().endswith(".gz") else None))
    shape = list(h["shape"])
    while len(shape) > 3 and shape[-1] == 1:
        shape.pop()
    if h["dtype"].kind not in "iuf" or len(shape) > 4:
        raise CardiacQuanError(f"{name}: {len(shape)}-D {h['dtype']} data; a 3-D or 4-D grey-level image is needed")
    arr = np.frombuffer(raw, h["dtype"], count=int(np.prod(shape)), offset=h["offset"]).reshape(shape[::-1])
    slope, inter = float(h["scl_slope"]), float(h["scl_inter"])
    if np.isfinite(slope) and slope != 0 and (slope, inter) != (1.0, 0.0):
        return arr.astype(np.float32) * np.float32(slope) + np.float32(inter)
    return arr.astype(arr.dtype.newbyteorder("="))


def orthonormal_sform(h) -> tuple:
    """(origin, spacing, direction) in RAS from a nearly orthonormal sform: the direction is the
    nearest rotation (polar decomposition) of the normalised axes, the spacing the header's pixdim."""
    m = h["srow"][:, :3]
    norms = np.linalg.norm(m, axis=0)
    u, _, vt = np.linalg.svd(m / norms[None, :])
    n = len(h["shape"])
    pix = np.abs(np.asarray(h["pixdim"][1:1 + n], float))
    spacing = [float(p) if p > 0 else (float(norms[i]) if i < 3 else 1.0) for i, p in enumerate(pix)]
    return np.asarray(h["srow"][:, 3], float), spacing, u @ vt
