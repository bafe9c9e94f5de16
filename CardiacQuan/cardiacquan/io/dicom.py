"""Read a short-axis cine from DICOM (a folder of single-frame MR files, or one enhanced MR file).

Why this is more than "sort the files": cine series arrive with arbitrary file names and
instance numbers, sometimes with localizers or repeated slices mixed in.  The only reliable
keys are the geometry and timing tags, so frames are grouped into slices by
ImageOrientationPatient and by ImagePositionPatient projected on the slice normal, and
ordered in time by TriggerTime (fallbacks: AcquisitionTime, then InstanceNumber).  File
names are never used for ordering.

Decisions worth knowing (each recorded in `cine.metadata['warnings']` when it applies):
- mixed orientations / matrix sizes / pixel spacings: the largest group is kept when it holds
  more than twice as many images as the runner-up (localizers mixed in); otherwise an error;
- a slice position holding frames of several series (a repeated acquisition): the series
  with the highest SeriesNumber (acquired last) is kept;
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
from collections import Counter

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from cardiacquan import CardiacQuanError
from cardiacquan.io.cine import Cine

MR_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1"}
META_TAGS = dict(patient_id="PatientID", study_description="StudyDescription", series_description="SeriesDescription",
                 series_instance_uid="SeriesInstanceUID", manufacturer="Manufacturer", modality="Modality")
POSITION_TOL_MM = 0.01
ORIENTATION_TOL = 1e-3


def _dcmread(path):
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        try:  # old files without the 128-byte preamble
            ds = pydicom.dcmread(path, force=True)
            return ds if "PixelData" in ds and "Rows" in ds else None
        except Exception:
            return None
    except Exception:
        return None


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
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
        raise CardiacQuanError(f"{name}: cannot decode pixel data (transfer syntax {ts}): {e}".splitlines()[0])
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise CardiacQuanError(f"{name}: colour image ({ds.get('PhotometricInterpretation')}); a grey-level MR cine is needed")
    return arr


def _frames_of(ds, name) -> list:
    """One record per 2-D frame of a file, with geometry, timing and rescaled pixels."""
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    pfg = ds.get("PerFrameFunctionalGroupsSequence")
    common = dict(file=name, series=str(ds.get("SeriesInstanceUID", "")),
                  series_number=_num(ds.get("SeriesNumber")) or 0.0, sop=str(ds.get("SOPInstanceUID", "")))
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
            out.append(dict(common, ipp=pos.get("ImagePositionPatient"), iop=ori.get("ImageOrientationPatient"),
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
    return [dict(common, ipp=ds.ImagePositionPatient, iop=ds.ImageOrientationPatient, spacing=ds.PixelSpacing,
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


def _geometry_groups(recs, notes):
    """Keep the dominant orientation/matrix/spacing group (localizers mixed in are dropped)."""
    groups = []
    for r in recs:
        r["iop"] = np.asarray([float(v) for v in r["iop"]])
        r["ipp"] = np.asarray([float(v) for v in r["ipp"]])
        r["spacing"] = tuple(float(v) for v in r["spacing"])
        for g in groups:
            g0 = g[0]
            if (g0["pixels"].shape == r["pixels"].shape and np.abs(g0["iop"] - r["iop"]).max() < ORIENTATION_TOL
                    and np.allclose(g0["spacing"], r["spacing"], rtol=1e-3)):
                g.append(r)
                break
        else:
            groups.append([r])
    groups.sort(key=len, reverse=True)
    if len(groups) > 1:
        if len(groups[0]) <= 2 * len(groups[1]):
            raise CardiacQuanError(
                f"the images have mixed orientations/sizes ({len(groups[0])} images in one, {len(groups[1])} in another): "
                "give a folder holding one short-axis cine series")
        notes.append(f"ignored {sum(map(len, groups[1:]))} image(s) with another orientation, size or pixel spacing")
    return groups[0]


def _split_slices(recs, notes):
    """Group by position along the normal; one series per position (the last acquired)."""
    iop = recs[0]["iop"]
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    for r in recs:
        r["pos"] = float(r["ipp"] @ normal)
    recs = sorted(recs, key=lambda r: r["pos"])
    slices = [[recs[0]]]
    for r in recs[1:]:
        (slices[-1].append(r) if r["pos"] - slices[-1][-1]["pos"] <= POSITION_TOL_MM else slices.append([r]))
    for i, s in enumerate(slices):
        series = {r["series"] for r in s}
        if len(series) > 1:
            keep = max(s, key=lambda r: (r["series_number"], r["series"]))["series"]
            slices[i] = [r for r in s if r["series"] == keep]
            notes.append(f"slice at {s[0]['pos']:.2f} mm holds {len(series)} series (repeated acquisition?): "
                            f"kept the last one ({len(slices[i])} frames)")
    return slices, normal


def _order_frames(slices, notes):
    for key in ("TriggerTime", "AcquisitionTime", "InstanceNumber"):
        vals = [[r[key] for r in s] for s in slices]
        if all(v is not None for vs in vals for v in vs):
            if all(len(set(vs)) == len(vs) for vs in vals):
                for s in slices:
                    s.sort(key=lambda r: r[key])
                return key
            if key == "TriggerTime":
                notes.append("trigger times repeat within a slice; frames ordered by another tag")
    raise CardiacQuanError("cannot order the frames in time: TriggerTime, AcquisitionTime and InstanceNumber "
                           "are missing or repeated within a slice")


def _equalise_frames(slices, key, notes):
    counts = [len(s) for s in slices]
    if len(set(counts)) == 1:
        return slices
    n_min = min(counts)
    if n_min >= 2 and key == "TriggerTime":
        trig = np.array([[r["TriggerTime"] for r in s[:n_min]] for s in slices])
        step = np.median(np.diff(trig, axis=1))
        if np.all(np.abs(trig - trig.mean(axis=0)) <= 0.5 * step):
            notes.append(f"slices have {min(counts)}-{max(counts)} frames: kept the first {n_min} of each")
            return [s[:n_min] for s in slices]
    n_mode = max(Counter(counts).items(), key=lambda kv: (kv[1], kv[0]))[0]
    dropped = [f"{s[0]['pos']:.1f} mm ({len(s)} frames)" for s in slices if len(s) != n_mode]
    notes.append(f"left out slice(s) whose frame count differs from {n_mode}: {', '.join(dropped)}")
    return [s for s in slices if len(s) == n_mode]


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


def read_dicom_cine(path) -> Cine:
    """Read a cine from a DICOM folder (searched recursively) or a single DICOM file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CardiacQuanError(f"no such file or folder: {path}")
    series, root = _series_of_single_file(path)
    files = _list_files(path) if series is None else \
        [os.path.join(root, n) for n in sorted(os.listdir(root)) if os.path.isfile(os.path.join(root, n))]
    recs, file_meta, n_files, notes, sops = [], {}, 0, [], {}
    for f in files:
        with warnings.catch_warnings():   # pydicom's complaints about odd UIDs etc. are noise for users
            warnings.simplefilter("ignore")
            ds = _dcmread(f)
            if ds is None or "PixelData" not in ds:
                continue   # DICOMDIR, reports, non-DICOM files
            if series is not None and str(ds.get("SeriesInstanceUID", "")) != series:
                continue
            name = os.path.relpath(f, root) if os.path.isdir(root) else os.path.basename(f)
            sop = str(ds.get("SOPInstanceUID", "")) or None
            if sop is not None and sop in sops:   # the same image saved twice (copied file, second export)
                notes.append(f"{name} is a copy of {sops[sop]} (same SOPInstanceUID): read once")
                continue
            if sop is not None:
                sops[sop] = name
            frames = _frames_of(ds, name)
            for fr in frames:
                fr["path"] = os.path.abspath(f)
            if frames:
                n_files += 1
                file_meta[name] = {key: str(ds.get(tag, "")) for key, tag in META_TAGS.items()}
                recs += frames
    if not recs:
        raise CardiacQuanError(f"no DICOM image found in {path}")
    recs = _geometry_groups(recs, notes)
    slices, normal = _split_slices(recs, notes)
    key = _order_frames(slices, notes)
    slices = _equalise_frames(slices, key, notes)
    T, Z = len(slices[0]), len(slices)
    if series is not None:
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
    meta = dict(format="dicom", **file_meta[slices[0][0]["file"]],
                n_files=n_files, frame_order=key, instance_map=instance_map, warnings=notes,
                source_images=source_images)
    cine = Cine(image=image, spacing=slices[0][0]["spacing"], origins=np.array([s[0]["ipp"] for s in slices]),
                direction=np.column_stack([iop[:3], iop[3:], normal]), times_ms=times, times_known=known,
                slice_thickness=slices[0][0]["thickness"], source=path, metadata=meta)
    return cine
