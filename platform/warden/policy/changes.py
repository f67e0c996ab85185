"""Audited policy changes: the rule change, the version bump and its audit event commit
together, in the caller's transaction; then the caller reloads the service.

`assess` says whether a change could widen what anyone reads. It is conservative: only a
change provably narrowing item by item (adding a deny or a row filter, removing an allow or a
role link that carries no deny and no row filter) is narrowing; anything else is widening and
goes through review (warden.access.changes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from warden.audit.outcomes import by
from warden.audit.service import append
from warden.errors import Forbidden, Unprocessable
from warden.identity.service import Caller
from warden.policy import exposure, oversight, store
from warden.policy.engine import PolicySnapshot
from warden.policy.rules import Rule, RuleError, format_rule

# Checks every rule change must pass before it is stored (proposals, approvals, narrowing
# changes and break-glass alike): each gets the session and the rules to add and remove,
# and raises a WardenError to refuse. Other areas append theirs (e.g. mixed raw/masked
# exposure of one entity).
ChangeCheck = Callable[[Session, Sequence[Rule], Sequence[Rule]], None]
CHANGE_CHECKS: list[ChangeCheck] = []


def run_checks(db: Session, add: Sequence[Rule], remove: Sequence[Rule]) -> None:
    """Every registered check, in order; the first refusal wins."""
    for check in CHANGE_CHECKS:
        check(db, add, remove)


def apply_change(
    db: Session,
    actor: Caller,
    *,
    add: Sequence[Rule] = (),
    remove: Sequence[Rule] = (),
    reason: str = "",
    action: str = "policy.change",
    details: Mapping[str, Any] | None = None,
) -> int:
    """Add and remove rules; returns the new policy version. Bad rules change nothing.
    `action` names the audit event (policy.change, policy.bootstrap, policy.change.narrowing,
    policy.change.applied, policy.change.break_glass)."""
    run_checks(db, add, remove)
    _refuse_ungoverned(db, add, remove)
    try:
        added = store.add_rules(db, add) if add else None
        removed = store.remove_rules(db, remove) if remove else None
    except RuleError as exc:
        raise Unprocessable(f"invalid rule: {exc}") from None
    if mixed := exposure.change_problems(db, add, remove):
        raise Forbidden(exposure.describe(mixed))
    version = store.current_version(db)
    append(
        db,
        by(
            actor,
            action,
            "allow",
            policy_version=version,
            reason=reason or None,
            details={
                "added": [format_rule(p, f) for p, f in add][:200],
                "removed": [format_rule(p, f) for p, f in remove][:200],
                "added_count": added.count if added else 0,
                "removed_count": removed.count if removed else 0,
                **(details or {}),
            },
        ),
    )
    return version


def _refuse_ungoverned(db: Session, add: Sequence[Rule], remove: Sequence[Rule]) -> None:
    """Refuse a change after which a tenant that had one keeps no enabled person who manages
    policy or reads the audit log: nobody could review, undo or see it (approved, break-glass
    or bootstrap alike). Only a deny or a removal can take a right, so only those are checked."""
    if not remove and not any(p == "p" and f[6] == "deny" for p, f in add):
        return
    try:
        before = PolicySnapshot(store.load_rules(db)[1], strict=False)
        delta = [*(("remove", r) for r in remove), *(("add", r) for r in add)]
        after = before.with_changes(delta, version=before.version)
    except RuleError as exc:
        raise Unprocessable(f"invalid rule: {exc}") from None
    now = datetime.now(UTC)
    for tenant in sorted({f[2] if p == "g" else f[1] for p, f in [*add, *remove]}):
        if problem := oversight.governance_problem(db, before, after, tenant, now):
            raise Forbidden(problem)


@dataclass(frozen=True)
class Assessment:
    """Which items of a change widen access (with why), and whose access they touch."""

    widening: tuple[str, ...] = ()
    # Subjects (principal or role names) whose reading the widening items can extend.
    subjects: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_widening(self) -> bool:
        return bool(self.widening)


def assess(rules: Sequence[Rule], add: Sequence[Rule], remove: Sequence[Rule]) -> Assessment:
    """Classify a change against the stored `rules` (all of them, any tenant)."""
    widening: list[str] = []
    subjects: set[str] = set()

    def widen(rule: Rule, why: str, subject: str) -> None:
        widening.append(f"{format_rule(*rule)}: {why}")
        subjects.add(subject)

    for rule in add:
        ptype, f = rule
        if ptype == "p" and f[6] == "deny":
            continue
        if ptype == "p2":
            continue  # a row filter only ever removes rows (filters are ANDed)
        if ptype == "g":
            widen(rule, f"gives {f[0]} everything {f[1]} may do", f[0])
        else:
            widen(rule, f"allows {f[0]} to {f[5]} {f[2]}", f[0])
    for rule in remove:
        ptype, f = rule
        if ptype == "p" and f[6] == "allow":
            continue
        if ptype == "p":
            widen(rule, f"lifts a deny for {f[0]}", f[0])
        elif ptype == "p2":
            widen(rule, f"lifts a row filter for {f[0]} on {f[2]}", f[0])
        elif carried := _restrictions_of(rules, f[1], f[2]):
            widen(rule, f"lifts {carried} that {f[1]} carries for {f[0]}", f[0])
    return Assessment(tuple(widening), frozenset(subjects))


def _restrictions_of(rules: Sequence[Rule], role: str, tenant: str) -> str:
    """What a role (and every role it inherits) restricts: denies or row filters; "" if none.
    Unlinking a role that restricts can widen, so such an unlink is reviewed."""
    links: dict[str, list[str]] = {}
    for ptype, f in rules:
        if ptype == "g" and f[2] == tenant:
            links.setdefault(f[0], []).append(f[1])
    closure, todo = {role}, [role]
    while todo:
        for parent in links.get(todo.pop(), ()):
            if parent not in closure:
                closure.add(parent)
                todo.append(parent)
    for ptype, f in rules:
        if f[1] == tenant and f[0] in closure:
            if ptype == "p" and f[6] == "deny":
                return "a deny"
            if ptype == "p2":
                return "a row filter"
    return ""
