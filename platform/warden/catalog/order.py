"""Where a row stands must not say whose it is.

A masked identifier is a pseudonym, but reads keep the stored order and shards pick rows by
position: a file sorted by user id (1, 2, 3, ...) hands every reader the raw id of each
pseudonym by its row number, and the same pseudonym in every other dataset of the tenant
with it. Nor only the id itself: a file sorted by a hash of it (a lake's bucketed layout),
by e-mail address or by name gives a reader who knows the ids (or the directory) the same.
No test on the order alone can tell such an order from a random one, so a version with
identifier columns is never stored in the order it came in (`scrubbed`): it is stored in a
random order drawn at registration from the operating system's randomness, or, for an event
log that comes sorted by one public date or time column, in that column's order with its
ties in a random order (a log stays in time order; the position then says no more than that
column, which is not an identifier, and which a registrant could only bend to a hash of the
ids by knowing them, and then could as well write them in a column).

A read decides on today's identifier columns, whatever version it reads: an earlier version
(`version=`, as of) was ordered against the identifiers of its own registration, maybe fewer
(`user_id` declared an identifier later). So a read of an earlier version checks its order
against today's identifiers (`check_served_order`, once per file and identifier set: files
never change) and is refused (409) if it follows one; the current version was checked at its
registration against exactly today's identifiers (both are sealed together).

An order "follows" an identifier in either of two ways: globally (|Spearman rho| between row
position and the identifier), or locally (neighbouring rows hold neighbouring values: the
file sorted by the id within blocks, say partitions by `user_id % 16` concatenated, or evens
up then odds down, where rho is near 0 but row k still gives the id away). The local test
compares the mean rank gap between adjacent rows with the mean gap between any two rows
(Gini's mean difference of the ranks), both over rows holding different values: equal in
expectation for a random order, ties or not, and for runs of one value in a random order;
an order much closer (blocks) or much farther (lowest and highest alternating) follows it.

What the read check cannot catch, on a version registered before versions were scrubbed: an
order that follows some function of the identifier a reader could compute (an unkeyed hash
of it, say) without following the identifier itself.
"""

from __future__ import annotations

import math
import secrets
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from warden.catalog.columns import ColumnInfo
from warden.catalog.storage import DataFile
from warden.errors import Conflict

# |Spearman ρ| between row position and an identifier above which the order counts as
# following it: a random order of 1,500 rows stays under it about half the time (a needless
# shuffle costs nothing), 80,000 rows always.
FOLLOWS = 0.02
# A read of an earlier version is refused when its |ρ| is over SIGNIFICANT standard errors
# (1/√(n-1)) of a random order's (under 1 in a million of them), capped at READ_CAP so a
# small sorted file (ρ = 1) is refused too; and never under FOLLOWS.
SIGNIFICANT = 5.0
READ_CAP = 0.5
# The local ratio's standard deviation for a random order is about 0.65/sqrt(n) (measured,
# 200 permutations each of 1,500 and 80,000 rows, with and without ties): its departure from
# 1 is judged as rho is, in units of LOCAL_SCALE/sqrt(n-1).
LOCAL_SCALE = 0.75


class OrderFollowsIdentifier(Conflict):
    """A version stored in the order of one of today's identifier columns."""


def follows_identifier(source: Path, identifiers: list[str]) -> str | None:
    """The first identifier column whose values rise or fall with the row position."""
    return _follows(pl.scan_parquet(source), identifiers, significant=False)


def _follows(frame: pl.LazyFrame, identifiers: list[str], *, significant: bool) -> str | None:
    """`significant`: count only a correlation a random order would not show (|ρ| over
    SIGNIFICANT standard errors, at most READ_CAP): refusing a read, unlike a needless
    shuffle, is not free, and a random order of 1,500 rows crosses FOLLOWS half the time."""
    if not identifiers:
        return None
    position = pl.int_range(pl.len(), dtype=pl.Int64)
    n, *found = (
        frame.select(
            pl.len().alias("n"),
            *[
                pl.corr(position, pl.col(c), method="spearman").alias(f"rho{i}")
                for i, c in enumerate(identifiers)
            ],
            *[_locality(c).alias(f"local{i}") for i, c in enumerate(identifiers)],
            *[_steps(c).alias(f"steps{i}") for i, c in enumerate(identifiers)],
        )
        .collect()
        .row(0)
    )
    k = len(identifiers)
    rhos, locals_, steps = found[:k], found[k : 2 * k], found[2 * k :]
    spread = 1 / math.sqrt(max(n - 1, 1))
    for column, rho, local, step in zip(identifiers, rhos, locals_, steps, strict=True):
        # the local ratio is a mean over the `step` neighbours that differ (sessions: few)
        local_spread = LOCAL_SCALE / math.sqrt(max((step or 0) - 1, 1))
        if _over(rho, spread, significant) or _over(
            None if local is None else local - 1, local_spread, significant
        ):
            return column
    return None


