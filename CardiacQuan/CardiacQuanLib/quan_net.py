"""The spatio-temporal quantification network (Vesal et al., JBHI 2021) and its pre/post-processing.

From the cavity and myocardium masks of every frame of one short-axis slice, a network of
factorised spatio-temporal convolutions regresses the 11 LVQuan indices of every frame and
classifies every frame's cardiac phase, both heads learning jointly.

Network (`build_quan_net`): input (T, 80, 80, 2) = soft cavity / myocardium masks of the T
frames; three blocks of [3x1x1 temporal conv -> 1x3x3 spatial conv -> 1x3x3 max-pooling that
keeps time] with 16, 32, 64 channels; spatial average pooling to (T, 64); a per-frame head of
11 indices (L2 loss) and a per-frame phase head (sigmoid, binary cross-entropy).  Additions
to the paper's figure, all switchable: batch normalisation, cyclic padding in time (a cine
is one cardiac cycle, so frame 0 follows frame T-1) and a small hidden layer per head.

Pre-processing (`prepare_masks`): the masks are resampled (bilinear, so sub-pixel border
positions survive as soft values) onto an 80x80 grid that is
- centred on the LV (cavity + myocardium, all frames pooled),
- isotropic, with a pixel size `scale_mm` chosen so that the largest epicardial equivalent
  radius over the cycle measures `FILL_RADIUS_PX` pixels (the LV fills the crop the same way
  whatever the patient or scanner),
- in the standard short-axis orientation of docs/indices.md: rotated so that the
  LV->RV direction points to 180 degrees and un-mirrored, so the six sectors always sit at the
  same place of the crop.
Cines with another number of frames are resampled in time (cyclic, linear) to the network's
T, and the outputs are mapped back to the input's frames.

Targets are scale-free: areas / scale_mm**2 and lengths / scale_mm (crop pixels), then
z-scored with the training set's mean and standard deviation (`QuanNet.norm`).  Outputs are
de-normalised back to mm / mm^2 in the input's true geometry.

Pure Keras 3 (`keras.ops` only): trains on JAX on a GPU machine, runs on TensorFlow-CPU here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from . import LV_CAVITY, MYOCARDIUM, RV, CardiacQuanError
from .geometry import is_mirrored
from .phase import phase_from_ed_es

N_FRAMES = 20
SIZE = 80
FILL_RADIUS_PX = 26.0          # epicardial equivalent radius (max over the cycle) in crop pixels
INDEX_NAMES = ("A1", "A2", "D1", "D2", "D3", "RWT1", "RWT2", "RWT3", "RWT4", "RWT5", "RWT6")
INDEX_POWER = np.array([2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=float)  # mm**power per crop pixel**power
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "Resources" / "Models" / "quan_net.keras"


def _keras():
    from .backend import import_keras
    return import_keras()


# ----------------------------------------------------------------------------------------
# Index arrays <-> dicts
# ----------------------------------------------------------------------------------------
def indices_to_array(d) -> np.ndarray:
    """(T, 11) array in INDEX_NAMES order from a dict / SliceIndices-like object with
    cavity_area, myocardium_area (T,), dims (T, 3), rwt (T, 6)."""
    get = (lambda k: d[k]) if isinstance(d, dict) else (lambda k: getattr(d, k))
    a1 = np.asarray(get("cavity_area"), float).reshape(-1, 1)
    a2 = np.asarray(get("myocardium_area"), float).reshape(-1, 1)
    dims = np.asarray(get("dims"), float).reshape(-1, 3)
    rwt = np.asarray(get("rwt"), float).reshape(-1, 6)
    return np.concatenate([a1, a2, dims, rwt], axis=1)


def array_to_indices(y) -> dict:
    y = np.asarray(y, float)
    return {"cavity_area": y[:, 0], "myocardium_area": y[:, 1], "dims": y[:, 2:5], "rwt": y[:, 5:11]}


# ----------------------------------------------------------------------------------------
# Orientation, crop, scale
# ----------------------------------------------------------------------------------------
def _pooled_centroid(mask):
    """(row, col) pixel centroid of a (T, R, C) boolean mask, all frames pooled, or None."""
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:
        return None
    return np.array([idx[1].mean(), idx[2].mean()])


@dataclass
class CropGeometry:
    """How a slice's frames map onto the network's 80x80 standard-view crop."""
    center_rc: np.ndarray          # (row, col) native pixel coordinates of the crop centre
    spacing: tuple                 # native (row_mm, col_mm)
    scale_mm: float                # crop pixel size (isotropic)
    septum_angle_deg: float        # LV->RV direction in the native display frame
    mirrored: bool
    orientation_source: str        # "anatomy" (RV found) or "image axes"
    size: int = SIZE

    def matrix(self):
        """M, o with native (row, col) = M @ (i, j) + o for crop pixel (i, j)."""
        s = self.scale_mm
        dr, dc = self.spacing
        B = np.array([[0.0, s], [-s, 0.0]])            # crop (i, j) offsets -> standard display (x, y)
        if self.mirrored:
            t = np.deg2rad(self.septum_angle_deg + 180.0)
            G = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.diag([1.0, -1.0])
        else:
            t = np.deg2rad(self.septum_angle_deg - 180.0)
            G = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        N = np.array([[0.0, -1.0 / dr], [1.0 / dc, 0.0]])  # native display (X, Y) -> (row, col) offsets
        M = N @ G @ B
        c = (self.size - 1) / 2.0
        o = np.asarray(self.center_rc, float) - M @ np.array([c, c])
        return M, o

    def to_dict(self):
        return {"center_rc": [float(v) for v in self.center_rc], "spacing": [float(v) for v in self.spacing],
                "scale_mm": float(self.scale_mm), "septum_angle_deg": float(self.septum_angle_deg),
                "mirrored": bool(self.mirrored), "orientation_source": self.orientation_source}


def crop_geometry(labels, spacing, direction=None, septum_angle_deg=None, mirrored=None,
                  fill_radius_px=FILL_RADIUS_PX, size=SIZE) -> Optional[CropGeometry]:
    """Crop centre, scale and orientation for a (T, R, C) label cine; None when there is no LV."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    dr, dc = (float(spacing[0]), float(spacing[1])) if np.ndim(spacing) else (float(spacing), float(spacing))
    cav = labels == LV_CAVITY
    lv = cav | (labels == MYOCARDIUM)
    c_lv = _pooled_centroid(lv)
    if c_lv is None or not cav.any():
        return None
    source = "anatomy"
    if septum_angle_deg is None:
        c_cav = _pooled_centroid(cav)
        c_rv = _pooled_centroid(labels == RV)
        if c_rv is None:
            septum_angle_deg, source = 180.0, "image axes"
        else:
            v = c_rv - c_cav
            septum_angle_deg = float(np.degrees(np.arctan2(-v[0] * dr, v[1] * dc)))
    if mirrored is None:
        mirrored = is_mirrored(direction, septum_angle_deg)
    areas = lv.reshape(lv.shape[0], -1).sum(1) * dr * dc
    r_epi = float(np.sqrt(areas.max() / np.pi))
    scale = max(r_epi / float(fill_radius_px), 1e-3)
    return CropGeometry(center_rc=c_lv, spacing=(dr, dc), scale_mm=scale, septum_angle_deg=float(septum_angle_deg),
                        mirrored=bool(mirrored), orientation_source=source, size=size)


