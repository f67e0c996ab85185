"""Jobs through real ML sandboxes (Docker, SQLite only): lineage of a finished job, cancel
removes the container, a revoked right fails the job at its next read, and a refused launch
starts no container. The workloads are tiny `python3 -c` programs, so these tests do not
depend on warden_ml (tests/registry has the end-to-end run with it)."""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import WardenHarness
from tests.jobs.conftest import queue, show, sqlite_only, submit, wait_for
from warden.jobs.worker import JobWorker

READ_ONCE = """
import json
from warden.sdk import Client
with Client() as c:
    df = c.read("pins", purpose="training", columns=["pin_id"])
print("progress: read", df.height, "pins", flush=True)
open("/out/model.pt", "wb").write(b"weights")
json.dump({"step": "train-domain", "rows": df.height, "loss": 0.5}, open("/out/metrics.json", "w"))
"""

READ_TWICE = """
import os, time
from warden.sdk import Client
c = Client()
c.read("pins", purpose="training", columns=["pin_id"])
open("/out/first", "w").write("ok")
for _ in range(1200):
    if os.path.exists("/out/go"):
        break
    time.sleep(0.05)
c.read("pins", purpose="training", columns=["pin_id"])
print("second read allowed", flush=True)
"""


db_url = sqlite_only


def run_in_thread(worker: JobWorker) -> threading.Thread:
    thread = threading.Thread(target=worker.run_once, daemon=True)
    thread.start()
    return thread


def _container_gone(engine: Any, container_id: str) -> bool:
    import docker

    try:
        engine.containers.get(container_id)
    except docker.errors.NotFound:
        return True
    return False


def _current_view(warden: WardenHarness, name: str) -> Any:
    from warden.catalog.service import load_view
    from warden.db.session import unit_of_work

    with unit_of_work(warden.state.sessions) as db:
        return load_view(db, warden.settings.datasets_dir, "acme", name)  # type: ignore[attr-defined]


def _current_version(warden: WardenHarness, name: str) -> str:
    return str(_current_view(warden, name).version)


def test_finished_job_registers_a_model_with_complete_lineage(
    ml_warden: WardenHarness, worker: JobWorker
) -> None:
    job = queue(ml_warden, command=["python3", "-c", READ_ONCE], seed=5)
    assert worker.run_once() == job["id"]
    done = show(ml_warden, job["id"])
    assert done["state"] == "succeeded", done
    assert done["worker_id"] == "test-worker" and done["attempt"] == 1
    logs = ml_warden.http.get(f"/v1/jobs/{job['id']}/logs", headers=ml_warden.as_("alice"))
    assert "progress: read" in logs.text and "registered domain-tower@1" in logs.text

    model = ml_warden.http.get("/v1/models/domain-tower", headers=ml_warden.as_("alice")).json()
    assert model["job_id"] == job["id"] and model["metrics"]["loss"] == 0.5
    assert [a["name"] for a in model["artifacts"]] == ["metrics.json", "model.pt"]
    lineage = model["lineage"]
    sandbox = ml_warden.http.get(
        f"/v1/sandboxes/{done['sandbox_id']}", headers=ml_warden.as_("alice")
    ).json()
    [pins] = lineage["datasets"]
    view = _current_view(ml_warden, "pins")
    current = view.version
    assert pins["name"] == "pins" and pins["reads"] == 1 and pins["versions"] == [current]
    assert pins["rules"] and pins["launch_version"] == current
    # the Iceberg snapshot the job read, and the one it was launched on
    assert view.snapshot_id and pins["snapshots"] == [view.snapshot_id]
    assert pins["launch_snapshot"] == view.snapshot_id
    assert lineage["policy_version"] is not None
    assert lineage["image_digest"] == sandbox["image_digest"] and lineage["image_digest"]
    assert len(lineage["code_version"]["sha256"]) == 64
    assert lineage["actor"] == sandbox["job"] and lineage["seed"] == 5
    assert lineage["purpose"] == "training" and lineage["parents"] == []
    reads = ml_warden.audit_events(actor=sandbox["job"], action="dataset.read")
    assert [e["id"] for e in reads] == lineage["audit_events"]
    assert all(e["on_behalf_of"] == "alice" and e["decision"] == "allow" for e in reads)

    # a child job pins its parent; lineage walks back to it
    child = queue(ml_warden, command=["python3", "-c", READ_ONCE], model_in="domain-tower")
    assert child["model_in"] == [model["id"]]
    assert child["spec"]["model_in"] == f"{model['id']}:model.pt"
    assert worker.run_once() == child["id"]
    chain = ml_warden.http.get(
        "/v1/models/domain-tower@2/lineage", headers=ml_warden.as_("alice")
    ).json()
    assert chain["model"]["lineage"]["parents"][0]["id"] == model["id"]
    assert [a["id"] for a in chain["ancestors"]] == [model["id"]]


