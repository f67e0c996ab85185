"""A read too large to hold: Arrow IPC written batch by batch as the plan produces them.

The stream's length is not known before the first byte, so its audit is two events: the
*intent* (the decision, committed before the first byte) and the *completion* (rows, bytes
and the SHA-256 of exactly the bytes handed to the transport, or how far it got when the
client went away), recorded once by `finish`, whatever ends the stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc

from warden.gateway.arrow import BATCH_ROWS, IPC_OPTIONS, _coalesce, _Collector, to_arrow

log = logging.getLogger(__name__)

# How many row groups polars' streaming scan fetches ahead of the one being decoded (read by
# polars at each query). Its default is at least its request budget, so a scan of an object
# asked for most of the file's row groups at once: the first one, which the first byte waits
# for, shared the bucket's bandwidth with all of them, and their bytes sat in the API process
# (10M rows on SeaweedFS, 2 cores: time to first byte 200 -> 70 ms at the median, peak RSS
# 610 -> 490 MB, throughput unchanged). Two per decoding thread keep them all busy; an
# operator's own setting wins.
os.environ.setdefault("POLARS_ROW_GROUP_PREFETCH_SIZE", str(max(4, 2 * pl.thread_pool_size())))


@dataclass(frozen=True)
class Chunk:
    """The bytes one step of the stream made: a batch (`rows` rows), or the end marker."""

    pieces: list[memoryview]
    rows: int
    last: bool


@dataclass(frozen=True)
class Outcome:
    rows: int
    bytes: int
    sha256: str
    complete: bool
    reason: str | None


class LiveStream:
    """Pieces of one Arrow IPC stream (schema, then each batch, then the end marker), made
    one step at a time by `next_chunk` in a worker thread, so at most a few batches are in
    memory however large the answer. Making and counting are apart: the transport hands
    each chunk to `handed` as it sends it (rows, bytes and SHA-256 count what was handed
    over, not what was made ahead), so the next chunk can be made while one is sent."""

    def __init__(
        self,
        first: list[pl.DataFrame],
        rest: Iterator[pl.DataFrame],
        finish: Callable[[Outcome], None],
        *,
        stream_id: str,
        views: bool = False,
    ) -> None:
        """`first`: batches already made (while deciding the answer is large), `rest` the
        plan's batch iterator they came from; `views`: the caller reads Arrow's view layout
        (see `arrow.to_arrow`)."""
        self.stream_id = stream_id
        self._views = views
        self._source = rest
        self._batches: Iterator[pl.DataFrame] = itertools.chain(first, rest)
        self._finish = finish
        self._pieces: list[memoryview] = []
        self._writer: pa_ipc.RecordBatchStreamWriter | None = None
        self._schema: pa.Schema | None = None
        self._made_last = False
        self._sha = hashlib.sha256()
        self._ended = False
        self._finished = False
        self._lock = threading.Lock()
        self.rows = 0
        self.bytes = 0

    def next_chunk(self) -> Chunk | None:
        """Make the next bytes to send, or None after the chunk with the end marker."""
        if self._made_last:
            return None
        frame = next(self._batches, None)
        rows = 0
        if frame is None:
            if self._writer is None:  # no batch at all: still a valid (empty) stream
                self._open(pa.schema([]))
            assert self._writer is not None
            self._writer.close()
            self._made_last = True
        else:
            table = to_arrow(frame, views=self._views, schema=self._schema)
            if self._writer is None:
                self._open(table.schema)
            assert self._writer is not None
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                self._writer.write_batch(batch)
            rows = frame.height
        pieces = _coalesce(self._pieces)
        self._pieces.clear()
        return Chunk(pieces, rows, self._made_last)

    def handed(self, chunk: Chunk) -> None:
        """Count a chunk as handed to the transport (called in the order chunks were made)."""
        for piece in chunk.pieces:
            self._sha.update(piece)  # releases the GIL: hashing runs beside the sending
            self.bytes += len(piece)
        self.rows += chunk.rows
        self._ended = chunk.last

    def next_pieces(self) -> list[memoryview] | None:
        """Make the next chunk and count it as sent at once (a caller that sends in order)."""
        chunk = self.next_chunk()
        if chunk is None:
            return None
        self.handed(chunk)
        return chunk.pieces

    def _open(self, schema: pa.Schema) -> None:
        self._schema = schema
        sink = pa.PythonFile(_Collector(self._pieces), mode="w")
        self._writer = pa_ipc.new_stream(sink, schema, options=IPC_OPTIONS)

    def finish(self, *, complete: bool, reason: str | None = None) -> None:
        """Record how the stream ended, once (the first call wins); never raises: the bytes
        are gone, and a completion that cannot be written leaves its intent open, which
        `audit verify` reports."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        close = getattr(self._source, "close", None)
        if callable(close):
            with contextlib.suppress(ValueError):  # still running in an abandoned thread
                close()  # stops the scan
        outcome = Outcome(
            rows=self.rows,
            bytes=self.bytes,
            sha256=self._sha.hexdigest(),
            complete=complete and self._ended,
            reason=reason,
        )
        try:
            self._finish(outcome)
        except Exception:
            log.exception("the completion of stream %s could not be recorded", self.stream_id)
