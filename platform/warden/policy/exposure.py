"""Mixed exposure: a subject who sees one entity's identifiers raw somewhere and pseudonymised
elsewhere can join the two (on the other columns they share) and re-identify the pseudonyms.

`mixed_exposure` is a pure function of a rule set and the catalog's identifier columns: for
every subject of a tenant (each person and each role, with its role links resolved as the
engine resolves them), every dataset, every identifier column and every purpose, it asks the
policy engine what that subject would get (grants are rules, so they count), and reports each
entity the subject could read raw in one place and as a keyed-hash pseudonym in another.
Only keyed-hash masks count as pseudonyms: a masked column that is not an identifier column is
blanked, and a blank links nothing.

An exception is itself a rule, reviewed and audited like any other:
`p, SUBJECT, TENANT, entity:user, *, *, expose_mixed, allow, ,` (held by the subject or by a
role it holds; a matching deny takes it away; wildcards never grant it).

`change_problems` is what every policy change runs: it refuses a change that gives any
affected subject a mixed exposure it did not already have (so cleaning up an old exposure is
never blocked by the exposure being cleaned up). What the log shows a subject read raw counts
as raw whatever the rules say now (policy/raw_reads.py): a subject keeps what they read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict, Unpack

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.policy.engine import PolicySnapshot, format_now
from warden.policy.places import Catalog, IdColumn, Place
from warden.policy.raw_reads import RawReads, logged_raw_reads
from warden.policy.rules import ENTITY_PREFIX, EXPOSE_MIXED, PURPOSES, Rule, format_rule


@dataclass(frozen=True)
class MixedExposure:
    tenant: str
    subject: str
    entity: str
    raw: tuple[Place, ...]
    masked: tuple[Place, ...]

    @property
    def reason(self) -> str:
        raw = ", ".join(str(p) for p in self.raw[:3]) + (" …" if len(self.raw) > 3 else "")
        masked = ", ".join(str(p) for p in self.masked[:3]) + (" …" if len(self.masked) > 3 else "")
        rule = next((p.rule for p in self.raw if p.rule), None)
        by = f" (raw by rule {format_rule('p', rule)!r})" if rule else ""
        return (
            f"{self.subject!r} in {self.tenant!r} could see {self.entity} identifiers raw in "
            f"{raw}{by} and pseudonymised in {masked}, and re-identify the pseudonyms; mask "
            f"them everywhere, or add the exception 'p, {self.subject}, {self.tenant}, "
            f"{ENTITY_PREFIX}{self.entity}, *, *, {EXPOSE_MIXED}, allow, ,'"
        )

    def covered_by(self, other: MixedExposure) -> bool:
        """True when `other` already exposed at least all of this."""
        return (
            (self.tenant, self.subject, self.entity) == (other.tenant, other.subject, other.entity)
            and {p.key for p in self.raw} <= {p.key for p in other.raw}
            and {p.key for p in self.masked} <= {p.key for p in other.masked}
        )


def _domain(rule: Rule) -> str:
    ptype, fields = rule
    return fields[2] if ptype == "g" else fields[1]


def tenant_subjects(rules: Iterable[Rule], tenant: str) -> set[str]:
    """Every name a rule of the tenant mentions as a subject or role."""
    found: set[str] = set()
    for ptype, fields in rules:
        if ptype == "g" and fields[2] == tenant:
            found.update((fields[0], fields[1]))
        elif ptype in ("p", "p2") and fields[1] == tenant:
            found.add(fields[0])
    return found


def _exceptions(rules: Iterable[Rule], now: str) -> tuple[set[tuple[str, str, str]], set[tuple]]:
    """(tenant, holder, entity) of live exception allows, and of live exception denies."""
    allows: set[tuple[str, str, str]] = set()
    denies: set[tuple[str, str, str]] = set()
    for ptype, f in rules:
        if ptype != "p" or f[5] != EXPOSE_MIXED or not f[2].startswith(ENTITY_PREFIX):
            continue
        if f[8] and not now < f[8]:
            continue
        entry = (f[1], f[0], f[2].removeprefix(ENTITY_PREFIX))
        (allows if f[6] == "allow" else denies).add(entry)
    return allows, denies


class Scope(TypedDict, total=False):
    """What an exposure check may be narrowed to or given: `now` (default: the clock);
    `subjects`: per tenant, only these subjects (default: every name the tenant's rules
    mention); `snapshot`: the compiled rules, if at hand; `owned`: per tenant, subject -> the
    principals it reads as (the service accounts it owns and so holds the tokens of): what
    they read counts as the subject's own; `read_raw`: per tenant, reader -> the places the
    log shows it read raw (policy/raw_reads.py): they count as raw places whatever the rules
    say now."""

    now: datetime | None
    subjects: Mapping[str, Iterable[str]] | None
    snapshot: PolicySnapshot | None
    owned: Mapping[str, Mapping[str, set[str]]] | None
    read_raw: RawReads | None


def mixed_exposure(
    rules: Sequence[Rule], catalog: Catalog, **scope: Unpack[Scope]
) -> list[MixedExposure]:
    """Every (tenant, subject, entity) whose identifiers the subject could read both raw and
    pseudonymised, without an exception."""
    return [
        MixedExposure(t, s, e, raw, masked)
        for (t, s, e), (raw, masked, excepted) in exposures(rules, catalog, **scope).items()
        if raw and masked and not excepted
    ]


Exposures = dict[tuple[str, str, str], tuple[tuple[Place, ...], tuple[Place, ...], bool]]


def exposures(rules: Sequence[Rule], catalog: Catalog, **scope: Unpack[Scope]) -> Exposures:
    """(tenant, subject, entity) -> (raw places, pseudonymised places, excepted) for every
    entity a subject sees either way."""
    now = scope.get("now") or datetime.now(UTC)
    now_s = format_now(now)
    snapshot = scope.get("snapshot")
    snap = snapshot if snapshot is not None else PolicySnapshot(rules, strict=False)
    subjects = scope.get("subjects")
    allows, denies = _exceptions(rules, now_s)
    found: Exposures = {}
    for tenant, columns in sorted(catalog.items()):
        by_entity: dict[str, list[IdColumn]] = {}
        for c in columns:
            by_entity.setdefault(c.entity, []).append(c)
        # only entities that are pseudonymised somewhere can be re-identified
        entities = {e for e, cs in by_entity.items() if any(c.pseudonymised for c in cs)}
        if not entities:
            continue
        by_dataset: dict[str, list[IdColumn]] = {}
        for c in columns:
            if c.entity in entities:
                by_dataset.setdefault(c.dataset, []).append(c)
        if subjects is not None:
            names = set(subjects.get(tenant, ()))
        else:
            names = tenant_subjects(rules, tenant)
        # Subjects holding the same rule-bearing names decide alike: decide once per such set
        # (a role held by thousands of people costs one evaluation, not thousands).
        bearers = {f[0] for p, f in rules if p == "p" and f[1] == tenant}
        memo: dict[frozenset[str], list[tuple[str, tuple[Place, ...], tuple[Place, ...]]]] = {}
        keeps = (scope.get("owned") or {}).get(tenant, {})
        logged = (scope.get("read_raw") or {}).get(tenant, {})
        for subject in sorted(names):
            held = snap.subjects(subject, tenant)
            signature = frozenset(h for h in held if h in bearers)
            readers = [subject, *sorted(keeps.get(subject, ()))]
            if len(readers) > 1 or any(logged.get(r) for r in readers):  # their own history
                seen = _places(snap, readers, tenant, by_dataset, now, logged)
            else:
                if signature not in memo:
                    memo[signature] = _places(snap, readers, tenant, by_dataset, now, {})
                seen = memo[signature]
            for entity, raw, masked in seen:
                excepted = any((tenant, h, entity) in allows for h in held) and not any(
                    (tenant, h, entity) in denies for h in held
                )
                found[(tenant, subject, entity)] = (raw, masked, excepted)
    return found


def _places(
    snap: PolicySnapshot,
    readers: Sequence[str],
    tenant: str,
    by_dataset: Mapping[str, Sequence[IdColumn]],
    now: datetime,
    logged: Mapping[str, Sequence[Place]],
) -> list[tuple[str, tuple[Place, ...], tuple[Place, ...]]]:
    """(entity, raw places, pseudonymised places) for each entity that the `readers` (one
    subject, and the principals it reads as) see either way, between them; `logged`: reader
    -> the places the log shows it read raw."""
    raw: dict[str, list[Place]] = {}
    masked: dict[str, list[Place]] = {}
    for dataset, cols in sorted(by_dataset.items()):
        for purpose, subject in ((p, r) for p in PURPOSES for r in readers):
            decision = snap.decide_read(
                subject, tenant, dataset, [c.column for c in cols], purpose, now
            )
            for c, d in zip(cols, decision.columns, strict=True):
                place = Place(dataset, c.column, purpose, d.rule)
                if d.effect == "allow":
                    raw.setdefault(c.entity, []).append(place)
                elif d.effect == "mask" and c.pseudonymised:
                    masked.setdefault(c.entity, []).append(place)
    for r in readers:
        for place in logged.get(r, ()):
            entity = next(
                (c.entity for c in by_dataset.get(place.dataset, ()) if c.column == place.column),
                None,
            )
            if entity is not None:
                raw.setdefault(entity, []).append(place)
    return [(e, tuple(raw.get(e, ())), tuple(masked.get(e, ()))) for e in sorted({*raw, *masked})]


def affected_subjects(
    snapshot: PolicySnapshot, rules: Iterable[Rule], tenant: str, named: set[str]
) -> set[str]:
    """The tenant's subjects that are, or hold (transitively), one of the `named` ones."""
    return {s for s in tenant_subjects(rules, tenant) if named & set(snapshot.subjects(s, tenant))}