def resample_time(x, n_out: int, axis: int = 0):
    """Cyclic linear resampling of a sequence covering one cycle from len to n_out samples."""
    x = np.asarray(x)
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    pos = np.arange(n_out) * (n_in / float(n_out))
    i0 = np.floor(pos).astype(int) % n_in
    i1 = (i0 + 1) % n_in
    w = (pos - np.floor(pos)).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
    return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def prepare_masks(labels, spacing, direction=None, n_frames=N_FRAMES, geometry: Optional[CropGeometry] = None,
                  fill_radius_px=FILL_RADIUS_PX, size=SIZE, **orient):
    """(T, R, C) labels -> (n_frames, size, size, 2) float32 soft masks [cavity, myocardium] and
    the CropGeometry used (None and zeros when the slice holds no LV)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if geometry is None:
        geometry = crop_geometry(labels, spacing, direction, fill_radius_px=fill_radius_px, size=size, **orient)
    T = labels.shape[0]
    out = np.zeros((T, size, size, 2), np.float32)
    if geometry is None:
        return resample_time(out, n_frames), None
    M, o = geometry.matrix()
    for t in range(T):
        for k, lab in enumerate((LV_CAVITY, MYOCARDIUM)):
            m = (labels[t] == lab).astype(np.float32)
            if m.any():
                out[t, :, :, k] = ndimage.affine_transform(m, M, offset=o, output_shape=(size, size), order=1,
                                                           mode="constant", cval=0.0, prefilter=False)
    return resample_time(out, n_frames).astype(np.float32), geometry


def to_scale_free(y_mm, scale_mm):
    """(..., 11) indices in mm -> crop-pixel units (areas / s^2, lengths / s)."""
    s = np.asarray(scale_mm, float)
    s = s.reshape(s.shape + (1,) * (np.ndim(y_mm) - s.ndim))
    return np.asarray(y_mm, float) / s ** INDEX_POWER


def from_scale_free(y_px, scale_mm):
    s = np.asarray(scale_mm, float)
    s = s.reshape(s.shape + (1,) * (np.ndim(y_px) - s.ndim))
    return np.asarray(y_px, float) * s ** INDEX_POWER


# ----------------------------------------------------------------------------------------
# Phase decoding: one systolic interval per cycle
# ----------------------------------------------------------------------------------------
def decode_phase(prob):
    """Most likely single cyclic systolic interval given per-frame systole probabilities.

    Returns (phase (T,) int, ed, es): systole = frames ed+1 .. es (cyclic), ED = ed, ES = es."""
    p = np.clip(np.asarray(prob, float).ravel(), 1e-6, 1 - 1e-6)
    T = p.size
    gain = np.log(p) - np.log1p(-p)          # gain of calling a frame systolic
    g2 = np.concatenate([gain, gain])
    best, arg = -np.inf, (0, 1)
    for a in range(T):                        # a = first systolic frame
        c = np.cumsum(g2[a:a + T - 1])        # lengths 1 .. T-1
        L = int(np.argmax(c))
        if c[L] > best:
            best, arg = c[L], (a, a + L)
    a, b = arg
    ed, es = (a - 1) % T, b % T
    return phase_from_ed_es(T, ed, es).astype(np.int64), ed, es


# ----------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------
_LAYERS = {}


def _custom_layers():
    """Registered custom layers (created once, after keras is imported)."""
    if _LAYERS:
        return _LAYERS
    keras = _keras()
    from keras import ops

    @keras.saving.register_keras_serializable(package="CardiacQuan")
    class CyclicTimePad(keras.layers.Layer):
        """Pads axis 1 (time) cyclically: a cine is one period of the cardiac cycle."""

        def __init__(self, pad=1, **kw):
            super().__init__(**kw)
            self.pad = int(pad)

        def call(self, x):
            p = self.pad
            return ops.concatenate([x[:, -p:], x, x[:, :p]], axis=1)

        def compute_output_shape(self, s):
            t = None if s[1] is None else s[1] + 2 * self.pad
            return (s[0], t) + tuple(s[2:])

        def get_config(self):
            return {**super().get_config(), "pad": self.pad}

    @keras.saving.register_keras_serializable(package="CardiacQuan")
    class SpatialMean(keras.layers.Layer):
        """(B, T, H, W, C) -> (B, T, C): spatial average pooling that keeps time."""

        def call(self, x):
            return ops.mean(x, axis=(2, 3))

        def compute_output_shape(self, s):
            return (s[0], s[1], s[4])

    _LAYERS.update(CyclicTimePad=CyclicTimePad, SpatialMean=SpatialMean)
    return _LAYERS


def build_quan_net(n_frames=N_FRAMES, size=SIZE, channels=(16, 32, 64), pool_stride=2, batchnorm=True,
                   cyclic=True, head_units=64, phase_loss_weight=1.0, learning_rate=1e-3, compile=True):
    """The factorised spatio-temporal network; outputs {"indices": (B,T,11), "phase": (B,T)}.

    Faithful to the paper's figure with batchnorm=False, cyclic=False, head_units=0."""
    keras = _keras()
    from keras import layers
    L = _custom_layers()
    inp = keras.Input(shape=(n_frames, size, size, 2), name="masks")
    x = inp
    for b, ch in enumerate(channels):
        if cyclic:
            x = L["CyclicTimePad"](1, name=f"b{b}_tpad")(x)
        x = layers.Conv3D(ch, (3, 1, 1), padding="valid" if cyclic else "same", use_bias=not batchnorm,
                          name=f"b{b}_tconv")(x)
        if batchnorm:
            x = layers.BatchNormalization(name=f"b{b}_tbn")(x)
        x = layers.Activation("relu", name=f"b{b}_trelu")(x)
        x = layers.Conv3D(ch, (1, 3, 3), padding="same", use_bias=not batchnorm, name=f"b{b}_sconv")(x)
        if batchnorm:
            x = layers.BatchNormalization(name=f"b{b}_sbn")(x)
        x = layers.Activation("relu", name=f"b{b}_srelu")(x)
        x = layers.MaxPooling3D((1, 3, 3), strides=(1, pool_stride, pool_stride), padding="same", name=f"b{b}_pool")(x)
    feat = L["SpatialMean"](name="spatial_mean")(x)      # (B, T, C)
    hi, hp = feat, feat
    if head_units:
        hi = layers.Dense(head_units, activation="relu", name="indices_hidden")(feat)
        hp = layers.Dense(head_units, activation="relu", name="phase_hidden")(feat)
    indices = layers.Dense(11, name="indices", dtype="float32")(hi)
    phase = layers.Dense(1, activation="sigmoid", dtype="float32", name="phase_logit")(hp)
    phase = layers.Reshape((n_frames,), name="phase")(phase)
    model = keras.Model(inp, {"indices": indices, "phase": phase}, name="cardiacquan_quan_net")
    if compile:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss={"indices": "mse", "phase": "binary_crossentropy"},
                      loss_weights={"indices": 1.0, "phase": float(phase_loss_weight)})
    return model


