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
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc

from warden.core.threads import name_this_thread
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
# How many handed chunks the stream's hashing thread may lag behind before the making of the
# next one waits for it: bounds what hashing holds in memory (a chunk is ~18 MB at 10M rows).
HASH_BEHIND = 2


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
    over, not what was made ahead), so the next chunk can be made while one is sent.

    The SHA-256 runs in a thread of the stream's own, in the order chunks were handed, while
    the next chunks are made and sent: the sending of each chunk used to wait for its hash,
    which started only once the event loop had begun the send and was each chunk's longest
    step; `finish` waits for the hashing to catch up."""

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
        self._to_hash: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        self._hashed = threading.Condition()
        self._queued = self._done = 0  # chunks handed to the hashing thread, and hashed
        self._hasher: threading.Thread | None = None
        self._ended = False
        self._finished = False
        self._lock = threading.Lock()
        self.rows = 0
        self.bytes = 0

    def next_chunk(self) -> Chunk | None:
        """Make the next bytes to send, or None after the chunk with the end marker."""
        if self._made_last:
            return None
        with self._hashed:  # bounded memory: wait while hashing lags too far behind
            self._hashed.wait_for(lambda: self.unhashed <= HASH_BEHIND)
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

    @property
    def unhashed(self) -> int:
        """Chunks handed over whose hashing has not ended yet."""
        return self._queued - self._done

    def handed(self, chunk: Chunk) -> None:
        """Count a chunk as handed to the transport (called in the order chunks were made);
        returns at once: its hashing is queued."""
        self.bytes += sum(len(piece) for piece in chunk.pieces)
        self.rows += chunk.rows
        self._ended = chunk.last
        if self._hasher is None:
            name = f"warden-hash-{self.stream_id}"
            self._hasher = threading.Thread(target=self._hash, name=name, daemon=True)
            self._hasher.start()
        with self._hashed:
            self._queued += 1
        self._to_hash.put(chunk)

    def _hash(self) -> None:
        name_this_thread("warden-hash")
        while (chunk := self._to_hash.get()) is not None:
            try:
                for piece in chunk.pieces:
                    self._sha.update(piece)  # releases the GIL: runs beside making and sending
            finally:  # never leave the making of the next chunk waiting on this one
                with self._hashed:
                    self._done += 1
                    self._hashed.notify_all()

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
        if self._hasher is not None:  # the digest of everything handed, in order
            self._to_hash.put(None)
            self._hasher.join()
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
