"""A dataset's column as the catalog records it; the taste graph's specs declare theirs with it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ColumnInfo:
    """One column: its name, polars dtype string, data classification and, for a column of
    ids, the entity it identifies (so a user's id is the same entity in every dataset)."""

    name: str
    dtype: str  # "Int64", "Utf8", "Datetime(us)", "Binary", "Float64"
    classification: str  # "public" | "internal" | "pii"
    entity: str | None = None  # "user" | "pin" | "board" | "engagement" | None
