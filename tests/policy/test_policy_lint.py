"""Lint: every reason a rule file or model file is refused, with its line number."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.policy.engine import MODEL_TEXT
from warden.policy.lint import Problem, lint, lint_model, lint_rules

from .conftest import DEMO, MODEL, SEED

OK = "p, alice, acme, pins, *, training, read, allow, ,"


def test_shipped_files_are_clean() -> None:
    assert lint(MODEL, [SEED, DEMO]) == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("p3, alice, acme, pins", "unknown ptype 'p3'"),
        ("P, alice, acme, pins, *, training, read, allow, ,", "unknown ptype 'P'"),
        ("p, alice, acme, pins, *, training, read, allow", "p rule has 7 fields, expected 9"),
        ("p2, role:a, acme, pins, region, eq", "p2 rule has 5 fields, expected 6"),
        ("g, alice, role:a", "g rule has 2 fields, expected 3"),
        (
            "p, alice, acme, pins, *, training, read, permit, ,",
            "effect 'permit' is not allow or deny",
        ),
        ("p, alice, acme, pins, *, training, write, allow, ,", "action 'write' is not one of"),
        ("p2, role:a, acme, pins, region, like, EU", "row filter op 'like' is not one of"),
        ("p2, role:a, acme, pins, *, eq, EU", "row filter column cannot be '*'"),
        ("p2, role:a, acme, pins, region, in, EU||US", "empty '|'-separated item"),
        ("p, alice, acme, pins[0], *, training, read, allow, ,", "forbidden characters '[]'"),
        ("p, alice, acme, pins, *, train(ing), read, allow, ,", "forbidden characters '()'"),
        ('p, "alice", acme, pins, *, training, read, allow, ,', "forbidden characters '\"'"),
        ("p, , acme, pins, *, training, read, allow, ,", "field 'sub' is empty"),
        ("p, alice, acme, pins, *, , read, allow, ,", "field 'purpose' is empty"),
        ("p2, role:a, acme, pins, region, eq,", "field 'value' is empty"),
        ("p, alice, acme, pins, *, training, read, allow, g1, 2026-11-28", "expiry '2026-11-28'"),
        ("p, alice, acme, pins, *, training, read, allow, g1, 2026-02-30T00:00:00Z", "expiry"),
        ("p, alice, acme, pins, *, training, read, allow, g 1, ", "grant id 'g 1' is malformed"),
        ("p, alice, Acme Corp, pins, *, training, read, allow, ,", "domain 'Acme Corp' is not"),
        ("g, alice, role:a, ACME", "domain 'ACME' is not a tenant name"),
        ("g, alice, ml_engineer, acme", "role link target 'ml_engineer' must start with 'role:'"),
        ("g, role:a, role:a, acme", "role link from a subject to itself"),
        ("p, role:a, acme, sys:policy, *, training, manage, allow, ,", "need col '*' and purpose"),
        ("p, role:a, acme, sys:policy, *, *, mask, allow, ,", "system rules allow act read"),
    ],
)
def test_each_bad_line_is_reported_with_its_number(tmp_path: Path, line: str, reason: str) -> None:
    rules = tmp_path / "rules.csv"
    rules.write_text(f"# header\n{OK}\n\n{line}\n{OK.replace('pins', 'gold')}\n")
    problems = lint_rules([rules])
    assert problems, line
    assert {p.line for p in problems} == {4}
    assert any(reason in p.reason for p in problems), problems
    assert all(p.file == str(rules) for p in problems)


def test_cross_file_problems(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(f"{OK}\ng, alice, role:ml_enginer, acme\ng, bob, role:a, acme\n")
    second.write_text(f"p, role:a, acme, pins, *, *, read, allow, ,\n{OK}\n")
    assert lint_rules([first, second]) == [
        Problem(str(second), 2, f"duplicate of {first}:1"),
        Problem(str(first), 2, "role 'role:ml_enginer' has no rules in domain 'acme'"),
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    assert [p.line for p in lint_rules([missing])] == [0]
    assert [p.line for p in lint_model(tmp_path / "nope.conf")] == [0]


def test_model_must_be_the_engines(tmp_path: Path) -> None:
    model = tmp_path / "model.conf"
    model.write_text(MODEL_TEXT.replace("r.now < p.expires", "r.now <= p.expires"))
    [problem] = lint_model(model)
    assert problem.line == MODEL_TEXT.splitlines().index("[matchers]") + 2
    assert "'m'" in problem.reason
    model.write_text(MODEL_TEXT.replace("p2 = sub, dom, obj, col, op, value\n", ""))
    [problem] = lint_model(model)
    assert "'p2'" in problem.reason and problem.line == 0


# --- mixed exposure: raw in one place, pseudonymised in another -----------------------------

MASKED_ENG = "p, role:ml_engineer, acme, engagements, user_id, training, mask, allow, ,"
OLD_GOLD = "p, role:ml_engineer, acme, gold, *, evaluation, read, allow, ,"


def test_the_old_seed_rule_is_refused_at_its_line(tmp_path: Path) -> None:
    """The seed used to give raw gold.user_id beside masked engagements.user_id."""
    rules = tmp_path / "seed.csv"
    rules.write_text(f"# old seed\n{MASKED_ENG}\n{OLD_GOLD}\ng, alice, role:ml_engineer, acme\n")
    problems = lint_rules([rules])
    assert {(p.file, p.line) for p in problems} == {(str(rules), 3)}
    subjects = sorted(p.reason.split("'")[1] for p in problems)
    assert subjects == ["alice", "role:ml_engineer"]
    assert all("raw in gold.user_id (evaluation)" in p.reason for p in problems)
    assert all("engagements.user_id (training)" in p.reason for p in problems)


def test_through_role_links_across_files_and_with_exceptions(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(f"{MASKED_ENG}\n")
    second.write_text(
        "p, role:x, acme, users, user_id, analytics, read, allow, ,\n"
        "g, role:z, role:x, acme\ng, role:z, role:ml_engineer, acme\n"
    )
    [problem] = lint_rules([first, second])
    assert (problem.file, problem.line) == (str(second), 1)
    assert problem.reason.startswith("'role:z' in 'acme'")
    # an explicit exception, for role:z or a role it holds, makes it a deliberate choice
    second.write_text(
        second.read_text() + "p, role:x, acme, entity:user, *, *, expose_mixed, allow, ,\n"
    )
    assert lint_rules([first, second]) == []


def test_lint_checks_against_a_given_catalog(tmp_path: Path) -> None:
    from warden.policy.exposure import IdColumn

    rules = tmp_path / "r.csv"
    rules.write_text(
        "p, role:a, acme, boards, owner_id, training, mask, allow, ,\n"
        "p, role:a, acme, owners, id, training, read, allow, ,\n"
    )
    assert lint_rules([rules]) == []  # the seeded catalog has no such columns
    owners = [IdColumn("boards", "owner_id", "user", True), IdColumn("owners", "id", "user", False)]
    catalog = {"acme": owners}
    [problem] = lint_rules([rules], catalog)
    assert problem.line == 2 and "owners.id" in problem.reason


def test_policy_lint_cli_fails_on_mixed_exposure(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from warden.cli.main import app

    rules = tmp_path / "rules.csv"
    rules.write_text(f"{MASKED_ENG}\n{OLD_GOLD}\n")
    out = CliRunner().invoke(app, ["policy", "lint", str(rules)])
    assert out.exit_code != 0
    assert f"{rules}:2:" in out.output and "re-identify" in out.output
    rules.write_text(f"{MASKED_ENG}\n{OLD_GOLD.replace('*', 'query_pin_id', 1)}\n")
    assert CliRunner().invoke(app, ["policy", "lint", str(rules)]).exit_code == 0
