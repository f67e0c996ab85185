"""Each case is an attempt from inside a sandbox that must fail, with real Docker.

Nothing here sends traffic off this machine: targets are this machine's own addresses
(loopback, its Docker bridges, its primary address) and other sandboxes on it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandbox import probes
from tests.sandbox.conftest import DEVELOPER, Sandboxes
from tests.sealed_rows import on_socket

pytestmark = pytest.mark.docker

READ_PINS = (
    "from warden.sdk import Client; "
    "print(Client().read('pins', purpose='training', columns=['pin_id'], limit=3))"
)


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A stand-in host service listening on every interface (as a careless deployment would)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))  # noqa: S104 - the point: a service on all interfaces
    server.listen(16)
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    server.close()


def host_addresses() -> list[str]:
    """This machine's own IPv4 addresses: primary and Docker bridges."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return [a for a in out if ":" not in a]


def host_targets(port: int) -> list[list[Any]]:
    targets = [[a, port] for a in ["127.0.0.1", *host_addresses()]]
    # PostgreSQL's port on every host address, and the API's default port.
    targets += [[a, 5432] for a in ["127.0.0.1", *host_addresses()]]
    targets += [[a, 8765] for a in host_addresses()]
    return targets


def test_ml_reads_governed_data_as_the_job_on_behalf_of_its_launcher(
    sandboxes: Sandboxes,
) -> None:
    row, out = sandboxes.py("alice", READ_PINS, datasets=["pins"], purpose="training")
    assert row["status"] == "succeeded", out
    assert "pin_id" in out and "shape: (3, 1)" in out
    reads = sandboxes.warden.audit_events(action="dataset.read", actor=row["job"])
    assert len(reads) == 1
    assert reads[0]["decision"] == "allow"
    assert reads[0]["actor_kind"] == "job"
    assert reads[0]["on_behalf_of"] == "alice"
    assert reads[0]["dataset"] == "pins" and reads[0]["rows"] == 3


def test_ml_has_no_interface_but_loopback_no_route_and_no_dns(sandboxes: Sandboxes) -> None:
    row, out = sandboxes.py("alice", probes.NETWORK)
    facts = probes.last_json(out)
    assert facts["interfaces"] == ["lo"], facts
    assert facts["routes"] == [] and facts["v6_routes"] == []
    assert facts["ip_route"].strip() == ""
    assert [line.split(":")[1].strip() for line in facts["ip_link"].splitlines()] == ["lo"]
    assert facts["dns"].startswith("gaierror"), facts["dns"]


def test_ml_cannot_reach_host_services(sandboxes: Sandboxes, host_listener: int) -> None:
    targets = host_targets(host_listener)
    row, out = sandboxes.run(
        "alice", ["python3", "-c", probes.CONNECT, json.dumps(targets)], timeout=120
    )
    results = probes.last_json(out)
    assert len(results) == len(targets)
    assert not [t for t, r in results.items() if r == "connected"], results
    # Positive control: the stand-in service does answer on this machine.
    with socket.create_connection((host_addresses()[0], host_listener), timeout=2):
        pass


def test_app_dev_cannot_reach_host_services_or_the_outside(
    sandboxes: Sandboxes, host_listener: int
) -> None:
    targets = host_targets(host_listener)
    code = probes.CONNECT.replace("print(json.dumps(result))", "print(json.dumps(result))\n")
    row, out = sandboxes.run(
        DEVELOPER,
        ["sh", "-c", f"ip route; python3 -c '{code}' '{json.dumps(targets)}'"],
        segment="app-dev",
        timeout=120,
    )
    results = probes.last_json(out)
    gateway = next(line.split()[2] for line in out.splitlines() if line.startswith("default"))
    assert not [t for t, r in results.items() if r == "connected"], results
    # Its own bridge's gateway is this machine too: refused there as well.
    row, out = sandboxes.run(
        DEVELOPER,
        ["python3", "-c", probes.CONNECT, json.dumps([[gateway, host_listener], [gateway, 53]])],
        segment="app-dev",
    )
    assert "connected" not in probes.last_json(out).values()


def test_app_dev_has_only_its_own_network_and_no_dns(sandboxes: Sandboxes) -> None:
    row, out = sandboxes.py(DEVELOPER, probes.NETWORK, segment="app-dev")
    facts = probes.last_json(out)
    assert sorted(facts["interfaces"]) == ["eth0", "lo"]
    assert facts["dns"].startswith("gaierror"), facts["dns"]
    assert row["network"] == "internal"


