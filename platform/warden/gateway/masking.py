"""Masks: a keyed hash for identifiers (so joins still work), null or redact for the rest.

Identifier masks keep the column's type: an integer id becomes a 64-bit keyed hash (an
integer), a text id becomes "h_" + 16 hex digits. Same key, same token, so masked columns
still join across datasets; without the key, a token can't be turned back into an id. The
key is the reading tenant's, for the entity the column identifies, under the tenant's current
key version (warden.gateway.keys): one user has one pseudonym across a tenant's datasets,
and unrelated ones in other tenants, for other entities, and after a rotation.

The tokens of a column are computed once per (file, column, key) — dataset files are
immutable — and looked up vectorised: compact integer ids index a dense array of tokens
(a gather, tens of milliseconds for millions of rows); other ids go through a hash join.
A streamed read's first batch does not wait for that table (a scan of the whole file's ids,
which grows with the file: ~1 s for 30M rows on SeaweedFS): until a read built it, the first
batch is masked with the tokens of its own values (the same tokens); the second batch builds
it, while the first is sent. A read of one batch (a limit) never builds it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from warden.catalog.storage import DataFile
from warden.errors import Unprocessable

REDACTED = "[redacted]"
SMALL_FRAME = 20_000
# Up to this many rows, compact integer ids are masked with one numpy gather.
TINY_FRAME = 4096
# A dense table costs 9 bytes per slot of the id range: used while the range is compact.
DENSE_MAX_SLOTS = 1 << 25
DENSE_MAX_SPREAD = 4
_MASKED = "__warden_masked"

# polars imports numpy on first use through a proxy whose import copies numpy's names over its
# own, numpy's `_globals` module included: two threads using numpy through polars for the first
# time in a process could fail ("'module' object does not support item assignment", seen with
# concurrent first reads). The proxy is replaced here, once, at import.
pl.Series(np.zeros(1, dtype=bool))


def token(key: bytes, value: object) -> int | str:
    digest = hmac.new(key, str(value).encode(), hashlib.sha256).digest()
    if isinstance(value, int) and not isinstance(value, bool):  # a Boolean column is text
        return int.from_bytes(digest[:8], "big", signed=True)
    return "h_" + digest[:8].hex()


@dataclass(frozen=True, eq=False)
class TokenTable:
    """Raw → token for every distinct value of one column of an immutable dataset file."""

    raw: pl.Series
    tokens: pl.Series
    # tokens by (value - offset) when the column holds compact integer ids; null in gaps
    dense: pl.Series | None = field(default=None, repr=False)
    offset: int = 0

    @cached_property
    def lookup(self) -> dict[object, object]:
        return dict(zip(self.raw.to_list(), self.tokens.to_list(), strict=True))

    def expr(self, column: str) -> pl.Expr:
        """The masked column as an expression (unknown values become null)."""
        if self.dense is None:
            return pl.col(column).replace_strict(
                self.raw, self.tokens, default=None, return_dtype=self.tokens.dtype
            )
        slot = pl.col(column).cast(pl.Int64, strict=False) - self.offset
        last = len(self.dense) - 1
        inside = (slot >= 0) & (slot <= last)
        return pl.when(inside).then(pl.lit(self.dense).gather(slot.clip(0, last)))

    @cached_property
    def dense_arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The dense table as numpy: tokens (0 in gaps) and which slots hold one (None: all)."""
        assert self.dense is not None
        present = self.dense.is_not_null().to_numpy()
        return self.dense.fill_null(0).to_numpy(), None if present.all() else present

    def apply(self, frame: pl.DataFrame, column: str) -> pl.DataFrame:
        """Mask one column of a collected frame."""
        if self.dense is not None and frame.height <= TINY_FRAME:
            masked = self._gathered(frame[column])
            if masked is not None:
                return _replaced(frame, masked)
        if self.dense is not None:
            slots = frame[column].cast(pl.Int64, strict=False) - self.offset
            if slots.null_count() or not _within(slots, len(self.dense)):
                return frame.with_columns(self.expr(column).alias(column))
            # A plain gather, chunk by chunk: the masked column keeps the frame's chunk layout,
            # so handing the frame to Arrow later needs no copy to realign chunks.
            parts = [self.dense.gather(part) for part in slots.get_chunks()]
            masked = pl.concat(parts, rechunk=False) if parts else self.dense.clear()
            return _replaced(frame, masked.alias(column))
        if frame.height <= SMALL_FRAME:
            # Few rows: a dict lookup costs far less than hashing every distinct id.
            lookup = self.lookup
            values = [None if v is None else lookup.get(v) for v in frame[column].to_list()]
            return _replaced(frame, pl.Series(column, values, dtype=self.tokens.dtype))
        mapping = pl.DataFrame({column: self.raw, _MASKED: self.tokens})
        joined = frame.join(mapping, on=column, how="left", maintain_order="left")
        return joined.with_columns(pl.col(_MASKED).alias(column)).drop(_MASKED)

    def _gathered(self, ids: pl.Series) -> pl.Series | None:
        """A few ids masked by one numpy gather (a tenth of the polars calls of the path for
        many rows); None unless every id is a non-null integer with a token, in one chunk
        (the masked column keeps the frame's chunk layout, see `apply`)."""
        if not ids.dtype.is_integer() or ids.null_count() or ids.n_chunks() > 1:
            return None
        tokens, present = self.dense_arrays
        slots = ids.to_numpy()
        if slots.dtype != np.int64:
            slots = slots.astype(np.int64)  # a uint64 past 2**63 goes < 0
        slots = slots - self.offset
        if slots.size and (slots.min() < 0 or slots.max() >= len(tokens)):
            return None
        if present is not None and not present[slots].all():
            return None
        # An int64 array makes an Int64 Series as it is; naming the type costs a cast.
        return pl.Series(ids.name, tokens[slots])


