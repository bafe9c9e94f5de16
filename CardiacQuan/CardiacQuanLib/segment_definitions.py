"""Segment IDs, names, colours and standard terminology of the segmentations the module makes.

Label values and sector names come from ``cardiacquan.contract`` (what the engine writes);
what is Slicer's alone is here: segment IDs, display names, colours and the DICOM master-list
terminology that DICOM SEG export keeps.
"""
from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV, SECTOR_AHA_SEGMENTS, SECTOR_TITLES

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
ANATOMICAL_STRUCTURE = "SCT^123037004^Anatomical Structure"
LEFT_VENTRICLE = "SCT^87878005^Left ventricle of heart"


def terminologyEntry(typeCode, anatomicRegion=""):
    """Slicer terminology entry string (context~category~type~modifier~anatomic context~region~modifier)."""
    return "~".join([TERMINOLOGY_CONTEXT, ANATOMICAL_STRUCTURE, typeCode, "^^", ANATOMIC_CONTEXT,
                     anatomicRegion or "^^", "^^"])


# (label value in the engine's masks, segment ID, name, colour, terminology)
TISSUE_SEGMENTS = (
    (MYOCARDIUM, "LV_myocardium", "LV myocardium", (0.30, 0.75, 0.35),
     terminologyEntry("SCT^74281007^Myocardium", LEFT_VENTRICLE)),
    (LV_CAVITY, "LV_cavity", "LV cavity", (0.90, 0.25, 0.25),
     terminologyEntry(LEFT_VENTRICLE)),
    (RV, "RV_cavity", "RV cavity", (0.25, 0.45, 0.90),
     terminologyEntry("SCT^53085002^Right ventricle of heart")),
)

SECTOR_COLORS = ((0.89, 0.10, 0.11), (1.00, 0.50, 0.00), (1.00, 0.85, 0.20),
                 (0.30, 0.69, 0.29), (0.22, 0.49, 0.72), (0.60, 0.31, 0.64))
# The six mid-cavity AHA segments over which the regional wall thickness RWT1..6 is measured.
# Sector k (1..6) of the engine's sector maps is RWTk.  (value, ID, name, colour)
SECTOR_SEGMENTS = tuple(
    (k, f"RWT{k}", f"RWT{k} {title} (AHA {aha})", color)
    for k, (title, aha, color) in enumerate(zip(SECTOR_TITLES, SECTOR_AHA_SEGMENTS, SECTOR_COLORS), start=1)
)
# Every sector is LV myocardium (there is no DICOM master-list code per AHA segment that this
# module could rely on); the segment name says which sector it is.
SECTOR_TERMINOLOGY = TISSUE_SEGMENTS[0][4]
#: the sector segments with their terminology, in the TISSUE_SEGMENTS layout
SECTOR_SEGMENTS_WITH_TERMINOLOGY = tuple((v, i, n, c, SECTOR_TERMINOLOGY) for v, i, n, c in SECTOR_SEGMENTS)

#: painting order when edited segments overlap: RV, then myocardium, then cavity (the cavity wins)
PAINT_ORDER = (RV, MYOCARDIUM, LV_CAVITY)