@pytest.fixture
def listener_sandbox(sandboxes: Sandboxes) -> Iterator[str]:
    """An app-dev sandbox serving on port 8000; yields its address."""
    started = sandboxes.start(DEVELOPER, ["python3", "-c", probes.LISTENER], segment="app-dev")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = sandboxes.logs(started["id"])
        if "ready" in out:
            yield out.split("ready", 1)[1].split()[0]
            return
        time.sleep(0.1)
    raise AssertionError(f"listener sandbox never got ready: {sandboxes.show(started['id'])}")


def test_no_sandbox_reaches_another(sandboxes: Sandboxes, listener_sandbox: str) -> None:
    targets = json.dumps([[listener_sandbox, 8000]])
    _, ml_out = sandboxes.run("alice", ["python3", "-c", probes.CONNECT, targets])
    _, dev_out = sandboxes.run(
        DEVELOPER, ["python3", "-c", probes.CONNECT, targets], segment="app-dev"
    )
    assert "connected" not in probes.last_json(ml_out).values()
    assert "connected" not in probes.last_json(dev_out).values()


@pytest.mark.parametrize("segment", ["ml", "app-dev"])
def test_root_filesystem_is_read_only_and_only_out_and_tmp_are_writable(
    sandboxes: Sandboxes, segment: str
) -> None:
    who = "alice" if segment == "ml" else DEVELOPER
    row, out = sandboxes.py(who, probes.FILESYSTEM, segment=segment)
    facts = probes.last_json(out)
    writes = facts["writes"]
    for path in (
        "/etc/warden-probe",
        "/usr/warden-probe",
        "/opt/venv/warden-probe",
        "/warden-probe",
    ):
        assert writes[path] != "written", (path, writes)
    assert writes["/tmp/probe"] == "written" and writes["/out/probe"] == "written"
    assert "ro" in facts["root_options"].split(",")
    if segment == "ml":
        assert writes["/run/warden/probe"] != "written"


@pytest.mark.parametrize("segment", ["ml", "app-dev"])
def test_no_root_no_capabilities_no_mounts(sandboxes: Sandboxes, segment: str) -> None:
    who = "alice" if segment == "ml" else DEVELOPER
    row, out = sandboxes.py(who, probes.PRIVILEGES, segment=segment)
    facts = probes.last_json(out)
    assert facts["uid"] == facts["euid"] == 10001
    assert set(facts["caps"].values()) == {"0000000000000000"}, facts["caps"]
    assert facts["no_new_privs"] == "1"
    assert facts["seccomp"] == "2"  # a filter: Docker's default profile
    assert facts["setuid"].startswith("PermissionError")
    for attempt in ("su", "mount", "unshare", "chroot"):
        code, text = facts[attempt]
        assert code != 0, (attempt, text)


@pytest.mark.parametrize("segment", ["ml", "app-dev"])
def test_no_docker_socket_and_no_data_mounts(sandboxes: Sandboxes, segment: str) -> None:
    who = "alice" if segment == "ml" else DEVELOPER
    row, out = sandboxes.py(who, probes.FILESYSTEM, segment=segment)
    facts = probes.last_json(out)
    if segment == "ml":
        assert facts["sockets"] == ["/run/warden/gateway.sock"]
        assert set(facts["env"]) == {
            "WARDEN_SANDBOX_ID",
            "WARDEN_SEGMENT",
            "WARDEN_SOCKET",
            "WARDEN_TOKEN",
        }
    else:
        assert facts["sockets"] == []
        assert "WARDEN_TOKEN" not in facts["env"] and "WARDEN_SOCKET" not in facts["env"]
        assert "/run/warden" not in facts["mount_points"]
    # The only host folders inside are its own output folder (and, for ml, its socket folder).
    binds = [m for m in facts["mount_points"] if m in ("/out", "/run/warden")]
    assert binds == (["/out", "/run/warden"] if segment == "ml" else ["/out"])
    datasets_dir = str(sandboxes.warden.settings.datasets_dir)  # type: ignore[attr-defined]
    assert not any(m.startswith(datasets_dir) for m in facts["mount_points"])


