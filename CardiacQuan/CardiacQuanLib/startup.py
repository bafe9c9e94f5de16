"""What the module adds to Slicer when the application has started: its terminology and its sample data.

- The terminology file (``Resources/<segment_definitions.TERMINOLOGY_FILE>``: LV myocardium and the
  AHA segments with their SNOMED CT codes) is loaded into Slicer's Terminologies logic, as
  SlicerHeart and TotalSegmentator load theirs, so Segment Editor and DICOM SEG export know the
  codes the module's segments carry.
- The sample cine (``cardiacquan.contract.SAMPLE_CINE``: a cropped short-axis cine of the
  Sunnybrook Cardiac Data, CC0) is registered with the Sample Data module, category "Cardiac",
  from the file shipped with the extension (a local file URI with its SHA-256 checksum: nothing is
  downloaded).

The module calls ``onStartupCompleted`` on Slicer's ``startupCompleted()`` signal; the Logic calls
``ensureTerminologyLoaded`` before it creates segments (the module may be added after startup).
"""
import hashlib
import importlib
import logging
import os
import pathlib

from cardiacquan.contract import SAMPLE_CINE

from CardiacQuanLib.segment_definitions import CARDIACQUAN_CONTEXT, TERMINOLOGY_FILE

#: the folder holding CardiacQuan.py, CardiacQuanLib/, cardiacquan/ and Resources/
MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_CATEGORY = "Cardiac"
SAMPLE_NAME = "CardiacQuan short-axis cine"
SAMPLE_NODE_NAME = "SunnybrookCine"
SAMPLE_THUMBNAIL = ("Resources", "Icons", "SampleCine.png")
#: Slicer's reader of volume sequences (.seq.nrrd): the cine loads as a sequence with its browser
SAMPLE_FILE_TYPE = "SequenceFile"


def terminologyPath():
    return os.path.join(MODULE_DIR, "Resources", TERMINOLOGY_FILE)


def sampleCinePath():
    return os.path.join(MODULE_DIR, "Resources", *SAMPLE_CINE)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensureTerminologyLoaded(terminologiesLogic):
    """Load the extension's terminology once; returns its context name (None without a Terminologies logic)."""
    if terminologiesLogic is None:
        return None
    if terminologiesLogic.IsTerminologyContextLoaded(CARDIACQUAN_CONTEXT):
        return CARDIACQUAN_CONTEXT
    name = terminologiesLogic.LoadTerminologyFromFile(terminologyPath())
    if name != CARDIACQUAN_CONTEXT:
        logging.warning(f"CardiacQuan: could not load the terminology {terminologyPath()} (got {name!r})")
        return None
    return name


def sampleDataSource():
    """The keyword arguments of SampleDataLogic.registerCustomSampleDataSource for the sample cine."""
    path = sampleCinePath()
    return dict(category=SAMPLE_CATEGORY, sampleName=SAMPLE_NAME,
                thumbnailFileName=os.path.join(MODULE_DIR, *SAMPLE_THUMBNAIL),
                uris=pathlib.Path(path).as_uri(), fileNames=os.path.basename(path),
                nodeNames=SAMPLE_NODE_NAME, checksums=f"SHA256:{sha256(path)}", loadFileTypes=SAMPLE_FILE_TYPE)


def registerSampleData(sampleDataModule=None):
    """Register the sample cine with Slicer's Sample Data module (the module SampleData by default).

    SampleData is one of the application's scripted modules, importable only once Slicer has
    started: it is looked up here, not imported with this file."""
    if not os.path.isfile(sampleCinePath()):
        logging.warning(f"CardiacQuan: the sample cine {sampleCinePath()} is missing")
        return None
    module = sampleDataModule or importlib.import_module("SampleData")
    source = sampleDataSource()
    module.SampleDataLogic.registerCustomSampleDataSource(**source)
    return source


def onStartupCompleted(terminologiesLogic=None, sampleDataModule=None):
    """Load the terminology and register the sample data; a failure is logged, never raised."""
    try:
        ensureTerminologyLoaded(terminologiesLogic)
    except Exception:
        logging.exception("CardiacQuan: loading the terminology failed")
    try:
        registerSampleData(sampleDataModule)
    except Exception:
        logging.exception("CardiacQuan: registering the sample data failed")
