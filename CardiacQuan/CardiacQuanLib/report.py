"""Everything a quantification writes: the per-frame table other tools read, the study
summary, label images in the input's geometry, and two pictures a clinician reads at a glance.
"""
from __future__ import annotations

import csv
import hashlib
import json
import platform
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from . import __version__
from .geometry import INDEX_NAMES

CSV_COLUMNS = ["slice", "slice_position_mm", "frame", "time_ms", "cavity_area_mm2", "myocardium_area_mm2",
               "dim1_mm", "dim2_mm", "dim3_mm", "rwt1_mm", "rwt2_mm", "rwt3_mm", "rwt4_mm", "rwt5_mm",
               "rwt6_mm", "phase", "septum_angle_deg", "orientation_source", "mirrored", "valid", "source"]
SECTOR_NAMES = ["inferoseptal (AHA 9)", "inferior (AHA 10)", "inferolateral (AHA 11)",
                "anterolateral (AHA 12)", "anterior (AHA 7)", "anteroseptal (AHA 8)"]
SECTOR_COLOURS = ["#e6194b", "#f58231", "#ffe119", "#3cb44b", "#4363d8", "#911eb4"]


def _fmt(v, nd=3):
    return "" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def _source_summary(src):
    """One cell for the 11 per-index sources: the common one, then the exceptions by index."""
    src = list(src)
    common = Counter(src).most_common(1)[0][0]          # ties: the first in index order (stable)
    others = [f"{name}: {s}" for name, s in zip(INDEX_NAMES, src) if s != common]
    return common if not others else f"{common} ({'; '.join(others)})"


def write_indices_csv(result, path):
    cine = result.cine
    pos = cine.slice_positions_mm
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for z in result.slices:
            idx = result.per_slice[z]
            arr = idx.as_array()
            for t in range(cine.n_frames):
                w.writerow([z, _fmt(pos[z]), t, _fmt(cine.times_ms[t], 1)]
                           + [_fmt(v) for v in arr[t]]
                           # phase is a time in the slice's cycle, so a frame without LV still has
                           # one; a slice without LV in any frame has none (empty, never -1)
                           + ["" if idx.phase[t] < 0 else int(idx.phase[t]), _fmt(idx.septum_angle_deg[t], 1),
                              idx.orientation_source[t], int(bool(idx.mirrored[t])) if idx.valid[t] else "",
                              int(bool(idx.valid[t])),
                              _source_summary(result.sources[z])])


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_info():
    from .segment import MODEL_FILE, default_model_dir
    out = {}
    d = default_model_dir()
    for name in (MODEL_FILE, "quan_net.keras"):
        p = d / name
        if p.exists():
            out[name] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
            card = p.with_suffix(".md")
            if card.exists():
                out[name]["model_card"] = str(card)
    return out


def _frame_or_none(f):
    """Frame numbers as JSON: null, not -1, where a slice has no LV in any frame."""
    return int(f) if f is not None and int(f) >= 0 else None


