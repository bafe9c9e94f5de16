"""The AHA 16-segment bull's-eye: wall thickness at ED, at ES, and systolic thickening.

Standard bull's-eye layout: basal ring outside, mid ring, apical ring inside (no apical cap,
segment 17, which a short-axis stack does not measure); anterior at the top, the septum on the
left, as the short-axis view shows it (sector angles of docs/indices.md).
"""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from cardiacquan.measure.segments import SEGMENT_SECTORS

RINGS = {"basal": (2.0, 3.0), "mid": (1.0, 2.0), "apical": (0.35, 1.0)}
MISSING_COLOUR = "#d9d9d9"


def _panel(ax, rows, key, norm, cmap, unit, fmt):
    ax.set_theta_zero_location("E")
    ax.set_theta_direction(1)
    ax.set_axis_off()
    ax.set_ylim(0, 3.05)
    for r in rows:
        centre, width = SEGMENT_SECTORS[r["segment"]]
        r0, r1 = RINGS[r["level"]]
        v = r[key]
        ok = v is not None and np.isfinite(v)
        colour = cmap(norm(v)) if ok else MISSING_COLOUR
        ax.bar(np.deg2rad(centre), r1 - r0, width=np.deg2rad(width), bottom=r0, color=colour,
               edgecolor="white", linewidth=1.5)
        lum = np.dot(colour[:3], [0.299, 0.587, 0.114]) if ok else 1.0
        ax.text(np.deg2rad(centre), (r0 + r1) / 2 + (0.1 if r["level"] == "apical" else 0.0),
                f"{r['segment']}\n{fmt.format(v) if ok else '-'}", ha="center", va="center", fontsize=7.5,
                color="white" if lum < 0.5 else "black", fontweight="bold")
    for angle, text in ((90, "anterior"), (180, "septum"), (270, "inferior"), (0, "lateral")):
        ax.text(np.deg2rad(angle), 3.35, text, ha="center", va="center", fontsize=7, color="#555555",
                rotation=90 if angle in (0, 180) else 0)
    sm = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.55, pad=0.12,
                            orientation="horizontal")
    sm.set_label(unit, fontsize=8)
    sm.ax.tick_params(labelsize=7)


def write_bullseye(result, path):
    """bullseye.png: three bull's-eyes (thickness ED, ES in mm; thickening in %) with the segment
    numbers and values; a note in place of them when the segments could not be computed."""
    seg = result.segments or {}
    rows = seg.get("segments") or []
    fig = Figure(figsize=(11, 4.6))
    if not rows:
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "AHA segments " + (seg.get("note") or "not computed"), ha="center", va="center",
                wrap=True, fontsize=10)
        fig.savefig(path, dpi=100)
        return
    axes = fig.subplots(1, 3, subplot_kw={"projection": "polar"})
    th = [r[k] for r in rows for k in ("thickness_ed_mm", "thickness_es_mm") if r[k] is not None and np.isfinite(r[k])]
    tnorm = Normalize(vmin=0.0, vmax=max(th) if th else 1.0)
    tk = [r["thickening_percent"] for r in rows if r["thickening_percent"] is not None
          and np.isfinite(r["thickening_percent"])]
    lim = max([abs(v) for v in tk] + [10.0])
    knorm = TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    _panel(axes[0], rows, "thickness_ed_mm", tnorm, colormaps["viridis"], "wall thickness at ED (mm)", "{:.1f}")
    _panel(axes[1], rows, "thickness_es_mm", tnorm, colormaps["viridis"], "wall thickness at ES (mm)", "{:.1f}")
    _panel(axes[2], rows, "thickening_percent", knorm, colormaps["RdBu"], "systolic thickening (%)", "{:.0f}")
    for ax, title in zip(axes, (f"End-diastole (frame {seg.get('ed_frame')})", f"End-systole (frame {seg.get('es_frame')})",
                                "Thickening (ES - ED) / ED")):
        ax.set_title(title, fontsize=10, pad=22)
    levels = seg.get("levels", {})
    fig.suptitle("AHA 16 segments: basal ring outside (slices " + ", ".join(map(str, levels.get("basal", [])))
                 + "), mid (" + ", ".join(map(str, levels.get("mid", []))) + "), apical inside ("
                 + ", ".join(map(str, levels.get("apical", []))) + ")", fontsize=9)
    fig.subplots_adjust(left=0.03, right=0.97, top=0.82, bottom=0.02, wspace=0.25)
    fig.savefig(path, dpi=110)
