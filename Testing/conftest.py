"""Shared pytest setup: make the engine importable without installing it (a fresh clone)."""
import os
import sys

_LIB_PARENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "CardiacQuan")
if _LIB_PARENT not in sys.path:
    sys.path.insert(0, _LIB_PARENT)