def test_another_sandboxs_socket_is_out_of_sight_and_refuses_a_foreign_token(
    sandboxes: Sandboxes,
) -> None:
    keep = ["sh", "-c", 'printf %s "$WARDEN_TOKEN" > /out/token; sleep 60']
    a = sandboxes.start("alice", keep, datasets=["pins"], purpose="training")
    b = sandboxes.start("alice", keep, datasets=["pins"], purpose="training")
    socket_a = sandboxes.runtime.settings.run_dir / a["id"] / "gateway.sock"
    token_b = wait_for_file(sandboxes.runtime.output_dir(b["id"]) / "token")
    token_a = wait_for_file(sandboxes.runtime.output_dir(a["id"]) / "token")

    # From inside a third sandbox, A's socket folder is nowhere to be found.
    probe = (
        "import os, json; print(json.dumps({'own': os.listdir('/run/warden'), "
        f"'a': os.path.exists({str(socket_a)!r}) or os.path.exists('/run/warden/{a['id']}')}}))"
    )
    _, out = sandboxes.py("alice", probe, datasets=["pins"], purpose="training")
    assert probes.last_json(out) == {"own": ["gateway.sock"], "a": False}

    # Even handed A's socket, B's token is refused there; A's own token is served.
    def read_via_a(token: str) -> httpx.Response:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_a))) as http:
            return http.post(
                "http://warden/v1/datasets/pins/read",
                json={"purpose": "training", "columns": ["pin_id"], "limit": 1},
                headers={"authorization": f"Bearer {token}"},
            )

    refused = read_via_a(token_b)
    assert refused.status_code == 403, refused.text
    assert read_via_a(token_a).status_code == 200


def wait_for_file(path: Any, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return str(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_job_token_is_dead_once_the_job_ends(sandboxes: Sandboxes) -> None:
    command = ["sh", "-c", 'printf %s "$WARDEN_TOKEN" > /out/token']
    row, _ = sandboxes.run("alice", command, datasets=["pins"], purpose="training")
    token = (sandboxes.runtime.output_dir(row["id"]) / "token").read_text()
    assert token.startswith("wjt_")
    headers = {"authorization": f"Bearer {token}"}
    # on its socket (its gate: the unix socket went with the sandbox) and, as any bad token,
    # over TCP, where a job token never speaks (red team 16b)
    for via, detail in [(on_socket(sandboxes.warden, row["id"], token), "job ended"),
                        (sandboxes.warden.http, "invalid token")]:  # fmt: skip
        response = via.post("/v1/datasets/pins/read", json={"purpose": "training"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"] == detail
        denied = sandboxes.warden.audit_events(action="dataset.read", decision="deny")
        assert any(e["reason"] == f"Unauthenticated: {detail}" for e in denied)


def test_reads_outside_the_jobs_grant_are_refused_and_audited(sandboxes: Sandboxes) -> None:
    row, out = sandboxes.py("alice", probes.READS, datasets=["users"], purpose="training")
    results = probes.last_json(out)
    assert results["allowed"].startswith("rows"), results
    assert results["column_outside_grant"].startswith("403 Forbidden"), results
    assert results["dataset_outside_token"].startswith("403 Forbidden"), results
    assert results["other_purpose"].startswith("403 Forbidden"), results
    events = sandboxes.warden.audit_events(action="dataset.read", actor=row["job"])
    assert sorted(e["decision"] for e in events) == ["allow", "deny", "deny", "deny"]
    assert {e["on_behalf_of"] for e in events} == {"alice"}


def test_app_dev_reads_nothing_even_with_a_stolen_token(
    sandboxes: Sandboxes, host_listener: int
) -> None:
    keep = ["sh", "-c", 'printf %s "$WARDEN_TOKEN" > /out/token; sleep 60']
    ml = sandboxes.start("alice", keep, datasets=["pins"], purpose="training")
    stolen = wait_for_file(sandboxes.runtime.output_dir(ml["id"]) / "token")
    attempts = [f"http://{a}:{p}" for a in host_addresses() for p in (8765, host_listener)]
    code = (
        "import json, sys\n"
        "from warden.sdk import Client\n"
        "out = {}\n"
        "for url in [None, *json.loads(sys.argv[2])]:\n"
        "    try:\n"
        "        Client(url=url, token=sys.argv[1], timeout=3).read('pins', purpose='training')\n"
        "        out[str(url)] = 'read'\n"
        "    except Exception as exc:\n"
        "        out[str(url)] = type(exc).__name__\n"
        "print(json.dumps(out))\n"
    )
    row, out = sandboxes.run(
        DEVELOPER, ["python3", "-c", code, stolen, json.dumps(attempts)], segment="app-dev"
    )
    results = probes.last_json(out)
    assert "read" not in results.values(), results
    # The profile refuses the ways to hand it data at launch.
    for body in (
        {"datasets": ["pins"], "purpose": "training"},
        {"env": {"WARDEN_TOKEN": stolen}},
        {"env": {"WARDEN_SOCKET": "/run/warden/gateway.sock"}},
    ):
        refused = sandboxes.launch(DEVELOPER, ["true"], segment="app-dev", **body)
        assert refused.status_code == 403, refused.text
    assert not sandboxes.warden.audit_events(action="dataset.read", decision="allow")
