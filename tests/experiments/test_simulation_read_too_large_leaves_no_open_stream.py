"""A simulation's read that turns out too large to hold ends its stream in the log (red team
17a): the governed read had committed a stream's intent, then the simulator refused the answer
without ending the stream, so the log kept an intent with no completion (the `open_intent`
note of a read still running or a server killed) and the scan stayed open."""

from __future__ import annotations

from typing import Any

import pytest

from warden.audit.checkpoints import CheckpointStore
from warden.audit.service import verify
from warden.db.session import unit_of_work
from warden.errors import Unprocessable
from warden.experiments.simulate import GovernedReader
from warden.gateway import planner, service
from warden.identity.caller import Caller
from warden.identity.service import get_principal


def test_simulation_read_too_large_leaves_no_open_stream(
    warden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planner, "SMALL_FILE_BYTES", 0)  # scanned a batch at a time
    monkeypatch.setattr(service, "STREAM_ABOVE_BYTES", 0)  # and streamed from the first
    with unit_of_work(warden.state.sessions) as db:
        alice = Caller("alice", "person", "acme", get_principal(db, "alice").id)
    with pytest.raises(Unprocessable, match="too large"):
        GovernedReader(warden.state, alice).read("engagements", purpose="evaluation")
    events = [e for e in warden.audit_events(actor="alice") if e["dataset"] == "engagements"]
    phases = [((e.get("details") or {}).get("stream") or {}).get("phase") for e in events]
    assert sorted(p for p in phases if p) == ["completion", "intent"], phases
    (completion,) = [e for e in events if e["action"] == "dataset.read.completion"]
    assert completion["decision"] == "error" and completion["rows"] == 0
    with warden.state.sessions() as db:
        found = verify(db, checkpoints=CheckpointStore.for_settings(warden.settings).read())
    assert not [f for f in found.findings if f.kind == "open_intent"], found.findings
