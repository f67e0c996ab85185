"""The servers `bench_small_read_floor` compares a small read with, each started as
`floor_apps.main()` (argv: APP PORT WORKERS) under the server `warden serve` runs
(uvicorn, Warden's HTTP protocol, a socket per worker):

- `raw`: a bare ASGI callable (uvicorn and the protocol alone);
- `bare`: a FastAPI app with one endpoint, nothing else;
- `warden`: Warden's own app, with two trivial endpoints innermost of its middleware (where the
  read's fast path sits, so telemetry, the edge and the body caps run as for a read):
  `/bench/noop/N` answers on the event loop; `/bench/hop/N` after a hop to a read thread
  doing nothing; `/bench/stamp/N` after reading the freshness stamp there; `/bench/auth/N`
  after authenticating there, as a read does (the stamp, the cached token); the read itself
  is served as always.

Each answers N zero bytes (the size of a real small read's answer) with the read's row header.
"""

from __future__ import annotations

import os
import sys

import uvicorn
from fastapi import FastAPI, Request, Response
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from warden.api.app import create_app
from warden.api.deps import get_state
from warden.api.primary import WORKERS_ENV
from warden.api.routes.gateway import _caller_or_audit, _in_reader
from warden.cli.serve_workers import PortSharingWorkers
from warden.config import get_settings
from warden.core.http_protocol import HttpProtocol
from warden.db.generation import read_stamp_of
from warden.db.session import unit_of_work

ARROW = "application/vnd.apache.arrow.stream"
ROWS = {"x-warden-rows": "100"}


def _size(path: str) -> int:
    return int(path.rsplit("/", 1)[1]) if path.rsplit("/", 1)[1].isdigit() else 2


async def raw(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    size = _size(scope["path"])
    head = [(b"content-type", ARROW.encode()), (b"content-length", str(size).encode())]
    head.append((b"x-warden-rows", b"100"))
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": bytes(size)})


def raw_app() -> ASGIApp:
    return raw


def bare() -> FastAPI:
    app = FastAPI()

    @app.post("/bench/bare/{size}")
    async def answer(size: int, request: Request) -> Response:
        await request.body()
        return Response(bytes(size), media_type=ARROW, headers=ROWS)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class Trivial:
    """/bench/{noop,hop,stamp,auth}/N; everything else goes on down the stack."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/bench/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        await request.body()
        step = STEPS.get(path.split("/")[2])
        if step is not None:
            await _in_reader(step, request)
        await Response(bytes(_size(path)), media_type=ARROW, headers=ROWS)(scope, receive, send)


def _hop(request: Request) -> None:
    """Nothing: the thread hop alone."""


def _stamp(request: Request) -> None:
    with unit_of_work(get_state(request).sessions) as db:
        read_stamp_of(db)


def _authenticate(request: Request) -> None:
    state = get_state(request)
    with unit_of_work(state.sessions) as db:
        stamp = read_stamp_of(db)
        _caller_or_audit(request, "engagements", db, state.tokens.at(stamp.generation))


STEPS = {"hop": _hop, "stamp": _stamp, "auth": _authenticate}


def warden() -> FastAPI:
    app = create_app(get_settings())
    # Right above the read's fast path (which must stay right above the exception handlers).
    app.user_middleware.insert(len(app.user_middleware) - 1, Middleware(Trivial))
    return app


def main() -> None:
    name, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.environ[WORKERS_ENV] = str(workers)
    config = uvicorn.Config(
        f"tests.benchmarks.floor_apps:{name}",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level=os.environ.get("FLOOR_LOG_LEVEL", "warning"),
        workers=workers,
        http=HttpProtocol,
    )
    if workers == 1:
        uvicorn.Server(config).run()
    else:
        PortSharingWorkers(config).run()


if __name__ == "__main__":
    main()
