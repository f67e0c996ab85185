"""POST /v1/datasets/{name}/read: a governed read, streamed as Arrow IPC."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from warden.api.deps import get_state
from warden.audit.service import AuditRecord, record
from warden.db.session import unit_of_work
from warden.errors import Unauthenticated
from warden.gateway.service import ARROW_STREAM, governed_read
from warden.identity.service import Caller, authenticate

router = APIRouter(prefix="/v1/datasets", tags=["gateway"])


@router.post(
    "/{name:path}/read",
    response_class=StreamingResponse,
    responses={200: {"content": {ARROW_STREAM: {}}}},
    summary="Read a dataset through policy; every attempt is audited",
)
async def read_dataset(name: str, request: Request) -> StreamingResponse:
    state = get_state(request)
    raw = await request.body()
    caller = await run_in_threadpool(_caller_or_audit, request, name)
    result = await run_in_threadpool(governed_read, state, caller, name, raw)

    return StreamingResponse(iter(result.body), media_type=ARROW_STREAM, headers=result.headers)


def _caller_or_audit(request: Request, name: str) -> Caller:
    """Authenticate; a read attempt with a bad token is still audited, as 'anonymous'."""
    state = get_state(request)
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not secret:
            raise Unauthenticated("missing bearer token")
        with unit_of_work(state.sessions) as db:
            return authenticate(db, secret.strip())
    except Unauthenticated as exc:
        record(
            state.sessions,
            AuditRecord(
                action="dataset.read",
                decision="deny",
                actor="anonymous",
                actor_kind="anonymous",
                dataset=name[:64],
                reason=f"Unauthenticated: {exc.detail}",
            ),
        )
        raise
