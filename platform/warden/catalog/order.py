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
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
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
# Rows held at once while a version is reordered: a temporary bucket file's worth (read back
# and shuffled whole), and a batch streamed from the source (module constants: tests lower them).
BUCKET_ROWS = 1_000_000
BATCH_ROWS = 65_536
# A log of more rows than twice this is judged on this many pairs of adjacent rows at random
# positions (see `_in_order_follows`), so its check holds a sample, not the log.
FOLLOWS_PAIRS = 1_000_000


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
    judged = zip(identifiers, found[:k], found[k : 2 * k], found[2 * k :], strict=True)
    return next((c for c, rho, lo, st in judged if _judge(rho, lo, st, n, significant)), None)


def _judge(rho: float | None, local: float | None, steps: int | None, n: int, sig: bool) -> bool:
    """Whether an order follows a column, from its ρ over `n` rows and its local ratio over
    `steps` neighbours that differ (sessions: few)."""
    local_spread = LOCAL_SCALE / math.sqrt(max((steps or 0) - 1, 1))
    return _over(rho, 1 / math.sqrt(max(n - 1, 1)), sig) or _over(
        None if local is None else local - 1, local_spread, sig
    )


def _in_order_follows(
    source: Path, order: np.ndarray, identifiers: list[str], rng: np.random.Generator
) -> str | None:
    """Whether `source`'s rows in `order` follow an identifier, judged as a read is (a random
    order of ties alone crosses FOLLOWS often). Up to 2·FOLLOWS_PAIRS rows, on all of them;
    more, on the rows of FOLLOWS_PAIRS random adjacent pairs: ρ over those rows and the local
    ratio over those pairs, ranks within the sample (an estimate of each value's rank in the
    log). The sample's ρ is within 5/√FOLLOWS_PAIRS = 0.005 of the log's with odds over a
    million to one (its standard error is at most 1/√(pairs)), and so is the local ratio
    (standard error about LOCAL_SCALE/√(pairs)): a log past FOLLOWS by 0.005 is always
    caught, one under it by 0.005 never is; between, it is as near FOLLOWS as noise."""
    n = len(order)
    if n <= 2 * FOLLOWS_PAIRS:
        in_time = pl.read_parquet(source, columns=identifiers).select(pl.all().gather(order))
        return _follows(in_time.lazy(), identifiers, significant=True)
    starts = np.unique(rng.integers(0, n - 1, FOLLOWS_PAIRS))
    at = np.union1d(starts, starts + 1)  # output positions, ascending
    sample = _rows_at(source, order[at], identifiers).with_columns(_position=pl.Series(at))
    for c in identifiers:
        seen = sample.select("_position", c).drop_nulls(c)
        pair = pl.col("_position").diff() == 1
        rho, local, steps = seen.select(
            pl.corr("_position", c, method="spearman").alias("rho"),
            _locality(c, pair).alias("local"),
            _steps(c, pair).alias("steps"),
        ).row(0)
        # ρ's standard error counted on the pairs, not the rows: a pair's two rows may agree
        if _judge(rho, local, steps, len(starts), True):
            return c
    return None


def _rows_at(source: Path, rows: np.ndarray, columns: list[str]) -> pl.DataFrame:
    """`source`'s `columns` at row numbers `rows` (in that order), read a batch at a time."""
    by_row = np.argsort(rows, kind="stable")
    wanted, parts, start = rows[by_row], [], 0
    for batch in _batches(source, columns):
        lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
        parts.append(batch.take(pa.array(wanted[lo:hi] - start)))
        start += batch.num_rows
    picked = pl.from_arrow(pa.Table.from_batches(parts))
    assert isinstance(picked, pl.DataFrame)
    back = np.empty_like(by_row)
    back[by_row] = np.arange(len(by_row))
    return picked[back]


def _over(departure: float | None, spread: float, significant: bool) -> bool:
    """Whether `departure` (0 for a random order) is past FOLLOWS, or for a read past
    SIGNIFICANT standard errors `spread` (at most READ_CAP, never under FOLLOWS)."""
    if departure is None or not math.isfinite(departure):
        return False  # one distinct value (or none): its order says nothing
    limit = max(FOLLOWS, min(READ_CAP, SIGNIFICANT * spread)) if significant else FOLLOWS
    return abs(departure) > limit


