"""What the log shows each principal read raw, for the mixed-exposure check (policy/exposure.py).

Rules say what a subject may read today; a subject keeps what they read. Someone who read an
entity's identifiers raw and later sees them masked (narrowed, then granted a masked column
elsewhere) zips two reads of one version into a pseudonym dictionary. So every identifier or
entity column a `dataset.read` event shows returned unmasked counts as a raw place of its
reader: the person or service account that read, or the launcher of the job that did
(`on_behalf_of`). Only the chain's own events count (keyed, at or below its head): a row
written in SQL adds no raw read, so it cannot make someone's approvals fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from warden.audit.chain import CHAIN_V1, expected_hash
from warden.audit.keys import keys_for
from warden.audit.models import HEAD_ID, AuditEvent, AuditHead
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
    light = [c.seq, c.tenant, c.dataset, c.purpose, c.actor, c.on_behalf_of, c.columns,
             c.masked_columns]  # fmt: skip
    query = select(*light).where(
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
    found: dict[str, dict[str, list[Place]]] = {}
    seen: set[tuple[str, str, str, str, str]] = set()
    for row in db.connection().execute(query.order_by(c.seq)).all():
        seq, tenant, dataset, purpose, actor, behalf, shown, masked = row
        reader = behalf or actor
        raw = set(shown or ()) - set(masked or ())
        new = [
            (tenant, reader, dataset, col, purpose or "")
            for col in sorted(raw & columns[(tenant, dataset)])
            if (tenant, reader, dataset, col, purpose or "") not in seen
        ]
        if not new:  # masked only, or nothing this reader was not already known to read
            continue
        event = db.connection().execute(select(table).where(c.seq == seq)).mappings().one()
        if event["chain_v"] == CHAIN_V1 or event["hash"] != expected_hash(event, keys):
            continue  # not the chain's own: it adds no raw read
        for key in new:
            seen.add(key)
            place = Place(dataset, key[3], key[4], None, event=event["id"])
            found.setdefault(tenant, {}).setdefault(reader, []).append(place)
    return found
