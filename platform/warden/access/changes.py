"""Reviewed changes: whatever widens what anyone can read is proposed by one person and takes
effect only once someone else approves it; narrowing changes take effect at once, audited.
(Kept over 500 lines: proposing, reviewing, applying and recording a change share one state
machine and one set of separation-of-duties checks; split, they would drift apart.)

Kinds of change (each applied by its own function when approved):
- rules: Casbin rules to add and remove (policy rules, role links, role assignments, the roles
  of a new principal). `warden.policy.changes.assess` decides widening, conservatively;
- settings: a dataset's access terms (quorum, maximum duration), within the class floors;
- token: a token minted for someone else (`propose_token`), refused until approved;
- classification: a dataset's class lowered. The catalog registers its applier with
  `register_kind("classification", ...)` and proposes with `propose_classification`.

The same machinery as access requests: a state (pending → applied | denied | cancelled |
expired), reviews (a reviewer counts once, one deny rejects, a quorum of approvals applies),
transition rows, audit events in the same transaction, webhooks. Separation of duties is
`warden.access.duties`: never the proposer, never a beneficiary, never a principal either of
them owns or created, never a service account or job. Break-glass applies a widening change at
once, flagged in every audit event, and leaves it "needs review" until such a person signs it
off. Services never commit; routes commit, then reload the policy when it moved.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from warden.access import repository as repo
from warden.access import terms as terms_mod
from warden.access.duties import (
    add_review,
    check_awaiting_sign_off,
    check_pending,
    reached_by,
    reads_as,
    refuse_conflict,
    require_human,
    widen_to_keepers,
)
from warden.access.events import Actor, actor_of, notify, transition
from warden.access.ids import CHANGE_PREFIX, new_id
from warden.access.models import AccessTransition, ChangeReview, ReviewedChange
from warden.access.present import approvers, aware, body_of, history_out, reviews_out
from warden.access.rights import ACCESS_OBJECT, BREAK_GLASS_OBJECT, people_who
from warden.access.schemas import ChangeOut, SettingsUpdate, format_duration
from warden.catalog.service import load_view
from warden.core.platform import Platform
from warden.db.sealed import check
from warden.errors import Conflict, Forbidden, NotFound, PolicyUnavailable, Unprocessable
from warden.identity.models import ApiToken, Principal, Tenant
from warden.identity.service import Caller, get_tenant, seal_token
from warden.policy import exposure, oversight, store
from warden.policy.authz import allowed
from warden.policy.changes import apply_change, assess, run_checks
from warden.policy.engine import PolicySnapshot
from warden.policy.reads import require_visible
from warden.policy.rules import Rule, RuleError, format_rule, rule_problems, split_line

POLICY_OBJECT = "sys:policy"
PRINCIPALS_OBJECT = "sys:principals"

# Applies an approved (or break-glass) change as `actor`; returns the new policy version if
# the rules moved, else None. Raises a WardenError to refuse (nothing is then applied).
Applier = Callable[[Session, Platform, Caller, ReviewedChange], "int | None"]
_APPLIERS: dict[str, Applier] = {}


def register_kind(kind: str, applier: Applier) -> None:
    """Let another domain add a kind of reviewed change (e.g. "classification")."""
    _APPLIERS[kind] = applier


@dataclass
class ChangeOutcome:
    """What a call did: a change applied now (narrowing or break-glass) or proposed."""

    change: ReviewedChange | None = None
    applied: bool = False
    policy_version: int | None = None
    policy_changed: bool = False
    added: int = 0
    removed: int = 0


# ---------------------------------------------------------------------------------------------
# Rules


def parse_rules(lines: Sequence[str], tenant: str) -> list[Rule]:
    """Parse rule lines of the caller's tenant; 422 naming the first bad one."""
    return [_parse(line, tenant) for line in lines]


def _parse(line: str, tenant: str) -> Rule:
    tokens = split_line(line)
    if not tokens:
        raise Unprocessable(f"empty rule line {line[:80]!r}")
    ptype, fields = tokens[0], tuple(tokens[1:])
    if problems := rule_problems(ptype, fields):
        raise Unprocessable(f"rule {line[:120]!r}: {'; '.join(problems)}")
    if _domain(ptype, fields) != tenant:
        raise Unprocessable(f"rule {line[:120]!r} is for another tenant than {tenant!r}")
    return ptype, fields


