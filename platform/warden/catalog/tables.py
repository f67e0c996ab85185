"""Datasets as Apache Iceberg tables: pyiceberg's SQL catalog, kept in Warden's own database.

A dataset is the table `<tenant>.<dataset>` of the catalog `warden`; a version is one of its
snapshots. Registering a version adds the version's content-addressed Parquet file to the
table as its only data file (Iceberg's add-files: nothing is rewritten; the previous
version's file leaves the snapshot, not the store), so a snapshot is as immutable as its
file and a shard's row positions are those of that file. The catalog's pointer moves inside
the registration's own transaction (`_UnitCatalog`): a refused registration leaves the table
where it was, and two registrations racing on one table conflict on its catalog row.

Reads never ask the catalog: a version records its snapshot id and the metadata file written
with it (both immutable); `SnapshotFile.scan` opens that metadata and scans the snapshot
lazily with polars (projection and predicates pushed into the scan). Only the platform holds
the bucket's credentials: the io properties are built from its settings, never shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from warden.catalog.storage import S3, DataFile, Storage, storage_for, storage_reason
from warden.errors import Conflict, NotFound, StorageUnavailable, Unprocessable, WardenError

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from warden.catalog.view import DatasetView
    from warden.config import Settings

CATALOG = "warden"
# polars plans Iceberg scans with pyiceberg, or with an optional plugin Warden does not ship
# (without this it warns on every scan that the plugin is missing)
os.environ.setdefault("POLARS_ICEBERG_PLANNER", "pyiceberg")


@dataclass(frozen=True)
class Snapshot:
    id: int
    metadata: str  # the table metadata file written with it


def io_properties(store: Storage) -> dict[str, str]:
    """pyiceberg FileIO properties for the platform's store (credentials included)."""
    if not store.remote:
        return {}
    props = {
        "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
        "s3.region": store.region,
        "s3.connect-timeout": str(store.connect_timeout_s),
        "s3.request-timeout": str(store.request_timeout_s),
    }
    # its aws_allow_http too: polars' native reader takes undotted keys as object-store options
    return props | store.connection("s3.endpoint", "s3.access-key-id", "s3.secret-access-key")


def _uri(store: Storage, stored_at: str) -> str:
    """A stored file as the table's metadata names it: an object, or an absolute path."""
    if stored_at.startswith(S3):
        return stored_at
    return str((Path(store.root) / stored_at).resolve())


def _table_location(store: Storage, tenant: str, name: str) -> str:
    if store.remote:
        return store.location(f"iceberg/{tenant}/{name}")
    return (Path(store.root).resolve() / "iceberg" / tenant / name).as_uri()


def _data_files(table: Table) -> list[str]:
    if table.current_snapshot() is None:
        return []
    return sorted(task.file.file_path for task in table.scan().plan_files())


def commit_version(
    db: Session,
    store: Storage,
    tenant: str,
    name: str,
    stored_at: str,
    schema: pa.Schema,
    known: int | None = None,
) -> Snapshot:
    """Make the stored file `stored_at` the current snapshot of `<tenant>.<name>` (creating
    the table, evolving its schema by name) in `db`'s transaction; returns that snapshot.

    `known`: the snapshot this same file was registered as before. When it is still in the
    table's history the table goes back to it (Iceberg's rollback) rather than a copy."""
    # pyiceberg here, not at the top: a process that never registers or reads a table (the
    # CLI, `warden worker --once`, a server that only answers) starts without it (0.3 CPU-s)
    from pyiceberg.exceptions import (
        CommitFailedException,
        NoSuchTableError,
        ResolveError,
        ValidationError,
    )
    from pyiceberg.expressions import AlwaysTrue

    from warden.catalog.unit_catalog import UnitCatalog

    catalog = UnitCatalog(db, CATALOG, io_properties(store))
    ident = (tenant, name)
    uri = _uri(store, stored_at)
    try:
        catalog.create_namespace_if_not_exists((tenant,))
        try:
            table = catalog.load_table(ident)
        except NoSuchTableError:
            table = catalog.create_table(
                ident, schema=schema, location=_table_location(store, tenant, name)
            )
        if _data_files(table) == [uri]:
            pass  # the same file again: the current snapshot already is this version
        elif known is not None and table.snapshot_by_id(known) is not None:
            table.manage_snapshots().set_current_snapshot(known).commit()
        else:
            with table.transaction() as tx:
                with tx.update_schema() as evolve:
                    evolve.union_by_name(schema)
                if table.current_snapshot() is not None:
                    tx.delete(AlwaysTrue())
                tx.add_files([uri], check_duplicate_files=False)
        current = table.current_snapshot()
        assert current is not None
        return Snapshot(current.snapshot_id, table.metadata_location)
    except CommitFailedException:
        raise Conflict(
            f"dataset {name!r} was registered by someone else at the same time; retry"
        ) from None
    except WardenError:
        raise
    except OSError as exc:
        raise StorageUnavailable(f"dataset table: {storage_reason(exc)}") from None
    except (ValueError, ValidationError, ResolveError) as exc:
        # a schema Iceberg cannot hold (unsigned 64-bit) or evolve to (a column's type changed)
        reason = str(exc).splitlines()[0][:300]
        raise Unprocessable(f"dataset {name!r} cannot be this Iceberg table: {reason}") from None