def owned_from_db(db: Session, tenants: Iterable[str]) -> dict[str, dict[str, set[str]]]:
    """Per tenant, owner name -> the names of the principals it owns (it mints their tokens,
    so it reads as them: access/duties.reads_as)."""
    from sqlalchemy.orm import aliased

    from warden.identity.models import ApiToken, Principal, Tenant

    owner = aliased(Principal)
    names = sorted(set(tenants))
    owned = (
        select(Tenant.name, owner.name, Principal.name)
        .join(Principal, Principal.tenant_id == Tenant.id)
        .join(owner, owner.id == Principal.owner_id)
        .where(Tenant.name.in_(names))
    )
    # whoever was issued a token of a service account (approved, not revoked) reads as it too;
    # a person's token minted by an admin is handed to that person (and reviewed)
    held = (
        select(Tenant.name, owner.name, Principal.name)
        .join(Principal, Principal.tenant_id == Tenant.id)
        .join(ApiToken, ApiToken.principal_id == Principal.id)
        .join(owner, owner.id == ApiToken.issued_by_id)
        .where(Tenant.name.in_(names), Principal.kind == "service", ApiToken.revoked_at.is_(None))
        .where(ApiToken.pending_change_id.is_(None), ApiToken.issued_by_id != Principal.id)
    )
    found: dict[str, dict[str, set[str]]] = {}
    for tenant, keeper, name in [*db.execute(owned), *db.execute(held)]:
        found.setdefault(tenant, {}).setdefault(keeper, set()).add(name)
    return found


