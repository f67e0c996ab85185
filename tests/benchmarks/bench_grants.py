"""Decision latency with 10k active access grants in a 100k-rule policy, Warden's compiled
engine against stock pycasbin on the same rules, side by side in one run.

    .venv/bin/python -m tests.benchmarks.bench_grants [--rules 100000] [--grants 10000]
                                                       [--json bench-results/grants.json]

The policy is bench_policy's random rule set (5 tenants, role inheritance, keyMatch
patterns, ~15% deny rules) topped up with access grants exactly as the access service
writes them: one p rule per granted column carrying the grant id and its expiry, identifier
columns as `mask`, the rest `read`. Of the grants, `--grants` are active and a further 10%
have expired (their rules still stored, as before a tidy-up). Requests are:

- grant: one column of a grant, asked by its holder for its purpose (the path a granted
  read takes); the decision must name the grant;
- read: a grant holder's whole read (decide_read over the grant's columns);
- mixed: bench_policy's requests against the same rules.

Stock pycasbin scans every rule on each enforce, so it is timed on a few requests
(STOCK_SAMPLES) and both engines must agree on each (effect and deciding rule). Also
timed: building a snapshot, and revoking one grant on SQLite (delete its rules, bump the
version, commit, reload: what the first read after a revocation waits for).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import casbin
from sqlalchemy.orm import Session

from tests.benchmarks.bench_policy import (
    COLUMNS,
    NOW,
    PURPOSES,
    TENANTS,
    _latencies,
    _pct,
    _stock_decide,
    generate,
)
from warden.db.base import Base
from warden.db.session import make_engine
from warden.policy import store
from warden.policy.engine import DEFAULT_MODEL_PATH, PolicySnapshot, format_now
from warden.policy.rules import Rule, format_rule
from warden.policy.service import PolicyService

COLUMNS_PER_GRANT = 4
STOCK_SAMPLES = 8
FAST_SAMPLES = 20_000
BUDGET_P99_MS = 0.2

# (grant id, holder, tenant, dataset, purpose, columns)
Grant = tuple[str, str, str, str, str, tuple[str, ...]]


def grant_rules(
    n_active: int, users: int, datasets: int, seed: int = 1
) -> tuple[list[Rule], list[Grant], list[Grant]]:
    """Rules of n_active live grants plus 10% expired ones, as the access service writes them."""
    rng = random.Random(seed)
    rules: list[Rule] = []
    active: list[Grant] = []
    expired: list[Grant] = []
    for i in range(n_active + n_active // 10):
        live = i < n_active
        tenant = rng.choice(TENANTS)
        holder = f"u{rng.randrange(users)}"
        dataset = f"ds{rng.randrange(datasets)}"
        columns = tuple(rng.sample(COLUMNS, COLUMNS_PER_GRANT))
        purpose = rng.choice(PURPOSES)
        grant_id = f"grant-{i:08x}"
        days = rng.randint(1, 30) if live else -rng.randint(1, 30)
        expires = format_now(NOW + timedelta(days=days))
        for j, column in enumerate(columns):
            act = "mask" if j == 0 else "read"  # the first column stands for an identifier
            fields = (holder, tenant, dataset, column, purpose, act, "allow", grant_id, expires)
            rules.append(("p", fields))
        (active if live else expired).append((grant_id, holder, tenant, dataset, purpose, columns))
    return rules, active, expired


def _revoke_on_sqlite(rules: list[Rule], grant_id: str, directory: Path) -> dict[str, float]:
    engine = make_engine(f"sqlite:///{directory / 'grants.db'}")
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
    service.reload()
    start = time.perf_counter()
    with Session(engine) as session:
        change = store.remove_grant(session, grant_id)
        session.commit()
    removed = time.perf_counter() - start
    snapshot = service.ensure_fresh()
    total = time.perf_counter() - start
    engine.dispose()
    assert change.count == COLUMNS_PER_GRANT and snapshot.version == change.version
    return {"revoke_delete_commit_s": removed, "revoke_to_next_decision_s": total}


def run(n_rules: int, n_grants: int) -> dict[str, Any]:
    expired_count = n_grants // 10
    base_target = n_rules - (n_grants + expired_count) * COLUMNS_PER_GRANT
    if base_target < 1_000:
        raise SystemExit("--rules must leave room for the grants' rules")
    base, mixed = generate(base_target)
    users = max(8, base_target // 500) * 5
    datasets = max(20, base_target // 100)
    extra, active, expired = grant_rules(n_grants, users, datasets)
    rules = base + extra
    model = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")

    rng = random.Random(2)
    grant_requests = []
    for _ in range(FAST_SAMPLES):
        _gid, holder, tenant, dataset, purpose, columns = rng.choice(active)
        grant_requests.append((holder, tenant, dataset, rng.choice(columns), purpose))
    reads = [rng.choice(active) for _ in range(FAST_SAMPLES // 4)]

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "rules.csv"
        csv.write_text("\n".join(format_rule(p, f) for p, f in rules) + "\n")
        start = time.perf_counter()
        stock = casbin.Enforcer(str(DEFAULT_MODEL_PATH), str(csv))
        stock_load = time.perf_counter() - start
        start = time.perf_counter()
        fast = PolicySnapshot(rules, model_text=model)
        build = time.perf_counter() - start
        revoke = _revoke_on_sqlite(rules, active[0][0], Path(tmp))

    # Expired grants never decide anything; live ones decide their columns (unless a deny
    # rule of the random base policy wins).
    for gid, holder, tenant, dataset, purpose, columns in expired:
        for column in columns:
            decision = fast.decide_column(holder, tenant, dataset, column, purpose, NOW)
            if decision.grant_id == gid:
                raise AssertionError(f"expired grant {gid} decided {column}")
    named = sum(
        1 for r in grant_requests[:2000] if fast.decide_column(*r, NOW).grant_id is not None
    )

    sampled = grant_requests[: STOCK_SAMPLES // 2] + mixed[: STOCK_SAMPLES - STOCK_SAMPLES // 2]
    for request in sampled:
        decided = fast.decide_column(*request, NOW)
        if (decided.effect, decided.rule) != _stock_decide(stock, request):
            raise AssertionError(f"engines disagree on {request}")
    stock_lat = _latencies(lambda r: _stock_decide(stock, r), sampled)
    grant_lat = _latencies(lambda r: fast.decide_column(*r, NOW), grant_requests)
    mixed_lat = _latencies(lambda r: fast.decide_column(*r, NOW), mixed)
    read_lat = _latencies(
        lambda g: fast.decide_read(g[1], g[2], g[3], list(g[5]), g[4], NOW), reads
    )
    rows = {
        "stock (grant+mixed)": stock_lat,
        "fast grant column": grant_lat,
        "fast mixed column": mixed_lat,
        "fast grant read (4 cols)": read_lat,
    }
    return {
        "rules": len(rules),
        "grant_rules": len(extra),
        "active_grants": len(active),
        "expired_grants": len(expired),
        "stock_load_s": stock_load,
        "snapshot_build_s": build,
        **revoke,
        "grant_decisions_named_by_grant": named / 2000,
        "budget_p99_ms": BUDGET_P99_MS,
        "latency": {
            name: {
                "samples": len(values),
                "p50_ms": _pct(values, 0.5) * 1e3,
                "p99_ms": _pct(values, 0.99) * 1e3,
            }
            for name, values in rows.items()
        },
        "ratio_p50_stock_over_fast_grant": _pct(stock_lat, 0.5) / _pct(grant_lat, 0.5),
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{result['rules']} rules ({result['grant_rules']} from {result['active_grants']} active"
        f" + {result['expired_grants']} expired grants)"
    )
    head = f"{'decision':<26} {'samples':>8} {'p50':>11} {'p99':>11} {'p99 budget':>11}"
    print(head)
    print("-" * len(head))
    for name, row in result["latency"].items():
        budget = f"{BUDGET_P99_MS:.3f}ms" if name.startswith("fast") else ""
        print(
            f"{name:<26} {row['samples']:>8} {row['p50_ms']:>9.4f}ms {row['p99_ms']:>9.4f}ms"
            f" {budget:>11}"
        )
    print(
        f"stock/fast p50 on grant columns: {result['ratio_p50_stock_over_fast_grant']:,.0f}x · "
        f"stock load {result['stock_load_s']:.2f}s · "
        f"snapshot build {result['snapshot_build_s']:.2f}s"
    )
    print(
        f"revoke one grant on SQLite: delete+commit {result['revoke_delete_commit_s'] * 1e3:.1f}ms,"
        " to the next decision (change-log replay)"
        f" {result['revoke_to_next_decision_s'] * 1000:.1f}ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=Path("bench-results/grants.json"))
    args = parser.parse_args(argv)
    result = run(args.rules, args.grants)
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "grants", "result": result}, indent=2))
    print(f"wrote {args.json}")
    over = [
        name
        for name, row in result["latency"].items()
        if name.startswith("fast") and "column" in name and row["p99_ms"] > BUDGET_P99_MS
    ]
    if over:
        print(f"over the p99 budget of {BUDGET_P99_MS} ms: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
