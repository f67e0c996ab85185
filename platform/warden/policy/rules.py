"""Casbin rule rows as Warden stores them: parsing, formatting and field-level validation.

A rule is `(ptype, fields)`, e.g. `("p", ("role:analyst_eu", "acme", "engagements", "*",
"analytics", "read", "allow", "", ""))`. Lines are parsed the way pycasbin's CSV loader
parses them (split on commas, strip each token), so a field can never hold a comma, and
brackets or parentheses would change how pycasbin splits: validation rejects both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Final

Rule = tuple[str, tuple[str, ...]]

ARITY: Final = {"p": 9, "p2": 6, "g": 3}
P_FIELDS: Final = ("sub", "dom", "obj", "col", "purpose", "act", "eft", "grant", "expires")
P2_FIELDS: Final = ("sub", "dom", "obj", "col", "op", "value")
G_FIELDS: Final = ("user", "role", "dom")
FIELD_NAMES: Final = {"p": P_FIELDS, "p2": P2_FIELDS, "g": G_FIELDS}

EFFECTS: Final = frozenset({"allow", "deny"})
ACTIONS: Final = frozenset({"read", "mask", "browse", "review", "manage", "expose_mixed", "*"})
SYSTEM_ACTIONS: Final = frozenset({"read", "manage", "*"})
OPS: Final = frozenset({"eq", "ne", "in", "not_in", "lt", "le", "gt", "ge"})
ROLE_PREFIX: Final = "role:"
SYSTEM_PREFIX: Final = "sys:"
# `p, SUBJECT, TENANT, entity:user, *, *, expose_mixed, allow, ,`: the audited exception that
# lets a subject see one entity's identifiers raw somewhere and masked elsewhere.
ENTITY_PREFIX: Final = "entity:"
EXPOSE_MIXED: Final = "expose_mixed"
ENTITY_OBJ_RE: Final = re.compile(r"entity:[a-z][a-z0-9_]{0,31}")
MAX_FIELD_LEN: Final = 255

FORBIDDEN_CHARS: Final = frozenset(',[]()"')
EXPIRY_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
DOMAIN_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
GRANT_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# What data may be read for: a rule's purpose is one of these (or "*").
PURPOSES: Final = ("training", "evaluation", "inference", "analytics")


class RuleError(ValueError):
    """A rule (or rule row) that Warden refuses to store or compile."""


def split_line(line: str) -> list[str] | None:
    """Tokens of one CSV policy line, or None for a blank line or a comment."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    return [token.strip() for token in line.split(",")]


def format_rule(ptype: str, fields: Sequence[str]) -> str:
    """The CSV line for a rule, as pycasbin writes it: `p, alice, acme, ...`."""
    return ", ".join((ptype, *fields))