def _locality(column: str, pair: pl.Expr | None = None) -> pl.Expr:
    """Mean |rank gap| of adjacent rows holding different values, over the mean |rank gap| of
    any two rows holding different values. Equal neighbours are left out on both sides: a
    log whose rows come in runs of one user (sessions) says nothing of raw ids. `pair`: which
    rows are adjacent to the one before (a sample without nulls); all of them by default."""
    values = pl.col(column).drop_nulls()
    rank = values.rank("average")
    m = rank.len().cast(pl.Float64)
    i = pl.int_range(rank.len(), dtype=pl.Int64).cast(pl.Float64)
    any_two = 2 * ((2 * i - m + 1) * rank.sort()).sum() / (m * (m - 1))
    counts = values.unique_counts().cast(pl.Float64)
    differ = 1 - (counts * (counts - 1)).sum() / (m * (m - 1))  # P(two rows differ)
    gaps = rank.diff().abs()
    kept = gaps > 0 if pair is None else (gaps > 0) & pair
    return gaps.filter(kept).mean() / (any_two / differ)


def _steps(column: str, pair: pl.Expr | None = None) -> pl.Expr:
    """How many neighbouring rows hold different values (what `_locality` averages over)."""
    values = pl.col(column).drop_nulls()
    differ = values != values.shift(1)
    return (differ if pair is None else differ & pair).sum()


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
    else in a random order. `source` itself when it has no identifier columns.

    Memory holds the columns decided on (a time column, the identifiers) and a bounded number
    of rows, never the file: rows stream through temporary files in `target`'s folder."""
    if not identifiers:
        return source
    rng = np.random.default_rng(secrets.randbits(128))
    if (time := _time_order(source, columns, identifiers)) is not None:
        runs = time.rle().struct.field("len").to_numpy()  # one length per instant
        del time
        order = _ties_shuffled(runs, rng)
        if _in_order_follows(source, order, identifiers, rng) is None:
            if (
                runs.max(initial=0) <= BUCKET_ROWS
            ):  # each run fits in memory: rows stream, runs shuffled
                return _stream_in_order(source, target, order)
            return _spill_in_order(source, target, order)
    return _spill_shuffled(source, target, rng)


def _time_order(
    source: Path, columns: list[ColumnInfo], identifiers: list[str]
) -> pl.Series | None:
    """The first public date or time column, not an identifier nor of an entity, without
    nulls, that `source` is sorted by (ascending or descending), read alone."""
    schema = pl.read_parquet_schema(source)
    for c in columns:
        if c.classification != "public" or c.entity is not None or c.name in identifiers:
            continue
        if c.name not in schema or not schema[c.name].is_temporal():
            continue
        series = pl.read_parquet(source, columns=[c.name]).to_series()
        if series.null_count():
            continue
        if series.is_sorted() or series.is_sorted(descending=True):
            return series
    return None


