"""Fine-tuning that keeps what the original model knew: distillation on the familiar data.

Fine-tuning on another vendor's (partial) labels with domain randomisation moved the original
model on its own vendor's images too (ACDC validation LV Dice 0.953 -> 0.948; recomputing the
batch-norm statistics on clean patches did not bring it back, so the convolutions moved).
Learning without forgetting (Li & Hoiem, IEEE TPAMI 2018) holds the familiar domain in
place: on fully labelled patches the network, which sees the randomised patch, is also pulled
towards the frozen original model's probabilities on the *clean* patch.  That is also the
consistency term of Chen et al. (MICCAI 2020): a prediction should not change with the
intensity randomisation.  Partially labelled patches (the other vendor) are left to their
labels alone: there the original model is what is being corrected.
"""
from __future__ import annotations

from cardiacquan import CardiacQuanError
from cardiacquan.frameworks import import_keras
from cardiacquan.segmentation.network import N_CLASSES, dice_ce_loss


def with_teacher(student, teacher_path):
    """A training model: inputs (randomised patch, clean patch), output the student's and the
    frozen teacher's probabilities side by side (2 * N_CLASSES channels)."""
    keras = import_keras()
    loaded = keras.saving.load_model(teacher_path, compile=False)
    if len(loaded.inputs) != 1 or len(loaded.outputs) != 1 or loaded.output_shape[-1] != N_CLASSES:
        raise CardiacQuanError(f"--distill {teacher_path}: not a segmentation model (one image in, "
                               f"{N_CLASSES} class probabilities out)")
    teacher = keras.Model(loaded.inputs[0], loaded.outputs[0], name="teacher")   # not the student's name
    teacher.trainable = False                      # also runs its batch norm in inference mode
    image = keras.Input(shape=(None, None, 1), name="image")
    clean = keras.Input(shape=(None, None, 1), name="clean")
    taught = keras.ops.stop_gradient(teacher(clean, training=False))
    both = keras.layers.Concatenate(name="student_teacher")([student(image), taught])
    return keras.Model([image, clean], both, name="seg_with_teacher")


def distillation_loss(weight):
    """Loss for `with_teacher`: labels in y_true[..., 0] (scored as `dice_ce_loss`), and in
    y_true[..., 1] a 1 on the patches to distil (KL divergence teacher -> student, averaged over
    their pixels, times `weight`)."""
    ops = import_keras().ops

    def loss(y_true, y_pred):
        student, teacher = y_pred[..., :N_CLASSES], y_pred[..., N_CLASSES:]
        supervised = dice_ce_loss(y_true[..., :1], student)
        flag = ops.cast(y_true[..., 1], student.dtype)
        teacher = ops.clip(teacher, 1e-7, 1.0)
        kl = ops.sum(teacher * (ops.log(teacher) - ops.log(ops.clip(student, 1e-7, 1.0))), axis=-1)
        return supervised + weight * ops.sum(flag * kl) / ops.maximum(ops.sum(flag), 1.0)

    return loss
