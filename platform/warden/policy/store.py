"""Policy rules in the database, in sqlalchemy-adapter's `casbin_rule` format, plus a version.

Every function takes a SQLAlchemy `Session` and never commits: the caller's unit of work
does, so a rule change and whatever caused it (a grant, an approval) land together. Every
change bumps `policy_state.version` in that same transaction, so a replica that sees the new
version also sees the new rules. Writes go through these functions, not through the
adapter, because the adapter knows nothing of the version.

The rule set is sealed (`seal.py`): every write moves `policy_state`'s keyed rule sum by what
it added and removed and seals it with the new version; every load checks the rules against
that seal, so rules written past these functions fail closed instead of taking effect.

`WardenAdapter` lets a stock `casbin.Enforcer` read the same table (ordered by id, which
pycasbin's explanations depend on); `load_snapshot` reads it directly, faster, in the same
order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import casbin
from casbin import persist
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Integer,
    String,
    delete,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy_adapter import Adapter

from warden.audit.keys import keys_for
from warden.db.base import Base, utcnow
from warden.policy.engine import DEFAULT_MODEL_PATH, PolicySnapshot
from warden.policy.rules import ARITY, Rule, RuleError, format_rule, read_csv, require_valid
from warden.policy.seal import Sealed, check_rules, moved, opened, rules_sum

_VALUE_COLUMNS: Final = tuple(f"v{i}" for i in range(9))
_STATE_ID: Final = 1
_LOAD_ATTEMPTS: Final = 5
_BULK_THRESHOLD: Final = 64
# Changes bigger than this are not replayed rule by rule; replicas reload instead.
MAX_LOGGED_RULES: Final = 1_000
# Versions of change log kept; a replica further behind than this reloads everything.
LOG_VERSIONS_KEPT: Final = 10_000


class _RuleColumns:
    """A rule as sqlalchemy-adapter stores it: its ptype and up to nine values (v0..v8)."""

    ptype: Mapped[str | None] = mapped_column(String(255))
    v0: Mapped[str | None] = mapped_column(String(255))
    v1: Mapped[str | None] = mapped_column(String(255))
    v2: Mapped[str | None] = mapped_column(String(255))
    v3: Mapped[str | None] = mapped_column(String(255))
    v4: Mapped[str | None] = mapped_column(String(255))
    v5: Mapped[str | None] = mapped_column(String(255))
    v6: Mapped[str | None] = mapped_column(String(255))
    v7: Mapped[str | None] = mapped_column(String(255))
    v8: Mapped[str | None] = mapped_column(String(255))


class CasbinRule(_RuleColumns, Base):
    """One Casbin rule row; sqlalchemy-adapter's layout, widened to nine values (v0..v8)."""

    __tablename__ = "casbin_rule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)

    def __str__(self) -> str:
        # The adapter turns rows into CSV lines with str() and pycasbin parses them back.
        values = (getattr(self, name) for name in ("ptype", *_VALUE_COLUMNS))
        return ", ".join(v for v in values if v is not None)


class PolicyChange(_RuleColumns, Base):
    """What each version changed, so replicas can apply a delta instead of reloading all.

    A change too big to replay (a seed, a bulk import) is logged as one "reset" row: readers
    of the log then reload everything.
    """

    __tablename__ = "policy_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, index=True)
    op: Mapped[str] = mapped_column(String(8))  # add | remove | reset


Delta = list[tuple[str, Rule]]  # ("add" | "remove", rule), in the order they happened


class PolicyState(Base):
    """The single row holding the policy version, bumped with every rule change."""

    __tablename__ = "policy_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rules_sum: Mapped[str | None] = mapped_column(String(64))  # see seal.py
    seal: Mapped[str | None] = mapped_column(String(96))


@dataclass(frozen=True, slots=True)
class Change:
    """What a write did: how many rules it added or removed, and the version after it."""

    count: int
    version: int


