"""What the log shows each principal read raw, for the mixed-exposure check (policy/exposure.py).

Rules say what a subject may read today; a subject keeps what they read. Someone who read an
entity's identifiers raw and later sees them masked (narrowed, then granted a masked column
elsewhere) zips two reads of one version into a pseudonym dictionary. So every identifier or
entity column a `dataset.read` event shows returned unmasked counts as a raw place of its
reader: the person or service account that read, or the launcher of the job that did
(`on_behalf_of`). Only the chain's own events decide (keyed, at or below its head): a row
written in SQL adds no raw read, and a history holding an event that is not the chain's own
(one rewritten to show a raw column masked, or as an unkeyed event past the chain's unkeyed
start) refuses the change (AuditUnavailable, 503) instead of being skipped. A read of raw
identifiers is checkpointed at once (audit/anchor.py), and every process sharing the
checkpoint folder keeps those it saw anchored (from the object in hand, or met walking to a
newer checkpoint), and every process reads the signed list of those places beside the
checkpoints at start (audit/raw_ledger.py): they count whatever is later done to their rows,
moved out of the history included (another reader, dataset or action written over them, or
deleted), in a process started after them too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping, or_, select
from sqlalchemy.orm import Session

from warden.audit.anchor import anchor_for
from warden.audit.chain import CHAIN_V1, expected_hash
from warden.audit.keys import ChainKeyring, keys_for
from warden.audit.models import HEAD_ID, AuditEvent, AuditHead
from warden.db.per_engine import PerEngine
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
    these readers (default: every reader). AuditUnavailable (503, audited as a refusal) when
    their history holds an event that is not the chain's own."""
    columns: dict[tuple[str, str], set[str]] = {}
    for t, cols in catalog.items():
        for ic in cols:
            columns.setdefault((t, ic.dataset), set()).add(ic.column)
    if not columns:
        return {}
    table = AuditEvent.__table__
    top = db.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) or 0
    c = table.c
    held = anchor_for(db.get_bind())
    newest = held.newest() if held is not None else None
    # this process's verified history, kept only at or below a signed checkpoint
    history = _history(db.get_bind()) if names is not None and newest is not None else None
    wanted = sorted(set(names)) if names is not None else []
    asked = [(t, n, d) for (t, d) in columns for n in wanted]
    lo = min(history.through(asked)) if history is not None else 0
    query = select(table).where(
        c.action == "dataset.read",
        c.decision == "allow",
        c.tenant.in_(sorted(catalog)),
        c.dataset.in_(sorted({d for _, d in columns})),
        c.seq > lo,
        c.seq <= top,
    )
    if names is not None:
        query = query.where(or_(c.actor.in_(wanted), c.on_behalf_of.in_(wanted)))
    keys = keys_for(db.get_bind())
    unkeyed_until: int | None = None
    fresh: dict[HistoryKey, dict[tuple[str, str], tuple[str, int]]] = {}
    for event in db.connection().execute(query.order_by(c.seq)).mappings():
        reader = event["on_behalf_of"] or event["actor"]
        key = (event["tenant"], reader, event["dataset"])
        if history is not None and event["seq"] <= history.through([key])[0]:
            continue  # verified here before: what it showed is kept
        if event["chain_v"] == CHAIN_V1 and unkeyed_until is None:
            unkeyed_until = _unkeyed_until(db)
        if not _own(event, keys, unkeyed_until):
            refused = AuditUnavailable(
                f"audit event {event['id']} (seq {event['seq']}) of the read history of {reader!r}"
                " is not the chain's own; nothing that depends on it is decided until an operator"
                " runs `warden audit verify`"
            )
            refused.audit_refusal = True
            raise refused
        raw = set(event["columns"] or ()) - set(event["masked_columns"] or ())
        places = fresh.setdefault(key, {})
        for col in sorted(raw):
            places.setdefault((col, event["purpose"] or ""), (event["id"], event["seq"]))
    kept = (
        history.keep(asked, fresh, min(top, newest.seq))
        if history is not None and newest is not None
        else {}
    )
    # what this process saw anchored counts whatever its rows say now (audit/anchor.py)
    anchored: dict[HistoryKey, dict[tuple[str, str], str]] = {}
    for (t, r, d, col, purpose), event_id in (
        held.raw_reads_of(names).items() if held is not None else ()
    ):
        anchored.setdefault((t, r, d), {})[(col, purpose)] = event_id
    found: dict[str, dict[str, list[Place]]] = {}
    for key in sorted({*kept, *fresh, *anchored}):
        tenant, reader, dataset = key
        shown = {
            **anchored.get(key, {}),
            **{p: e for p, (e, _) in fresh.get(key, {}).items()},
            **kept.get(key, {}),
        }
        for (col, purpose), event_id in sorted(shown.items()):
            if col in columns.get((tenant, dataset), ()):
                place = Place(dataset, col, purpose, None, event=event_id)
                found.setdefault(tenant, {}).setdefault(reader, []).append(place)
    return found


# (tenant, reader, dataset)
HistoryKey = tuple[str, str, str]


class _History:
    """What this process verified of readers' histories: per (tenant, reader, dataset), the
    seq verified through and the (column, purpose) read raw, with the first event showing it.
    A reader keeps what they read, so a verified raw read stays counted whatever is done to its
    row later, and the next check reads only the events after it. Only events at or below a
    signed checkpoint are kept: the tail past it can still be cut and its seqs reused."""

    def __init__(self) -> None:
        self._through: dict[HistoryKey, int] = {}
        self._raw: dict[HistoryKey, dict[tuple[str, str], str]] = {}
        self._lock = threading.Lock()

    def through(self, keys: Sequence[HistoryKey]) -> list[int]:
        with self._lock:
            return [self._through.get(k, 0) for k in keys] or [0]

    def keep(
        self,
        asked: Sequence[HistoryKey],
        fresh: Mapping[HistoryKey, Mapping[tuple[str, str], tuple[str, int]]],
        anchored: int,
    ) -> dict[HistoryKey, dict[tuple[str, str], str]]:
        """Take what was verified up to `anchored` for the `asked` keys; what is kept for them."""
        with self._lock:
            for key in asked:
                raw = self._raw.setdefault(key, {})
                for place, (event_id, seq) in fresh.get(key, {}).items():
                    if seq <= anchored:
                        raw.setdefault(place, event_id)
                self._through[key] = max(self._through.get(key, 0), anchored)
            return {k: dict(self._raw[k]) for k in asked if self._raw.get(k)}


_histories: PerEngine[_History] = PerEngine()


def _history(bind: Any) -> _History:
    return _histories.get(getattr(bind, "engine", bind), _History)


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
