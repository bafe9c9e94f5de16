"""Submit every study to the Dask cluster, collect the small rows as they come, in any order.

The client holds study ids and paths only: each task reads its study on its worker and returns
a cohort row.  One study's failure never stops the others: a refused study is a failed row; a
task that raised is retried `retries` times, a worker that died is replaced by its nanny and the
study rescheduled (the scheduler's allowed-failures), and only then is the study listed as failed.
"""
from __future__ import annotations

import uuid

from cardiacquan.batch.cohort import failed_row
from cardiacquan.batch.task import process_study
from cardiacquan.frameworks import import_distributed


def submit(client, studies, outdir, settings, retries=1):
    """{future: Study}; task keys name the study (the Dask dashboard shows them)."""
    run = uuid.uuid4().hex[:8]
    futures = client.map(process_study, [s.study_id for s in studies], [s.path for s in studies],
                         outdir=str(outdir), settings=settings, retries=int(retries),
                         key=[f"cardiacquan-{s.study_id}-{run}" for s in studies], pure=False)
    return dict(zip(futures, studies))


def row_of(future, study):
    """The row a finished future stands for (a failed row for a task that could not finish)."""
    _, distributed = import_distributed()
    try:
        return future.result()
    except distributed.KilledWorker as e:
        tries = getattr(e, "allowed_failures", None)
        last = getattr(getattr(e, "last_worker", None), "address", "")
        return failed_row(study.study_id, study.path, f"the worker quantifying this study died each time it was "
                          f"tried{f' ({tries + 1} times)' if tries is not None else ''}: out of memory, or killed? "
                          f"(last worker {last or 'unknown'}; its log says more)")
    except Exception as e:   # a bug: the task was retried first; the others go on
        return failed_row(study.study_id, study.path, f"internal error: {type(e).__name__}: {e}")


def run_batch(client, studies, outdir, settings, progress=None, retries=1, on_row=None):
    """Quantify `studies` on `client`'s cluster; returns their cohort rows (completion order).

    progress: a BatchProgress (or anything with update(row)); on_row(row, pending futures) is
    called after each row (tests use it to kill a worker mid-run)."""
    _, distributed = import_distributed()
    pending = submit(client, studies, outdir, settings, retries)
    rows = []
    try:
        for future in distributed.as_completed(list(pending)):
            study = pending.pop(future)
            row = row_of(future, study)
            future.release()
            rows.append(row)
            if progress is not None:
                progress.update(row)
            if on_row is not None:
                on_row(row, pending)
    except KeyboardInterrupt:
        client.cancel(list(pending))
        rows += [failed_row(s.study_id, s.path, "not run: the batch was interrupted") for s in pending.values()]
        raise BatchInterrupted(rows) from None
    return rows


class BatchInterrupted(Exception):
    """Ctrl-C during a batch: `rows` holds what finished (and the studies left, as not run)."""

    def __init__(self, rows):
        super().__init__("interrupted")
        self.rows = rows
