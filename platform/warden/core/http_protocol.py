"""uvicorn's HTTP/1.1 protocol (httptools), with a streamed body's large pieces framed in place.

A response without a length (a live governed stream) goes out in HTTP chunks; uvicorn frames
each piece by joining its size line, the piece and a CRLF into a new bytes object: a copy of
every byte sent (10M rows: 720 MB, about 5% of the API's CPU). Here a large piece goes to the
transport beside its framing (`writelines`: uvloop writes the three with one writev and keeps
a reference, not a copy, of what the socket has not taken yet). Everything else (the head,
small pieces, the last one, flow control's bookkeeping) is uvicorn's own code.

A response may also hand several pieces in one message (the ASGI scope's extension `PIECES`:
`{"type": "http.response.body", "body": b"", "more_body": True, PIECES: [buffers]}`), sent as
one HTTP chunk by one `writelines`, the send returning once the transport took them: a
streamed read's batch is ~17 buffers, and each ASGI send through the middleware, with the
flow-control wait a 1-2 MB write set off, cost the event loop a round trip per buffer.
On a plain socket (no TLS) whose transport holds nothing unsent, those pieces are written by a
thread of `_senders` instead (`os.writev`, `poll` while the socket is full), and a client gone
meanwhile raises OSError from the send: uvloop makes its writes holding the GIL, so for the
kernel's copy of every byte the threads making and hashing the next chunks could not run
Python (720 MiB hashed in a thread while sent, `tests/benchmarks/bench_send_beside_hash.py`:
0.51 -> 0.46 s at the median, lower in 18 of 20 rounds at load 4; less on a busier machine).

A response of known length (a `content-length` header: a small governed read, any JSON answer)
goes out head and body in one write: uvicorn's own framing of its head is kept until its first
body message, and both reach the socket together (one send, and one wake-up of the client,
instead of two).
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from warden.core.threads import name_this_thread

# Below this, a copy costs less than a writev of three buffers.
FRAME_IN_PLACE_FROM = 64 * 1024
# The scope's extension (and the body message's key) for a body given as several buffers.
PIECES = "warden.http.response.pieces"
# Threads writing pieces to sockets, each busy while its client reads one chunk (as many as
# the routes' worker threads, so slow readers do not hold up the others' sends).
SEND_THREADS = 40
_senders = ThreadPoolExecutor(
    SEND_THREADS, "warden-send", initializer=name_this_thread, initargs=("warden-send",)
)
_WAIT_MS = 200  # how often a write waiting on a full socket looks whether the client left
# At most this many buffers per writev (the kernel refuses more: IOV_MAX, 1024 on Linux).
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


class _Cycle(RequestResponseCycle):
    held_head: bytes | None = None  # a response's head, written with its body's first bytes

    async def send(self, message: ASGISendEvent) -> None:
        fields = cast(dict[str, Any], message)
        pieces: Sequence[bytes | memoryview] | None = fields.get(PIECES)
        body: bytes | memoryview = fields.get("body", b"")
        if (
            fields["type"] == "http.response.body"
            and fields.get("more_body", False)
            and (pieces is not None or len(body) >= FRAME_IN_PLACE_FROM)
            and self.chunked_encoding
            and self.response_started
            and not self.response_complete
            and self.scope["method"] != "HEAD"
        ):
            # uvicorn's own order: wait while the transport is paused, drop once disconnected
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                return
            parts = [p for p in (body, *(pieces or ())) if len(p)]
            size = sum(len(p) for p in parts)
            framed = [b"%x\r\n" % size, *parts, b"\r\n"]
            fd = self._plain_fd() if pieces is not None and size else None
            if fd is not None:
                stop = threading.Event()
                gone = lambda: stop.is_set() or self.disconnected  # noqa: E731
                job = _send_off_loop(os.dup(fd), framed, gone)
                try:
                    await asyncio.wrap_future(job)
                except asyncio.CancelledError:
                    stop.set()  # the thread stops before its next write
                    raise
                return
            if size:
                self.transport.writelines(framed)  # type: ignore[arg-type]
            if pieces is not None and self.flow.write_paused and not self.disconnected:
                # several MB went to the transport at once: hold the sender until they left,
                # so the pieces a caller makes next wait beside these, not also behind them
                await self.flow.drain()
            return
        if pieces is not None:  # framed by uvicorn (the head not sent, HEAD, a length): joined
            message = cast(ASGISendEvent, {**fields, "body": b"".join([body, *pieces])})
        if fields["type"] == "http.response.start" and _declares_length(fields):
            # A response of known length: its head waits for the body's first bytes and both
            # go to the socket in one write (a small answer: one send instead of two).
            self.held_head = b"".join(await self._captured(message))
            return
        if self.held_head is None or fields["type"] != "http.response.body":
            await super().send(message)
            return
        head, self.held_head = self.held_head, None
        capture = _Capture(self.transport)
        written = await self._captured(message, capture)
        if not self.disconnected:
            if sum(len(b) for b in written) < FRAME_IN_PLACE_FROM:
                capture.real.write(b"".join([head, *written]))
            else:
                capture.real.writelines([head, *written])
        if capture.closed:  # uvicorn closed the connection after this, the last body
            capture.real.close()

    async def _captured(
        self, message: ASGISendEvent, capture: _Capture | None = None
    ) -> list[bytes]:
        """What uvicorn's own send of `message` writes, kept instead of written."""
        capture = capture or _Capture(self.transport)
        self.transport = capture  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = capture.real
        return capture.writes

    def _plain_fd(self) -> int | None:
        """The socket's descriptor when bytes may bypass the transport: not TLS, nothing
        queued in the transport (the order of the bytes), the connection still up."""
        transport = self.transport
        if transport.get_extra_info("ssl_object") is not None or transport.is_closing():
            return None
        sock = transport.get_extra_info("socket")
        if sock is None or transport.get_write_buffer_size():
            return None
        return int(sock.fileno())


