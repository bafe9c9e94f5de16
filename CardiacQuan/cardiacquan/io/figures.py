"""The two pictures a clinician reads at a glance: the phase curve of the mid slice, and that
slice at ED and ES with its masks and RWT sectors.

matplotlib's object API (`Figure`) rather than pyplot: no global backend or figure state, so
writing figures is safe in any process (a Dask worker, a thread) and needs no display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from skimage import measure

from cardiacquan.contract import FIGURE_FILES, SECTOR_AHA_SEGMENTS, SECTOR_TITLES

SECTOR_LABELS = [f"{title} (AHA {aha})" for title, aha in zip(SECTOR_TITLES, SECTOR_AHA_SEGMENTS)]
SECTOR_COLOURS = ["#e6194b", "#f58231", "#ffe119", "#3cb44b", "#4363d8", "#911eb4"]
PHASE_CURVE_PNG, MID_SLICE_PNG = FIGURE_FILES


def _mm2(v):
    return f"{v:.0f} mm²" if np.isfinite(v) else "not measurable"


def write_figures(result, outdir):
    cine, z = result.cine, result.mid_slice
    idx = result.per_slice[z]
    t_ms = cine.times_ms
    xlabel = "time (ms)" if cine.times_known else "frame"
    x = t_ms if cine.times_known else np.arange(cine.n_frames)
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    ax.plot(x, idx.cavity_area, "o-", color="#d62728", label="LV cavity area")
    ax.plot(x, idx.myocardium_area, "s-", color="#1f77b4", label="LV myocardium area")
    for t in range(cine.n_frames):
        if idx.phase[t] == 1:
            lo = x[t - 1] if t > 0 else x[t]
            ax.axvspan(0.5 * (lo + x[t]), x[t] + 0.5 * (x[min(t + 1, len(x) - 1)] - x[t]) if t + 1 < len(x) else x[t],
                       color="#cccccc", alpha=0.5, lw=0)
    for t, name in ((idx.ed, "ED"), (idx.es, "ES")):
        if t >= 0:
            ax.axvline(x[t], color="k", ls="--", lw=1)
            ax.annotate(f"slice {name} (frame {t})", (x[t], ax.get_ylim()[1]), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("area (mm²)")
    ax.set_title(f"Phase curve, slice {z} (grey: systole)", fontsize=10, pad=14)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(Path(outdir) / PHASE_CURVE_PNG, dpi=110)

    fig = Figure(figsize=(8, 4.3))
    axes = fig.subplots(1, 2)
    cmap = ListedColormap(SECTOR_COLOURS)
    for a, t, name in zip(axes, (idx.ed, idx.es), ("end-diastole", "end-systole")):
        a.axis("off")
        if t < 0:
            continue
        img = cine.image[t, z]
        lab = result.labels[t, z]
        rows, cols = np.nonzero(lab > 0)
        if rows.size:
            m = int(40 / min(cine.spacing))
            sl = (slice(max(rows.min() - m, 0), rows.max() + m), slice(max(cols.min() - m, 0), cols.max() + m))
        else:
            sl = (slice(None), slice(None))
        lo, hi = np.percentile(img, [1, 99.5])
        a.imshow(img[sl], cmap="gray", vmin=lo, vmax=hi, aspect=cine.spacing[0] / cine.spacing[1])
        sec = np.ma.masked_equal(result.sectors[t, z][sl], 0)
        a.imshow(sec - 1, cmap=cmap, vmin=-0.5, vmax=5.5, alpha=0.55, interpolation="nearest",
                 aspect=cine.spacing[0] / cine.spacing[1])
        for k, col in ((3, "#ff3030"), (1, "#30a0ff")):
            for c in measure.find_contours((lab[sl] == k).astype(float), 0.5):
                a.plot(c[:, 1], c[:, 0], color=col, lw=1)
        a.set_title(f"{name} of this slice, frame {t}\ncavity {_mm2(idx.cavity_area[t])}, "
                    f"myocardium {_mm2(idx.myocardium_area[t])}", fontsize=9)
    handles = [Patch(color=c, label=f"RWT{k + 1} {n}") for k, (c, n) in
               enumerate(zip(SECTOR_COLOURS, SECTOR_LABELS))]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"Mid-ventricular slice {z}: myocardium sectors, LV cavity (red), RV (blue)", fontsize=10)
    fig.tight_layout(rect=(0, 0.09, 1, 0.95))
    fig.savefig(Path(outdir) / MID_SLICE_PNG, dpi=110)
