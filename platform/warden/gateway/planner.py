"""Plan a governed read with polars (lazy): policy row filters, masks, caller filters, limit.

Order matters: policy filters see raw values; the caller's filters see only what the caller
may see (masked values, never raw ones), so a filter can't be used as an oracle.
"""

from __future__ import annotations

import functools
import math
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from warden.catalog.storage import DataFile
from warden.catalog.view import DatasetView
from warden.errors import Forbidden, InvalidFilter
from warden.gateway.filters import column_test, expression, typed_value
from warden.gateway.keys import TenantMask
from warden.gateway.masking import blank_expr, keyed_hash_expr, keyed_hash_frame, masked_dtype
from warden.gateway.schemas import FilterClause
from warden.policy.engine import ReadDecision, RowFilter

# Small dataset files are kept decoded in memory: a file is immutable (named by its content
# digest), and decoding one costs milliseconds even when a read wants 100 rows of it.
SMALL_FILE_BYTES = 8 << 20
FRAME_CACHE_BYTES = 256 << 20
BATCH_ROWS = 256 * 1024
_POSITION = "__warden_position"
# A limit up to SMALL_LIMIT is first looked for in the file's first FIRST_ROWS_PER_ROW × limit
# rows (a filter over the whole decoded file before the limit cost 3× the CPU of the rest).
SMALL_LIMIT = 1000
FIRST_ROWS_PER_ROW = 16


class _FrameCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._frames: OrderedDict[tuple[DataFile, int, int], pl.DataFrame] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def source(self, file: DataFile, byte_size: int) -> tuple[pl.LazyFrame, pl.DataFrame | None]:
        """The file as a lazy frame, and the decoded frame when it is kept in memory (a small
        file). `byte_size`: the catalog's (an object in a bucket is not asked for its size)."""
        if file.catalogued:
            size, stamp = byte_size, 0  # an object or a snapshot: immutable, never asked
        else:
            try:
                stat = Path(file.location).stat()
            except OSError:
                return file.scan(), None  # fails as it always did
            size, stamp = stat.st_size, stat.st_mtime_ns
        if size > SMALL_FILE_BYTES or size <= 0:
            return file.scan(), None
        key = (file, size, stamp)
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
                return frame.lazy(), frame
        frame = file.scan().collect()
        size = int(frame.estimated_size())
        with self._lock:
            if key not in self._frames and size <= self.max_bytes:
                self._frames[key] = frame
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, dropped = self._frames.popitem(last=False)
                    self._bytes -= int(dropped.estimated_size())
        return frame.lazy(), frame

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._bytes = 0


frames = _FrameCache(FRAME_CACHE_BYTES)


@dataclass(frozen=True)
class Plan:
    source: pl.LazyFrame
    # the plan's steps, for the source or any first rows of it (see `_first_rows`)
    shape: Callable[[pl.LazyFrame], pl.LazyFrame] = field(repr=False)
    columns: tuple[str, ...]
    masked: tuple[str, ...]
    late_masks: tuple[str, ...]
    file: DataFile
    # the key of each masked identifier column: the tenant's, for that column's entity
    keys: dict[str, bytes] = field(repr=False)
    key_version: int = 0
    # the source decoded in memory (a small file): collect it at once, never stream
    decoded: pl.DataFrame | None = field(default=None, repr=False)
    limit: int | None = None
    # the plan only picks columns (distinct) and a limit: no filter, shard or mask step
    plain: bool = False
    # the caller's filters made on a frame's own columns, when they are the plan's only step
    # beside picking columns (distinct) and a limit (see `_first_rows`)
    tests: tuple[Callable[[pl.DataFrame], Any], ...] = field(default=(), repr=False)

    @property
    def frame(self) -> pl.LazyFrame:
        """The whole plan (made when asked: a small answer may never need it)."""
        return self.shape(self.source)

    @property
    def in_memory(self) -> bool:
        return self.decoded is not None


def policy_value(dataset: DatasetView, rf: RowFilter) -> Any:
    info = dataset.column(rf.column)
    if info is None:
        # A rule naming a missing column must never widen a read: deny.
        raise Forbidden(f"policy row filter names unknown column {rf.column!r}")
    if rf.op in ("in", "not_in"):
        return [_from_text(rf.column, info.dtype, v) for v in rf.value.split("|")]
    return _from_text(rf.column, info.dtype, rf.value)


