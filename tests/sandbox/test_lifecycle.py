"""Limits, timeouts, stop and start-up reaping, with real Docker; every outcome audited."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.sandbox import probes
from tests.sandbox.conftest import DEVELOPER, Sandboxes
from tests.sealed_rows import on_socket
from warden.sandbox.liveness import HOST

pytestmark = pytest.mark.docker


def events(sandboxes: Sandboxes, action: str, sandbox_id: str) -> list[dict]:
    found = sandboxes.warden.audit_events(action=action)
    return [e for e in found if e["details"].get("sandbox") == sandbox_id]


def test_launch_and_exit_are_audited_with_image_command_mounts_network_limits(
    sandboxes: Sandboxes,
) -> None:
    row, out = sandboxes.run("alice", ["sh", "-c", "echo hello; exit 3"])
    assert row["status"] == "failed" and row["exit_code"] == 3
    assert out.strip() == "hello"
    (launch,) = events(sandboxes, "sandbox.launch", row["id"])
    assert launch["actor"] == "alice" and launch["decision"] == "allow"
    details = launch["details"]
    assert details["image_digest"].startswith("sha256:")
    assert details["command"] == ["sh", "-c", "echo hello; exit 3"]
    assert details["network"] == "none"
    assert {m.get("target") or m.get("tmpfs") for m in details["mounts"]} == {
        "/out",
        "/run/warden",
        "/tmp",
    }
    assert details["limits"]["pids"] == 256 and details["cap_drop"] == ["ALL"]
    (exit_,) = events(sandboxes, "sandbox.exit", row["id"])
    assert exit_["actor"] == row["job"] and exit_["on_behalf_of"] == "alice"
    assert exit_["details"]["exit_code"] == 3 and exit_["details"]["duration_s"] > 0


def test_a_job_past_its_timeout_is_killed_and_marked_timed_out(sandboxes: Sandboxes) -> None:
    started = time.monotonic()
    row, _ = sandboxes.run("alice", ["sleep", "60"], timeout=2)
    assert time.monotonic() - started < 20
    assert row["status"] == "timed_out" and row["timed_out"] is True
    (exit_,) = events(sandboxes, "sandbox.exit", row["id"])
    assert exit_["details"]["timed_out"] is True and exit_["details"]["status"] == "timed_out"


def test_a_memory_hog_is_killed_and_marked_failed_with_oom(sandboxes: Sandboxes) -> None:
    row, _ = sandboxes.py("alice", probes.MEMORY_HOG, memory="64m", timeout=60)
    assert row["status"] == "failed" and row["oom_killed"] is True, row
    assert row["reason"].startswith("OOM")
    (exit_,) = events(sandboxes, "sandbox.exit", row["id"])
    assert exit_["details"]["oom_killed"] is True


def test_a_fork_bomb_hits_the_pids_limit_and_the_platform_keeps_serving(
    sandboxes: Sandboxes,
) -> None:
    bomb = sandboxes.start(DEVELOPER, ["python3", "-c", probes.FORK_BOMB], segment="app-dev")
    deadline = time.monotonic() + 60
    out = ""
    while "limit hit" not in out and time.monotonic() < deadline:
        time.sleep(0.2)
        out = sandboxes.logs(bomb["id"])
    assert "limit hit after" in out, out
    forks = int(out.split("limit hit after", 1)[1].split()[0])
    assert forks < bomb["limits"]["pids"]
    # While the bomb holds every pid it may, the API answers and other sandboxes run.
    assert sandboxes.warden.http.get("/healthz").status_code == 200
    row, other = sandboxes.run("alice", ["echo", "still serving"])
    assert row["status"] == "succeeded" and "still serving" in other
    stopped = sandboxes.warden.http.post(
        f"/v1/sandboxes/{bomb['id']}/stop", headers=sandboxes.warden.as_(DEVELOPER)
    )
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    (stop,) = events(sandboxes, "sandbox.stop", bomb["id"])
    assert stop["actor"] == DEVELOPER


def test_stop_kills_the_job_and_its_token(sandboxes: Sandboxes) -> None:
    keep = ["sh", "-c", 'printf %s "$WARDEN_TOKEN" > /out/token; sleep 60']
    started = sandboxes.start("alice", keep, datasets=["pins"], purpose="training")
    token_file = sandboxes.runtime.output_dir(started["id"]) / "token"
    deadline = time.monotonic() + 20
    while not (token_file.exists() and token_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    token = token_file.read_text()
    read = {"purpose": "training", "columns": ["pin_id"], "limit": 1}
    as_job = {"authorization": f"Bearer {token}"}
    socket = on_socket(sandboxes.warden, started["id"], token)  # a job token speaks only there
    assert socket.post("/v1/datasets/pins/read", json=read, headers=as_job).status_code == 200
    # mallory may not stop it; it looks as if it did not exist.
    foreign = sandboxes.warden.http.post(
        f"/v1/sandboxes/{started['id']}/stop", headers=sandboxes.warden.as_("mallory")
    )
    assert foreign.status_code == 404
    stopped = sandboxes.warden.http.post(
        f"/v1/sandboxes/{started['id']}/stop", headers=sandboxes.warden.as_("alice")
    )
    assert stopped.json()["status"] == "stopped"
    after = socket.post("/v1/datasets/pins/read", json=read, headers=as_job)
    assert after.status_code == 401 and after.json()["detail"] == "job ended"
    assert sandboxes.runtime.driver.list({"warden.sandbox": started["id"]}) == []


def test_orphans_of_a_dead_platform_are_stopped_and_recorded_at_start_up(
    sandboxes: Sandboxes,
) -> None:
    from warden.sandbox.runtime import SandboxRuntime

    started = sandboxes.start("alice", ["sleep", "60"])
    # The process that launched it dies: a new one over the same database finds the container.
    sandboxes.runtime._live.clear()
    _owned_by(sandboxes, started["id"], f"{HOST}:{_dead_pid()}:000000")
    fresh = SandboxRuntime(sandboxes.warden.state, sandboxes.warden.app)
    assert started["id"] in fresh.reconcile()
    row = sandboxes.show(started["id"])
    assert row["status"] == "stopped" and "orphaned" in row["reason"]
    (stop,) = events(sandboxes, "sandbox.stop", started["id"])
    assert stop["actor"] == "warden" and stop["actor_kind"] == "system"
    assert fresh.driver.list({"warden.sandbox": started["id"]}) == []


def test_sandboxes_another_live_process_watches_are_left_alone(sandboxes: Sandboxes) -> None:
    """`warden serve` restarting beside a `warden worker` (or a replica) must not reap the
    worker's running sandboxes; once that owner falls silent, they are reaped."""
    from warden.sandbox.runtime import SandboxRuntime

    started = sandboxes.start("alice", ["sleep", "60"])
    other = SandboxRuntime(sandboxes.warden.state, sandboxes.warden.app)  # a second process
    assert other.owner != sandboxes.runtime.owner
    assert other.reconcile() == []
    assert sandboxes.show(started["id"])["status"] == "running"
    assert sandboxes.runtime.driver.list({"warden.sandbox": started["id"]})

    # The owner is on another machine and its heartbeat is old: gone.
    sandboxes.runtime._live.clear()
    _owned_by(sandboxes, started["id"], "elsewhere:1:abcdef", beat_age=timedelta(minutes=5))
    assert other.reconcile() == [started["id"]]
    row = sandboxes.show(started["id"])
    assert row["status"] == "stopped" and "orphaned" in row["reason"]


