"""Segment IDs, names, colours and standard terminology of the segmentations the module makes.

Label values, sector and AHA segment names come from ``cardiacquan.contract`` (what the engine
writes); what is Slicer's alone is here: segment IDs, display names, colours, the terminology
entries that DICOM SEG export writes, and the segment tags that say how a segment was made.

Every terminology entry resolves either in Slicer's DICOM master lists (the LV and RV cavities:
"Blood" in the left / right ventricle, as the engine's own DICOM SEG codes them) or in the
extension's terminology file ``Resources/TERMINOLOGY_FILE`` (loaded when Slicer starts,
``CardiacQuanLib.startup``): LV myocardium (SCT 49848007) and the 17-segment model's SNOMED CT
codes of the AHA segments (DICOM CID 3717), so each RWT sector is its own AHA mid-cavity segment.
"""
from cardiacquan.contract import AHA_SEGMENTS, LV_CAVITY, MYOCARDIUM, RV, SECTOR_AHA_SEGMENTS, SECTOR_TITLES

#: Slicer's DICOM master lists (Modules/Loadable/Terminologies/Resources)
DICOM_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
#: the extension's own list (its SegmentationCategoryTypeContextName), file in the module's Resources/
CARDIACQUAN_CONTEXT = "CardiacQuan - LV myocardium and AHA segments"
TERMINOLOGY_FILE = "SegmentationCategoryTypeModifier-CardiacQuan.term.json"

TISSUE = "SCT^85756007^Tissue"
BLOOD = "SCT^87612001^Blood"
ANATOMICAL_STRUCTURE = "SCT^123037004^Anatomical Structure"
LEFT_VENTRICLE = "SCT^87878005^Left Ventricle"
RIGHT_VENTRICLE = "SCT^53085002^Right Ventricle"
LV_MYOCARDIUM = "SCT^49848007^Left ventricle myocardium"

#: SNOMED CT code of each AHA segment 1-16 (DICOM PS3.16 CID 3717 "Myocardial Wall 17 Segment Model")
AHA_SEGMENT_CODES = {
    1: "264850008", 2: "396482007", 3: "396646008", 4: "264846001", 5: "396652009", 6: "396654005",
    7: "264848000", 8: "396647004", 9: "396649001", 10: "264847005", 11: "396655006", 12: "396656007",
    13: "264844003", 14: "264845002", 15: "264849008", 16: "264853005",
}

#: segment tags read by Slicer's DICOM SEG exporter (SegmentAlgorithmType / SegmentAlgorithmName)
ALGORITHM_TYPE_TAG = "DICOM.SegmentAlgorithmType"
ALGORITHM_NAME_TAG = "DICOM.SegmentAlgorithmName"
ALGORITHM_NAME = "CardiacQuan"
#: the network segmented the cine; masks given to (or edited for) a re-quantification
AUTOMATIC, SEMIAUTOMATIC = "AUTOMATIC", "SEMIAUTOMATIC"


def terminologyEntry(context, category, typeCode, anatomicRegion=""):
    """Slicer terminology entry string (context~category~type~modifier~anatomic context~region~modifier)."""
    return "~".join([context, category, typeCode, "^^", ANATOMIC_CONTEXT, anatomicRegion or "^^", "^^"])


def ahaSegmentType(number):
    """The terminology type of AHA segment `number` (1-16): "SCT^code^left ventricle <level> <name> segment"."""
    _, level, name = AHA_SEGMENTS[number - 1]
    return f"SCT^{AHA_SEGMENT_CODES[number]}^Left ventricle {level} {name} segment"


# (label value in the engine's masks, segment ID, name, colour, terminology)
TISSUE_SEGMENTS = (
    (MYOCARDIUM, "LV_myocardium", "LV myocardium", (0.30, 0.75, 0.35),
     terminologyEntry(CARDIACQUAN_CONTEXT, ANATOMICAL_STRUCTURE, LV_MYOCARDIUM)),
    (LV_CAVITY, "LV_cavity", "LV cavity", (0.90, 0.25, 0.25),
     terminologyEntry(DICOM_CONTEXT, TISSUE, BLOOD, LEFT_VENTRICLE)),
    (RV, "RV_cavity", "RV cavity", (0.25, 0.45, 0.90),
     terminologyEntry(DICOM_CONTEXT, TISSUE, BLOOD, RIGHT_VENTRICLE)),
)

SECTOR_COLORS = ((0.89, 0.10, 0.11), (1.00, 0.50, 0.00), (1.00, 0.85, 0.20),
                 (0.30, 0.69, 0.29), (0.22, 0.49, 0.72), (0.60, 0.31, 0.64))
# The six mid-cavity AHA segments over which the regional wall thickness RWT1..6 is measured.
# Sector k (1..6) of the engine's sector maps is RWTk.  (value, ID, name, colour)
SECTOR_SEGMENTS = tuple(
    (k, f"RWT{k}", f"RWT{k} {title} (AHA {aha})", color)
    for k, (title, aha, color) in enumerate(zip(SECTOR_TITLES, SECTOR_AHA_SEGMENTS, SECTOR_COLORS), start=1)
)
#: the sector segments with their terminology (each its own AHA segment), in the TISSUE_SEGMENTS layout
SECTOR_SEGMENTS_WITH_TERMINOLOGY = tuple(
    (v, i, n, c, terminologyEntry(CARDIACQUAN_CONTEXT, ANATOMICAL_STRUCTURE, ahaSegmentType(aha)))
    for (v, i, n, c), aha in zip(SECTOR_SEGMENTS, SECTOR_AHA_SEGMENTS)
)

#: painting order when edited segments overlap: RV, then myocardium, then cavity (the cavity wins)
PAINT_ORDER = (RV, MYOCARDIUM, LV_CAVITY)
