"""How a live stream's completion is decided at the ASGI edge: by whether every byte of the
stream was handed to the transport, not by whether the response's last step ran.

A reader may hang up as soon as it has seen the Arrow end marker, before the empty closing
chunk of the HTTP response goes out; under load that once recorded a fully delivered stream
as incomplete (tests/gateway/test_streaming.py, on the job socket).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

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


CHUNKS = [
    Chunk([memoryview(b"schema+batch")], 10, False),
    Chunk([memoryview(b"end marker")], 0, True),
]


async def _respond(*, hang_up_after: str) -> _Stream:
    """Send the stream to a client that hangs up once it has seen `hang_up_after`
    ("everything": the last data piece; "first": the first piece) and whose transport never
    sends anything after that."""
    stream = _Stream(CHUNKS)
    gone = anyio.Event()
    pieces: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if gone.is_set():
                await anyio.sleep_forever()  # the connection is closing: nothing goes out
            pieces.append(bytes(message["body"]))
            last_data = bytes(message["body"]) == b"end marker"
            if (hang_up_after == "everything" and last_data) or hang_up_after == "first":
                gone.set()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    response = _LiveResponse(stream, headers={})  # type: ignore[arg-type]
    with anyio.fail_after(30):
        await response({"type": "http"}, receive, send)
    return stream


@pytest.mark.anyio
async def test_a_client_that_hangs_up_after_the_last_byte_got_a_complete_stream() -> None:
    stream = await _respond(hang_up_after="everything")
    assert stream.finished == [{"complete": True, "reason": None}]


@pytest.mark.anyio
async def test_a_client_that_hangs_up_midway_got_an_incomplete_stream() -> None:
    stream = await _respond(hang_up_after="first")
    assert stream.finished == [{"complete": False, "reason": "the client went away"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
