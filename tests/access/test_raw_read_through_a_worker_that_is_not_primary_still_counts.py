"""A process that does not run the background loops still anchors what it serves (red team 21).

`warden serve --workers N` elects one worker to run the background loops (api/primary.py), and
a replica on another host runs with `WARDEN_PRIMARY=false`; `warden worker` serves the jobs'
sockets without them. The anchor (audit/anchor.py: a raw read or an ending checkpointed at
once, the signed alarm, the raw-read list) was built with the background checkpointer, so
every process but the elected one had none.

The attack (an admin's token, two stewards who approve what they are asked, and SQL on the
database, not the key files nor the checkpoint folder), red team 19's through any worker but
the elected one:

1. bob is given `users.user_id` raw (reviewed) and reads it through that worker: nothing is
   checkpointed, so the read waits in the log's unprotected tail.
2. The insider deletes that event and everything after it and resets the head: a consistent
   chain, which the next checkpoint signs.
3. bob is narrowed to masked, reads `users` masked, zips the two reads into a pseudonym
   dictionary and is granted `engagements` masked by two stewards: every engagement re-linked.

And red team 20's through the same worker: a checkpoint refused for tampering raises the signed
alarm, which that worker never looks at, so it goes on serving into a tail no checkpoint will
protect.

What must hold: every process that serves requests anchors them, elected or not.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from tests.access.conftest import Access
from tests.access.test_masked_grant_after_a_raw_read_is_refused import (
    MASKED,
    RAW,
    relink_after_narrowing,
)
from tests.access.test_raw_read_cut_with_the_tail_still_counts import _checkpointed_seqs, _cut_from
from tests.conftest import WardenHarness
from tests.sealed_rows import one, sql


@pytest.fixture
def worker(access: Access) -> Iterator[Access]:
    """A second server process over the same database and checkpoint folder that was not
    elected to run the background loops (`serve --workers 2`'s other worker)."""
    settings = access.w.settings.model_copy(update={"primary": False})
    harness = WardenHarness.open(settings, access.w.tokens)
    harness.state.clock = access.clock
    other = copy.copy(access)
    other.w, other.http = harness, harness.http
    yield other
    harness.process.stop()
    harness.close()


def test_a_raw_read_through_a_worker_is_checkpointed_at_once(
    access: Access, worker: Access
) -> None:
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw = worker.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    assert raw.status_code == 200, raw.text
    seq = one(access.w, "SELECT seq FROM audit_event WHERE id = :i",
              i=raw.headers["x-warden-audit-event"])[0]  # fmt: skip
    assert max(_checkpointed_seqs(access), default=0) >= seq, "the raw read waits in the tail"


def test_a_raw_read_through_a_worker_cut_with_the_tail_is_refused(
    access: Access, worker: Access
) -> None:
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw_read = worker.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    raw = access.frame(raw_read)
    _cut_from(access, raw_read.headers["x-warden-audit-event"])
    access.w.process.checkpointer.checkpoint_now()  # the cadence's next round
    relinked, answer = relink_after_narrowing(worker, raw)
    assert relinked == 0, f"bob re-linked {relinked} engagements to raw user ids"
    assert answer.status_code == 503, answer.text


def test_a_worker_refuses_while_an_alarm_stands(access: Access, worker: Access) -> None:
    checkpointer = access.w.process.checkpointer
    assert not checkpointer.checkpoint_now().findings
    first = worker.read("alice", "engagements", purpose="training", columns=["action"], limit=3)
    assert first.status_code == 200, first.text
    sql(access.w, "UPDATE audit_event SET reason = 'tidied' WHERE id = :i",
        i=first.headers["x-warden-audit-event"])  # fmt: skip
    assert checkpointer.round().findings  # refused: the alarm is raised
    later = worker.read("alice", "engagements", purpose="training", columns=["action"], limit=3)
    assert later.status_code == 503, f"the worker served ({later.status_code}) while an alarm stood"


def test_warden_worker_anchors_the_job_reads_it_serves(access: Access) -> None:
    """`warden worker` builds its process without the background loops (cli/jobs.py): it
    anchors the reads its jobs' sockets serve all the same, on demand, with no cadence."""
    from warden.api.gateway_app import create_gateway_app
    from warden.audit.anchor import anchor_for
    from warden.core.platform import build_platform
    from warden.core.process import WardenProcess

    platform = build_platform(access.w.settings)
    try:
        process = WardenProcess.build(platform, create_gateway_app(platform), jobs=False,
                                      access=False)  # fmt: skip
        assert anchor_for(platform.engine) is not None, "warden worker anchors nothing"
        assert process.checkpointer is not None and process.checkpointer.interval_s == 0
    finally:
        platform.engine.dispose()
