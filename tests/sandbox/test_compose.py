"""docker-compose.yml for real: the deployment comes up from images built here (the Warden
service image, PostgreSQL from Debian's packages), serves one governed read through its API
and runs one governed job in its worker service (an ML sandbox on the host's engine reading
through its gateway socket), sends its telemetry to an OTLP receiver, and is torn down.

The collector service sits behind the `collector` profile (no collector image can be had
without a registry), so the services export to this test's own OTLP/HTTP receiver.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import REQUIRE
from warden.api.background import free_port
from warden.config import REPO_ROOT

pytestmark = pytest.mark.docker

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
RECEIVER = REPO_ROOT / "tests" / "audit" / "otlp_receiver.py"
# Failure-only deadlines (a broken deployment fails instead of hanging); nothing is timed.
UP_TIMEOUT_S = 300
JOB_TIMEOUT_S = 300

READ_IN_JOB = """
from warden.sdk import Client
with Client() as c:
    df = c.read("pins", purpose="training", columns=["pin_id"], limit=5)
print("job read", df.height, "pins", flush=True)
"""


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    message = "neither docker-compose nor `docker compose` is installed (scripts/docker-up.sh)"
    if REQUIRE:
        pytest.fail(f"WARDEN_REQUIRE_DOCKER is set but {message}")
    pytest.skip(message)


def test_compose_file_is_accepted_and_runs_the_real_worker() -> None:
    done = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE_FILE), "--profile", "collector", "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for service in ("api:", "worker:", "postgres:", "otel-collector:"):
        assert service in done.stdout
    worker = done.stdout.split("  worker:", 1)[1]
    assert "warden.cli.main" in worker and "- worker" in worker and "sleep" not in worker


@dataclass
class Deployment:
    command: list[str]  # docker-compose -f … -p …
    env: dict[str, str]
    url: str
    host_dir: Path
    otlp_out: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.command, *args], env=self.env, capture_output=True, text=True, check=False
        )
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    def logs(self, service: str = "") -> str:
        done = self.compose("logs", "--no-color", *([service] if service else []), check=False)
        return done.stdout + done.stderr

    def warden(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        """The host's `warden` CLI against the deployment's API, as a user would run it."""
        env = {
            **os.environ,
            "WARDEN_URL": self.url,
            "WARDEN_TOKEN": self.tokens[who],
            "WARDEN_CONFIG_DIR": str(self.host_dir / "cli"),
            "COLUMNS": "200",
        }
        return subprocess.run(
            [sys.executable, "-m", "warden.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=JOB_TIMEOUT_S,
        )

    def api(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            self.url + path,
            headers={"authorization": f"Bearer {self.tokens[who]}"},
            timeout=60,
            **kwargs,
        )
        assert response.status_code < 300, response.text
        return response.json()


@pytest.fixture
def otlp_receiver(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    out = tmp_path / "otlp.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline()), out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def deployment(
    docker_engine: Any, sandbox_images: dict[str, str], otlp_receiver: tuple[int, Path]
) -> Iterator[Deployment]:
    """`docker-compose up` of the repository's file, isolated: its own project name, host
    folder, ports and database password; `down -v` after, whatever happened."""
    from warden.config import get_settings
    from warden.sandbox.images import build_all

    command = compose_command()
    built = {
        b.name: b.tag
        for b in build_all(docker_engine, get_settings().sandbox, ["service", "postgres"], print)
    }
    otlp_port, otlp_out = otlp_receiver
    # Short: a gateway socket's path ($HOST_DIR/run/<sandbox>/gateway.sock) must fit 107 bytes.
    host_dir = Path(tempfile.mkdtemp(prefix="wc-", dir="/tmp"))
    project = f"wardentest{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    env = {
        **os.environ,
        "WARDEN_HOST_DIR": str(host_dir),
        "WARDEN_API_PORT": str(api_port),
        "WARDEN_POSTGRES_PORT": str(free_port()),
        "WARDEN_DB_PASSWORD": uuid.uuid4().hex,
        "WARDEN_SERVICE_IMAGE": built["service"],
        "WARDEN_POSTGRES_IMAGE": built["postgres"],
        "WARDEN_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
    }
    deployed = Deployment(
        command=[*command, "-f", str(COMPOSE_FILE), "-p", project],
        env=env,
        url=f"http://127.0.0.1:{api_port}",
        host_dir=host_dir,
        otlp_out=otlp_out,
    )
    try:
        # `up` returns once PostgreSQL and then the API answer their health checks (the
        # worker depends on the API, which ran `warden init`).
        up = subprocess.run(
            [*deployed.command, "up", "-d"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=UP_TIMEOUT_S,
        )
        assert up.returncode == 0, up.stderr[-3000:] + deployed.logs()[-5000:]
        credentials = json.loads((host_dir / "config" / "credentials.json").read_text())
        deployed.tokens["admin"] = credentials["token"]
        yield deployed
    finally:
        logs = deployed.logs()
        deployed.compose("down", "-v", "--remove-orphans", "--timeout", "30", check=False)
        shutil.rmtree(host_dir, ignore_errors=True)
        print(logs[-20000:])  # shown by pytest when the test failed


def received(out: Path, want: Any) -> list[dict[str, Any]]:
    """OTLP items the receiver has written, once `want(items)` holds (or the deadline)."""
    deadline = time.monotonic() + 60
    while True:
        items = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        if want(items) or time.monotonic() > deadline:
            return items
        time.sleep(0.2)


def test_compose_deployment_serves_a_governed_read_and_runs_a_governed_job(
    deployment: Deployment,
) -> None:
    d = deployment
    seeded = d.compose("exec", "-T", "api", "python3", "-m", "warden.cli.main", "data", "seed")
    assert "pins" in seeded.stdout
    # alice's role widens access: the admin proposes it and the founding admin approves it.
    shown = r"founding admin ada, token \(shown once\):.*?(wdn_[\w-]+)"  # may wrap in the log
    founder = re.search(shown, d.logs("api"), re.S)
    assert founder, d.logs("api")[-3000:]
    d.tokens["ada"] = founder.group(1)
    made = d.api(
        "admin", "POST", "/v1/principals", json={"name": "alice", "roles": ["ml_engineer"]}
    )
    d.api("ada", "POST", f"/v1/policy/changes/{made['change_id']}/approve", json={})
    # A token the admin mints for someone else is held until a second person approves it.
    d.api("admin", "POST", "/v1/principals", json={"name": "mallory"})
    for name in ("alice", "mallory"):
        issued = d.api("admin", "POST", f"/v1/principals/{name}/tokens", json={"label": "compose"})
        d.api("ada", "POST", f"/v1/policy/changes/{issued['change_id']}/approve", json={})
        d.tokens[name] = issued["token"]

    # One governed read through the API (and one refused), both audited.
    read = d.warden("alice", "read", "pins", "--purpose", "training", "--columns", "pin_id",
                    "--limit", "3")  # fmt: skip
    assert read.returncode == 0 and "3 rows" in read.stdout + read.stderr, read.stderr
    refused = d.warden("mallory", "read", "pins", "--purpose", "training")
    assert refused.returncode != 0
    reads = d.api("admin", "GET", "/v1/audit/events", params={"dataset": "pins"})["events"]
    by_actor = {(e["actor"], e["decision"]) for e in reads}
    assert ("alice", "allow") in by_actor and ("mallory", "deny") in by_actor

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
