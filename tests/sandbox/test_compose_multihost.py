"""Two hosts, one PostgreSQL, one bucket: the compose deployment (host A: its API and worker)
and a second host beside it (host B: an API replica and a worker, each a container in its
own network namespace, with its own host folder and no copy of any dataset), reaching
PostgreSQL and SeaweedFS only over the deployment's network.

- data seeded on host A (into the bucket) is read through replica B, masks and versions
  the same;
- a job claimed by host B's worker reads its shard (`shard=(1, 2)`) through its gateway
  socket, and the shards partition the answer;
- a grant revoked through replica A is refused by replica B on its very next read;
- the audit chain verifies, and the reads of both replicas and of host B's job are in it.

Both hosts share one Docker Engine (this machine has one): host B's worker hands the engine
paths under its own host folder, mounted at the same path, as host A's does.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sandbox.deployment import Deployment

pytestmark = pytest.mark.docker

READY_TIMEOUT_S = 180  # failure-only deadline; nothing is timed

READ_SHARD_IN_JOB = """
import hashlib
from warden.sdk import Client
with Client() as c:
    df = c.read("pins", purpose="training", columns=["pin_id"], shard=(1, 2))
ids = ",".join(str(x) for x in df["pin_id"].to_list())
print("job shard", df.height, hashlib.sha256(ids.encode()).hexdigest(), flush=True)
"""


@dataclass
class Host:
    name: str
    host_dir: Path
    api: Any  # docker-py containers
    worker: Any
    url: str

    def logs(self) -> str:
        out = []
        for container in (self.api, self.worker):
            with suppress(Exception):
                out.append(container.logs(tail=300).decode(errors="replace"))
        return "\n".join(out)


@pytest.fixture
def host_b(compose_deployment: Deployment, docker_engine: Any) -> Iterator[Host]:
    """Replica B and worker B: the service image, the deployment's database, bucket and keys
    (WARDEN_MASK_KEY, WARDEN_AUDIT_CHAIN_KEY), a host folder of its own."""
    d = compose_deployment
    host_dir = Path(tempfile.mkdtemp(prefix="wb-", dir="/tmp"))
    env = {
        "WARDEN_DATABASE_URL": (
            f"postgresql+psycopg://warden:{d.env['WARDEN_DB_PASSWORD']}@postgres:5432/warden"
        ),
        "WARDEN_DATA_DIR": f"{host_dir}/data",
        "WARDEN_CONFIG_DIR": f"{host_dir}/config",
        "WARDEN_SANDBOX_RUN_DIR": f"{host_dir}/run",
        "WARDEN_STORAGE_URL": "s3://warden/datasets",
        "WARDEN_S3_ENDPOINT_URL": "http://seaweedfs:8333",
        "WARDEN_S3_ACCESS_KEY_ID": d.env["WARDEN_S3_ACCESS_KEY_ID"],
        "WARDEN_S3_SECRET_ACCESS_KEY": d.env["WARDEN_S3_SECRET_ACCESS_KEY"],
        "WARDEN_MASK_KEY": d.env["WARDEN_MASK_KEY"],
        "WARDEN_AUDIT_CHAIN_KEY": d.env["WARDEN_AUDIT_CHAIN_KEY"],
    }
    common: dict[str, Any] = {
        "image": d.env["WARDEN_SERVICE_IMAGE"],
        "user": "0:0",
        "network": d.network,
        "volumes": {
            str(host_dir): {"bind": str(host_dir), "mode": "rw"},
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
        },
        "labels": {"warden.test": d.project},
        "detach": True,
    }
    suffix = uuid.uuid4().hex[:6]
    started: list[Any] = []
    try:
        api = docker_engine.containers.run(
            command=["python3", "-m", "warden.cli.main", "serve", "--host", "0.0.0.0"],
            name=f"{d.project}-b-api-{suffix}",
            hostname="host-b-api",
            environment={**env, "WARDEN_JOBS_WORKER": "false"},
            **common,
        )
        started.append(api)
        worker = docker_engine.containers.run(
            command=["python3", "-m", "warden.cli.main", "worker"],
            name=f"{d.project}-b-worker-{suffix}",
            hostname="host-b-worker",
            environment=env,
            stop_signal="SIGINT",
            **common,
        )
        started.append(worker)
        api.reload()
        ip = api.attrs["NetworkSettings"]["Networks"][d.network]["IPAddress"]
        host = Host("B", host_dir, api, worker, f"http://{ip}:8765")
        wait_ready(host)
        yield host
    finally:
        for container in reversed(started):
            with suppress(Exception):
                print(container.logs(tail=200).decode(errors="replace"))
                container.stop(timeout=30)
            with suppress(Exception):
                container.remove(force=True)
        # The folder's files belong to root and the sandbox user; this test runs as root.
        import shutil

        shutil.rmtree(host_dir, ignore_errors=True)


def wait_ready(host: Host) -> None:
    """Until replica B answers /readyz (its database and policy confirmed)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        host.api.reload()
        if host.api.status == "exited":
            break
        with suppress(httpx.HTTPError):
            answer = httpx.get(f"{host.url}/readyz", timeout=5)
            if answer.status_code == 200:
                return
            last = answer.text
        time.sleep(0.25)
    raise AssertionError(f"replica B is not ready: {last}\n{host.logs()[-5000:]}")