def summary_dict(result, input_path=None):
    cine = result.cine
    slices = []
    for z in result.slices:
        idx = result.per_slice[z]
        slices.append({"slice": z, "slice_position_mm": float(cine.slice_positions_mm[z]),
                       "ed_frame": _frame_or_none(idx.ed), "es_frame": _frame_or_none(idx.es),
                       "valid_frames": int(idx.valid.sum()),
                       "mirrored": bool(np.any(idx.mirrored)),
                       "orientation_source": sorted(set(s for s in idx.orientation_source if s)),
                       "index_sources": dict(zip(INDEX_NAMES, result.sources[z]))})
    mid = result.per_slice[result.mid_slice]
    mid_ed = {k: (None if not np.isfinite(v) else round(float(v), 2))
              for k, v in zip(INDEX_NAMES, mid.as_array()[mid.ed])} if mid.ed >= 0 else {}
    mid_es = {k: (None if not np.isfinite(v) else round(float(v), 2))
              for k, v in zip(INDEX_NAMES, mid.as_array()[mid.es])} if mid.es >= 0 else {}
    return {
        "input": str(input_path) if input_path else cine.source,
        "n_frames": cine.n_frames, "n_slices": cine.n_slices,
        "frame_shape": list(cine.frame_shape), "pixel_spacing_mm": list(cine.spacing),
        "times_ms": [round(float(t), 1) for t in cine.times_ms], "times_known": bool(cine.times_known),
        "ed_frame": _frame_or_none(result.ed_frame), "es_frame": _frame_or_none(result.es_frame),
        "ed_es_from": "LV cavity volume of the stack" if result.volumes else f"cavity area of slice {result.mid_slice}",
        "mid_slice": result.mid_slice,
        # the mid slice's own ED/ES (largest/smallest cavity area of that slice), which can differ
        # from the study's ED/ES above (from the stack's volume); the figures show these frames
        "mid_slice_ed_frame": _frame_or_none(mid.ed), "mid_slice_es_frame": _frame_or_none(mid.es),
        "mid_slice_ed_indices": mid_ed, "mid_slice_es_indices": mid_es,
        "slices": slices, "volumes": result.volumes,
        "segmented_by": result.segmented_by,
        "frames_without_lv": ([[int(t), int(z)] for t, z in zip(*np.nonzero(~result.lv_found[:, result.slices]))]
                              if result.lv_found is not None else []),
        "quantification": result.quan_info or {"final_values": "geometry of the masks (LVQuan definitions)"},
        "warnings": list(dict.fromkeys(result.warnings)),
        "software_version": __version__, "model": model_info() if result.segmented_by == "network" else {},
        "python": platform.python_version(),
    }


def _mm2(v):
    return f"{v:.0f} mm²" if np.isfinite(v) else "not measurable"


def write_figures(result, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from skimage import measure

    cine, z = result.cine, result.mid_slice
    idx = result.per_slice[z]
    t_ms = cine.times_ms
    xlabel = "time (ms)" if cine.times_known else "frame"
    x = t_ms if cine.times_known else np.arange(cine.n_frames)
    fig, ax = plt.subplots(figsize=(7, 3.6))
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
    fig.savefig(Path(outdir) / "phase_curve.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
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
    handles = [matplotlib.patches.Patch(color=c, label=f"RWT{k + 1} {n}") for k, (c, n) in
               enumerate(zip(SECTOR_COLOURS, SECTOR_NAMES))]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"Mid-ventricular slice {z}: myocardium sectors, LV cavity (red), RV (blue)", fontsize=10)
    fig.tight_layout(rect=(0, 0.09, 1, 0.95))
    fig.savefig(Path(outdir) / "mid_slice_ed_es.png", dpi=110)
    plt.close(fig)


def write_outputs(result, outdir, input_path=None, figures=True):
    from .exchange import save_results_npz
    from .io_volume import write_labels
    from .output_paths import FIGURE_FILES, prepare_output_dir
    outdir = Path(outdir)
    prepare_output_dir(outdir, [input_path] if input_path else [])
    write_indices_csv(result, outdir / "indices.csv")
    with warnings.catch_warnings(record=True) as caught:   # a stack a volume file cannot hold
        warnings.simplefilter("always")                      # exactly belongs in the summary too
        write_labels(result.labels, result.cine, str(outdir / "segmentation.nii.gz"))
        write_labels(result.sectors, result.cine, str(outdir / "sectors.nii.gz"))
    for message in dict.fromkeys(str(w.message) for w in caught):
        result.warnings.append(f"segmentation.nii.gz, sectors.nii.gz: {message} (slice positions then differ "
                               "from the input's; indices.csv and summary.json keep the true ones)")
    (outdir / "summary.json").write_text(json.dumps(summary_dict(result, input_path), indent=2))
    save_results_npz(outdir / "results.npz", result.labels, result.sectors)
    if figures:
        write_figures(result, outdir)
    else:   # figures of an earlier run into this folder would sit beside results they do not show
        for name in FIGURE_FILES:
            (outdir / name).unlink(missing_ok=True)
    return outdir
