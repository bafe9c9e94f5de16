#!/usr/bin/env python
"""Make the extension's sample cine from the Sunnybrook study in ../shared/data (CC0).

    python scripts/make_sample_cine.py [--dicom DIR] [--contours DIR] [--size 128] [-o FILE]

Reads the whole short-axis stack of patient SC-HF-I-1 (folder SCD0000101: 12 slices x 20 frames,
256x256, 1.37 mm pixels) with the engine's own DICOM reader -- geometry from
ImagePositionPatient/ImageOrientationPatient, frame times from TriggerTime -- crops every slice
and frame to one square of --size pixels centred on the left ventricle (the centre of the
readers' endo- and epicardial contours of every contoured slice: the RV and the surrounding
anatomy stay inside), and writes it as Slicer's volume sequence (.seq.nrrd, int16, gzip) with
the cropped origin, so the sample sits where the study did in patient space.  Nothing is
resampled: the pixels are the scanner's.

The output is committed as CardiacQuan/Resources/SampleData/ (path: cardiacquan.contract.SAMPLE_CINE);
its README.md there carries the attribution.  Re-running gives the same pixels and header (only the
date in the comment pynrrd writes differs).
"""
import argparse
import glob
import hashlib
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "CardiacQuan"))

from cardiacquan.contract import SAMPLE_CINE  # noqa: E402
from cardiacquan.io.cine import Cine  # noqa: E402
from cardiacquan.io.files import read_cine  # noqa: E402
from cardiacquan.io.volume import write_cine  # noqa: E402

SHARED = os.path.join(REPO, "..", "shared", "data", "sunnybrook")
DICOM_DIR = os.path.join(SHARED, "dicoms", "SCD0000101")
CONTOUR_DIR = os.path.join(SHARED, "contourfiles", "SC-HF-I-1")


def heart_centre(contour_dir):
    """(row, col) 0-based pixel centre of the readers' contours (files hold 1-based x y pairs)."""
    files = glob.glob(os.path.join(contour_dir, "*-contours", "*.txt"))
    if not files:
        raise SystemExit(f"no contour files under {contour_dir}")
    pts = np.concatenate([np.loadtxt(f, ndmin=2) for f in files]) - 1.0
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    col, row = (lo + hi) / 2.0
    return row, col


def crop(cine: Cine, row0, col0, size):
    """The cine cut to rows row0..row0+size-1, columns col0..col0+size-1, origins moved with it."""
    T, Z, R, C = cine.image.shape
    if not (0 <= row0 and row0 + size <= R and 0 <= col0 and col0 + size <= C):
        raise SystemExit(f"a {size}-pixel crop at ({row0}, {col0}) leaves the {R}x{C} frame")
    d = np.asarray(cine.direction, float)
    shift = d[:, 0] * col0 * cine.spacing[1] + d[:, 1] * row0 * cine.spacing[0]
    return Cine(image=cine.image[:, :, row0:row0 + size, col0:col0 + size], spacing=cine.spacing,
                origins=cine.origins + shift[None, :], direction=d, times_ms=cine.times_ms,
                times_known=cine.times_known, slice_thickness=cine.slice_thickness,
                source="Sunnybrook Cardiac Data SC-HF-I-1 (CC0), cropped")


def thumbnail(cine, path, size=260):
    """The mid slice of the first frame, windowed to its 1-99.5 percentiles, size x size pixels."""
    from PIL import Image

    img = cine.image[0, cine.n_slices // 2]
    lo, hi = np.percentile(img, [1, 99.5])
    a = (np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    Image.fromarray(a).resize((size, size), Image.BICUBIC).convert("RGB").save(path)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dicom", default=DICOM_DIR)
    ap.add_argument("--contours", default=CONTOUR_DIR)
    ap.add_argument("--size", type=int, default=144, help="side of the square crop, pixels")
    ap.add_argument("-o", "--output", default=os.path.join(REPO, "CardiacQuan", "Resources", *SAMPLE_CINE))
    ap.add_argument("--thumbnail", default=os.path.join(REPO, "CardiacQuan", "Resources", "Icons", "SampleCine.png"),
                    help="the Sample Data module's thumbnail (the mid slice at the first frame); '' for none")
    a = ap.parse_args(argv)
    cine = read_cine(a.dicom)
    row, col = heart_centre(a.contours)
    row0, col0 = int(round(row - a.size / 2)), int(round(col - a.size / 2))
    sample = crop(cine, row0, col0, a.size)
    os.makedirs(os.path.dirname(a.output), exist_ok=True)
    write_cine(sample, a.output, dtype=np.int16)
    digest = hashlib.sha256(open(a.output, "rb").read()).hexdigest()
    if a.thumbnail:
        print("thumbnail:", thumbnail(sample, a.thumbnail))
    T, Z, R, C = sample.image.shape
    print(f"{a.output}: {T} frames x {Z} slices x {R}x{C} px ({sample.spacing[0]:.3f} mm), crop at row {row0}, "
          f"column {col0} of {cine.image.shape[2]}x{cine.image.shape[3]}; {os.path.getsize(a.output) / 1e6:.2f} MB, "
          f"SHA256 {digest}")


if __name__ == "__main__":
    main()