def _declares_length(start: dict[str, Any]) -> bool:
    return any(name.lower() == b"content-length" for name, _ in start.get("headers", ()))


class _Capture:
    """Stands in for the transport while uvicorn frames a message: keeps what it writes and
    whether it closed; anything else goes to the real transport."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        if data:
            self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _send_off_loop(
    fd: int, parts: list[bytes | memoryview], gone: Callable[[], bool]
) -> Future[None]:
    """`_write_all` in a sender thread; `fd` (a duplicate of the connection's: never a number
    the loop may have closed and given to another connection) is closed once the job is done
    or was cancelled before a thread took it up (the answer failed meanwhile): a duplicate
    left open keeps the connection up after uvicorn closed it, the client waiting for its end."""
    try:
        job = _senders.submit(_write_all, fd, parts, gone)
    except BaseException:
        os.close(fd)
        raise
    job.add_done_callback(lambda _: os.close(fd))
    return job


def _write_all(fd: int, parts: list[bytes | memoryview], gone: Callable[[], bool]) -> None:
    """Write every byte of `parts` to the non-blocking socket `fd`, in order; `os.writev` and
    `poll` both let go of the GIL. An OSError: the client went away, as the route takes it."""
    views = [memoryview(p).cast("B") for p in parts]
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while views:
        if gone():  # cancelled, or uvicorn closed the connection: stop writing behind it
            raise ConnectionAbortedError("the client went away")
        try:
            written = os.writev(fd, views[:_IOV_MAX])
        except BlockingIOError:
            written = 0
        while written:
            if written < len(views[0]):
                views[0], written = views[0][written:], 0
            else:
                written -= len(views.pop(0))
        while views and not poller.poll(_WAIT_MS):
            if gone():
                raise ConnectionAbortedError("the client went away")


class HttpProtocol(HttpToolsProtocol):
    """Pass as uvicorn's `http`: each request's cycle sends as `_Cycle` does."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # a request just parsed, not an upgrade
            self.cycle.__class__ = _Cycle
            self.scope.setdefault("extensions", {})[PIECES] = {}  # type: ignore[typeddict-item]