def _domain(ptype: str, fields: tuple[str, ...]) -> str:
    return fields[2] if ptype == "g" else fields[1]


def _refuse_bypass(rule: Rule, actor: str) -> None:
    """Rule editing is no way around reviews: no grants, and nothing for the editor."""
    ptype, fields = rule
    if ptype == "p" and (fields[7] or fields[8]):
        raise Forbidden("grants come only from reviewed access requests (/v1/access)")
    if ptype in ("p", "g") and fields[0] == actor:
        raise Forbidden("a rule for yourself needs someone else: no self-granted rights")


def _refuse_filters_on_yourself(
    db: Session,
    snapshot: PolicySnapshot,
    caller: Caller,
    add: Sequence[Rule],
    remove: Sequence[Rule],
    stored: Sequence[Rule],
) -> None:
    """A row filter narrows, so it applies at once; but on a reader it is an oracle: they see
    which rows match a value they may not (a masked identifier, a denied column). So a
    change that brings a filter to its author's reading (a new filter reaching them by name,
    a role they hold, or a principal they own or created; or a role link bringing them or
    such a principal under an existing filter) is someone else's to make."""
    new = {f[0] for p, f in add if p == "p2" and f[1] == caller.tenant}
    old = {f[0] for p, f in stored if p == "p2" and f[1] == caller.tenant} - new
    links = [r for r in [*add, *remove] if r[0].startswith("g")]
    if not new and not (old and links):
        return
    tenant = get_tenant(db, caller.tenant)
    delta = [*(("remove", r) for r in remove), *(("add", r) for r in add)]
    after = snapshot.with_changes(delta, version=snapshot.version)
    reached = reached_by(db, after, tenant.id, tenant.name, new)
    mine = caller.principal_id in widen_to_keepers(db, reached)
    if old and links:
        # Only whom the caller reads as counts here (themselves, a service account they own
        # and so hold the tokens of): creating people and giving them roles is everyday work.
        newly = reached_by(db, after, tenant.id, tenant.name, old)
        newly -= reached_by(db, snapshot, tenant.id, tenant.name, old)
        mine = mine or caller.principal_id in reads_as(db, newly)
    if mine:
        raise Forbidden(
            "a row filter that applies to you once this change is made (or to a principal you"
            " own or created) needs someone else: it would show you which rows match values"
            " you may not read"
        )


def change_rules(
    db: Session,
    state: Platform,
    caller: Caller,
    *,
    add: Sequence[Rule],
    remove: Sequence[Rule],
    reason: str,
    break_glass: bool = False,
    right: str = POLICY_OBJECT,
) -> ChangeOutcome:
    """Apply a narrowing change now; propose a widening one (or apply it as break-glass).
    The policy store must answer: if it cannot, nothing is decided (PolicyUnavailable)."""
    if caller.kind == "job" or not allowed(state, caller, right, "manage"):
        raise Forbidden(f"{caller.name} may not manage {right.removeprefix('sys:')}")
    if not add and not remove:
        raise Unprocessable("a change adds or removes at least one rule")
    for rule in [*add, *remove]:
        _refuse_bypass(rule, caller.name)
    snapshot = state.policy.ensure_fresh()
    stored = _stored_rules(db)
    _refuse_filters_on_yourself(db, snapshot, caller, add, remove, stored)
    assessment = assess(stored, add, remove)
    run_checks(db, add, remove)
    lines = {"add": [format_rule(*r) for r in add], "remove": [format_rule(*r) for r in remove]}
    try:
        after = snapshot.with_changes(
            [*(("remove", r) for r in remove), *(("add", r) for r in add)],
            version=snapshot.version,
        )
    except RuleError as exc:
        raise Unprocessable(f"invalid rule: {exc}") from None
    # narrowing, yet an oracle or one person stripping another's oversight: a second person
    held = oversight.review_reasons(db, snapshot, after, caller.tenant, caller.name, add,
                                    state.now())  # fmt: skip
    if not assessment.is_widening and not held:
        version = apply_change(
            db, caller, add=add, remove=remove, reason=reason, details={"mode": "narrowing"}
        )
        return ChangeOutcome(None, True, version, True, len(add), len(remove))
    if break_glass and held:
        raise Forbidden(
            "break-glass applies widening changes only: this change needs another person's"
            f" approval first ({held[0]})"
        )
    _refuse_mixed_exposure(db, add, remove)
    tenant = get_tenant(db, caller.tenant)
    direct = reached_by(db, snapshot, tenant.id, tenant.name, assessment.subjects)
    direct |= reached_by(db, after, tenant.id, tenant.name, assessment.subjects)
    if break_glass:
        _refuse_break_glass_for_yourself(db, state, caller, direct)
    summary = f"{len(add)} rule(s) to add, {len(remove)} to remove"
    change = _new_change(
        db,
        state,
        caller,
        kind="rules",
        payload=lines,
        summary=summary,
        widening=[*assessment.widening, *held],
        direct=direct,
        reason=reason,
        break_glass=break_glass,
    )
    if not break_glass:
        return ChangeOutcome(change)
    applied = _apply(db, state, caller, change)
    return ChangeOutcome(change, True, applied, True, len(add), len(remove))


