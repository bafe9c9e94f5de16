"""Pseudo-cines: ED/ES masks morphed along a physiological volume curve (no deep-learning backend)."""
import numpy as np
import pytest

from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV
from cardiacquan.synthetic.pseudo_cine import make_pseudo_cine, morph_labels, quantifiable, volume_curve
from cardiacquan.training.quan_data import simulated_segmentation, split_patients, usable_pair

SP = (1.4, 1.4)


def ring(shape=(96, 96), c=(48, 50), r_cav=14.0, wall=6.0, rv=True, open_ring=False):
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    d = np.hypot(rr - c[0], cc - c[1])
    lab = np.zeros(shape, np.uint8)
    if rv:
        lab[np.hypot(rr - c[0], cc - (c[1] - r_cav - wall - 6)) < 12] = RV
    lab[d < r_cav + wall] = MYOCARDIUM
    lab[d < r_cav] = LV_CAVITY
    if open_ring:
        lab[(lab == MYOCARDIUM) & (rr < c[0] - 0.3 * r_cav)] = 0     # a basal slice open to the atrium
    return lab


@pytest.mark.parametrize("ed_frame", [0, 7])
def test_volume_curve_has_ed_and_es_where_said(ed_frame):
    v, ed, es = volume_curve(20, 0.37, ed_frame=ed_frame, rng=np.random.default_rng(3), jitter=1.0)
    assert ed == ed_frame and v[ed] == 1.0 and v[es] == 0.0
    assert np.argmax(v) == ed and np.argmin(v) == es
    assert (es - ed) % 20 in (7, 8)                   # ES at 35-40 % of the cycle
    assert np.all((v >= 0) & (v <= 1))
    # systole falls monotonically from ED to ES
    walk = [v[(ed + k) % 20] for k in range((es - ed) % 20 + 1)]
    assert np.all(np.diff(walk) < 0)


def test_morph_reproduces_ed_es_and_follows_the_curve():
    ed, es = ring(r_cav=16, wall=6), ring(r_cav=10, wall=8.5)
    pc = make_pseudo_cine(ed, es, SP, n_frames=20, ed_frame=4, rng=np.random.default_rng(0), jitter=0.5)
    assert pc.labels.shape == (20, 96, 96) and pc.labels.dtype == np.uint8
    assert np.array_equal(pc.labels[pc.ed], ed) and np.array_equal(pc.labels[pc.es], es)
    a = (pc.labels == LV_CAVITY).sum(axis=(1, 2)).astype(float)
    rel = (a - a.min()) / (a.max() - a.min())
    assert np.max(np.abs(rel - pc.curve)) < 0.05
    assert np.argmax(a) == pc.ed and np.argmin(a) == pc.es
    # every frame keeps an RV and a closed myocardial ring around the cavity
    assert all((pc.labels[t] == RV).any() and quantifiable(pc.labels[t]) for t in range(20))
    # truth phase: systole = frames after ED up to and including ES
    assert pc.phase[pc.ed] == 0 and pc.phase[pc.es] == 1 and pc.phase.sum() == (pc.es - pc.ed) % 20


def test_morph_needs_a_cavity_in_both_frames():
    from cardiacquan import CardiacQuanError
    empty = np.zeros((96, 96), np.uint8)
    with pytest.raises(CardiacQuanError):
        morph_labels(ring(), empty, SP, np.linspace(1, 0, 5))


def test_quantifiable_and_usable_pairs():
    assert quantifiable(ring())
    assert not quantifiable(ring(open_ring=True))
    assert not quantifiable(np.zeros((64, 64), np.uint8))
    assert usable_pair(ring(r_cav=15), ring(r_cav=10))
    assert not usable_pair(ring(r_cav=10), ring(r_cav=15))          # "ES" larger than "ED"


def test_simulated_segmentation_moves_borders_but_keeps_the_anatomy():
    pc = make_pseudo_cine(ring(r_cav=16), ring(r_cav=11, wall=8), SP, n_frames=8)
    sim = simulated_segmentation(pc.labels, SP, np.random.default_rng(1), bias_mm=0.6, noise_mm=0.8)
    assert sim.shape == pc.labels.shape
    changed = np.mean(sim != pc.labels)
    assert 0.0 < changed < 0.1
    for t in range(8):
        cav = sim[t] == LV_CAVITY
        assert cav.any() and (sim[t] == MYOCARDIUM).any() and (sim[t] == RV).any()


def test_holdout_patients_spread_over_pathology_groups():
    pats = [f"patient{n:03d}" for n in range(1, 101) if n % 3]
    train, hold = split_patients(pats, n_holdout=10, seed=0)
    assert len(hold) == 10 and not set(train) & set(hold) and len(train) + 10 == len(pats)
    groups = {(int(p[7:]) - 1) // 20 for p in hold}
    assert groups == {0, 1, 2, 3, 4}
