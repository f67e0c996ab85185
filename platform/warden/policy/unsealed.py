"""What a broken policy seal can tell an operator before `warden policy seal` blesses anything.

The seal's rule sum moves by one rule's MAC per rule, so when the stored state is still
Warden's own (its version and sum sealed) and one row was added past Warden, the row whose
MAC the stored rules carry beyond the sealed sum is that row: it is named, and removing it
gives back the sealed set without sealing anything new (the state's version bumped to make
processes reload is looked past). Anything else (a row removed or edited, several added, the
sum rewritten) the sum cannot name: the operator is
shown the stored rules and seals them only by naming their digest, so a rule slipped in after
they looked is never sealed with them (red team 21: a reseal blessed whatever was stored).
A sum sealed under a version older than the newest rule change the audit log records is not
Warden's own any more: an insider who wrote back an earlier state's sum and seal had the
narrowing applied since named as the row added past Warden, and removed (red team 22).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from warden.audit.keys import keys_for
from warden.db.sealed import digest_of
from warden.identity.revocations import revocations_for
from warden.policy import store
from warden.policy.logged_rules import Contradiction, contradictions
from warden.policy.rules import Rule, format_rule
from warden.policy.seal import SealBroken, Sealed, moved, opened, rules_sum

# How far from the stored version a sealed sum is looked for (a MAC each: ~2 ms per thousand).
NEAR_VERSIONS = 1000

Row = tuple[int, Rule]


@dataclass(frozen=True)
class Unsealed:
    broken: str  # why the stored rules do not match their seal
    rows: list[Row]  # every stored rule row (id, rule), in id order
    added: list[Row]  # rows written past Warden; removing them restores the sealed set
    sealed: Sealed | None  # the sum Warden sealed, when its seal still opens
    digest: str  # of `rows`, as `warden policy seal --accept` names them
    # where the rows contradict the rule changes the log records (put back before sealing)
    contradicted: list[Contradiction]

    def shown(self, row: Row) -> str:
        return f"#{row[0]} {format_rule(*row[1])}"


def examine(session: Session) -> Unsealed | None:
    """None when the stored rules match their seal and the log's rule changes; what can be
    said of them otherwise."""
    try:
        version = store.load_sealed(session)[0].version
        broken = ""
    except SealBroken as exc:
        broken = str(exc)
    rows = store.rule_rows(session)
    contradicted = contradictions(session, [rule for _, rule in rows])
    if not broken:
        if not contradicted:
            return None
        # a whole earlier state written back (rules, sum, seal and version) opens its seal
        broken = f"the stored rules match their seal (policy v{version}) but not the audit log"
    sealed = _sealed_sum(session)
    added = _one_added(sealed, rows) if sealed is not None else []
    return Unsealed(broken, rows, added, sealed, digest_of(rows), contradicted)


def restores(session: Session, found: Unsealed) -> bool:
    """Whether the rules stored now are exactly the set Warden sealed."""
    if found.sealed is None:
        return False
    rules = [rule for _, rule in store.rule_rows(session)]
    return rules_sum(found.sealed.key, rules) == found.sealed.total


def _sealed_sum(session: Session) -> Sealed | None:
    """The stored rule sum when Warden sealed it: under the stored version, or one near it
    (an insider bumps the version so that processes reload, leaving the sum as it was), and
    not older than the newest version a rule change or revocation in the log names; None when
    no such version within NEAR_VERSIONS opens its seal."""
    keys = keys_for(session.get_bind())
    version, total, seal = store.stored_state(session)
    logged = revocations_for(session).refresh(session).policy_version
    lowest = max(0, logged, version - NEAR_VERSIONS)
    for candidate in sorted(range(lowest, version + NEAR_VERSIONS),
                            key=lambda v: abs(v - version)):  # fmt: skip
        try:
            return opened(keys, candidate, total, seal)
        except SealBroken:
            continue
    return None


def digest_now(session: Session) -> str:
    """The digest of the rule rows stored now (a seal names the rows the operator was shown)."""
    return digest_of(store.rule_rows(session))


def _one_added(sealed: Sealed, rows: list[Row]) -> list[Row]:
    """The one row whose MAC is all the stored sum carries beyond the sealed one (the newest
    such row, when a rule was duplicated), or none."""
    total = rules_sum(sealed.key, [rule for _, rule in rows])
    for row in reversed(rows):
        if moved(sealed.key, total, (), (row[1],)) == sealed.total:
            return [row]
    return []
