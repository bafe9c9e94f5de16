"""Intensity normalisation shared by training and inference.

MR intensities have no absolute scale and differ by vendor, coil and sequence; robust
percentiles of the whole field of view map every image to about [0, 1] the same way in
training and at inference, so the network never sees raw scanner units.
"""
import numpy as np

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.5


def normalize_intensity(image: np.ndarray, mask=None) -> np.ndarray:
    """Map the 1st..99.5th percentile of `image` (over `mask` if given) to 0..1, clipped."""
    image = np.asarray(image, dtype=np.float32)
    values = image[mask] if mask is not None else image
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.zeros_like(image)
    lo, hi = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
