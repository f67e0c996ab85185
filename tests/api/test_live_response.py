"""How a live stream's completion is decided at the ASGI edge: complete when every byte of the
stream was handed to a connection that was still open, whatever happens after; incomplete
when the client went away first, even if the server then drops the remaining writes
silently (uvicorn does).

A reader may hang up as soon as it has seen the Arrow end marker, before the empty closing
chunk of the HTTP response goes out; under load that once recorded a fully delivered stream
as incomplete (tests/gateway/test_streaming.py, on the job socket).
"""

from __future__ import annotations

import asyncio
from typing import Any

from warden.api.routes.gateway import _LiveResponse
from warden.gateway.stream import Chunk


class _Stream:
    """The three calls `_LiveResponse` makes of a `LiveStream`, over fixed chunks."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self._chunks = list(chunks)
        self.counted: list[Chunk] = []
        self.finished: list[dict[str, Any]] = []

    def next_chunk(self) -> Chunk | None:
        return self._chunks.pop(0) if self._chunks else None

    def handed(self, chunk: Chunk) -> None:
        self.counted.append(chunk)

    def finish(self, *, complete: bool, reason: str | None = None) -> None:
        self.finished.append({"complete": complete, "reason": reason})


class _Connection:
    """uvicorn's HTTP/1.1 send and receive, reduced: a write past the buffer's high-water
    mark waits for the buffer to drain; once the connection is lost, receive answers
    `http.disconnect` and every write returns at once, dropped."""

    def __init__(self) -> None:
        self.delivered: list[bytes] = []
        self.disconnected = False
        self._lost = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def lose(self) -> None:  # uvicorn's connection_lost: disconnect first, then wake writers
        self.disconnected = True
        self._lost.set()
        self._writable.set()

    async def send(self, message: dict[str, Any]) -> None:
        if not self._writable.is_set() and not self.disconnected:
            await self._writable.wait()
        if self.disconnected or message["type"] != "http.response.body":
            return
        self.delivered.append(bytes(message["body"]))

    def fill_buffer(self) -> None:  # the next write waits until the buffer drains
        self._writable.clear()

    async def receive(self) -> dict[str, Any]:
        await self._lost.wait()
        return {"type": "http.disconnect"}


CHUNKS = [
    Chunk([memoryview(b"schema+batch")], 10, False),
    Chunk([memoryview(b"big1"), memoryview(b"big2"), memoryview(b"end marker")], 5, True),
]


async def _respond(connection: _Connection, on_piece: Any) -> _Stream:
    stream = _Stream(CHUNKS)
    real_send = connection.send

    async def send(message: dict[str, Any]) -> None:
        await real_send(message)
        if message["type"] == "http.response.body" and not connection.disconnected:
            on_piece(bytes(message["body"]))

    response = _LiveResponse(stream, headers={})  # type: ignore[arg-type]
    await asyncio.wait_for(response({"type": "http"}, connection.receive, send), 30)
    return stream


def test_a_client_that_hangs_up_after_the_last_byte_got_a_complete_stream() -> None:
    async def run() -> _Stream:
        connection = _Connection()
        loop = asyncio.get_running_loop()

        def on_piece(body: bytes) -> None:  # the reader closes once it has the end marker
            if body == b"end marker":
                loop.call_later(0.01, connection.lose)

        return await _respond(connection, on_piece)

    stream = asyncio.run(run())
    assert stream.finished == [{"complete": True, "reason": None}]
    assert [c.rows for c in stream.counted] == [10, 5]


def test_a_client_that_hangs_up_midway_got_an_incomplete_stream() -> None:
    async def run() -> tuple[_Stream, _Connection]:
        connection = _Connection()

        def on_piece(body: bytes) -> None:
            if body == b"schema+batch":
                connection.lose()

        return await _respond(connection, on_piece), connection

    stream, connection = asyncio.run(run())
    assert stream.finished == [{"complete": False, "reason": "the client went away"}]
    assert connection.delivered == [b"schema+batch"]


def test_a_connection_lost_while_the_last_chunk_waits_to_drain_is_incomplete() -> None:
    # The rest of the last chunk is "sent" to a closed connection, which drops it silently:
    # the stream must not be taken as delivered, and what was handed over is still counted.
    async def run() -> tuple[_Stream, _Connection]:
        connection = _Connection()
        loop = asyncio.get_running_loop()

        def on_piece(body: bytes) -> None:
            if body == b"big1":
                connection.fill_buffer()
                loop.call_later(0.05, connection.lose)

        return await _respond(connection, on_piece), connection

    stream, connection = asyncio.run(run())
    assert connection.delivered == [b"schema+batch", b"big1"]
    assert stream.finished == [{"complete": False, "reason": "the client went away"}]
    assert [c.rows for c in stream.counted] == [10, 5]


def test_a_write_that_fails_while_the_next_chunk_waits_is_the_client_going_away() -> None:
    # The sender thread's write raises OSError when the client left before uvicorn saw it go:
    # the chunk made meanwhile, waiting to be taken, must not turn that into a failed stream
    # (it did, about one run in twenty of tests/gateway/test_streaming.py on PostgreSQL).
    stream = _Stream([Chunk([memoryview(b"one")], 1, False), *CHUNKS])
    connection = _Connection()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await asyncio.sleep(0.2)  # the next chunk is made and waits to be taken
            raise OSError(32, "Broken pipe")

    async def run() -> None:
        response = _LiveResponse(stream, headers={})  # type: ignore[arg-type]
        await asyncio.wait_for(response({"type": "http"}, connection.receive, send), 30)

    asyncio.run(run())
    assert stream.finished == [{"complete": False, "reason": "the client went away"}]
    assert [c.rows for c in stream.counted] == [1]
