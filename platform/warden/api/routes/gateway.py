"""POST /v1/datasets/{name}/read: a governed read, streamed as Arrow IPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from warden.api.deps import get_state
from warden.api.edge import report_unauthenticated
from warden.api.openapi import json_body
from warden.api.read_threads import ReadThreads
from warden.core.http_protocol import PIECES
from warden.db.generation import CacheAt, Stamp, read_stamp_of
from warden.db.session import unit_of_work
from warden.db.stamp_feed import StampFeed
from warden.errors import Unauthenticated
from warden.gateway.arrow import ArrowStream
from warden.gateway.schemas import ReadRequest
from warden.gateway.service import ARROW_LAYOUT_HEADER, ARROW_STREAM, ReadResult, governed_read
from warden.gateway.stream import Chunk, LiveStream
from warden.identity.caller import SOCKET_SCOPE
from warden.identity.service import Caller, TokenRow, authenticate

router = APIRouter(prefix="/v1/datasets", tags=["gateway"])
SMALL_BODY = 1 << 20  # below this, one write beats a thread hop per streamed chunk
# A live stream's next chunk is made while one is sent, then waits for it (a rendezvous):
# at most two chunks are in memory here, and stream.HASH_BEHIND + 1 handed ones in hashing.
MADE_AHEAD = 0
# A read's one hop to a worker thread goes through threads of its own (api/read_threads.py):
# anyio's (a capacity limiter, a checkpoint, its own queue) cost 40-46 us of CPU per hop against
# 12-20 us for asyncio's executor, measured with 16 concurrent hops on uvloop, and that executor
# more than these. As many threads as anyio's default limiter gave every route.
READ_THREADS = 40
_readers = ReadThreads(READ_THREADS, "warden-read")
T = TypeVar("T")


@router.post(
    "/{name:path}/read",
    response_class=StreamingResponse,
    responses={200: {"content": {ARROW_STREAM: {}}}},
    openapi_extra=json_body(ReadRequest),  # the route parses its raw body itself
    summary="Read a dataset through policy; every attempt is audited",
)
async def read_dataset(name: str, request: Request) -> Response:
    raw = await request.body()
    # With several server processes on PostgreSQL the stamp is read on the loop, shared by the
    # reads waiting for it (db/stamp_feed.py); None: the read's thread reads it.
    feed: StampFeed | None = getattr(request.app.state, "stamp_feed", None)
    stamp = await feed.stamp() if feed is not None else None
    result, small = await _in_reader(_read, request, name, raw, stamp)
    if small is not None:
        return Response(small, media_type=ARROW_STREAM, headers=result.headers)
    if isinstance(result.body, LiveStream):
        return _LiveResponse(result.body, headers=result.headers)
    return StreamingResponse(_pieces(result.body), media_type=ARROW_STREAM, headers=result.headers)


async def _in_reader(fn: Callable[..., T], *args: object) -> T:
    # The request's context (its spans) goes along, as run_in_threadpool's did.
    return await _readers.run(fn, *args)


async def _pieces(body: ArrowStream) -> AsyncIterator[memoryview]:
    # The stream is already made (it was measured for the audit): no thread hop per piece.
    for piece in body:
        yield piece


class _LiveResponse(Response):
    """Sends a live stream batch by batch (the transport's back-pressure paces the scan) and
    records its completion whatever ends it: the last byte, the client going away (seen on
    `receive`, since a server may drop writes to a closed connection silently), or an error."""

    media_type = ARROW_STREAM

    def __init__(self, stream: LiveStream, headers: dict[str, str]) -> None:
        # not Response.__init__: it would declare the length of an empty body
        self.status_code = 200
        self.background = None
        self.stream = stream
        self.sent_all = False  # every byte of the stream handed to a live connection
        self.gone = False  # the server told us the client went away
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason: str | None = "the client went away"
        complete = False
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    self.gone = True
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._send_all(send, whole=PIECES in scope.get("extensions", {}))
                group.cancel_scope.cancel()
        except Exception as exc:  # the task group wraps what its tasks raised
            cause = _unwrap(exc)
            if not isinstance(cause, OSError):  # an OSError: the client went away mid-write
                reason = f"the stream failed: {type(cause).__name__}"
                raise
        finally:
            # Complete once the last byte of the stream was handed over, even when the client
            # then hangs up before the empty closing chunk (the Arrow stream ends with its own
            # end marker, so a reader may close as soon as it has seen it).
            if self.sent_all:
                complete, reason = True, None
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self.stream.finish, complete=complete, reason=reason)

    async def _send_all(self, send: Send, *, whole: bool) -> None:
        """`whole`: the server takes a chunk's pieces in one message (core/http_protocol.py);
        otherwise they go one message each."""
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        # A pipeline of three: a worker thread makes the next chunk (scan, masks, Arrow)
        # while this one is sent and, in the stream's own thread, the ones before it are
        # hashed (see MADE_AHEAD and stream.HASH_BEHIND).
        made, ready = anyio.create_memory_object_stream[Chunk](MADE_AHEAD)
        async with anyio.create_task_group() as group:
            group.start_soon(self._make, made)
            async with ready:
                async for chunk in ready:
                    # counted before its bytes start to go out: a chunk the client's going
                    # away cuts off was handed over all the same
                    self.stream.handed(chunk)
                    if whole:
                        body = {"type": "http.response.body", "body": b"", "more_body": True}
                        await send({**body, PIECES: chunk.pieces})
                    for piece in () if whole else chunk.pieces:
                        await send({"type": "http.response.body", "body": piece, "more_body": True})
                    if chunk.last:
                        # A server drops writes to a closed connection silently (uvicorn does):
                        # yield once, so a disconnect it has already seen reaches `watch`
                        # before the stream is taken as delivered.
                        await anyio.lowlevel.checkpoint()
                        self.sent_all = not self.gone
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _make(self, made: MemoryObjectSendStream[Chunk]) -> None:
        async with made:
            while (chunk := await run_in_threadpool(self.stream.next_chunk)) is not None:
                try:
                    await made.send(chunk)
                except anyio.BrokenResourceError:  # the sending stopped, and raises why
                    return


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _read(
    request: Request, name: str, raw: bytes, stamp: Stamp | None
) -> tuple[ReadResult, bytes | None]:
    """Authenticate and read in one worker-thread hop; small answers go out in one piece.
    One statement reads the policy version and the change generation (`stamp`, when the loop
    read it already); the token, the dataset
    and the mask keys come from this process's caches unless something changed since they were
    filled (then they are read on the session). A revocation, a disable or a new
    dataset version, committed by any process, holds from the next read everywhere."""
    state = get_state(request)
    views = request.headers.get(ARROW_LAYOUT_HEADER, "").strip().lower() == "view"
    with unit_of_work(state.sessions) as db:
        stamp = stamp or read_stamp_of(db)
        caller = _caller_or_audit(request, name, db, state.tokens.at(stamp.generation))
        result = governed_read(state, caller, name, raw, views=views, session=db, stamp=stamp)
    body = result.body
    small = b"".join(body) if isinstance(body, ArrowStream) and body.size <= SMALL_BODY else None
    return result, small


def _caller_or_audit(
    request: Request, name: str, db: Session, tokens: CacheAt[str, TokenRow]
) -> Caller:
    """Authenticate; a read attempt with a bad token is still audited, as 'anonymous'."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not secret:
            raise Unauthenticated("missing bearer token")
        socket_of = request.scope.get(SOCKET_SCOPE)
        return authenticate(db, secret.strip(), cached=tokens, socket_of=socket_of)
    except Unauthenticated as exc:
        # Audited by the edge: one by one, or folded into a counted record in a flood.
        report_unauthenticated(request, exc, action="dataset.read", dataset=name)
        raise
