"""POST /v1/datasets/{name}/read: a governed read, streamed as Arrow IPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from warden.api.deps import get_state
from warden.api.edge import report_unauthenticated
from warden.api.openapi import json_body
from warden.db.session import unit_of_work
from warden.errors import Unauthenticated
from warden.gateway.arrow import ArrowStream
from warden.gateway.schemas import ReadRequest
from warden.gateway.service import ARROW_LAYOUT_HEADER, ARROW_STREAM, ReadResult, governed_read
from warden.identity.service import Caller, authenticate

router = APIRouter(prefix="/v1/datasets", tags=["gateway"])
SMALL_BODY = 1 << 20  # below this, one write beats a thread hop per streamed chunk


@router.post(
    "/{name:path}/read",
    response_class=StreamingResponse,
    responses={200: {"content": {ARROW_STREAM: {}}}},
    openapi_extra=json_body(ReadRequest),  # the route parses its raw body itself
    summary="Read a dataset through policy; every attempt is audited",
)
async def read_dataset(name: str, request: Request) -> Response:
    raw = await request.body()
    result, small = await run_in_threadpool(_read, request, name, raw)
    if small is not None:
        return Response(small, media_type=ARROW_STREAM, headers=result.headers)
    return StreamingResponse(_pieces(result.body), media_type=ARROW_STREAM, headers=result.headers)


async def _pieces(body: ArrowStream) -> AsyncIterator[memoryview]:
    # The stream is already made (it was measured for the audit): no thread hop per piece.
    for piece in body:
        yield piece


def _read(request: Request, name: str, raw: bytes) -> tuple[ReadResult, bytes | None]:
    """Authenticate and read in one worker-thread hop; small answers go out in one piece.
    The token, the dataset and the policy version are read in one transaction on one pooled
    connection (three statements); the audit append takes its own, and nothing is cached, so
    a revocation, a disable or a new dataset version holds from the next read in any process."""
    state = get_state(request)
    views = request.headers.get(ARROW_LAYOUT_HEADER, "").strip().lower() == "view"
    with unit_of_work(state.sessions) as db:
        caller = _caller_or_audit(request, name, db)
        result = governed_read(state, caller, name, raw, views=views, session=db)
    small = b"".join(result.body) if result.body.size <= SMALL_BODY else None
    return result, small


def _caller_or_audit(request: Request, name: str, db: Session) -> Caller:
    """Authenticate; a read attempt with a bad token is still audited, as 'anonymous'."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not secret:
            raise Unauthenticated("missing bearer token")
        return authenticate(db, secret.strip())
    except Unauthenticated as exc:
        # Audited by the edge: one by one, or folded into a counted record in a flood.
        report_unauthenticated(request, exc, action="dataset.read", dataset=name)
        raise
