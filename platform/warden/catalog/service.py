"""Register datasets (content-addressed Parquet files, each version an Iceberg snapshot of the
dataset's table: see catalog/tables.py) and look them up by name.

A dataset's class is the strictest of its columns' and of the datasets it derives from
(`derived_from`, same tenant): data built from pii is pii. Protection never goes down
silently: a lower class or column class, fewer sources or fewer identifier columns is refused
(403) unless a reviewed change permits it (see `check_not_lowered`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.audit.keys import keys_for
from warden.catalog.columns import ColumnInfo, declared_names
from warden.catalog.models import Dataset, DatasetColumn, DatasetVersion
from warden.catalog.order import scrubbed
from warden.catalog.seal import (
    CatalogTampered,
    ColumnTerms,
    check_terms,
    check_version,
    terms_seal,
    version_seal,
)
from warden.catalog.storage import Storage
from warden.catalog.tables import commit_version
from warden.errors import Forbidden, NotFound, Unprocessable
from warden.identity.models import Principal, Tenant
from warden.policy import exposure
from warden.policy.rules import PURPOSES

DATASET_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CLASS_ORDER = {"public": 0, "internal": 1, "pii": 2}
ENTITY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


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
    path: Path  # the local file (for a version kept in a bucket: see `location`)
    row_count: int
    columns: tuple[ColumnInfo, ...]
    description: str = ""
    tenant_id: str = ""
    derived_from: tuple[str, ...] = ()
    # where the version's file is: a local path, or s3://bucket/key (never shown to callers)
    location: str = ""
    byte_size: int = 0
    # the version's Iceberg snapshot and the metadata written with it (None: a version
    # registered before datasets were Iceberg tables, read from its Parquet file)
    snapshot_id: int | None = None
    table_metadata: str | None = None

    def column(self, name: str) -> ColumnInfo | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, ColumnInfo]:
        # a view is cached and asked per column many times a read: a scan each time cost ~2%
        return {c.name: c for c in reversed(self.columns)}  # reversed: the first of a name wins

    def entity_of(self, column: str) -> str:
        """The entity a column identifies; an identifier without a declared entity is its
        own (masked consistently wherever a column of that name is)."""
        info = self.column(column)
        if info is not None and info.entity:
            return info.entity
        return f"column:{column}"

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


def check_not_lowered(
    dataset: Dataset,
    old_columns: dict[str, tuple[str, str | None]],
    classification: str,
    columns: list[ColumnInfo],
    derived_from: list[str],
    identifier_columns: list[str],
    *,
    reviewed_change: str | None = None,
) -> None:
    """Refuse (403) a registration that lowers a dataset's or a column's class, drops a source
    or an identifier column (renamed too: no longer masked by entity nor kept out of the row
    order) or changes an identifier's entity (its pseudonyms, its mixed-exposure check), unless
    `reviewed_change` names an approved reviewed change. `old_columns`: name -> (class, entity)."""
    lowered: list[str] = []
    if CLASS_ORDER[classification] < CLASS_ORDER.get(dataset.classification, 0):
        lowered.append(f"class {dataset.classification} -> {classification}")
    was_identifier = set(dataset.identifier_columns or [])
    for c in columns:
        if c.name not in old_columns:
            continue
        old, entity = old_columns[c.name]
        if CLASS_ORDER[c.classification] < CLASS_ORDER.get(old, 0):
            lowered.append(f"column {c.name!r} {old} -> {c.classification}")
        if c.entity != entity and (entity is not None or c.name in was_identifier):
            lowered.append(f"column {c.name!r} identifies {entity or 'itself'}, not {c.entity}")
    if dropped := sorted(set(dataset.derived_from or []) - set(derived_from)):
        lowered.append(f"no longer derived from {dropped}")
    if dropped := sorted(was_identifier - set(identifier_columns)):
        lowered.append(f"{dropped} no longer identifier columns")
    if lowered and not reviewed_change:
        raise Forbidden(
            f"lowering the class of {dataset.name!r} ({'; '.join(lowered)}) needs a reviewed "
            "change approved by another person"
        )


def _sources(db: Session, tenant: Tenant, name: str, derived_from: list[str]) -> list[Dataset]:
    if name in derived_from:
        raise Unprocessable(f"dataset {name!r} cannot derive from itself")
    found = {
        d.name: d
        for d in db.scalars(
            select(Dataset).where(Dataset.tenant_id == tenant.id, Dataset.name.in_(derived_from))
        )
    }
    if missing := [s for s in derived_from if s not in found]:
        raise Unprocessable(f"derived from unknown datasets {missing[:10]}")
    return [found[s] for s in derived_from]


def register(
    db: Session,
    *,
    datasets_dir: Path | Storage,
    tenant: Tenant,
    owner: Principal,
    name: str,
    source: Path,
    columns: list[ColumnInfo],
    identifier_columns: list[str],
    allowed_purposes: list[str],
    description: str = "",
    derived_from: list[str] | tuple[str, ...] = (),
    reviewed_change: str | None = None,
) -> tuple[Dataset, DatasetVersion]:
    """Copy `source` into the content-addressed store and make it the current version; a
    source with identifier columns is stored in an order that does not say whose a row is
    (random, or a public time column's: `order.py`).

    `datasets_dir`: the local datasets folder, or the platform's store (`storage_for`): a
    bucket. The file is stored before any row changes; a store that fails (unreachable,
    wrong credentials, no bucket) raises StorageUnavailable and nothing is registered.

    `derived_from`: the datasets of the same tenant it was built from; its class is the
    strictest of its columns' and theirs, and datasets derived from it are raised to match.
    """
    if not DATASET_NAME_RE.fullmatch(name):
        raise Unprocessable(f"invalid dataset name {name!r}")
    names = declared_names(columns)
    for c in columns:
        if c.classification not in CLASS_ORDER:
            raise Unprocessable(f"column {c.name!r}: unknown class {c.classification!r}")
        if c.entity is not None and not ENTITY_RE.fullmatch(c.entity):
            raise Unprocessable(f"column {c.name!r}: invalid entity {c.entity!r}")
    if bad := [i for i in identifier_columns if i not in names]:
        raise Unprocessable(f"identifier columns {bad} are not columns of {name!r}")
    if bad := [p for p in allowed_purposes if p not in PURPOSES]:
        raise Unprocessable(f"unknown purposes {bad}; known: {list(PURPOSES)}")
    derived = list(dict.fromkeys(derived_from))
    sources = _sources(db, tenant, name, derived)
    exposed_before = exposure.catalog_from_db(db, [tenant.name])
    file_schema = pl.read_parquet_schema(source)
    if missing := [c.name for c in columns if c.name not in file_schema]:
        raise Unprocessable(f"columns {missing} are not in {source.name}")

    store = datasets_dir if isinstance(datasets_dir, Storage) else Storage(str(datasets_dir))
    with tempfile.TemporaryDirectory(prefix="warden-register-") as scratch:
        # a row's position must not say whose it is (catalog/order.py)
        source = scrubbed(source, Path(scratch) / "scrubbed.parquet", columns, identifier_columns)
        digest = file_digest(source)
        relative = f"{name}/{digest.removeprefix('sha256:')}.parquet"
        stored_at = store.put(source, relative)  # atomic: a reader never sees half a file
        schema = pq.read_schema(source)
        size = {
            "row_count": pl.scan_parquet(source).select(pl.len()).collect().item(),
            "byte_size": source.stat().st_size,
        }

    dataset = db.scalar(select(Dataset).where(Dataset.tenant_id == tenant.id, Dataset.name == name))
    classification = strictest(
        [c.classification for c in columns] + [s.classification for s in sources]
    )
    if dataset is None:
        dataset = Dataset(name=name, tenant_id=tenant.id, current_version=digest)
        db.add(dataset)
    else:
        check_stored(db, dataset)  # refused if its terms were written past Warden
        old_columns = {
            c.name: (c.classification, c.entity)
            for c in db.scalars(select(DatasetColumn).where(DatasetColumn.dataset_id == dataset.id))
        }
        check_not_lowered(
            dataset,
            old_columns,
            classification,
            columns,
            derived,
            identifier_columns,
            reviewed_change=reviewed_change,
        )
    dataset.owner_id = owner.id
    dataset.description = description
    dataset.classification = classification
    dataset.allowed_purposes = list(allowed_purposes)
    dataset.identifier_columns = list(identifier_columns)
    dataset.derived_from = derived
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
                entity=c.entity,
            )
        )
    version = db.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.digest == digest
        )
    )
    # The version is a snapshot of the dataset's Iceberg table, committed in this transaction.
    snapshot = commit_version(
        db,
        store,
        tenant.name,
        name,
        stored_at,
        schema,
        known=version.snapshot_id if version is not None else None,
    )
    if version is not None:  # the same content again: its row must be the one Warden sealed
        check_version(keys_for(db.get_bind()), name, dataset.id, version, version.seal)
    if version is None:
        version = DatasetVersion(dataset_id=dataset.id, digest=digest, path=stored_at, **size)
        db.add(version)
    version.snapshot_id = snapshot.id
    version.table_metadata = snapshot.metadata
    db.flush()
    raise_derived(db, tenant.id, dataset)
    reseal(db, dataset)
    if mixed := exposure.catalog_problems(db, tenant.name, exposed_before):
        raise Forbidden(exposure.describe(mixed))
    return dataset, version


def raise_derived(db: Session, tenant_id: str, source: Dataset) -> None:
    """Datasets derived (transitively) from `source` take its class when it is stricter."""
    everything = list(db.scalars(select(Dataset).where(Dataset.tenant_id == tenant_id)))
    queue, seen = [source], {source.name}
    while queue:
        parent = queue.pop()
        for child in everything:
            if parent.name in (child.derived_from or []) and child.name not in seen:
                if CLASS_ORDER[parent.classification] > CLASS_ORDER[child.classification]:
                    check_stored(db, child)
                    child.classification = parent.classification
                    reseal(db, child)
                seen.add(child.name)
                queue.append(child)
    db.flush()


def _column_terms(db: Session, dataset_id: str) -> list[ColumnTerms]:
    query = (
        select(DatasetColumn)
        .where(DatasetColumn.dataset_id == dataset_id)
        .order_by(DatasetColumn.position)
    )
    return [(c.name, c.dtype, c.classification, c.entity) for c in db.scalars(query)]


def check_stored(db: Session, dataset: Dataset) -> None:
    """CatalogTampered unless `dataset`'s row and columns are as Warden sealed them: checked
    before Warden rewrites them, so a change made past Warden is never sealed in passing."""
    check_terms(keys_for(db.get_bind()), dataset, _column_terms(db, dataset.id), dataset.seal)


def reseal(db: Session, dataset: Dataset, *, every_version: bool = False) -> None:
    """Seal what Warden just wrote of `dataset`: its terms with its columns, and its current
    version (or all of them: `every_version`, for `warden data seal` only)."""
    keys = keys_for(db.get_bind())
    db.flush()
    dataset.seal = terms_seal(keys, dataset, _column_terms(db, dataset.id))
    versions = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
    if not every_version:
        versions = versions.where(DatasetVersion.digest == dataset.current_version)
    for version in db.scalars(versions):
        version.seal = version_seal(keys, dataset.id, version)
    db.flush()


def terms_shown(db: Session, dataset: Dataset) -> dict[str, Any]:
    """A dataset's sealed terms and versions as stored, for an operator to look at."""
    versions = db.scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id))
    return {
        "id": dataset.id,
        "tenant_id": dataset.tenant_id,
        "owner_id": dataset.owner_id,
        "classification": dataset.classification,
        "allowed_purposes": dataset.allowed_purposes,
        "identifier_columns": dataset.identifier_columns,
        "derived_from": dataset.derived_from,
        "current_version": dataset.current_version,
        "columns": _column_terms(db, dataset.id),
        "versions": sorted((v.digest, v.path, v.snapshot_id) for v in versions),
    }


