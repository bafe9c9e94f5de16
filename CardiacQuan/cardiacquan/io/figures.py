"""The pictures a clinician reads at a glance: the heart's phase curve, the mid slice at the
study's ED and ES with its masks and RWT sectors, and every quantified slice at ED and ES.

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

from cardiacquan.contract import MID_SLICE_PNG, PHASE_CURVE_PNG, SECTOR_AHA_SEGMENTS, SECTOR_TITLES, SLICES_PNG

SECTOR_LABELS = [f"{title} (AHA {aha})" for title, aha in zip(SECTOR_TITLES, SECTOR_AHA_SEGMENTS)]
SECTOR_COLOURS = ["#e6194b", "#f58231", "#ffe119", "#3cb44b", "#4363d8", "#911eb4"]


def _mm2(v):
    return f"{v:.0f} mm²" if np.isfinite(v) else "not measurable"


def _systole_spans(ax, x, phase):
    for t in range(len(x)):
        if phase[t] == 1:
            lo = 0.5 * (x[t - 1] + x[t]) if t > 0 else x[t]
            hi = 0.5 * (x[t] + x[t + 1]) if t + 1 < len(x) else x[t]
            ax.axvspan(lo, hi, color="#cccccc", alpha=0.5, lw=0)


def write_phase_curve(result, path):
    cine, z = result.cine, result.mid_slice
    idx = result.per_slice[z]
    x = cine.times_ms if cine.times_known else np.arange(cine.n_frames)
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    curve = result.phase_curve or {}
    handles = []
    if curve.get("unit") == "mL":
        handles += ax.plot(x, curve["curve"], "o-", color="#2ca02c",
                           label=f"LV cavity volume, slices {_slice_list(curve['slices'])} (phase curve)")
        vol = (result.volumes or {}).get("cavity_volume_ml")
        if vol and len(curve["slices"]) < len(result.slices):
            handles += ax.plot(x, [np.nan if v is None else v for v in vol], "--", color="#98df8a",
                               label="LV cavity volume, whole stack")
        ax.set_ylabel("volume (mL)")
        ax2 = ax.twinx()
        ax2.set_ylabel(f"area of slice {z} (mm²)")
    else:
        ax2 = ax
        ax.set_ylabel("area (mm²)")
    handles += ax2.plot(x, idx.cavity_area, "o-" if ax2 is ax else ".-", color="#d62728",
                        label=f"LV cavity area, slice {z}")
    handles += ax2.plot(x, idx.myocardium_area, "s-" if ax2 is ax else ".-", color="#1f77b4",
                        label=f"LV myocardium area, slice {z}")
    phase = result.phase if result.phase is not None else idx.phase
    _systole_spans(ax, x, phase)
    for t, name in ((result.ed_frame, "ED"), (result.es_frame, "ES")):
        if t >= 0:
            ax.axvline(x[t], color="k", ls="--", lw=1)
            ax.annotate(f"{name} (frame {t})", (x[t], ax.get_ylim()[1]), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("time (ms)" if cine.times_known else "frame")
    ax.set_title("Phase curve of the heart (grey: systole)", fontsize=10, pad=14)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _slice_list(zs):
    zs = sorted(int(z) for z in zs)
    if zs and zs == list(range(zs[0], zs[-1] + 1)) and len(zs) > 2:
        return f"{zs[0]}-{zs[-1]}"
    return ", ".join(map(str, zs))


def _crop(lab, spacing, margin_mm=40):
    rows, cols = np.nonzero(lab > 0)
    if not rows.size:
        return slice(None), slice(None)
    m = int(margin_mm / min(spacing))
    return slice(max(rows.min() - m, 0), rows.max() + m), slice(max(cols.min() - m, 0), cols.max() + m)


def draw_frame(a, result, t, z, sectors=True, margin_mm=40, lw=1.0):
    """One frame of one slice: the image, the RWT sectors, the LV cavity (red) and RV (blue) borders."""
    cine = result.cine
    img, lab = cine.image[t, z], result.labels[t, z]
    sl = _crop(result.labels[:, z].max(axis=0), cine.spacing, margin_mm)
    lo, hi = np.percentile(img[sl], [1, 99.5])
    aspect = cine.spacing[0] / cine.spacing[1]
    a.imshow(img[sl], cmap="gray", vmin=lo, vmax=hi, aspect=aspect)
    if sectors:
        sec = np.ma.masked_equal(result.sectors[t, z][sl], 0)
        a.imshow(sec - 1, cmap=ListedColormap(SECTOR_COLOURS), vmin=-0.5, vmax=5.5, alpha=0.55,
                 interpolation="nearest", aspect=aspect)
    for k, col in ((3, "#ff3030"), (1, "#30a0ff")):
        for c in measure.find_contours((lab[sl] == k).astype(float), 0.5):
            a.plot(c[:, 1], c[:, 0], color=col, lw=lw)
    a.set_xticks([])
    a.set_yticks([])


def write_mid_slice(result, path):
    z = result.mid_slice
    idx = result.per_slice[z]
    fig = Figure(figsize=(8, 4.3))
    axes = fig.subplots(1, 2)
    for a, t, name in zip(axes, (result.ed_frame, result.es_frame), ("end-diastole", "end-systole")):
        a.axis("off")
        if t < 0:
            continue
        draw_frame(a, result, t, z)
        a.set_title(f"{name}, frame {t}\ncavity {_mm2(idx.cavity_area[t])}, "
                    f"myocardium {_mm2(idx.myocardium_area[t])}", fontsize=9)
    handles = [Patch(color=c, label=f"RWT{k + 1} {n}") for k, (c, n) in
               enumerate(zip(SECTOR_COLOURS, SECTOR_LABELS))]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"Mid-ventricular slice {z}: myocardium sectors, LV cavity (red), RV (blue)", fontsize=10)
    fig.tight_layout(rect=(0, 0.09, 1, 0.95))
    fig.savefig(path, dpi=110)


def write_slices(result, path):
    """Every quantified slice with an LV, base to apex, at the study's ED (top) and ES (bottom)."""
    seg = result.segments or {}
    order = [z for z in (seg.get("base_to_apex") or result.slices) if result.per_slice[z].valid.any()]
    level = {z: lv for lv, zs in (seg.get("levels") or {}).items() for z in zs}
    n = max(len(order), 1)
    fig = Figure(figsize=(min(1.6 * n, 22), 3.8))
    axes = np.asarray(fig.subplots(2, n, squeeze=False))
    for j, z in enumerate(order):
        for i, (t, name) in enumerate(((result.ed_frame, "ED"), (result.es_frame, "ES"))):
            a = axes[i, j]
            draw_frame(a, result, t, z, margin_mm=15, lw=0.7)
            if i == 0:
                a.set_title(f"slice {z}" + (f"\n{level[z]}" if z in level else "\n-"), fontsize=8)
            if j == 0:
                a.set_ylabel(f"{name} (frame {t})", fontsize=8)
    fig.suptitle("Every slice at ED and ES (base left, apex right; AHA level; LV cavity red, RV blue, sectors coloured)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=90)


def write_figures(result, outdir):
    outdir = Path(outdir)
    write_phase_curve(result, outdir / PHASE_CURVE_PNG)
    write_mid_slice(result, outdir / MID_SLICE_PNG)
    write_slices(result, outdir / SLICES_PNG)
