"""The hash chain: a canonical byte form of an event, and its hash linked to the previous one.

Two versions of the chain step, recorded per event in `chain_v`:

- v1 (events written before keyed chaining): `hash = sha256(prev_hash || canonical_v1)`.
  Anyone who can write the database can recompute it, so v1 events are trusted only as far
  as a later keyed event (whose HMAC covers their last hash) or a signed checkpoint vouches.
- v2: `hash = HMAC-SHA256(chain_key, prev_hash || canonical_v2)`, where canonical_v2 also
  covers `chain_v` and `key_id` (the id of the chain key, which lives outside the database).

The canonical form must come out byte-identical whether the event is still in memory or has
been read back from SQLite (naive datetimes, JSON stored as text) or PostgreSQL (aware
datetimes in the session's zone), so every value is normalised before it is written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warden.audit.keys import ChainKeyring

GENESIS_HASH = "0" * 64

# The fields the hash covers. Fixed on purpose: chaining a new column changes every old
# event's canonical form, so that needs a versioned canonical form, not an edit here.
# Who did what, on what and under which rule: the event's free-text description.
DESCRIPTION_FIELDS: tuple[str, ...] = (
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
)
CHAIN_FIELDS: tuple[str, ...] = (
    "seq",
    "id",
    "ts",
    *DESCRIPTION_FIELDS,
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
# v2 also chains its own version and key id, so neither can be swapped without the key.
CHAIN_FIELDS_V2: tuple[str, ...] = (*CHAIN_FIELDS, "chain_v", "key_id")
CHAIN_V1 = 1
CHAIN_V2 = 2
CURRENT_CHAIN_V = CHAIN_V2

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
    if isinstance(value, list | tuple) and all(type(v) is str for v in value):
        return list(value)  # what the round trip gives (most fields: column names, ids)
    return json.loads(json.dumps(value, allow_nan=False))


def _get(event: Mapping[str, Any] | Any, name: str) -> Any:
    return event[name] if isinstance(event, Mapping) else getattr(event, name)


def chain_version(event: Mapping[str, Any] | Any) -> int:
    """The event's chain version; rows without one (v1-era dicts) are v1."""
    value = event.get("chain_v") if isinstance(event, Mapping) else getattr(event, "chain_v", None)
    return CHAIN_V1 if value is None else int(value)


def canonical(event: Mapping[str, Any] | Any, version: int | None = None) -> bytes:
    """Sorted-key compact JSON of every chained field; `event` is an ORM object or a row mapping.

    The fields are those of the event's chain version (or `version`). JSON fields must already
    hold what a JSON column returns (`append` normalises them).
    """
    version = chain_version(event) if version is None else version
    names = CHAIN_FIELDS if version == CHAIN_V1 else CHAIN_FIELDS_V2
    if isinstance(event, Mapping):
        doc = {name: event[name] for name in names}
    else:
        doc = {name: getattr(event, name) for name in names}
    doc["ts"] = iso_utc(doc["ts"])
    for name, empty in _JSON_EMPTY.items():
        if doc[name] is None:
            doc[name] = empty()
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def chain_hash(prev_hash: str, canonical_bytes: bytes) -> str:
    """The v1 (unkeyed) chain step."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_bytes).hexdigest()


def keyed_hash(secret: bytes, prev_hash: str, canonical_bytes: bytes) -> str:
    """The v2 chain step: HMAC-SHA256 under the chain key."""
    return hmac.new(secret, prev_hash.encode("ascii") + canonical_bytes, hashlib.sha256).hexdigest()


def event_hash(event: Mapping[str, Any] | Any) -> str:
    """The unkeyed (v1) hash of an event, given its own prev_hash: what someone without the
    chain key can compute (tests forge with it)."""
    return chain_hash(_get(event, "prev_hash"), canonical(event, CHAIN_V1))


def canonical_json(doc: dict[str, Any]) -> bytes:
    """A document's one byte form for signing (checkpoint and alarm lines)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def expected_hash(row: Mapping[str, Any] | Any, keyring: ChainKeyring) -> str | None:
    """The hash the event should carry; None when its key is not in the keyring."""
    version = chain_version(row)
    prev = row["prev_hash"] if isinstance(row, Mapping) else row.prev_hash
    if version == CHAIN_V1:
        return chain_hash(prev, canonical(row, CHAIN_V1))
    kid = row["key_id"] if isinstance(row, Mapping) else row.key_id
    key = keyring.get(kid)
    if key is None:
        return None
    return keyed_hash(key.secret, prev, canonical(row, version))


__all__ = [
    "canonical_json",
    "expected_hash",
    "CHAIN_FIELDS",
    "CHAIN_FIELDS_V2",
    "CHAIN_V1",
    "CHAIN_V2",
    "CURRENT_CHAIN_V",
    "chain_version",
    "keyed_hash",
    "GENESIS_HASH",
    "canonical",
    "chain_hash",
    "event_hash",
    "iso_utc",
    "normalise_json",
    "utc",
]