def test_cancelled_job_has_its_container_removed(
    ml_warden: WardenHarness, worker: JobWorker, docker_engine: Any
) -> None:
    job = queue(ml_warden, command=["python3", "-c", "import time; time.sleep(120)"])
    thread = run_in_thread(worker)
    running = wait_for(lambda: show(ml_warden, job["id"]).get("sandbox_id"), what="a sandbox")
    sandbox = ml_warden.http.get(f"/v1/sandboxes/{running}", headers=ml_warden.as_("admin"))
    container = wait_for(
        lambda: (
            ml_warden.http.get(f"/v1/sandboxes/{running}", headers=ml_warden.as_("admin"))
            .json()
            .get("container_id")
        ),
        what="a container",
    )
    assert sandbox.status_code == 200
    response = ml_warden.http.post(f"/v1/jobs/{job['id']}/cancel", headers=ml_warden.as_("alice"))
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    thread.join(60)
    assert not thread.is_alive()
    assert wait_for(lambda: _container_gone(docker_engine, container), what="container gone")
    final = show(ml_warden, job["id"])
    assert final["state"] == "cancelled" and final["reason"] == "cancelled by alice"
    stopped = ml_warden.http.get(f"/v1/sandboxes/{running}", headers=ml_warden.as_("admin"))
    assert stopped.json()["status"] == "stopped"


def test_revoked_right_denies_the_next_read_and_fails_the_job(
    ml_warden: WardenHarness, worker: JobWorker
) -> None:
    job = queue(ml_warden, command=["python3", "-c", READ_TWICE])
    thread = run_in_thread(worker)
    sandbox_id = wait_for(lambda: show(ml_warden, job["id"]).get("sandbox_id"), what="a sandbox")
    out = ml_warden.process.sandboxes.output_dir(sandbox_id)
    wait_for(lambda: (out / "first").exists(), what="the first read")
    revoke = ml_warden.http.delete(
        "/v1/principals/alice/roles/ml_engineer", headers=ml_warden.as_("admin")
    )
    assert revoke.status_code == 200, revoke.text
    (out / "go").write_text("go")
    thread.join(90)
    final = show(ml_warden, job["id"])
    assert final["state"] == "failed", final
    # the gateway hides a dataset alice may no longer see at all: 404, not 403
    assert "exited with code 1" in final["reason"], final["reason"]
    # the workload's last line: never in the reason or the audit log, and shown only to who
    # may read what the job read: not the admin shown `final`, who may not read pins, and no
    # longer alice, whose right ended (it could be a row the job printed; red team 22b)
    mine = show(ml_warden, job["id"], who="alice")
    assert mine["last_line"] is None and final["last_line"] is None
    assert "NotFound" not in final["reason"]
    (ended,) = [
        e for e in ml_warden.audit_events(action="job.end") if e["details"]["job"] == job["id"]
    ]
    assert "NotFound" not in str(ended), ended
    reads = ml_warden.audit_events(actor=f"job-{sandbox_id}", action="dataset.read")
    assert [e["decision"] for e in reversed(reads)] == ["allow", "deny"]  # newest first
    assert final["model_id"] is None


def test_refused_launch_starts_no_container(
    ml_warden: WardenHarness, worker: JobWorker, docker_engine: Any
) -> None:
    instance = ml_warden.process.sandboxes.instance
    response = submit(ml_warden, "mallory", kind="train", datasets={"pins": "pins"})
    assert response.status_code == 403
    assert worker.run_once() is None
    labelled = docker_engine.containers.list(
        all=True, filters={"label": f"warden.instance={instance}"}
    )
    assert labelled == []