def _replaced(frame: pl.DataFrame, masked: pl.Series) -> pl.DataFrame:
    """`frame` with its column of `masked`'s name swapped for `masked`, as `with_columns` would,
    but without a query through polars' engine: on a loaded server that costs a small read
    ~0.13 ms of CPU more (its code runs cold), for a swap of one column. The caller's frame is
    left as it was (the copy shares its columns' buffers)."""
    copy = frame.clone()
    copy.replace_column(frame.get_column_index(masked.name), masked)
    return copy


def _within(slots: pl.Series, size: int) -> bool:
    low, high = slots.min(), slots.max()
    return slots.is_empty() or (
        isinstance(low, int) and isinstance(high, int) and low >= 0 and high < size
    )


def _check_maskable(column: str, held: pl.DataType) -> None:
    if held.is_nested() or held == pl.Object:
        # one pseudonym for a whole list or struct of ids joins nothing and hides nothing
        raise Unprocessable(
            f"identifier column {column!r} holds {held}, which cannot be masked; ask the"
            " dataset's owner to register its ids one to a column"
        )


def _tokens(distinct: pl.Series, key: bytes) -> pl.Series:
    dtype = pl.Int64 if distinct.dtype.is_integer() else pl.Utf8
    return pl.Series([token(key, v) for v in distinct.to_list()], dtype=dtype)


# the tables `token_table` built, least recently used first: one cache, looked up without
# building by `built_table`
BUILT_TABLES = 64
_built: OrderedDict[tuple[DataFile | Path, str, bytes], TokenTable] = OrderedDict()
_built_lock = threading.Lock()


def token_table(file: DataFile | Path, column: str, key: bytes) -> TokenTable:
    at = (file, column, key)
    if (table := built_table(file, column, key)) is not None:
        return table
    table = _token_table(file, column, key)  # outside the lock: other files' reads go on
    with _built_lock:
        _built[at] = table
        _built.move_to_end(at)
        while len(_built) > BUILT_TABLES:
            _built.popitem(last=False)
    return table


def _token_table(file: DataFile | Path, column: str, key: bytes) -> TokenTable:
    source = file if isinstance(file, DataFile) else DataFile(str(file))
    _check_maskable(column, source.scan().collect_schema()[column])
    distinct = source.scan().select(pl.col(column).unique().drop_nulls()).collect()[column]
    tokens = _tokens(distinct, key)
    if not distinct.dtype.is_integer() or distinct.is_empty():
        return TokenTable(distinct, tokens)
    low, high = int(distinct.min()), int(distinct.max())  # type: ignore[arg-type]
    slots = high - low + 1
    if high >= 2**63 or slots > DENSE_MAX_SLOTS or slots > DENSE_MAX_SPREAD * len(distinct) + 1024:
        return TokenTable(distinct, tokens)
    values = np.zeros(slots, dtype=np.int64)
    present = np.zeros(slots, dtype=bool)
    at = distinct.cast(pl.Int64).to_numpy() - low
    values[at] = tokens.to_numpy()
    present[at] = True
    dense = pl.select(
        pl.when(pl.lit(pl.Series(present))).then(pl.lit(pl.Series(values)))
    ).to_series()
    return TokenTable(distinct, tokens, dense, low)


def masked_dtype(dtype: str) -> str:
    """The type a masked identifier column has in a read's result."""
    return "Int64" if dtype.startswith(("Int", "UInt")) else "Utf8"


def keyed_hash_expr(column: str, file: DataFile | Path, key: bytes) -> pl.Expr:
    return token_table(file, column, key).expr(column)


def frame_table(ids: pl.Series, key: bytes) -> TokenTable:
    """Raw → token for the values of `ids` alone (a batch of a stream)."""
    _check_maskable(str(ids.name), ids.dtype)
    distinct = ids.unique().drop_nulls()
    return TokenTable(distinct, _tokens(distinct, key))


def forget_tables() -> None:
    """Drop every built table (tests; a file's table is otherwise kept until evicted)."""
    with _built_lock:
        _built.clear()


def built_table(file: DataFile | Path, column: str, key: bytes) -> TokenTable | None:
    """The file's token table if a read built it already; never builds it."""
    with _built_lock:
        table = _built.get((file, column, key))
        if table is not None:
            _built.move_to_end((file, column, key))
        return table


def keyed_hash_frame(
    frame: pl.DataFrame, column: str, file: DataFile | Path, key: bytes, *, wait: bool = True
) -> pl.DataFrame:
    """Mask a collected frame. `wait=False` (a stream's first batch): with the file's token
    table if it is built, otherwise with the tokens of the frame's own values."""
    if wait:
        table = token_table(file, column, key)
    else:
        table = built_table(file, column, key) or frame_table(frame[column], key)
    return table.apply(frame, column)


def blank_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Utf8:
        redacted = pl.when(pl.col(column).is_null()).then(None).otherwise(pl.lit(REDACTED))
        return redacted.alias(column)
    return pl.lit(None, dtype=dtype).alias(column)
