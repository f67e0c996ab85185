"""Who may use a model is held to what its builder could read: no column denied or masked to
the user that the builder read. That was decided on the builder's rights *now*, not on what
the builder's job read: a deny added to the builder after the build (a narrowing change, which
applies at once, or the builder's grant simply expiring) made the builder's decision narrower,
so the model became usable by someone who may not read what it was built from.

Red team 16a (admin token, no database write): the admin adds `deny` on one column of `pins`
for alice, whose model was built reading it; erin, denied that column, could then use it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.experiments.helpers import reads_pins, register_artifact
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal
from warden.jobs.models import Job
from warden.policy.changes import apply_change
from warden.policy.reads import authorize_read, seen_at_launch
from warden.registry.models import Model


def narrow_alice_through_the_api(warden: WardenHarness) -> None:
    """The admin denies alice `pins.merchant` through the API: a deny applies at once,
    unreviewed."""
    body = {"add": ["p, alice, acme, pins, merchant, *, read, deny, ,"], "reason": "tidy"}
    r = warden.http.post("/v1/policy/rules", json=body, headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "applied"


def _deny(w: WardenHarness, who: str, column: str) -> None:
    rule = ("p", (who, "acme", "pins", column, "*", "read", "deny", "", ""))
    with unit_of_work(w.state.sessions) as db:
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, add=[rule], reason="test setup", action="policy.bootstrap")
    w.state.policy.reload()


def _alice_model_from_pins(w: WardenHarness, tmp_path: Path) -> str:
    """alice's model from pins, its job's decisions as a launch writes them (jobs/service)."""
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(w, "pins-fit", source, read=("pins",))  # alice read pins whole
    with unit_of_work(w.state.sessions) as db:
        model = db.scalars(select(Model).where(Model.name == "pins-fit")).one()
        job = db.get_one(Job, model.job_id)
        alice = Caller("alice", "person", "acme", get_principal(db, "alice").id)
        view = load_view(db, w.state.settings.datasets_dir, "acme", "pins")
        decision = authorize_read(w.state, alice, view, "training").decision
        job.decisions = {"datasets": {"pins": {"seen": seen_at_launch(decision)}}}
    return ref


def test_a_deny_added_to_the_builder_later_does_not_open_the_model(
    warden: WardenHarness, tmp_path: Path
) -> None:
    ref = _alice_model_from_pins(warden, tmp_path)
    reads_pins(warden, "erin")
    _deny(warden, "erin", "merchant")
    assert warden.http.get(f"/v1/models/{ref}", headers=warden.as_("erin")).status_code == 404
    narrow_alice_through_the_api(warden)
    got = warden.http.get(f"/v1/models/{ref}", headers=warden.as_("erin"))
    assert got.status_code == 404, "erin may not read merchant, which alice's model was built on"
    # someone who reads as much as alice did at launch still uses it
    reads_pins(warden, "mallory")
    assert warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory")).status_code == 200