def holder_problems(
    db: Session, tenant: str, holder: str, principal: str, *, now: datetime | None = None
) -> list[MixedExposure]:
    """The mixed exposures `holder` gets by reading as `principal` too (a token of theirs it
    is to hold), beyond those it has already (empty when it is fine)."""
    catalog = catalog_from_db(db, [tenant])
    if holder == principal or not any(c.pseudonymised for c in catalog.get(tenant, ())):
        return []
    datasets = {c.dataset for cols in catalog.values() for c in cols}
    rules = relevant_rules(db, {tenant}, datasets)
    snap = PolicySnapshot(rules, strict=False)
    before = owned_from_db(db, [tenant])
    after = {t: {k: set(v) for k, v in keeps.items()} for t, keeps in before.items()}
    after.setdefault(tenant, {}).setdefault(holder, set()).add(principal)
    subjects = {tenant: {holder}}
    now = now or datetime.now(UTC)
    read = logged_raw_reads(db, catalog, {holder, principal, *after[tenant][holder]})
    now_found = mixed_exposure(rules, catalog, now=now, subjects=subjects, snapshot=snap,
                               owned=after, read_raw=read)  # fmt: skip
    was = mixed_exposure(rules, catalog, now=now, subjects=subjects, snapshot=snap, owned=before,
                         read_raw=read)  # fmt: skip
    return [e for e in now_found if not any(e.covered_by(old) for old in was)]