@lru_cache(maxsize=64)
def _snapshot_scan(metadata: str, snapshot: int, io: tuple[tuple[str, str], ...]) -> pl.LazyFrame:
    """A snapshot's lazy scan. Metadata files and snapshots are immutable, and polars keeps a
    scan's planning (manifests read, files listed) with its frame, so it is built once."""
    from pyiceberg.table import StaticTable  # here: see commit_version

    table = StaticTable.from_metadata(metadata, properties=dict(io))
    if table.snapshot_by_id(snapshot) is None:
        raise StorageUnavailable("the dataset's table metadata lacks its snapshot")
    return pl.scan_iceberg(table, snapshot_id=snapshot, storage_options=dict(io) or None)


@dataclass(frozen=True)
class SnapshotFile(DataFile):
    """A version kept as an Iceberg snapshot: `location` is the table metadata written with
    it. Hashable and immutable, so caches key on it (and thus on the snapshot id)."""

    snapshot: int = 0
    io: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def catalogued(self) -> bool:
        return True

    def scan(self) -> pl.LazyFrame:
        try:
            return _snapshot_scan(self.location, self.snapshot, self.io)
        except WardenError:
            raise
        except OSError as exc:
            raise StorageUnavailable(storage_reason(exc)) from None
        except Exception as exc:  # noqa: BLE001 - unreadable metadata: fail closed, clearly
            raise StorageUnavailable(
                f"the dataset's table metadata cannot be read ({type(exc).__name__}):"
                " is it corrupt?"
            ) from None


def table_file(settings: Settings, view: DatasetView) -> DataFile:
    """The version's data as the platform reaches it: its Iceberg snapshot, or (a version
    registered before datasets were tables) its Parquet file."""
    store = storage_for(settings)
    if view.snapshot_id is None or not view.table_metadata:
        return store.file(view.location)
    return SnapshotFile(view.table_metadata, snapshot=view.snapshot_id, io=_io(store))


@lru_cache(maxsize=16)
def _io(store: Storage) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(io_properties(store).items()))


def export_table(db: Session, settings: Settings, source: str, target: Path) -> Path:
    """Copy an existing Iceberg table's current snapshot into the Parquet file `target`, to
    be registered like any file (the bucket stays Warden's: the data is copied in).

    `source`: a metadata file's location (`s3://…/metadata/….metadata.json` in the platform's
    bucket, or a local path), or an identifier `namespace.table` in Warden's catalog."""
    from pyiceberg.exceptions import NoSuchTableError, ResolveError, ValidationError
    from pyiceberg.table import StaticTable  # here: see commit_version

    from warden.catalog.unit_catalog import UnitCatalog

    store = storage_for(settings)
    props = io_properties(store)
    try:
        if source.endswith(".metadata.json"):
            table: Table = StaticTable.from_metadata(source, properties=props)
        else:
            table = UnitCatalog(db, CATALOG, props).load_table(source)
        reader = table.scan().to_arrow_batch_reader()
        with pq.ParquetWriter(target, reader.schema) as out:
            for batch in reader:
                out.write_batch(batch)
    except NoSuchTableError:
        raise NotFound(f"no Iceberg table {source[:120]!r} in the catalog") from None
    except OSError as exc:
        raise StorageUnavailable(f"Iceberg table {source[:120]!r}: {storage_reason(exc)}") from None
    except (ValueError, ValidationError, ResolveError) as exc:
        reason = str(exc).splitlines()[0][:300]
        raise Unprocessable(f"Iceberg table {source[:120]!r} cannot be read: {reason}") from None
    return target
