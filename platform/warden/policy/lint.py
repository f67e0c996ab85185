"""Check a model file and rule CSV files without applying anything.

Each problem is `(file, line, reason)`; line 0 means the file as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from warden.policy.engine import ModelMismatch, check_model
from warden.policy.exposure import Catalog, IdColumn, mixed_exposure
from warden.policy.rules import ROLE_PREFIX, Rule, RuleError, iter_csv, rule_problems


class Problem(NamedTuple):
    file: str
    line: int
    reason: str


def lint_model(path: Path) -> list[Problem]:
    """Problems with a model file: unreadable, or not exactly the model the engine implements."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [Problem(str(path), 0, f"cannot read model: {exc.strerror}")]
    try:
        check_model(text)
    except ModelMismatch as exc:
        key = re.search(r"model '(\w+)'", str(exc))
        return [Problem(str(path), _line_of(text, key.group(1)) if key else 0, str(exc))]
    return []


def _line_of(text: str, key: str) -> int:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return lineno
    return 0


def seed_catalog(tenants: Sequence[str]) -> dict[str, list[IdColumn]]:
    """The identifier columns `warden data seed` registers, as if seeded in every tenant."""
    from warden.tastegraph import described_specs

    columns = [
        IdColumn(
            spec.name, c.name, c.entity or f"column:{c.name}", c.name in spec.identifier_columns
        )
        for spec in described_specs()
        for c in spec.columns
        if c.entity or c.name in spec.identifier_columns
    ]
    return {t: columns for t in tenants}


def lint_rules(paths: Sequence[Path], catalog: Catalog | None = None) -> list[Problem]:
    """Problems with rule files, checked together: every invalid line, duplicates, role
    links to roles that have no rules (nor parents) in that domain in any of the files, and
    subjects that could see an entity's identifiers raw in one place and masked in another
    (see warden.policy.exposure), in `catalog` (default: the seeded taste graph's datasets)."""
    problems: list[Problem] = []
    valid: list[Rule] = []
    first_seen: dict[tuple[str, ...], tuple[str, int]] = {}
    links: list[tuple[str, int, str, str]] = []
    known_roles: set[tuple[str, str]] = set()
    for path in paths:
        name = str(path)
        try:
            lines = list(iter_csv(path))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(name, 0, f"cannot read rules: {exc}"))
            continue
        for lineno, tokens in lines:
            ptype, fields = tokens[0], tuple(tokens[1:])
            reasons = rule_problems(ptype, fields)
            problems += [Problem(name, lineno, reason) for reason in reasons]
            if reasons:
                continue
            valid.append((ptype, fields))
            key = tuple(tokens)
            if key in first_seen:
                file, line = first_seen[key]
                problems.append(Problem(name, lineno, f"duplicate of {file}:{line}"))
            else:
                first_seen[key] = (name, lineno)
            if ptype == "g":
                links.append((name, lineno, fields[1], fields[2]))
                known_roles.add((fields[0], fields[2]))
            else:
                known_roles.add((fields[0], fields[1]))
    for name, lineno, role, dom in links:
        if role.startswith(ROLE_PREFIX) and (role, dom) not in known_roles:
            problems.append(Problem(name, lineno, f"role {role!r} has no rules in domain {dom!r}"))
    return problems + _exposure_problems(valid, first_seen, catalog)


def _exposure_problems(
    rules: list[Rule],
    first_seen: dict[tuple[str, ...], tuple[str, int]],
    catalog: Catalog | None,
) -> list[Problem]:
    """Each mixed exposure, at the line of a rule that gives the raw side (else line 0)."""
    tenants = sorted({f[2] if p == "g" else f[1] for p, f in rules})
    try:
        found = mixed_exposure(rules, catalog if catalog is not None else seed_catalog(tenants))
    except RuleError as exc:
        return [Problem("", 0, f"rules do not compile: {exc}")]
    problems = []
    for exposure in found:
        rule = next((p.rule for p in exposure.raw if p.rule), None)
        file, line = first_seen.get(("p", *rule), ("", 0)) if rule else ("", 0)
        problems.append(Problem(file, line, exposure.reason))
    return problems


def lint(
    model_path: Path, rule_paths: Sequence[Path], catalog: Catalog | None = None
) -> list[Problem]:
    """All problems with a model file and the rule files meant to go with it."""
    return lint_model(model_path) + lint_rules(rule_paths, catalog)
