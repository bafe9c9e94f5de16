"""Is the whole file there?  Checked before a reader trusts it.

An interrupted copy or download leaves a file whose header promises more data than follows.
Some readers notice (ITK for NRRD/MetaImage), some fill the gap with zeros (ITK for NIfTI),
and a cine with black frames then gives wrong ED/ES with exit code 0.  So every volume format
is checked here the same way, from what its header declares: the bytes of image data
(decompressed, for gzip/zlib-compressed data) must all be present.  NIfTI's header is read in
`nifti.py`; NRRD/NHDR and MetaImage (MHA/MHD) headers are text and read here.
"""
from __future__ import annotations

import bz2
import os
import zipfile
import zlib

import numpy as np

from cardiacquan import CardiacQuanError

CHUNK = 1 << 24
NRRD_TYPE_BYTES = {1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
                   2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                       "unsigned short", "unsigned short int", "uint16", "uint16_t"),
                   4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
                   8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                       "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                       "double")}
MET_TYPE_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                  "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                  "MET_DOUBLE": 8}


def truncated(name, present, declared, decompressed=False) -> CardiacQuanError:
    """The one wording of a short file: `<file> is truncated (N of M bytes)` and what to do."""
    return CardiacQuanError(f"{name} is truncated ({present} of {declared} bytes)"
                            f"{' after decompression' if decompressed else ''}: an interrupted copy or download? "
                            "copy the file again")


def check_not_empty(path):
    if os.path.getsize(path) == 0:
        raise CardiacQuanError(f"{os.path.basename(os.fspath(path))} is empty (0 bytes): an interrupted copy? "
                               "copy the file again")


def chunks(f, name, wbits=None):
    """The bytes of an open file (decompressed: wbits 31 = gzip, 15 = zlib), chunk by chunk.

    A stream cut short simply ends (what was there is counted); damaged data is refused."""
    d = zlib.decompressobj(wbits) if wbits else None
    try:
        while True:
            raw = f.read(CHUNK)
            if not raw:
                return
            if d is None:
                yield raw
                continue
            while raw:                   # bounded output per step: a zip bomb never fills memory
                out = d.decompress(raw, CHUNK)
                if out:
                    yield out
                raw = d.unconsumed_tail
                if d.eof:
                    raw = d.unused_data          # concatenated gzip members
                    d = zlib.decompressobj(wbits) if raw else d
    except zlib.error as e:
        raise CardiacQuanError(f"{name} is corrupted: its compressed data cannot be read ({e}); copy the file again")
    except OSError as e:
        raise CardiacQuanError(f"cannot read {name}: {e.strerror or e}")


def stream_length(f, name, wbits=None) -> int:
    """Bytes readable from the open file `f` from where it stands (decompressed with `wbits`)."""
    return sum(len(c) for c in chunks(f, name, wbits))


def _bz2_chunks(f, name):
    d = bz2.BZ2Decompressor()
    try:
        for raw in iter(lambda: f.read(CHUNK), b""):
            yield d.decompress(raw)
            if d.eof:
                return
    except (OSError, ValueError) as e:
        raise CardiacQuanError(f"{name} is corrupted: its compressed data cannot be read ({e}); copy the file again")


def _text_header(path, name, end):
    """(header lines, byte offset after them) of a text header ending where `end(line)` says."""
    with open(path, "rb") as f:
        raw = f.read(1 << 16)
    lines, pos = [], 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        if nl < 0:
            break
        line = raw[pos:nl].decode("latin-1").rstrip("\r")
        pos = nl + 1
        if end(line):
            return lines + [line], pos
        lines.append(line)
    return lines, None


