"""Who may use a model is held to what its job's audited reads showed, as the chain holds
them: a read event rewritten in SQL counts for nothing, and the model is not registered.

The attack (an insider with SQL): alice's job reads `pins.merchant` raw during a right she
held only while it ran; before the worker registers its model, the job's read event is
edited in the database to show `pin_id` only. The worker read the job's reads straight from
the table, keyed hash unchecked, so the model's sealed lineage said merchant was never seen
and mallory, denied merchant, used the model (`audit verify` reported the event rewritten,
but the model was registered and served all the same)."""

from __future__ import annotations

import pytest

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.experiments.helpers import reads_pins
from tests.registry.test_builder_narrowed_after_the_build_is_refused import _deny
from tests.registry.test_right_held_only_while_the_job_ran_is_counted import (
    read_merchant_while_allowed,
)
from tests.sealed_rows import sql
from warden.db.session import unit_of_work
from warden.errors import AuditUnavailable
from warden.jobs.models import Job
from warden.registry import service as registry
from warden.sandbox.models import Sandbox


def test_a_job_read_rewritten_in_sql_registers_no_model(warden: WardenHarness) -> None:
    sandbox_id, job_id = read_merchant_while_allowed(warden, "pins-edited")
    sql(
        warden,
        "UPDATE audit_event SET columns = :c WHERE actor = :a AND action = 'dataset.read'",
        c='["pin_id"]',
        a=f"job-{sandbox_id}",
    )
    ref = None
    with unit_of_work(warden.state.sessions) as db:  # the worker registers its model
        job = db.get_one(Job, job_id)
        try:
            lineage = registry.lineage_for(db, job, db.get(Sandbox, sandbox_id), [])
        except AuditUnavailable:
            lineage = None  # fail closed: the job's build registers nothing
        if lineage is not None:
            model = registry.register(
                db, job, metrics={}, artifacts=[], reports=[], lineage=lineage
            )
            ref = model.ref
    if ref is not None:
        reads_pins(warden, "mallory")
        _deny(warden, "mallory", "merchant")
        got = warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory"))
        assert got.status_code == 404, "mallory, denied merchant, uses a model built on it"
    with unit_of_work(warden.state.sessions) as db, pytest.raises(AuditUnavailable):
        registry.job_built_with(db, db.get_one(Job, job_id))  # its log is shown to nobody
