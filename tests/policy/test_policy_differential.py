"""Differential test: the compiled engine answers exactly as stock pycasbin, decision and
explanation, on random rule sets built to collide (few names, wildcards, keyMatch patterns,
role cycles, a role chain past pycasbin's depth limit, expiries around the request time).

Stock pycasbin costs 10-20 us per rule per request here, so sizes keep this file near 40 s:
2,000 rules x 600 requests and 400 rules x 2,000 requests."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import casbin
import pytest
from casbin.util import key_match

from warden.policy.engine import PolicySnapshot
from warden.policy.rules import Rule, format_rule

from .conftest import MODEL

DOMAINS = ["d1", "d2", "d3"]
USERS = [f"u{i}" for i in range(12)]
ROLES = [f"role:r{i}" for i in range(8)]
CHAIN = [f"role:c{i}" for i in range(13)]
OBJ_PATTERNS = ["ds0", "ds1", "ds2", "ds10", "dsx", "ds*", "ds1*", "d*", "*", "x*y", "x", ""]
REQ_OBJS = ["ds0", "ds1", "ds2", "ds10", "ds11", "dsx", "d", "ds", "x", "xay", "y", "", "*"]
COLS = ["c0", "c1", "c2", "*"]
PURPOSES = ["t", "e", "*"]
ACTS = ["read", "mask", "review", "manage", "*"]
TIMES = ["2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"]
EXPIRIES = ["", "", "", *TIMES, "2026-03-01T00:00:00Z", "2030-01-01T00:00:00Z"]


def random_rules(rng: random.Random, n: int) -> list[Rule]:
    subjects = USERS + ROLES + CHAIN
    rules: list[Rule] = []
    for dom in DOMAINS:
        for _ in range(n // 60):
            rules.append(("g", (rng.choice(USERS), rng.choice(ROLES), dom)))
            rules.append(("g", (rng.choice(ROLES), rng.choice(ROLES), dom)))  # cycles too
    rules += [("g", ("u_chain", CHAIN[0], "d1"))]
    rules += [("g", (a, b, "d1")) for a, b in zip(CHAIN, CHAIN[1:], strict=False)]
    while len(rules) < n:
        if rng.random() < 0.03:
            rules.append(
                (
                    "p2",
                    (
                        rng.choice(subjects),
                        rng.choice(DOMAINS),
                        rng.choice(OBJ_PATTERNS),
                        "c0",
                        "eq",
                        str(rng.randrange(3)),
                    ),
                )
            )
            continue
        eft = rng.choices(["allow", "deny", "maybe"], [70, 27, 3])[0]
        rules.append(
            (
                "p",
                (
                    rng.choice(subjects),
                    rng.choice(DOMAINS),
                    rng.choice(OBJ_PATTERNS),
                    rng.choice(COLS),
                    rng.choice(PURPOSES),
                    rng.choice(ACTS),
                    eft,
                    rng.choice(["", "g1", "g2"]),
                    rng.choice(EXPIRIES),
                ),
            )
        )
    rng.shuffle(rules)
    return rules


def random_request(rng: random.Random) -> tuple[str, ...]:
    sub = rng.choice([*USERS, *ROLES, "u_chain", CHAIN[3], "nobody"])
    return (
        sub,
        rng.choice(DOMAINS + ["d9"]),
        rng.choice(REQ_OBJS),
        rng.choice(COLS),
        rng.choice(PURPOSES),
        rng.choice(ACTS),
        rng.choice(TIMES + ["2026-03-01T00:00:00Z"]),
    )


def stock_enforcer(rules: list[Rule], path: Path) -> casbin.Enforcer:
    path.write_text("\n".join(format_rule(p, f) for p, f in rules) + "\n")
    return casbin.Enforcer(str(MODEL), str(path))


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "n_rules", "n_requests"), [(1, 2000, 600), (2, 400, 2000)])
def test_engine_matches_stock_pycasbin(
    tmp_path: Path, seed: int, n_rules: int, n_requests: int
) -> None:
    rng = random.Random(seed)
    rules = random_rules(rng, n_rules)
    stock = stock_enforcer(rules, tmp_path / "rules.csv")
    fast = PolicySnapshot(rules, model_text=MODEL.read_text(), strict=False)
    allowed = explained_by_deny = 0
    for _ in range(n_requests):
        request = random_request(rng)
        ok, why = stock.enforce_ex(*request)
        assert fast.enforce_ex(*request) == (ok, why), request
        allowed += ok
        explained_by_deny += bool(why) and why[6] == "deny"
    # the random sets must exercise both outcomes, not agree trivially
    assert n_requests * 0.05 < allowed < n_requests * 0.95
    assert explained_by_deny >= 20


def test_roles_stop_at_pycasbin_depth_limit(tmp_path: Path) -> None:
    rules: list[Rule] = [("g", ("u_chain", CHAIN[0], "d1"))]
    rules += [("g", (a, b, "d1")) for a, b in zip(CHAIN, CHAIN[1:], strict=False)]
    rules += [("p", (role, "d1", "ds0", "*", "*", "read", "allow", "", "")) for role in CHAIN]
    stock = stock_enforcer(rules, tmp_path / "rules.csv")
    fast = PolicySnapshot(rules, model_text=MODEL.read_text(), strict=False)
    assert fast.subjects("u_chain", "d1") == ("u_chain", *CHAIN[:9])
    for role in CHAIN:
        rm = stock.get_role_manager()
        assert (role in fast.subjects("u_chain", "d1")) == rm.has_link("u_chain", role, "d1")


@pytest.mark.slow
def test_column_decisions_and_row_filters_match_stock(tmp_path: Path) -> None:
    rng = random.Random(3)
    rules = random_rules(rng, 600)
    stock = stock_enforcer(rules, tmp_path / "rules.csv")
    fast = PolicySnapshot(rules, model_text=MODEL.read_text(), strict=False)
    p2 = [f for p, f in rules if p == "p2"]
    rm = stock.get_role_manager()
    for _ in range(120):
        sub, dom, obj, _col, purpose, _act, now_s = random_request(rng)
        now = datetime.strptime(now_s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        read = fast.decide_read(sub, dom, obj, ["c0", "c1", "c2", "c9"], purpose, now)
        for decided in read.columns:
            request = (sub, dom, obj, decided.column, purpose)
            read_ok, read_why = stock.enforce_ex(*request, "read", now_s)
            mask_ok, mask_why = stock.enforce_ex(*request, "mask", now_s)
            effect = "allow" if read_ok else "mask" if mask_ok else "deny"
            why = read_why if read_ok else mask_why
            assert (decided.effect, decided.rule) == (effect, tuple(why) or None), request
        expected = [
            f for f in p2 if f[1] == dom and rm.has_link(sub, f[0], dom) and key_match(obj, f[2])
        ]
        assert [f.rule for f in read.row_filters] == expected
