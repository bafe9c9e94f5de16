"""Read a short-axis cine from DICOM (a folder of single-frame MR files, or one enhanced MR file).

Why this is more than "sort the files": cine series arrive with arbitrary file names and
instance numbers, sometimes with localizers or repeated slices mixed in.  The only reliable
keys are the geometry and timing tags, so frames are grouped into slices by
ImageOrientationPatient and by ImagePositionPatient projected on the slice normal, and
ordered in time by TriggerTime (fallbacks: AcquisitionTime, then InstanceNumber).  File
names are never used for ordering.

Decisions worth knowing (each recorded in `cine.metadata['warnings']` when it applies; the
series choice and the one-image-per-(position, time) rule live in dicom_series.py):
- a file that is empty, cut short (pixel data shorter than Rows x Columns x frames declare) or
  damaged is refused, naming it: a missing frame never turns into a silently shorter cine;
- single-frame series (LGE, localizers) beside the cine are ignored; two candidate cines are
  refused and listed (`series=` chooses);
- mixed orientations / matrix sizes / pixel spacings: the largest group is kept when it holds
  more than twice as many images as the runner-up (localizers mixed in); otherwise an error;
- a slice position holding frames of several series (a repeated acquisition): the series
  with the highest SeriesNumber (acquired last) is kept;
- copies (same position, time and pixels) are read once; different images at one position and
  trigger time are refused;
- slices with unequal frame counts: all slices are cut to the common minimum when that is
  >= 2 and the kept trigger times still agree across slices (missing trailing frames);
  otherwise only the slices having the most common frame count are kept.

metadata keys: format, patient_id, study_description, series_description,
series_instance_uid, manufacturer, modality, n_files, frame_order ('TriggerTime',
'AcquisitionTime' or 'InstanceNumber'), instance_map {InstanceNumber: (z, t)} (single-frame
files only; used to place Sunnybrook contours), warnings [str], source_images [z][t] =
{path, sop_instance_uid, frame_number (1-based in a multi-frame file, else None)} (what a
DICOM Segmentation of the cine references).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from cardiacquan import CardiacQuanError
from cardiacquan.io.cine import Cine
from cardiacquan.io.dicom_series import (
    choose_series,
    drop_copies,
    equalise_frames,
    geometry_group,
    order_frames,
    parse_series,
    shared_uid_notes,
    split_slices,
)
from cardiacquan.io.integrity import truncated

MR_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1"}
META_TAGS = dict(patient_id="PatientID", study_description="StudyDescription", series_description="SeriesDescription",
                 series_instance_uid="SeriesInstanceUID", manufacturer="Manufacturer", modality="Modality")
#: file names a DICOM export uses: such a file that cannot be read is damaged, not a stray note
DICOM_NAMES = (".dcm", ".ima", ".dicom", "")
NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


def _dcmread(path):
    """(dataset, None), or (None, why) for a file that is not (readable) DICOM."""
    try:
        return pydicom.dcmread(path), None
    except InvalidDicomError:
        try:  # old files without the 128-byte preamble
            ds = pydicom.dcmread(path, force=True)
            return (ds, None) if "PixelData" in ds and "Rows" in ds else (None, "not DICOM")
        except Exception as e:
            return None, f"not DICOM ({type(e).__name__})"
    except Exception as e:
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def _looks_like_dicom(path) -> bool:
    """A name of a DICOM export, or the DICM preamble."""
    if os.path.splitext(path)[1].lower() in DICOM_NAMES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _check_file(path, name, ds, why):
    """Refuse an empty, damaged or cut DICOM file (a dataset whose pixel data is missing or short)."""
    size = os.path.getsize(path)
    if size == 0:
        raise CardiacQuanError(f"{name} is empty (0 bytes): an interrupted copy? copy the study again, or remove "
                               "the file")
    if ds is None:
        raise CardiacQuanError(f"{name} is damaged: it cannot be read as DICOM ({why}); copy the study again, or "
                               "remove the file")
    if "PixelData" not in ds:
        sop_class = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if ("Rows" in ds or sop_class in MR_SOP_CLASSES) and "DirectoryRecordSequence" not in ds:
            raise CardiacQuanError(f"{name} is truncated: its {size} bytes end before the pixel data; copy the "
                                   "study again, or remove the file")
        return
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "1.2.840.10008.1.2.1"))
    if ts in NATIVE_SYNTAXES:
        try:
            declared = (int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)
                        * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.get("BitsAllocated", 16)) // 8)
        except (TypeError, ValueError):
            raise CardiacQuanError(f"{name}: corrupted DICOM header (Rows/Columns/NumberOfFrames are not numbers)")
        present = len(ds.PixelData or b"")
        if present < declared:
            raise truncated(name, size, size + declared - present)


def _seconds(tm) -> float | None:
    """DICOM TM or DT string -> seconds of day (only used for ordering)."""
    s = str(tm or "").strip().split("+")[0].split("-")[0]
    if not s:
        return None
    if len(s.split(".")[0]) > 6:   # DT: YYYYMMDDHHMMSS
        s = s[8:]
    try:
        hh, mm, ss = float(s[0:2] or 0), float(s[2:4] or 0), float(s[4:] or 0)
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def _num(v):
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _first(item, seq_name):
    seq = item.get(seq_name) if item is not None else None
    return seq[0] if seq else None


def _pixels(ds, name):
    try:
        arr = ds.pixel_array
    except Exception as e:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        what = f"{ts.name} ({ts})" if ts is not None and hasattr(ts, "name") else str(ts or "?")
        hint = ("" if ts is None or str(ts) in NATIVE_SYNTAXES else
                "; convert the study to an uncompressed transfer syntax (e.g. `gdcmconv --raw IN OUT`, or "
                "`dcmdjpeg`/`dcmdjpls` of DCMTK) and try again")
        raise CardiacQuanError(f"{name}: cannot decode pixel data (transfer syntax {what}): "
                               f"{str(e).splitlines()[0][:160] if str(e) else type(e).__name__}{hint}")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise CardiacQuanError(f"{name}: colour image ({ds.get('PhotometricInterpretation')}); a grey-level MR cine is needed")
    return arr


def _frames_of(ds, name) -> list:
    """One record per 2-D frame of a file, with geometry, timing and rescaled pixels."""
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    pfg = ds.get("PerFrameFunctionalGroupsSequence")
    common = dict(file=name, series=str(ds.get("SeriesInstanceUID", "")), series_number=_num(ds.get("SeriesNumber")),
                  series_description=str(ds.get("SeriesDescription", "") or "").strip(),
                  sop=str(ds.get("SOPInstanceUID", "") or "") or None, frame=None)
    if pfg and len(pfg) == nframes and "ImagePositionPatient" not in ds:   # enhanced (multi-frame) MR
        shared = _first(ds, "SharedFunctionalGroupsSequence")
        arr = _pixels(ds, name).reshape(nframes, int(ds.Rows), int(ds.Columns))
        out = []
        for i, item in enumerate(pfg):
            def grp(seq, _item=item):
                return _first(_item, seq) or _first(shared, seq)
            pos, ori, meas = grp("PlanePositionSequence"), grp("PlaneOrientationSequence"), grp("PixelMeasuresSequence")
            if pos is None or ori is None or meas is None or "PixelSpacing" not in meas:
                raise CardiacQuanError(f"{name}: frame {i + 1} lacks plane position/orientation/pixel measures")
            card, content = grp("CardiacSynchronizationSequence"), grp("FrameContentSequence")
            pvt = grp("PixelValueTransformationSequence")
            slope = _num(pvt.get("RescaleSlope")) if pvt is not None else None
            icpt = _num(pvt.get("RescaleIntercept")) if pvt is not None else None
            out.append(dict(common, frame=i, file=f"{name} frame {i + 1}", ipp=pos.get("ImagePositionPatient"), iop=ori.get("ImageOrientationPatient"),
                            spacing=meas.get("PixelSpacing"), thickness=_num(meas.get("SliceThickness")),
                            TriggerTime=_num(card.get("NominalCardiacTriggerDelayTime")) if card is not None else None,
                            AcquisitionTime=_seconds(content.get("FrameAcquisitionDateTime")) if content is not None else None,
                            InstanceNumber=(_num(content.get("TemporalPositionIndex")) if content is not None else None) or i + 1,
                            instance=None, frame_number=i + 1,
                            pixels=arr[i].astype(np.float32) * (slope or 1.0) + (icpt or 0.0)))
        return out
    missing = [t for t in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if t not in ds]
    if missing:
        if str(ds.get("SOPClassUID", "")) not in MR_SOP_CLASSES:
            return []   # a screenshot / secondary capture: not part of the cine
        raise CardiacQuanError(f"{name}: missing DICOM tag(s) {', '.join(missing)}; cannot place the image in space")
    arr = _pixels(ds, name).astype(np.float32)
    slope, icpt = _num(ds.get("RescaleSlope")) or 1.0, _num(ds.get("RescaleIntercept")) or 0.0
    arr = arr * slope + icpt
    frames = arr.reshape(-1, int(ds.Rows), int(ds.Columns))
    trig0 = _num(ds.get("TriggerTime"))
    if trig0 is None:
        trig0 = _num(ds.get("NominalCardiacTriggerDelayTime"))
    ftime = _num(ds.get("FrameTime"))  # old-style multi-frame: frames are consecutive in time
    inst = _num(ds.get("InstanceNumber"))
    return [dict(common, frame=None if len(frames) == 1 else k, file=name if len(frames) == 1 else f"{name} frame {k + 1}",
                 ipp=ds.ImagePositionPatient, iop=ds.ImageOrientationPatient, spacing=ds.PixelSpacing,
                 thickness=_num(ds.get("SliceThickness")),
                 TriggerTime=(trig0 or 0.0) + k * ftime if (len(frames) > 1 and ftime) else trig0,
                 AcquisitionTime=_seconds(ds.get("AcquisitionTime")) if len(frames) == 1 else None,
                 InstanceNumber=inst if len(frames) == 1 else k + 1,
                 instance=int(inst) if (inst is not None and len(frames) == 1) else None,
                 frame_number=k + 1 if len(frames) > 1 else None, pixels=f) for k, f in enumerate(frames)]


def _list_files(path):
    if os.path.isfile(path):
        return [path]
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files += [os.path.join(root, n) for n in sorted(names)]
    return files


def _series_of_single_file(path):
    """(SeriesInstanceUID, folder) when `path` is one single-frame file of a series, else (None, path).

    A user who picks one file of a cine means the cine: the files of the same series beside it
    (not in sub-folders) are read; an enhanced multi-frame file already holds the whole cine."""
    if not os.path.isfile(path):
        return None, path
    try:
        with warnings.catch_warnings():   # tag values are checked when read: keep pydicom quiet
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            uid = str(ds.get("SeriesInstanceUID", "") or "")
            multi_frame = int(ds.get("NumberOfFrames", 1) or 1) > 1
    except Exception:
        return None, path
    if not uid or multi_frame:
        return None, path
    return uid, os.path.dirname(os.path.abspath(path))


def _read_records(files, root, series_uid, given):
    """Frame records of the image files, with each file's descriptive tags."""
    recs, file_meta, skipped_gz = [], {}, 0
    for f in files:
        name = os.path.relpath(f, root) if os.path.isdir(root) else os.path.basename(f)
        with warnings.catch_warnings():   # pydicom's complaints about odd UIDs etc. are noise for users
            warnings.simplefilter("ignore")
            ds, why = _dcmread(f)
            if os.path.abspath(f) == given or _looks_like_dicom(f):
                _check_file(f, name, ds, why)
            if ds is None or "PixelData" not in ds:
                skipped_gz += f.lower().endswith(".gz")
                continue   # DICOMDIR, reports, non-DICOM files
            if series_uid is not None and str(ds.get("SeriesInstanceUID", "")) != series_uid:
                continue
            frames = _frames_of(ds, name)
        if frames:
            file_meta[name] = {key: str(ds.get(tag, "")) for key, tag in META_TAGS.items()}
            for r in frames:
                r["source_file"] = name
                r["path"] = os.path.abspath(f)
            recs += frames
    return recs, file_meta, skipped_gz