def test_rights_lost_while_queued_fail_the_job_at_launch(
    ml_warden: WardenHarness, worker: JobWorker
) -> None:
    job = queue(ml_warden, command=["python3", "-c", "print('never')"])
    ml_warden.http.delete("/v1/principals/alice/roles/ml_engineer", headers=ml_warden.as_("admin"))
    assert worker.run_once() == job["id"]
    final = show(ml_warden, job["id"])
    assert final["state"] == "failed" and final["reason"].startswith("refused at launch: ")
    assert final["sandbox_id"] is None


def test_a_worker_with_two_slots_runs_two_jobs_at_once(
    ml_warden: WardenHarness, sandbox_images: dict[str, str]
) -> None:
    # Each job says it started, then waits for the test's go: both can have started only if
    # they run side by side (one at a time, the first waits for a go that never comes).
    both = (
        "import os, time\n"
        "print('threads', os.environ['OMP_NUM_THREADS'], flush=True)\n"
        "open('/out/started', 'w').write('ok')\n"
        "for _ in range(1200):\n"
        "    if os.path.exists('/out/go'):\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        "else:\n"
        "    raise SystemExit('no go: the other job never ran beside this one')\n"
        "open('/out/metrics.json', 'w').write('{\"loss\": 1.0}')\n"
    )
    jobs = [queue(ml_warden, command=["python3", "-c", both]) for _ in range(2)]
    runtime = ml_warden.process.sandboxes
    runner = JobWorker(ml_warden.state, runtime, worker_id="two-slots", slots=2)
    runner.start()
    try:
        outs = [
            runtime.output_dir(
                wait_for(lambda j=job: show(ml_warden, j["id"]).get("sandbox_id"), timeout=120,
                         what="both jobs' sandboxes: the second waited for the first")
            )
            for job in jobs
        ]  # fmt: skip
        wait_for(lambda: all((out / "started").exists() for out in outs), timeout=120,
                 what="both jobs running at once")  # fmt: skip
        for out in outs:
            (out / "go").write_text("go")
        for job in jobs:
            wait_for(lambda j=job: show(ml_warden, j["id"])["state"] in ("succeeded", "failed"),
                     timeout=120, what="the job to end")  # fmt: skip
    finally:
        runner.stop()
        ml_warden.process.sandboxes.shutdown()
    rows = [show(ml_warden, job["id"]) for job in jobs]
    assert [r["state"] for r in rows] == ["succeeded", "succeeded"], rows
    first, second = sorted(rows, key=lambda r: r["started_at"])
    assert second["started_at"] < first["ended_at"], "the second job waited for the first"
    logs = ml_warden.http.get(f"/v1/jobs/{first['id']}/logs", headers=ml_warden.as_("alice"))
    assert "threads 1" in logs.text  # one compute thread per CPU the sandbox has


def test_custom_command_that_exits_0_without_metrics_succeeds(
    ml_warden: WardenHarness, worker: JobWorker
) -> None:
    """Exit status decides; metrics.json is optional (`warden jobs run train -- python -c …`)."""
    read = (
        "from warden.sdk import Client\n"
        "with Client() as c:\n"
        "    print('rows', c.read('pins', purpose='training', columns=['pin_id']).height)\n"
    )
    job = queue(ml_warden, command=["python3", "-c", read])
    assert worker.run_once() == job["id"]
    done = show(ml_warden, job["id"])
    assert done["state"] == "succeeded", done
    assert done["reason"] is None and done["model_id"]
    logs = ml_warden.http.get(f"/v1/jobs/{job['id']}/logs", headers=ml_warden.as_("alice")).text
    assert "rows " in logs and "wrote no metrics.json; none recorded" in logs
    model = ml_warden.http.get("/v1/models/domain-tower", headers=ml_warden.as_("alice")).json()
    assert model["job_id"] == job["id"] and model["metrics"] == {}

    # an unusable metrics.json does not fail a job that exited 0 either
    bad = queue(ml_warden, command=["python3", "-c", "open('/out/metrics.json','w').write('[1')"])
    assert worker.run_once() == bad["id"]
    assert show(ml_warden, bad["id"])["state"] == "succeeded"
    # and exit status still fails a job that wrote metrics
    failed = queue(
        ml_warden,
        command=["python3", "-c", "open('/out/metrics.json','w').write('{}'); raise SystemExit(3)"],
    )
    assert worker.run_once() == failed["id"]
    final = show(ml_warden, failed["id"])
    assert final["state"] == "failed" and "exited with code 3" in final["reason"], final
