"""Arrow IPC streams for governed reads: exact length first, bytes after the audit."""

from __future__ import annotations

import io
from collections.abc import Iterator

import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc

BATCH_ROWS = 128 * 1024
# Uncompressed: LZ4 halves the bytes but costs more CPU than it saves on loopback and on a
# unix socket, where the gateway's callers are.
IPC_OPTIONS = pa_ipc.IpcWriteOptions()
# Pieces this small are copied together, so the transport makes few large writes.
COALESCE_BELOW = 64 * 1024
_VIEW_TYPES = (pa.string_view(), pa.binary_view())
# Answers of at most this many rows are written by polars' own IPC writer, in one call: for a
# small answer, pyarrow's writer spent more on per-buffer Python work than on the bytes
# (100 rows: 0.19 -> 0.06 ms in the classic layout, 0.29 -> 0.02 ms in the view layout).
ONE_CALL_ROWS = 64 * 1024


class ArrowStream:
    """A frame as an Arrow IPC stream whose exact length is known before any byte is sent.

    The stream is written once, so the length is known; the audit event names it, is
    committed, and only then are the pieces handed to the transport. A small answer (at most
    ONE_CALL_ROWS rows) is one piece, written by polars; a larger one is pieces that mostly
    point at the Arrow table's own buffers (no copy).

    With `views`, text columns whose strings are all inline (12 bytes or less) go out in
    Arrow's view layout, which polars reads without a copy; any other column keeps the
    classic layout (large_string), the one every Arrow reader knows.
    """

    def __init__(self, frame: pl.DataFrame, *, views: bool = False) -> None:
        written = _in_one_call(frame, views) if frame.height <= ONE_CALL_ROWS else None
        if written is not None:
            self.pieces = [memoryview(written)]
            self.size = len(written)
            return
        table = to_arrow(frame, views=views)
        pieces: list[memoryview] = []
        sink = pa.PythonFile(_Collector(pieces), mode="w")
        with pa_ipc.new_stream(sink, table.schema, options=IPC_OPTIONS) as writer:
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                writer.write_batch(batch)
        self.pieces = _coalesce(pieces)
        self.size = sum(len(p) for p in self.pieces)

    def __iter__(self) -> Iterator[memoryview]:
        return iter(self.pieces)


def to_arrow(frame: pl.DataFrame, *, views: bool, schema: pa.Schema | None = None) -> pa.Table:
    """The frame as Arrow: the classic layout, or with `views` polars' own view layout (no
    copy) for the text columns whose strings are all inline. `schema`: the layout a stream's
    first batch announced, which every later batch keeps (a view column whose strings are not
    all inline in this batch is compacted into fresh views)."""
    classic = pl.CompatLevel.oldest()
    if not views:
        table = frame.to_arrow(compat_level=classic)
        return table if schema is None or table.schema == schema else table.cast(schema)
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())  # polars' own layout: no copy
    wanted = schema or frame.head(0).to_arrow(compat_level=classic).schema
    for i, name in enumerate(table.column_names):
        column, want = table.column(i), wanted.field(i).type
        if want in _VIEW_TYPES:  # a later batch of a stream that announced views here
            keep = _inline_views(column)
        else:  # on the first batch an all-inline text column goes out as views
            keep = column.type == want or (schema is None and _inline_views(column))
        if keep:
            continue
        replaced = frame.select(name).to_arrow(compat_level=classic)[0]
        table = table.set_column(i, name, replaced.cast(want) if schema is not None else replaced)
    if schema is not None and table.schema != schema:  # the same types, other field flags
        table = table.cast(schema)
    return table


def _in_one_call(frame: pl.DataFrame, views: bool) -> bytes | None:
    """The frame as one IPC stream written by polars, in the layout `to_arrow` gives it; None
    when that layout is not polars' own (a view column with strings out of line: the other
    path sends it in the classic layout)."""
    compat = pl.CompatLevel.oldest()
    if views:
        own = frame.to_arrow(compat_level=pl.CompatLevel.newest())  # no copy
        classic = frame.head(0).to_arrow(compat_level=compat).schema
        for i, column in enumerate(own.columns):
            if column.type != classic.field(i).type and not _inline_views(column):
                return None
        compat = pl.CompatLevel.newest()
    sink = io.BytesIO()
    frame.write_ipc_stream(sink, compat_level=compat)
    return sink.getvalue()


def _inline_views(column: pa.ChunkedArray) -> bool:
    """A text/binary view column that carries no out-of-line data buffers.

    Out-of-line buffers are written whole with every batch that points into them, so a
    sliced or filtered column could send far more than its rows; inline views cannot.
    """
    if column.type not in _VIEW_TYPES:
        return False
    return all(
        all(b is None or b.size == 0 for b in chunk.buffers()[2:]) for chunk in column.chunks
    )


def _coalesce(pieces: list[memoryview]) -> list[memoryview]:
    """Join runs of small pieces (message headers, padding, short buffers) into one."""
    out: list[memoryview] = []
    run = bytearray()
    for piece in pieces:
        if len(piece) < COALESCE_BELOW:
            run += piece
            continue
        if run:
            out.append(memoryview(bytes(run)))
            run.clear()
        out.append(piece)
    if run:
        out.append(memoryview(bytes(run)))
    return out


class _Collector:
    """A write-only file object that keeps what pyarrow writes (its buffers, not copies)."""

    def __init__(self, pieces: list[memoryview]) -> None:
        self.pieces = pieces
        self.closed = False

    def write(self, data: bytes) -> int:
        self.pieces.append(memoryview(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
