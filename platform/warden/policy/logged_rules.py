"""Where the stored rules contradict the rule changes the audit log records (red team 22).

A seal repair that cannot name a row added past Warden shows the operator the stored rules
to seal as they are. An insider who deleted a rule an admin applied (a deny) and wrote back
an earlier state's sum and seal left a listing that simply lacks it; one who stored again a
rule a change removed (a role taken away) left one that looks ordinary. The log says
otherwise: every rule change Warden applies is a keyed, chained event naming the rules it
added and removed (`policy/changes.apply_change`). Replayed in the chain's order, the last
change to name a rule says whether it should be stored. A grant's rules come and go with the
grant, whose events do not list them but name the state it moved to: a rule of a grant the
log last saw revoked or expired must not be stored (an insider who wrote a revoked grant's
rule back had it sealed with the rest, and erin read on). Only the chain's own events count
(an insider cannot key one). A change that named more rules than its event lists (over 200)
is held to what it lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from warden.audit.chain import CHAIN_V1, expected_hash
from warden.audit.keys import keys_for
from warden.audit.models import AuditEvent
from warden.policy.rules import ARITY, P_FIELDS, Rule, format_rule, split_line

# The actions `apply_change` writes (its `action` argument), each with the rules it changed.
RULE_CHANGES = ("policy.bootstrap", "policy.change", "policy.change.break_glass")
GRANT_EVENTS = "access.grant."  # each names the grant and the state it moved to
GRANT_ENDED = ("revoked", "expired")
_GRANT = P_FIELDS.index("grant")


@dataclass(frozen=True)
class Contradiction:
    rule: str  # as the log names it
    seq: int  # the event that last named it
    stored: bool  # True: stored although that change removed it; False: added, not stored

    def __str__(self) -> str:
        if self.stored and _of_a_grant(as_rule(self)):
            return f"{self.rule}  (its grant ended at audit seq {self.seq}; it is stored)"
        said = "removed" if self.stored else "added"
        now = "is stored" if self.stored else "is not stored"
        return f"{self.rule}  ({said} by the change at audit seq {self.seq}; it {now})"


def contradictions(session: Session, rules: list[Rule]) -> list[Contradiction]:
    """Rules the log's last change to name them says should (not) be stored, and are (not)."""
    stored = {_key(rule) for rule in rules}
    said, grants = _last_said(session)
    found = []
    for key, (seq, added) in sorted(said.items(), key=lambda kv: kv[1][0]):
        if added != (key in stored):
            found.append(Contradiction(format_rule(key[0], key[1]), seq, stored=not added))
    for key in sorted(stored):
        seq, state = grants.get(key[1][_GRANT], (0, "")) if _of_a_grant(key) else (0, "")
        if state in GRANT_ENDED:
            found.append(Contradiction(format_rule(key[0], key[1]), seq, stored=True))
    return found


def as_rule(contradiction: Contradiction) -> Rule:
    key = _parsed(contradiction.rule)
    assert key is not None  # it came from a parsed line
    return key


def _last_said(
    session: Session,
) -> tuple[dict[Rule, tuple[int, bool]], dict[str, tuple[int, str]]]:
    """Each rule of no grant the log's rule changes name -> (seq, added?) of the last one;
    each grant its events name -> (seq, the state the last one moved it to)."""
    keys = keys_for(session.get_bind())
    table = AuditEvent.__table__
    events = session.connection().execute(
        select(table)
        .where(
            or_(table.c.action.in_(RULE_CHANGES), table.c.action.startswith(GRANT_EVENTS)),
            table.c.decision == "allow",
        )
        .order_by(table.c.seq)
    )
    said: dict[Rule, tuple[int, bool]] = {}
    grants: dict[str, tuple[int, str]] = {}
    for event in events.mappings():
        if event["chain_v"] == CHAIN_V1 or event["hash"] != expected_hash(event, keys):
            continue  # not the chain's own (`audit verify` reports it)
        details = event["details"] if isinstance(event["details"], dict) else {}
        if event["action"].startswith(GRANT_EVENTS):
            if details.get("grant_id") and details.get("to"):
                grants[str(details["grant_id"])] = (int(event["seq"]), str(details["to"]))
            continue
        # `apply_change` adds, then removes: a rule both added and removed ends removed
        for name, added in (("added", True), ("removed", False)):
            for line in details.get(name) or ():
                key = _parsed(line) if isinstance(line, str) else None
                if key is not None and not _of_a_grant(key):
                    said[key] = (int(event["seq"]), added)
    return said, grants


def _parsed(line: str) -> Rule | None:
    tokens = split_line(line)
    if not tokens or tokens[0] not in ARITY or len(tokens) - 1 > ARITY[tokens[0]]:
        return None
    return _key((tokens[0], tuple(tokens[1:])))


def _key(rule: Rule) -> Rule:
    """A rule with its trailing empty fields spelt out, as stored rows carry them."""
    ptype, fields = rule
    return ptype, tuple(fields) + ("",) * (ARITY.get(ptype, len(fields)) - len(fields))


def _of_a_grant(rule: Rule) -> bool:
    return rule[0] == "p" and bool(rule[1][_GRANT])
