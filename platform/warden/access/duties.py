"""Separation of duties, for access requests and reviewed changes alike.

Whose reading a request or change widens are its *beneficiaries*: the requester (or the
principals a rule reaches, directly or through a role they hold), plus whoever owns or
created any of them, since a principal you created or own is a way to read for yourself.
An approval (or a sign-off) never counts when it comes from
- the requester or proposer, or a token either of them (or a beneficiary) issued;
- a beneficiary;
- a principal the requester, the proposer or a beneficiary owns or created;
- anything that is not a person (service accounts and job tokens never review).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warden.access.present import aware
from warden.audit.keys import ChainKeyring, derived_mac, keys_for
from warden.db.sealed import RowTampered, check
from warden.errors import Conflict, Forbidden
from warden.identity.models import Principal, Tenant
from warden.identity.revocations import revocations_for
from warden.identity.service import Caller
from warden.policy.engine import PolicySnapshot


def require_human(caller: Caller, verb: str) -> None:
    """Reviewers are people: service accounts and job tokens never review, approve, sign
    off or break glass."""
    if caller.kind != "person":
        raise Forbidden(f"reviewers are people: a {caller.kind} principal may not {verb}")


@dataclass(frozen=True)
class Party:
    id: str
    name: str
    kind: str
    owner_id: str | None
    created_by_id: str | None
    disabled: bool = False
    tenant: str = ""

    def as_caller(self) -> Caller:
        """This principal as a caller, to ask whether it may still review."""
        return Caller(self.name, self.kind, self.tenant, self.id)


def _parties(db: Session, ids: Iterable[str]) -> dict[str, Party]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = db.execute(
        select(Principal, Tenant.name)
        .join(Tenant, Tenant.id == Principal.tenant_id)
        .where(Principal.id.in_(wanted))
    ).all()
    # who keeps whom decides who may approve: a row edited in SQL decides nothing (503)
    return {
        p.id: Party(p.id, p.name, p.kind, p.owner_id, p.created_by_id, p.disabled, tenant)
        for p, tenant in ((check(db, row), tenant) for row, tenant in rows)
    }


def reads_as(db: Session, ids: Iterable[str]) -> set[str]:
    """Who may read as one of `ids`: itself, and the owner of a service account (who mints
    its tokens; anyone else's token for it is held for review)."""
    direct = set(ids)
    return direct | {p.owner_id for p in _parties(db, direct).values() if p.owner_id}


def widen_to_keepers(db: Session, direct_ids: Iterable[str]) -> set[str]:
    """The direct beneficiaries plus the owners and creators of each (one level: whoever
    holds a principal's keys benefits from what it may read)."""
    direct = set(direct_ids)
    keepers = {k for p in _parties(db, direct).values() for k in (p.owner_id, p.created_by_id) if k}
    return direct | keepers


def reached_by(
    db: Session, snapshot: PolicySnapshot, tenant_id: str, tenant: str, subjects: Iterable[str]
) -> set[str]:
    """Ids of the tenant's principals that are, or hold (transitively), one of `subjects`."""
    wanted = set(subjects)
    if not wanted:
        return set()
    rows = db.scalars(select(Principal).where(Principal.tenant_id == tenant_id))
    # names decide whom a rule reaches: a principal renamed in SQL decides nothing (503)
    return {
        p.id
        for p in (check(db, row) for row in rows)
        if wanted.intersection(snapshot.subjects(p.name, tenant))
    }


def refuse_conflict(
    db: Session, caller: Caller, origin_id: str, beneficiary_ids: Iterable[str], what: str
) -> None:
    """Forbidden unless `caller` may approve `what`, raised by `origin_id` (requester or
    proposer) and benefiting `beneficiary_ids` (already widened to their keepers)."""
    require_human(caller, f"approve or sign off {what}")
    if caller.principal_id == origin_id:
        raise Forbidden(f"whoever asks never approves their own {what}, whatever their roles")
    involved = {origin_id, *beneficiary_ids}
    if caller.principal_id in involved:
        raise Forbidden(f"{caller.name} benefits from this {what} and may not approve it")
    me = _parties(db, [caller.principal_id]).get(caller.principal_id)
    if me is not None and ({me.owner_id, me.created_by_id} & involved):
        raise Forbidden(
            f"{caller.name} was created or is owned by someone this {what} benefits;"
            " such approvals never count"
        )
    issuer = caller.token_issuer_id
    if issuer is not None and issuer != caller.principal_id and issuer in involved:
        raise Forbidden(
            f"this token of {caller.name} was issued by someone this {what} benefits; approve"
            " with a token you issued yourself"
        )


def counting(
    db: Session,
    reviewer_ids: Iterable[str],
    origin_id: str,
    beneficiary_ids: Iterable[str],
    may_review: Callable[[Caller], bool],
) -> set[str]:
    """Of these reviewers, those whose approval counts now: enabled people who still hold the
    review right (`may_review`), not the origin, not a beneficiary, not created or owned by
    either. Checked again when a quorum is counted, so a review row written past the API, a
    reviewer since made a beneficiary, disabled or stripped of the right, never counts."""
    involved = {origin_id, *beneficiary_ids}
    return {
        p.id
        for p in _parties(db, reviewer_ids).values()
        if p.kind == "person"
        and not p.disabled
        and p.id not in involved
        and not ({p.owner_id, p.created_by_id} & involved)
        and may_review(p.as_caller())
    }


def review_seal(keys: ChainKeyring, reviewer_id: str, decision: str, scope: Sequence[Any]) -> str:
    """A keyed MAC of who decided what on exactly which `scope` (the request's or change's
    id and terms): a review row written in SQL, or one whose request was edited since,
    does not carry the right one, so it never counts."""
    return derived_mac(
        keys, b"review", json.dumps([reviewer_id, decision, *scope], sort_keys=True, default=str)
    )


def add_review(
    db: Session,
    caller: Caller,
    reviews: Sequence[Any],
    review_of: Any,
    what: str,
    origin_id: str,
    beneficiary_ids: Iterable[str],
    decision: str,
    comment: str,
    now: datetime,
    scope: Sequence[Any],
    may_review: Callable[[Caller], bool],
) -> set[str]:
    """Write `caller`'s review of `what` (e.g. "request ar_1"), built by `review_of(**fields)`
    and sealed over `scope`; a reviewer counts once. Returns the approvals that count
    towards the quorum now: sealed over the same scope, by people still eligible (see
    `counting`; `may_review` says who holds the review right now)."""
    if any(r.reviewer_id == caller.principal_id for r in reviews):
        raise Conflict(f"{caller.name} already reviewed {what}; a reviewer counts once")
    keys = keys_for(db.get_bind())
    db.add(
        review_of(
            reviewer_id=caller.principal_id,
            reviewer=caller.name,
            decision=decision,
            comment=comment,
            created_at=now,
            seal=review_seal(keys, caller.principal_id, decision, scope),
        )
    )
    try:
        db.flush()
    except IntegrityError:
        raise Conflict(f"{caller.name} already reviewed {what}") from None
    approvals = {
        r.reviewer_id
        for r in reviews
        if r.decision == "approve"
        and hmac.compare_digest(r.seal or "", review_seal(keys, r.reviewer_id, "approve", scope))
    }
    if decision == "approve":
        approvals.add(caller.principal_id)
    return approvals & counting(db, approvals, origin_id, beneficiary_ids, may_review)


def check_pending(db: Session, now: datetime, row: Any, what: str, verb: str, one: str) -> None:
    """Conflict unless `row` (`what`, e.g. "request ar_1") is pending and not yet expired;
    `one` names it in "only a pending <one> can be <verb>". RowTampered when the log says it
    was resolved: a row written back to pending in SQL, seal and all, would count its old
    approvals again (identity/revocations.py)."""
    if row.state == "pending" and now >= aware(row.pending_until):
        raise Conflict(f"{what} expired while pending; it can no longer be {verb}")
    if row.state != "pending":
        raise Conflict(f"{what} is {row.state}; only a pending {one} can be {verb}")
    if row.id in revocations_for(db).refresh(db).resolved:
        raise RowTampered(
            f"{what} says pending, but the audit log says it was resolved: it was written back"
            " past Warden, and is never reviewed again"
        )


def check_awaiting_sign_off(row: Any, what: str) -> None:
    """Conflict unless `row` (a grant or change, `what`) is break-glass and not signed off."""
    if not row.break_glass:
        raise Conflict(f"{what} {row.id} is not a break-glass {what}")
    if not row.needs_review:
        raise Conflict(f"{what} {row.id} was already signed off by {row.signed_off_by}")
