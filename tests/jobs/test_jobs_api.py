"""Jobs through the API on both databases: the launch decision (refused before any row),
queueing, visibility, cancelling a queued job, and the queue under concurrent workers."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from tests.conftest import WardenHarness
from tests.jobs.conftest import queue, show, submit
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.jobs import repository as repo
from warden.jobs.models import Job
from warden.jobs.worker import record_result
from warden.registry import service as registry_service
from warden.sandbox.models import Sandbox


def _count(warden: WardenHarness, table: type) -> int:
    with unit_of_work(warden.state.sessions) as db:
        return int(db.scalar(select(func.count()).select_from(table)) or 0)


def test_launcher_without_the_ml_role_is_refused_before_any_row(ml_warden: WardenHarness) -> None:
    response = submit(ml_warden, "mallory", kind="train", datasets={"pins": "pins"})
    assert response.status_code == 403, response.text
    assert "may not run ML jobs" in response.json()["detail"]
    assert _count(ml_warden, Job) == 0 and _count(ml_warden, Sandbox) == 0
    [event] = ml_warden.audit_events(action="job.create")
    assert event["decision"] == "deny" and event["actor"] == "mallory"


def test_grants_must_cover_every_dataset_for_the_purpose(ml_warden: WardenHarness) -> None:
    # alice may read gold for evaluation, not for training
    response = submit(ml_warden, "alice", kind="train", datasets={"pins": "pins", "gold": "gold"})
    assert response.status_code == 403, response.text
    assert "of 'gold' may be read for 'training'" in response.json()["detail"]
    ok = submit(ml_warden, "alice", kind="eval", datasets={"pins": "pins", "gold": "gold"})
    assert ok.status_code == 201, ok.text
    assert ok.json()["purpose"] == "evaluation"
    assert _count(ml_warden, Job) == 1 and _count(ml_warden, Sandbox) == 0
    decisions = [e["decision"] for e in ml_warden.audit_events(action="job.create")]
    assert sorted(decisions) == ["allow", "deny"]


def test_unknown_dataset_is_not_found_and_bad_step_is_422(ml_warden: WardenHarness) -> None:
    missing = submit(ml_warden, "alice", kind="train", datasets={"pins": "nope"})
    assert missing.status_code == 404
    bad = submit(ml_warden, "alice", kind="eval", step="train-domain", datasets={"gold": "gold"})
    assert bad.status_code == 422
    # torchrun only for the data-parallel step, and within bounds
    for body in ({"kind": "eval", "datasets": {"gold": "gold"}, "nproc": 2},
                 {"kind": "train", "step": "swap", "datasets": {"pins": "pins"}, "nproc": 2},
                 {"kind": "train", "datasets": {"pins": "pins"}, "nproc": 99}):  # fmt: skip
        refused = submit(ml_warden, "alice", **body)
        assert refused.status_code == 422 and "nproc" in refused.text, refused.text
    assert _count(ml_warden, Job) == 0


def test_a_queued_job_is_seen_by_its_launcher_and_admins_only(ml_warden: WardenHarness) -> None:
    job = queue(ml_warden, params={"epochs": 1}, seed=7)
    assert job["state"] == "queued" and job["step"] == "train-domain"
    assert job["spec"]["seed"] == 7 and job["spec"]["purpose"] == "training"
    assert show(ml_warden, job["id"], "alice")["id"] == job["id"]
    other = ml_warden.http.get(f"/v1/jobs/{job['id']}", headers=ml_warden.as_("erin"))
    assert other.status_code == 404
    mine = ml_warden.http.get("/v1/jobs", headers=ml_warden.as_("alice")).json()["jobs"]
    assert [j["id"] for j in mine] == [job["id"]]
    refused = ml_warden.http.get("/v1/jobs?all=true", headers=ml_warden.as_("alice"))
    assert refused.status_code == 403
    everyone = ml_warden.http.get("/v1/jobs?all=true", headers=ml_warden.as_("admin")).json()
    assert len(everyone["jobs"]) == 1


def test_cancelling_a_queued_job_says_who(ml_warden: WardenHarness) -> None:
    job = queue(ml_warden)
    response = ml_warden.http.post(f"/v1/jobs/{job['id']}/cancel", headers=ml_warden.as_("alice"))
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "cancelled"
    assert response.json()["reason"] == "cancelled by alice"
    with unit_of_work(ml_warden.state.sessions) as db:
        assert repo.claim(db, "w1", job_created_at(ml_warden, job["id"])) is None


def job_created_at(warden: WardenHarness, job_id: str):  # type: ignore[no-untyped-def]
    with unit_of_work(warden.state.sessions) as db:
        row = db.get(Job, job_id)
        assert row is not None
        return row.created_at


def test_concurrent_workers_never_claim_one_job_twice(
    ml_warden: WardenHarness, db_url: str
) -> None:
    """Eight workers, each on its own engine (own connections), race for 40 jobs."""
    jobs = [queue(ml_warden)["id"] for _ in range(40)]
    workers = 8
    barrier = threading.Barrier(workers)
    claims: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        engine = make_engine(db_url)
        sessions = make_sessionmaker(engine)
        try:
            barrier.wait()
            while True:
                with unit_of_work(sessions) as db:
                    job = repo.claim(db, name, job_created_at(ml_warden, jobs[0]))
                    if job is None:
                        return
                    with lock:
                        claims.append((job.id, name))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    counts = Counter(job_id for job_id, _ in claims)
    assert sorted(counts) == sorted(jobs)
    assert set(counts.values()) == {1}
    with unit_of_work(ml_warden.state.sessions) as db:
        rows = db.scalars(select(Job)).all()
        owner = dict(claims)
        assert all(r.state == "running" and r.attempt == 1 for r in rows)
        assert all(r.worker_id == owner[r.id] for r in rows)
    assert len({name for _, name in claims}) > 1  # the work really was shared


def test_jobs_of_one_name_ending_at_once_each_get_their_own_version(
    ml_warden: WardenHarness,
) -> None:
    """Found by CI: two worker slots ended two `domain-tower` jobs together, both read the same
    newest version, and the second insert failed the job. Eight at once must give 1..8."""
    jobs = [queue(ml_warden, name="domain-tower")["id"] for _ in range(8)]
    barrier = threading.Barrier(len(jobs))
    refs: list[str] = []
    errors: list[BaseException] = []

    def end(job_id: str) -> None:
        try:
            barrier.wait()
            model, _ = record_result(ml_warden.state, job_id, None, {"loss": 1.0}, [])
            refs.append(model.ref)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(refs) == sorted(f"domain-tower@{v}" for v in range(1, 9))
    registered = ml_warden.audit_events(action="model.register")
    assert sorted(e["details"]["job"] for e in registered) == sorted(jobs)


def test_a_version_taken_outside_the_turns_is_tried_again_whole(
    ml_warden: WardenHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration outside next_version's turns may take the version a result read (stood
    in for by a next_version that once answers a taken one): the whole transaction is tried
    again, and the model gets the next free version, registered and audited once."""
    first, second = (queue(ml_warden, name="domain-tower")["id"] for _ in range(2))
    record_result(ml_warden.state, first, None, {"loss": 1.0}, [])
    taken = iter([1])
    real = registry_service.next_version
    monkeypatch.setattr(
        registry_service, "next_version", lambda db, t, n: next(taken, 0) or real(db, t, n)
    )
    model, _ = record_result(ml_warden.state, second, None, {"loss": 1.0}, [])
    assert model.ref == "domain-tower@2"
    registered = ml_warden.audit_events(action="model.register")
    assert sorted(e["details"]["job"] for e in registered) == sorted([first, second])
