"""Synthetic taste graph (generated) whose pins carry real images (sklearn digits).

See :mod:`warden.tastegraph.generator` for the model and the files it writes.
"""

from warden.tastegraph.generator import (
    EPOCH,
    WINDOW_DAYS,
    described_specs,
    generate,
    load_digit_images,
)
from warden.tastegraph.specs import (
    SCALES,
    DatasetSpec,
    ScaleConfig,
    dataset_classes,
    to_polars_dtype,
)

__all__ = [
    "EPOCH",
    "SCALES",
    "WINDOW_DAYS",
    "DatasetSpec",
    "ScaleConfig",
    "dataset_classes",
    "described_specs",
    "generate",
    "load_digit_images",
    "to_polars_dtype",
]
