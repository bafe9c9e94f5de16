#!/usr/bin/env python
"""Are the reference contours we score against registered to their images?

Fits, from the image edges alone (`cardiacquan.evaluation.edge_alignment`), where LV borders sit
relative to the image: the Sunnybrook manual contours read with each plausible coordinate
convention, the bundled model's cavities on the same frames, and the ACDC experts' cavities,
as they are and rolled by one pixel (how a known 1-px shift reads in this fit: attenuated,
because trabeculae and papillary muscles add edges of their own).  A translation near that of
the ACDC experts means the masks are registered; the outward offset is the border's habit of
running outside the half-way intensity.  A measurement, not a test; it is why
`io_training.read_sunnybrook_contours` reads the files as 1-based.

    python scripts/contour_alignment.py [--no-model]
"""
import argparse
import glob
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CardiacQuan"))
SHARED = ROOT.parent / "shared" / "data"


def _report(name, fit):
    r, c = fit.translation_rc
    print(f"{name:<68} rows {r:+.2f} px, columns {c:+.2f} px; outward {fit.outward_px:+.2f} px"
          f"  ({fit.n_points} points)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-model", action="store_true", help="skip the segmentation model's cavities")
    args = ap.parse_args(argv)
    from cardiacquan.evaluation.edge_alignment import edge_fit
    from cardiacquan.io.dicom import read_dicom_cine
    from cardiacquan.io.datasets import CONTOUR_NAME, acdc_assumed_spacing, polygon_mask, read_acdc_h5
    sb = SHARED / "sunnybrook"
    if not sb.is_dir():
        sys.exit(f"needs {sb} (the Sunnybrook study)")
    cine = read_dicom_cine(next((sb / "dicoms").iterdir()))
    contour_dir = next((sb / "contourfiles").iterdir())
    imap = cine.metadata["instance_map"]
    files = {}
    for kind in "io":
        for txt in sorted(glob.glob(str(contour_dir / f"{kind}-contours" / "*.txt"))):
            z, t = imap[int(CONTOUR_NAME.search(os.path.basename(txt)).group(1))]
            files.setdefault(kind, []).append(((z, t), txt))
    print("Sunnybrook SC-HF-I-1 manual contours, read with the first pixel's centre at:")
    for origin, label in ((0.0, "0 (pixel centres from 0)"), (0.5, "0.5 (pixel corners)"),
                          (1.0, "1 (pixel centres from 1; how the engine reads them)")):
        for kind, what, bright in (("i", "cavity", True), ("o", "epicardium", False)):
            pairs = [(cine.image[t, z], polygon_mask(txt, cine.frame_shape, origin)) for (z, t), txt in files[kind]]
            _report(f"  {label}, {what}", edge_fit(pairs, bright))
    if not args.no_model:
        from cardiacquan.contract import LV_CAVITY, MYOCARDIUM
        from cardiacquan.segmentation.inference import segment_cine
        seg = segment_cine(cine)
        _report("bundled model's cavities, same frames",
                edge_fit([(cine.image[t, z], seg.labels[t, z] == LV_CAVITY) for (z, t), _ in files["i"]]))
        _report("bundled model's epicardia, same frames",
                edge_fit([(cine.image[t, z], seg.labels[t, z] >= MYOCARDIUM) for (z, t), _ in files["o"]], False))
    acdc = SHARED / "acdc"
    pairs = []
    for name in sorted((acdc / "val.list").read_text().split()):
        img, lab = read_acdc_h5(acdc / "data" / f"{name}.h5")
        pairs += [(i, m == 3) for i, m in zip(img, lab) if (m == 3).sum() >= 50]
    _report("ACDC validation, experts' cavities", edge_fit(pairs))
    _report("  the same, rolled 1 px down and right (a known shift)",
            edge_fit([(i, np.roll(m, (1, 1), (0, 1))) for i, m in pairs]))
    if not args.no_model:
        from cardiacquan.io.cine import Cine
        pairs = []
        for name in sorted((acdc / "val.list").read_text().split()):
            img, _ = read_acdc_h5(acdc / "data" / f"{name}.h5")
            sp = acdc_assumed_spacing(img.shape)
            pred = segment_cine(Cine(image=img[None], spacing=(sp, sp), origins=np.zeros((len(img), 3)))).labels[0]
            pairs += [(i, p == LV_CAVITY) for i, p in zip(img, pred) if (p == LV_CAVITY).sum() >= 50]
        _report("ACDC validation, bundled model's cavities", edge_fit(pairs))


if __name__ == "__main__":
    main()
