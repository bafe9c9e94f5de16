"""A corpus of awkward inputs, generated on the fly, each with the outcome it must have.

Made the way hospital data arrives: from the exact-truth phantom (volume files in every
format and pixel type, and phantom DICOM series) and from the real Sunnybrook DICOM study in
../shared/data (skipped, with the reason, where that is absent).  Nothing is committed but this
generator.  Every case is one command line (`cardiacquan quantify ...` or `segment ...`) and
declares: its class, `ok` or `refuse`, a pattern the CQ-ERROR line (refusals) or a
summary.json warning (successes) must match, and optionally a check of summary.json.  Runs that
must succeed give `--labels` (the segmentation network is never loaded), so the corpus is fast.

`build(root)` returns the cases; Testing/test_bad_input_corpus.py runs them.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import nrrd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless,
                         generate_uid)

from cardiacquan.contract import save_cine_npz, save_results_npz
from cardiacquan.io.cine import Cine
from cardiacquan.io.dicom import read_dicom_cine
from cardiacquan.io.volume import write_cine, write_labels
from cardiacquan.synthetic.phantom import make_phantom

SUNNYBROOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                          "sunnybrook", "dicoms", "SCD0000101")
MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
CLASSES = ("file damage", "dicom structure", "geometry", "values", "headers", "labels", "outputs")


@dataclass
class Case:
    name: str
    cls: str
    expect: str                          # 'ok' or 'refuse'
    args: list                           # command line after `cardiacquan`; OUT stands for the output
    pattern: str = ""                    # regex: the CQ-ERROR reason, or a summary.json warning
    inputs: list = field(default_factory=list)      # files/folders whose bytes must not change
    check: Optional[Callable] = None     # check(summary dict) for successes
    earlier: bool = True                 # OUT holds results of an earlier run that a refusal must keep
    skip: str = ""                       # reason this case cannot run here
    prepare: str = ""                    # what the runner does to OUT first (readonly-summary, folder-summary...)


# -- phantom material --------------------------------------------------------------------
def _phantom(**kw):
    return make_phantom(seed=3, n_frames=6, n_slices=2, size=(64, 64), spacing=2.5, noise=0.02, **kw)


def _variant(cine, **changes):
    d = dict(image=cine.image, spacing=cine.spacing, origins=cine.origins, direction=cine.direction,
             times_ms=cine.times_ms, times_known=cine.times_known, slice_thickness=cine.slice_thickness,
             source="", metadata={})
    d.update(changes)
    return Cine(**d)


def _cut(src, dst, keep):
    raw = open(src, "rb").read()
    n = keep(len(raw)) if callable(keep) else keep
    open(dst, "wb").write(raw[:n])
    return dst


def _poke(src, dst, offset, data):
    raw = bytearray(open(src, "rb").read())
    offset = offset if offset >= 0 else len(raw) + offset
    raw[offset:offset + len(data)] = data
    open(dst, "wb").write(bytes(raw))
    return dst


def _nifti_edit(src, dst, **fields):
    """Copy an uncompressed NIfTI-1 file with header fields changed (offsets of the NIfTI-1 header)."""
    raw = bytearray(open(src, "rb").read())
    spec = {"qform_code": (252, "<h"), "sform_code": (254, "<h"), "scl_slope": (112, "<f"), "scl_inter": (116, "<f"),
            "datatype": (70, "<h"), "bitpix": (72, "<h"), "xyzt_units": (123, "<B")}
    for k, v in fields.items():
        if k == "srow":
            raw[280:328] = struct.pack("<12f", *np.asarray(v, float).ravel())
        elif k == "dim":
            raw[40:56] = struct.pack("<8h", *v)
        elif k == "pixdim":
            raw[76:108] = struct.pack("<8f", *v)
        else:
            off, fmt = spec[k]
            raw[off:off + struct.calcsize(fmt)] = struct.pack(fmt, v)
    open(dst, "wb").write(bytes(raw))
    return dst


def _srow(path):
    return np.array(struct.unpack("<12f", open(path, "rb").read()[280:328]), float).reshape(3, 4)


def _write_typed(arr_tzyx, cine, path, dtype):
    """A 4-D NIfTI of the cine's geometry with the pixels stored as `dtype` (written by ITK)."""
    tmp = path + ".f.nii"
    write_cine(_variant(cine, image=arr_tzyx.astype(np.float32)), tmp)
    img = sitk.ReadImage(tmp)
    os.remove(tmp)
    out = sitk.GetImageFromArray(arr_tzyx.astype(dtype), isVector=False)
    out.CopyInformation(img)
    sitk.WriteImage(out, path)
    return path


# -- DICOM writing -----------------------------------------------------------------------
def _save(ds, path, sop_class=MR, syntax=ExplicitVRLittleEndian):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def _mr(arr, ipp, iop, spacing, trigger, instance, series=("1.2.826.0.1.3680043.8.498.1", 5), desc="sax cine"):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = MR, generate_uid()
    ds.Modality, ds.Manufacturer, ds.PatientID = "MR", "CORPUS", "P0"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(arr, np.int16).tobytes()
    ds.ImagePositionPatient = [float(v) for v in ipp]
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.PixelSpacing, ds.SliceThickness = [float(v) for v in spacing], 8.0
    ds.SeriesInstanceUID, ds.SeriesNumber = series
    ds.SeriesDescription = desc
    ds.TriggerTime, ds.InstanceNumber = float(trigger), int(instance)
    ds.AcquisitionTime = f"1200{int(trigger) // 1000:02d}.{int(trigger) % 1000:03d}"
    return ds