def read_dicom_cine(path, series=None) -> Cine:
    """Read a cine from a DICOM folder (searched recursively) or a single DICOM file.

    `series`: SeriesNumber(s) to read ('7', '5,6,9-12' or an int) when the folder holds several cines."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CardiacQuanError(f"no such file or folder: {path}")
    wanted = parse_series(series) if series is not None else None
    series_uid, root = _series_of_single_file(path)
    files = _list_files(path) if series_uid is None else \
        [os.path.join(root, n) for n in sorted(os.listdir(root)) if os.path.isfile(os.path.join(root, n))]
    recs, file_meta, skipped_gz = _read_records(files, root, series_uid, given=os.path.abspath(path))
    if not recs:
        hint = (f" ({skipped_gz} file(s) are gzip-compressed: decompress them first, e.g. gunzip -r)"
                if skipped_gz else "")
        raise CardiacQuanError(f"no DICOM image found in {path}{hint}")
    notes, hints = [], {}
    recs = choose_series(recs, notes, wanted, hints)
    recs = geometry_group(recs, notes)
    slices, normal = split_slices(recs, notes)
    slices = drop_copies(slices, notes)
    key = order_frames(slices, notes)
    slices = equalise_frames(slices, key, notes)
    shared_uid_notes(slices, notes)
    n_files = len({r["source_file"] for s in slices for r in s})
    if series_uid is not None:
        notes.append(f"{os.path.basename(path)} is one image of a series: read the {n_files} file(s) of that "
                     f"series in its folder {root}")
    image = np.stack([np.stack([r["pixels"] for r in s]) for s in slices], axis=1)   # (T, Z, R, C)
    iop = slices[0][0]["iop"]
    if key == "TriggerTime":
        times, known = np.array([[r["TriggerTime"] for r in s] for s in slices]).mean(axis=0), True
    else:
        times, known = None, False
    instance_map = {}
    for z, s in enumerate(slices):
        for t, r in enumerate(s):
            if r["instance"] is not None:
                if r["instance"] in instance_map:
                    notes.append(f"InstanceNumber {r['instance']} repeats: instance_map is partial")
                instance_map[r["instance"]] = (z, t)
    # where each (slice, frame) of the cine comes from: what a DICOM Segmentation references
    source_images = [[dict(path=r["path"], sop_instance_uid=r["sop"], frame_number=r["frame_number"])
                      for r in s] for s in slices]
    meta = dict(format="dicom", **file_meta[slices[0][0]["source_file"]],
                n_files=n_files, frame_order=key, instance_map=instance_map, warnings=notes, **hints,
                source_images=source_images)
    cine = Cine(image=image, spacing=slices[0][0]["spacing"], origins=np.array([s[0]["ipp"] for s in slices]),
                direction=np.column_stack([iop[:3], iop[3:], normal]), times_ms=times, times_known=known,
                slice_thickness=slices[0][0]["thickness"], source=path, metadata=meta)
    return cine
