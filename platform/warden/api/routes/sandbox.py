"""/v1/sandboxes: launch, list, show, logs (follow), stop."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from warden.api.deps import CurrentCaller
from warden.sandbox import service
from warden.sandbox.models import END_STATUSES, LIVE_STATUSES
from warden.sandbox.profiles import LaunchRequest
from warden.sandbox.schemas import SandboxCreate, SandboxOut

log = logging.getLogger("warden.sandbox")
router = APIRouter(prefix="/v1/sandboxes", tags=["sandboxes"])
STATUSES = LIVE_STATUSES + END_STATUSES


@router.post("", status_code=201, response_model=SandboxOut, summary="Launch a sandbox")
def create(body: SandboxCreate, caller: CurrentCaller, request: Request) -> SandboxOut:
    runtime = service.get_runtime(request.app)
    launch = LaunchRequest(
        segment=body.segment,
        command=body.command,
        datasets=body.datasets,
        purpose=body.purpose,
        timeout=body.timeout,
        memory=body.memory,
        cpus=body.cpus,
        env=body.env,
        interactive=body.interactive,
    )
    return SandboxOut.of(service.launch(runtime, caller, launch))


@router.get("", summary="Your sandboxes (everyone's in the tenant with all=true, for admins)")
def list_(
    caller: CurrentCaller,
    request: Request,
    all: Annotated[bool, Query()] = False,  # noqa: A002 - the query parameter's name
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[SandboxOut]]:
    runtime = service.get_runtime(request.app)
    rows = service.list_sandboxes(runtime, caller, everyone=all, status=status, limit=limit)
    return {"sandboxes": [SandboxOut.of(r) for r in rows]}


@router.get("/{sandbox_id}", response_model=SandboxOut, summary="One sandbox")
def show(sandbox_id: str, caller: CurrentCaller, request: Request) -> SandboxOut:
    runtime = service.get_runtime(request.app)
    return SandboxOut.of(service.get_visible(runtime, caller, sandbox_id))


@router.get("/{sandbox_id}/logs", summary="Its output (stdout and stderr); follow streams it")
def logs(
    sandbox_id: str,
    caller: CurrentCaller,
    request: Request,
    follow: Annotated[bool, Query()] = False,
) -> StreamingResponse:
    runtime = service.get_runtime(request.app)
    chunks = service.logs(runtime, caller, sandbox_id, follow)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")


@router.post("/{sandbox_id}/stop", response_model=SandboxOut, summary="Stop a sandbox")
def stop(sandbox_id: str, caller: CurrentCaller, request: Request) -> SandboxOut:
    runtime = service.get_runtime(request.app)
    return SandboxOut.of(service.stop(runtime, caller, sandbox_id))


def install_lifecycle(app: Any) -> None:
    """Start-up: reap what a previous process left behind. Shut-down: stop what this one runs."""

    def startup() -> None:
        try:
            reaped = service.get_runtime(app).reconcile()
        except Exception as exc:  # no engine here: the API still serves reads
            log.warning("sandbox start-up check skipped: %s", exc)
            return
        if reaped:
            log.warning("stopped and recorded %d orphaned sandbox(es): %s", len(reaped), reaped)

    def shutdown() -> None:
        runtime = getattr(app.state, "sandboxes", None)
        if runtime is not None:
            runtime.shutdown()

    app.router.on_startup.append(startup)
    app.router.on_shutdown.append(shutdown)
