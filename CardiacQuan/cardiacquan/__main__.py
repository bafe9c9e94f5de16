"""`python -m cardiacquan ...` = the `cardiacquan` command (used by the Slicer module)."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from cardiacquan.cli import main  # noqa: E402

sys.exit(main())
