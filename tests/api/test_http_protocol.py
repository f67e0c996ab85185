"""The API's HTTP protocol frames a streamed body's large pieces without copying them, and takes
several pieces in one message (its `PIECES` extension): what the client receives is still every
byte, in order, however slowly it reads; an answer that fails midway ends its connection at
once, even when its last pieces never left. A response of known length goes out head and body
in one write. And a server started in a thread (the demo's, the
tests') that cannot listen says so when its thread ends."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from warden.api.background import serve_in_thread
from warden.core import http_protocol
from warden.core.http_protocol import FRAME_IN_PLACE_FROM
from warden.core.http_protocol import PIECES as MANY
from warden.errors import Unavailable

# Pieces on both sides of the threshold, a few larger than a socket's buffers.
SIZES = [7, FRAME_IN_PLACE_FROM - 1, FRAME_IN_PLACE_FROM, 3 << 20, 100, 1 << 20] * 4
PIECES = [os.urandom(size) for size in SIZES]


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/pieces")
    def pieces() -> StreamingResponse:
        async def body() -> AsyncIterator[memoryview]:
            for piece in PIECES:
                yield memoryview(piece)

        return StreamingResponse(body(), media_type="application/octet-stream")

    async def grouped(scope: Scope, receive: Receive, send: Send) -> None:
        """The pieces four to a message (the server offers the extension); `length` in the
        query: with a content-length (uvicorn frames those itself)."""
        length = scope["query_string"] == b"length"
        headers = [(b"content-length", str(len(b"".join(PIECES))).encode())] if length else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        assert MANY in scope.get("extensions", {})
        for at in range(0, len(PIECES), 4):
            group = [memoryview(piece) for piece in PIECES[at : at + 4]]
            body = {"type": "http.response.body", "body": b"", "more_body": True}
            await send({**body, MANY: group})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def many(scope: Scope, receive: Receive, send: Send) -> None:
        """More pieces in one message than one `writev` takes (the kernel's IOV_MAX, 1024)."""
        await send({"type": "http.response.start", "status": 200, "headers": []})
        body = {"type": "http.response.body", "body": b"", "more_body": True}
        await send({**body, MANY: [memoryview(piece) for piece in SMALL]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def late(scope: Scope, receive: Receive, send: Send) -> None:
        """A head of known length, then its body a while later (none for HEAD)."""
        headers = [(b"content-length", b"5"), (b"x-late", b"yes")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await asyncio.sleep(0.4)
        body = b"" if scope["method"] == "HEAD" else b"hello"
        await send({"type": "http.response.body", "body": body, "more_body": False})

    app.mount("/grouped", grouped)
    app.mount("/many", many)
    app.mount("/late", late)
    return app


SMALL = [b"%05d," % n for n in range(3000)]


def test_a_streamed_body_arrives_whole_however_slowly_it_is_read() -> None:
    server = serve_in_thread(_app())
    try:
        with (
            httpx.Client(base_url=server.url, timeout=60) as http,
            http.stream("GET", "/pieces") as response,
        ):
            assert response.headers["transfer-encoding"] == "chunked"
            time.sleep(0.5)  # the socket's buffers fill: the server waits for them to drain
            received = bytearray()
            for chunk in response.iter_bytes():
                received += chunk
                time.sleep(0.001)
        sent = b"".join(PIECES)
        assert len(received) == len(sent)
        assert hashlib.sha256(received).digest() == hashlib.sha256(sent).digest()
    finally:
        server.stop()


def test_a_client_that_hangs_up_midway_leaves_the_server_serving() -> None:
    server = serve_in_thread(_app())
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            with http.stream("GET", "/pieces") as response:
                next(response.iter_raw())  # then hang up with most of the body unsent
            again = http.get("/pieces")
        assert again.content == b"".join(PIECES)
    finally:
        server.stop()


def test_pieces_sent_in_one_message_arrive_whole_and_in_order_however_slowly_read() -> None:
    server = serve_in_thread(_app())
    sent = b"".join(PIECES)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            with http.stream("GET", "/grouped/") as response:
                assert response.headers["transfer-encoding"] == "chunked"
                time.sleep(0.5)  # the socket's buffers fill: the server waits for them to drain
                received = bytearray()
                for chunk in response.iter_bytes():
                    received += chunk
                    time.sleep(0.001)
            assert hashlib.sha256(received).digest() == hashlib.sha256(sent).digest()
            with http.stream("GET", "/grouped/") as response:
                next(response.iter_raw())  # hang up with most of the body unsent
            assert http.get("/grouped/", params="length").content == sent  # uvicorn's framing
            assert http.get("/pieces").content == sent
            assert http.get("/many/").content == b"".join(SMALL)
    finally:
        server.stop()


def _exchange(url: str, request: bytes) -> tuple[bytes, bytes]:
    """(what arrived within 0.2 s, everything until the server closed the connection)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        sock.settimeout(0.2)
        try:
            early = sock.recv(65536)
        except TimeoutError:
            early = b""
        sock.settimeout(10)
        whole = early
        while chunk := sock.recv(65536):
            whole += chunk
    return early, whole


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_response_of_known_length_sends_its_head_with_its_body(method: str) -> None:
    server = serve_in_thread(_app())
    try:
        request = f"{method} /late/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        early, whole = _exchange(server.url, request.encode())
        assert early == b""  # the head waited for the body (which came 0.4 s later)
        head, _, body = whole.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"x-late: yes" in head
        assert b"content-length: 5" in head
        assert body == (b"" if method == "HEAD" else b"hello")  # then the connection closed
    finally:
        server.stop()


def test_a_server_that_cannot_listen_is_refused_at_once_not_after_the_timeout() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # The thread's end says so (not the timeout's message): no polling to the timeout.
        with pytest.raises(Unavailable, match="stopped before it listened"):
            serve_in_thread(_app(), port=taken.getsockname()[1], timeout=30)


class _Senders(ThreadPoolExecutor):
    """One sender thread, held by `gate` until the test lets it go; says when a send waits."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="test-send")
        self.gate, self.queued = threading.Event(), asyncio.Event()
        super().submit(self.gate.wait)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        job = super().submit(fn, *args, **kwargs)
        self.queued.set()  # submit runs on the server's loop
        return job


def test_an_answer_that_fails_while_its_pieces_wait_to_be_sent_closes_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send cancelled before a sender thread took it up (the answer failed meanwhile) still
    lets go of the socket: the client sees the connection cut at once, not at its timeout."""
    senders = _Senders()
    monkeypatch.setattr(http_protocol, "_senders", senders)

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        body = {"type": "http.response.body", "body": b"", "more_body": True}
        sending = asyncio.ensure_future(send({**body, MANY: [memoryview(PIECES[3])]}))
        await senders.queued.wait()
        sending.cancel()
        with suppress(asyncio.CancelledError):
            await sending
        raise RuntimeError("the scan broke")

    app = _app()
    app.mount("/failing", failing)
    server = serve_in_thread(app)
    try:
        # The read timeout bounds the wait: a socket held open past the failure times out.
        with httpx.Client(base_url=server.url, timeout=30) as http:
            with pytest.raises(httpx.RemoteProtocolError), http.stream("GET", "/failing/") as r:
                for _ in r.iter_raw():
                    pass
            senders.gate.set()
            assert http.get("/grouped/").content == b"".join(PIECES)  # still serving
    finally:
        senders.gate.set()
        server.stop()
        senders.shutdown()
