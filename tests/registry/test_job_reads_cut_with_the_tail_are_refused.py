"""A job's reads cut from the log's unprotected tail while it ran register no model: its exit
event names the reads the serving process saw, and the worker holds the log to it.

The attack (red team 18; an admin's token, alice's, and SQL on the database): alice's job,
launched while she was denied `pins.merchant`, reads merchant raw during a right given after
its launch (red team 16c). While the job still runs, its read event sits past the newest
checkpoint; the insider deletes the tail from that read on and resets the head to the event
before it (a consistent chain: the next checkpoint signs it). The right ends, the job exits,
and the worker builds the model's lineage from the reads the log still holds: none. Its
sealed lineage says merchant was never seen, so mallory, denied merchant, used the model.
"""

from __future__ import annotations

import pytest

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.experiments.helpers import reads_pins
from tests.registry.test_builder_narrowed_after_the_build_is_refused import _deny
from tests.registry.test_right_held_only_while_the_job_ran_is_counted import DENY, _lift
from tests.sealed_rows import finished_job, job_read, job_token_of, one, sandbox_of, sql
from warden.audit.service import append
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.errors import AuditUnavailable
from warden.identity.service import Caller, get_principal
from warden.jobs.worker import record_result
from warden.policy.reads import authorize_read, seen_at_launch
from warden.sandbox.models import Sandbox
from warden.sandbox.runtime import exit_record


def _job_reading_merchant(w: WardenHarness, cut: bool) -> tuple[str, str]:
    """alice's job on pins reads merchant during a right held only while it ran; `cut`: its
    read is then deleted with the log's tail. The job exits as the runtime ends one."""
    _deny(w, "alice", "merchant")
    sandbox_id = sandbox_of(w, "alice", ["pins"], "training")
    with unit_of_work(w.state.sessions) as db:
        job = finished_job(db, kind="train", step="swap", name="pins-cut" if cut else "pins-kept",
                           datasets=["pins"], purpose="training")  # fmt: skip
        alice = Caller("alice", "person", "acme", get_principal(db, "alice").id)
        view = load_view(db, w.state.settings.datasets_dir, "acme", "pins")
        decision = authorize_read(w.state, alice, view, "training").decision
        job.decisions = {"datasets": {"pins": {"seen": seen_at_launch(decision)}}}
        job.sandbox_id, job_id = sandbox_id, job.id
    _lift(w, DENY)
    got = job_read(w, job_token_of(w, sandbox_id), "pins", purpose="training",
                   columns=["pin_id", "merchant"])  # fmt: skip
    assert got.status_code == 200, got.text
    if cut:  # the read and everything after it, the head reset to the event before
        seq = one(w, "SELECT seq FROM audit_event WHERE id = :i",
                  i=got.headers["x-warden-audit-event"])[0]  # fmt: skip
        sql(w, "UPDATE audit_head SET seq = :s, hash = (SELECT hash FROM audit_event"
               " WHERE seq = :s)", "DELETE FROM audit_event WHERE seq > :s", s=seq - 1)  # fmt: skip
    _deny(w, "alice", "merchant")  # the right ended
    with unit_of_work(w.state.sessions) as db:  # the runtime's end of the sandbox
        row = db.get_one(Sandbox, sandbox_id)
        row.status = "succeeded"
        append(db, exit_record(w.state, row, 1.0))
    return sandbox_id, job_id


def _register(w: WardenHarness, sandbox_id: str, job_id: str) -> str:
    with w.state.sessions() as db:
        sandbox = db.get_one(Sandbox, sandbox_id)
        db.expunge(sandbox)
    model, _ = record_result(w.state, job_id, sandbox, {"loss": 1.0}, [])
    return model.ref


def test_a_job_read_cut_with_the_tail_registers_no_model(warden: WardenHarness) -> None:
    sandbox_id, job_id = _job_reading_merchant(warden, cut=True)
    ref = None
    try:
        ref = _register(warden, sandbox_id, job_id)
    except AuditUnavailable as refused:
        assert "not those its end named" in str(refused)
    if ref is not None:
        reads_pins(warden, "mallory")
        _deny(warden, "mallory", "merchant")
        got = warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory"))
        assert got.status_code == 404, "mallory, denied merchant, uses a model built on it"
    assert ref is None, "a model was registered on reads the log no longer holds"


def test_a_job_whose_reads_the_log_holds_registers(warden: WardenHarness) -> None:
    sandbox_id, job_id = _job_reading_merchant(warden, cut=False)
    ref = _register(warden, sandbox_id, job_id)
    reads_pins(warden, "mallory")
    _deny(warden, "mallory", "merchant")
    assert warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory")).status_code == 404


@pytest.mark.parametrize("edit", ["DELETE FROM audit_event WHERE action = 'sandbox.exit'"])
def test_a_job_whose_end_is_not_in_the_log_registers_no_model(
    warden: WardenHarness, edit: str
) -> None:
    sandbox_id, job_id = _job_reading_merchant(warden, cut=False)
    sql(warden, edit)
    with pytest.raises(AuditUnavailable):
        _register(warden, sandbox_id, job_id)