def unsealed(db: Session) -> list[tuple[Dataset, str]]:
    """Every dataset whose terms or a version do not match their seal, with what is wrong
    (for `warden data seal`)."""
    keys, found = keys_for(db.get_bind()), []
    for dataset in db.scalars(select(Dataset).order_by(Dataset.tenant_id, Dataset.name)):
        try:
            check_stored(db, dataset)
            for v in db.scalars(
                select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
            ):
                check_version(keys, dataset.name, dataset.id, v, v.seal)
        except CatalogTampered as exc:
            found.append((dataset, exc.detail))
    return found


# What a view takes from the version it reads (the current one, or one pinned by a read).
_VERSION_COLUMNS = (
    DatasetVersion.digest,
    DatasetVersion.path,
    DatasetVersion.row_count,
    DatasetVersion.byte_size,
    DatasetVersion.snapshot_id,
    DatasetVersion.table_metadata,
    DatasetVersion.seal.label("version_seal"),
)


def _version_fields(row: Any, datasets_dir: Path) -> dict[str, Any]:
    """A view's fields from a row of `_VERSION_COLUMNS` (a path with a scheme is a bucket's)."""
    return {
        "version": row.digest,
        "path": datasets_dir / row.path,
        "location": row.path if "://" in row.path else str(datasets_dir / row.path),
        "row_count": row.row_count,
        "byte_size": row.byte_size or 0,
        "snapshot_id": row.snapshot_id,
        "table_metadata": row.table_metadata,
    }


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
                Tenant.name.label("tenant"),
                Principal.name.label("owner"),
                Dataset.classification,
                Dataset.allowed_purposes,
                Dataset.identifier_columns,
                *_VERSION_COLUMNS,
                Dataset.description,
                Dataset.tenant_id,
                Dataset.derived_from,
                Dataset.owner_id,
                Dataset.current_version,
                Dataset.seal,
                DatasetColumn.name.label("column"),
                DatasetColumn.dtype,
                DatasetColumn.classification.label("column_class"),
                DatasetColumn.entity,
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
    cols = [r for r in rows if r.column is not None]
    keys = keys_for(db.get_bind())
    check_terms(
        keys, first, [(c.column, c.dtype, c.column_class, c.entity) for c in cols], first.seal
    )
    check_version(keys, first.name, first.id, first, first.version_seal)
    # Recomputed on every load, never only trusted from the row: a class written down by hand
    # in the database does not lower what its columns and sources say.
    classes = [first.classification, *(c.column_class for c in cols)]
    if first.derived_from:
        classes += db.connection().scalars(
            select(Dataset.classification).where(
                Dataset.tenant_id == first.tenant_id, Dataset.name.in_(first.derived_from)
            )
        )
    return DatasetView(
        id=first.id,
        name=first.name,
        tenant=first.tenant,
        owner=first.owner,
        classification=strictest([c for c in classes if c in CLASS_ORDER] or ["pii"]),
        allowed_purposes=tuple(first.allowed_purposes),
        identifier_columns=tuple(first.identifier_columns),
        **_version_fields(first, datasets_dir),
        columns=tuple(ColumnInfo(c.column, c.dtype, c.column_class, c.entity) for c in cols),
        description=first.description,
        tenant_id=first.tenant_id,
        derived_from=tuple(first.derived_from or ()),
    )