def read(d: Deployment, who: str, url: str, dataset: str, **body: Any) -> httpx.Response:
    return d.call(who, "POST", f"/v1/datasets/{dataset}/read", url=url, json=body)


def arrow_rows(response: httpx.Response, column: str) -> list[Any]:
    import pyarrow as pa

    assert response.status_code == 200, response.text
    table = pa.ipc.open_stream(response.content).read_all()
    return list(table.column(column).to_pylist())


def test_two_hosts_share_data_jobs_revocations_and_one_audit_chain(
    compose_deployment: Deployment, host_b: Host
) -> None:
    d, b = compose_deployment, host_b
    a_url = d.url
    events: dict[str, str] = {}  # audit event id → where it was served

    # Data seeded on host A is read through replica B: same version, same masked pseudonyms.
    # Host B has no copy: its data folder holds no dataset file, the rows come from the bucket.
    body = {"purpose": "training", "columns": ["pin_id"]}
    via_a, via_b = read(d, "alice", a_url, "pins", **body), read(d, "alice", b.url, "pins", **body)
    pins = arrow_rows(via_a, "pin_id")
    assert pins and arrow_rows(via_b, "pin_id") == pins
    version = via_a.headers["x-warden-dataset-version"]
    assert via_b.headers["x-warden-dataset-version"] == version
    events[via_a.headers["x-warden-audit-event"]] = "replica A"
    events[via_b.headers["x-warden-audit-event"]] = "replica B"
    masked = {"purpose": "training", "columns": ["user_id"], "limit": 20}
    users_a = read(d, "alice", a_url, "users", **masked)
    users_b = read(d, "alice", b.url, "users", **masked)
    assert "user_id" in users_b.headers["x-warden-masked-columns"]
    assert arrow_rows(users_b, "user_id") == arrow_rows(users_a, "user_id")
    stored = [p.name for p in (b.host_dir / "data").rglob("*") if p.suffix == ".parquet"]
    assert not stored, stored

    # A job submitted through replica B and claimed by host B's worker (host A's is stopped
    # meanwhile, so the claim is B's) reads shard 1 of 2 through its gateway socket; shard 0,
    # read through replica A, and it partition the answer.
    d.compose("stop", "worker")
    try:
        job = d.warden("alice", "jobs", "run", "train", "-d", "pins", "--follow", "--",
                       "python3", "-c", READ_SHARD_IN_JOB, url=b.url)  # fmt: skip
    finally:
        d.compose("start", "worker", check=False)
    assert job.returncode == 0, job.stdout + job.stderr + b.logs()[-5000:]
    shown = d.api("alice", "GET", f"/v1/jobs/{job.stdout.split()[0]}")
    assert shown["state"] == "succeeded" and shown["worker_id"].startswith("host-b-worker")
    shard0 = read(d, "alice", a_url, "pins", shard={"rank": 0, "world": 2}, **body)
    events[shard0.headers["x-warden-audit-event"]] = "replica A"
    assert arrow_rows(shard0, "pin_id") == pins[0::2]
    shard1 = ",".join(str(x) for x in pins[1::2])
    digest = hashlib.sha256(shard1.encode()).hexdigest()
    assert f"job shard {len(pins[1::2])} {digest}" in job.stdout, job.stdout
    sandbox = d.api("admin", "GET", f"/v1/sandboxes/{shown['sandbox_id']}")
    wanted = {"actor": sandbox["job"], "action": "dataset.read"}
    job_reads = d.api("admin", "GET", "/v1/audit/events", params=wanted)["events"]
    assert [e["decision"] for e in job_reads] == ["allow"], job_reads
    assert {k: job_reads[0]["details"]["shard"][k] for k in ("rank", "world")} == {
        "rank": 1,
        "world": 2,
    }
    events[job_reads[0]["id"]] = "worker B"

    # A grant revoked through replica A is refused by replica B on its very next read.
    # The reviewer is ada's (alice is the admin's): nobody approves for whoever made them.
    d.add_person("sam", ["steward"], by="ada", second="admin")
    asked = d.api("alice", "POST", "/v1/access/requests", json={
        "dataset": "pins", "columns": ["pin_id"], "purpose": "analytics", "duration": "1d",
        "justification": "two-host test"})  # fmt: skip
    reviewed = d.api("sam", "POST", f"/v1/access/requests/{asked['id']}/review",
                     json={"decision": "approve", "comment": "ok"})  # fmt: skip
    grant_id = reviewed["grant_id"]
    analytics = {"purpose": "analytics", "columns": ["pin_id"], "limit": 1}
    granted = read(d, "alice", b.url, "pins", **analytics)
    assert granted.status_code == 200, granted.text
    events[granted.headers["x-warden-audit-event"]] = "replica B"
    revoked = d.call("sam", "POST", f"/v1/access/grants/{grant_id}/revoke", url=a_url,
                     json={"reason": "incident"})  # fmt: skip
    assert revoked.status_code == 200, revoked.text
    # No clock: the revocation is committed, so B's very next read must already refuse it.
    refused = read(d, "alice", b.url, "pins", **analytics)
    assert refused.status_code == 403 and "ended" in refused.json()["detail"], refused.text

    # One audit chain: it verifies (through replica B, and through A), and the reads served
    # by replica A, replica B and host B's job are all in it, each with its place.
    for url in (b.url, a_url):
        verified = d.call("admin", "POST", "/v1/audit/verify", url=url, json={})
        assert verified.status_code == 200, verified.text
        result = verified.json()
        assert result["ok"], result
        print("verify through", url, {k: result[k] for k in ("checked", "head_seq", "findings")})
    head = result["head_seq"]
    assert result["checked"] >= head
    chained = {e["id"]: e["seq"] for e in pins_reads(d)}
    assert set(events) <= set(chained), set(events) - set(chained)
    seqs = [chained[event_id] for event_id in events]
    assert len(set(seqs)) == len(seqs) and max(seqs) <= head
    assert set(events.values()) == {"replica A", "replica B", "worker B"}


def pins_reads(d: Deployment) -> list[dict[str, Any]]:
    """Every `dataset.read` event on pins, following the pages."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"dataset": "pins", "action": "dataset.read", "limit": 1000}
    while True:
        page = d.api("admin", "GET", "/v1/audit/events", params=params)
        found += page["events"]
        if not page["next_cursor"]:
            return found
        params["cursor"] = page["next_cursor"]
