"""Found by a red-team review: a job's ML sandbox, seen from outside the jobs API (Docker).

1. The sandbox log of a job is the job's log: `/v1/jobs/{id}/logs` keeps it from a jobs admin
   without rights on the job's data, but `/v1/sandboxes/{sandbox_id}/logs` hands the same bytes
   to anyone who administers sandboxes.
2. `/out/metrics.json` is read by the worker on the host *through a symlink* the workload made,
   so a job's model can carry any JSON object on the host (another person's model metrics or
   report, another tenant's) and show it as its own metrics.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import WardenHarness
from tests.jobs.conftest import queue, show, sqlite_only
from warden.jobs.worker import JobWorker

db_url = sqlite_only

PRINT_LATENT = """
from warden.sdk import Client
with Client() as c:
    df = c.read("latent_users", purpose="evaluation")
print(df.head(20).write_csv(), flush=True)
"""


def _allow(warden: WardenHarness, *rules: tuple[str, tuple[str, ...]], why: str) -> None:
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    with unit_of_work(warden.state.sessions) as db:
        admin = get_principal(db, "admin")
        apply_change(db, Caller("admin", "person", "acme", admin.id), add=list(rules), reason=why)
    warden.state.policy.reload()


def test_a_jobs_sandbox_log_is_refused_to_an_admin_who_may_not_read_its_data(
    ml_warden: WardenHarness, worker: JobWorker
) -> None:
    w = ml_warden
    assert w.read("admin", "latent_users", purpose="evaluation").status_code in (403, 404)
    job = queue(
        w,
        "alice",
        kind="eval",
        datasets={"latent_users": "latent_users"},
        command=["python3", "-c", PRINT_LATENT],
    )
    assert worker.run_once() == job["id"]
    done = show(w, job["id"])
    assert done["state"] == "succeeded", done
    mine = w.http.get(f"/v1/jobs/{job['id']}/logs", headers=w.as_("alice"))
    assert "taste_1" in mine.text  # the workload printed latent_users rows
    # the jobs API keeps them from the admin (test_job_outputs.py) ...
    refused = w.http.get(f"/v1/jobs/{job['id']}/logs", headers=w.as_("admin"))
    assert refused.status_code == 403
    # ... and the sandboxes API must too: it is the same output
    leaked = w.http.get(f"/v1/sandboxes/{done['sandbox_id']}/logs", headers=w.as_("admin"))
    assert leaked.status_code in (403, 404) and "taste_1" not in leaked.text, leaked.text[:300]


def test_a_metrics_json_symlink_never_reads_a_file_of_the_host(
    ml_warden: WardenHarness, worker: JobWorker
) -> None:
    w = ml_warden
    # the victim: alice's model, trained on engagements, with a metric only its users may see
    secret = (
        "import json\n"
        "from warden.sdk import Client\n"
        "with Client() as c:\n"
        "    n = c.read('engagements', purpose='training', columns=['pin_id']).height\n"
        "json.dump({'secret_metric': 0.8123, 'rows': n}, open('/out/metrics.json', 'w'))\n"
    )
    victim = queue(w, "alice", datasets={"e": "engagements"}, command=["python3", "-c", secret])
    assert worker.run_once() == victim["id"]
    victim_done = show(w, victim["id"])
    assert victim_done["state"] == "succeeded", victim_done
    victim_model = victim_done["model_id"]

    # mallory may run ML sandboxes, but not read engagements: alice's model is hidden from her
    _allow(w, ("p", ("mallory", "acme", "sandbox:ml", "*", "*", "manage", "allow", "", "")),
           why="mallory runs ML jobs")  # fmt: skip
    hidden = w.http.get(f"/v1/models/{victim_model}", headers=w.as_("mallory"))
    assert hidden.status_code == 404

    # her job reads no data; it only points /out/metrics.json at the victim's file on the host
    # (out is <data>/sandboxes/<id>/out, so ../../../ is the data folder)
    target = f"../../../jobs/{victim['id']}/artifacts/metrics.json"
    job = queue(
        w,
        "mallory",
        kind="train",
        datasets={},
        name="harmless",
        command=["ln", "-s", target, "/out/metrics.json"],
    )
    assert worker.run_once() == job["id"]
    done = show(w, job["id"])
    assert done["state"] == "succeeded", done
    model: dict[str, Any] = w.http.get(
        f"/v1/models/{done['model_id']}", headers=w.as_("mallory")
    ).json()
    assert "secret_metric" not in model["metrics"], model["metrics"]
