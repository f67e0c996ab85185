"""The model and the seed/demo rules, as a table: request -> effect and deciding rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import casbin
import pytest

from warden.policy.engine import (
    MODEL_TEXT,
    ModelMismatch,
    PolicySnapshot,
    RowFilter,
    check_model,
    format_now,
)

from .conftest import DEMO, EXTRA, MODEL, SEED

NOW = datetime(2026, 11, 28, 4, 0, 0, tzinfo=UTC)
LATER = datetime(2031, 1, 1, tzinfo=UTC)


def rule(line: str) -> tuple[str, ...]:
    """The fields of a rule written as its CSV line."""
    return tuple(token.strip() for token in line.split(",")[1:])


ML = "role:ml_engineer, acme"
AN = "role:analyst_eu, acme"

# fmt: off
# subject, tenant, dataset, column, purpose, now, expected effect, expected deciding rule
TABLE = [
    # masking: the role may mask user_id but not read it
    ("alice", "acme", "engagements", "user_id", "training", NOW, "mask",
     f"p, {ML}, engagements, user_id, training, mask, allow, ,"),
    ("alice", "acme", "engagements", "pin_id", "training", NOW, "allow",
     f"p, {ML}, engagements, pin_id, training, read, allow, ,"),
    ("alice", "acme", "users", "user_id", "evaluation", NOW, "mask",
     f"p, {ML}, users, user_id, evaluation, mask, allow, ,"),
    ("alice", "acme", "users", "region", "evaluation", NOW, "allow",
     f"p, {ML}, users, region, evaluation, read, allow, ,"),
    ("alice", "acme", "users", "email", "evaluation", NOW, "deny", None),
    # deny overrides allow: alice's own deny beats her role's allow, for read and for mask
    ("alice", "acme", "engagements", "dwell_ms", "training", NOW, "deny",
     "p, alice, acme, engagements, dwell_ms, *, *, deny, ,"),
    ("erin", "acme", "engagements", "dwell_ms", "analytics", NOW, "deny",
     f"p, {AN}, engagements, dwell_ms, *, *, deny, ,"),
    ("erin", "acme", "engagements", "user_id", "analytics", NOW, "mask",
     f"p, {AN}, engagements, user_id, analytics, mask, allow, ,"),
    ("erin", "acme", "engagements", "pin_id", "analytics", NOW, "allow",
     f"p, {AN}, engagements, pin_id, analytics, read, allow, ,"),
    # purpose binding
    ("alice", "acme", "engagements", "pin_id", "analytics", NOW, "deny", None),
    ("erin", "acme", "engagements", "pin_id", "training", NOW, "deny", None),
    ("alice", "acme", "gold", "query_pin_id", "evaluation", NOW, "allow",
     f"p, {ML}, gold, query_pin_id, evaluation, read, allow, ,"),
    # gold's user_id is masked as engagements' is: never raw beside a pseudonymised copy
    ("alice", "acme", "gold", "user_id", "evaluation", NOW, "mask",
     f"p, {ML}, gold, user_id, evaluation, mask, allow, ,"),
    ("alice", "acme", "gold", "label", "evaluation", NOW, "deny", None),
    ("alice", "acme", "pins", "image", "inference", NOW, "allow",
     f"p, {ML}, pins, *, inference, read, allow, ,"),
    ("alice", "acme", "pin_pairs", "score", "analytics", NOW, "deny", None),
    # expired rules never allow: alice's gold grant ended in 2025; erin's pins grant in 2030
    ("alice", "acme", "gold", "label", "training", NOW, "deny", None),
    ("erin", "acme", "pins", "image", "analytics", NOW, "allow",
     "p, erin, acme, pins, *, analytics, read, allow, grant-demo-erin-pins, "
     "2030-01-01T00:00:00Z"),
    ("erin", "acme", "pins", "image", "analytics", LATER, "deny", None),
    # a grant expiring at 04:00:00 is over at 04:00:00 and live one second before
    ("erin", "acme", "users", "region", "analytics", NOW, "deny", None),
    ("erin", "acme", "users", "region", "analytics", NOW - timedelta(microseconds=1), "allow",
     "p, erin, acme, users, region, analytics, read, allow, grant-edge, 2026-11-28T04:00:00Z"),
    # tenants are isolated
    ("bob", "globex", "pins", "image", "training", NOW, "allow",
     "p, role:ml_engineer, globex, pins, *, training, read, allow, ,"),
    ("bob", "acme", "pins", "image", "training", NOW, "deny", None),
    ("alice", "globex", "pins", "image", "training", NOW, "deny", None),
    ("alice", "globex", "engagements", "pin_id", "training", NOW, "deny", None),
    # role inheritance: sam -> role:senior_ml -> role:ml_engineer
    ("sam", "acme", "engagements", "pin_id", "training", NOW, "allow",
     f"p, {ML}, engagements, pin_id, training, read, allow, ,"),
    ("sam", "acme", "engagements", "user_id", "training", NOW, "mask",
     f"p, {ML}, engagements, user_id, training, mask, allow, ,"),
    ("sam", "acme", "gold", "label", "training", NOW, "allow",
     "p, role:senior_ml, acme, gold, *, training, read, allow, ,"),
    # nobody else gets anything
    ("mallory", "acme", "engagements", "pin_id", "training", NOW, "deny", None),
    ("olga", "acme", "engagements", "pin_id", "training", NOW, "deny", None),
]
# fmt: on


@pytest.fixture(scope="module")
def snapshot() -> PolicySnapshot:
    return PolicySnapshot.from_csv([SEED, DEMO, EXTRA], version=7)


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> casbin.Enforcer:
    merged = tmp_path_factory.mktemp("rules") / "all.csv"
    merged.write_text("\n".join(p.read_text() for p in (SEED, DEMO, EXTRA)))
    return casbin.Enforcer(str(MODEL), str(merged))


@pytest.mark.parametrize(
    ("subject", "tenant", "dataset", "column", "purpose", "now", "effect", "deciding"), TABLE
)
def test_column_decision_table(
    snapshot: PolicySnapshot,
    stock: casbin.Enforcer,
    subject: str,
    tenant: str,
    dataset: str,
    column: str,
    purpose: str,
    now: datetime,
    effect: str,
    deciding: str | None,
) -> None:
    decision = snapshot.decide_column(subject, tenant, dataset, column, purpose, now)
    assert decision.effect == effect
    assert decision.rule == (rule(deciding) if deciding else None)
    granted = decision.rule and decision.effect != "deny" and decision.rule[7]
    assert decision.grant_id == (granted or None)
    # the same answer from stock pycasbin: read first, then mask
    request = (subject, tenant, dataset, column, purpose)
    read_ok, read_rule = stock.enforce_ex(*request, "read", format_now(now))
    mask_ok, mask_rule = stock.enforce_ex(*request, "mask", format_now(now))
    stock_effect = "allow" if read_ok else "mask" if mask_ok else "deny"
    stock_rule = read_rule if read_ok else mask_rule
    assert (stock_effect, tuple(stock_rule) or None) == (decision.effect, decision.rule)


def test_read_decision_collects_columns_rules_and_row_filters(snapshot: PolicySnapshot) -> None:
    columns = ["user_id", "pin_id", "dwell_ms", "region"]
    read = snapshot.decide_read("erin", "acme", "engagements", columns, "analytics", NOW)
    assert read.policy_version == 7
    assert read.allowed
    assert read.allowed_columns == ("pin_id", "region")
    assert read.masked_columns == ("user_id",)
    assert read.denied_columns == ("dwell_ms",)
    assert read.row_filters == (
        RowFilter(
            "region", "eq", "EU", rule("p2, role:analyst_eu, acme, engagements, region, eq, EU")
        ),
        RowFilter(
            "ts", "ge", "2026-01-01", rule("p2, erin, acme, engagements, ts, ge, 2026-01-01")
        ),
    )
    assert read.deciding_rule.split("; ") == [
        "p, role:analyst_eu, acme, engagements, user_id, analytics, mask, allow, , ",
        "p, role:analyst_eu, acme, engagements, pin_id, analytics, read, allow, , ",
        "p, role:analyst_eu, acme, engagements, dwell_ms, *, *, deny, , ",
        "p, role:analyst_eu, acme, engagements, region, analytics, read, allow, , ",
    ]
    for col, decided in zip(columns, read.columns, strict=True):
        assert decided == snapshot.decide_column(
            "erin", "acme", "engagements", col, "analytics", NOW
        )


def test_read_decision_names_grants(snapshot: PolicySnapshot) -> None:
    read = snapshot.decide_read("erin", "acme", "pins", ["image", "title"], "analytics", NOW)
    assert read.allowed_columns == ("image", "title")
    assert read.grant_ids == ("grant-demo-erin-pins",)
    assert read.row_filters == ()


def test_read_decision_denied_everywhere(snapshot: PolicySnapshot) -> None:
    read = snapshot.decide_read("alice", "acme", "gold", ["label"], "training", NOW)
    assert not read.allowed
    assert read.denied_columns == ("label",)
    assert read.deciding_rule == ""
    assert read.grant_ids == ()


def test_row_filters_follow_roles_and_tenants(snapshot: PolicySnapshot) -> None:
    assert snapshot.row_filters("alice", "acme", "engagements") == ()
    assert snapshot.row_filters("erin", "acme", "pins") == ()
    assert snapshot.row_filters("erin", "globex", "engagements") == ()
    assert [f.column for f in snapshot.row_filters("erin", "acme", "engagements")] == [
        "region",
        "ts",
    ]


@pytest.mark.parametrize(
    ("subject", "tenant", "obj", "act", "expected"),
    [
        ("olga", "acme", "sys:policy", "manage", True),
        ("olga", "acme", "sys:principals", "manage", True),
        ("olga", "acme", "sys:audit", "read", True),
        ("olga", "globex", "sys:policy", "manage", False),
        ("audrey", "acme", "sys:audit", "read", True),
        ("audrey", "acme", "sys:audit", "manage", False),
        ("audrey", "acme", "sys:policy", "read", False),
        ("alice", "acme", "sys:policy", "manage", False),
        ("stan", "acme", "engagements", "review", True),
        ("stan", "acme", "engagements", "read", False),
        ("alice", "acme", "engagements", "review", False),
    ],
)
def test_system_permissions(
    snapshot: PolicySnapshot, subject: str, tenant: str, obj: str, act: str, expected: bool
) -> None:
    assert snapshot.can(subject, tenant, obj, act, NOW) is expected


def test_explain_lists_every_matching_rule(snapshot: PolicySnapshot) -> None:
    why = snapshot.explain("alice", "acme", "engagements", "dwell_ms", "training", "read", NOW)
    assert not why.allowed
    assert why.subjects == ("alice", "role:ml_engineer")
    assert why.rule == rule("p, alice, acme, engagements, dwell_ms, *, *, deny, ,")
    assert [m.rule for m in why.matched] == [
        rule(f"p, {ML}, engagements, dwell_ms, training, read, allow, ,"),
        rule("p, alice, acme, engagements, dwell_ms, *, *, deny, ,"),
    ]


def test_naive_time_is_refused(snapshot: PolicySnapshot) -> None:
    with pytest.raises(ValueError, match="timezone"):
        snapshot.decide_column("alice", "acme", "pins", "image", "training", datetime(2026, 1, 1))


def test_snapshot_refuses_another_model() -> None:
    check_model(MODEL.read_text())
    changed = MODEL_TEXT.replace("r.now < p.expires", "r.now <= p.expires")
    with pytest.raises(ModelMismatch, match="'m'"):
        PolicySnapshot([], model_text=changed)
    allow_override = MODEL_TEXT.replace(" && !some(where (p.eft == deny))", "")
    with pytest.raises(ModelMismatch, match="'e'"):
        PolicySnapshot([], model_text=allow_override)
    extra_section = MODEL_TEXT.replace("p2 = ", "p3 = sub, obj\np2 = ")
    with pytest.raises(ModelMismatch, match="'p3'"):
        PolicySnapshot([], model_text=extra_section)