def _over(departure: float | None, spread: float, significant: bool) -> bool:
    """Whether `departure` (0 for a random order) is past FOLLOWS, or for a read past
    SIGNIFICANT standard errors `spread` (at most READ_CAP, never under FOLLOWS)."""
    if departure is None or not math.isfinite(departure):
        return False  # one distinct value (or none): its order says nothing
    limit = max(FOLLOWS, min(READ_CAP, SIGNIFICANT * spread)) if significant else FOLLOWS
    return abs(departure) > limit


def _locality(column: str) -> pl.Expr:
    """Mean |rank gap| of adjacent rows holding different values, over the mean |rank gap| of
    any two rows holding different values. Equal neighbours are left out on both sides: a
    log whose rows come in runs of one user (sessions) says nothing of raw ids."""
    values = pl.col(column).drop_nulls()
    rank = values.rank("average")
    m = rank.len().cast(pl.Float64)
    i = pl.int_range(rank.len(), dtype=pl.Int64).cast(pl.Float64)
    any_two = 2 * ((2 * i - m + 1) * rank.sort()).sum() / (m * (m - 1))
    counts = values.unique_counts().cast(pl.Float64)
    differ = 1 - (counts * (counts - 1)).sum() / (m * (m - 1))  # P(two rows differ)
    gaps = rank.diff().abs()
    return gaps.filter(gaps > 0).mean() / (any_two / differ)


def _steps(column: str) -> pl.Expr:
    """How many neighbouring rows hold different values (what `_locality` averages over)."""
    values = pl.col(column).drop_nulls()
    return (values != values.shift(1)).sum()


@lru_cache(maxsize=256)
def _served_follows(file: DataFile, identifiers: tuple[str, ...]) -> str | None:
    """`file`'s data is immutable (content-addressed, or an Iceberg snapshot): the answer
    holds for good. A failed read raises and is not cached."""
    frame = file.scan()
    present = set(frame.collect_schema().names())
    # an identifier the version lacks orders nothing in it (asking for it is refused later)
    return _follows(frame, [c for c in identifiers if c in present], significant=True)


def check_served_order(
    file: DataFile, identifiers: tuple[str, ...], name: str, version: str
) -> None:
    """Refuse (409) a read of `version` of dataset `name` whose stored order follows one of
    `identifiers` (the ones the read applies): its row numbers would unmask them."""
    if column := _served_follows(file, tuple(sorted(identifiers))):
        raise OrderFollowsIdentifier(
            f"version {version[:19]}… of {name!r} is stored in the order of {column!r}, which"
            " is an identifier column now (it was not when that version was registered): row"
            " numbers would give its raw values away under today's masks, so it is not read."
            " Read a later version, or ask an operator to register that version's data again"
            " (it is then stored in a random order, as a new version)"
        )


def scrubbed(source: Path, target: Path, columns: list[ColumnInfo], identifiers: list[str]) -> Path:
    """`source`'s rows, written to `target`, in an order that says nothing of whose they are:
    in the order of a public date or time column the file comes sorted by, ties in a random
    order, unless that order follows an identifier (a `created_at` of ids given in turn);
    else in a random order. `source` itself when it has no identifier columns."""
    if not identifiers:
        return source
    frame = pl.read_parquet(source)
    if (by := _time_order(frame, columns, identifiers)) is not None:
        name, descending = by
        ties = np.random.default_rng(secrets.randbits(128)).permutation(frame.height)
        in_time = (
            frame.with_columns(pl.Series("_tie", ties))
            .sort(name, "_tie", descending=[descending, False])
            .drop("_tie")
        )
        # judged as a read is: a random order of ties alone crosses FOLLOWS often
        if _follows(in_time.lazy(), identifiers, significant=True) is None:
            return _write_like(source, in_time, target)
    return _write_like(
        source, frame.sample(fraction=1.0, shuffle=True, seed=secrets.randbits(63)), target
    )


def _time_order(
    frame: pl.DataFrame, columns: list[ColumnInfo], identifiers: list[str]
) -> tuple[str, bool] | None:
    """The first public date or time column, not an identifier nor of an entity, without
    nulls, that `frame` is sorted by, and whether descending."""
    for c in columns:
        if c.classification != "public" or c.entity is not None or c.name in identifiers:
            continue
        series = frame.get_column(c.name, default=None)
        if series is None or not series.dtype.is_temporal() or series.null_count():
            continue
        for descending in (False, True):
            if series.is_sorted(descending=descending):
                return c.name, descending
    return None


def _write_like(source: Path, frame: pl.DataFrame, target: Path) -> Path:
    """`frame` written to `target` in row groups of `source`'s size: a streamed read holds a
    row group or so in memory, so the registrant's layout is kept, but for the order."""
    meta = pq.read_metadata(source)
    size = meta.row_group(0).num_rows if meta.num_row_groups else None
    frame.write_parquet(target, compression="zstd", statistics=True, row_group_size=size or None)
    return target
