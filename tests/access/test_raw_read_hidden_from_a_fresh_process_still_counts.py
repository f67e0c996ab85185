"""A raw read of identifiers counts in a process started after it was checkpointed, whatever its
row says by then (red team 19b; red team 19 counted it only in the processes that knew it: the
one that committed it, and those whose walk to a newer checkpoint met it).

The attack (an admin's token, two stewards who approve what they are asked, and SQL on the
database, DDL too, not the key files or the checkpoint folder's signing key):

1. bob is given `users.user_id` raw (reviewed) and reads it: the read is checkpointed at once.
2. A fresh process starts (a second `warden serve` over the same database and checkpoint
   folder, or one restarted): it knows the read only from the log.
3. Once the next checkpoint is signed (the cadence's), the insider writes over the read's
   `actor` (or deletes its row) in SQL. No process that knows the read checks bob again: every
   later request goes to the fresh process.
4. bob is narrowed to masked there, reads `users` masked and zips the two reads into a pseudonym
   dictionary; two stewards approve his masked `engagements` request there. bob's history no
   longer holds the raw read, so no mixed exposure is found: every engagement is re-linked.

What must hold: the approval is refused (403 mixed exposure, naming the raw read). The
checkpoint folder holds a signed list of the raw places its checkpoints anchor, which every
process reads at start, so the read counts in every process sharing the folder.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.conftest import Access
from tests.access.test_masked_grant_after_a_raw_read_is_refused import (
    MASKED,
    RAW,
    relink_after_narrowing,
)
from tests.access.test_raw_read_cut_with_the_tail_still_counts import _checkpointed_seqs
from tests.conftest import WardenHarness
from tests.sealed_rows import one, sql
from warden.audit.checkpoints import CheckpointStore
from warden.audit.raw_ledger import FILE_NAME


@pytest.fixture
def fresh(access: Access) -> Iterator[Any]:
    """Starts another process over the same database, data and checkpoint folder: its own
    engine, caches and anchor (a second `warden serve`), the harness's people and clock."""
    started: list[WardenHarness] = []

    def start() -> Access:
        harness = WardenHarness.open(access.w.settings, access.w.tokens)
        harness.state.clock = access.clock
        started.append(harness)
        other = copy.copy(access)
        other.w, other.http = harness, harness.http
        return other

    yield start
    for harness in started:
        harness.process.stop()
        harness.close()


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE audit_event SET actor = 'carol' WHERE id = :i",  # moved out of bob's history
        "DELETE FROM audit_event WHERE id = :i",  # a gap below a signed checkpoint
    ],
)
def test_a_raw_read_hidden_before_a_fresh_process_checks_it_still_counts(
    access: Access, fresh: Any, edit: str
) -> None:
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw_read = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    raw = access.frame(raw_read)
    event_id = raw_read.headers["x-warden-audit-event"]
    seq = one(access.w, "SELECT seq FROM audit_event WHERE id = :i", i=event_id)[0]
    assert max(_checkpointed_seqs(access)) >= seq, "the raw read waits in the tail"
    access.read("bob", "users", purpose="analytics", columns=["region"])  # the log goes on
    access.w.process.checkpointer.checkpoint_now()  # and the cadence signs it
    other = fresh()  # started after the checkpoint: it knows the read from the log only
    sql(access.w, edit, i=event_id)
    relinked, review = relink_after_narrowing(other, raw)
    assert relinked == 0, f"bob re-linked {relinked} engagements to raw user ids"
    assert review.status_code == 403, review.text
    assert "mixed exposure" in review.json()["detail"], review.text
    assert f"read raw in audit event {event_id}" in review.text


def test_the_list_names_a_place_once_and_a_line_warden_did_not_sign_refuses(
    access: Access, fresh: Any
) -> None:
    """One entry per raw place and reader, whichever process reads it again; a line in the list
    that no checkpoint key signed (someone else writes the folder) refuses, as an unsigned
    alarm does, instead of being skipped."""
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    first = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    other = fresh()
    for process in (other, access):  # the same place again, in a process that knew it or not
        again = process.read("bob", "users", purpose="analytics", columns=["user_id"])
        assert again.status_code == 200, again.text
    listed = _ledger(access).read_bytes().splitlines()
    assert [json.loads(line)["places"] for line in listed] == [
        [["acme", "bob", "users", "user_id", "analytics", first.headers["x-warden-audit-event"]]]
    ]
    forged = {**json.loads(listed[0]), "n": 2, "places": [["acme", "bob", "users", "x", "y", "z"]]}
    with _ledger(access).open("ab") as handle:
        handle.write(json.dumps(forged).encode() + b"\n")
    narrowed = other.propose("admin", remove=[RAW], reason="bob sees user ids masked now")
    assert narrowed.status_code == 503, narrowed.text
    assert "raw-read list" in narrowed.json()["detail"]
    later = fresh().read("bob", "users", purpose="analytics", columns=["region"])
    assert later.status_code == 503, later.text
    assert "raw-read list" in later.json()["detail"], later.text


def _ledger(access: Access) -> Path:
    return CheckpointStore.for_settings(access.w.settings).folder / FILE_NAME
