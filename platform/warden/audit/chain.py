"""The hash chain: a canonical byte form of an event and `hash = sha256(prev_hash + canonical)`.

The canonical form must come out byte-identical whether the event is still in memory or has
been read back from SQLite (naive datetimes, JSON stored as text) or PostgreSQL (aware
datetimes in the session's zone), so every value is normalised before it is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64

# The fields the hash covers. Fixed on purpose: chaining a new column changes every old
# event's canonical form, so that needs a versioned canonical form, not an edit here.
CHAIN_FIELDS: tuple[str, ...] = (
    "seq",
    "id",
    "ts",
    "actor",
    "actor_kind",
    "on_behalf_of",
    "tenant",
    "action",
    "dataset",
    "dataset_version",
    "purpose",
    "decision",
    "rule",
    "policy_version",
    "columns",
    "masked_columns",
    "row_filter",
    "rows",
    "bytes",
    "grant_ids",
    "trace_id",
    "reason",
    "details",
    "prev_hash",
)
_JSON_EMPTY: dict[str, Callable[[], Any]] = {
    "columns": list,
    "masked_columns": list,
    "row_filter": list,
    "grant_ids": list,
    "details": dict,
}


def utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive values are taken as UTC (SQLite returns them so)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with microseconds, e.g. 2025-01-02T03:04:05.000006Z."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_json(value: Any) -> Any:
    """The value as it comes back from a JSON column: tuples become lists, keys strings.

    Raises ValueError or TypeError for what a JSON column cannot hold (NaN, sets, objects).
    """
    return json.loads(json.dumps(value, allow_nan=False))


def canonical(event: Mapping[str, Any] | Any) -> bytes:
    """Sorted-key compact JSON of every chained field; `event` is an ORM object or a row mapping.

    JSON fields must already hold what a JSON column returns (`append` normalises them).
    """
    if isinstance(event, Mapping):
        doc = {name: event[name] for name in CHAIN_FIELDS}
    else:
        doc = {name: getattr(event, name) for name in CHAIN_FIELDS}
    doc["ts"] = iso_utc(doc["ts"])
    for name, empty in _JSON_EMPTY.items():
        if doc[name] is None:
            doc[name] = empty()
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def chain_hash(prev_hash: str, canonical_bytes: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_bytes).hexdigest()


def event_hash(event: Mapping[str, Any] | Any) -> str:
    """The hash an event should carry, given its own prev_hash."""
    prev = event["prev_hash"] if isinstance(event, Mapping) else event.prev_hash
    return chain_hash(prev, canonical(event))


__all__ = [
    "CHAIN_FIELDS",
    "GENESIS_HASH",
    "canonical",
    "chain_hash",
    "event_hash",
    "iso_utc",
    "normalise_json",
    "utc",
]
