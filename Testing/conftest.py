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
