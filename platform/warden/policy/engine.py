"""Compiled, indexed policy snapshots that decide exactly as pycasbin does on Warden's model.
(Kept over 500 lines: the snapshot, its indexes and its change replay must agree with
pycasbin rule for rule, so the differential tests cover them as one unit.)

Stock pycasbin evaluates its matcher against every rule on each request. A `PolicySnapshot`
compiles the rules once into indexes keyed by (domain, subject-or-role) and object (exact
names, and keyMatch patterns by their literal prefix), resolves a subject's roles in a
domain once (memoised), and evaluates the matcher in plain Python on the few candidates.
Decisions and explanations are identical to `casbin.Enforcer.enforce_ex` on
`policies/model.conf`; construction refuses any other model text.

Column decision: "allow" when `act=read` is allowed, else "mask" when `act=mask` is allowed,
else "deny". Because the matcher lets a `read` rule match a `mask` request, a deny rule
with act `read` (or `*`) denies the column outright; a deny with act `mask` only removes
the masked fallback. Masking comes from an allow with act `mask` and no allow to read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Final, Literal

from casbin.model import Model

from warden.config import DEFAULT_POLICIES_DIR
from warden.policy.rules import ARITY, OPS, Rule, RuleError, format_rule, read_csv, rule_problems

Effect = Literal["allow", "mask", "deny"]

DEFAULT_MODEL_PATH: Final = DEFAULT_POLICIES_DIR / "model.conf"

# The model this engine implements (its matcher is compiled into Python below); the model file
# an installation runs with (Settings.model_path) is read once and must equal it (check_model).
MODEL_TEXT: Final = """\
[request_definition]
r = sub, dom, obj, col, purpose, act, now

[policy_definition]
p = sub, dom, obj, col, purpose, act, eft, grant, expires
p2 = sub, dom, obj, col, op, value

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && keyMatch(r.obj, p.obj) \
&& (p.col == "*" || r.col == p.col) && (p.purpose == "*" || r.purpose == p.purpose) \
&& (p.act == "*" || r.act == p.act || (p.act == "read" && r.act == "mask")) \
&& (p.expires == "" || r.now < p.expires)
"""

# pycasbin's role manager searches 10 BFS levels, the subject itself being level 0.
MAX_ROLE_DEPTH: Final = 9
_MEMO_LIMIT: Final = 100_000
_NOW_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


class ModelMismatch(ValueError):
    """The model text is not the one this engine implements."""


def format_now(now: datetime) -> str:
    """The request's `now` as the model compares it: fixed-width UTC, e.g. 2026-11-28T04:00:00Z."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).strftime(_NOW_FORMAT)


def _assertions(text: str) -> dict[str, dict[str, str]]:
    model = Model()
    model.load_model_from_text(text)
    return {
        sec: {key: " ".join(ast.value.split()) for key, ast in assertions.items()}
        for sec, assertions in model.items()
    }


@cache
def _expected_assertions() -> dict[str, dict[str, str]]:
    return _assertions(MODEL_TEXT)


def check_model(text: str) -> None:
    """Raise ModelMismatch unless `text` defines exactly the model this engine implements."""
    try:
        got = _assertions(text)
    except Exception as exc:
        raise ModelMismatch(f"model does not parse: {exc}") from exc
    want = _expected_assertions()
    for sec in sorted(set(want) | set(got)):
        for key in sorted(set(want.get(sec, {})) | set(got.get(sec, {}))):
            expected, actual = want.get(sec, {}).get(key), got.get(sec, {}).get(key)
            if expected != actual:
                raise ModelMismatch(
                    f"model {key!r} is {actual!r}; the policy engine implements {expected!r}"
                )


@dataclass(frozen=True, slots=True)
class ColumnDecision:
    """One column's effect, the rule that decided it (pycasbin's explanation) and, unless
    denied, the grant id that rule carries."""

    column: str
    effect: Effect
    rule: tuple[str, ...] | None
    grant_id: str | None


