"""Progress of a batch for people: a tqdm bar on a terminal (counts, rate, ETA), else one
`CQ-PROGRESS done total message` line per study (logs, the Slicer module's engine process);
failures as they happen; one summary line at the end.  All on stderr."""
from __future__ import annotations

import sys
import time
from collections import Counter

from cardiacquan.contract import STATUS_FAILED, STATUS_QUANTIFIED, STATUS_REUSED, progress_line
from cardiacquan.frameworks import import_tqdm


def duration(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class BatchProgress:
    def __init__(self, total, stream=None, bar=None):
        self.total, self.stream = int(total), stream or sys.stderr
        self.counts = Counter()
        self.t0 = time.time()
        tqdm = import_tqdm() if (bar if bar is not None else self.stream.isatty()) else None
        self.bar = tqdm(total=self.total, unit="study", file=self.stream, smoothing=0.05,
                        dynamic_ncols=True) if tqdm else None

    @property
    def done(self):
        return sum(self.counts.values())

    def counts_text(self):
        c = self.counts
        return f"{c[STATUS_QUANTIFIED]} quantified, {c[STATUS_REUSED]} reused, {c[STATUS_FAILED]} failed"

    def rate_text(self):
        elapsed = time.time() - self.t0
        if not self.done or elapsed <= 0:
            return ""
        per_min = 60.0 * self.done / elapsed
        left = (self.total - self.done) * elapsed / self.done
        return f"{per_min:.1f} studies/min, ETA {duration(left)}"

    def log(self, text):
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def update(self, row):
        self.counts[row["status"]] += 1
        if row["status"] == STATUS_FAILED:
            self.log(f"failed: {row['study_id']}: {row['error']}")
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts_text(), refresh=False)
            self.bar.update(1)
        else:
            print(progress_line(self.done, self.total, f"{row['study_id']} {row['status']}; {self.counts_text()}; "
                                f"{self.rate_text()}"), file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def summary(self):
        elapsed = time.time() - self.t0
        rate = f" ({60.0 * self.counts[STATUS_QUANTIFIED] / elapsed:.1f} quantified/min)" if elapsed > 0 else ""
        return f"batch: {self.total} studies: {self.counts_text()} in {duration(elapsed)}{rate}"
