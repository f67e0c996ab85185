"""A dataset's access terms and versions, sealed with a key a database writer does not hold.

What a read is decided on lives in catalog rows: a dataset's class, owner, purposes, which
columns are identifiers (masked), each column's class and entity, the datasets it derives
from, its current version; and for each version, the file it reads. Someone who can write
the database but not the deployment's key files could lower `users` to public, drop
`user_id` from the identifier columns (raw ids to every masked grant) or point a public
dataset's version at another dataset's file. So every row Warden writes carries a keyed MAC
(`audit.keys.derived_mac`) of those fields, and `catalog.service.load_view` / `pin_version`
refuse (503, fail closed) a dataset or version whose row no longer matches it, until an
operator who has looked reseals them (`warden data seal`, audited).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Sequence
from typing import Any

from warden.audit.keys import ChainKeyring, derived_mac
from warden.errors import Unavailable

# (name, dtype, class, entity) in position order
ColumnTerms = tuple[str, str, str, str | None]


class CatalogTampered(Unavailable):
    """A dataset's stored terms, or one of its versions, do not match their seal."""


def terms_seal(keys: ChainKeyring, dataset: Any, columns: Iterable[ColumnTerms]) -> str:
    """`dataset`: anything with the `Dataset` row's fields (the ORM row or a selected row)."""
    text = json.dumps(
        [
            dataset.id,
            dataset.tenant_id,
            dataset.name,
            dataset.owner_id,
            dataset.classification,
            list(dataset.allowed_purposes or ()),
            list(dataset.identifier_columns or ()),
            list(dataset.derived_from or ()),
            dataset.current_version,
            [list(c) for c in columns],
        ]
    )
    return derived_mac(keys, b"dataset-terms", text)


def version_seal(keys: ChainKeyring, dataset_id: str, version: Any) -> str:
    """`version`: anything with the `DatasetVersion` row's fields."""
    text = json.dumps(
        [
            dataset_id,
            version.digest,
            version.path,
            version.row_count,
            version.byte_size,
            version.snapshot_id,
            version.table_metadata,
        ]
    )
    return derived_mac(keys, b"dataset-version", text)


def _check(stored: str | None, expected: str, name: str, what: str) -> None:
    if not hmac.compare_digest(stored or "", expected):
        raise CatalogTampered(
            f"dataset {name!r}: {what} do not match their seal; they were written past Warden."
            " Nothing is read from it until an operator checks them and runs"
            " `warden data seal`"
        )


def check_terms(
    keys: ChainKeyring, dataset: Any, columns: Sequence[ColumnTerms], stored: str | None
) -> None:
    what = "its stored terms (class, columns, owner, purposes or sources)"
    _check(stored, terms_seal(keys, dataset, columns), dataset.name, what)


def check_version(
    keys: ChainKeyring, name: str, dataset_id: str, version: Any, stored: str | None
) -> None:
    what = f"the fields of its version {str(version.digest)[:80]!r}"
    _check(stored, version_seal(keys, dataset_id, version), name, what)
