"""report.html: one self-contained page a reader opens offline (no external resource: the
pictures are inlined as data URIs, the style is in the page, no script).

Written after the pictures, from the summary (summary.json's dict) and the result: the study,
ED/ES, volumes/EF/mass, the phase curve, the mid slice and every slice at ED and ES, the AHA
bull's-eye and segment table, the per-frame table, warnings and quality flags, and the software
and model versions.
"""
from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cardiacquan.contract import (
    BULLSEYE_PNG,
    INDEX_COLUMNS,
    INDEX_NAMES,
    MID_SLICE_PNG,
    PHASE_CURVE_PNG,
    SLICES_PNG,
)

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;border-bottom:2px solid #c0392b;padding-bottom:3px;margin-top:28px}
.sub{color:#666;font-size:13px} .grid{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:120px;background:#fafafa}
.card b{display:block;font-size:22px;color:#c0392b} .card span{font-size:12px;color:#555}
table{border-collapse:collapse;font-size:12px;margin:8px 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f2f2f2} td.l,th.l{text-align:left} tr.ed td{background:#fdebd0} tr.es td{background:#d6eaf8}
img{max-width:100%;border:1px solid #eee} .warn li{color:#8a4b00} .note{font-size:12px;color:#555}
"""


def _e(v):
    return html.escape(str(v))


def _img(path, alt):
    p = Path(path)
    if not p.is_file():
        return f"<p class='note'>({_e(alt)}: picture not written)</p>"
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{data}'>"


def _fmt(v, nd=1):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def _cards(summary):
    vol = summary.get("volumes") or {}
    items = [("ED frame", summary.get("ed_frame"), ""), ("ES frame", summary.get("es_frame"), "")]
    for key, label, unit in (("edv_ml", "EDV", "mL"), ("esv_ml", "ESV", "mL"), ("sv_ml", "SV", "mL"),
                             ("ef_percent", "EF", "%"), ("lv_mass_ed_g", "LV mass (ED)", "g")):
        items.append((label, vol.get(key), unit))
    out = []
    for label, v, unit in items:
        text = "–" if v is None else (f"{v}" if isinstance(v, int) else f"{v:.1f}")
        out.append(f"<div class='card'><b>{_e(text)}</b><span>{_e(label)}{' (' + unit + ')' if unit else ''}</span></div>")
    note = "" if vol else ("<p class='note'>Volumes, EF and mass need the whole stack (at least 3 slices) "
                           "quantified.</p>")
    return "<div class='grid'>" + "".join(out) + "</div>" + note


def _study(summary, cine):
    meta = cine.metadata or {}
    rows = [("input", summary.get("input")), ("patient ID", meta.get("patient_id")),
            ("study", meta.get("study_description")), ("series", meta.get("series_description")),
            ("manufacturer", meta.get("manufacturer")),
            ("frames x slices", f"{summary['n_frames']} x {summary['n_slices']}"),
            ("matrix, pixel spacing", f"{summary['frame_shape'][0]} x {summary['frame_shape'][1]} px, "
                                      f"{summary['pixel_spacing_mm'][0]:.3g} x {summary['pixel_spacing_mm'][1]:.3g} mm"),
            ("times", "trigger times (ms)" if summary.get("times_known") else "unknown: frames numbered"),
            ("ED/ES from", summary.get("ed_es_from")), ("segmented by", summary.get("segmented_by")),
            ("mid-ventricular slice", summary.get("mid_slice"))]
    return "<table>" + "".join(f"<tr><th class='l'>{_e(k)}</th><td class='l'>{_e(v)}</td></tr>"
                               for k, v in rows if v not in (None, "")) + "</table>"


def _segments_table(summary):
    seg = summary.get("segments") or {}
    rows = seg.get("segments") or []
    if not rows:
        return f"<p class='note'>{_e(seg.get('note', 'AHA segments not computed'))}</p>"
    head = ("<tr><th>segment</th><th class='l'>level</th><th class='l'>name</th><th>slices</th>"
            "<th>thickness ED (mm)</th><th>thickness ES (mm)</th><th>thickening (%)</th></tr>")
    body = "".join(f"<tr><td>{r['segment']}</td><td class='l'>{_e(r['level'])}</td><td class='l'>{_e(r['name'])}</td>"
                   f"<td>{_e(' '.join(map(str, r['slices'])))}</td><td>{_fmt(r['thickness_ed_mm'])}</td>"
                   f"<td>{_fmt(r['thickness_es_mm'])}</td><td>{_fmt(r['thickening_percent'])}</td></tr>" for r in rows)
    return (f"<table>{head}{body}</table><p class='note'>{_e(seg.get('note', ''))}; base to apex from "
            f"{_e(seg.get('order_from', ''))}; slices with a complete ring at ED: "
            f"{_e(', '.join(map(str, seg.get('ring_slices', []))))}.</p>")


def _frame_table(result, summary):
    cine, z = result.cine, result.mid_slice
    idx = result.per_slice[z]
    arr = idx.as_array()
    curve = summary.get("phase_curve") or {}
    vol_key = "cavity_volume_ml" if "cavity_volume_ml" in curve else None
    whole = (summary.get("volumes") or {}).get("cavity_volume_ml")
    head = "<tr><th>frame</th><th>time (ms)</th><th>phase</th>"
    head += "<th>LV volume, phase curve (mL)</th>" if vol_key else ""
    head += "<th>LV volume, stack (mL)</th>" if whole else ""
    head += "".join(f"<th>{n}</th>" for n in INDEX_NAMES) + "</tr>"
    body = []
    for t in range(cine.n_frames):
        cls = " class='ed'" if t == result.ed_frame else (" class='es'" if t == result.es_frame else "")
        mark = " ED" if t == result.ed_frame else (" ES" if t == result.es_frame else "")
        ph = "systole" if result.phase[t] == 1 else "diastole"
        cells = [str(t), _fmt(cine.times_ms[t]) if cine.times_known else "–", ph + mark]
        if vol_key:
            cells.append(_fmt(curve[vol_key][t]))
        if whole:
            cells.append(_fmt(whole[t]))
        cells += [_fmt(v, 0 if k < 2 else 1) for k, v in enumerate(arr[t])]
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    units = ", ".join(f"{n} = {c}" for n, c in zip(INDEX_NAMES, INDEX_COLUMNS))
    return (f"<p class='note'>Mid-ventricular slice {z}, every frame (ED orange, ES blue); the indices of every "
            f"slice are in indices.csv ({_e(units)}).</p><table>{head}{''.join(body)}</table>")


def _flags(result, summary):
    items = [f"<li>{_e(w)}</li>" for w in summary.get("warnings") or []]
    missing = summary.get("frames_without_lv") or []
    flags = [f"quantified slices: {len(result.slices)} ({', '.join(map(str, result.slices))})",
             f"frames where the network found no LV: {len(missing)}"]
    for z in result.slices:
        idx = result.per_slice[z]
        axes = int(sum(1 for s in idx.orientation_source if s == "image-axes"))
        bad = int((~idx.valid).sum())
        if axes or bad:
            flags.append(f"slice {z}: {bad} frame(s) without LV cavity, {axes} frame(s) oriented by the image "
                         "axes (no RV)")
    return ("<ul class='warn'>" + ("".join(items) or "<li>none</li>") + "</ul><p><b>Quality flags</b></p><ul>"
            + "".join(f"<li>{_e(f)}</li>" for f in flags) + "</ul>")


def _versions(summary):
    model = summary.get("model") or {}
    text = json.dumps(model, indent=1) if model else "no network (given labels)"
    quan = summary.get("quantification", {}).get("final_values", "")
    return (f"<table><tr><th class='l'>cardiacquan</th><td class='l'>{_e(summary.get('software_version'))}</td></tr>"
            f"<tr><th class='l'>Python</th><td class='l'>{_e(summary.get('python'))}</td></tr>"
            f"<tr><th class='l'>final values</th><td class='l'>{_e(quan)}</td></tr></table>"
            f"<details><summary>models</summary><pre style='font-size:11px'>{_e(text)}</pre></details>")


def write_report(result, summary, outdir, path):
    """Write report.html from the summary dict and the pictures already in `outdir`."""
    outdir = Path(outdir)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>CardiacQuan report</title>", f"<style>{STYLE}</style></head><body>",
        "<h1>CardiacQuan: left-ventricle quantification</h1>",
        f"<p class='sub'>{_e(summary.get('input'))} · written {when} · research software, not a medical device: "
        "every number must be reviewed by a qualified reader</p>",
        "<h2>Study</h2>", _study(summary, result.cine),
        "<h2>Function</h2>", _cards(summary),
        "<h2>Phase curve</h2>", _img(outdir / PHASE_CURVE_PNG, "phase curve"),
        "<h2>Mid-ventricular slice at ED and ES</h2>", _img(outdir / MID_SLICE_PNG, "mid slice at ED and ES"),
        "<h2>Every slice at ED and ES</h2>", _img(outdir / SLICES_PNG, "every slice at ED and ES"),
        "<h2>AHA 16 segments</h2>", _img(outdir / BULLSEYE_PNG, "bull's-eye"), _segments_table(summary),
        "<h2>Per-frame values</h2>", _frame_table(result, summary),
        "<h2>Warnings</h2>", _flags(result, summary),
        "<h2>Software and models</h2>", _versions(summary),
        "</body></html>",
    ]
    Path(path).write_text("\n".join(parts), encoding="utf-8")
