"""Register datasets (content-addressed Parquet files) and look them up by name."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.catalog.models import Dataset, DatasetColumn, DatasetVersion
from warden.errors import NotFound, Unprocessable
from warden.identity.models import Principal, Tenant

DATASET_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CLASS_ORDER = {"public": 0, "internal": 1, "pii": 2}
PURPOSES = ("training", "evaluation", "inference", "analytics")


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    dtype: str
    classification: str


@dataclass(frozen=True)
class DatasetView:
    """A dataset as the gateway needs it: current version, file and schema."""

    id: str
    name: str
    tenant: str
    owner: str
    classification: str
    allowed_purposes: tuple[str, ...]
    identifier_columns: tuple[str, ...]
    version: str
    path: Path
    row_count: int
    columns: tuple[ColumnInfo, ...]
    description: str = ""

    def column(self, name: str) -> ColumnInfo | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def strictest(classes: list[str]) -> str:
    return max(classes, key=lambda c: CLASS_ORDER[c]) if classes else "public"


def register(
    db: Session,
    *,
    datasets_dir: Path,
    tenant: Tenant,
    owner: Principal,
    name: str,
    source: Path,
    columns: list[ColumnInfo],
    identifier_columns: list[str],
    allowed_purposes: list[str],
    description: str = "",
) -> tuple[Dataset, DatasetVersion]:
    """Copy `source` into the content-addressed store and make it the current version."""
    if not DATASET_NAME_RE.fullmatch(name):
        raise Unprocessable(f"invalid dataset name {name!r}")
    for c in columns:
        if c.classification not in CLASS_ORDER:
            raise Unprocessable(f"column {c.name!r}: unknown class {c.classification!r}")
    if bad := [p for p in allowed_purposes if p not in PURPOSES]:
        raise Unprocessable(f"unknown purposes {bad}; known: {list(PURPOSES)}")
    file_schema = pl.read_parquet_schema(source)
    if missing := [c.name for c in columns if c.name not in file_schema]:
        raise Unprocessable(f"columns {missing} are not in {source.name}")

    digest = file_digest(source)
    relative = Path(name) / f"{digest.removeprefix('sha256:')}.parquet"
    target = datasets_dir / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)  # atomic: a reader never sees half a file

    dataset = db.scalar(select(Dataset).where(Dataset.tenant_id == tenant.id, Dataset.name == name))
    classification = strictest([c.classification for c in columns])
    if dataset is None:
        dataset = Dataset(name=name, tenant_id=tenant.id, current_version=digest)
        db.add(dataset)
    dataset.owner_id = owner.id
    dataset.description = description
    dataset.classification = classification
    dataset.allowed_purposes = list(allowed_purposes)
    dataset.identifier_columns = list(identifier_columns)
    dataset.current_version = digest
    db.flush()

    for old in db.scalars(select(DatasetColumn).where(DatasetColumn.dataset_id == dataset.id)):
        db.delete(old)
    db.flush()
    for position, c in enumerate(columns):
        db.add(
            DatasetColumn(
                dataset_id=dataset.id,
                name=c.name,
                dtype=c.dtype,
                classification=c.classification,
                position=position,
            )
        )
    version = db.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.digest == digest
        )
    )
    if version is None:
        version = DatasetVersion(
            dataset_id=dataset.id,
            digest=digest,
            path=str(relative),
            row_count=pl.scan_parquet(target).select(pl.len()).collect().item(),
            byte_size=target.stat().st_size,
        )
        db.add(version)
    db.flush()
    return dataset, version


def load_view(db: Session, datasets_dir: Path, tenant_name: str, name: str) -> DatasetView:
    """The current version of a dataset in a tenant, or NotFound (names are never paths)."""
    if not DATASET_NAME_RE.fullmatch(name):
        raise NotFound(f"no dataset named {name[:80]!r}")
    # Hot path (every governed read): one core statement, one round trip, no ORM objects. The
    # columns come in the same answer (an outer join), so the view is always the stored one:
    # a new version, a reclassified column or a new owner shows on the very next read.
    rows = (
        db.connection()
        .execute(
            select(
                Dataset.id,
                Dataset.name,
                Tenant.name,
                Principal.name,
                Dataset.classification,
                Dataset.allowed_purposes,
                Dataset.identifier_columns,
                DatasetVersion.digest,
                DatasetVersion.path,
                DatasetVersion.row_count,
                Dataset.description,
                DatasetColumn.name,
                DatasetColumn.dtype,
                DatasetColumn.classification,
            )
            .select_from(Dataset)
            .join(Tenant, Tenant.id == Dataset.tenant_id)
            .join(Principal, Principal.id == Dataset.owner_id)
            .join(
                DatasetVersion,
                (DatasetVersion.dataset_id == Dataset.id)
                & (DatasetVersion.digest == Dataset.current_version),
            )
            .outerjoin(DatasetColumn, DatasetColumn.dataset_id == Dataset.id)
            .where(Tenant.name == tenant_name, Dataset.name == name)
            .order_by(DatasetColumn.position)
        )
        .all()
    )
    if not rows:
        raise NotFound(f"no dataset named {name!r}")
    first = rows[0]
    return DatasetView(
        id=first[0],
        name=first[1],
        tenant=first[2],
        owner=first[3],
        classification=first[4],
        allowed_purposes=tuple(first[5]),
        identifier_columns=tuple(first[6]),
        version=first[7],
        path=datasets_dir / first[8],
        row_count=first[9],
        columns=tuple(ColumnInfo(r[11], r[12], r[13]) for r in rows if r[11] is not None),
        description=first[10],
    )


def list_names(db: Session, tenant_name: str) -> list[str]:
    query = (
        select(Dataset.name)
        .join(Tenant, Tenant.id == Dataset.tenant_id)
        .where(Tenant.name == tenant_name)
        .order_by(Dataset.name)
    )
    return list(db.scalars(query))
