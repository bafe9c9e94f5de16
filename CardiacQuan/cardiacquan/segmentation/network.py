"""The per-frame segmentation network: a small 2-D U-Net with a dilated bottleneck.

Following Vesal et al. (JBHI 2021), an encoder-decoder segments every frame; the dilated
bottleneck widens the receptive field (the whole heart plus its surroundings at the working
resolution) without more down-sampling, which would cost the thin myocardium its detail.
Sizes were chosen to run a 20-frame cine in about a second on a laptop CPU and to stay a
few MB on disk.  Pure Keras 3 (keras.ops), so it trains on any backend (JAX on a GPU
machine) and runs on TensorFlow-CPU in the product.
"""
from __future__ import annotations

from cardiacquan.frameworks import import_keras

N_CLASSES = 4          # background, RV cavity, LV myocardium, LV cavity
NOT_LV_CAVITY = 4      # training label of partially labelled images: background, RV or myocardium
PATCH = 160            # pixels per side of the training / fine-pass patch
WORK_SPACING_MM = 1.25  # pixel size the network works at (200 mm field of view per patch)
FILTERS = (16, 32, 64, 128)


def _conv_layer(layers, x, filters, dilation, name):
    x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _conv_block(layers, x, filters, dilation=1, name=None):
    for k in range(2):
        x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, use_bias=False,
                          name=f"{name}_conv{k}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{k}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{k}")(x)
    return x


def build_seg_model(filters=FILTERS, n_classes=N_CLASSES):
    """Fully convolutional: any input size divisible by 2**len(filters)."""
    keras = import_keras()
    layers = keras.layers
    inp = keras.Input(shape=(None, None, 1), name="image")
    x = inp
    skips = []
    for level, f in enumerate(filters):
        x = _conv_block(layers, x, f, name=f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    # Dilated bottleneck: dilations 1, 2, 4, 8 in series, summed (context without pooling)
    f = filters[-1]
    b = _conv_layer(layers, x, f, 1, "bott_d1")
    b2 = _conv_layer(layers, b, f, 2, "bott_d2")
    b4 = _conv_layer(layers, b2, f, 4, "bott_d4")
    b8 = _conv_layer(layers, b4, f, 8, "bott_d8")
    x = layers.Add(name="bott_sum")([b, b2, b4, b8])
    for level in reversed(range(len(filters))):
        f = filters[level]
        x = layers.Conv2DTranspose(f, 2, strides=2, padding="same", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"cat{level}")([x, skips[level]])
        x = _conv_block(layers, x, f, name=f"dec{level}")
    out = layers.Conv2D(n_classes, 1, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inp, out, name="cardiacquan_seg")


def dice_ce_loss(y_true, y_pred):
    """Cross-entropy plus soft Dice over the three foreground classes (labels as integers).

    Partial labels (marginal loss; Shi et al., "Marginal loss and exclusion loss for partially
    supervised multi-organ segmentation", MedIA 2021): a pixel labelled NOT_LV_CAVITY is
    scored on the merged probability of the three other classes, and counts for the LV cavity's
    Dice but not the RV's or the myocardium's.  On fully labelled batches this is the plain loss.
    """
    ops = import_keras().ops
    y_true = ops.cast(ops.squeeze(y_true, -1), "int32")
    onehot = ops.one_hot(y_true, N_CLASSES + 1)[..., :N_CLASSES]   # all zero on partial pixels
    partial = ops.cast(ops.equal(y_true, NOT_LV_CAVITY), y_pred.dtype)
    y_pred = ops.clip(y_pred, 1e-7, 1.0)
    not_lv = ops.clip(1.0 - y_pred[..., 3], 1e-7, 1.0)
    ce = -ops.mean(ops.sum(onehot * ops.log(y_pred), axis=-1) + partial * ops.log(not_lv))
    axes = (0, 1, 2)
    known = (1.0 - partial)[..., None] * ops.ones_like(y_pred)
    known = ops.concatenate([known[..., :3], ops.ones_like(y_pred[..., 3:])], axis=-1)
    inter = ops.sum(onehot * y_pred, axis=axes)
    denom = ops.sum(onehot, axis=axes) + ops.sum(y_pred * known, axis=axes)
    dice = (2.0 * inter + 1.0) / (denom + 1.0)
    return ce + (1.0 - ops.mean(dice[1:]))
