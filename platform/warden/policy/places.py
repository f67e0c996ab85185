"""Where a subject sees an entity's identifiers: the catalog's identifier columns, and a place
(dataset, column, purpose) with what shows it (a rule, or an audit event of a raw read). Shared
by the mixed-exposure check (exposure.py) and the log's raw reads (raw_reads.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class IdColumn:
    """A catalog column that identifies an entity; `pseudonymised`: masked by keyed hash."""

    dataset: str
    column: str
    entity: str
    pseudonymised: bool


# tenant -> its identifier columns
Catalog = Mapping[str, Sequence[IdColumn]]


@dataclass(frozen=True)
class Place:
    dataset: str
    column: str
    purpose: str
    rule: tuple[str, ...] | None
    event: str | None = None  # the audit event that shows it read raw (policy/raw_reads.py)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.column, self.purpose)

    def __str__(self) -> str:
        read = f", read raw in audit event {self.event}" if self.event else ""
        return f"{self.dataset}.{self.column} ({self.purpose}{read})"