def _refuse_break_glass_for_yourself(
    db: Session, state: Platform, caller: Caller, direct: set[str]
) -> None:
    """A policy break-glass applies before anyone else looks, so it is an emergency right
    (`sys:break_glass`, as an access break-glass is) and never widens its author's own
    reading: not by name, not through a role they hold, not through a principal they own or
    created. That needs the ordinary review (someone else approves)."""
    if not allowed(state, caller, BREAK_GLASS_OBJECT, "manage"):
        raise Forbidden(f"{caller.name} may not break glass (`sys:break_glass`)")
    if caller.principal_id in widen_to_keepers(db, direct):
        raise Forbidden(
            "a break-glass change that widens what you (or a principal you own or created)"
            " may read needs someone else: propose it without break-glass and have it approved"
        )


def _stored_rules(db: Session) -> list[Rule]:
    """Every stored rule; PolicyUnavailable (deny, change nothing) if the store can't say."""
    try:
        return store.load_rules(db)[1]
    except (SQLAlchemyError, ValueError) as exc:
        raise PolicyUnavailable(f"policy store unreachable: {exc.__class__.__name__}") from None


def _refuse_mixed_exposure(db: Session, add: Sequence[Rule], remove: Sequence[Rule]) -> None:
    """Refuse a proposal now, not at approval, if applying it would expose one entity's
    identifiers raw and masked to one subject: tried in a savepoint that is rolled back."""
    trial = db.begin_nested()
    try:
        store.add_rules(db, add)
        store.remove_rules(db, remove)
        mixed = exposure.change_problems(db, add, remove)
    except RuleError as exc:
        raise Unprocessable(f"invalid rule: {exc}") from None
    finally:
        trial.rollback()
    if mixed:
        raise Forbidden(exposure.describe(mixed))


def _apply_rules(db: Session, state: Platform, actor: Caller, change: ReviewedChange) -> int:
    add = parse_rules(change.payload.get("add", []), actor.tenant)
    remove = parse_rules(change.payload.get("remove", []), actor.tenant)
    return apply_change(
        db,
        actor,
        add=add,
        remove=remove,
        reason=change.reason,
        details=_flags(change) | {"mode": "break_glass" if change.break_glass else "reviewed"},
    )


# ---------------------------------------------------------------------------------------------
# A dataset's access terms


def update_terms(
    db: Session, state: Platform, caller: Caller, name: str, body: SettingsUpdate
) -> tuple[terms_mod.Terms, ChangeOutcome]:
    """Set a dataset's overrides (its owner, or sys:access manage), within the class floors.
    Raising a quorum or shortening a maximum applies at once; anything else is proposed."""
    if caller.kind == "job":
        raise Forbidden("job tokens cannot request, review or change access")
    view = load_view(db, state.settings.datasets_dir, caller.tenant, name)
    require_visible(state, caller, view)
    if caller.name != view.owner and not allowed(state, caller, ACCESS_OBJECT, "manage"):
        raise Forbidden(f"only the owner of {view.name!r} or an access admin may change its terms")
    values: dict[str, int | None] = {}
    if "quorum" in body.model_fields_set:
        values["quorum"] = body.quorum
    if "max_duration" in body.model_fields_set:
        values["max_duration_s"] = body.max_duration
    before = terms_mod.terms_of(db, view, state.settings)
    after = terms_mod.preview(db, view, state.settings, values)  # 422 outside the floors
    widening = []
    if after.quorum < before.quorum:
        widening.append(f"quorum of {view.name} from {before.quorum} down to {after.quorum}")
    if after.max_duration_s > before.max_duration_s:
        widening.append(
            f"maximum duration of {view.name} from {format_duration(before.max_duration_s)}"
            f" up to {format_duration(after.max_duration_s)}"
        )
    payload = {"dataset": view.name, "dataset_id": view.id, "values": values}
    if not widening:
        done = terms_mod.set_terms(db, state, caller, view, values, {"mode": "narrowing"})
        return done, ChangeOutcome(None, True)
    change = _new_change(
        db,
        state,
        caller,
        kind="settings",
        payload=payload,
        summary=f"access terms of {view.name}: " + "; ".join(widening),
        widening=widening,
    )
    return before, ChangeOutcome(change)