def _nrrd(path, name):
    low = name.lower()
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"NRRD":
        raise CardiacQuanError(f"{name} is not a NRRD file (no NRRD magic: damaged, or another format with a "
                               f"{os.path.splitext(low)[1]} name)")
    lines, offset = _text_header(path, name, lambda s: s.strip() == "")
    attached = offset is not None
    fields = {}
    for s in lines[1:]:
        if ":" in s and not s.startswith("#") and ":=" not in s:
            k, v = s.split(":", 1)
            fields[k.strip().lower()] = v.strip()
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
    except (KeyError, ValueError):
        raise CardiacQuanError(f"{name}: corrupted NRRD header (no valid 'sizes' field); copy or export the file again")
    nbytes = next((b for b, names in NRRD_TYPE_BYTES.items() if fields.get("type", "").lower() in names), None)
    enc = fields.get("encoding", "raw").lower()
    if nbytes is None or enc not in ("raw", "gzip", "gz", "bzip2", "bz2") or min(sizes, default=0) < 1 \
            or "byte skip" in fields or "line skip" in fields:
        return          # rare layouts: the reader checks them itself
    declared = int(np.prod(sizes, dtype=np.int64)) * nbytes
    data = path
    if not attached and not ("data file" in fields or "datafile" in fields):
        raise CardiacQuanError(f"{name}: the header is incomplete (truncated?): copy or export the file again")
    if "data file" in fields or "datafile" in fields:
        ref = fields.get("data file", fields.get("datafile", ""))
        if not ref or ref.startswith("LIST") or len(ref.split()) > 1:
            return
        data = os.path.join(os.path.dirname(os.fspath(path)), ref)
        offset = 0
        if not os.path.isfile(data):
            raise CardiacQuanError(f"{name} names the data file {ref}, which is missing: keep the header and "
                                   "its data file together")
    with open(data, "rb") as f:
        f.seek(offset)
        if enc == "raw":
            present = max(0, os.path.getsize(data) - offset)
        elif enc in ("gzip", "gz"):
            present = stream_length(f, name, wbits=47)     # gzip or zlib, as NRRD writers differ
        else:
            present = sum(len(c) for c in _bz2_chunks(f, name))
    if present < declared:
        raise truncated(name, present, declared, decompressed=enc != "raw")


def _metaimage(path, name):
    lines, offset = _text_header(path, name, lambda s: s.split("=")[0].strip() == "ElementDataFile")
    if offset is None:
        raise CardiacQuanError(f"{name}: the header is incomplete or damaged (truncated?): copy or export the file again")
    fields = {s.split("=", 1)[0].strip(): s.split("=", 1)[1].strip() for s in lines if "=" in s}
    if "DimSize" not in fields:
        raise CardiacQuanError(f"{name}: corrupted MetaImage header (no DimSize); copy or export the file again")
    try:
        sizes = [int(v) for v in fields["DimSize"].split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        raise CardiacQuanError(f"{name}: corrupted MetaImage header (DimSize {fields['DimSize']!r})")
    nbytes = MET_TYPE_BYTES.get(fields.get("ElementType", ""))
    if nbytes is None or min(sizes, default=0) < 1 or int(fields.get("HeaderSize", "0") or 0) != 0:
        return
    declared = int(np.prod(sizes, dtype=np.int64)) * nbytes * channels
    ref = fields["ElementDataFile"]
    if ref.upper() == "LOCAL":
        data = path
    elif ref.upper().startswith("LIST") or "%" in ref or len(ref.split()) > 1:
        return
    else:
        data, offset = os.path.join(os.path.dirname(os.fspath(path)), ref), 0
        if not os.path.isfile(data):
            raise CardiacQuanError(f"{name} names the data file {ref}, which is missing: keep the header and "
                                   "its data file together")
    compressed = fields.get("CompressedData", "False").lower() == "true"
    with open(data, "rb") as f:
        f.seek(offset)
        present = stream_length(f, name, wbits=15) if compressed else max(0, os.path.getsize(data) - offset)
    if present < declared:
        raise truncated(name, present, declared, decompressed=compressed)


def _npz(path, name):
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise CardiacQuanError(f"{name} is truncated or damaged (not a complete .npz archive: {e}); "
                               "export it again")
    if bad is not None:
        raise CardiacQuanError(f"{name} is damaged ({bad} fails its checksum); export it again")


def check_complete(path):
    """Refuse an empty, truncated or unreadable NRRD/NHDR/MHA/MHD/NPZ file (NIfTI: nifti.py)."""
    path = os.fspath(path)
    check_not_empty(path)
    low, name = path.lower(), os.path.basename(path)
    if low.endswith((".nrrd", ".nhdr")):
        _nrrd(path, name)
    elif low.endswith((".mha", ".mhd")):
        _metaimage(path, name)
    elif low.endswith(".npz"):
        _npz(path, name)
