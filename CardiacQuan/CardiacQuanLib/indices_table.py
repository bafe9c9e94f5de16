"""The indices table: the engine's indices.csv <-> a vtkMRMLTableNode, its attributes, the summary text.

Column names, units, meanings and which columns hold integers or text come from
``cardiacquan.contract``; unknown columns are kept as they come.  The run's ED/ES frames, mid
slice, per-slice ED/ES and volumes are stored as table attributes (ATTRIBUTE_*) so that a saved
scene restores the summary without the engine's files.
"""
import csv
import json
import math

import vtk

from cardiacquan.contract import (
    FRAME_COLUMN,
    INDEX_COLUMN,
    INDICES_COLUMN_INFO,
    INDICES_CSV,
    INTEGER_COLUMNS,
    SLICE_COLUMN,
    TEXT_COLUMNS,
    TIME_COLUMN,
)

from CardiacQuanLib.errors import CardiacQuanRunError

ATTRIBUTE_ED_FRAME = "CardiacQuan.EDFrame"
ATTRIBUTE_ES_FRAME = "CardiacQuan.ESFrame"
ATTRIBUTE_MID_SLICE = "CardiacQuan.MidSlice"
ATTRIBUTE_ED_INDEX_VALUE = "CardiacQuan.EDIndexValue"
ATTRIBUTE_ES_INDEX_VALUE = "CardiacQuan.ESIndexValue"
ATTRIBUTE_SLICES = "CardiacQuan.Slices"
ATTRIBUTE_SOFTWARE_VERSION = "CardiacQuan.SoftwareVersion"
ATTRIBUTE_MODEL = "CardiacQuan.Model"
ATTRIBUTE_WARNINGS = "CardiacQuan.Warnings"
ATTRIBUTE_VOLUMES = "CardiacQuan.Volumes"
ATTRIBUTE_TIMES_KNOWN = "CardiacQuan.TimesKnown"

#: without these columns a table cannot be summarised or plotted
REQUIRED_COLUMNS = (SLICE_COLUMN, FRAME_COLUMN, INDEX_COLUMN["A1"], INDEX_COLUMN["A2"])


def readIndicesCsv(path):
    """(columns, rows as dicts of strings) of the engine's indices.csv."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = [dict(r) for r in reader]
    for required in REQUIRED_COLUMNS:
        if required not in columns:
            raise CardiacQuanRunError(f"{INDICES_CSV} has no '{required}' column")
    if not rows:
        raise CardiacQuanRunError(f"{INDICES_CSV} has no rows")
    return columns, rows


def fillTable(table, columns, rows):
    """Add the columns to a table node: text, integer (-1 where empty) or double, with unit and meaning."""
    for name in columns:
        values = [r.get(name, "") for r in rows]
        if name in TEXT_COLUMNS:
            arr = vtk.vtkStringArray()
            for v in values:
                arr.InsertNextValue(str(v))
        elif name in INTEGER_COLUMNS:
            arr = vtk.vtkIntArray()
            for v in values:
                arr.InsertNextValue(toInt(v, -1))
        else:
            numeric = [toFloat(v) for v in values]
            if all(math.isnan(x) for x in numeric) and any(str(v).strip() for v in values):
                arr = vtk.vtkStringArray()
                for v in values:
                    arr.InsertNextValue(str(v))
            else:
                arr = vtk.vtkDoubleArray()
                for x in numeric:
                    arr.InsertNextValue(x)
        arr.SetName(name)
        table.AddColumn(arr)
        unit, desc = INDICES_COLUMN_INFO.get(name, ("", ""))
        if unit:
            table.SetColumnUnitLabel(name, unit)
        if desc:
            table.SetColumnDescription(name, desc)
    table.Modified()


def setRunAttributes(table, summary, indexValues, timesKnown):
    """Store the run's summary (summary.json) on the table as attributes."""
    ed, es = summary.get("ed_frame"), summary.get("es_frame")
    mid = summary.get("mid_slice")
    table.SetAttribute(ATTRIBUTE_ED_FRAME, "" if ed is None else str(int(ed)))
    table.SetAttribute(ATTRIBUTE_ES_FRAME, "" if es is None else str(int(es)))
    table.SetAttribute(ATTRIBUTE_MID_SLICE, "" if mid is None else str(int(mid)))
    if ed is not None and 0 <= int(ed) < len(indexValues):
        table.SetAttribute(ATTRIBUTE_ED_INDEX_VALUE, indexValues[int(ed)])
    if es is not None and 0 <= int(es) < len(indexValues):
        table.SetAttribute(ATTRIBUTE_ES_INDEX_VALUE, indexValues[int(es)])
    table.SetAttribute(ATTRIBUTE_SLICES, json.dumps(summary.get("slices") or []))
    table.SetAttribute(ATTRIBUTE_SOFTWARE_VERSION, str(summary.get("software_version", "")))
    model = summary.get("model", "")
    table.SetAttribute(ATTRIBUTE_MODEL, model if isinstance(model, str) else json.dumps(model))
    table.SetAttribute(ATTRIBUTE_WARNINGS, json.dumps(summary.get("warnings") or []))
    if isinstance(summary.get("volumes"), dict):
        table.SetAttribute(ATTRIBUTE_VOLUMES, json.dumps(summary["volumes"]))
    table.SetAttribute(ATTRIBUTE_TIMES_KNOWN, "1" if timesKnown else "0")


