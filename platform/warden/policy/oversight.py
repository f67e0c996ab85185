"""Changes that narrow what anyone reads, yet still need a second person, and changes no one
may make at all.

`assess` (policy/changes.py) calls a change narrowing when it only ever takes rows or rights
away. Two kinds of "narrowing" are still a way for one person to learn or to rule alone:

- a row filter is an oracle on its column: whoever reads under it (or reads the audit log of
  their reads) learns which rows match its value. A change that brings a filter onto a column
  a reader it reaches does not read raw (masked or denied), or that adds a filter on a column
  its author may not read raw, is reviewed (`review_reasons`);
- taking rights of oversight (`OVERSIGHT`: managing policy and principals, reading the audit
  log and access workflow) from anyone but the author removes the second person who would
  check them: reviewed too.

And no change (reviewed, break-glass or bootstrap) may leave a tenant that had one without an
enabled person who manages policy or one who reads the audit log (`governance_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.policy.engine import PolicySnapshot
from warden.policy.rules import PURPOSES, Rule, format_rule

# Rights whose holders check others: losing one to someone else's change is reviewed.
# (sys:break_glass, sys:jobs, sys:sandboxes are not here: losing them only narrows.)
OVERSIGHT: tuple[tuple[str, str], ...] = (
    ("sys:policy", "manage"),
    ("sys:policy", "read"),
    ("sys:principals", "manage"),
    ("sys:audit", "read"),
    ("sys:access", "manage"),
    ("sys:access", "read"),
)
# What a tenant never loses its last enabled person for: approving changes, reading the audit.
GOVERNANCE: tuple[tuple[str, str], ...] = (("sys:policy", "manage"), ("sys:audit", "read"))


def _principals(db: Session, tenant: str) -> list[tuple[str, str, bool]]:
    """(name, kind, disabled) of every principal of the tenant; a row edited in SQL raises."""
    from warden.db.sealed import check
    from warden.identity.models import Principal, Tenant

    rows = db.scalars(
        select(Principal)
        .join(Tenant, Tenant.id == Principal.tenant_id)
        .where(Tenant.name == tenant)
    )
    return [(p.name, p.kind, bool(p.disabled)) for p in (check(db, r) for r in rows)]


def _columns(db: Session, tenant: str) -> dict[str, list[str]]:
    """Dataset name -> its column names, for the tenant's registered datasets."""
    from warden.catalog.models import Dataset, DatasetColumn
    from warden.identity.models import Tenant

    rows = db.execute(
        select(Dataset.name, DatasetColumn.name)
        .join(Tenant, Tenant.id == Dataset.tenant_id)
        .join(DatasetColumn, DatasetColumn.dataset_id == Dataset.id)
        .where(Tenant.name == tenant)
        .order_by(Dataset.name, DatasetColumn.position)
    ).all()
    found: dict[str, list[str]] = {}
    for dataset, column in rows:
        found.setdefault(dataset, []).append(column)
    return found


def _matches(dataset: str, pattern: str) -> bool:
    star = pattern.find("*")  # keyMatch, as the engine matches a filter's object
    return dataset == pattern if star < 0 else dataset.startswith(pattern[:star])


def _reads_raw(
    snap: PolicySnapshot, name: str, tenant: str, dataset: str, cols: Sequence[str],
    column: str, now: datetime,
) -> bool:  # fmt: skip
    """Whether `name` reads `column` raw for every purpose it reads the dataset for at all."""
    for purpose in PURPOSES:
        if not snap.decide_read(name, tenant, dataset, cols, purpose, now).allowed:
            continue
        if snap.decide_column(name, tenant, dataset, column, purpose, now).effect != "allow":
            return False
    return True


def _blind_filters(
    snap: PolicySnapshot, tenant: str, names: Sequence[str],
    columns: Mapping[str, Sequence[str]], now: datetime,
) -> set[tuple[str, str, str]]:  # fmt: skip
    """(reader, dataset, column) where a row filter reaches a reader who does not read its
    column raw: the reader (and the audit log of their reads) learns which rows match."""
    found: set[tuple[str, str, str]] = set()
    for name in names:
        for dataset, cols in columns.items():
            for f in snap.row_filters(name, tenant, dataset):
                if not _reads_raw(snap, name, tenant, dataset, cols, f.column, now):
                    found.add((name, dataset, f.column))
    return found


def _author_reads_raw(
    snap: PolicySnapshot, author: str, tenant: str, rule: Rule,
    columns: Mapping[str, Sequence[str]], now: datetime,
) -> bool:  # fmt: skip
    """Whether the author reads the filter's column raw (for some purpose) in every dataset
    the filter matches, and it matches one: else the filter tells them what they may not read."""
    _, f = rule
    datasets = [d for d in columns if _matches(d, f[2])]
    return bool(datasets) and all(
        any(snap.decide_column(author, tenant, d, f[3], p, now).effect == "allow" for p in PURPOSES)
        for d in datasets
    )


def review_reasons(
    db: Session,
    before: PolicySnapshot,
    after: PolicySnapshot,
    tenant: str,
    author: str,
    add: Sequence[Rule],
    now: datetime,
) -> list[str]:
    """Why a change that `assess` calls narrowing still needs a second person ([] if not)."""
    reasons: list[str] = []
    principals = _principals(db, tenant)
    names = [n for n, _kind, _disabled in principals]
    filters = [r for r in add if r[0] == "p2" and r[1][1] == tenant]
    columns = _columns(db, tenant) if filters or after.rule_counts.get("p2") else {}
    for rule in filters:
        if not _author_reads_raw(after, author, tenant, rule, columns, now):
            reasons.append(
                f"{format_rule(*rule)}: a row filter on a column {author} may not read raw"
                " would tell them which rows match it (through the readers' audited reads)"
            )
    if columns:
        blind = _blind_filters(after, tenant, names, columns, now)
        blind -= _blind_filters(before, tenant, names, columns, now)
        for name, dataset, column in sorted(blind)[:20]:
            reasons.append(
                f"a row filter on {dataset}.{column} reaches {name}, who does not read it raw:"
                " they would learn which rows match its value"
            )
    for name in names:
        if name == author:
            continue
        lost = [
            f"{obj} {act}"
            for obj, act in OVERSIGHT
            if before.can(name, tenant, obj, act, now)
            and not after.can(name, tenant, obj, act, now)
        ]
        if lost:
            reasons.append(f"takes {', '.join(lost)} from {name}: oversight is not one person's")
    return reasons


def governance_problem(
    db: Session, before: PolicySnapshot, after: PolicySnapshot, tenant: str, now: datetime
) -> str | None:
    """Why the change would leave the tenant ungoverned (None if it does not): no enabled
    person left who manages policy (approves changes) or reads the audit log, where one was."""
    people = [
        n for n, kind, disabled in _principals(db, tenant) if kind == "person" and not disabled
    ]
    for obj, act in GOVERNANCE:
        had = any(before.can(n, tenant, obj, act, now) for n in people)
        if had and not any(after.can(n, tenant, obj, act, now) for n in people):
            return (
                f"refused: after this change no enabled person of {tenant!r} holds {obj} {act};"
                " nobody could review or undo it"
            )
    return None
