"""The generator's latent model (the oracle's input) is for evaluation only: no training
purpose, no training job, no model trained on an evaluation job's output ever reads it."""

from __future__ import annotations

import io

import polars as pl

from tests.conftest import WardenHarness
from tests.jobs.conftest import queue, submit
from warden.db.session import unit_of_work
from warden.jobs.models import Job
from warden.registry import service as registry

LATENT = ("latent_users", "latent_pins")


def _frame(response) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return pl.read_ipc_stream(io.BytesIO(response.content))


def test_the_latent_model_is_never_readable_for_training(ml_warden: WardenHarness) -> None:
    for name in LATENT:
        refused = ml_warden.read("alice", name, purpose="training")
        assert refused.status_code == 403, refused.text  # type: ignore[attr-defined]
        assert "training" in refused.json()["detail"]  # type: ignore[attr-defined]
    denied = [e for e in ml_warden.audit_events(action="dataset.read") if e["decision"] == "deny"]
    assert {e["dataset"] for e in denied} >= set(LATENT)
    for e in denied:
        assert e["purpose"] == "training"


def test_evaluation_reads_it_masked_so_it_joins_the_gold_set(ml_warden: WardenHarness) -> None:
    users = ml_warden.read("alice", "latent_users", purpose="evaluation")
    assert users.status_code == 200, users.text  # type: ignore[attr-defined]
    latent = _frame(users)
    assert latent.columns == ["user_id", "n_tastes", "taste_1", "taste_2", "taste_3"]
    gold = _frame(ml_warden.read("alice", "gold", purpose="evaluation", columns=["user_id"]))
    # user_id is a keyed pseudonym (not the raw 1..n id), the same in both datasets
    assert not set(latent["user_id"].to_list()) & set(range(1, latent.height + 1))
    assert set(gold["user_id"].to_list()) <= set(latent["user_id"].to_list())
    pins = ml_warden.read("alice", "latent_pins", purpose="evaluation")
    assert pins.status_code == 200, pins.text  # type: ignore[attr-defined]


def test_a_training_job_can_never_read_it(ml_warden: WardenHarness) -> None:
    # asked for directly: the job is refused before it exists
    asked = submit(
        ml_warden, "alice", kind="train", datasets={"pins": "pins", "latent_pins": "latent_pins"}
    )
    assert asked.status_code == 403, asked.text
    assert "may be read for 'training'" in asked.json()["detail"]
    # a train job for another purpose (its token would cover evaluation-only data): refused
    for purpose in ("evaluation", "inference"):
        sneaky = submit(ml_warden, "alice", kind="train", purpose=purpose,
                        datasets={"pins": "pins", "latent_pins": "latent_pins"})  # fmt: skip
        assert sneaky.status_code == 422, sneaky.text
        assert "'training' only" in sneaky.json()["detail"]
    with unit_of_work(ml_warden.state.sessions) as db:
        assert db.query(Job).count() == 0
    events = ml_warden.audit_events(action="job.create")
    assert len(events) == 3 and {e["decision"] for e in events} == {"deny"}


def test_a_training_job_never_builds_on_an_evaluation_jobs_output(ml_warden: WardenHarness) -> None:
    # an eval job may read the latent model; whatever it writes must not feed training
    job = queue(ml_warden, kind="eval", datasets={"gold": "gold", "latent_pins": "latent_pins"})
    with unit_of_work(ml_warden.state.sessions) as db:
        row = db.get(Job, job["id"])
        assert row is not None
        weights = {"name": "smuggled_tower.pt", "path": "jobs/x/smuggled_tower.pt",
                   "sha256": "0" * 64, "bytes": 1}  # fmt: skip
        model = registry.register(db, row, metrics={}, artifacts=[weights], reports=[],
                                  lineage={"datasets": []})  # fmt: skip
        ref = model.id
    refused = submit(ml_warden, "alice", kind="train", step="swap",
                     datasets={"pins": "pins"}, model_in={"tower": ref, "stack": ref})  # fmt: skip
    assert refused.status_code == 403, refused.text
    assert "only on trained models" in refused.json()["detail"]
    # an evaluation may still take it (reports compare anything they are given)
    ok = submit(ml_warden, "alice", kind="eval", datasets={"gold": "gold"}, model_in={"A": ref})
    assert ok.status_code == 201, ok.text


def test_the_catalog_refuses_training_even_where_a_rule_would_allow_it(
    ml_warden: WardenHarness,
) -> None:
    """The datasets allow evaluation only: a rule granting training cannot widen that."""
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    rule = ("role:ml_engineer", "acme", "latent_pins", "*", "training", "read", "allow", "", "")
    with unit_of_work(ml_warden.state.sessions) as db:
        admin = get_principal(db, "admin")
        actor = Caller("admin", "person", "acme", admin.id)
        apply_change(db, actor, add=[("p", rule)], reason="test: a too-wide rule")
    refused = ml_warden.read("alice", "latent_pins", purpose="training")
    assert refused.status_code == 403, refused.text  # type: ignore[attr-defined]
    assert "may not be used for 'training'" in refused.json()["detail"]  # type: ignore[attr-defined]
    job = submit(ml_warden, "alice", kind="train", datasets={"latent_pins": "latent_pins"})
    assert job.status_code == 403, job.text