def tableRows(table):
    """(columns, rows as dicts of strings) of a table node."""
    t = table.GetTable()
    columns = [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())]
    rows = []
    for r in range(t.GetNumberOfRows()):
        rows.append({columns[c]: t.GetValue(r, c).ToString() for c in range(len(columns))})
    return columns, rows


def summaryFromTable(table):
    """The part of summary.json kept on the table: ed_frame, es_frame, mid_slice, slices."""
    def attr(name):
        v = table.GetAttribute(name)
        return int(v) if v not in (None, "") else None

    try:
        slices = json.loads(table.GetAttribute(ATTRIBUTE_SLICES) or "[]")
    except ValueError:
        slices = []
    return dict(ed_frame=attr(ATTRIBUTE_ED_FRAME), es_frame=attr(ATTRIBUTE_ES_FRAME),
                mid_slice=attr(ATTRIBUTE_MID_SLICE), slices=slices)


def plotSlice(rows, summary):
    """The slice the area curves show: the mid slice when quantified, else the middle one present."""
    present = sorted(set(toInt(r.get(SLICE_COLUMN)) for r in rows))
    mid = summary.get("mid_slice")
    if mid is not None and int(mid) in present:
        return int(mid)
    return present[len(present) // 2] if present else 0


def sliceEdEs(summary, sliceIndex):
    """(ED frame, ES frame) shown for one slice: the heart's (one ED/ES for every slice, as the
    phase column); the slice's own only where the run has none."""
    if summary.get("ed_frame") is not None and summary.get("es_frame") is not None:
        return summary.get("ed_frame"), summary.get("es_frame")
    for s in summary.get("slices") or []:
        if toInt(s.get("slice")) == sliceIndex:
            return s.get("ed_frame"), s.get("es_frame")
    return summary.get("ed_frame"), summary.get("es_frame")


def resultsSummary(indicesTable) -> str:
    """A few lines for the GUI: ED/ES frames, volumes, and the mid slice's indices at ED and ES."""
    if indicesTable is None:
        return ""
    s = summaryFromTable(indicesTable)
    columns, rows = tableRows(indicesTable)
    ed, es, mid = s.get("ed_frame"), s.get("es_frame"), s.get("mid_slice")
    lines = []
    timesKnown = indicesTable.GetAttribute(ATTRIBUTE_TIMES_KNOWN) == "1"

    def frameText(label, f):
        if f is None:
            return f"{label}: -"
        row = next((r for r in rows if toInt(r.get(FRAME_COLUMN)) == f), None)
        t = toFloat(row.get(TIME_COLUMN)) if row is not None else float("nan")
        return f"{label} frame {f}" + (f" ({t:.0f} ms)" if timesKnown and math.isfinite(t) else "")

    lines.append(frameText("ED", ed) + ", " + frameText("ES", es))
    try:
        vol = json.loads(indicesTable.GetAttribute(ATTRIBUTE_VOLUMES) or "{}")
    except ValueError:
        vol = {}
    if vol.get("edv_ml") is not None and vol.get("esv_ml") is not None:
        text = f"EDV {vol['edv_ml']:.1f} mL, ESV {vol['esv_ml']:.1f} mL"
        if vol.get("ef_percent") is not None:
            text += f", EF {vol['ef_percent']:.0f} %"
        if vol.get("lv_mass_ed_g") is not None:
            text += f", LV mass {vol['lv_mass_ed_g']:.0f} g"
        lines.append(text + " (slice summation)")
    shown = mid if mid is not None else (min(toInt(r.get(SLICE_COLUMN)) for r in rows) if rows else None)
    lines.append(f"Slices quantified: {len(set(toInt(r.get(SLICE_COLUMN)) for r in rows))}; mid-ventricular slice: "
                 f"{'-' if mid is None else mid}")
    sliceEd, sliceEs = sliceEdEs(s, shown)
    for label, f in (("ED", sliceEd), ("ES", sliceEs)):
        row = next((r for r in rows if toInt(r.get(SLICE_COLUMN)) == shown and toInt(r.get(FRAME_COLUMN)) == f), None)
        if row is None:
            continue
        dims = [toFloat(row.get(INDEX_COLUMN[f"D{i}"])) for i in (1, 2, 3)]
        rwt = [toFloat(row.get(INDEX_COLUMN[f"RWT{i}"])) for i in range(1, 7)]
        lines.append(f"Slice {shown} at {label} (frame {f}): cavity {toFloat(row.get(INDEX_COLUMN['A1'])):.0f} mm\u00b2, "
                     f"myocardium {toFloat(row.get(INDEX_COLUMN['A2'])):.0f} mm\u00b2, "
                     f"D1-D3 {' / '.join(f'{d:.1f}' for d in dims)} mm, "
                     f"RWT1-6 {' / '.join(f'{w:.1f}' for w in rwt)} mm")
    return "\n".join(lines)


def toInt(v, default=None):
    """int of a CSV/table cell ("3", "3.0", "True"), else default."""
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return int(v.strip().lower() == "true")
    try:
        return int(float(v))
    except (TypeError, ValueError, OverflowError):
        return default


def toFloat(v):
    """float of a CSV/table cell, NaN where empty or not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
