"""Shared pytest setup: make the engine importable without installing it (a fresh clone)."""
import os
import sys

_LIB_PARENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "CardiacQuan")
if _LIB_PARENT not in sys.path:
    sys.path.insert(0, _LIB_PARENT)

import pytest  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def shared_path(*parts):
    """Path under ../shared/data, or skip the test with the reason (a user's clone has none)."""
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        pytest.skip(f"../shared/data not present (user clone): needs {os.path.join(*parts)}")
    return p


@pytest.fixture(scope="session")
def seg_model():
    from cardiacquan.models import load_seg_model
    return load_seg_model()


def tiny_packed(tmp_path, **extra):
    """Two phantom frames packed like `train-seg --pack-only` output (plus `extra` arrays, e.g. the
    partially labelled ones): training tests need no shared data."""
    import numpy as np
    from cardiacquan.synthetic.phantom import make_phantom
    ph = make_phantom(seed=3, n_frames=2, size=(128, 128), spacing=1.5)
    imgs = [(np.clip(ph.cine.image[t, 0] / ph.cine.image.max(), 0, 1) * 255).astype(np.uint8) for t in range(2)]
    labs = [ph.labels[t, 0].astype(np.uint8) for t in range(2)]
    packed = tmp_path / "tiny.npz"
    np.savez_compressed(packed, train_image=np.concatenate([a.ravel() for a in imgs]),
                        train_label=np.concatenate([a.ravel() for a in labs]),
                        train_shape=np.array([a.shape for a in imgs]), train_spacing=np.array([1.5, 1.5]),
                        train_patient=np.array([1, 1]), train_phase=np.array([0, 1]),
                        val_image=np.zeros(0, np.uint8), val_label=np.zeros(0, np.uint8),
                        val_shape=np.zeros((0, 3), int), val_name=np.array([], dtype=str), **extra)
    return packed
