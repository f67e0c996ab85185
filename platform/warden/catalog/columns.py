"""A dataset's column as the catalog records it; the taste graph's specs declare theirs with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from warden.errors import Unprocessable
from warden.policy.rules import column_name_problem


@dataclass(frozen=True)
class ColumnInfo:
    """One column: its name, polars dtype string, data classification and, for a column of
    ids, the entity it identifies (so a user's id is the same entity in every dataset)."""

    name: str
    dtype: str  # "Int64", "Utf8", "Datetime(us)", "Binary", "Float64"
    classification: str  # "public" | "internal" | "pii"
    entity: str | None = None  # "user" | "pin" | "board" | "engagement" | None


def declared_names(columns: Sequence[ColumnInfo]) -> list[str]:
    """The names of a dataset's columns, each once and each one a policy rule names exactly
    (a column named `*` would be every column to a grant's rule); else Unprocessable."""
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise Unprocessable("a column is declared more than once")
    if problem := next(filter(None, map(column_name_problem, names)), None):
        raise Unprocessable(problem)
    return names
