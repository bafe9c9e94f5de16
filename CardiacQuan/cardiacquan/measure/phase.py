"""Cardiac phase (systole / diastole) per frame, from the LV cavity area curve.

LVQuan rule (see shared docs, "Cardiac phase"): end-diastole (ED) is the frame of largest
cavity area, end-systole (ES) the frame of smallest.  Walking forward in time from ED and
wrapping around the end of the sequence (a cine covers one periodic RR interval, so the
frame after the last is the first), the frames after ED up to and including ES are systole
(1); all the others, ED included, are diastole (0).
"""
from __future__ import annotations

import numpy as np

from cardiacquan import CardiacQuanError

SYSTOLE, DIASTOLE = 1, 0


def phase_from_ed_es(n_frames: int, ed: int, es: int) -> np.ndarray:
    """Phase labels (int8, (n_frames,)) for known ED and ES frame indices.

    ED == ES (a flat curve) has no systole: every frame is diastole.
    """
    n = int(n_frames)
    phase = np.zeros(n, dtype=np.int8)
    if n < 1 or ed == es:
        return phase
    steps = (np.arange(n) - int(ed)) % n          # frames walked forward from ED
    phase[(steps >= 1) & (steps <= (int(es) - int(ed)) % n)] = SYSTOLE
    return phase


def ed_es_frames(curve) -> tuple:
    """(ed, es): the frames of largest and smallest value of a cavity area or volume curve.

    The one ED/ES rule of the project.  Frames without a value (NaN: no LV there) are
    skipped; ties resolve to the first frame; (-1, -1) when no frame has a value.
    """
    a = np.asarray(curve, dtype=float).reshape(-1)
    if not np.isfinite(a).any():
        return -1, -1
    return int(np.nanargmax(a)), int(np.nanargmin(a))


def phase_from_areas(areas) -> tuple:
    """(phase int8 (T,), ed, es) from a cavity area (or volume) curve over one cycle.

    Ties resolve to the first frame (numpy argmax/argmin).  Fewer than two frames or any
    non-finite value is refused: a phase needs a whole, measured curve.
    """
    a = np.asarray(areas, dtype=float).reshape(-1)
    if a.size < 2:
        raise CardiacQuanError(f"the cardiac phase needs at least 2 frames, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise CardiacQuanError("the cavity area curve holds NaN/infinite values: cannot find ED/ES")
    ed, es = ed_es_frames(a)
    return phase_from_ed_es(a.size, ed, es), ed, es