def iter_csv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """`(line number, tokens)` for each non-blank, non-comment line of a rule file."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            tokens = split_line(line)
            if tokens is not None:
                yield lineno, tokens


def read_csv(paths: Sequence[Path]) -> list[Rule]:
    """All rules of the files, in order; raises RuleError naming the first invalid line."""
    rules: list[Rule] = []
    for path in paths:
        for lineno, tokens in iter_csv(path):
            rules.append(require_valid(tokens[0], tokens[1:], f"{path}:{lineno}", first_only=True))
    return rules


def require_valid(
    ptype: str, fields: Sequence[str], where: str, *, first_only: bool = False
) -> Rule:
    """The rule, or RuleError naming `where` and its problems (or only the first)."""
    fields = tuple(fields)
    problems = rule_problems(ptype, fields)
    if problems:
        raise RuleError(f"{where}: {problems[0] if first_only else '; '.join(problems)}")
    return ptype, fields


def valid_expiry(value: str) -> bool:
    """True for a fixed-width UTC timestamp like 2026-11-28T04:00:00Z that is a real date."""
    if not EXPIRY_RE.fullmatch(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1 << 16)
def _value_problems(ptype: str, name: str, value: str) -> tuple[str, ...]:
    """Problems of one field value on its own (cached: values repeat across many rules)."""
    problems = []
    bad = sorted({c for c in value if c in FORBIDDEN_CHARS or not c.isprintable()})
    if bad:
        problems.append(f"field {name!r} holds forbidden characters {''.join(bad)!r}")
    if value != value.strip():
        problems.append(f"field {name!r} has leading or trailing whitespace")
    if len(value) > MAX_FIELD_LEN:
        problems.append(f"field {name!r} is longer than {MAX_FIELD_LEN} characters")
    if value == "":
        if not (ptype == "p" and name in ("grant", "expires")):
            problems.append(f"field {name!r} is empty")
    elif name == "dom" and not DOMAIN_RE.fullmatch(value):
        problems.append(f"domain {value!r} is not a tenant name (lowercase letters, digits, _ . -)")
    elif name == "eft" and value not in EFFECTS:
        problems.append(f"effect {value!r} is not allow or deny")
    elif name == "act" and value not in ACTIONS:
        problems.append(f"action {value!r} is not one of {', '.join(sorted(ACTIONS))}")
    elif name == "expires" and not valid_expiry(value):
        problems.append(f"expiry {value!r} is not a UTC time like 2026-11-28T04:00:00Z")
    elif name == "grant" and not GRANT_RE.fullmatch(value):
        problems.append(f"grant id {value!r} is malformed")
    elif name == "op" and value not in OPS:
        problems.append(f"row filter op {value!r} is not one of {', '.join(sorted(OPS))}")
    elif name == "role" and not value.startswith(ROLE_PREFIX):
        problems.append(f"role link target {value!r} must start with {ROLE_PREFIX!r}")
    return tuple(problems)


def column_name_problem(name: str) -> str | None:
    """Why no rule can name this column exactly (None: one can). Every reader of a column
    name (the catalog, a grant's rules, the engine) must read it as one column: `*` is every
    column to the policy, and a comma, bracket, surrounding space or invisible character is
    split, stripped or refused by the rule parser."""
    if name == "*":
        return "a column may not be named '*': policy rules read it as every column"
    if problems := _value_problems("p", "col", name):
        return f"column {name[:64]!r} cannot be named by a policy rule: {problems[0]}"
    return None


def rule_problems(ptype: str, fields: Sequence[str]) -> list[str]:
    """Every reason the rule is invalid (empty when it is fine)."""
    arity = ARITY.get(ptype)
    if arity is None:
        return [f"unknown ptype {ptype!r} (expected one of p, p2, g)"]
    if len(fields) != arity:
        return [f"{ptype} rule has {len(fields)} fields, expected {arity}"]
    problems: list[str] = []
    for name, value in zip(FIELD_NAMES[ptype], fields, strict=True):
        problems += _value_problems(ptype, name, value)
    if ptype == "p":
        obj, col, purpose, act = fields[2], fields[3], fields[4], fields[5]
        if obj.startswith(SYSTEM_PREFIX):
            if col != "*" or purpose != "*":
                problems.append("system rules (obj sys:...) need col '*' and purpose '*'")
            if act in ACTIONS and act not in SYSTEM_ACTIONS:
                problems.append(f"system rules allow act read, manage or *, not {act!r}")
        elif obj.startswith(ENTITY_PREFIX) or act == EXPOSE_MIXED:
            if not ENTITY_OBJ_RE.fullmatch(obj) or act != EXPOSE_MIXED:
                problems.append(f"exceptions need obj entity:NAME and act {EXPOSE_MIXED}")
            if col != "*" or purpose != "*":
                problems.append("exceptions (obj entity:...) need col '*' and purpose '*'")
    elif ptype == "p2":
        col, op, value = fields[3], fields[4], fields[5]
        if col == "*":
            problems.append("row filter column cannot be '*'")
        if op in ("in", "not_in") and "" in value.split("|"):
            problems.append(f"row filter value {value!r} has an empty '|'-separated item")
    elif fields[0] == fields[1]:
        problems.append("role link from a subject to itself")
    return problems