# ----------------------------------------------------------------------------------------
# Model + constants bundle
# ----------------------------------------------------------------------------------------
@dataclass
class QuanNet:
    """The Keras model with everything needed to use it: normalisation constants, the crop
    convention it was trained with, and the fusion choice / validation figures (sidecar JSON)."""
    model: object
    norm_mean: np.ndarray = field(default_factory=lambda: np.zeros(11))
    norm_std: np.ndarray = field(default_factory=lambda: np.ones(11))
    n_frames: int = N_FRAMES
    size: int = SIZE
    fill_radius_px: float = FILL_RADIUS_PX
    meta: dict = field(default_factory=dict)     # fusion, validation figures, training record...

    def normalise(self, y_px):
        return (np.asarray(y_px, float) - self.norm_mean) / self.norm_std

    def denormalise(self, z):
        return np.asarray(z, float) * self.norm_std + self.norm_mean

    def sidecar(self) -> dict:
        return {"format": "cardiacquan-quan-net/1", "index_names": list(INDEX_NAMES),
                "index_power": INDEX_POWER.tolist(), "norm_mean": np.asarray(self.norm_mean).tolist(),
                "norm_std": np.asarray(self.norm_std).tolist(), "n_frames": self.n_frames, "size": self.size,
                "fill_radius_px": self.fill_radius_px, "keras_backend_trained": self.meta.get("backend"),
                **{k: v for k, v in self.meta.items() if k != "backend"}}