def _apply_settings(db: Session, state: Platform, actor: Caller, change: ReviewedChange) -> None:
    view = load_view(db, state.settings.datasets_dir, actor.tenant, change.payload["dataset"])
    if view.id != change.payload.get("dataset_id"):
        raise Conflict(f"dataset {view.name!r} is not the one this change was proposed for")
    terms_mod.set_terms(db, state, actor, view, change.payload["values"], _flags(change))
    return None


# ---------------------------------------------------------------------------------------------
# A dataset's class lowered (applied by the catalog's registered applier)


def propose_classification(
    db: Session, state: Platform, caller: Caller, dataset: str, to_class: str, reason: str
) -> ChangeOutcome:
    """Propose lowering a dataset's class; the catalog's applier (registered under
    "classification") applies it once approved. Without an applier nothing can lower a
    class, so this refuses rather than leave a change that can never apply."""
    if "classification" not in _APPLIERS:
        raise Conflict("lowering a dataset's class is not available on this server")
    view = load_view(db, state.settings.datasets_dir, caller.tenant, dataset)
    require_visible(state, caller, view)
    change = _new_change(
        db,
        state,
        caller,
        kind="classification",
        payload={
            "dataset": view.name,
            "dataset_id": view.id,
            "from": view.classification,
            "to": to_class,
        },  # fmt: skip
        summary=f"class of {view.name} from {view.classification} down to {to_class}",
        widening=[f"class of {view.name} lowered: lower quorum and longer grants"],
        reason=reason,
    )
    return ChangeOutcome(change)


def needs_second_person(caller: Caller, principal: Principal) -> bool:
    """A token for yourself, or for a service account you answer for, is yours to mint. Any
    other token lets its issuer act as someone else, with their grants: a reviewed change."""
    own = principal.id == caller.principal_id
    answerable = principal.kind == "service" and principal.owner_id == caller.principal_id
    return not (own or answerable)


def propose_token(
    db: Session, state: Platform, caller: Caller, principal: Principal, token: ApiToken
) -> ChangeOutcome:
    """Hold a token minted for someone else until a second person approves: until then it
    authenticates nothing (identity.service.authenticate), so no admin reads as another
    person, or as their service account, alone. Refused at once if holding it would show
    the minter one entity's identifiers both raw and pseudonymised (policy/exposure.py)."""
    if principal.kind == "service":
        _refuse_holding(db, caller.tenant, caller.name, principal.name)
    change = _new_change(
        db,
        state,
        caller,
        kind="token",
        payload={"token_id": token.id, "principal": principal.name, "label": token.label},
        summary=f"a token for {principal.name}, held by {caller.name} who minted it",
        widening=[f"{caller.name} may act as {principal.name}, with all of their access"],
        direct={principal.id},
        reason=f"token for {principal.name}" + (f" ({token.label})" if token.label else ""),
    )
    token.pending_change_id = change.id
    seal_token(db, token)
    return ChangeOutcome(change)


def _apply_token(db: Session, state: Platform, actor: Caller, change: ReviewedChange) -> None:
    token = db.get(ApiToken, change.payload.get("token_id"))
    if token is None or token.pending_change_id != change.id:
        raise Conflict(f"change {change.id} holds no pending token")
    holder = db.get(Principal, token.issued_by_id) if token.issued_by_id else None
    speaks_for = db.get(Principal, token.principal_id)
    if holder is not None and speaks_for is not None and speaks_for.kind == "service":
        _refuse_holding(db, actor.tenant, holder.name, speaks_for.name)  # what changed since
    token.pending_change_id = None
    seal_token(db, token)