def _phantom_dicom(folder, ph, **kw):
    """The phantom cine as single-frame MR files (one per slice and frame)."""
    os.makedirs(folder, exist_ok=True)
    c = ph.cine
    iop = np.r_[c.direction[:, 0], c.direction[:, 1]]
    scale = 1000.0 / max(float(c.image.max()), 1e-6)
    for z in range(c.n_slices):
        for t in range(c.n_frames):
            ds = _mr(np.round(c.image[t, z] * scale), c.origins[z], iop, c.spacing, c.times_ms[t],
                     z * c.n_frames + t + 1, **kw)
            _save(ds, os.path.join(folder, f"IM{z * c.n_frames + t + 1:04d}.dcm"))
    return folder


def _enhanced(folder, ph, name="enhanced.dcm"):
    os.makedirs(folder, exist_ok=True)
    c = ph.cine
    cells = [(z, t) for z in range(c.n_slices) for t in range(c.n_frames)]
    frames = np.stack([np.round(c.image[t, z] * 1000.0 / c.image.max()) for z, t in cells])
    ds = _mr(frames[0], c.origins[0], np.r_[c.direction[:, 0], c.direction[:, 1]], c.spacing, 0, 1)
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "TriggerTime"):
        delattr(ds, tag)
    ds.SOPClassUID = ENHANCED_MR
    ds.PixelData = frames.astype(np.int16).tobytes()
    ds.NumberOfFrames = len(cells)
    shared, pm, po = Dataset(), Dataset(), Dataset()
    pm.PixelSpacing, pm.SliceThickness = list(c.spacing), 8.0
    po.ImageOrientationPatient = [float(v) for v in np.r_[c.direction[:, 0], c.direction[:, 1]]]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [pm], [po]
    ds.SharedFunctionalGroupsSequence = [shared]
    items = []
    for z, t in cells:
        item, pos, card = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [float(v) for v in c.origins[z]]
        card.NominalCardiacTriggerDelayTime = float(c.times_ms[t])
        item.PlanePositionSequence, item.CardiacSynchronizationSequence = [pos], [card]
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = items
    path = os.path.join(folder, name)
    _save(ds, path, sop_class=ENHANCED_MR)
    return path


# -- Sunnybrook material -----------------------------------------------------------------
SB_SLICES = (5, 6)


def _sb_subset(folder, slices=SB_SLICES, frames=range(20), link=True):
    os.makedirs(folder, exist_ok=True)
    for z in slices:
        for t in frames:
            n = z * 20 + t + 1
            src, dst = os.path.join(SUNNYBROOK, f"{n}.dcm"), os.path.join(folder, f"{n}.dcm")
            os.symlink(os.path.abspath(src), dst) if link else shutil.copy(src, dst)
    return folder


def _sb_edit(folder, fn, slices=SB_SLICES, frames=range(20), syntax=None):
    """A Sunnybrook subset whose every dataset passes through fn(ds, z, t) (None: file left out)."""
    os.makedirs(folder, exist_ok=True)
    for z in slices:
        for t in frames:
            n = z * 20 + t + 1
            ds = pydicom.dcmread(os.path.join(SUNNYBROOK, f"{n}.dcm"))
            ds = fn(ds, z, t)
            if ds is not None:
                ds.save_as(os.path.join(folder, f"{n}.dcm"), enforce_file_format=True) if syntax is None else \
                    ds.save_as(os.path.join(folder, f"{n}.dcm"))
    return folder


def _ring_labels(shape, path, cine_like):
    """LV cavity, myocardium ring and an RV crescent beating over the frames (for --labels runs)."""
    T, Z, R, C = shape
    rr, cc = np.mgrid[:R, :C]
    lab = np.zeros(shape, np.uint8)
    for t in range(T):
        rad = 14 + 5 * np.cos(2 * np.pi * t / T)
        d = np.hypot(rr - R / 2, cc - C / 2)
        lab[t, :, (d < rad + 7)] = 2
        lab[t, :, (d < rad)] = 3
        lab[t, :, (np.hypot(rr - R / 2, cc - C / 2 + 30) < 14) & (d >= rad + 7)] = 1
    write_labels(lab, cine_like, path)
    return path


def _summary_is(**expect):
    def check(s):
        for k, v in expect.items():
            same = np.allclose(s[k], v, rtol=1e-6) if isinstance(v, list) else s[k] == v
            assert same, f"summary.json {k} = {s[k]!r}, expected {v!r}"
    return check


# -- the corpus --------------------------------------------------------------------------
def build(root) -> list:
    with warnings.catch_warnings():      # pydicom's notes on the real study's UIDs are noise here
        warnings.simplefilter("ignore")
        return _build(root)


