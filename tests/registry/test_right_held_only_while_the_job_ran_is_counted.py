"""Who may use a model is held to what its job read, not only to what its launcher could read
at launch and can read now: a job reads with its launcher's rights of the moment.

Red team 16c (admin token): alice is denied `pins.merchant` when she launches a job on pins
(her job records that at launch); a right given between the launch and the job's read (a grant
approved while the job was queued, here the deny lifted) lets the job read merchant raw; the
right ends after the build (the grant expires, here the deny is back). Her model carries
merchant, but neither her launch nor her rights now show it, so mallory, denied merchant,
used it. The worker now records in the model's lineage what the job's audited reads showed."""

from __future__ import annotations

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.experiments.helpers import reads_pins
from tests.registry.test_builder_narrowed_after_the_build_is_refused import _deny
from tests.sealed_rows import finished_job, job_read, job_token_of, sandbox_of
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal
from warden.jobs.models import Job
from warden.policy.changes import apply_change
from warden.policy.reads import authorize_read, seen_at_launch
from warden.registry import service as registry
from warden.sandbox.models import Sandbox

DENY = ("p", ("alice", "acme", "pins", "merchant", "*", "read", "deny", "", ""))


def _lift(w: WardenHarness, rule: tuple[str, tuple[str, ...]]) -> None:
    with unit_of_work(w.state.sessions) as db:
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, remove=[rule], reason="test setup", action="policy.bootstrap")
    w.state.policy.reload()


def read_merchant_while_allowed(w: WardenHarness, name: str) -> tuple[str, str]:
    """alice's finished train job on `pins` (launched while denied `merchant`, its launch
    record saying so), which read `merchant` during a right given after its launch and ended
    after its reads: (sandbox id, job id)."""
    _deny(w, "alice", "merchant")
    sandbox_id = sandbox_of(w, "alice", ["pins"], "training")
    with unit_of_work(w.state.sessions) as db:  # the launch, as jobs/service records it
        job = finished_job(
            db, kind="train", step="swap", name=name, datasets=["pins"], purpose="training"
        )
        alice = Caller("alice", "person", "acme", get_principal(db, "alice").id)
        view = load_view(db, w.state.settings.datasets_dir, "acme", "pins")
        decision = authorize_read(w.state, alice, view, "training").decision
        assert "merchant" not in decision.allowed_columns
        job.decisions = {"datasets": {"pins": {"seen": seen_at_launch(decision)}}}
        job.sandbox_id = sandbox_id
        job_id = job.id
    _lift(w, DENY)  # a grant approved while the job was queued
    token = job_token_of(w, sandbox_id)
    got = job_read(w, token, "pins", purpose="training", columns=["pin_id", "merchant"])
    assert got.status_code == 200, got.text
    _deny(w, "alice", "merchant")  # the grant ended after the build
    return sandbox_id, job_id


def test_a_right_held_only_while_the_job_ran_does_not_open_its_model(
    warden: WardenHarness,
) -> None:
    sandbox_id, job_id = read_merchant_while_allowed(warden, "pins-late")
    with unit_of_work(warden.state.sessions) as db:  # the worker registers its model
        job = db.get_one(Job, job_id)
        lineage = registry.lineage_for(db, job, db.get(Sandbox, sandbox_id), [])
        model = registry.register(db, job, metrics={}, artifacts=[], reports=[], lineage=lineage)
        ref = model.ref
    reads_pins(warden, "mallory")
    _deny(warden, "mallory", "merchant")
    got = warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory"))
    assert got.status_code == 404, "mallory may not read merchant, which alice's job read"
    # someone who reads what the job read still uses it
    reads_pins(warden, "erin")
    assert warden.http.get(f"/v1/models/{ref}", headers=warden.as_("erin")).status_code == 200
