#!/usr/bin/env python
"""Interpolate the weights of a model and its fine-tuned version (WiSE-FT).

Fine-tuning towards new data can cost accuracy where the original model was good. Averaging
the weights of the original and the fine-tuned model, both from the same start, keeps most
of each (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). Every array is
interpolated, batch-normalisation statistics included:

    weights = (1 - alpha) * ORIGINAL + alpha * FINE_TUNED

alpha is chosen on validation data (for the segmentation network: the largest alpha whose
ACDC validation Dice is not below the original's; see the model card).

    python scripts/wise_ft.py ORIGINAL.keras FINE_TUNED.keras --alpha 0.5 -o OUT.keras
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CardiacQuan"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("original")
    ap.add_argument("fine_tuned")
    ap.add_argument("--alpha", type=float, required=True, help="0 = original, 1 = fine-tuned")
    ap.add_argument("-o", "--out", required=True, help="output .keras file")
    args = ap.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        sys.exit("--alpha must be between 0 and 1")
    from cardiacquan.frameworks import import_keras
    from cardiacquan.training.seg_train import save_inference_model
    keras = import_keras()
    a = keras.saving.load_model(args.original, compile=False)
    b = keras.saving.load_model(args.fine_tuned, compile=False)
    wa, wb = a.get_weights(), b.get_weights()
    if [w.shape for w in wa] != [w.shape for w in wb]:
        sys.exit("the two models do not have the same architecture")
    a.set_weights([(1 - args.alpha) * x + args.alpha * y for x, y in zip(wa, wb)])
    save_inference_model(a, args.out)
    print(f"wrote {args.out}: (1 - {args.alpha}) * {args.original} + {args.alpha} * {args.fine_tuned}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
