"""CardiacQuan engine: full left-ventricle quantification from short-axis cine MRI.

A plain Python package (never `slicer`, never `qt`) so the same code serves the Slicer
module's engine process, batch scripts and the `cardiacquan` command line.  This file stays
light on purpose: the Slicer module imports `cardiacquan.contract` inside Slicer's own Python,
and that runs this file first.  Where each stage lives: docs/architecture.md.
"""

__version__ = "0.1.0"


class CardiacQuanError(Exception):
    """An error whose message is meant for the user as it is (bad input, missing file...)."""
