"""DICOM Segmentation (`--dicom-seg`) of a DICOM input, for a PACS: one SEG instance (highdicom)
with three segments for every frame and slice of the cine, each SEG frame referencing the source
image it was drawn on (SOPInstanceUID, and the frame number in a multi-frame source).

Segments keep the label values of every other output: 1 RV cavity, 2 LV myocardium, 3 LV cavity.
Codes are SNOMED CT concepts as DICOM lists them (PS3.16): category CID 7150, type CID 7151 /
CID 7166, anatomic region CID 7151 (see CODES).  Algorithm type AUTOMATIC, identified by the
engine's name and version and the segmentation model's file; for masks the user gave
(`--labels`), type MANUAL, since the engine only copied them.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.valuerep import DA

from cardiacquan import CardiacQuanError, __version__
from cardiacquan.contract import LABEL_NAMES, LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.models import model_info

#: label value -> (segment label, category, property type, anatomic region or None)
CODES = {
    RV: ("RV cavity", codes.SCT.Tissue, codes.SCT.Blood, codes.SCT.RightVentricle),
    MYOCARDIUM: ("LV myocardium", codes.SCT.AnatomicalStructure, codes.SCT.LeftVentricleMyocardium, None),
    LV_CAVITY: ("LV cavity", codes.SCT.Tissue, codes.SCT.Blood, codes.SCT.LeftVentricle),
}
SEG_SERIES_NUMBER = 9301
ALGORITHM_NAME = "CardiacQuan"


def _sources(cine):
    refs = (cine.metadata or {}).get("source_images")
    if (cine.metadata or {}).get("format") != "dicom" or not refs:
        raise CardiacQuanError("--dicom-seg needs a DICOM input (a DICOM folder or file): the DICOM Segmentation "
                               "references the source images")
    if len(refs) != cine.n_slices or any(len(s) != cine.n_frames for s in refs):
        raise CardiacQuanError("--dicom-seg: the cine's source images are not known for every frame and slice")
    return refs


def _algorithm(result):
    params = {name: f"sha256 {info.get('sha256', '')[:16]}" for name, info in model_info().items()
              if name.startswith("seg_model") and isinstance(info, dict)}
    return hd.AlgorithmIdentificationSequence(name=ALGORITHM_NAME, version=__version__,
                                              family=codes.cid7162.ArtificialIntelligence, parameters=params)


def segment_descriptions(result):
    automatic = result.segmented_by == "network"
    algo = _algorithm(result) if automatic else None
    out = []
    for number in (RV, MYOCARDIUM, LV_CAVITY):
        label, category, prop, region = CODES[number]
        out.append(hd.seg.SegmentDescription(
            segment_number=int(number), segment_label=label, segmented_property_category=category,
            segmented_property_type=prop,
            algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if automatic
                            else hd.seg.SegmentAlgorithmTypeValues.MANUAL),
            algorithm_identification=algo, anatomic_regions=[region] if region is not None else None,
            tracking_uid=hd.UID(), tracking_id=f"{LABEL_NAMES[number]}"))
    return out


def write_dicom_seg(result, path):
    """Write the DICOM Segmentation of `result` (labels (T, Z, R, C)) to `path`.

    highdicom builds a Segmentation from images at distinct positions only (a cine's frames share
    their slice's position: highdicom issues #174, #369), so the SEG of the first time frame is
    built by highdicom and then extended to every frame: each added SEG frame is a copy of its
    slice's first-frame item with the source image of its own time frame, a TemporalPositionIndex
    and a third dimension index (DimensionOrganizationType 3D_TEMPORAL)."""
    path = Path(path)
    cine = result.cine
    refs = _sources(cine)
    if any(r["frame_number"] is not None for s in refs for r in s):
        raise CardiacQuanError("--dicom-seg: an enhanced (multi-frame) DICOM input is not supported yet; "
                               "a series of single-frame images is")
    with warnings.catch_warnings():   # pydicom/highdicom remarks on the source's UIDs and names
        warnings.simplefilter("ignore")
        headers = [[pydicom.dcmread(r["path"], stop_before_pixels=True) for r in s] for s in refs]
        first = [h[0] for h in headers]
        _usable_dates(first[0])
        frames_of_reference = {str(ds.get("FrameOfReferenceUID", "")) for s in headers for ds in s}
        if len(frames_of_reference) > 1:   # one series, one geometry: an anonymiser gave each image its own
            for ds in first:
                ds.FrameOfReferenceUID = first[0].get("FrameOfReferenceUID")
            result.warnings.append(f"{path.name}: the source images carry {len(frames_of_reference)} different "
                                   "FrameOfReferenceUIDs (one series, one geometry: an anonymiser's doing?); "
                                   "the Segmentation uses the first image's")
        seg = hd.seg.Segmentation(
            source_images=first, pixel_array=result.labels[0].astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segment_descriptions(result),
            series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="CardiacQuan (research software)",
            manufacturer_model_name=ALGORITHM_NAME, software_versions=__version__, device_serial_number="none",
            series_description=f"CardiacQuan LV segmentation of {first[0].get('SeriesDescription', 'the cine')}"[:64],
            content_label="CARDIACQUAN", content_description="LV cavity, LV myocardium and RV cavity, every frame",
            omit_empty_frames=False)
        _extend_in_time(seg, result.labels, headers)
        seg.save_as(str(path), enforce_file_format=True)
    return path


def _extend_in_time(seg, labels, headers):
    """Make the one-time-frame SEG `seg` hold every frame t of `labels` (T, Z, R, C)."""
    T = labels.shape[0]
    z_of = {str(h[0].SOPInstanceUID): z for z, h in enumerate(headers)}
    items0 = list(seg.PerFrameFunctionalGroupsSequence)
    items, frames = [], []
    for t in range(T):
        for item0 in items0:
            item = copy.deepcopy(item0)
            src = item.DerivationImageSequence[0].SourceImageSequence[0]
            z = z_of[str(src.ReferencedSOPInstanceUID)]
            src.ReferencedSOPInstanceUID = headers[z][t].SOPInstanceUID
            content = item.FrameContentSequence[0]
            content.TemporalPositionIndex = t + 1
            content.DimensionIndexValues = list(content.DimensionIndexValues) + [t + 1]
            items.append(item)
            frames.append(labels[t, z] == int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber))
    dim0 = seg.DimensionIndexSequence[0]
    temporal = Dataset()
    temporal.DimensionOrganizationUID = dim0.DimensionOrganizationUID
    temporal.DimensionIndexPointer = Tag("TemporalPositionIndex")
    temporal.FunctionalGroupPointer = Tag("FrameContentSequence")
    temporal.DimensionDescriptionLabel = "Temporal Position Index"
    seg.DimensionIndexSequence.append(temporal)
    seg.DimensionOrganizationType = "3D_TEMPORAL"
    seg.PerFrameFunctionalGroupsSequence = Sequence(items)
    seg.NumberOfFrames = len(items)
    seg.PixelData = np.packbits(np.stack(frames).astype(np.uint8).ravel(), bitorder="little").tobytes()
    known = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    for s in headers:
        for ds in s:
            if str(ds.SOPInstanceUID) not in known:
                ref = Dataset()
                ref.ReferencedSOPClassUID = ds.SOPClassUID
                ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
                seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence.append(ref)


def _usable_dates(ds):
    """The study/patient dates highdicom copies from the first source, blanked where they are not
    valid dates (an anonymised '00000000' birth date); an in-memory copy only."""
    for key in ("PatientBirthDate", "StudyDate"):
        value = str(ds.get(key, "") or "")
        if value:
            try:
                DA(value)
            except ValueError:
                setattr(ds, key, "")
    return ds
