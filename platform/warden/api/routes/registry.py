"""/v1/models: the registry (list, show, lineage). Tenant members read it; jobs cannot."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from warden.api.deps import CurrentCaller, DbSession, State
from warden.errors import Forbidden
from warden.identity.service import Caller
from warden.registry import service
from warden.registry.models import Model
from warden.registry.schemas import LineageOut, ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"])
# Documents the form service.parse_ref accepts (anything else is 422); validation stays there.
Ref = Annotated[str, Path(json_schema_extra={"pattern": service.REF_RE.pattern})]
MAX_DEPTH = 32


def _people_only(caller: Caller) -> None:
    if caller.kind == "job":
        raise Forbidden("jobs cannot read the model registry")


@router.get("", summary="Registered models, newest first")
def list_(
    caller: CurrentCaller,
    db: DbSession,
    name: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[ModelOut]]:
    _people_only(caller)
    return {"models": [ModelOut.of(m) for m in service.list_models(db, caller.tenant, name, limit)]}


@router.get("/{ref}", response_model=ModelOut, summary="One model: ID, NAME or NAME@VERSION")
def show(ref: Ref, caller: CurrentCaller, db: DbSession) -> ModelOut:
    _people_only(caller)
    return ModelOut.of(service.resolve(db, caller.tenant, ref[:80]))


@router.get("/{ref}/lineage", response_model=LineageOut, summary="A model and its ancestors")
def lineage(ref: Ref, caller: CurrentCaller, db: DbSession) -> LineageOut:
    _people_only(caller)
    model = service.resolve(db, caller.tenant, ref[:80])
    ancestors: list[Model] = []
    seen, frontier = {model.id}, [model]
    while frontier and len(ancestors) < MAX_DEPTH:
        parents = [p for m in frontier for p in service.parents_of(db, m) if p.id not in seen]
        seen.update(p.id for p in parents)
        ancestors += parents
        frontier = parents
    return LineageOut(model=ModelOut.of(model), ancestors=[ModelOut.of(a) for a in ancestors])


@router.get("/{ref}/reports/{name:path}", summary="A report: Markdown, JSON or a plot")
def report(ref: Ref, name: str, caller: CurrentCaller, db: DbSession, state: State) -> FileResponse:
    _people_only(caller)
    model = service.resolve(db, caller.tenant, ref[:80])
    path = service.report_path(model, name[:128], state.settings.data_dir)
    media = {".md": "text/markdown", ".json": "application/json", ".png": "image/png"}
    return FileResponse(path, media_type=media.get(path.suffix, "application/octet-stream"))
