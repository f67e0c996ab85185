"""`warden data seed`: generate the taste graph and register each file in the catalog."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from warden.audit.service import AuditRecord, append
from warden.catalog.service import register
from warden.catalog.storage import Storage
from warden.identity.service import get_principal, get_tenant
from warden.tastegraph import DatasetSpec, generate


def seed_taste_graph(
    db: Session,
    *,
    datasets_dir: Path | Storage,
    tenant_name: str,
    owner_name: str,
    scale: str = "small",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, object]]:
    """Generate, then register; returns one summary row per dataset."""
    near = None  # generate beside the datasets folder (same file system), or anywhere
    if isinstance(datasets_dir, Path):
        datasets_dir.mkdir(parents=True, exist_ok=True)
        near = datasets_dir.parent
    with tempfile.TemporaryDirectory(prefix="warden-seed-", dir=near) as tmp:
        specs = generate(Path(tmp), scale=scale, seed=seed, progress=progress)
        details = {"scale": scale, "seed": seed, "generated": True}
        return register_generated(db, specs, datasets_dir, tenant_name, owner_name, details)


def register_generated(
    db: Session,
    specs: list[DatasetSpec],
    datasets_dir: Path | Storage,
    tenant_name: str,
    owner_name: str,
    details: dict[str, object],
) -> list[dict[str, object]]:
    """Register generated files (copied into the content-addressed store), each audited."""
    tenant = get_tenant(db, tenant_name)
    owner = get_principal(db, owner_name, tenant.id)
    summaries: list[dict[str, object]] = []
    for spec in _sources_first(specs):
        dataset, version = register(
            db,
            datasets_dir=datasets_dir,
            tenant=tenant,
            owner=owner,
            name=spec.name,
            source=spec.path,
            columns=list(spec.columns),
            identifier_columns=list(spec.identifier_columns),
            allowed_purposes=list(spec.allowed_purposes),
            description=spec.description,
            derived_from=list(spec.derived_from),
        )
        append(
            db,
            AuditRecord(
                action="dataset.register",
                decision="allow",
                actor=owner.name,
                actor_kind=owner.kind,
                tenant=tenant.name,
                dataset=dataset.name,
                dataset_version=version.digest,
                rows=version.row_count,
                bytes=version.byte_size,
                details={
                    **details,
                    "classification": dataset.classification,
                    "derived_from": list(dataset.derived_from),
                    "snapshot": version.snapshot_id,
                },
            ),
        )
        summaries.append(
            {
                "dataset": dataset.name,
                "rows": version.row_count,
                "classification": dataset.classification,
                "version": version.digest,
                "snapshot": version.snapshot_id,
                "bytes": version.byte_size,
            }
        )
    return summaries


def _sources_first(specs: list[DatasetSpec]) -> list[DatasetSpec]:
    """Specs ordered so each comes after the generated datasets it derives from."""
    by_name = {s.name: s for s in specs}
    ordered: list[DatasetSpec] = []
    placed: set[str] = set()

    def place(spec: DatasetSpec, path: frozenset[str]) -> None:
        if spec.name in placed or spec.name in path:
            return
        for source in spec.derived_from:
            if source in by_name:
                place(by_name[source], path | {spec.name})
        placed.add(spec.name)
        ordered.append(spec)

    for spec in specs:
        place(spec, frozenset())
    return ordered
