"""A dataset as the gateway reads it: one version's file, schema and terms (built by
`catalog.service.load_view`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from warden.catalog.columns import ColumnInfo


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
