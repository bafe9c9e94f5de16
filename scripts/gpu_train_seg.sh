#!/usr/bin/env bash
# Train the segmentation network on a GPU machine that has JAX but no TensorFlow (Keras 3 on JAX).
# Needs: .whl/ (keras, namex, optree wheels for its Python) and .gpu/acdc_seg.npz
# (made here by: cardiacquan train-seg --pack-only --packed .gpu/acdc_seg.npz).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/CardiacQuan KERAS_BACKEND=jax PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 - "$OUT" "${STEPS:-30000}" "${MINUTES:-6.5}" <<'PY' 2>&1 | tee "$OUT/train_seg.log"
import sys
from cardiacquan.training.seg_train import train
out, steps, minutes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
train(".gpu/acdc_seg.npz", f"{out}/seg_model.keras", steps=steps, batch=32, lr=2e-3, workers=15,
      max_minutes=minutes, steps_per_epoch=250)
PY
