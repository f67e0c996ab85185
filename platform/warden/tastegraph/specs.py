"""Dataset and scale descriptions for the synthetic taste graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from warden.catalog.columns import ColumnInfo

CLASSIFICATIONS = ("public", "internal", "pii")


@dataclass(frozen=True)
class DatasetSpec:
    """One generated Parquet file and what the catalog needs to know about it."""

    name: str
    path: Path
    description: str
    columns: tuple[ColumnInfo, ...]
    identifier_columns: tuple[str, ...]  # identify a person/account; masked by keyed hash
    allowed_purposes: tuple[str, ...]
    row_count: int
    # the generated datasets it is built from: it is at least as strictly classed as they are
    derived_from: tuple[str, ...] = ()

    @property
    def classification(self) -> str:
        """The strictest column class in the dataset (its sources' not counted: see
        `dataset_classes`, which the catalog agrees with)."""
        return max(
            (c.classification for c in self.columns), key=CLASSIFICATIONS.index, default="public"
        )


def dataset_classes(specs: list[DatasetSpec]) -> dict[str, str]:
    """Each dataset's class: the strictest of its columns' and (transitively) its sources'."""
    by_name = {s.name: s for s in specs}
    out: dict[str, str] = {}

    def resolve(name: str, seen: frozenset[str]) -> str:
        if name in out:
            return out[name]
        spec = by_name[name]
        classes = [spec.classification] + [
            resolve(src, seen | {name}) for src in spec.derived_from if src not in seen
        ]
        out[name] = max(classes, key=CLASSIFICATIONS.index)
        return out[name]

    for spec in specs:
        resolve(spec.name, frozenset())
    return out


@dataclass(frozen=True)
class ScaleConfig:
    """Sizes of one generated graph.

    ``n_engagements`` is the exact row count of the ``engagements`` file (the training
    log). The generator draws ``n_engagements + holdout_rows`` events, moves at most
    ``holdout_rows`` of them to ``gold`` and drops any surplus at random, so the
    written count is always exactly ``n_engagements``.
    """

    name: str
    n_users: int
    n_boards: int
    n_pins: int
    n_engagements: int
    walks_per_pin: int = 4
    walk_length: int = 2
    cold_start_fraction: float = 0.02  # pins with no engagement at all
    holdout_fraction: float = 0.02  # extra events drawn, then held out as gold edges
    next_pin_fraction: float = 0.10  # users whose last engagement becomes a next_pin target

    @property
    def holdout_rows(self) -> int:
        return int(round(self.n_engagements * self.holdout_fraction))

    @property
    def generated_events(self) -> int:
        return self.n_engagements + self.holdout_rows


# One row a scale: name, users, boards, pins, engagements (the training log), then the walks.
SCALES: dict[str, ScaleConfig] = {
    scale.name: scale
    for scale in (
        ScaleConfig("small", 1_500, 4_000, 5_000, 80_000, walks_per_pin=10),
        ScaleConfig("medium", 60_000, 150_000, 200_000, 1_200_000, walks_per_pin=4),
        ScaleConfig("large", 400_000, 1_000_000, 1_000_000, 12_000_000, walks_per_pin=3),
    )
}


def to_polars_dtype(dtype: str) -> pl.DataType:
    """Map a column's dtype string to the polars dtype written to Parquet."""
    simple: dict[str, pl.DataType] = {
        "Int64": pl.Int64(),
        "Float64": pl.Float64(),
        "Utf8": pl.String(),
        "Binary": pl.Binary(),
        "Boolean": pl.Boolean(),
    }
    if dtype in simple:
        return simple[dtype]
    datetimes: dict[str, pl.DataType] = {
        "Datetime(ms)": pl.Datetime("ms"),
        "Datetime(us)": pl.Datetime("us"),
        "Datetime(ns)": pl.Datetime("ns"),
    }
    if dtype in datetimes:
        return datetimes[dtype]
    raise ValueError(f"unsupported dtype string: {dtype!r}")
