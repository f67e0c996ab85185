"""The audit API: query the log, verify the chain, write a signed checkpoint. Reading the log
is itself audited. Events no tenant owns (unauthenticated attempts) are shown to platform
admins only (see warden.policy.authz.is_platform_admin)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from warden.api.deps import CurrentCaller, DbSession, State
from warden.audit import service
from warden.audit.checkpoints import Checkpointer, CheckpointStore
from warden.audit.keys import AuditKeyError
from warden.audit.outcomes import by
from warden.audit.schemas import (
    AuditEventOut,
    AuditEventsPage,
    AuditFilters,
    BrokenLinkOut,
    CheckpointOut,
    CheckpointSummaryOut,
    FindingOut,
    VerifyOut,
)
from warden.audit.service import Decision, record
from warden.core.platform import Platform
from warden.errors import AuditUnavailable, Forbidden, Unavailable, WardenError
from warden.identity.service import Caller, is_installation_tenant
from warden.policy.authz import allowed, is_platform_admin

log = logging.getLogger("warden.audit")
router = APIRouter(prefix="/v1/audit", tags=["audit"])

AUDIT_OBJECT = "sys:audit"


def authorise_auditor(
    state: Platform, caller: Caller, action: str, details: dict[str, Any]
) -> None:
    """Only callers the policy lets read `sys:audit` pass; refusals are audited too."""
    # on the freshest policy (authz.allowed): a revoked auditor must fail on the very next call
    if not allowed(state, caller, AUDIT_OBJECT, "read"):
        _audit(state, caller, action, "deny", details, reason="not an auditor")
        raise _audited(Forbidden("you may not read the audit log"))


def _audited(exc: WardenError) -> WardenError:
    exc.audited = True  # the refusal's own event is written: the edge does not count it again
    return exc


def _audit(
    state: Any,
    caller: Caller,
    action: str,
    decision: Decision,
    details: dict[str, Any],
    *,
    rows: int | None = None,
    reason: str | None = None,
) -> None:
    version = getattr(state.policy.current(), "version", None)
    policy_version = version if isinstance(version, int) else None
    record(
        state.sessions,
        by(caller, action, decision, policy_version=policy_version, rows=rows, reason=reason,
           details=details),
    )  # fmt: skip


@router.get("/events", response_model=AuditEventsPage)
def list_events(
    db: DbSession,
    caller: CurrentCaller,
    state: State,
    filters: Annotated[AuditFilters, Query()],
) -> AuditEventsPage:
    """Events of the caller's tenant, newest first; follow `next_cursor` for older ones.

    Only the installation's auditors see each event's place in the one chain (`seq`,
    `prev_hash`): see sees_whole_chain."""
    details = filters.details()
    authorise_auditor(state, caller, "audit.query", details)
    platform_admin = is_platform_admin(db, state, caller)
    whole_chain = sees_whole_chain(db, caller)
    events, next_cursor = service.query(
        db, tenant=caller.tenant, with_untenanted=platform_admin, **filters.model_dump()
    )
    _audit(state, caller, "audit.query", "allow", details, rows=len(events))
    return AuditEventsPage(
        events=[
            AuditEventOut.model_validate(service.event_dict(e, whole_chain=whole_chain))
            for e in events
        ],
        next_cursor=next_cursor,
    )


@router.post("/verify", response_model=VerifyOut)
def verify_chain(db: DbSession, caller: CurrentCaller, state: State) -> VerifyOut:
    """Walk the whole chain (all tenants: it is one chain) with its keys, hold it against every
    signed checkpoint, and report every finding by kind, plus the unprotected tail.

    The installation's auditors are told all of it; another tenant's auditor whether the chain
    holds and how many of its events it holds, and nothing that counts or names other
    tenants' events."""
    authorise_auditor(state, caller, "audit.verify", {})
    try:
        checkpoints = CheckpointStore.for_settings(state.settings).read()
    except (AuditKeyError, OSError) as exc:
        raise Unavailable(f"cannot read the audit checkpoints: {exc}") from exc
    result = service.verify(db, checkpoints=checkpoints)
    answer = (
        _whole_chain(result)
        if sees_whole_chain(db, caller)
        else _tenant_view(result, service.count_events(db, tenant=caller.tenant))
    )
    outcome: dict[str, Any] = {
        "ok": answer.ok,
        "scope": answer.scope,
        "checked": answer.checked,
        "head_seq": answer.head_seq,
        "kinds": sorted({f.kind for f in answer.findings}),
        "unprotected_events": answer.unprotected_events,
    }
    if answer.first_broken is not None:
        outcome["broken_seq"] = answer.first_broken.seq
    try:
        _audit(state, caller, "audit.verify", "allow", outcome, rows=answer.checked)
    except AuditUnavailable:
        # A chain too broken to append to (say, its head is gone) must still be reportable.
        if result.ok:
            raise
    return answer


