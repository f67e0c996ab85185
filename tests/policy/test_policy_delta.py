"""Replaying the change log (copy on write) gives exactly what a full reload gives."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine

from warden.policy.engine import PolicySnapshot
from warden.policy.rules import Rule, rule_problems
from warden.policy.service import PolicyService

from .conftest import MODEL, SEED
from .test_policy_differential import random_request, random_rules


def dedup(rules: list[Rule]) -> list[Rule]:
    return list(dict.fromkeys((p, tuple(f)) for p, f in rules))


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_with_changes_equals_a_rebuild(seed: int) -> None:
    rng = random.Random(seed)
    base = dedup(random_rules(rng, 1500))
    candidates = [r for r in dedup(random_rules(rng, 600)) if r not in set(base)]
    valid = [r for r in candidates if not rule_problems(*r)]
    model = MODEL.read_text()
    snapshot = PolicySnapshot(base, version=1, model_text=model, strict=False)
    rules = list(base)
    delta: list[tuple[str, Rule]] = []
    for _ in range(120):
        if rng.random() < 0.5 and rules:
            victim = rng.choice(rules)
            rules.remove(victim)
            delta.append(("remove", victim))
        elif valid:
            added = valid.pop()
            rules.append(added)
            delta.append(("add", added))
    replayed = snapshot.with_changes(delta, version=2)
    rebuilt = PolicySnapshot(rules, version=2, model_text=model, strict=False)
    for _ in range(3000):
        request = random_request(rng)
        assert replayed.enforce_ex(*request) == rebuilt.enforce_ex(*request), request
        sub, dom, obj = request[0], request[1], request[2]
        assert replayed.row_filters(sub, dom, obj) == rebuilt.row_filters(sub, dom, obj)
    assert replayed.rule_counts == rebuilt.rule_counts
    # the old snapshot is untouched: readers holding it see the old policy
    again = PolicySnapshot(base, version=1, model_text=model, strict=False)
    for _ in range(500):
        request = random_request(rng)
        assert snapshot.enforce_ex(*request) == again.enforce_ex(*request)


def test_a_replica_catches_up_by_replaying_not_reloading(policy_db: Engine) -> None:
    writer, replica = PolicyService(policy_db), PolicyService(policy_db)
    writer.seed_from_csv([SEED])
    replica.ensure_fresh()
    reloads = replica.full_reloads
    link = ("g", ("alice", "role:ml_engineer", "acme"))
    writer.add_rules([link])
    snapshot = replica.ensure_fresh()
    assert snapshot.version == writer.current().version
    assert "role:ml_engineer" in snapshot.subjects("alice", "acme")
    writer.remove_rules([link])
    assert "role:ml_engineer" not in replica.ensure_fresh().subjects("alice", "acme")
    assert replica.full_reloads == reloads  # both changes came from the log
    assert replica.replays == 2


def test_a_bulk_change_makes_replicas_reload(policy_db: Engine) -> None:
    writer, replica = PolicyService(policy_db), PolicyService(policy_db)
    writer.seed_from_csv([SEED])
    replica.ensure_fresh()
    reloads = replica.full_reloads
    bulk = [("g", (f"user{i}", "role:ml_engineer", "acme")) for i in range(1_500)]
    writer.add_rules(bulk)
    assert "role:ml_engineer" in replica.ensure_fresh().subjects("user7", "acme")
    assert replica.full_reloads == reloads + 1
