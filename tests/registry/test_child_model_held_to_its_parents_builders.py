"""A model built on a parent model carries what the parent was built from, so who may use it
is held to what the parent's builder saw too, not only to what its own job's launch saw.

Red team 16c (admin token): who may use a model is held to what its builder could read at
launch or now (red team 16a), but the launch record is of the datasets the model's own job
read. A child model built on `pins-fit` (alice's, from pins whole) by a job that read only
pin_pairs has no record of pins: for pins it was held to what alice may read *now*. The admin
adds a deny on `pins.merchant` for alice (a narrowing: applied at once, unreviewed), and the
child, which carries what `pins-fit` learnt from merchant, is usable by mallory, who may not
read merchant (`pins-fit` itself stays hidden from her)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.registry.test_builder_narrowed_after_the_build_is_refused import (
    _alice_model_from_pins,
    _deny,
    narrow_alice_through_the_api,
)
from tests.sealed_rows import finished_job
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal, get_tenant
from warden.policy.changes import apply_change
from warden.policy.reads import authorize_read, seen_at_launch
from warden.registry.models import Model


def _reads(w: WardenHarness, who: str, *datasets: str) -> None:
    """`who` may read each dataset whole, for each of its purposes."""
    rules = [
        ("p", (who, "acme", dataset, "*", purpose, "read", "allow", "", ""))
        for dataset in datasets
        for purpose in ("training", "evaluation", "inference")
    ]
    with unit_of_work(w.state.sessions) as db:
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, add=rules, reason="test setup", action="policy.bootstrap")
    w.state.policy.reload()


def _alice_child_on(w: WardenHarness, parent_ref: str) -> str:
    """alice's model built on the parent by a job that read pin_pairs alone, its launch
    recorded as jobs/service writes it and its lineage as the worker does."""
    with unit_of_work(w.state.sessions) as db:
        parent = db.scalars(select(Model).where(Model.name == parent_ref.split("@")[0])).one()
        job = finished_job(
            db, kind="train", step="swap", name="pairs-on-fit", datasets=["pin_pairs"],
            purpose="training",
        )  # fmt: skip
        alice = Caller("alice", "person", "acme", get_principal(db, "alice").id)
        view = load_view(db, w.state.settings.datasets_dir, "acme", "pin_pairs")
        decision = authorize_read(w.state, alice, view, "training").decision
        job.model_in = [parent.id]
        job.decisions = {"datasets": {"pin_pairs": {"seen": seen_at_launch(decision)}}}
        model = Model(
            tenant_id=get_tenant(db, "acme").id, tenant="acme", name="pairs-on-fit",
            version=1, job_id=job.id, launcher="alice", kind="train", step="swap",
            metrics={}, artifacts=[], reports=[],
            lineage={
                "datasets": [{"name": "pin_pairs", "versions": []}],
                "parents": [{"id": parent.id, "ref": parent.ref, "job": parent.job_id}],
            },
        )  # fmt: skip
        db.add(model)
        db.flush()
        return model.ref


def test_a_deny_added_to_the_builder_later_does_not_open_a_child_model(
    warden: WardenHarness, tmp_path: Path
) -> None:
    parent = _alice_model_from_pins(warden, tmp_path)
    child = _alice_child_on(warden, parent)
    _reads(warden, "mallory", "pins", "pin_pairs")
    _deny(warden, "mallory", "merchant")
    assert warden.http.get(f"/v1/models/{child}", headers=warden.as_("mallory")).status_code == 404
    narrow_alice_through_the_api(warden)
    assert warden.http.get(f"/v1/models/{parent}", headers=warden.as_("mallory")).status_code == 404
    got = warden.http.get(f"/v1/models/{child}", headers=warden.as_("mallory"))
    assert got.status_code == 404, "mallory may not read merchant, which the parent was built on"


def test_someone_who_reads_what_every_builder_saw_still_uses_it(
    warden: WardenHarness, tmp_path: Path
) -> None:
    child = _alice_child_on(warden, _alice_model_from_pins(warden, tmp_path))
    _reads(warden, "mallory", "pins", "pin_pairs")
    assert warden.http.get(f"/v1/models/{child}", headers=warden.as_("mallory")).status_code == 200
