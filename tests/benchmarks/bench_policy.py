"""Policy decision latency: stock pycasbin vs Warden's compiled engine, side by side.

    .venv/bin/python -m tests.benchmarks.bench_policy [--sizes 1000,10000,100000] [--json PATH]

For each rule count it generates one random rule set (5 tenants, roles with inheritance,
per-user grants with expiries, keyMatch patterns, ~15% deny rules) and one list of random
column requests (70% aimed at subjects and datasets that have rules). Both engines answer
the same requests in the same run; a "decision" is a full column decision (read, else mask,
else deny: one or two enforces). Stock pycasbin scans every rule on each enforce, so it is
timed on fewer requests (STOCK_SAMPLES; at 100k rules its p99 is the max of a few samples);
the fast engine is timed on FAST_SAMPLES requests, the stock ones first, and both must agree
on every stock-timed request (effect and deciding rule). Also reported: stock load time
from a CSV file (add_policies is quadratic), snapshot build from rules in memory, and a
full reload from a SQLite file (read + build + swap). Writes JSON (default
bench-results/policy.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import casbin
from sqlalchemy.orm import Session

from warden.db.base import Base
from warden.db.session import make_engine
from warden.policy import store
from warden.policy.engine import DEFAULT_MODEL_PATH, PolicySnapshot, format_now
from warden.policy.rules import Rule, format_rule
from warden.policy.service import PolicyService

TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")
COLUMNS = tuple(f"col{i}" for i in range(12))
PURPOSES = ("training", "evaluation", "inference", "analytics")
NOW = datetime(2026, 11, 28, 4, tzinfo=UTC)
STOCK_SAMPLES = {1_000: 300, 10_000: 60, 100_000: 8}
FAST_SAMPLES = 20_000

Request = tuple[str, str, str, str, str]


def generate(n_rules: int, seed: int = 0) -> tuple[list[Rule], list[Request]]:
    """A random rule set of about n_rules rules and FAST_SAMPLES requests against it."""
    rng = random.Random(seed)
    n_datasets = max(20, n_rules // 100)
    roles_per_tenant = max(8, n_rules // 500)
    users_per_tenant = roles_per_tenant * 5
    rules: list[Rule] = []
    members: dict[tuple[str, str], list[str]] = {}
    for dom in TENANTS:
        for r in range(roles_per_tenant):
            if r % 4 == 3:  # every fourth role inherits the one before it
                rules.append(("g", (f"role:r{r}", f"role:r{r - 1}", dom)))
        for u in range(users_per_tenant):
            for role in rng.sample(range(roles_per_tenant), rng.randint(1, 3)):
                rules.append(("g", (f"u{u}", f"role:r{role}", dom)))
                members.setdefault((dom, f"role:r{role}"), []).append(f"u{u}")
    expiries = [format_now(NOW + timedelta(days=d)) for d in (-30, -1, 1, 30, 365)]
    while len(rules) < n_rules:
        dom = rng.choice(TENANTS)
        kind = rng.random()
        obj = f"ds{rng.randrange(n_datasets)}"
        if kind < 0.04:
            obj = obj[:-1] + "*"
        elif kind < 0.05:
            obj = "*"
        if rng.random() < 0.1:  # a grant to one user, usually expiring
            sub, grant = f"u{rng.randrange(users_per_tenant)}", f"grant-{len(rules)}"
            expires = rng.choice(["", *expiries])
        else:
            sub, grant, expires = f"role:r{rng.randrange(roles_per_tenant)}", "", ""
        col = "*" if rng.random() < 0.1 else rng.choice(COLUMNS)
        purpose = "*" if rng.random() < 0.1 else rng.choice(PURPOSES)
        act = rng.choices(["read", "mask", "*"], [75, 20, 5])[0]
        eft = "deny" if rng.random() < 0.15 else "allow"
        rules.append(("p", (sub, dom, obj, col, purpose, act, eft, grant, expires)))
    p_rules = [f for p, f in rules if p == "p"]
    requests: list[Request] = []
    while len(requests) < FAST_SAMPLES:
        if rng.random() < 0.7:  # aimed: a member of a rule's subject, on its dataset
            sub, dom, obj, col, purpose = rng.choice(p_rules)[:5]
            sub = rng.choice(members.get((dom, sub), [sub]))
            obj = obj.replace("*", str(rng.randrange(10))) or f"ds{rng.randrange(n_datasets)}"
            col = rng.choice(COLUMNS) if col == "*" or rng.random() < 0.3 else col
            purpose = rng.choice(PURPOSES) if purpose == "*" else purpose
        else:
            dom = rng.choice(TENANTS)
            sub, obj = f"u{rng.randrange(users_per_tenant)}", f"ds{rng.randrange(n_datasets)}"
            col, purpose = rng.choice(COLUMNS), rng.choice(PURPOSES)
        requests.append((sub, dom, obj, col, purpose))
    return rules, requests


def _stock_decide(
    enforcer: casbin.Enforcer, request: Request
) -> tuple[str, tuple[str, ...] | None]:
    now = format_now(NOW)
    ok, why = enforcer.enforce_ex(*request, "read", now)
    effect = "allow"
    if not ok:
        ok, why = enforcer.enforce_ex(*request, "mask", now)
        effect = "mask" if ok else "deny"
    return effect, tuple(why) or None


def _latencies(decide: Callable[[Request], object], requests: Sequence[Request]) -> list[float]:
    out = []
    for request in requests:
        start = time.perf_counter()
        decide(request)
        out.append(time.perf_counter() - start)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _reload_from_sqlite(rules: list[Rule], directory: Path) -> float:
    engine = make_engine(f"sqlite:///{directory / 'policy.db'}")
    Base.metadata.create_all(
        engine,
        tables=[
            store.CasbinRule.__table__,
            store.PolicyState.__table__,
            store.PolicyChange.__table__,
        ],
    )
    with Session(engine) as session:
        store.add_rules(session, rules)
        session.commit()
    service = PolicyService(engine)
    start = time.perf_counter()
    service.reload()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def bench_size(n_rules: int) -> dict[str, Any]:
    """Time both engines on one rule set; raises if they disagree on any stock-timed request."""
    rules, requests = generate(n_rules)
    model = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "rules.csv"
        csv.write_text("\n".join(format_rule(p, f) for p, f in rules) + "\n")
        start = time.perf_counter()
        stock = casbin.Enforcer(str(DEFAULT_MODEL_PATH), str(csv))
        stock_load = time.perf_counter() - start
        start = time.perf_counter()
        fast = PolicySnapshot(rules, model_text=model)
        build = time.perf_counter() - start
        reload = _reload_from_sqlite(rules, Path(tmp))

    sampled = requests[: STOCK_SAMPLES.get(n_rules, 50)]
    for request in sampled:
        decided = fast.decide_column(*request, NOW)
        if (decided.effect, decided.rule) != _stock_decide(stock, request):
            raise AssertionError(f"engines disagree on {request}")
    stock_lat = _latencies(lambda r: _stock_decide(stock, r), sampled)
    fast_lat = _latencies(lambda r: fast.decide_column(*r, NOW), requests)
    effects = [fast.decide_column(*r, NOW).effect for r in requests]
    return {
        "rules": len(rules),
        "stock_samples": len(sampled),
        "fast_samples": len(requests),
        "stock_p50_ms": _pct(stock_lat, 0.5) * 1e3,
        "stock_p99_ms": _pct(stock_lat, 0.99) * 1e3,
        "fast_p50_ms": _pct(fast_lat, 0.5) * 1e3,
        "fast_p99_ms": _pct(fast_lat, 0.99) * 1e3,
        "fast_mean_ms": statistics.fmean(fast_lat) * 1e3,
        "ratio_p50": _pct(stock_lat, 0.5) / _pct(fast_lat, 0.5),
        "ratio_p99": _pct(stock_lat, 0.99) / _pct(fast_lat, 0.99),
        "stock_load_s": stock_load,
        "snapshot_build_s": build,
        "reload_from_sqlite_s": reload,
        "effects": {e: effects.count(e) for e in ("allow", "mask", "deny")},
    }


def run(sizes: Sequence[int] = (1_000, 10_000, 100_000)) -> list[dict[str, Any]]:
    """One row of results per rule count."""
    return [bench_size(n) for n in sizes]


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'rules':>8} {'stock n':>7} {'stock p50':>10} {'stock p99':>10} {'fast p50':>9} "
        f"{'fast p99':>9} {'x p50':>8} {'x p99':>8} {'stock load':>10} {'build':>7} {'reload':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['rules']:>8} {r['stock_samples']:>7} {r['stock_p50_ms']:>8.2f}ms "
            f"{r['stock_p99_ms']:>8.2f}ms {r['fast_p50_ms']:>7.3f}ms {r['fast_p99_ms']:>7.3f}ms "
            f"{r['ratio_p50']:>7.0f}x {r['ratio_p99']:>7.0f}x {r['stock_load_s']:>9.2f}s "
            f"{r['snapshot_build_s']:>6.2f}s {r['reload_from_sqlite_s']:>6.2f}s"
        )
    print(f"fast engine timed on {FAST_SAMPLES} requests per size; stock on 'stock n'.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--json", type=Path, default=Path("bench-results/policy.json"))
    args = parser.parse_args(argv)
    rows = run(tuple(int(s) for s in args.sizes.split(",")))
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "policy", "results": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
