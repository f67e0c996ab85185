"""What the log shows each principal read raw, for the mixed-exposure check (policy/exposure.py).

Rules say what a subject may read today; a subject keeps what they read. Someone who read an
entity's identifiers raw and later sees them masked (narrowed, then granted a masked column
elsewhere) zips two reads of one version into a pseudonym dictionary. So every identifier or
entity column a `dataset.read` event shows returned unmasked counts as a raw place of its
reader: the person or service account that read, or the launcher of the job that did
(`on_behalf_of`). Only the chain's own events decide (keyed, at or below its head): a row
written in SQL adds no raw read, and a history holding an event that is not the chain's own
(one rewritten to show a raw column masked, or as an unkeyed event past the chain's unkeyed
start) refuses the change (AuditUnavailable, 503) instead of being skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import RowMapping, or_, select
from sqlalchemy.orm import Session

from warden.audit.anchor import anchor_for
from warden.audit.chain import CHAIN_V1, expected_hash
from warden.audit.keys import ChainKeyring, keys_for
from warden.audit.models import HEAD_ID, AuditEvent, AuditHead
from warden.errors import AuditUnavailable
from warden.policy.places import IdColumn, Place

# tenant -> reader -> the places the log shows them reading raw
RawReads = Mapping[str, Mapping[str, Sequence[Place]]]


def logged_raw_reads(
    db: Session,
    catalog: Mapping[str, Sequence[IdColumn]],
    names: Iterable[str] | None = None,
) -> dict[str, dict[str, list[Place]]]:
    """Per tenant of `catalog`, reader -> a place per (dataset, column, purpose) of its
    columns the log shows them reading raw (the first genuine event that did). `names`: only
    these readers (default: every reader)."""
    columns: dict[tuple[str, str], set[str]] = {}
    for t, cols in catalog.items():
        for ic in cols:
            columns.setdefault((t, ic.dataset), set()).add(ic.column)
    if not columns:
        return {}
    table = AuditEvent.__table__
    top = db.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) or 0
    c = table.c
    query = select(table).where(
        c.action == "dataset.read",
        c.decision == "allow",
        c.tenant.in_(sorted(catalog)),
        c.dataset.in_(sorted({d for _, d in columns})),
        c.seq <= top,
    )
    if names is not None:
        wanted = sorted(set(names))
        query = query.where(or_(c.actor.in_(wanted), c.on_behalf_of.in_(wanted)))
    keys = keys_for(db.get_bind())
    unkeyed_until: int | None = None
    found: dict[str, dict[str, list[Place]]] = {}
    seen: set[tuple[str, str, str, str, str]] = set()
    for event in db.connection().execute(query.order_by(c.seq)).mappings():
        if event["chain_v"] == CHAIN_V1 and unkeyed_until is None:
            unkeyed_until = _unkeyed_until(db)
        if not _own(event, keys, unkeyed_until):
            reader = event["on_behalf_of"] or event["actor"]
            refused = AuditUnavailable(
                f"audit event {event['id']} (seq {event['seq']}) of the read history of {reader!r}"
                " is not the chain's own; nothing that depends on it is decided until an operator"
                " runs `warden audit verify`"
            )
            refused.audit_refusal = True
            raise refused
        tenant, dataset, purpose = event["tenant"], event["dataset"], event["purpose"] or ""
        reader = event["on_behalf_of"] or event["actor"]
        raw = set(event["columns"] or ()) - set(event["masked_columns"] or ())
        for col in sorted(raw & columns[(tenant, dataset)]):
            key = (tenant, reader, dataset, col, purpose)
            if key not in seen:
                seen.add(key)
                place = Place(dataset, col, purpose, None, event=event["id"])
                found.setdefault(tenant, {}).setdefault(reader, []).append(place)
    return found


def _own(event: RowMapping, keys: ChainKeyring, unkeyed_until: int | None) -> bool:
    """Whether an event is the chain's own: its hash the chain step's, and unkeyed only where
    the chain was (an event rewritten as unkeyed needs no key to hash)."""
    if event["chain_v"] == CHAIN_V1 and event["seq"] > (unkeyed_until or 0):
        return False
    return bool(event["hash"] == expected_hash(event, keys))


def _unkeyed_until(db: Session) -> int:
    """The last seq of the chain's unkeyed start: as the newest signed checkpoint records it,
    else the event before the first keyed one."""
    held = anchor_for(db.get_bind())
    newest = held.newest() if held is not None else None
    if newest is not None:
        return newest.v1_until
    c = AuditEvent.__table__.c
    first = db.scalar(select(c.seq).where(c.chain_v != CHAIN_V1).order_by(c.seq).limit(1))
    return int(first) - 1 if first is not None else 0