def _from_text(column: str, dtype: str, raw: str) -> Any:
    """A rule's value as the column's type, exactly as written, or Forbidden: a value read as
    another (`yes` as false) would filter other rows than the rule says."""
    try:
        if dtype.startswith(("Int", "UInt")) and _INTEGER.fullmatch(raw):
            return typed_value(column, dtype, int(raw))
        if dtype.startswith("Float") and math.isfinite(number := float(raw)):
            return typed_value(column, dtype, number)
        if dtype == "Boolean" and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if not dtype.startswith(("Int", "UInt", "Float", "Boolean")):
            return typed_value(column, dtype, raw)
    except (ValueError, InvalidFilter):
        pass
    raise Forbidden(f"policy row filter on {column!r}: {raw[:64]!r} is not a {dtype} value")


_INTEGER = re.compile(r"-?[0-9]{1,19}")


def check_filters(where: list[FilterClause], decision: ReadDecision, dataset: DatasetView) -> None:
    readable = set(decision.allowed_columns) | set(decision.masked_columns)
    for clause in where:
        if dataset.column(clause.column) is None:
            raise InvalidFilter(f"filter names unknown column {clause.column!r}")
        if clause.column not in readable:
            raise Forbidden(f"filter on column {clause.column!r}, which this read may not see")


def build(
    dataset: DatasetView,
    decision: ReadDecision,
    columns: list[str],
    where: list[FilterClause],
    limit: int | None,
    mask: TenantMask,
    file: DataFile,
    shard: tuple[int, int] | None = None,
) -> Plan:
    """`file`: the version's file as the platform reaches it. `mask`: the reading tenant's
    current key; each identifier column is masked with the
    key of the entity it identifies, so one user has one pseudonym in every dataset of the
    tenant and another in every other tenant.

    `shard=(rank, world)`: only the rows whose position is `rank` modulo `world`. Positions
    are those of the immutable version's file among the rows the policy's row filters keep,
    numbered before the caller's filters, so the shards of one version are disjoint and cover
    the answer whatever the caller filters (a limit applies to each shard on its own), and
    say nothing of the rows the policy hides."""
    if mask.tenant_id != dataset.tenant_id:
        raise Forbidden("the mask key is not the dataset's tenant's")
    source, decoded = frames.source(file, dataset.byte_size)
    policy_filters = []
    for rf in decision.row_filters:
        value = policy_value(dataset, rf)
        policy_filters.append(expression(rf.column, _dtype(dataset, rf.column), rf.op, value))
    readable = set(decision.allowed_columns) | set(decision.masked_columns)
    masked_all = set(decision.masked_columns)
    visible = [c for c in columns if c in readable]
    needed = list(dict.fromkeys(visible + [w.column for w in where]))

    # Identifier masks go in before the caller's filters only when a filter compares masked
    # values; otherwise they are applied to the collected rows (see `collect`).
    filtered = {w.column for w in where}
    late: list[str] = []
    mask_exprs = []
    keys: dict[str, bytes] = {}
    for column in (c for c in needed if c in masked_all):
        if column in dataset.identifier_columns:
            keys[column] = mask.key(dataset.entity_of(column))
        if column in dataset.identifier_columns and column not in filtered:
            late.append(column)
        elif column in dataset.identifier_columns:
            mask_exprs.append(keyed_hash_expr(column, file, keys[column]).alias(column))
        else:
            # a decoded frame knows its schema; a lazy scan's costs a call into polars
            schema = decoded.schema if decoded is not None else source.collect_schema()
            mask_exprs.append(blank_expr(column, schema[column]))
    caller_filters = []
    for clause in where:
        dtype = _dtype(dataset, clause.column)
        if clause.column in masked_all:  # filters compare masked values, typed as masked
            dtype = masked_dtype(dtype) if clause.column in dataset.identifier_columns else dtype
        caller_filters.append(expression(clause.column, dtype, clause.op, clause.value))
    only_filters = shard is None and not (policy_filters or mask_exprs)
    tests: tuple[Callable[[pl.DataFrame], Any], ...] = ()
    if only_filters and caller_filters and 0 < len(set(visible)) == len(visible):
        made = [column_test(w.column, _dtype(dataset, w.column), w.op, w.value) for w in where]
        tests = tuple(t for t in made if t is not None) if None not in made else ()

    def shape(frame: pl.LazyFrame) -> pl.LazyFrame:
        """Every step is row by row, but for the shard's positions and the final limit."""
        for policy_filter in policy_filters:
            frame = frame.filter(policy_filter)
        if shard is not None:
            # numbered after the policy's filters: a position counting the rows they hide
            # would say how many stand between two of the reader's rows, and when (a log)
            rank, world = shard
            frame = (
                frame.with_row_index(_POSITION)
                .filter(pl.col(_POSITION) % world == rank)
                .drop(_POSITION)
            )
        frame = frame.select(needed)
        if mask_exprs:
            frame = frame.with_columns(mask_exprs)
        for caller_filter in caller_filters:
            frame = frame.filter(caller_filter)
        frame = frame.select(visible)
        return frame if limit is None else frame.head(limit)

    return Plan(
        source=source,
        shape=shape,
        columns=tuple(visible),
        masked=tuple(c for c in visible if c in masked_all),
        late_masks=tuple(late),
        file=file,
        keys=keys,
        key_version=mask.version,
        decoded=decoded,
        limit=limit,
        plain=only_filters and not caller_filters and 0 < len(set(visible)) == len(visible),
        tests=tests,
    )


