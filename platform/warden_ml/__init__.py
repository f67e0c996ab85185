"""Warden's ML workload: the encoder-swapped recommendation model, run inside ML sandboxes.

It imports only ``warden.sdk`` from Warden and reads data only through ``warden.sdk.Client``.
Run it as ``python -m warden_ml STEP --spec SPEC.json --out DIR``; see ``warden_ml.cli``.

The taste graph it trains on is generated; the pin images are real (scikit-learn digits).
"""

PROVENANCE = (
    "The taste graph (users, boards, pins, engagements, pin_pairs, gold) is GENERATED "
    "synthetically; the pin images are REAL 8x8 handwritten digits (scikit-learn / UCI digits)."
)
STEPS = ("train-generic", "train-domain", "swap", "infer", "eval")

__all__ = ["PROVENANCE", "STEPS"]