def test_a_live_heartbeat_from_another_machine_keeps_it(sandboxes: Sandboxes) -> None:
    from warden.sandbox.runtime import SandboxRuntime

    started = sandboxes.start("alice", ["sleep", "60"])
    _owned_by(sandboxes, started["id"], "elsewhere:1:abcdef", beat_age=timedelta(seconds=1))
    other = SandboxRuntime(sandboxes.warden.state, sandboxes.warden.app)
    assert other.reconcile() == []
    assert sandboxes.show(started["id"])["status"] == "running"
    _owned_by(sandboxes, started["id"], sandboxes.runtime.owner)  # ours again, for clean-up


def _owned_by(
    sandboxes: Sandboxes, sandbox_id: str, owner: str, beat_age: timedelta = timedelta(0)
) -> None:
    from warden.db.session import unit_of_work
    from warden.sandbox.models import Sandbox

    with unit_of_work(sandboxes.warden.state.sessions) as db:
        row = db.get(Sandbox, sandbox_id)
        assert row is not None
        row.owner, row.heartbeat_at = owner, datetime.now(UTC) - beat_age


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])  # noqa: S607 - a pid that has just ended
    child.wait()
    return child.pid


def test_logs_are_kept_after_the_container_is_gone(sandboxes: Sandboxes) -> None:
    row, out = sandboxes.run("alice", ["sh", "-c", "echo out; echo err >&2"])
    assert sorted(out.split()) == ["err", "out"]
    deadline = time.monotonic() + 20
    while sandboxes.runtime.driver.list({"warden.sandbox": row["id"]}):
        assert time.monotonic() < deadline, "the container was never removed"
        time.sleep(0.05)
    assert sorted(sandboxes.logs(row["id"], who="alice").split()) == ["err", "out"]
    listed = sandboxes.warden.http.get("/v1/sandboxes", headers=sandboxes.warden.as_("alice"))
    assert row["id"] in [s["id"] for s in listed.json()["sandboxes"]]
    others = sandboxes.warden.http.get("/v1/sandboxes", headers=sandboxes.warden.as_(DEVELOPER))
    assert row["id"] not in [s["id"] for s in others.json()["sandboxes"]]