def collect(plan: Plan, *, empty: bool = False) -> pl.DataFrame:
    """Run the plan, then apply the identifier masks left for the collected rows.
    `empty`: no rows, only the answer's columns and types."""
    if empty:
        return _late_masks(plan, plan.frame.head(0).collect())
    frame = _first_rows(plan)
    return _late_masks(plan, plan.frame.collect() if frame is None else frame)


def _first_rows(plan: Plan) -> pl.DataFrame | None:
    """A small answer from a decoded file, looked for in its first rows only: the steps are
    row by row and positions start at the first row, so when those rows give `limit` rows
    (or are the whole file), they are the answer the whole file gives. None: read it all."""
    decoded, limit = plan.decoded, plan.limit
    if decoded is None or limit is None or limit > SMALL_LIMIT:
        return None
    if plan.plain:
        # Columns and a limit only: the first rows' columns as they are, without a query
        # (polars' engine code runs cold on a loaded server: ~0.14 ms of a small read's CPU).
        return pl.DataFrame([decoded.get_column(c).slice(0, limit) for c in plan.columns])
    first = decoded.slice(0, FIRST_ROWS_PER_ROW * max(limit, 1))
    if plan.tests:
        # Only the caller's filters: each made on its column, the rows kept picked column by
        # column (the query engine's start, cold on a loaded server, cost ~0.14 ms more).
        keep = functools.reduce(operator.and_, (test(first) for test in plan.tests))
        frame = pl.DataFrame([first.get_column(c).filter(keep).head(limit) for c in plan.columns])
    else:
        # Few rows: polars' in-memory engine costs a third of the streaming one's CPU here.
        frame = plan.shape(first.lazy()).collect(engine="in-memory")
    if frame.height >= limit or first.height == decoded.height:
        return frame
    return None


def batches(plan: Plan, rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """Run the plan on polars' streaming engine, a batch at a time (bounded memory: the scan
    reads row groups as the consumer asks for batches), masks applied to each batch."""
    for at, frame in enumerate(plan.frame.collect_batches(chunk_size=rows)):
        # the first byte does not wait for a scan of every id in the file (see masking.py)
        yield _late_masks(plan, frame, wait=at > 0)


def _late_masks(plan: Plan, frame: pl.DataFrame, *, wait: bool = True) -> pl.DataFrame:
    for column in plan.late_masks:
        frame = keyed_hash_frame(frame, column, plan.file, plan.keys[column], wait=wait)
    return frame


def _dtype(dataset: DatasetView, column: str) -> str:
    info = dataset.column(column)
    if info is None:
        raise InvalidFilter(f"unknown column {column!r}")
    return info.dtype
