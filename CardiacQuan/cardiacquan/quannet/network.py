"""The spatio-temporal quantification network (Vesal et al., JBHI 2021): layers, build, save.

From the cavity and myocardium masks of every frame of one short-axis slice, a network of
factorised spatio-temporal convolutions regresses the 11 LVQuan indices of every frame and
classifies every frame's cardiac phase, both heads learning jointly.

Network (`build_quan_net`): input (T, 80, 80, 2) = soft cavity / myocardium masks of the T
frames (`encoding.prepare_masks`); three blocks of [3x1x1 temporal conv -> 1x3x3 spatial conv
-> 1x3x3 max-pooling that keeps time] with 16, 32, 64 channels; spatial average pooling to
(T, 64); a per-frame head of 11 indices (L2 loss) and a per-frame phase head (sigmoid, binary
cross-entropy).  Additions to the paper's figure, all switchable: batch normalisation, cyclic
padding in time (a cine is one cardiac cycle, so frame 0 follows frame T-1) and a small hidden
layer per head.

`QuanNet` bundles the Keras model with its normalisation constants and the sidecar JSON
(fusion choice, validation figures); `cardiacquan.models` finds and loads the bundled one.
Pure Keras 3 (`keras.ops` only): trains on JAX on a GPU machine, runs on TensorFlow-CPU here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cardiacquan.contract import INDEX_NAMES
from cardiacquan.frameworks import import_keras
from cardiacquan.quannet.encoding import FILL_RADIUS_PX, INDEX_POWER, N_FRAMES, SIZE

# ----------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------
_LAYERS = {}


def custom_layers():
    """Registered custom layers (created once, after keras is imported)."""
    if _LAYERS:
        return _LAYERS
    keras = import_keras()
    ops = keras.ops

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
    keras = import_keras()
    layers = keras.layers
    L = custom_layers()
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
    sidecar_path(path).write_text(json.dumps(to_jsonable(qn.sidecar()), indent=2))
    return path


def to_jsonable(o):
    """numpy scalars/arrays as plain JSON values; NaN and inf as null."""
    if isinstance(o, dict):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o
