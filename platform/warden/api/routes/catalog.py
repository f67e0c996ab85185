"""GET /v1/datasets and /v1/datasets/{name}: only what the caller may see."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from warden.api.deps import CurrentCaller, DbSession, State
from warden.catalog.service import list_names, load_view
from warden.catalog.view import DatasetView
from warden.policy.reads import require_visible, visible

router = APIRouter(prefix="/v1/datasets", tags=["catalog"])


def describe(view: DatasetView) -> dict[str, Any]:
    return {
        "name": view.name,
        "tenant": view.tenant,
        "owner": view.owner,
        "description": view.description,
        "classification": view.classification,
        "version": view.version,
        "rows": view.row_count,
        "allowed_purposes": list(view.allowed_purposes),
        "identifier_columns": list(view.identifier_columns),
        "derived_from": list(view.derived_from),
        "columns": [
            {
                "name": c.name,
                "dtype": c.dtype,
                "classification": c.classification,
                "entity": c.entity,
            }
            for c in view.columns
        ],
    }


@router.get("", summary="Datasets the caller may read in some way")
def list_datasets(caller: CurrentCaller, db: DbSession, state: State) -> dict[str, Any]:
    views = [
        load_view(db, state.settings.datasets_dir, caller.tenant, n)
        for n in list_names(db, caller.tenant)
    ]
    return {"datasets": [describe(v) for v in views if visible(state, caller, v)]}


@router.get("/{name}", summary="One dataset: schema, classes, version")
def show_dataset(name: str, caller: CurrentCaller, db: DbSession, state: State) -> dict[str, Any]:
    view = load_view(db, state.settings.datasets_dir, caller.tenant, name)
    require_visible(state, caller, view)
    return describe(view)