def _refuse_holding(db: Session, tenant: str, holder: str, principal: str) -> None:
    if mixed := exposure.holder_problems(db, tenant, holder, principal):
        raise Forbidden(exposure.describe(mixed))


register_kind("rules", _apply_rules)
register_kind("settings", _apply_settings)
register_kind("token", _apply_token)


# ---------------------------------------------------------------------------------------------
# The workflow


def _new_change(
    db: Session,
    state: Platform,
    caller: Caller,
    *,
    kind: str,
    payload: Mapping[str, Any],
    summary: str,
    widening: list[str],
    direct: Collection[str] = (),
    reason: str = "",
    break_glass: bool = False,
) -> ReviewedChange:
    """A change proposed by `caller` (applied at once if `break_glass`), recorded and
    announced; `direct`: the principal ids it benefits besides the proposer."""
    tenant = get_tenant(db, caller.tenant)
    if break_glass:
        require_human(caller, "break glass")
        if not reason.strip():
            raise Unprocessable("a break-glass change needs a reason")
    now = state.now()
    # The proposer is always among those it benefits: their keepers never approve either.
    beneficiaries = widen_to_keepers(db, {*direct, caller.principal_id})
    change = ReviewedChange(
        id=new_id(CHANGE_PREFIX),
        tenant_id=tenant.id,
        kind=kind,
        payload=dict(payload),
        summary=summary[:2000],
        widening=widening[:200],
        beneficiary_ids=sorted(beneficiaries),
        proposer_id=caller.principal_id,
        proposer=caller.name,
        reason=reason,
        quorum=state.settings.change_quorum,
        state="applied" if break_glass else "pending",
        created_at=now,
        pending_until=now + timedelta(hours=state.settings.access_pending_ttl_hours),
        resolved_at=now if break_glass else None,
        break_glass=break_glass,
        needs_review=break_glass,
    )
    db.add(change)
    db.flush()
    actor = actor_of(caller)
    if break_glass:
        record_change(db, state, actor, tenant, change, "break_glass", None, "applied",
                      reason=reason)  # fmt: skip
        _notify(db, state, tenant, "policy.change.break_glass", change, caller.name)
    else:
        record_change(db, state, actor, tenant, change, "proposed", None, "pending",
                      reason=reason)  # fmt: skip
        _notify(db, state, tenant, "policy.change.proposed", change, caller.name)
    return change


def _flags(change: ReviewedChange) -> dict[str, Any]:
    return {"change_id": change.id, "proposed_by": change.proposer,
            "break_glass": change.break_glass}  # fmt: skip


def _apply(db: Session, state: Platform, actor: Caller, change: ReviewedChange) -> int | None:
    applier = _APPLIERS.get(change.kind)
    if applier is None:
        raise Conflict(f"no way to apply a {change.kind!r} change on this server")
    version = applier(db, state, actor, change)
    change.policy_version = version
    return version


def may_review_changes(state: Platform, caller: Caller) -> bool:
    """Holders of sys:policy manage (not "review": stewards review every object by wildcard,
    datasets and sys:* alike); only ever people."""
    return caller.kind == "person" and allowed(state, caller, POLICY_OBJECT, "manage")


def _load(
    db: Session, state: Platform, caller: Caller, change_id: str, *, lock: bool = False
) -> tuple[Tenant, ReviewedChange]:
    """A change of the caller's tenant, visible to its proposer and to those who may read or
    review policy; 404 otherwise."""
    if caller.kind == "job":
        raise Forbidden("job tokens take no part in policy changes")
    tenant = get_tenant(db, caller.tenant)
    row = repo.find_change(db, change_id[:32], tenant.id, lock=lock)
    if row is None or not (
        row.proposer_id == caller.principal_id
        or may_review_changes(state, caller)
        or allowed(state, caller, POLICY_OBJECT, "read")
    ):
        raise NotFound(f"no change {change_id[:40]!r}")
    return tenant, check(db, row)


