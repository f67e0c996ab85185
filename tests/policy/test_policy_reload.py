"""Reloads under concurrent load: readers never block and never see a half-built policy.

The policy has 20,000 rules (100,000 works the same and is what the benchmark times; 20k
keeps this test near 10 s). Reader threads decide continuously while the writer flips a
probe rule three times, each flip a full reload. Every decision is stamped with its
snapshot's version and must equal that version's known answer.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from warden.policy import store
from warden.policy.rules import Rule
from warden.policy.service import PolicyService

NOW = datetime(2026, 11, 28, 4, tzinfo=UTC)
N_RULES = 20_000
READERS = 4
PROBE = ("prober", "acme", "probe_ds", "probe_col", "training")
PROBE_ALLOW: Rule = ("p", ("role:probe", "acme", "probe_ds", "*", "*", "read", "allow", "", ""))
PROBE_DENY: Rule = ("p", ("prober", "acme", "probe_ds", "probe_col", "*", "*", "deny", "", ""))


def bulk_rules(n: int) -> list[Rule]:
    rules: list[Rule] = [("g", (f"u{i}", f"role:r{i % 500}", "acme")) for i in range(2_000)]
    rules.append(("g", ("prober", "role:probe", "acme")))
    rules += [
        (
            "p",
            (
                f"role:r{i % 500}",
                "acme",
                f"ds{i // 10}",
                f"c{i % 10}",
                "training",
                "read",
                "deny" if i % 7 == 0 else "allow",
                "",
                "",
            ),
        )
        for i in range(n - len(rules))
    ]
    return rules


@pytest.mark.slow
def test_readers_see_old_or_new_policy_and_never_stall(policy_db: Engine) -> None:
    service = PolicyService(policy_db)
    service.add_rules([*bulk_rules(N_RULES), PROBE_ALLOW])
    expected = {service.current().version: "allow"}
    records: list[list[tuple[float, float, int, str]]] = [[] for _ in range(READERS)]
    stop = threading.Event()

    def read(log: list[tuple[float, float, int, str]], worker: int) -> None:
        i = worker
        while not stop.is_set():
            snapshot = service.current()
            start = time.perf_counter()
            effect = snapshot.decide_column(*PROBE, NOW).effect
            snapshot.decide_read(
                f"u{i % 2000}", "acme", f"ds{i % 2000}", ["c0", "c1"], "training", NOW
            )
            log.append((start, time.perf_counter(), snapshot.version, effect))
            i += READERS

    threads = [threading.Thread(target=read, args=(records[w], w)) for w in range(READERS)]
    for t in threads:
        t.start()
    reloads = []
    try:
        for change, effect in (
            (store.add_rules, "deny"),
            (store.remove_rules, "allow"),
            (store.add_rules, "deny"),
        ):
            time.sleep(0.2)
            with Session(policy_db) as session:
                version = change(session, [PROBE_DENY]).version
                session.commit()
            expected[version] = effect
            # A full reload (not the change-log replay, which takes microseconds): the case
            # where readers could stall.
            start = time.perf_counter()
            service.reload()
            reloads.append((start, time.perf_counter()))
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()

    decisions = [r for log in records for r in log]
    assert {version for _s, _e, version, _eff in decisions} == set(expected)
    wrong = [(v, eff) for _s, _e, v, eff in decisions if expected[v] != eff]
    assert not wrong, wrong[:5]
    for begin, end in reloads:
        during = [r for r in decisions if begin <= r[0] and r[1] <= end]
        for log in records:
            assert any(begin <= r[0] and r[1] <= end for r in log), "a reader made no progress"
        worst = max(e - s for s, e, _v, _eff in during)
        assert worst < (end - begin) / 4, (worst, end - begin)