def catalog_from_db(db: Session, tenants: Iterable[str]) -> dict[str, list[IdColumn]]:
    """The identifier columns the catalog declares in these tenants."""
    from warden.catalog.models import Dataset, DatasetColumn
    from warden.identity.models import Tenant

    rows = db.execute(
        select(Tenant.name, Dataset.name, Dataset.identifier_columns, DatasetColumn)
        .join(Dataset, Dataset.tenant_id == Tenant.id)
        .join(DatasetColumn, DatasetColumn.dataset_id == Dataset.id)
        .where(Tenant.name.in_(sorted(set(tenants))))
    ).all()
    out: dict[str, list[IdColumn]] = {}
    for tenant, dataset, identifiers, column in rows:
        pseudonymised = column.name in (identifiers or [])
        if column.entity is None and not pseudonymised:
            continue
        entity = column.entity or f"column:{column.name}"
        out.setdefault(tenant, []).append(IdColumn(dataset, column.name, entity, pseudonymised))
    return out


def _relevant(rule: Rule, datasets: set[str]) -> bool:
    """Whether a rule can bear on reading these datasets or on an exception."""
    ptype, f = rule
    if ptype == "g":
        return True
    if ptype != "p":
        return False
    obj = f[2]
    star = obj.find("*")
    if obj.startswith(ENTITY_PREFIX):
        return True
    if star < 0:
        return obj in datasets
    return any(d.startswith(obj[:star]) for d in datasets)


def relevant_rules(db: Session, tenants: set[str], datasets: set[str]) -> list[Rule]:
    """The stored rules of these tenants that can bear on reading these datasets: role links,
    rules naming one of them or a pattern, and exceptions (in policy order)."""
    from sqlalchemy import and_, or_

    from warden.policy.store import CasbinRule

    r = CasbinRule
    query = (
        select(r.ptype, r.v0, r.v1, r.v2, r.v3, r.v4, r.v5, r.v6, r.v7, r.v8)
        .where(
            or_(
                and_(r.ptype == "g", r.v2.in_(sorted(tenants))),
                and_(
                    r.ptype == "p",
                    r.v1.in_(sorted(tenants)),
                    or_(
                        r.v2.in_(sorted(datasets)),
                        r.v2.contains("*"),
                        r.v2.startswith(ENTITY_PREFIX),
                    ),
                ),
            )
        )
        .order_by(r.id)
    )
    rules: list[Rule] = []
    for row in db.execute(query):
        ptype = str(row[0])
        fields = tuple(v or "" for v in row[1 : 1 + (3 if ptype == "g" else 9)])
        rule = (ptype, fields)
        if _relevant(rule, datasets):
            rules.append(rule)
    return rules