def _build(root) -> list:
    root = str(root)
    os.makedirs(root, exist_ok=True)
    cases = []

    def add(*a, **kw):
        cases.append(Case(*a, **kw))

    def p(*parts):
        return os.path.join(root, *parts)

    ph = _phantom()
    cine = ph.cine
    base = {}
    for ext in ("nii", "nii.gz", "nrrd", "mha", "seq.nrrd"):
        base[ext] = write_cine(cine, p(f"cine.{ext}"))
    labels = write_labels(ph.labels, cine, p("labels.nii.gz"))
    save_cine_npz(p("cine.npz"), cine.image, cine.spacing, cine.origins, cine.direction, cine.times_ms,
                  times_known=True)
    base["npz"] = p("cine.npz")
    q = ["quantify"]
    L = ["--labels", labels, "--no-figures"]

    # file damage: every format truncated, empty, with a damaged header
    for ext, path in base.items():
        t = _cut(path, p(f"trunc.{ext}"), lambda n: int(n * 0.6))
        add(f"truncated {ext}", "file damage", "refuse", q + [t, "-o", "OUT"] + L,
            r"trunc\.[a-z.]+ is truncated" + (r" \(\d+ of \d+ bytes\)" if ext != "npz" else ""), [t])
        e = _cut(path, p(f"empty.{ext}"), 0)
        add(f"zero-length {ext}", "file damage", "refuse", q + [e, "-o", "OUT"] + L, r"empty\.[a-z.]+ is empty", [e])
        at = open(path, "rb").read().find(b"DimSize") if ext == "mha" else 0
        h = _poke(path, p(f"badhead.{ext}"), at, b"\x13\x37" * 6)
        add(f"corrupted header {ext}", "file damage", "refuse", q + [h, "-o", "OUT"] + L,
            r"badhead\.[a-z.]+.*(not a|damaged|corrupted|cannot read)", [h])
    mid = _poke(base["nii.gz"], p("garbled.nii.gz"), 200, b"\xff" * 64)
    add("corrupted gzip stream", "file damage", "refuse", q + [mid, "-o", "OUT"] + L, r"garbled\.nii\.gz is (corrupted|truncated)", [mid])
    short_gz = p("short_payload.nii.gz")
    open(short_gz, "wb").write(gzip.compress(open(base["nii"], "rb").read()[:-500]))
    add("gzip complete, payload short", "file damage", "refuse", q + [short_gz, "-o", "OUT"] + L,
        r"short_payload\.nii\.gz is truncated \(\d+ of \d+ bytes\) after decompression", [short_gz])
    for ext in ("nii", "nii.gz"):
        lt = _cut(labels if ext == "nii.gz" else write_labels(ph.labels, cine, p("labels.nii")),
                  p(f"labels_trunc.{ext}"), lambda n: n // 2)
        add(f"truncated labels {ext}", "file damage", "refuse", q + [base["nii"], "-o", "OUT", "--labels", lt, "--no-figures"],
            r"labels_trunc\.nii(\.gz)? is truncated", [lt, base["nii"]])
    mislabeled = shutil.copy(base["nii"], p("really_nifti.mha"))
    add("NIfTI named .mha", "file damage", "refuse", q + [mislabeled, "-o", "OUT"] + L, r"really_nifti\.mha", [mislabeled])
    plain_gz = shutil.copy(base["nii"], p("plain_named.nii.gz"))
    add("uncompressed NIfTI named .nii.gz", "file damage", "refuse", q + [plain_gz, "-o", "OUT"] + L,
        r"rename it to \.nii", [plain_gz])
    txt = p("notes.txt")
    open(txt, "w").write("not an image")
    add("text file", "file damage", "refuse", q + [txt, "-o", "OUT"] + L, r"unsupported input notes\.txt", [txt])
    nhdr = p("detached.nhdr")
    nrrd.write(nhdr, np.zeros((64, 64, 2), np.float32), {"encoding": "raw"}, detached_header=True)
    os.remove(p("detached.raw")) if os.path.exists(p("detached.raw")) else None
    add("NHDR without its data file", "file damage", "refuse", q + [nhdr, "-o", "OUT"] + L, r"detached\.nhdr names the data file", [nhdr])
    mhd = p("meta.mhd")
    sitk.WriteImage(sitk.GetImageFromArray(cine.image.astype(np.float32), isVector=False), mhd)
    raw_name = [n for n in os.listdir(root) if n.startswith("meta.") and n != "meta.mhd"][0]
    _cut(p(raw_name), p(raw_name), lambda n: n - 4096)
    add("MHD with short raw file", "file damage", "refuse", q + [mhd, "-o", "OUT"] + L, r"meta\.mhd is truncated", [mhd])

    # phantom DICOM: damage inside a folder
    dcm = _phantom_dicom(p("dcm_ok"), ph)
    dcm_cine = _variant(cine, origins=cine.origins[np.argsort(cine.origins @ cine.normal)])
    dlab = write_labels(ph.labels[:, np.argsort(cine.origins @ cine.normal)], dcm_cine, p("dcm_labels.nii.gz"))
    DL = ["--labels", dlab, "--no-figures"]
    add("phantom DICOM folder", "dicom structure", "ok", q + [dcm, "-o", "OUT"] + DL, "",
        [dcm], _summary_is(n_frames=6, n_slices=2))
    for what, keep in (("truncated in pixel data", lambda n: n - 1000), ("cut inside the header", 300),
                       ("zero-length", 0)):
        d = p(f"dcm_{what.split()[0]}_{keep if isinstance(keep, int) else 'px'}")
        shutil.copytree(dcm, d)
        _cut(os.path.join(d, "IM0003.dcm"), os.path.join(d, "IM0003.dcm"), keep)
        add(f"DICOM file {what} in a folder", "file damage", "refuse", q + [d, "-o", "OUT"] + DL,
            r"IM0003\.dcm is (truncated|empty|damaged)", [d])
    os.makedirs(p("single_cut"))
    one = _cut(os.path.join(dcm, "IM0001.dcm"), p("single_cut", "single_cut.dcm"), lambda n: n - 10)
    add("single DICOM file truncated", "file damage", "refuse", q + [one, "-o", "OUT"] + DL, r"single_cut\.dcm is truncated", [one])
    gzd = p("dcm_gz")
    os.makedirs(gzd)
    for n in sorted(os.listdir(dcm))[:4]:
        open(os.path.join(gzd, n + ".gz"), "wb").write(gzip.compress(open(os.path.join(dcm, n), "rb").read()))
    add("folder of .dcm.gz", "file damage", "refuse", q + [gzd, "-o", "OUT"] + DL, r"gzip-compressed: decompress", [gzd])
    add(".dcm.gz file", "file damage", "refuse", q + [os.path.join(gzd, "IM0001.dcm.gz"), "-o", "OUT"] + DL,
        r"IM0001\.dcm\.gz .*decompress it first", [gzd])
    os.makedirs(p("dicom_named"))
    dicom_as_nii = shutil.copy(os.path.join(dcm, "IM0001.dcm"), p("dicom_named", "dicom_named.nii"))
    add("DICOM named .nii", "file damage", "refuse", q + [dicom_as_nii, "-o", "OUT"] + DL, r"dicom_named\.nii is not a NIfTI", [dicom_as_nii])

    # DICOM structure (phantom)
    def dcm_case(name, expect, edit, pattern="", check=None, extra=(), folder=None):
        d = folder or p("dcm_" + name.replace(" ", "_").replace("/", "_"))
        if folder is None:
            shutil.copytree(dcm, d)
        edit(d)
        add(name, "dicom structure", expect, q + [d, "-o", "OUT"] + DL + list(extra), pattern, [d], check)

    def retag(folder, names, **tags):
        for n in names:
            ds = pydicom.dcmread(os.path.join(folder, n))
            for k, v in tags.items():
                delattr(ds, k) if v is None else setattr(ds, k, v)
            ds.save_as(os.path.join(folder, n))

    dcm_case("missing ImagePositionPatient", "refuse", lambda d: retag(d, ["IM0004.dcm"], ImagePositionPatient=None),
             r"IM0004\.dcm: missing DICOM tag\(s\) ImagePositionPatient")
    dcm_case("missing PixelSpacing", "refuse", lambda d: retag(d, ["IM0002.dcm"], PixelSpacing=None), r"PixelSpacing")
    dcm_case("no TriggerTime anywhere", "ok", lambda d: retag(d, os.listdir(d), TriggerTime=None),
             "", _summary_is(times_known=False, n_frames=6))
    dcm_case("a file copied twice", "ok", lambda d: shutil.copy(os.path.join(d, "IM0005.dcm"), os.path.join(d, "copy.dcm")),
             r"copy\.dcm is a copy of IM0005\.dcm")

    def clash(d):
        ds = pydicom.dcmread(os.path.join(d, "IM0005.dcm"))
        ds.SOPInstanceUID = generate_uid()
        ds.PixelData = (np.frombuffer(ds.PixelData, np.int16) + 7).astype(np.int16).tobytes()
        ds.save_as(os.path.join(d, "other.dcm"))
    dcm_case("two different images at one position and time", "refuse", clash, r"IM0005\.dcm, other\.dcm|other\.dcm, IM0005\.dcm")
    dcm_case("every file one SOPInstanceUID", "ok", lambda d: retag(d, os.listdir(d), SOPInstanceUID="1.2.3.4.5"),
             r"12 different images share 1 SOPInstanceUID", _summary_is(n_frames=6, n_slices=2))

    def lge(d):
        for z, n in enumerate(("IM0001.dcm", "IM0007.dcm")):
            ds = pydicom.dcmread(os.path.join(d, n))
            ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = generate_uid(), 12, "LGE PSIR"
            ds.SOPInstanceUID = generate_uid()
            ds.save_as(os.path.join(d, f"lge{z}.dcm"))
    dcm_case("LGE series at the cine's positions", "ok", lge, r"ignored series 12 'LGE PSIR'", _summary_is(n_frames=6))

    def localizer(d):
        for k, iop in enumerate(([1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1])):
            ds = _mr(np.full((48, 48), 100 + k), [0, 0, 10 * k], iop, (3.0, 3.0), 0, 900 + k,
                     series=(generate_uid(), 1), desc="localizer")
            _save(ds, os.path.join(d, f"loc{k}.dcm"))
    dcm_case("three-plane localizer", "ok", localizer, r"ignored series 1 'localizer'")

    def lax(d):
        for t in range(6):
            ds = _mr(np.full((64, 64), 50 + t), [0, 0, 0], [1, 0, 0, 0, 0, -1], (2.5, 2.5), cine.times_ms[t], 500 + t,
                     series=("1.2.826.0.1.3680043.8.498.77", 7), desc="4ch cine")
            _save(ds, os.path.join(d, f"lax{t}.dcm"))
    dcm_case("two candidate cines", "refuse", lax, r"2 candidate cines: series 5 'sax cine'.*series 7 '4ch cine'.*--series")
    dcm_case("two candidate cines, --series 5", "ok", lax, "", _summary_is(n_frames=6, n_slices=2), extra=["--series", "5"])
    dcm_case("--series that does not exist", "refuse", lambda d: None, r"no series numbered 9 here.*series 5",
             extra=["--series", "9"])

    def only_single(d):
        for n in os.listdir(d):
            if n not in ("IM0001.dcm", "IM0007.dcm"):
                os.remove(os.path.join(d, n))
    dcm_case("only single-frame images", "refuse", only_single, r"single time frame.*not cines")

    def repeated(d):
        for t in range(6):
            ds = pydicom.dcmread(os.path.join(d, f"IM{t + 1:04d}.dcm"))
            ds.SeriesInstanceUID, ds.SeriesNumber, ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.9", 6, generate_uid()
            ds.save_as(os.path.join(d, f"rep{t}.dcm"))
    dcm_case("slice repeated in a later series", "ok", repeated, r"repeated acquisition")

    def non_images(d):
        open(os.path.join(d, "README.txt"), "w").write("export notes")
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", generate_uid()
        _save(ds, os.path.join(d, "report.dcm"), sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    dcm_case("reports and notes beside the images", "ok", non_images, "", _summary_is(n_frames=6))

    def spacing_half(d):
        retag(d, [f"IM{n:04d}.dcm" for n in range(7, 13)], PixelSpacing=[1.25, 1.25])
    dcm_case("conflicting PixelSpacing between slices", "refuse", spacing_half, r"mixed orientations/sizes")

    def colour(d):
        for n in os.listdir(d):
            ds = pydicom.dcmread(os.path.join(d, n))
            a = np.frombuffer(ds.PixelData, np.int16).reshape(64, 64)
            ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = np.repeat(np.clip(a // 8, 0, 255).astype(np.uint8)[..., None], 3, axis=2).tobytes()
            ds.save_as(os.path.join(d, n))
    dcm_case("colour (RGB) images", "refuse", colour, r"colour image")

    d5 = p("dcm_tail_missing")
    shutil.copytree(dcm, d5)
    os.remove(os.path.join(d5, "IM0012.dcm"))
    lab5 = write_labels(ph.labels[:5, np.argsort(cine.origins @ cine.normal)],
                        _variant(dcm_cine, image=dcm_cine.image[:5], times_ms=dcm_cine.times_ms[:5]), p("dcm_labels5.nii.gz"))
    add("last frame of one slice missing", "dicom structure", "ok", q + [d5, "-o", "OUT", "--labels", lab5, "--no-figures"],
        r"kept the first 5 of each", [d5], _summary_is(n_frames=5, n_slices=2))

    enh = _enhanced(p("enh"), ph)
    add("enhanced multi-frame", "dicom structure", "ok", q + [enh, "-o", "OUT"] + DL, "", [enh],
        _summary_is(n_frames=6, n_slices=2))
    os.makedirs(p("enhanced_cut"))
    enh_cut = _cut(enh, p("enhanced_cut", "enhanced_cut.dcm"), lambda n: n - 2048)
    add("enhanced multi-frame truncated", "file damage", "refuse", q + [enh_cut, "-o", "OUT"] + DL,
        r"enhanced_cut\.dcm is truncated \(\d+ of \d+ bytes\)", [enh_cut])

    def compress(syntax):
        def edit(d):
            for n in os.listdir(d):
                ds = pydicom.dcmread(os.path.join(d, n))
                if syntax == RLELossless:
                    ds.compress(RLELossless)
                elif syntax == JPEGLSLossless:        # no decoder installed: must be refused, not skipped
                    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 64 + b"\xff\xd9"])
                    ds["PixelData"].VR = "OB"
                    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
                else:
                    ds.file_meta.TransferSyntaxUID = syntax
                ds.save_as(os.path.join(d, n), enforce_file_format=True)
        return edit
    dcm_case("RLE lossless transfer syntax", "ok", compress(RLELossless), "", _summary_is(n_frames=6))
    dcm_case("deflated transfer syntax", "ok", compress(DeflatedExplicitVRLittleEndian), "", _summary_is(n_frames=6))
    dcm_case("JPEG-LS without a decoder", "refuse", compress(JPEGLSLossless), r"cannot decode pixel data.*uncompressed transfer syntax")

    # geometry (phantom volumes)
    def vol_case(name, cls, expect, c, lab, pattern="", check=None, extra=(), ext="nii.gz"):
        stem = p("g_" + name.replace(" ", "_").replace("/", "_").replace(",", ""))
        cpath = write_cine(c, f"{stem}.{ext}")
        args = q + [cpath, "-o", "OUT", "--no-figures"] + list(extra)
        ins = [cpath]
        if lab is not None:
            lpath = write_labels(lab, c, f"{stem}_labels.nii.gz")
            args += ["--labels", lpath]
            ins.append(lpath)
        add(name, cls, expect, args, pattern, ins, check)

    vol_case("oblique phantom (NIfTI)", "geometry", "ok", cine, ph.labels, "", _summary_is(n_frames=6, n_slices=2))
    for ext in ("nrrd", "mha", "seq.nrrd"):
        vol_case(f"phantom as {ext}", "geometry", "ok", cine, ph.labels, "", _summary_is(n_frames=6), ext=ext)
    phm = make_phantom(seed=5, n_frames=6, n_slices=2, size=(64, 64), spacing=2.5, mirrored=True, noise=0.02)
    vol_case("mirrored (flipped) orientation", "geometry", "ok", phm.cine, phm.labels, "", _summary_is(n_frames=6))
    d = cine.direction
    tr = _variant(cine, image=cine.image.transpose(0, 1, 3, 2).copy(), direction=np.column_stack([d[:, 1], d[:, 0], -d[:, 2]]))
    vol_case("transposed rows/columns", "geometry", "ok", tr, ph.labels.transpose(0, 1, 3, 2), "", _summary_is(n_frames=6))
    pha = make_phantom(seed=6, n_frames=6, n_slices=2, size=(64, 96), spacing=(2.5, 1.6), noise=0.02)
    vol_case("anisotropic pixels", "geometry", "ok", pha.cine, pha.labels, "",
             _summary_is(pixel_spacing_mm=[2.5, 1.6]))
    vol_case("two frames", "geometry", "ok", _variant(cine, image=cine.image[:2], times_ms=cine.times_ms[:2]),
             ph.labels[:2], "", _summary_is(n_frames=2))
    vol_case("one frame (3-D file)", "geometry", "refuse", _variant(cine, image=cine.image[:1], times_ms=cine.times_ms[:1]),
             None, r"single time frame.*--third-axis-is-time")
    sitk.WriteImage(sitk.GetImageFromArray(cine.image[:, 0].astype(np.float32)), p("t_stack.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(ph.labels[:, 0].astype(np.uint8)), p("t_stack_labels.nii.gz"))
    add("3-D file read with --third-axis-is-time", "geometry", "ok",
        q + [p("t_stack.nii.gz"), "-o", "OUT", "--third-axis-is-time", "--labels", p("t_stack_labels.nii.gz"), "--no-figures"],
        "", [p("t_stack.nii.gz")], _summary_is(n_frames=6, n_slices=1))
    sitk.WriteImage(sitk.GetImageFromArray(cine.image[:, :, :6, :6], isVector=False), p("tiny.nii.gz"))
    add("tiny frames (6x6)", "geometry", "refuse", q + [p("tiny.nii.gz"), "-o", "OUT"] + L, r"too small", [p("tiny.nii.gz")])
    huge = _nifti_edit(base["nii"], p("huge_claim.nii"), dim=(4, 4096, 4096, 512, 60, 1, 1, 1))
    add("header claims a huge image", "geometry", "refuse", q + [huge, "-o", "OUT"] + L, r"huge_claim\.nii is truncated", [huge])
    sitk.WriteImage(sitk.GetImageFromArray(cine.image[0, 0]), p("flat2d.nii.gz"))
    add("2-D image", "geometry", "refuse", q + [p("flat2d.nii.gz"), "-o", "OUT"] + L, r"single 2-D image is not a cine", [p("flat2d.nii.gz")])

    # values
    for kind in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"):
        info = np.iinfo(kind) if np.dtype(kind).kind in "iu" else None
        arr = cine.image / cine.image.max()
        arr = arr * (min(info.max, 4000) if info else 900.0)
        path = _write_typed(arr, cine, p(f"type_{kind}.nii"), kind)
        add(f"pixel type {kind}", "values", "ok", q + [path, "-o", "OUT"] + L, "", [path], _summary_is(n_frames=6))
    for what, val in (("NaN", np.nan), ("+inf", np.inf)):
        bad = cine.image.copy()
        bad[2, 1, 30, 30] = val
        vol_case(f"{what} pixel (NIfTI)", "values", "refuse", _variant(cine, image=bad), None, r"1 NaN/infinite pixel values", ext="nii")
        vol_case(f"{what} pixel (NRRD)", "values", "refuse", _variant(cine, image=bad), None, r"NaN/infinite pixel values", ext="nrrd")
    vol_case("constant image", "values", "refuse", _variant(cine, image=np.full_like(cine.image, 5.0)), None, r"constant")
    vol_case("negative intensities", "values", "ok", _variant(cine, image=cine.image - 5000.0), ph.labels, "",
             _summary_is(n_frames=6))
    vol_case("all zero", "values", "refuse", _variant(cine, image=np.zeros_like(cine.image)), None, r"constant")

    # headers (NIfTI transforms and scaling)
    s0 = _srow(base["nii"])
    skew = s0.copy()
    skew[:, 1] += 0.01 * np.linalg.norm(s0[:, 1]) * s0[:, 0] / np.linalg.norm(s0[:, 0])
    big = s0.copy()
    big[:, 1] += 0.3 * np.linalg.norm(s0[:, 1]) * s0[:, 0] / np.linalg.norm(s0[:, 0])
    degen = s0.copy()
    degen[:, 1] = degen[:, 0]
    swapped = s0[:, [1, 0, 2, 3]]
    hdr_cases = [("non-orthonormal sform, no qform (M&Ms)", "ok", dict(qform_code=0, srow=skew), r"sform is not orthonormal.*orthonormalised"),
                 ("non-orthonormal sform beside a qform", "ok", dict(srow=skew), r"qform's geometry was used"),
                 ("sheared sform", "refuse", dict(qform_code=0, srow=big), r"sform is sheared"),
                 ("degenerate sform", "refuse", dict(qform_code=0, srow=degen), r"sform is degenerate"),
                 ("degenerate sform beside a qform", "ok", dict(srow=degen), r"sform is degenerate; the qform"),
                 ("qform and sform disagree", "ok", dict(srow=swapped), r"sform and the qform disagree"),
                 ("no transform at all (Analyze style)", "ok", dict(qform_code=0, sform_code=0), ""),
                 ("scl_slope 2", "ok", dict(scl_slope=2.0, scl_inter=10.0), ""),
                 ("scl_slope 0 (unset)", "ok", dict(scl_slope=0.0), ""),
                 ("datatype code unknown", "refuse", dict(datatype=999), r"unknown datatype code 999"),
                 ("negative dimension", "refuse", dict(dim=(4, 64, -64, 2, 6, 1, 1, 1)), r"corrupted NIfTI header")]
    for name, expect, fields, pattern in hdr_cases:
        path = _nifti_edit(base["nii"], p("h_" + name.split(" (")[0].replace(" ", "_").replace(",", "") + ".nii"), **fields)
        # an own-geometry read must keep the pixel grid: labels are matched pixel by pixel
        add(name, "headers", expect, q + [path, "-o", "OUT"] + L, pattern, [path],
            _summary_is(n_frames=6, n_slices=2) if expect == "ok" else None)
    mm = _nifti_edit(base["nii"], p("h_mms.nii.gz".replace(".gz", "")), qform_code=0, srow=skew)
    mmgz = p("h_mms.nii.gz")
    open(mmgz, "wb").write(gzip.compress(open(mm, "rb").read()))
    add("non-orthonormal sform, .nii.gz", "headers", "ok", q + [mmgz, "-o", "OUT"] + L, r"orthonormalised", [mmgz])

    # labels
    add("labels of the wrong shape", "labels", "refuse",
        q + [base["nii"], "-o", "OUT", "--labels", write_labels(ph.labels[:3], _variant(cine, image=cine.image[:3], times_ms=cine.times_ms[:3]), p("l_short.nii.gz")), "--no-figures"],
        r"labels are .*the cine is", [p("l_short.nii.gz")])
    bad_vals = ph.labels.copy()
    bad_vals[0, 0, 0, 0] = 7
    add("label value 7", "labels", "refuse",
        q + [base["nii"], "-o", "OUT", "--labels", write_labels(bad_vals, cine, p("l_seven.nii.gz")), "--no-figures"],
        r"labels must be 0 background", [p("l_seven.nii.gz")])
    add("empty labels", "labels", "refuse",
        q + [base["nii"], "-o", "OUT", "--labels", write_labels(np.zeros_like(ph.labels), cine, p("l_empty.nii.gz")), "--no-figures"],
        r"no LV cavity", [p("l_empty.nii.gz")])
    fl = p("l_float.nii.gz")
    write_cine(_variant(cine, image=ph.labels.astype(np.float32) + 0.5), fl)
    add("fractional label values", "labels", "refuse", q + [base["nii"], "-o", "OUT", "--labels", fl, "--no-figures"],
        r"not a label map", [fl])
    shifted = write_labels(ph.labels, _variant(cine, spacing=(2.0, 2.0)), p("l_grid.nii.gz"))
    add("labels on another grid", "labels", "ok", q + [base["nii"], "-o", "OUT", "--labels", shifted, "--no-figures"],
        r"labels were matched to the cine pixel by pixel", [shifted])
    save_results_npz(p("l_results.npz"), ph.labels)
    add("labels as results .npz", "labels", "ok", q + [base["nii"], "-o", "OUT", "--labels", p("l_results.npz"), "--no-figures"],
        "", [p("l_results.npz")], _summary_is(segmented_by="given labels"))
    add("labels file missing", "labels", "refuse", q + [base["nii"], "-o", "OUT", "--labels", p("nope.nii.gz")],
        r"labels not found", [base["nii"]])
    add("--no-network without labels", "labels", "refuse", q + [base["nii"], "-o", "OUT", "--no-network"],
        r"--no-network needs --labels", [base["nii"]])

    # outputs
    add("summary.json read-only", "outputs", "refuse", q + [base["nii"], "-o", "OUT"] + L, r"summary\.json is read-only",
        [base["nii"]], check=None)
    cases[-1].prepare = "readonly-summary"
    add("a folder where summary.json goes", "outputs", "refuse", q + [base["nii"], "-o", "OUT"] + L,
        r"summary\.json is a folder", [base["nii"]])
    cases[-1].prepare = "folder-summary"
    add("a folder where indices.csv goes", "outputs", "refuse", q + [base["nii"], "-o", "OUT"] + L,
        r"indices\.csv is a folder", [base["nii"]])
    cases[-1].prepare = "folder-indices"
    own = p("out_is_input")
    os.makedirs(own)
    inp = write_cine(cine, os.path.join(own, "segmentation.nii.gz"))
    add("output would replace the input", "outputs", "refuse", q + [inp, "-o", own] + L, r"would replace the input", [inp],
        earlier=False)
    add("output folder is an existing file", "outputs", "refuse", q + [base["nii"], "-o", base["nii"]] + L,
        r"is a file; give a folder", [base["nii"]], earlier=False)
    add("output below a file", "outputs", "refuse", q + [base["nii"], "-o", os.path.join(base["nii"], "sub")] + L,
        r"is a file", [base["nii"]], earlier=False)
    uni = p("Patiënt Müller 心臓 ✓")
    os.makedirs(uni)
    ucine = write_cine(cine, os.path.join(uni, "cine ä.nii.gz"))
    add("unicode and spaces in paths", "outputs", "ok", q + [ucine, "-o", os.path.join(uni, "résultats 1")] + L, "", [ucine],
        _summary_is(n_frames=6), earlier=False)
    add("rerun into a folder of earlier results", "outputs", "ok", q + [base["nii"], "-o", "OUT"] + L, "", [base["nii"]],
        _summary_is(n_frames=6))
    os.makedirs(p("seg_folder", "kept"))
    add("segment into a folder name", "outputs", "refuse", ["segment", base["nii"], "-o", p("seg_folder")], r"is a folder",
        [base["nii"]], earlier=False)
    add("segment to .png", "outputs", "refuse", ["segment", base["nii"], "-o", p("x.png")], r"cannot write x\.png", [base["nii"]],
        earlier=False)
    add("segment over a read-only file", "outputs", "refuse", ["segment", base["nii"], "-o", p("ro_labels.nii.gz")],
        r"ro_labels\.nii\.gz is read-only", [base["nii"]], earlier=False)
    cases[-1].prepare = "readonly-segment"
    add("--series with a volume file", "outputs", "refuse", q + [base["nii"], "-o", "OUT", "--series", "3"] + L,
        r"--series chooses a series of a DICOM folder", [base["nii"]])

    cases += _sunnybrook_cases(p)
    return cases


def _sunnybrook_cases(p) -> list:
    """Cases made from the real study (two slices x 20 frames of it); skipped when it is absent."""
    names = [("Sunnybrook subset", "dicom structure", "ok"), ("Sunnybrook three slices on one position", "dicom structure", "refuse"),
             ("Sunnybrook shared SOPInstanceUID", "dicom structure", "ok"), ("Sunnybrook LGE beside the cine", "dicom structure", "ok"),
             ("Sunnybrook two cines", "dicom structure", "refuse"), ("Sunnybrook two cines, --series 300", "dicom structure", "ok"),
             ("Sunnybrook RLE lossless", "dicom structure", "ok"), ("Sunnybrook truncated file", "file damage", "refuse"),
             ("Sunnybrook one file", "dicom structure", "ok")]
    if not os.path.isdir(SUNNYBROOK):
        reason = "../shared/data not present (user clone): needs sunnybrook/dicoms/SCD0000101"
        return [Case(n, c, e, [], skip=reason) for n, c, e in names]
    cases = []
    plain = _sb_subset(p("sb_plain"))
    ref = read_dicom_cine(plain)
    lab = _ring_labels(ref.image.shape, p("sb_labels.nii.gz"), ref)
    SL = ["--labels", lab, "--no-figures"]
    shape = _summary_is(n_frames=20, n_slices=2)
    q = ["quantify"]
    cases.append(Case(names[0][0], names[0][1], "ok", q + [plain, "-o", "OUT"] + SL, "", [plain], shape))
    ipp = pydicom.dcmread(os.path.join(SUNNYBROOK, f"{5 * 20 + 1}.dcm")).ImagePositionPatient

    def same_ipp(ds, z, t):
        ds.ImagePositionPatient = ipp
        return ds
    d = _sb_edit(p("sb_same_ipp"), same_ipp, slices=(4, 5, 6))
    cases.append(Case(names[1][0], names[1][1], "refuse", q + [d, "-o", "OUT"] + SL,
                      r"different images share one slice position .* and trigger time", [d]))

    def one_uid(ds, z, t):
        ds.SOPInstanceUID = "1.2.3.4"
        return ds
    d = _sb_edit(p("sb_one_uid"), one_uid)
    cases.append(Case(names[2][0], names[2][1], "ok", q + [d, "-o", "OUT"] + SL, r"40 different images share 1 SOPInstanceUID",
                      [d], shape))
    d = _sb_subset(p("sb_lge"))

    def lge(ds, z, t):
        if t:
            return None
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = ds.SeriesInstanceUID + ".9", 900, "LGE"
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(os.path.join(d, f"lge_{z}.dcm"), enforce_file_format=True)
        return None
    _sb_edit(p("sb_lge_tmp"), lge)
    cases.append(Case(names[3][0], names[3][1], "ok", q + [d, "-o", "OUT"] + SL, r"ignored series 900 'LGE'", [d], shape))
    d = _sb_subset(p("sb_two"))

    def lax(ds, z, t):
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = ds.SeriesInstanceUID + ".7", 700, "4CH cine"
        ds.ImageOrientationPatient, ds.SOPInstanceUID = [1, 0, 0, 0, 0, -1], generate_uid()
        ds.save_as(os.path.join(d, f"lax_{z}_{t}.dcm"), enforce_file_format=True)
        return None
    _sb_edit(p("sb_two_tmp"), lax)
    cases.append(Case(names[4][0], names[4][1], "refuse", q + [d, "-o", "OUT"] + SL,
                      r"2 candidate cines: series 300 .*series 700 '4CH cine'.*choose one with --series", [d]))
    cases.append(Case(names[5][0], names[5][1], "ok", q + [d, "-o", "OUT", "--series", "300"] + SL, "", [d], shape))

    def rle(ds, z, t):
        ds.compress(RLELossless)
        return ds
    d = _sb_edit(p("sb_rle"), rle)
    cases.append(Case(names[6][0], names[6][1], "ok", q + [d, "-o", "OUT"] + SL, "", [d], shape))
    d = _sb_subset(p("sb_trunc"), link=False)
    _cut(os.path.join(d, "110.dcm"), os.path.join(d, "110.dcm"), lambda n: n // 2)
    cases.append(Case(names[7][0], names[7][1], "refuse", q + [d, "-o", "OUT"] + SL,
                      r"110\.dcm is truncated \(\d+ of 133266 bytes\)", [d]))
    cases.append(Case(names[8][0], names[8][1], "ok", q + [os.path.join(plain, "101.dcm"), "-o", "OUT"] + SL,
                      r"one image of a series", [plain], shape))
    return cases
