"""Console pages for ML engineers: their jobs (state, progress, log tail) and the model
registry (metrics, reports with their plots, lineage back to the data).

They call the /v1/jobs and /v1/models route functions and the jobs service, so what a person
may see is exactly what the API shows them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy.orm import Session

from warden.api.console.web import PREFIX, ConsoleRoute, Who, render
from warden.api.routes import jobs as jobs_api
from warden.api.routes import registry as registry_api
from warden.db.session import unit_of_work
from warden.errors import AuditUnavailable
from warden.jobs import service as jobs
from warden.jobs.models import END_STATES
from warden.registry import service as registry
from warden.registry.models import Model

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

TAIL_BYTES = 8 * 1024
INLINE_REPORT_BYTES = 64 * 1024


def _tail(who: Who, job_id: str) -> tuple[str, str]:
    """The last TAIL_BYTES of a job's log, and its last line (the workload's progress)."""
    path = jobs.log_path(who.state, job_id)
    if not path.exists():
        return "", ""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - TAIL_BYTES))
        text = fh.read().decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return text, lines[-1] if lines else ""


@router.get("/jobs")
def job_list(who: Who, state: Annotated[str, Query(max_length=16)] = "") -> HTMLResponse:
    listed = jobs_api.list_(
        who.caller, who.state, all=False, job_state=state or None, kind=None, limit=100
    )
    return render(who.request, "jobs.html", who, jobs=listed["jobs"], state_filter=state)


@router.get("/jobs/{job_id}")
def job(job_id: str, who: Who) -> HTMLResponse:
    shown = jobs_api.show(job_id, who.caller, who.state)
    row = jobs.get_visible(who.state, who.caller, job_id)
    log, progress = "(the workload's output: not yours to read)", ""
    if jobs.may_see_output(who.state, who.caller, row):
        jobs.log_shown(who.state, who.caller, row)  # as the API's log: audited before shown
        log, progress = _tail(who, shown.id)
    running = shown.state not in END_STATES
    return render(
        who.request, "job.html", who, job=shown, log=log, progress=progress, running=running
    )


@router.get("/models")
def model_list(who: Who) -> HTMLResponse:
    with unit_of_work(who.state.sessions) as db:
        listed = registry_api.list_(who.caller, db, who.state, name=None, limit=100)
    return render(who.request, "models.html", who, models=listed["models"])


@router.get("/models/{ref}")
def model(ref: str, who: Who) -> HTMLResponse:
    """A model's metrics, its reports (Markdown and JSON inline, plots as images), lineage."""
    with unit_of_work(who.state.sessions) as db:
        lineage = registry_api.lineage(ref, who.caller, db, who.state)  # decides
        found = registry.resolve(db, who.caller.tenant, ref[:80])
        reports = [_report_entry(who, db, found, name) for name in lineage.model.reports]
    return render(who.request, "model.html", who, lineage=lineage, reports=reports)


def _report_entry(who: Who, db: Session, found: Model, name: str) -> dict[str, Any]:
    """A report as the model page shows it: a plot by its URL (model_report, audited there),
    text inline, audited first as the API's download is."""
    entry: dict[str, Any] = {"name": name, "image": name.endswith(".png"), "text": None}
    if not entry["image"]:
        try:
            path = registry.report_path(found, name, who.state.settings.data_dir)
            registry_api.report_shown(who.state, db, who.caller, found, name)
            entry["text"] = path.read_bytes()[:INLINE_REPORT_BYTES].decode("utf-8", "replace")
        except AuditUnavailable:
            raise  # nothing shown unaudited: the page fails closed (503), as the API does
        except Exception as exc:  # noqa: BLE001 - shown as the report's note
            entry["text"] = f"(cannot show this report: {exc})"
    return entry


@router.get("/models/{ref}/reports/{name:path}")
def model_report(ref: str, name: str, who: Who) -> FileResponse:
    with unit_of_work(who.state.sessions) as db:
        return registry_api.report(ref, name, who.caller, db, who.state)