class WardenAdapter(Adapter):  # type: ignore[misc]
    """sqlalchemy-adapter on Warden's table, loading rules in id order (the stock one doesn't,
    so on PostgreSQL pycasbin's explanations could name a different rule)."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine, db_class=CasbinRule, create_table=False)

    def load_policy(self, model: Any) -> None:
        with self._session_scope() as session:
            for line in session.scalars(select(CasbinRule).order_by(CasbinRule.id)):
                persist.load_policy_line(str(line), model)


def stock_enforcer(engine: Any, model_path: Path = DEFAULT_MODEL_PATH) -> casbin.Enforcer:
    """A plain pycasbin Enforcer over the stored rules (for cross-checks; slow at scale)."""
    return casbin.Enforcer(str(model_path), WardenAdapter(engine))


def _row_values(ptype: str, fields: Sequence[str]) -> dict[str, str]:
    return {"ptype": ptype, **{f"v{i}": v for i, v in enumerate(fields)}}


def _validate(rules: Iterable[Rule]) -> list[Rule]:
    checked = []
    for ptype, fields in rules:
        fields = tuple(fields)
        checked.append(require_valid(ptype, fields, repr(format_rule(ptype, fields))))
    return checked


def current_version(session: Session) -> int:
    """The stored policy version (0 before the first change)."""
    version = session.scalar(select(PolicyState.version).where(PolicyState.id == _STATE_ID))
    return version or 0


def sealed_state(session: Session, *, lock: bool = False) -> Sealed:
    """The stored version and rule sum, once their seal checks out (SealBroken otherwise);
    `lock`: hold the state row until the transaction ends (a write's read-modify-write)."""
    return opened(keys_for(session.get_bind()), *stored_state(session, lock=lock))


def stored_state(session: Session, *, lock: bool = False) -> tuple[int, str | None, str | None]:
    """The state row as stored (version, rule sum, seal), unchecked."""
    query = select(PolicyState.version, PolicyState.rules_sum, PolicyState.seal).where(
        PolicyState.id == _STATE_ID
    )
    row = session.execute(query.with_for_update() if lock else query).first()
    return (row[0], row[1], row[2]) if row is not None else (0, None, None)


def _advance(session: Session, added: Sequence[Rule], removed: Sequence[Rule]) -> int:
    """Bump the version, moving the sealed rule sum by the rows this write added and removed
    (already written in this transaction). A seal made with an older chain key is checked
    against the whole set, then remade with the current one."""
    keys = keys_for(session.get_bind())
    before = sealed_state(session, lock=True)
    total = moved(before.key, before.total, added, removed)
    if before.key.id != keys.current.id:
        rules = _all_rules(session)
        check_rules(Sealed(before.version, total, before.key), rules)
        total = rules_sum(keys.current, rules)
    return _store_state(session, Sealed(before.version + 1, total, keys.current))


def _store_state(session: Session, after: Sealed) -> int:
    values = {
        "version": after.version,
        "rules_sum": f"{after.total:064x}",
        "seal": after.seal(),
        "updated_at": utcnow(),
    }
    result = session.execute(update(PolicyState).where(PolicyState.id == _STATE_ID).values(values))
    if getattr(result, "rowcount", 0) == 0:
        session.add(PolicyState(id=_STATE_ID, **values))
        session.flush()
    return after.version


def reseal(session: Session) -> Sealed:
    """Seal the rules stored now, as they are, under a new version (the operator's
    `warden policy seal`, once they have checked them: it blesses whatever is there)."""
    keys = keys_for(session.get_bind())
    rules = _all_rules(session)
    version = session.scalar(
        select(PolicyState.version).where(PolicyState.id == _STATE_ID).with_for_update()
    )
    after = Sealed((version or 0) + 1, rules_sum(keys.current, rules), keys.current)
    _store_state(session, after)
    session.execute(insert(PolicyChange), [{"version": after.version, "op": "reset"}])
    return after


def _rule_filter(ptype: str, fields: Sequence[str]) -> Any:
    columns = [CasbinRule.ptype, *(getattr(CasbinRule, f"v{i}") for i in range(len(fields)))]
    return tuple_(*columns) == tuple_(ptype, *fields)


def _stored_rules(session: Session) -> set[Rule]:
    return set(_all_rules(session))


def _all_rules(session: Session) -> list[Rule]:
    """Every stored rule row, in id order (a duplicate row twice); RuleError on a row that
    is no rule."""
    return [rule for _, rule in rule_rows(session)]


def rule_rows(session: Session) -> list[tuple[int, Rule]]:
    """Every stored rule row with its id, in id order; RuleError on a row that is no rule."""
    rows = []
    query = select(CasbinRule.id, CasbinRule.ptype, *_value_columns()).order_by(CasbinRule.id)
    for row in session.execute(query):
        rule = _row_rule(tuple(row)[1:])
        if rule is None or None in rule[1]:
            raise RuleError(f"stored rule row {tuple(row)[1:]!r} is malformed")
        rows.append((int(row[0]), rule))
    return rows


def delete_rule_rows(session: Session, ids: Iterable[int]) -> None:
    """Delete these rule rows as they are (an operator removing what was written past Warden:
    the sealed sum is left as it is, so it is checked, not moved)."""
    session.execute(delete(CasbinRule).where(CasbinRule.id.in_(list(ids))))


def insert_rule_rows(session: Session, rules: Sequence[Rule]) -> None:
    """Store these rules as they are, the sealed sum left alone (an operator putting back
    what the audit log records: policy/logged_rules.py); validated first."""
    if rules:
        session.execute(insert(CasbinRule), [_row_values(p, f) for p, f in _validate(rules)])


def _value_columns() -> list[Any]:
    return [getattr(CasbinRule, name) for name in _VALUE_COLUMNS]


def _row_rule(row: tuple[Any, ...]) -> Rule | None:
    ptype, values = row[0], row[1:]
    arity = ARITY.get(ptype)
    if arity is None:
        return None
    return ptype, tuple(values[:arity])


def add_rules(session: Session, rules: Iterable[Rule]) -> Change:
    """Validate and append rules not already stored (RuleError if any is invalid); bumps the
    version when something was added."""
    checked = list(dict.fromkeys(_validate(rules)))
    if len(checked) > _BULK_THRESHOLD:
        stored = _stored_rules(session)
        new = [r for r in checked if r not in stored]
    else:
        new = [
            r
            for r in checked
            if session.scalar(select(CasbinRule.id).where(_rule_filter(*r)).limit(1)) is None
        ]
    if not new:
        return Change(0, current_version(session))
    session.execute(insert(CasbinRule), [_row_values(p, f) for p, f in new])
    return _logged(session, "add", new, _advance(session, new, []))


def remove_rules(session: Session, rules: Iterable[Rule]) -> Change:
    """Delete every stored copy of the given rules; bumps the version when something went."""
    removed: list[Rule] = []
    rows: list[Rule] = []  # every copy deleted: each moves the sealed sum
    for ptype, fields in rules:
        result = session.execute(delete(CasbinRule).where(_rule_filter(ptype, tuple(fields))))
        if count := getattr(result, "rowcount", 0):
            removed.append((ptype, tuple(fields)))
            rows.extend([(ptype, tuple(fields))] * count)
    if not removed:
        return Change(0, current_version(session))
    return _logged(session, "remove", removed, _advance(session, [], rows))


def remove_grant(session: Session, grant_id: str) -> Change:
    """Delete every p rule carrying this grant id (revocation); bumps the version if any."""
    if not grant_id:
        raise RuleError("grant id is empty")
    of_grant = (CasbinRule.ptype == "p", CasbinRule.v7 == grant_id)
    rows = session.execute(select(CasbinRule.ptype, *_value_columns()).where(*of_grant)).all()
    removed = [rule for row in rows if (rule := _row_rule(tuple(row))) is not None]
    if not removed:
        return Change(0, current_version(session))
    session.execute(delete(CasbinRule).where(*of_grant))
    return _logged(session, "remove", removed, _advance(session, [], removed))


def _logged(session: Session, op: str, rules: list[Rule], version: int) -> Change:
    """Log what `version` did (or a reset, when it is too big)."""
    if len(rules) > MAX_LOGGED_RULES:
        session.execute(insert(PolicyChange), [{"version": version, "op": "reset"}])
    else:
        rows = [{"version": version, "op": op, **_row_values(p, f)} for p, f in rules]
        session.execute(insert(PolicyChange), rows)
    session.execute(delete(PolicyChange).where(PolicyChange.version <= version - LOG_VERSIONS_KEPT))
    return Change(len(rules), version)


def changes_since(session: Session, version: int) -> tuple[Sealed, Delta] | None:
    """(the sealed current state, every rule change after `version`), or None when the log
    can't bring a snapshot at `version` up to date (a reset, or versions missing from the
    log). SealBroken if the state's seal does not check out."""
    current = sealed_state(session)
    rows = session.execute(
        select(PolicyChange.version, PolicyChange.op, PolicyChange.ptype, *_log_columns())
        .where(PolicyChange.version > version, PolicyChange.version <= current.version)
        .order_by(PolicyChange.id)
    ).all()
    seen = {row[0] for row in rows}
    if seen != set(range(version + 1, current.version + 1)):
        return None
    delta: Delta = []
    for row in rows:
        rule = _row_rule(tuple(row[2:]))
        if row[1] == "reset" or rule is None:
            return None
        delta.append((row[1], rule))
    return current, delta


def _log_columns() -> list[Any]:
    return [getattr(PolicyChange, name) for name in _VALUE_COLUMNS]


def seed_from_csv(session: Session, paths: Sequence[Path]) -> Change:
    """Add the rules of CSV files (RuleError naming file and line if one is invalid);
    rules already stored are skipped, so seeding twice changes nothing."""
    return add_rules(session, read_csv(paths))


def load_sealed(session: Session) -> tuple[Sealed, list[Rule]]:
    """The sealed state and all rules in id order, consistent with each other (the state is
    read before and after the rules, and the read retried if it moved in between) and
    checked against the seal: SealBroken if they do not match it."""
    for _ in range(_LOAD_ATTEMPTS):
        before = sealed_state(session)
        rules = _all_rules(session)
        if sealed_state(session) == before:
            check_rules(before, rules)
            return before, rules
    raise RuleError(f"policy kept changing during {_LOAD_ATTEMPTS} load attempts")


def load_rules(session: Session) -> tuple[int, list[Rule]]:
    """The version and all rules in id order, checked against the seal (see load_sealed)."""
    sealed, rules = load_sealed(session)
    return sealed.version, rules


def load_snapshot(session: Session, model_text: str | None = None) -> tuple[PolicySnapshot, Sealed]:
    """A compiled snapshot of the stored rules, stamped with their version, and the sealed
    state it was checked against. `model_text` (default: policies/model.conf) is checked
    against the engine's model."""
    if model_text is None:
        model_text = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")
    sealed, rules = load_sealed(session)
    return PolicySnapshot(rules, version=sealed.version, model_text=model_text), sealed