def sidecar_path(path) -> Path:
    return Path(path).with_suffix(".json")


def save_quan_net(qn: QuanNet, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    qn.model.save(str(path))
    sidecar_path(path).write_text(json.dumps(_jsonable(qn.sidecar()), indent=2))
    return path


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def load_quan_net(path=None) -> QuanNet:
    path = Path(path) if path else DEFAULT_MODEL_PATH
    if not path.exists():
        raise CardiacQuanError(f"quantification network weights not found: {path} "
                               f"(train them with `cardiacquan train-quan`)")
    keras = _keras()
    _custom_layers()
    sc = sidecar_path(path)
    if not sc.exists():   # without it the outputs would be unscaled: mean 0, std 1
        raise CardiacQuanError(f"{path} has no {sc.name} beside it (index normalisation, fusion choice); "
                               "keep the two files together")
    try:
        model = keras.saving.load_model(str(path), compile=False)
        meta = json.loads(sc.read_text())
    except (ValueError, OSError, TypeError) as e:
        raise CardiacQuanError(f"{path}: not a CardiacQuan quantification network ({str(e).splitlines()[0][:200]})")
    if len(model.inputs) != 1 or len(model.input_shape) != 5 or len(model.outputs) != 2:
        raise CardiacQuanError(f"{path}: not a quantification network (input (T, H, W, 2), two outputs)")
    known = {"format", "index_names", "index_power", "norm_mean", "norm_std", "n_frames", "size", "fill_radius_px"}
    return QuanNet(model=model, norm_mean=np.asarray(meta.get("norm_mean", np.zeros(11)), float),
                   norm_std=np.asarray(meta.get("norm_std", np.ones(11)), float),
                   n_frames=int(meta.get("n_frames", model.input_shape[1])), size=int(meta.get("size", SIZE)),
                   fill_radius_px=float(meta.get("fill_radius_px", FILL_RADIUS_PX)),
                   meta={k: v for k, v in meta.items() if k not in known})


def _as_quan_net(model) -> QuanNet:
    if isinstance(model, QuanNet):
        return model
    if model is None or isinstance(model, (str, Path)):
        return load_quan_net(model)
    return QuanNet(model=model, n_frames=int(model.input_shape[1]), size=int(model.input_shape[2]))


def run_network(qn: QuanNet, x, batch_size=16):
    """x (B, T, S, S, 2) -> (z indices (B, T, 11) normalised, phase prob (B, T))."""
    x = np.asarray(x, np.float32)
    outs_z, outs_p = [], []
    for i in range(0, len(x), batch_size):
        out = qn.model.predict_on_batch(x[i:i + batch_size])
        outs_z.append(np.asarray(out["indices"], float))
        outs_p.append(np.asarray(out["phase"], float))
    if not outs_z:
        return np.zeros((0, qn.n_frames, 11)), np.zeros((0, qn.n_frames))
    return np.concatenate(outs_z), np.concatenate(outs_p)


def predict_indices_many(slices, model=None, batch_size=16):
    """Several slices in one batch.  `slices`: list of (labels (T,R,C), spacing, direction) or of
    dicts with those keys (+ optional septum_angle_deg, mirrored).  Returns a list of
    `predict_indices` dicts."""
    qn = _as_quan_net(model)
    xs, geoms, Ts = [], [], []
    for s in slices:
        if isinstance(s, dict):
            lab, sp, dr = s["labels"], s["spacing"], s.get("direction")
            orient = {k: s[k] for k in ("septum_angle_deg", "mirrored") if s.get(k) is not None}
        else:
            lab, sp, dr = s
            orient = {}
        lab = np.asarray(lab)
        lab = lab[None] if lab.ndim == 2 else lab
        x, g = prepare_masks(lab, sp, dr, n_frames=qn.n_frames, fill_radius_px=qn.fill_radius_px, size=qn.size,
                             **orient)
        xs.append(x)
        geoms.append(g)
        Ts.append(lab.shape[0])
    z, p = run_network(qn, np.stack(xs) if xs else np.zeros((0,)), batch_size=batch_size)
    results = []
    for k, (g, T) in enumerate(zip(geoms, Ts)):
        if g is None:
            y = np.full((T, 11), np.nan)
            prob = np.full(T, np.nan)
            phase, ed, es = np.zeros(T, np.int64), -1, -1
        else:
            y_px = qn.denormalise(z[k])
            y = from_scale_free(resample_time(y_px, T), g.scale_mm)
            prob = np.clip(resample_time(p[k], T), 0.0, 1.0)
            phase, ed, es = decode_phase(prob)
        r = array_to_indices(y)
        r.update(indices=y, phase_prob=prob, phase=phase, ed=int(ed), es=int(es),
                 crop=None if g is None else g.to_dict())
        results.append(r)
    return results


def predict_indices(labels, spacing, direction=None, model=None, **orient) -> dict:
    """Network estimate for one slice.

    labels (T, R, C) uint8 in the project's label convention; spacing (row_mm, col_mm);
    direction the cine's 3x3 direction or None; model a QuanNet, a path to a .keras file, a bare
    Keras model (no normalisation) or None (the bundled weights).

    Returns per-frame arrays in mm / mm^2: cavity_area, myocardium_area (T,), dims (T, 3),
    rwt (T, 6), indices (T, 11), phase_prob (T,) (probability of systole), phase (T,) (one
    systolic interval), ed, es, and crop (the crop geometry used)."""
    d = {"labels": labels, "spacing": spacing, "direction": direction, **orient}
    return predict_indices_many([d], model=model)[0]