def _reviewable(
    db: Session, state: Platform, caller: Caller, change_id: str, own: str, verb: str
) -> tuple[Tenant, ReviewedChange]:
    """Lock a change for `verb` by `caller`: a person who may review changes and did not
    propose it (else 403 `own`)."""
    tenant, change = _load(db, state, caller, change_id, lock=True)
    if change.proposer_id == caller.principal_id:
        raise Forbidden(own)
    require_human(caller, verb)
    if not may_review_changes(state, caller):
        raise Forbidden(f"{caller.name} may not review policy changes")
    return tenant, change


def _current_beneficiaries(
    db: Session, state: Platform, tenant: Tenant, change: ReviewedChange
) -> set[str]:
    """Those recorded at proposal, plus whoever the rules reach now (roles move)."""
    found = set(change.beneficiary_ids)
    if change.kind == "rules":
        add = parse_rules(change.payload.get("add", []), tenant.name)
        remove = parse_rules(change.payload.get("remove", []), tenant.name)
        subjects = assess(_stored_rules(db), add, remove).subjects
        snapshot = state.policy.ensure_fresh()
        found |= reached_by(db, snapshot, tenant.id, tenant.name, subjects)
    return widen_to_keepers(db, found)


def _check_pending(db: Session, state: Platform, change: ReviewedChange, verb: str) -> None:
    check_pending(db, state.now(), change, f"change {change.id}", verb, "one")


def review(
    db: Session, state: Platform, caller: Caller, change_id: str, decision: str, comment: str
) -> ChangeOutcome:
    """Approve or deny a pending change. The row is locked first, so concurrent reviews run
    one after another; the quorum's last approval applies the change in this transaction."""
    tenant, change = _reviewable(
        db,
        state,
        caller,
        change_id,
        "a proposer never approves their own change, whatever their roles",
        "review policy changes",
    )
    _check_pending(db, state, change, "reviewed")
    beneficiaries = _current_beneficiaries(db, state, tenant, change)
    refuse_conflict(db, caller, change.proposer_id, beneficiaries, "change")
    reviews = repo.change_reviews_of(db, [change.id])[change.id]
    approvals = add_review(
        db,
        caller,
        reviews,
        partial(ChangeReview, change_id=change.id),
        f"change {change.id}",
        change.proposer_id,
        beneficiaries,
        decision,
        comment,
        state.now(),
        scope=["change", change.id, change.kind, change.payload, change.proposer_id],
        may_review=lambda who: may_review_changes(state, who),
    )
    actor = actor_of(caller)
    record_change(db, state, actor, tenant, change, decision, "pending", "pending",
                  action="policy.change.reviewed", reason=comment,
                  details={"decision": decision, "approvals": len(approvals),
                           "quorum": change.quorum})  # fmt: skip
    if decision == "deny":
        _close(db, state, actor, tenant, change, "denied", comment or "denied")
        return ChangeOutcome(change)
    if len(approvals) < max(change.quorum, 1):  # a quorum lowered in SQL still needs someone
        return ChangeOutcome(change)
    version = _apply(db, state, caller, change)
    _close(db, state, actor, tenant, change, "applied",
           f"{len(approvals)} of {change.quorum} approvals")  # fmt: skip
    return ChangeOutcome(change, True, version, version is not None)


def _close(
    db: Session,
    state: Platform,
    actor: Actor,
    tenant: Tenant,
    change: ReviewedChange,
    to_state: str,
    reason: str,
) -> None:
    change.state = to_state
    change.resolved_at = state.now()
    record_change(db, state, actor, tenant, change, to_state, "pending", to_state, reason=reason,
                  policy_version=change.policy_version)  # fmt: skip
    _notify(db, state, tenant, "policy.change.resolved", change, change.proposer)


def cancel(
    db: Session, state: Platform, caller: Caller, change_id: str, reason: str
) -> ChangeOutcome:
    """The proposer withdraws a pending change."""
    tenant, change = _load(db, state, caller, change_id, lock=True)
    if change.proposer_id != caller.principal_id:
        raise Forbidden("only the proposer may cancel a change")
    _check_pending(db, state, change, "cancelled")
    _close(db, state, actor_of(caller), tenant, change, "cancelled",
           reason or "cancelled by the proposer")  # fmt: skip
    return ChangeOutcome(change)


