"""What an inference job wrote becomes catalog datasets, as strict as what it read.

Each parquet file of a succeeded inference job is registered as a dataset: classified as the
strictest of its inputs (the datasets it read and those its parent models were built from),
usable for what all of them allow, owned by the strictest input's owner, its identifier
columns decided fail closed (`output_identifiers`).

An output's identifier values are whatever the job chose to write (guessed raw ids, say), so
each is masked with a key of its own (`output_entity`), never the tenant's key for the entity
its input identified: a reader of the output learns no pseudonym that any other dataset uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import select

from warden.catalog.service import ColumnInfo, load_view, register, strictest
from warden.catalog.storage import storage_for
from warden.catalog.view import DatasetView
from warden.core.platform import Platform
from warden.db.sealed import check
from warden.identity.models import Principal, Tenant
from warden.jobs.models import Job
from warden.registry import service as registry


def output_identifiers(schema: Mapping[str, Any], views: list[DatasetView]) -> list[str]:
    """The columns of a job's output that are masked on read. Fail closed: a column is one
    unless an input has a plain (non-identifier) column of that name and type, or it holds
    no integers or text (scores, embeddings, flags, times). A job that renamed `user_id`
    to `uid` still wrote identifiers; names ending in `_id` always are."""
    plain = {
        (c.name, c.dtype) for v in views for c in v.columns if c.name not in v.identifier_columns
    }
    found = []
    for name, dtype in schema.items():
        holds_ids = dtype.is_integer() or dtype in (pl.String, pl.Categorical, pl.Binary)
        if name.endswith("_id") or (holds_ids and (name, str(dtype)) not in plain):
            found.append(name)
    return found


def output_entity(dataset: str, column: str) -> str:
    """The entity (so the mask key) of one identifier column of a job's output: its own, so
    its pseudonyms join nothing else in the tenant (the tenant's `user` key would turn values
    the job chose into an oracle of every `user_id` pseudonym). Only the job's output is
    registered with it: no API path declares entities (catalog/seeding.py is the operator's)."""
    digest = hashlib.sha256(f"{dataset}\0{column}".encode()).hexdigest()
    return f"out_{digest[:24]}"


def register_outputs(
    state: Platform,
    db: Any,
    job: Job,
    artifacts: list[dict[str, Any]],
    lineage: dict[str, Any],
) -> list[dict[str, Any]]:
    """Each parquet an inference job wrote becomes a catalog dataset: classified as the
    strictest of its inputs, usable for what all its inputs allow, its lineage in its
    description. Its inputs are the datasets the job read and those its parent models were
    built from (a model's artifact carries its data). It belongs to the strictest input's
    owner, not the launcher: who may widen access to a copy is whoever may to its source."""
    parent_ids = [p.get("id") for p in lineage.get("parents", [])]
    names = registry.inputs_of(db, job.tenant_id, job.datasets, parent_ids)
    views = [load_view(db, state.settings.datasets_dir, job.tenant, n) for n in names]
    classification = strictest([v.classification for v in views])
    purposes = [p for p in views[0].allowed_purposes if all(p in v.allowed_purposes for v in views)]
    source = next(v for v in views if v.classification == classification)
    owner = check(db, db.scalars(select(Principal).where(
        Principal.tenant_id == job.tenant_id, Principal.name == source.owner)).one())  # fmt: skip
    tenant = check(db, db.get_one(Tenant, job.tenant_id))
    inputs = ", ".join(f"{v.name}@{v.version[:19]}" for v in views)
    parents = ", ".join(p["ref"] for p in lineage.get("parents", [])) or "none"
    registered = []
    for artifact in artifacts:
        name = Path(artifact["name"])
        if name.suffix != ".parquet" or len(name.parts) != 1:
            continue
        source = Path(state.settings.data_dir) / artifact["path"]
        schema = pl.read_parquet_schema(source)
        dataset_name = f"{name.stem[:40]}_{job.id}"
        identifiers = output_identifiers(schema, views)
        entities = {c.name: c.entity for v in views for c in v.columns if c.entity}
        entities |= {c: output_entity(dataset_name, c) for c in identifiers}
        columns = [
            ColumnInfo(c, str(t), classification, entities.get(c)) for c, t in schema.items()
        ]
        dataset, version = register(
            db,
            datasets_dir=storage_for(state.settings),
            tenant=tenant,
            owner=owner,
            name=dataset_name,
            source=source,
            columns=columns,
            identifier_columns=identifiers,
            allowed_purposes=purposes,
            derived_from=[v.name for v in views],
            description=(
                f"Output of inference job {job.id} ({name.name}) by {job.launcher}; "
                f"inputs: {inputs}; model: {parents}; classification: strictest of its inputs"
            ),
        )
        registered.append(
            {
                "dataset": dataset.name,
                "version": version.digest,
                "classification": classification,
                "inputs": [{"name": v.name, "version": v.version} for v in views],
            }
        )
    return registered