def sees_whole_chain(db: Any, caller: Caller) -> bool:
    """Who, among auditors, sees where events stand in the one chain all tenants share (seqs,
    links, checkpoints, where it is broken): the installation's own (its platform admins and
    auditors, who run the deployment), not another tenant's, whose auditors would otherwise
    count or name other tenants' events."""
    return is_installation_tenant(db, caller.tenant)


def _whole_chain(result: service.VerifyResult) -> VerifyOut:
    broken = result.first_broken
    return VerifyOut(
        ok=result.ok,
        scope="chain",
        checked=result.checked,
        first_broken=BrokenLinkOut(seq=broken.seq, id=broken.id, reason=broken.reason)
        if broken
        else None,
        head_seq=result.head_seq,
        findings=[FindingOut(**asdict(f), severity=f.severity) for f in result.findings],
        key_ids=result.key_ids,
        checkpoints_checked=result.checkpoints_checked,
        checkpoint_file=result.checkpoint_file,
        newest_checkpoint=CheckpointSummaryOut(**vars(result.newest_checkpoint))
        if result.newest_checkpoint
        else None,
        unprotected_events=result.unprotected_events,
        unprotected_since=result.unprotected_since,
    )


def _tenant_view(result: service.VerifyResult, own_events: int) -> VerifyOut:
    """Whether the one chain holds, by kind of finding only: seqs, counts, ids and details
    would count or name other tenants' events (a finding's detail names principals, tokens,
    sandboxes); where the damage is, is the installation's auditors' to read."""
    kinds = {f.kind: f.severity for f in result.findings}
    where = {"tampering": "found in the chain", "note": "a note on the chain"}
    return VerifyOut(
        ok=result.ok,
        scope="tenant",
        checked=own_events,
        first_broken=None,
        head_seq=None,
        findings=[
            FindingOut(kind=kind, severity=severity, seq=None, last_seq=None, count=1, id=None,
                       detail=f"{where[severity]}; the installation's auditors can see where")
            for kind, severity in sorted(kinds.items())
        ],
    )  # fmt: skip


@router.post("/checkpoint", response_model=CheckpointOut)
def write_checkpoint(
    request: Request, db: DbSession, caller: CurrentCaller, state: State
) -> CheckpointOut:
    """Verify the chain since the last checkpoint and sign its head now (platform admins)."""
    if not is_platform_admin(db, state, caller):
        _audit(state, caller, "audit.checkpoint", "deny", {}, reason="not a platform admin")
        raise _audited(Forbidden("only platform admins may write audit checkpoints"))
    checkpointer = checkpointer_of(request.app, state)
    try:
        outcome = checkpointer.checkpoint_now(
            actor=caller.name, actor_kind=caller.kind, tenant=None
        )
    except (AuditKeyError, OSError) as exc:
        raise Unavailable(f"cannot write the audit checkpoint: {exc}") from exc
    cp = outcome.checkpoint
    findings = [
        FindingOut(
            kind=f.kind,
            severity=f.severity,
            seq=f.seq,
            last_seq=f.last_seq,
            count=f.count,
            id=f.id,
            detail=f.detail,
        )
        for f in outcome.findings
    ]
    if cp is None:
        decision: Decision = "error" if findings else "allow"
        details: dict[str, Any] = {"skipped": outcome.skipped} if outcome.skipped else {}
        if findings:
            details["refused"] = [f.kind for f in findings]
        _audit(state, caller, "audit.checkpoint", decision, details, reason=outcome.skipped)
    return CheckpointOut(
        written=cp is not None,
        n=cp.n if cp else None,
        seq=cp.seq if cp else None,
        hash=cp.hash if cp else None,
        ts=cp.ts if cp else None,
        store=cp.store if cp else None,
        event_seq=outcome.event_seq,
        skipped=outcome.skipped,
        findings=findings,
    )


def checkpointer_of(app: Any, state: Any) -> Checkpointer:
    """The process's checkpointer, or an on-demand one where it has none (its keys unreadable
    at start-up: this one then says why)."""
    process = getattr(app.state, "process", None)
    existing = getattr(process, "checkpointer", None)
    if isinstance(existing, Checkpointer):
        return existing
    made = Checkpointer(state, interval_s=0)
    if process is not None:
        process.checkpointer = made
    return made