@dataclass(frozen=True, slots=True)
class RowFilter:
    """A policy row filter (`p2` rule) the reader's rows must satisfy."""

    column: str
    op: str
    value: str
    rule: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadDecision:
    """The decision for reading some columns of a dataset for a purpose."""

    subject: str
    tenant: str
    dataset: str
    purpose: str
    policy_version: int
    columns: tuple[ColumnDecision, ...]
    row_filters: tuple[RowFilter, ...]

    @property
    def allowed(self) -> bool:
        return any(c.effect != "deny" for c in self.columns)

    @property
    def allowed_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.effect == "allow")

    @property
    def masked_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.effect == "mask")

    @property
    def denied_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.effect == "deny")

    @property
    def deciding_rule(self) -> str:
        """The distinct deciding rules as CSV lines joined by '; ' ("" when none matched)."""
        seen = dict.fromkeys(format_rule("p", c.rule) for c in self.columns if c.rule)
        return "; ".join(seen)

    @property
    def grant_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.grant_id for c in self.columns if c.grant_id))


@dataclass(frozen=True, slots=True)
class MatchedRule:
    """A rule whose matcher was true for a request, with its position in policy order."""

    index: int
    rule: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything behind one enforce: the subject's roles, all matching rules, the outcome."""

    request: tuple[str, ...]
    subjects: tuple[str, ...]
    matched: tuple[MatchedRule, ...]
    allowed: bool
    rule: tuple[str, ...] | None


# A compiled p rule: (policy index, col, purpose, act, eft, expires, fields).
_PRule = tuple[int, str, str, str, str, str, tuple[str, ...]]
# A compiled p2 rule: (p2 index, obj, col, op, value, fields).
_P2Rule = tuple[int, str, str, str, str, tuple[str, ...]]


@dataclass(slots=True)
class _Bucket:
    exact: dict[str, list[_PRule]] = field(default_factory=dict)
    prefixes: dict[str, list[_PRule]] = field(default_factory=dict)
    lengths: tuple[int, ...] = ()


def _key_match(key: str, pattern: str) -> bool:
    star = pattern.find("*")
    return key == pattern if star < 0 else key.startswith(pattern[:star])


_ACTS_MATCHING: Final = {"read": frozenset({"*", "read"}), "mask": frozenset({"*", "mask", "read"})}


def _acts_matching(act: str) -> frozenset[str]:
    """Rule acts the matcher accepts for a request act (a read rule also grants mask)."""
    return _ACTS_MATCHING.get(act) or frozenset({"*", act})


def _outcome(hits: Iterable[_PRule], act: str) -> tuple[bool, int]:
    """pycasbin's allow-and-deny result and explain index over rules already matched on all
    but act: the first matching deny explains a denial, else the last matching rule."""
    acts = _acts_matching(act)
    allow, first_deny, last = False, -1, -1
    for i, _col, _purpose, ract, eft, _exp, _fields in hits:
        if ract not in acts:
            continue
        if eft == "deny":
            if first_deny < 0 or i < first_deny:
                first_deny = i
        else:
            allow = allow or eft == "allow"
            last = max(last, i)
    if first_deny >= 0:
        return False, first_deny
    return allow, last


