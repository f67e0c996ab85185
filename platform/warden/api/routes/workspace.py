"""/v1/workspaces: create, list, show, upload and download (tar), share, delete."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Annotated

import anyio.from_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from warden.api.deps import CurrentCaller, get_caller, get_state
from warden.db.session import unit_of_work
from warden.errors import PayloadTooLarge
from warden.workspace import service
from warden.workspace.models import Workspace
from warden.workspace.schemas import WorkspaceCreate, WorkspaceOut, WorkspaceShare

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"])
TAR = "application/x-tar"
BINARY = "application/octet-stream"  # a tar archive; any content type is taken
Owner = Annotated[
    str | None, Query(max_length=64, description="Whose workspace (default: the caller's own)")
]


def _ref(name: str, owner: str | None) -> str:
    return f"{owner}/{name}" if owner else name


@router.post("", status_code=201, response_model=WorkspaceOut, summary="Create a workspace")
def create(body: WorkspaceCreate, caller: CurrentCaller, request: Request) -> WorkspaceOut:
    return WorkspaceOut.of(service.create(get_state(request), caller, body.name))


@router.get("", summary="Your workspaces and those shared in your tenant (all=true: admins)")
def list_(
    caller: CurrentCaller,
    request: Request,
    all: Annotated[bool, Query()] = False,  # noqa: A002 - the query parameter's name
) -> dict[str, list[WorkspaceOut]]:
    rows = service.list_workspaces(get_state(request), caller, everyone=all)
    return {"workspaces": [WorkspaceOut.of(r) for r in rows]}


@router.get("/{name}", response_model=WorkspaceOut, summary="One workspace")
def show(name: str, caller: CurrentCaller, request: Request, owner: Owner = None) -> WorkspaceOut:
    return WorkspaceOut.of(service.get(get_state(request), caller, _ref(name, owner)))


@router.post("/{name}/share", response_model=WorkspaceOut, summary="Share with the tenant, or not")
def share(name: str, body: WorkspaceShare, caller: CurrentCaller, request: Request) -> WorkspaceOut:
    return WorkspaceOut.of(service.share(get_state(request), caller, name, body.shared))


@router.delete("/{name}", status_code=204, summary="Delete a workspace and its files")
def delete(name: str, caller: CurrentCaller, request: Request, owner: Owner = None) -> Response:
    service.delete(get_state(request), caller, _ref(name, owner))
    return Response(status_code=204)


@router.put(
    "/{name}/archive",
    response_model=WorkspaceOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {BINARY: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    summary="Replace the workspace's files with a tar archive (checked; refused as a whole)",
)
async def upload(name: str, request: Request) -> WorkspaceOut:
    body = _Body(request.stream().__aiter__(), get_state(request).settings.workspace)
    row = await run_in_threadpool(_upload, request, name, body)
    return WorkspaceOut.of(row)


def _upload(request: Request, name: str, body: io.RawIOBase) -> Workspace:
    state = get_state(request)
    with unit_of_work(state.sessions) as db:
        caller = get_caller(request, db)
    return service.upload(state, caller, name, io.BufferedReader(body, 1 << 20))


class _Body(io.RawIOBase):
    """The request body as a blocking file for the worker thread, pulled chunk by chunk from
    the event loop (streamed: never held whole), and cut off past the upload cap."""

    def __init__(self, chunks: AsyncIterator[bytes], settings: object) -> None:
        self.chunks = chunks
        self.limit = settings.max_archive_bytes  # type: ignore[attr-defined]
        self.seen = 0
        self.pending = b""
        self.ended = False

    async def _next(self) -> bytes:
        return await self.chunks.__anext__()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending and not self.ended:
            try:
                self.pending = anyio.from_thread.run(self._next)
            except StopAsyncIteration:
                self.ended = True
            self.seen += len(self.pending)
            if self.seen > self.limit:
                raise PayloadTooLarge(f"the archive is over {self.limit >> 20} MiB")
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


@router.get(
    "/{name}/archive",
    response_class=StreamingResponse,
    responses={200: {"content": {TAR: {}}}},
    summary="The workspace's files as a tar archive (audited before the first byte)",
)
def download(
    name: str, caller: CurrentCaller, request: Request, owner: Owner = None
) -> StreamingResponse:
    row, chunks = service.download(get_state(request), caller, _ref(name, owner))
    disposition = f'attachment; filename="{row.name}.tar"'
    return StreamingResponse(chunks, media_type=TAR, headers={"content-disposition": disposition})
