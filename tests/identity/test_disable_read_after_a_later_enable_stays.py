"""What the log says of a principal is its latest event, in the order the chain holds them,
not the order a process happened to learn them.

The race (an insider admin with SQL): an enable committed by one process (seq e) while the
insider's disable of the same principal commits on another (seq d > e). The disabling
process takes its own event in hand at once, then reads the earlier enable from the log and
took it as newer: it forgot the disable, so the principal's row written back to its enabled
self (seal and all) acted there again, while every other process refused it."""

from __future__ import annotations

from warden.audit.anchor import DISABLE, ENABLE
from warden.audit.models import AuditEvent
from warden.identity.revocations import Revocations


def _event(action: str, seq: int) -> AuditEvent:
    return AuditEvent(action=action, seq=seq, tenant="acme", details={"principal": "mallory"})


def test_an_earlier_enable_read_after_a_later_disable_keeps_it_disabled() -> None:
    seen = Revocations()
    seen.take([_event(DISABLE, 20)])  # its own commit, in hand
    seen.take([_event(ENABLE, 15)])  # another process's, read from the log afterwards
    assert "mallory" in seen.disabled


def test_a_later_enable_still_enables() -> None:
    seen = Revocations()
    seen.take([_event(DISABLE, 20)])
    seen.take([_event(ENABLE, 25)])
    assert "mallory" not in seen.disabled
    seen.take([_event(DISABLE, 22)])  # and an earlier disable read late changes nothing
    assert "mallory" not in seen.disabled