class PolicySnapshot:
    """An immutable, indexed view of one policy version. Safe to share between threads."""

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        version: int = 0,
        model_text: str | None = None,
        strict: bool = True,
    ) -> None:
        """Compile `rules` (in policy order). `model_text` is the model file's text (None: the
        built-in MODEL_TEXT); ModelMismatch unless it is Warden's model. RuleError for a
        malformed rule, or with `strict` (the default) for any rule that fails validation."""
        if model_text is not None:
            check_model(model_text)
        self.version = version
        self._p: list[tuple[str, ...]] = []
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._p2: dict[tuple[str, str], list[_P2Rule]] = {}
        self._links: dict[str, dict[str, list[str]]] = {}
        self._roles_memo: dict[tuple[str, str], tuple[str, ...]] = {}
        counts = {"p": 0, "p2": 0, "g": 0}
        for ptype, fields in rules:
            fields = tuple(fields)
            if ptype not in ARITY or len(fields) != ARITY[ptype]:
                raise RuleError(f"malformed rule {format_rule(ptype, fields)!r}")
            if strict and (problems := rule_problems(ptype, fields)):
                raise RuleError(f"{format_rule(ptype, fields)!r}: {'; '.join(problems)}")
            counts[ptype] += 1
            if ptype == "p":
                self._add_p(fields)
            elif ptype == "p2":
                self._add_p2(counts["p2"] - 1, fields)
            else:
                user, role, dom = fields
                targets = self._links.setdefault(dom, {}).setdefault(user, [])
                if role not in targets:
                    targets.append(role)
        for bucket in self._buckets.values():
            bucket.lengths = tuple(sorted({len(p) for p in bucket.prefixes}))
        self.rule_counts = counts

    @classmethod
    def from_csv(
        cls, paths: Sequence[Path], *, version: int = 0, model_path: Path | None = None
    ) -> PolicySnapshot:
        """A snapshot of rule files, checked against the model file (default policies/)."""
        model_text = (model_path or DEFAULT_MODEL_PATH).read_text(encoding="utf-8")
        return cls(read_csv(paths), version=version, model_text=model_text)

    def _add_p(self, fields: tuple[str, ...]) -> None:
        sub, dom, obj, col, purpose, act, eft, _grant, expires = fields
        compiled: _PRule = (len(self._p), col, purpose, act, eft, expires, fields)
        self._p.append(fields)
        bucket = self._buckets.get((dom, sub))
        if bucket is None:
            bucket = self._buckets[(dom, sub)] = _Bucket()
        star = obj.find("*")
        if star < 0:
            bucket.exact.setdefault(obj, []).append(compiled)
        else:
            bucket.prefixes.setdefault(obj[:star], []).append(compiled)

    def _add_p2(self, index: int, fields: tuple[str, ...]) -> None:
        sub, dom, obj, col, op, value = fields
        if op not in OPS:
            raise RuleError(f"row filter op {op!r} is unknown in {format_rule('p2', fields)!r}")
        self._p2.setdefault((dom, sub), []).append((index, obj, col, op, value, fields))

    def with_changes(self, delta: Sequence[tuple[str, Rule]], *, version: int) -> PolicySnapshot:
        """A new snapshot: this one plus `delta` ("add" | "remove", rule), in order.

        Copy on write: only the buckets, filter lists and role links a change touches are
        copied, so a small change to a 100k-rule policy costs microseconds, not a rebuild,
        and readers of this snapshot are never disturbed. Added rules come last in policy
        order, as their new rows do in the database, so explanations match a full reload.
        """
        new = object.__new__(PolicySnapshot)
        new.version = version
        new._p = list(self._p)
        new._buckets = dict(self._buckets)
        new._p2 = dict(self._p2)
        new._links = dict(self._links)
        new._roles_memo = {}
        counts = dict(self.rule_counts)
        owned: set[tuple[str, str]] = set()  # buckets already copied for this change set
        for op, (ptype, fields) in delta:
            fields = tuple(fields)
            if ptype not in ARITY or len(fields) != ARITY[ptype] or op not in ("add", "remove"):
                raise RuleError(f"malformed change {op} {format_rule(ptype, fields)!r}")
            if op == "add" and (problems := rule_problems(ptype, fields)):
                raise RuleError(f"{format_rule(ptype, fields)!r}: {'; '.join(problems)}")
            counts[ptype] += 1 if op == "add" else -1
            if ptype == "p":
                new._change_p(op, fields, owned)
            elif ptype == "p2":
                new._change_p2(op, fields, counts["p2"])
            else:
                new._change_g(op, fields)
        for key in owned:
            bucket = new._buckets[key]
            bucket.lengths = tuple(sorted({len(p) for p in bucket.prefixes}))
        new.rule_counts = counts
        return new

    def _change_p(self, op: str, fields: tuple[str, ...], owned: set[tuple[str, str]]) -> None:
        sub, dom, obj = fields[0], fields[1], fields[2]
        key = (dom, sub)
        if key not in owned:
            old = self._buckets.get(key) or _Bucket()
            self._buckets[key] = _Bucket(dict(old.exact), dict(old.prefixes), old.lengths)
            owned.add(key)
        bucket = self._buckets[key]
        star = obj.find("*")
        table, slot = (bucket.exact, obj) if star < 0 else (bucket.prefixes, obj[:star])
        if op == "add":
            compiled: _PRule = (
                len(self._p),
                fields[3],
                fields[4],
                fields[5],
                fields[6],
                fields[8],
                fields,
            )
            self._p.append(fields)
            table[slot] = [*table.get(slot, ()), compiled]
            return
        kept = [r for r in table.get(slot, ()) if r[6] != fields]
        if kept:
            table[slot] = kept
        else:
            table.pop(slot, None)

    def _change_p2(self, op: str, fields: tuple[str, ...], index: int) -> None:
        key = (fields[1], fields[0])
        current = self._p2.get(key, [])
        if op == "add":
            sub, dom, obj, col, filter_op, value = fields
            if filter_op not in OPS:
                raise RuleError(f"row filter op {filter_op!r} is unknown")
            # Indexes only order filters; a fresh one above all others keeps policy order.
            after = max((r[0] for rules in self._p2.values() for r in rules), default=-1) + 1
            self._p2[key] = [*current, (max(after, index), obj, col, filter_op, value, fields)]
        else:
            self._p2[key] = [r for r in current if r[5] != fields]

    def _change_g(self, op: str, fields: tuple[str, ...]) -> None:
        user, role, dom = fields
        links = dict(self._links.get(dom, {}))
        targets = list(links.get(user, []))
        if op == "add" and role not in targets:
            targets.append(role)
        elif op == "remove" and role in targets:
            targets.remove(role)
        links[user] = targets
        self._links[dom] = links

    # -- roles and candidates -------------------------------------------------------------

    def subjects(self, subject: str, tenant: str) -> tuple[str, ...]:
        """The subject and every role it holds in the tenant, transitively (as pycasbin's g)."""
        key = (subject, tenant)
        found = self._roles_memo.get(key)
        if found is None:
            found = self._resolve(subject, tenant)
            if len(self._roles_memo) >= _MEMO_LIMIT:
                self._roles_memo.clear()
            self._roles_memo[key] = found
        return found

    def _resolve(self, subject: str, tenant: str) -> tuple[str, ...]:
        links = self._links.get(tenant, {})
        depth = {subject: 0}
        queue = deque([subject])
        while queue:
            name = queue.popleft()
            if depth[name] == MAX_ROLE_DEPTH:
                continue
            for role in links.get(name, ()):
                if role not in depth:
                    depth[role] = depth[name] + 1
                    queue.append(role)
        return tuple(depth)

    def _candidates(self, subject: str, tenant: str, obj: str) -> list[_PRule]:
        found: list[_PRule] = []
        buckets = self._buckets
        for name in self.subjects(subject, tenant):
            bucket = buckets.get((tenant, name))
            if bucket is None:
                continue
            hit = bucket.exact.get(obj)
            if hit:
                found += hit
            for length in bucket.lengths:
                if length > len(obj):
                    break
                hit = bucket.prefixes.get(obj[:length])
                if hit:
                    found += hit
        return found

    @staticmethod
    def _live(rules: list[_PRule], col: str | None, purpose: str, now: str) -> list[_PRule]:
        return [
            r
            for r in rules
            if (col is None or r[1] == "*" or r[1] == col)
            and (r[2] == "*" or r[2] == purpose)
            and (r[5] == "" or now < r[5])
        ]

    # -- casbin-equivalent enforcement ----------------------------------------------------

    def enforce_ex(
        self, sub: str, dom: str, obj: str, col: str, purpose: str, act: str, now: str
    ) -> tuple[bool, list[str]]:
        """Exactly `casbin.Enforcer.enforce_ex(sub, dom, obj, col, purpose, act, now)`."""
        hits = self._live(self._candidates(sub, dom, obj), col, purpose, now)
        allowed, index = _outcome(hits, act)
        return allowed, list(self._p[index]) if index >= 0 else []

    def enforce(
        self, sub: str, dom: str, obj: str, col: str, purpose: str, act: str, now: str
    ) -> bool:
        """Exactly `casbin.Enforcer.enforce(...)` on the same request."""
        return self.enforce_ex(sub, dom, obj, col, purpose, act, now)[0]

    def explain(
        self, sub: str, dom: str, obj: str, col: str, purpose: str, act: str, now: datetime
    ) -> Explanation:
        """The outcome of one enforce plus every rule that matched it, in policy order."""
        now_s = format_now(now)
        hits = self._live(self._candidates(sub, dom, obj), col, purpose, now_s)
        allowed, index = _outcome(hits, act)
        acts = _acts_matching(act)
        matched = sorted((h for h in hits if h[3] in acts), key=lambda h: h[0])
        return Explanation(
            request=(sub, dom, obj, col, purpose, act, now_s),
            subjects=self.subjects(sub, dom),
            matched=tuple(MatchedRule(h[0], h[6]) for h in matched),
            allowed=allowed,
            rule=self._p[index] if index >= 0 else None,
        )

    # -- Warden decisions -----------------------------------------------------------------

    def _decide(self, column: str, hits: Iterable[_PRule]) -> ColumnDecision:
        hits = tuple(hits)
        allowed, index = _outcome(hits, "read")
        effect: Effect = "allow"
        if not allowed:
            allowed, index = _outcome(hits, "mask")
            effect = "mask" if allowed else "deny"
        rule = self._p[index] if index >= 0 else None
        grant = (rule[7] or None) if rule and effect != "deny" else None
        return ColumnDecision(column, effect, rule, grant)

    def decide_column(
        self, subject: str, tenant: str, dataset: str, column: str, purpose: str, now: datetime
    ) -> ColumnDecision:
        """allow if act=read is allowed, else mask if act=mask is allowed, else deny. The rule
        is pycasbin's explanation for the act that decided (read for allow, mask otherwise)."""
        hits = self._live(
            self._candidates(subject, tenant, dataset), column, purpose, format_now(now)
        )
        return self._decide(column, hits)

    def decide_read(
        self,
        subject: str,
        tenant: str,
        dataset: str,
        columns: Sequence[str],
        purpose: str,
        now: datetime,
    ) -> ReadDecision:
        """Decide every requested column and collect the subject's row filters."""
        live = self._live(
            self._candidates(subject, tenant, dataset), None, purpose, format_now(now)
        )
        wildcard = [r for r in live if r[1] == "*"]
        by_column: dict[str, list[_PRule]] = {}
        for r in live:
            if r[1] != "*":
                by_column.setdefault(r[1], []).append(r)
        decisions = tuple(self._decide(col, wildcard + by_column.get(col, [])) for col in columns)
        return ReadDecision(
            subject=subject,
            tenant=tenant,
            dataset=dataset,
            purpose=purpose,
            policy_version=self.version,
            columns=decisions,
            row_filters=self.row_filters(subject, tenant, dataset),
        )

    def row_filters(self, subject: str, tenant: str, dataset: str) -> tuple[RowFilter, ...]:
        """Every p2 rule of the subject or its roles in the tenant whose obj keyMatches the
        dataset, in policy order; the reader must apply all of them (AND)."""
        found: list[_P2Rule] = []
        for name in self.subjects(subject, tenant):
            for rule in self._p2.get((tenant, name), ()):
                if _key_match(dataset, rule[1]):
                    found.append(rule)
        found.sort(key=lambda r: r[0])
        return tuple(RowFilter(col, op, value, fields) for _i, _o, col, op, value, fields in found)

    def can(self, sub: str, tenant: str, obj: str, act: str, now: datetime | None = None) -> bool:
        """A system (non-data) permission, e.g. can("alice", "acme", "sys:policy", "manage")."""
        now_s = format_now(now or datetime.now(UTC))
        return self.enforce(sub, tenant, obj, "*", "*", act, now_s)
