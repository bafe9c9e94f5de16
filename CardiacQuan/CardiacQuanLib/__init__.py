"""CardiacQuan engine: full left-ventricle quantification from short-axis cine MRI.

A plain Python package (no `slicer`, no `qt`) so the same code serves the Slicer module,
batch scripts and the `cardiacquan` command line.  Heavy dependencies (TensorFlow) are
imported lazily, only by the modules that run a network.
"""

__version__ = "0.1.0"

# Label convention used everywhere in the project (the ACDC convention).
BACKGROUND, RV, MYOCARDIUM, LV_CAVITY = 0, 1, 2, 3
LABEL_NAMES = {RV: "RV cavity", MYOCARDIUM: "LV myocardium", LV_CAVITY: "LV cavity"}


class CardiacQuanError(Exception):
    """An error whose message is meant for the user as it is (bad input, missing file...)."""
