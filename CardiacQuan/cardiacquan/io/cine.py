"""The one in-memory cine type of the project.

Every reader produces a `Cine` and every consumer takes one, so geometry (spacing, slice
positions, patient orientation) travels with the pixels and is never re-guessed downstream.

Conventions (DICOM / ITK, patient coordinates in LPS, millimetres):
- `image[t, z, r, c]`: time, slice, row, column.  Rows grow downward on display.
- `spacing = (row_spacing, col_spacing)`: distance between adjacent rows and between
  adjacent columns (DICOM PixelSpacing order).
- `direction`: 3x3 matrix whose columns are, in LPS, the direction of increasing column
  index (DICOM row cosine, ImageOrientationPatient[0:3]), the direction of increasing row
  index (column cosine, IOP[3:6]) and the slice normal (their cross product).  `None` when the
  source has no orientation (ACDC h5, LVQuan .mat); geometry then assumes no mirroring.
- `origins[z]`: LPS position of the centre of pixel (0, 0) of slice z (ImagePositionPatient).
- `times_ms[t]`: trigger time of frame t; frames are in time order.  Evenly spaced
  placeholders (`times_known=False`) when the source has none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cardiacquan import CardiacQuanError


@dataclass
class Cine:
    image: np.ndarray                      # (T, Z, R, C) float32
    spacing: tuple                         # (row_mm, col_mm)
    origins: np.ndarray                    # (Z, 3) LPS mm
    direction: Optional[np.ndarray] = None  # (3, 3) columns: col-dir, row-dir, normal
    times_ms: Optional[np.ndarray] = None  # (T,)
    times_known: bool = True
    slice_thickness: Optional[float] = None
    source: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        img = np.asarray(self.image)
        if img.ndim != 4:
            raise CardiacQuanError(f"a cine needs 4 axes (time, slice, row, column); got shape {img.shape}")
        if not np.issubdtype(img.dtype, np.number):
            raise CardiacQuanError(f"cine pixels must be numeric, got {img.dtype}")
        self.image = img.astype(np.float32, copy=False)
        T, Z, R, C = self.image.shape
        if R < 8 or C < 8:
            raise CardiacQuanError(f"cine frames are too small ({R}x{C} pixels)")
        sp = tuple(float(s) for s in self.spacing)
        if len(sp) != 2 or not all(np.isfinite(sp)) or min(sp) <= 0:
            raise CardiacQuanError(f"pixel spacing must be two positive numbers, got {self.spacing}")
        self.spacing = sp
        self.origins = np.asarray(self.origins, dtype=float).reshape(Z, 3)
        if self.direction is not None:
            d = np.asarray(self.direction, dtype=float).reshape(3, 3)
            self.direction = d
        if self.times_ms is None:
            self.times_ms = np.arange(T, dtype=float)
            self.times_known = False
        self.times_ms = np.asarray(self.times_ms, dtype=float).reshape(T)

    # -- shape helpers -----------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return self.image.shape[0]

    @property
    def n_slices(self) -> int:
        return self.image.shape[1]

    @property
    def frame_shape(self) -> tuple:
        return self.image.shape[2:]

    @property
    def normal(self) -> np.ndarray:
        """Slice normal (row cosine x column cosine); +z of LPS when orientation is unknown."""
        if self.direction is None:
            return np.array([0.0, 0.0, 1.0])
        return np.cross(self.direction[:, 0], self.direction[:, 1])

    @property
    def slice_positions_mm(self) -> np.ndarray:
        """Slice origin projected on the slice normal, in patient mm (as DICOM defines it)."""
        return self.origins @ self.normal

    def validate_for_quantification(self) -> None:
        """Refuse data that cannot be a cine before any expensive work."""
        if not np.all(np.isfinite(self.image)):
            n = int(np.size(self.image) - np.count_nonzero(np.isfinite(self.image)))
            raise CardiacQuanError(f"the image holds {n} NaN/infinite pixel values")
        if self.n_frames < 2:
            hint = (self.metadata or {}).get("single_frame_hint")
            raise CardiacQuanError(
                "the input has a single time frame: a cine (several frames over the cardiac cycle) is needed"
                + (f"; {hint}" if hint else ""))
        if float(self.image.max()) == float(self.image.min()):
            raise CardiacQuanError("the image is constant: nothing to quantify")
