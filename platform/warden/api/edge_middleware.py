"""The edge's ASGI side (see api/edge.py for what is counted and how): the outermost
middleware admits a request or answers it 429, caps header sizes, audits the refusals made
below it (before its answer goes out, so a refusal that cannot be audited is a 503), and at
the lifespan's end writes every open window's count."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warden.api.edge import (
    SCOPE_COUNTED,
    Edge,
    Refusal,
    Source,
    bearer_secret,
    log,
    where,
)
from warden.api.errors import error_response
from warden.api.limits import SCOPE_REFUSAL
from warden.errors import AuditUnavailable

if TYPE_CHECKING:
    from warden.config import Settings


# -- the middleware -----------------------------------------------------------------------


class EdgeMiddleware:
    """Outermost: admits or answers 429, caps headers, and audits refusals made below it."""

    def __init__(self, app: ASGIApp, edge: Edge) -> None:
        self.app = app
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        edge = self.edge
        secret = bearer_secret(scope)
        header_bytes = sum(len(k) + len(v) for k, v in scope.get("headers", []))
        if header_bytes > edge.settings.edge_max_header_bytes:
            detail = f"request headers over {edge.settings.edge_max_header_bytes} bytes"
            await self._answer(
                scope,
                receive,
                send,
                Refusal(431, "HeadersTooLarge", detail, *where(scope, self.edge.app)),
                None,
            )
            return
        limited = edge.limited(scope, secret)
        if limited is True and secret is not None:
            limited = await run_in_threadpool(edge.vouch, scope, secret)
        if isinstance(limited, tuple):
            source, retry_after = limited
            detail = f"too many refused requests from this source; retry in {retry_after} s"
            refusal = Refusal(429, "TooManyRequests", detail, *where(scope, edge.app))
            headers = {"Retry-After": str(retry_after)}
            await self._answer(scope, receive, send, refusal, source, headers)
            return
        await self.app(scope, receive, self._watching(scope, receive, send, secret))

    def _watching(self, scope: Scope, receive: Receive, send: Send, secret: str | None) -> Send:
        replaced = False

        async def watch(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                refusal = _refusal_in(scope, message["status"], self.edge.app)
                if refusal is not None:
                    try:
                        await run_in_threadpool(self.edge.report, scope, refusal, secret)
                    except AuditUnavailable as exc:
                        replaced = True
                        response = error_response(503, type(exc).__name__, exc.detail)
                        await response(scope, receive, send)
                        return
            await send(message)

        return watch

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        refusal: Refusal,
        source: Source | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        status, error, detail = refusal.status, refusal.error, refusal.detail
        try:
            secret = None if source is not None or status == 431 else bearer_secret(scope)
            await run_in_threadpool(self.edge.report, scope, refusal, secret, source=source)
        except AuditUnavailable as exc:
            status, error, detail, headers = 503, type(exc).__name__, exc.detail, None
        await error_response(status, error, detail, headers)(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Write the folded counts every `edge_flush_interval_s`, and all of them at shut-down."""
        sweeper: asyncio.Task[None] | None = None

        async def tell(message: Message) -> None:
            nonlocal sweeper
            kind = message["type"]
            interval = self.edge.settings.edge_flush_interval_s
            if kind == "lifespan.startup.complete" and interval > 0:
                sweeper = asyncio.create_task(_every(interval, self._flush))
            if kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                if sweeper is not None:
                    sweeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweeper
                await self._flush(everything=True)
            await send(message)

        await self.app(scope, receive, tell)

    async def _flush(self, *, everything: bool = False) -> None:
        try:
            await run_in_threadpool(lambda: self.edge.flush(everything=everything))
        except Exception:
            log.exception("edge flush failed")


async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        await job()


def _refusal_in(scope: Scope, status: int, app: Any) -> Refusal | None:
    """The refusal an answer from below is, if it is one the edge must count."""
    flagged = scope.get(SCOPE_REFUSAL)
    if flagged is not None:
        error, detail = flagged
    elif status == 404 and "route" not in scope:
        error, detail = "NotFound", "no route serves this path"
    elif status == 405:
        error, detail = "MethodNotAllowed", "the path does not take this method"
    elif status == 401 and not scope.get(SCOPE_COUNTED):
        error, detail = "Unauthenticated", "refused without a record"
    else:
        return None
    return Refusal(status, error, detail, *where(scope, app))


def install_edge(app: Any, settings: Settings) -> None:
    """Wire the edge into an app: outermost middleware, its counters on `app.state.edge`."""
    edge = Edge(app.state.warden, settings, app)
    app.state.edge = edge
    app.add_middleware(EdgeMiddleware, edge=edge)
