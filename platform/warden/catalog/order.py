"""Where a row stands must not say whose it is.

A masked identifier is a pseudonym, but reads keep the stored order and shards pick rows by
position: a file sorted by user id (1, 2, 3, ...) hands every reader the raw id of each
pseudonym by its row number, and the same pseudonym in every other dataset of the tenant
with it. So a version whose row order follows one of its identifier columns is stored in a
random order instead, drawn once at registration from the operating system's randomness.

What this does not catch: an order that follows some function of the identifier a reader
could compute (an unkeyed hash of it, say) without following the identifier itself.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import polars as pl

# |Spearman ρ| between row position and an identifier above which the order counts as
# following it: a random order of 1,500 rows stays under it about half the time (a needless
# shuffle costs nothing), 80,000 rows always.
FOLLOWS = 0.02


def follows_identifier(source: Path, identifiers: list[str]) -> str | None:
    """The first identifier column whose values rise or fall with the row position."""
    if not identifiers:
        return None
    position = pl.int_range(pl.len(), dtype=pl.Int64)
    rhos = (
        pl.scan_parquet(source)
        .select([pl.corr(position, pl.col(c), method="spearman").alias(c) for c in identifiers])
        .collect()
        .row(0)
    )
    for column, rho in zip(identifiers, rhos, strict=True):
        if rho is not None and abs(rho) > FOLLOWS:
            return column
    return None


def shuffled(source: Path, target: Path) -> Path:
    """`source`'s rows in a random order, written to `target`."""
    frame = pl.read_parquet(source)
    frame.sample(fraction=1.0, shuffle=True, seed=secrets.randbits(63)).write_parquet(
        target, compression="zstd", statistics=True
    )
    return target
