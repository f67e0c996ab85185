"""/v1/models: the registry (list, show, lineage, reports). People read a model, its metrics
and its reports only when they may use it: the same decision as serving it, on every
dataset of its lineage (`registry.serving.authorize`); to anyone else a model answers exactly
as a missing one. Showing a report is audited (`model.report`) before its first byte: it
carries what was computed from that data; so is showing a model's metrics (`model.show` for
one model and its lineage, `model.list` for a listing: the models shown). Jobs cannot read
the registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from warden.api.deps import CurrentCaller, DbSession, State
from warden.audit.outcomes import by, refusals_audited
from warden.audit.service import record
from warden.core.platform import Platform
from warden.errors import Forbidden
from warden.identity.service import Caller
from warden.registry import service
from warden.registry.models import Model
from warden.registry.schemas import LineageOut, ModelOut
from warden.registry.service import lineage_datasets
from warden.registry.serving import authorize, usable_models

router = APIRouter(prefix="/v1/models", tags=["models"])
# Documents the form service.parse_ref accepts (anything else is 422); validation stays there.
Ref = Annotated[str, Path(json_schema_extra={"pattern": service.REF_RE.pattern})]


def _people_only(caller: Caller) -> None:
    if caller.kind == "job":
        raise Forbidden("jobs cannot read the model registry")


def _readable(state: Platform, db: DbSession, caller: Caller, ref: str) -> Model:
    """The model `ref`, if the caller may use it (`serving.authorize`: else as if it did not
    exist, word for word, or 403 to its launcher; a tampered lineage 503)."""
    _people_only(caller)
    model = service.resolve(db, caller.tenant, ref[:80])
    authorize(state, db, caller, model, ref)
    return model


REPORT_ACTION = "model.report"


def report_shown(state: Platform, db: DbSession, caller: Caller, model: Model, name: str) -> None:
    """Audit that `caller` is shown the model's report `name`: durably, before its first
    byte (AuditUnavailable, 503, if it cannot be)."""
    shown = {
        "model": model.ref,
        "model_id": model.id,
        "report": name,
        "job": model.job_id,
        "launcher": model.launcher,
        "datasets": list(lineage_datasets(db, model)),
    }
    record(state.sessions, by(caller, REPORT_ACTION, "allow", details=shown))


def metrics_shown(state: Platform, caller: Caller, action: str, models: list[Model]) -> None:
    """Audit that `caller` is shown these models' metrics (computed from their lineage's
    data): durably, before the answer (AuditUnavailable, 503, if it cannot be)."""
    shown = {"models": [m.ref for m in models], "model_ids": [m.id for m in models]}
    record(state.sessions, by(caller, action, "allow", details=shown))


@router.get("", summary="Registered models, newest first")
def list_(
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    name: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[ModelOut]]:
    _people_only(caller)
    usable = usable_models(state, db, caller, name, limit)
    metrics_shown(state, caller, "model.list", usable)
    return {"models": [ModelOut.of(m) for m in usable]}


@router.get("/{ref}", response_model=ModelOut, summary="One model: ID, NAME or NAME@VERSION")
def show(ref: Ref, caller: CurrentCaller, db: DbSession, state: State) -> ModelOut:
    with refusals_audited(state.sessions, caller, "model.show", details={"model": ref[:80]}):
        model = _readable(state, db, caller, ref)
    metrics_shown(state, caller, "model.show", [model])
    return ModelOut.of(model)


@router.get("/{ref}/lineage", response_model=LineageOut, summary="A model and its ancestors")
def lineage(ref: Ref, caller: CurrentCaller, db: DbSession, state: State) -> LineageOut:
    with refusals_audited(state.sessions, caller, "model.show", details={"model": ref[:80]}):
        model = _readable(state, db, caller, ref)
    ancestors: list[Model] = []
    seen, frontier = {model.id}, [model]
    while frontier and len(ancestors) < service.MAX_DEPTH:
        parents = [p for m in frontier for p in service.parents_of(db, m) if p.id not in seen]
        seen.update(p.id for p in parents)
        ancestors += parents
        frontier = parents
    metrics_shown(state, caller, "model.show", [model, *ancestors])
    return LineageOut(model=ModelOut.of(model), ancestors=[ModelOut.of(a) for a in ancestors])


@router.get("/{ref}/reports/{name:path}", summary="A report: Markdown, JSON or a plot")
def report(ref: Ref, name: str, caller: CurrentCaller, db: DbSession, state: State) -> FileResponse:
    asked = {"details": {"model": ref[:80], "report": name[:128]}}
    with refusals_audited(state.sessions, caller, REPORT_ACTION, **asked):
        model = _readable(state, db, caller, ref)
        path = service.report_path(model, name[:128], state.settings.data_dir)
    report_shown(state, db, caller, model, name[:128])
    media = {".md": "text/markdown", ".json": "application/json", ".png": "image/png"}
    return FileResponse(path, media_type=media.get(path.suffix, "application/octet-stream"))
