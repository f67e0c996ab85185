"""Reloads under concurrent load: readers never block and never see a half-built policy.

The policy has 20,000 rules. Reader threads decide continuously while the writer flips a
probe rule three times, each flip a full reload. Every decision is stamped with its
snapshot's version and must equal that version's known answer; no reader ever errs.

Correctness only, on any machine speed: "never blocks" is shown by holding each reload
open (its new snapshot built, not yet swapped in) until every reader has decided again,
which could never happen if a reload blocked readers. How long readers stall, and how long
a reload of 100,000 rules takes, is measured by tests/benchmarks/bench_reload.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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
# Only for a broken build: how long to wait for readers before failing instead of hanging.
GIVE_UP_S = 120.0


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


class Readers:
    """READERS threads deciding in a loop; each decision is logged as (version, effect)."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service
        self.logs: list[list[tuple[int, str]]] = [[] for _ in range(READERS)]
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.threads = [threading.Thread(target=self._read, args=(w,)) for w in range(READERS)]

    def _read(self, worker: int) -> None:
        log, i = self.logs[worker], worker
        while not self.stop.is_set():
            try:
                snapshot = self.service.current()
                effect = snapshot.decide_column(*PROBE, NOW).effect
                snapshot.decide_read(
                    f"u{i % 2000}", "acme", f"ds{i % 2000}", ["c0", "c1"], "training", NOW
                )
            except BaseException as exc:  # a reader must never err; record it and stop
                self.errors.append(exc)
                with self.progress:
                    self.progress.notify_all()
                return
            with self.progress:
                log.append((snapshot.version, effect))
                self.progress.notify_all()
            i += READERS

    def counts(self) -> list[int]:
        with self.progress:
            return [len(log) for log in self.logs]

    def wait_past(self, counts: list[int], what: str) -> None:
        """Until every reader has decided at least once more than `counts`."""
        with self.progress:
            done = self.progress.wait_for(
                lambda: (
                    bool(self.errors)
                    or all(len(log) > n for log, n in zip(self.logs, counts, strict=True))
                ),
                timeout=GIVE_UP_S,
            )
        assert not self.errors, self.errors[:1]
        assert done, f"a reader made no progress {what}"


@pytest.mark.slow
def test_readers_see_old_or_new_policy_and_never_block(
    policy_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = PolicyService(policy_db)
    service.add_rules([*bulk_rules(N_RULES), PROBE_ALLOW])
    expected = {service.current().version: "allow"}
    readers = Readers(service)
    held: list[tuple[int, list[tuple[int, str]]]] = []
    real_load: Callable[..., Any] = store.load_snapshot

    def held_open(session: Session, model_text: str | None = None) -> Any:
        """The real load; then, before the swap, every reader decides again (on the old one)."""
        built = real_load(session, model_text)
        before = service.current().version
        mark = readers.counts()
        readers.wait_past(mark, "while a reload was in progress")
        with readers.progress:
            during = [d for log, n in zip(readers.logs, mark, strict=True) for d in log[n:]]
        held.append((before, during))
        return built

    monkeypatch.setattr(store, "load_snapshot", held_open)
    for t in readers.threads:
        t.start()
    try:
        for change, effect in (
            (store.add_rules, "deny"),
            (store.remove_rules, "allow"),
            (store.add_rules, "deny"),
        ):
            readers.wait_past(readers.counts(), "before a change")
            with Session(policy_db) as session:
                version = change(session, [PROBE_DENY]).version
                session.commit()
            expected[version] = effect
            # A full reload (not the change-log replay, which takes microseconds): the case
            # where readers could stall.
            assert service.reload().version == version
            readers.wait_past(readers.counts(), "after a reload")
    finally:
        readers.stop.set()
        for t in readers.threads:
            t.join()

    assert not readers.errors, readers.errors[:1]
    assert len(held) == 3
    for before, during in held:  # while a reload was under way, readers saw the old policy
        assert during and {version for version, _effect in during} == {before}
    decisions = [d for log in readers.logs for d in log]
    assert {version for version, _effect in decisions} == set(expected)
    wrong = [(v, effect) for v, effect in decisions if expected[v] != effect]
    assert not wrong, wrong[:5]