def _ties_shuffled(runs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each output row's source row, for a log of runs of equal times `runs` long: in time
    order, the rows of one instant in a random order (a row moves only within its run). Made
    a bucket of whole runs at a time, so memory holds the answer (4 bytes a row up to 4G
    rows) and a bucket's sort, not a sort of the log."""
    ends = np.cumsum(runs)
    n = int(ends[-1]) if len(ends) else 0
    order = np.empty(n, dtype=np.uint32 if n <= np.iinfo(np.uint32).max else np.int64)
    start, first = 0, 0  # first: the run that starts at row `start`
    while start < n:
        # whole runs up to BUCKET_ROWS rows, or one longer run alone
        last = max(int(np.searchsorted(ends, start + BUCKET_ROWS, side="right")), first + 1)
        stop = int(ends[last - 1])
        run = np.repeat(np.arange(last - first), runs[first:last])
        order[start:stop] = start + np.lexsort((rng.permutation(stop - start), run))
        start, first = stop, last
    return order


def _batches(source: Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """`source`'s rows a batch at a time, a row group at a time: one reader over the whole
    file holds what it has read until it ends (measured: ~the file's size at 30M rows)."""
    file = pq.ParquetFile(source)
    for group in range(file.num_row_groups):
        yield from file.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns)


def _stream_in_order(source: Path, target: Path, order: np.ndarray) -> Path:
    """`source`'s rows in `order`, which moves rows only within runs of at most BUCKET_ROWS:
    a run that crosses a batch's end is held until its last row has come."""
    start, held = 0, []  # held: source rows start.. not yet written
    with _RowGroups(source, target) as out:
        for batch in _batches(source):
            held.append(batch)
            end = start + sum(b.num_rows for b in held)
            # rows start..cut hold the output positions start..cut once the running maximum
            # of the source rows they take is cut - 1: every run in them is whole
            reach = np.maximum.accumulate(order[start:end])
            whole = np.flatnonzero(reach == np.arange(start, end))
            if not whole.size:
                continue
            cut = start + int(whole[-1]) + 1
            rows = pa.Table.from_batches(held)
            out.write(rows.take(order[start:cut] - start))
            rest = rows.slice(cut - start).combine_chunks()
            held, start = rest.to_batches(), cut
    return target


def _spill_shuffled(source: Path, target: Path, rng: np.random.Generator) -> Path:
    """`source`'s rows in a uniformly random order, out of core: each row goes to one of
    rows/BUCKET_ROWS temporary files drawn at random, then each file is read, shuffled and
    appended (a random bucket per row and a random order within each is a random order)."""
    buckets = _buckets(source)

    def place(batch: pa.RecordBatch, start: int) -> tuple[np.ndarray, pa.RecordBatch]:
        return rng.integers(0, buckets, batch.num_rows), batch

    def arrange(rows: pa.Table) -> pa.Table:
        return rows.take(rng.permutation(rows.num_rows))

    return _spill(source, target, buckets, place, arrange)


def _spill_in_order(source: Path, target: Path, order: np.ndarray) -> Path:
    """`source`'s rows in `order`, out of core: each row goes to the temporary file of its
    output position's range, then each file is read and put in position order."""
    position = np.empty_like(order)
    position[order] = np.arange(len(order), dtype=order.dtype)
    del order

    def place(batch: pa.RecordBatch, start: int) -> tuple[np.ndarray, pa.RecordBatch]:
        at = position[start : start + batch.num_rows]
        return at // BUCKET_ROWS, batch.append_column("_position", pa.array(at))

    def arrange(rows: pa.Table) -> pa.Table:
        return rows.sort_by("_position").drop_columns("_position")

    return _spill(source, target, _buckets(source), place, arrange)


Place = Callable[[pa.RecordBatch, int], tuple[np.ndarray, pa.RecordBatch]]


def _spill(
    source: Path, target: Path, buckets: int, place: Place, arrange: Callable[[pa.Table], pa.Table]
) -> Path:
    """Rows streamed from `source` into `buckets` temporary files (`place`: each row's file,
    and what to store), then each file read back in turn, ordered by `arrange`, and appended
    to `target`. Memory: a batch, a bucket and a row group."""
    with tempfile.TemporaryDirectory(prefix="scrub-", dir=target.parent) as scratch:
        paths = [Path(scratch) / f"{k}.arrow" for k in range(buckets)]
        writers: list[pa.ipc.RecordBatchStreamWriter | None] = [None] * buckets
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        start = 0
        try:
            for batch in _batches(source):
                bucket, stored = place(batch, start)
                start += batch.num_rows
                by_bucket = np.argsort(bucket, kind="stable")
                grouped = stored.take(pa.array(by_bucket))
                ends = np.cumsum(np.bincount(bucket, minlength=buckets))
                for k, end in enumerate(ends):
                    size = int(end) - (int(ends[k - 1]) if k else 0)
                    if not size:
                        continue
                    if writers[k] is None:
                        writers[k] = pa.ipc.new_stream(paths[k], grouped.schema, options=options)
                    writers[k].write_batch(grouped.slice(int(end) - size, size))  # type: ignore[union-attr]
        finally:
            for w in writers:
                if w is not None:
                    w.close()
        with _RowGroups(source, target) as out:
            for k, w in enumerate(writers):
                if w is not None:
                    with pa.memory_map(str(paths[k])) as f:
                        out.write(arrange(pa.ipc.open_stream(f).read_all()))
                    paths[k].unlink()
    return target


def _buckets(source: Path) -> int:
    return max(1, -(-pq.read_metadata(source).num_rows // BUCKET_ROWS))


class _RowGroups:
    """A Parquet writer to `target` in row groups of `source`'s size, whatever sizes it is
    handed: a streamed read holds a row group or so in memory, so the registrant's layout is
    kept, but for the order."""

    def __init__(self, source: Path, target: Path) -> None:
        meta = pq.read_metadata(source)
        self.size = meta.row_group(0).num_rows if meta.num_row_groups else 0
        schema = meta.schema.to_arrow_schema()
        self.writer = pq.ParquetWriter(target, schema, compression="zstd")
        self.held: list[pa.Table] = []
        self.rows = 0

    def write(self, rows: pa.Table) -> None:
        self.held.append(rows)
        self.rows += rows.num_rows
        if self.size and self.rows >= self.size:
            self._flush(self.rows - self.rows % self.size)

    def _flush(self, count: int) -> None:
        rows = pa.concat_tables(self.held)
        if count:
            self.writer.write_table(rows.slice(0, count), row_group_size=self.size or None)
        rest = rows.slice(count).combine_chunks()
        self.held, self.rows = [rest], rest.num_rows

    def __enter__(self) -> _RowGroups:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and self.rows:
            self._flush(self.rows)
        self.writer.close()
