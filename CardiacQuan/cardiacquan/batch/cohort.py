"""The cohort table (one row per study, COHORT_COLUMNS) and the failures table.

A row is read from the study's own summary.json, so the table says exactly what the study's
output folder says; it is rewritten from every study's row at the end of each run (rows of
studies an earlier run quantified come from their stamps).  cohort.parquet beside cohort.csv
where pyarrow is installed (typed columns, for pandas/polars/Spark at scale).
"""
from __future__ import annotations

import csv
import math
import os

from cardiacquan.contract import (
    COHORT_COLUMN_NAMES,
    COHORT_CSV,
    COHORT_PARQUET,
    FAILURE_COLUMNS,
    FAILURES_CSV,
    INDEX_COLUMNS,
    INDEX_NAMES,
    STATUS_FAILED,
)
from cardiacquan.frameworks import import_pyarrow

#: cohort columns that hold text; the others are numbers (empty where not measurable)
TEXT_COHORT_COLUMNS = ("study_id", "input", "status", "error", "warnings", "software_version", "model_versions")
INTEGER_COHORT_COLUMNS = ("n_frames", "n_slices", "ed_frame", "es_frame", "mid_slice", "mid_slice_ed_frame",
                          "mid_slice_es_frame", "frames_without_lv", "n_warnings")
WARNING_SEPARATOR = " | "


def model_versions(model_info):
    """'file@sha12; ...' of the weights a summary names (the ONNX files where both are bundled)."""
    names = sorted(model_info)
    used = [n for n in names if n.endswith(".onnx")] or names
    return "; ".join(f"{n}@{model_info[n].get('sha256', '')[:12]}" for n in used)


def row_from_summary(study_id, input_path, summary, status, seconds):
    """The cohort row of a quantified study from its summary.json (a dict)."""
    volumes = summary.get("volumes") or {}
    row = dict.fromkeys(COHORT_COLUMN_NAMES)
    row.update(study_id=study_id, input=str(input_path), status=status, error="",
               n_frames=summary.get("n_frames"), n_slices=summary.get("n_slices"),
               ed_frame=summary.get("ed_frame"), es_frame=summary.get("es_frame"),
               mid_slice=summary.get("mid_slice"), mid_slice_ed_frame=summary.get("mid_slice_ed_frame"),
               mid_slice_es_frame=summary.get("mid_slice_es_frame"),
               frames_without_lv=len(summary.get("frames_without_lv") or []),
               n_warnings=len(summary.get("warnings") or []),
               warnings=WARNING_SEPARATOR.join(summary.get("warnings") or []),
               seconds=round(float(seconds), 2), software_version=summary.get("software_version"),
               model_versions=model_versions(summary.get("model") or {}))
    for key in ("edv_ml", "esv_ml", "sv_ml", "ef_percent", "lv_mass_ed_g"):
        row[key] = volumes.get(key)
    for phase in ("ed", "es"):
        values = summary.get(f"mid_slice_{phase}_indices") or {}
        for name, column in zip(INDEX_NAMES, INDEX_COLUMNS):
            row[f"mid_{phase}_{column}"] = values.get(name)
    return row


def failed_row(study_id, input_path, error, seconds=None):
    row = dict.fromkeys(COHORT_COLUMN_NAMES)
    row.update(study_id=study_id, input=str(input_path), status=STATUS_FAILED, error=" ".join(str(error).split()),
               seconds=None if seconds is None else round(float(seconds), 2))
    return row


def _cell(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return v


def write_csv_atomic(path, header, rows):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in header])
    os.replace(tmp, path)


def _parquet_value(column, v):
    if v is None or v == "":
        return None
    if column in TEXT_COHORT_COLUMNS:
        return str(v)
    return int(v) if column in INTEGER_COHORT_COLUMNS else float(v)


def write_parquet(path, rows):
    """cohort.parquet with typed columns; False where pyarrow is not installed."""
    arrow = import_pyarrow()
    if arrow is None:
        return False
    pa, pq = arrow
    fields = [pa.field(c, pa.string() if c in TEXT_COHORT_COLUMNS else
                       pa.int64() if c in INTEGER_COHORT_COLUMNS else pa.float64()) for c in COHORT_COLUMN_NAMES]
    table = pa.table({c: [_parquet_value(c, r.get(c)) for r in rows] for c in COHORT_COLUMN_NAMES},
                     schema=pa.schema(fields))
    tmp = f"{path}.{os.getpid()}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return True


def write_tables(outdir, rows):
    """cohort.csv (+ cohort.parquet) and failures.csv in `outdir`; returns the files written."""
    rows = sorted(rows, key=lambda r: str(r["study_id"]))
    written = [os.path.join(outdir, COHORT_CSV)]
    write_csv_atomic(written[0], COHORT_COLUMN_NAMES, rows)
    parquet = os.path.join(outdir, COHORT_PARQUET)
    if write_parquet(parquet, rows):
        written.append(parquet)
    else:   # an earlier run's table would no longer match cohort.csv
        try:
            os.unlink(parquet)
        except FileNotFoundError:
            pass
    written.append(os.path.join(outdir, FAILURES_CSV))
    write_csv_atomic(written[-1], FAILURE_COLUMNS, [r for r in rows if r["status"] == STATUS_FAILED])
    return written
