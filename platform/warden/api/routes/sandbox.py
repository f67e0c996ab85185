"""/v1/sandboxes: launch, list, show, logs (follow), stop, exec."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from warden.api.deps import CurrentCaller, get_process
from warden.db.session import unit_of_work
from warden.errors import Unauthenticated, WardenError
from warden.identity.service import Caller, authenticate
from warden.sandbox import attach, frames, service
from warden.sandbox.models import END_STATUSES, LIVE_STATUSES
from warden.sandbox.profiles import LaunchRequest
from warden.sandbox.schemas import SandboxCreate, SandboxExec, SandboxOut

log = logging.getLogger("warden.sandbox")
router = APIRouter(prefix="/v1/sandboxes", tags=["sandboxes"])
STATUSES = LIVE_STATUSES + END_STATUSES


@router.post("", status_code=201, response_model=SandboxOut, summary="Launch a sandbox")
def create(body: SandboxCreate, caller: CurrentCaller, request: Request) -> SandboxOut:
    runtime = get_process(request).sandboxes
    launch = LaunchRequest(**dict(body))  # the body's fields are the request's
    return SandboxOut.of(service.launch(runtime, caller, launch))


@router.get("", summary="Your sandboxes (everyone's in the tenant with all=true, for admins)")
def list_(
    caller: CurrentCaller,
    request: Request,
    all: Annotated[bool, Query()] = False,  # noqa: A002 - the query parameter's name
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[SandboxOut]]:
    runtime = get_process(request).sandboxes
    rows = service.list_sandboxes(runtime, caller, everyone=all, status=status, limit=limit)
    return {"sandboxes": [SandboxOut.of(r) for r in rows]}


@router.get("/sessions", summary="Session records per sandbox and person: wall, CPU, commands")
def sessions(
    caller: CurrentCaller,
    request: Request,
    sandbox: Annotated[str | None, Query(max_length=12)] = None,
    all: Annotated[bool, Query()] = False,  # noqa: A002 - the query parameter's name
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[dict[str, Any]]]:
    runtime = get_process(request).sandboxes
    rows = service.sessions(runtime, caller, sandbox_id=sandbox, everyone=all, limit=limit)
    return {"sessions": rows}


@router.get("/{sandbox_id}", response_model=SandboxOut, summary="One sandbox")
def show(sandbox_id: str, caller: CurrentCaller, request: Request) -> SandboxOut:
    runtime = get_process(request).sandboxes
    return SandboxOut.of(service.get_visible(runtime, caller, sandbox_id))


@router.get("/{sandbox_id}/logs", summary="Its output (stdout and stderr); follow streams it")
def logs(
    sandbox_id: str,
    caller: CurrentCaller,
    request: Request,
    follow: Annotated[bool, Query()] = False,
) -> StreamingResponse:
    runtime = get_process(request).sandboxes
    chunks = service.logs(runtime, caller, sandbox_id, follow)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")


@router.post("/{sandbox_id}/stop", response_model=SandboxOut, summary="Stop a sandbox")
def stop(sandbox_id: str, caller: CurrentCaller, request: Request) -> SandboxOut:
    runtime = get_process(request).sandboxes
    return SandboxOut.of(service.stop(runtime, caller, sandbox_id))


@router.post(
    "/{sandbox_id}/exec",
    response_class=StreamingResponse,
    responses={200: {"content": {frames.MEDIA_TYPE: {}}}},
    summary="Run a command in a running app-dev sandbox (its launcher or an admin); audited",
)
def exec_(
    sandbox_id: str, body: SandboxExec, caller: CurrentCaller, request: Request
) -> StreamingResponse:
    runtime = get_process(request).sandboxes
    chunks = attach.exec_session(runtime, caller, sandbox_id, body.command)
    return StreamingResponse(chunks, media_type=frames.MEDIA_TYPE)


@router.websocket("/{sandbox_id}/forward/{port}")
async def forward(websocket: WebSocket, sandbox_id: str, port: int) -> None:
    """A TCP port of a running app-dev sandbox, carried over this WebSocket (binary frames
    both ways) for its launcher (or an admin); an audited session with its byte counts."""
    runtime = websocket.app.state.process.sandboxes
    try:
        caller = await run_in_threadpool(_ws_caller, websocket)
        address, session = await run_in_threadpool(
            attach.forward_session, runtime, caller, sandbox_id, port
        )
    except WardenError as exc:
        await websocket.close(code=4000 + exc.status_code, reason=exc.detail[:120])
        return
    await websocket.accept()
    started, sent, received, error = time.monotonic(), 0, 0, None
    try:
        reader, writer = await asyncio.open_connection(address, port)
    except OSError as exc:
        error = f"cannot reach port {port} in the sandbox: {exc}"
        await websocket.close(code=1011, reason=error[:120])
    else:

        async def inbound() -> None:
            nonlocal received
            while True:
                data = await websocket.receive_bytes()
                received += len(data)
                writer.write(data)
                await writer.drain()

        async def outbound() -> None:
            nonlocal sent
            while data := await reader.read(1 << 16):
                sent += len(data)
                await websocket.send_bytes(data)
            await websocket.close()

        pumps = [asyncio.create_task(inbound()), asyncio.create_task(outbound())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            writer.close()
            for task in pumps:
                with contextlib.suppress(
                    asyncio.CancelledError, WebSocketDisconnect, OSError, RuntimeError
                ):
                    await task
    await run_in_threadpool(
        attach.forward_end,
        runtime,
        caller,
        sandbox_id,
        session,
        port,
        sent,
        received,
        time.monotonic() - started,
        error,
    )


def _ws_caller(websocket: WebSocket) -> Caller:
    scheme, _, secret = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise Unauthenticated("missing bearer token")
    with unit_of_work(websocket.app.state.warden.sessions) as db:
        return authenticate(db, secret.strip())