def change_problems(
    db: Session,
    add: Sequence[Rule] = (),
    remove: Sequence[Rule] = (),
    *,
    now: datetime | None = None,
) -> list[MixedExposure]:
    """After rules were added and removed in `db`'s transaction: the mixed exposures the
    change creates or widens for the subjects it touches (empty when it is fine)."""
    touched: dict[str, set[str]] = {}
    for ptype, fields in (*add, *remove):
        if ptype in ("p", "g") and len(fields) in (3, 9):
            touched.setdefault(_domain((ptype, fields)), set()).add(fields[0])
    if not touched:
        return []
    catalog = catalog_from_db(db, touched)
    if not any(c.pseudonymised for cols in catalog.values() for c in cols):
        return []
    datasets = {c.dataset for cols in catalog.values() for c in cols}
    after = relevant_rules(db, set(catalog), datasets)
    added = {(p, tuple(f)) for p, f in add}
    before = [r for r in after if r not in added] + [
        (p, tuple(f))
        for p, f in remove
        if _domain((p, tuple(f))) in catalog and _relevant((p, tuple(f)), datasets)
    ]
    now = now or datetime.now(UTC)
    snap_after = PolicySnapshot(after, strict=False)
    snap_before = PolicySnapshot(before, strict=False)
    subjects = {
        t: affected_subjects(snap_after, after, t, named)
        | affected_subjects(snap_before, before, t, named)
        for t, named in touched.items()
        if t in catalog
    }
    owned = owned_from_db(db, subjects)
    for t, keeps in owned.items():  # the owner of a principal the change reaches is reached
        subjects[t] |= {owner for owner, kept in keeps.items() if kept & subjects[t]}
    readers = {n for t, names in subjects.items() for s in names
               for n in (s, *owned.get(t, {}).get(s, ()))}  # fmt: skip
    read = logged_raw_reads(db, catalog, readers)
    now_found = mixed_exposure(
        after, catalog, now=now, subjects=subjects, snapshot=snap_after, owned=owned, read_raw=read
    )
    if not now_found:
        return []
    was = exposures(
        before,
        catalog,
        now=now,
        subjects=subjects,
        snapshot=snap_before,
        owned=owned,
        read_raw=read,
    )
    old = [
        MixedExposure(t, s, e, r, m) for (t, s, e), (r, m, x) in was.items() if r and m and not x
    ]
    return [
        e
        for e in now_found
        if not any(e.covered_by(o) for o in old) and not _narrowed(e, was.get(_key(e)))
    ]


def _key(e: MixedExposure) -> tuple[str, str, str]:
    return (e.tenant, e.subject, e.entity)


def _narrowed(
    e: MixedExposure, before: tuple[tuple[Place, ...], tuple[Place, ...], bool] | None
) -> bool:
    """True when the change only masked what the subject could read raw before and the log
    shows they did: a narrowing, which exposes nothing they have not read (never refused)."""
    if before is None:
        return False
    raw_before = {p.key for p in before[0]}
    gained = {p.key for p in e.masked} - {p.key for p in before[1]}
    read = {p.key for p in e.raw if p.event}
    return (
        bool(gained)
        and {p.key for p in e.raw} <= raw_before
        and gained <= {p.key for p in before[0] if p.event is None} & read
    )


def catalog_problems(
    db: Session, tenant: str, before: Catalog, *, now: datetime | None = None
) -> list[MixedExposure]:
    """After a dataset was registered in `db`'s transaction: the mixed exposures the catalog
    change creates or widens under the tenant's rules (a new identifier column under a
    pattern or `*` rule, a raw column added beside a pseudonymised one…). `before`: the
    tenant's identifier columns as they were."""
    after = catalog_from_db(db, [tenant])
    if not any(c.pseudonymised for cols in after.values() for c in cols):
        return []
    datasets = {c.dataset for cols in (*after.values(), *before.values()) for c in cols}
    rules = relevant_rules(db, {tenant}, datasets)
    snap = PolicySnapshot(rules, strict=False)
    now = now or datetime.now(UTC)
    # the log is read only for the subjects whose places the catalog change moves (a tenant's
    # whole read history per registration would cost too much); the rest have what they had
    plain_after = exposures(rules, after, now=now, snapshot=snap)
    plain_before = exposures(rules, before, now=now, snapshot=snap)
    moved = {k[1] for k, v in plain_after.items() if v[:2] != plain_before.get(k, ((), ()))[:2]}
    read = logged_raw_reads(db, after, moved) if moved else {}
    found = mixed_exposure(rules, after, now=now, snapshot=snap, read_raw=read)
    if not found:
        return []
    was = mixed_exposure(rules, before, now=now, snapshot=snap, read_raw=read)
    return [e for e in found if not any(e.covered_by(old) for old in was)]


def describe(problems: Sequence[MixedExposure]) -> str:
    head = "; ".join(p.reason for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"refused: mixed exposure of identifiers: {head}{more}"