def sign_off(
    db: Session, state: Platform, caller: Caller, change_id: str, comment: str
) -> ChangeOutcome:
    """A reviewer (never the proposer, a beneficiary or one of their principals) signs off a
    break-glass change after the fact."""
    tenant, change = _reviewable(
        db,
        state,
        caller,
        change_id,
        "whoever broke glass never signs it off",
        "sign off break-glass changes",
    )
    check_awaiting_sign_off(change, "change")
    refuse_conflict(db, caller, change.proposer_id, set(change.beneficiary_ids), "change")
    change.needs_review = False
    change.signed_off_by = caller.name
    change.signed_off_at = state.now()
    record_change(db, state, actor_of(caller), tenant, change, "signed_off", change.state,
                  change.state, reason=comment or "signed off")  # fmt: skip
    _notify(db, state, tenant, "policy.change.signed_off", change, change.proposer)
    return ChangeOutcome(change)


def list_changes(
    db: Session,
    state: Platform,
    caller: Caller,
    *,
    states: Sequence[str],
    mine: bool,
    needs_review: bool | None,
    limit: int,
) -> list[ReviewedChange]:
    if caller.kind == "job":
        raise Forbidden("job tokens take no part in policy changes")
    tenant = get_tenant(db, caller.tenant)
    see_all = may_review_changes(state, caller) or allowed(state, caller, POLICY_OBJECT, "read")
    return repo.list_changes(
        db,
        tenant.id,
        proposer_id=caller.principal_id if (mine or not see_all) else None,
        states=states,
        needs_review=needs_review,
        limit=limit,
    )


def show(
    db: Session, state: Platform, caller: Caller, change_id: str
) -> tuple[ReviewedChange, list[ChangeReview], list[AccessTransition]]:
    _, change = _load(db, state, caller, change_id)
    reviews = repo.change_reviews_of(db, [change.id])[change.id]
    return change, reviews, repo.transitions_of(db, [change.id])


# ---------------------------------------------------------------------------------------------
# Recording and presenting


def record_change(
    db: Session,
    state: Platform,
    actor: Actor,
    tenant: Tenant,
    change: ReviewedChange,
    event: str,
    from_state: str | None,
    to_state: str,
    *,
    action: str | None = None,
    reason: str = "",
    policy_version: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """A change's transition row and its audit event (same transaction), and its span. Every
    event of a break-glass change carries break_glass: true."""
    attributes = {
        "warden.change.id": change.id,
        "warden.change.event": event,
        "warden.actor": actor.name,
    }
    transition(db, state, actor, tenant, "change", change.id, event, from_state, to_state, reason,
               f"policy.change.{event}", attributes, action,
        dataset=change.payload.get("dataset") if change.kind != "rules" else None,
        policy_version=policy_version,
        details={
            "change_id": change.id,
            "kind": change.kind,
            "event": event,
            "from": from_state,
            "to": to_state,
            "break_glass": change.break_glass,
            "proposed_by": change.proposer,
            "summary": change.summary[:500],
            **(details or {}),
        },
    )  # fmt: skip


def change_reviewers(db: Session, state: Platform, tenant: Tenant) -> list[str]:
    """Every person of the tenant who may review policy changes."""
    return people_who(
        db,
        state,
        tenant,
        lambda snapshot, name, now: snapshot.can(name, tenant.name, POLICY_OBJECT, "manage", now),
    )


def _notify(
    db: Session, state: Platform, tenant: Tenant, event: str, change: ReviewedChange, also: str
) -> None:
    recipients = sorted({also, *change_reviewers(db, state, tenant)})
    payload = {"change": change_out(db, change, state.now()).model_dump()}
    notify(db, state, tenant, event, change.id, recipients, payload=payload)


def change_out(
    db: Session,
    change: ReviewedChange,
    now: datetime,
    *,
    with_reviews: bool = False,
    history: Sequence[AccessTransition] | None = None,
) -> ChangeOut:
    names = dict(
        db.execute(
            select(Principal.id, Principal.name).where(Principal.id.in_(change.beneficiary_ids))
        ).all()
    )
    reviews = repo.change_reviews_of(db, [change.id])[change.id]
    state = change.state
    if state == "pending" and aware(change.pending_until) <= now:
        state = "expired"
    return body_of(
        ChangeOut,
        change,
        beneficiaries=sorted(names.values()),
        approvals=approvers(reviews),
        state=state,
        reviews=reviews_out(reviews) if with_reviews else None,
        history=history_out(history),
    )