def pin_version(db: Session, datasets_dir: Path, view: DatasetView, version: str) -> DatasetView:
    """`view` as of an earlier version, named by its digest (`sha256:…`) or its Iceberg
    snapshot id (its data; the columns, classes and owner stay the current ones, which is
    what the read is decided on), or NotFound."""
    if version in (view.version, str(view.snapshot_id)):
        return view
    if version.isdigit():
        if int(version) >= 2**63:  # no snapshot id is that large (and no column holds it)
            raise NotFound(f"dataset {view.name!r} has no version {version[:80]!r}")
        which = DatasetVersion.snapshot_id == int(version)
    else:
        which = DatasetVersion.digest == version
    row = (
        db.connection()
        .execute(select(*_VERSION_COLUMNS).where(DatasetVersion.dataset_id == view.id, which))
        .first()
    )
    if row is None:
        raise NotFound(f"dataset {view.name!r} has no version {version[:80]!r}")
    check_version(keys_for(db.get_bind()), view.name, view.id, row, row.version_seal)
    return dataclasses.replace(view, **_version_fields(row, datasets_dir))


def list_names(db: Session, tenant_name: str) -> list[str]:
    query = (
        select(Dataset.name)
        .join(Tenant, Tenant.id == Dataset.tenant_id)
        .where(Tenant.name == tenant_name)
        .order_by(Dataset.name)
    )
    return list(db.scalars(query))
