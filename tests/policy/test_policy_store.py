"""Rules in the database: versioning, ordering, the stock adapter, the service, failing closed."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from warden.db.migrate import upgrade
from warden.policy import store
from warden.policy.engine import MODEL_TEXT, ModelMismatch, PolicySnapshot, format_now
from warden.policy.rules import Rule, RuleError
from warden.policy.seal import SealBroken
from warden.policy.service import PolicyService, PolicyUnavailable

from .conftest import DEMO, EXTRA, SEED
from .test_policy_differential import random_request

NOW = datetime(2026, 11, 28, 4, tzinfo=UTC)
GRANT: Rule = (
    "p",
    ("mallory", "acme", "pins", "*", "training", "read", "allow", "g-42", "2030-01-01T00:00:00Z"),
)


def rule_count(engine: Engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(store.CasbinRule)) or 0


def version(engine: Engine) -> int:
    with Session(engine) as s:
        return store.current_version(s)


def test_seed_loads_the_csv_rules_once(policy_db: Engine) -> None:
    service = PolicyService(policy_db)
    snapshot = service.seed_from_csv([SEED, DEMO, EXTRA])
    assert snapshot.version == 1 == version(policy_db)
    reference = PolicySnapshot.from_csv([SEED, DEMO, EXTRA])
    for col in ("user_id", "pin_id", "dwell_ms"):
        for who in ("alice", "erin", "sam"):
            assert snapshot.decide_column(who, "acme", "engagements", col, "training", NOW) == (
                reference.decide_column(who, "acme", "engagements", col, "training", NOW)
            )
    again = service.seed_from_csv([SEED, DEMO])
    assert again.version == 1
    assert (
        rule_count(policy_db)
        == snapshot.rule_counts["p"] + snapshot.rule_counts["p2"] + (snapshot.rule_counts["g"])
    )


def test_rule_change_and_version_bump_share_one_transaction(policy_db: Engine) -> None:
    with Session(policy_db) as s:
        assert store.add_rules(s, [GRANT]) == store.Change(1, 1)
        s.rollback()
    assert (rule_count(policy_db), version(policy_db)) == (0, 0)
    with Session(policy_db) as s:
        store.add_rules(s, [GRANT])
        assert version(policy_db) == 0  # not visible before commit
        s.commit()
    assert (rule_count(policy_db), version(policy_db)) == (1, 1)
    with Session(policy_db) as s:
        assert store.add_rules(s, [GRANT]) == store.Change(0, 1)  # already stored
        assert store.remove_rules(s, [GRANT]) == store.Change(1, 2)
        assert store.remove_rules(s, [GRANT]) == store.Change(0, 2)
        s.commit()


def test_invalid_rules_change_nothing(policy_db: Engine) -> None:
    bad: Rule = ("p", ("alice", "acme", "pins", "*", "training", "read", "allow", "", "soon"))
    with Session(policy_db) as s, pytest.raises(RuleError, match="expiry"):
        store.add_rules(s, [GRANT, bad])
    assert (rule_count(policy_db), version(policy_db)) == (0, 0)


def test_revoking_a_grant_holds_on_the_next_read(policy_db: Engine) -> None:
    writer, reader = PolicyService(policy_db), PolicyService(policy_db)
    writer.seed_from_csv([SEED])
    writer.add_rules([GRANT])
    snap = reader.ensure_fresh()
    assert (
        snap.decide_column("mallory", "acme", "pins", "image", "training", NOW).grant_id == "g-42"
    )
    writer.revoke_grant("g-42")
    assert reader.current() is snap  # a plain read never touches the database
    fresh = reader.ensure_fresh()
    assert fresh.version == snap.version + 1
    assert fresh.decide_column("mallory", "acme", "pins", "image", "training", NOW).effect == "deny"
    assert reader.ensure_fresh() is fresh  # unchanged version: no reload


def test_nothing_loaded_is_unavailable(policy_db: Engine) -> None:
    with pytest.raises(PolicyUnavailable):
        PolicyService(policy_db).current()


def test_unreachable_store_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "policy.db"
    reachable = True

    def connect() -> sqlite3.Connection:
        if not reachable:
            raise sqlite3.OperationalError("unable to open database file")
        return sqlite3.connect(path)

    upgrade(f"sqlite:///{path}")
    engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)
    service = PolicyService(engine)
    service.seed_from_csv([SEED])
    reachable = False
    with pytest.raises(PolicyUnavailable):
        service.ensure_fresh()
    with pytest.raises(PolicyUnavailable):
        service.add_rules([GRANT])
    with pytest.raises(PolicyUnavailable):
        PolicyService(engine).reload()


def test_invalid_stored_row_fails_closed(policy_db: Engine) -> None:
    service = PolicyService(policy_db)
    service.seed_from_csv([SEED])
    with Session(policy_db) as s:
        s.execute(insert(store.CasbinRule).values(ptype="P", v0="alice"))
        s.commit()
    with pytest.raises(PolicyUnavailable, match="malformed"):
        service.reload()


def test_service_refuses_another_model(tmp_path: Path, policy_db: Engine) -> None:
    model = tmp_path / "model.conf"
    model.write_text(MODEL_TEXT.replace('p.col == "*" || ', ""))
    with pytest.raises(ModelMismatch):
        PolicyService(policy_db, model_path=model)


def test_load_retries_when_the_version_moves(
    policy_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    PolicyService(policy_db).seed_from_csv([SEED])
    real = store.sealed_state
    with Session(policy_db) as s:
        stored = real(s)
    moving = dataclasses.replace(stored, version=stored.version - 1)
    seen = iter([moving, stored, stored, stored])
    monkeypatch.setattr(store, "sealed_state", lambda _s: next(seen))
    with Session(policy_db) as s:
        loaded_version, rules = store.load_rules(s)
    assert loaded_version == stored.version and rules


def valid_random_rules(rng: random.Random, n: int) -> list[Rule]:
    subjects = ["u1", "u2", "role:a", "role:b", "role:c"]
    rules: list[Rule] = [
        ("g", ("u1", "role:a", "d1")),
        ("g", ("u2", "role:b", "d1")),
        ("g", ("role:a", "role:c", "d1")),
        ("g", ("u1", "role:b", "d2")),
    ]
    for _ in range(n):
        rules.append(
            (
                "p",
                (
                    rng.choice(subjects),
                    rng.choice(["d1", "d2"]),
                    rng.choice(["ds0", "ds1", "ds*", "*"]),
                    rng.choice(["c0", "c1", "*"]),
                    rng.choice(["t", "e", "*"]),
                    rng.choice(["read", "mask", "*"]),
                    rng.choice(["allow", "allow", "deny"]),
                    rng.choice(["", "g1"]),
                    rng.choice(["", "2026-06-01T00:00:00Z"]),
                ),
            )
        )
    return rules


def test_stock_enforcer_on_the_table_agrees_after_edits(policy_db: Engine) -> None:
    rng = random.Random(5)
    rules = valid_random_rules(rng, 300)
    with Session(policy_db) as s:
        store.add_rules(s, rules)
        store.remove_rules(s, rules[10:40])  # holes in the id sequence
        store.add_rules(s, rules[10:40])  # back, at the end: order changes
        s.commit()
        snapshot, _ = store.load_snapshot(s)
    stock = store.stock_enforcer(policy_db)
    moved = list(dict.fromkeys(rules[10:40]))
    expected = [r for r in dict.fromkeys(rules) if r not in moved] + moved
    assert [tuple(r) for r in stock.get_policy()] == [f for p, f in expected if p == "p"]
    for _ in range(300):
        sub, _dom, obj, col, purpose, act, now = random_request(rng)
        request = (
            rng.choice(["u1", "u2", "role:a"]),
            rng.choice(["d1", "d2"]),
            rng.choice(["ds0", "ds1", "x"]),
            rng.choice(["c0", "c1"]),
            rng.choice(["t", "e"]),
            rng.choice(["read", "mask"]),
            now,
        )
        assert snapshot.enforce_ex(*request) == tuple(stock.enforce_ex(*request)), request


def test_rules_load_in_id_order_after_updates(policy_db: Engine) -> None:
    """On PostgreSQL an updated row moves to the end of an unordered scan (the stock adapter's
    order); Warden's adapter and loader read by id, which pycasbin's explanations need."""
    first: Rule = ("p", ("u1", "d1", "ds0", "*", "*", "read", "allow", "first", ""))
    second: Rule = ("p", ("u1", "d1", "ds0", "*", "*", "read", "allow", "second", ""))
    with Session(policy_db) as s:
        store.add_rules(s, [first, second])
        s.commit()
        row = s.scalars(select(store.CasbinRule).order_by(store.CasbinRule.id)).first()
        assert row is not None
        row.v5 = "*"
        s.commit()
        with pytest.raises(SealBroken):  # a row changed past Warden is refused...
            store.load_snapshot(s)
        store.reseal(s)  # ...until an operator reseals the set
        s.commit()
        snapshot, _ = store.load_snapshot(s)
    request = ("u1", "d1", "ds0", "c", "t", "read", format_now(NOW))
    stock = store.stock_enforcer(policy_db)
    assert stock.enforce_ex(*request)[1][7] == snapshot.enforce_ex(*request)[1][7] == "second"
