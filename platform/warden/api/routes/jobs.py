"""/v1/jobs: create (a policy decision first), list, show, logs (follow), cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from warden.api.deps import CurrentCaller, Process, State, get_process
from warden.core.platform import Platform
from warden.identity.service import Caller
from warden.jobs import service
from warden.jobs.models import STATES, Job
from warden.jobs.schemas import JobCreate, JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=201, response_model=JobOut, summary="Queue a job")
def create(body: JobCreate, caller: CurrentCaller, state: State, process: Process) -> JobOut:
    job = service.create(state, caller, body)
    worker = process.jobs
    if worker is not None:
        worker.wake()
    return JobOut.of(job)


@router.get("", summary="Your jobs (everyone's in the tenant with all=true, for admins)")
def list_(
    caller: CurrentCaller,
    state: State,
    all: Annotated[bool, Query()] = False,  # noqa: A002 - the query parameter's name
    job_state: Annotated[str | None, Query(alias="state", max_length=16)] = None,
    kind: Annotated[str | None, Query(max_length=8)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[JobOut]]:
    if job_state is not None and job_state not in STATES:
        job_state = "none"
    rows = service.list_jobs(
        state, caller, everyone=all, job_state=job_state, kind=kind, limit=limit
    )
    # the log's right is decided only for the caller's own jobs (no one else's is ever shown)
    return {"jobs": [JobOut.shown(r, with_output=_own_output(state, caller, r)) for r in rows]}


def _own_output(state: Platform, caller: Caller, job: Job) -> bool:
    """A listing shows a job's last line to its launcher, while their rights still cover it
    (decided only where there is a line to show: most jobs have none)."""
    return (
        bool(job.last_line)
        and job.launcher == caller.name
        and service.may_see_output(state, caller, job)
    )


@router.get("/{job_id}", response_model=JobOut, summary="One job")
def show(job_id: str, caller: CurrentCaller, state: State) -> JobOut:
    job = service.get_visible(state, caller, job_id)
    return JobOut.shown(job, with_output=service.may_see_output(state, caller, job))


@router.get("/{job_id}/logs", summary="Its log: worker notes and workload output; follow streams")
def logs(
    job_id: str,
    caller: CurrentCaller,
    state: State,
    follow: Annotated[bool, Query()] = False,
) -> StreamingResponse:
    chunks = service.open_log(state, caller, job_id, follow)  # audited before the first byte
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")


@router.post("/{job_id}/cancel", response_model=JobOut, summary="Cancel a job")
def cancel(job_id: str, caller: CurrentCaller, state: State, request: Request) -> JobOut:
    job = service.cancel(state, caller, job_id, get_process(request).sandboxes)
    return JobOut.shown(job, with_output=_own_output(state, caller, job))
