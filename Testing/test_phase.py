"""phase.phase_from_areas: LVQuan systole/diastole labels from a cavity area curve."""
import numpy as np
import pytest

from cardiacquan import CardiacQuanError
from cardiacquan.measure.phase import phase_from_areas, phase_from_ed_es
from cardiacquan.synthetic.phantom import area_curve


def test_simple_curve():
    phase, ed, es = phase_from_areas([5.0, 4.0, 3.0, 2.0, 3.0, 4.0])
    assert (ed, es) == (0, 3)
    assert phase.tolist() == [0, 1, 1, 1, 0, 0]
    assert phase.dtype == np.int8


def test_systole_wraps_around_the_end():
    # ED at frame 4, ES at frame 1: frames 5, 0, 1 are systole
    phase, ed, es = phase_from_areas([2.0, 1.0, 2.0, 3.0, 6.0, 4.0])
    assert (ed, es) == (4, 1)
    assert phase.tolist() == [1, 1, 0, 0, 0, 1]


def test_ed_at_last_frame():
    phase, ed, es = phase_from_areas([9.0, 7.0, 5.0, 6.0, 8.0, 10.0])
    assert (ed, es) == (5, 2)
    assert phase.tolist() == [1, 1, 1, 0, 0, 0]


def test_ties_take_the_first_frame_and_flat_curve_has_no_systole():
    phase, ed, es = phase_from_areas([3.0, 3.0, 1.0, 1.0, 2.0])
    assert (ed, es) == (0, 2)
    assert phase.tolist() == [0, 1, 1, 0, 0]
    flat, ed, es = phase_from_areas([4.0, 4.0, 4.0])
    assert ed == es == 0 and not flat.any()


def test_physiological_curve():
    t = np.arange(25)
    for ed_frame in (0, 3, 24):
        areas = 2000 * area_curve((t - ed_frame) / 25, 0.6, 9 / 25)
        phase, ed, es = phase_from_areas(areas)
        assert ed == ed_frame and es == (ed_frame + 9) % 25
        assert phase.sum() == 9
        assert phase[(ed_frame + np.arange(1, 10)) % 25].all()


def test_phase_from_ed_es_matches():
    assert phase_from_ed_es(5, 3, 0).tolist() == [1, 0, 0, 0, 1]
    assert phase_from_ed_es(4, 2, 2).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("bad", [[1.0], [], [1.0, np.nan, 2.0], [1.0, np.inf]])
def test_bad_curves_are_refused(bad):
    with pytest.raises(CardiacQuanError):
        phase_from_areas(bad)
