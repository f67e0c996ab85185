"""Workspaces in sandboxes, on the real Docker Engine: the README's example from a project
folder, results written back, the same files the next time, and never in the ML segment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER, Sandboxes
from tests.sandbox.test_cli import cli
from tests.workspace.test_workspaces import give_role

pytestmark = pytest.mark.docker

MAKEFILE = """\
check:
\t@python3 -c "import app; print('app says', app.VALUE)"
\t@echo checked > results.txt
\t@pwd
"""


def project(folder: Path) -> Path:
    """A small git project: a Makefile, code, and an ignored build folder."""
    folder.mkdir()
    (folder / "Makefile").write_text(MAKEFILE)
    (folder / "app.py").write_text("VALUE = 42\n")
    (folder / ".gitignore").write_text("build/\n")
    (folder / "build").mkdir()
    (folder / "build" / "huge.bin").write_bytes(b"\0" * 1024)
    (folder / "notes.txt").write_text("untracked, not ignored\n")
    git = ["git", "-c", "user.email=d@example.com", "-c", "user.name=d"]
    subprocess.run([*git, "init", "-q"], cwd=folder, check=True)
    subprocess.run([*git, "add", "Makefile", "app.py", ".gitignore"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-qm", "start"], cwd=folder, check=True)
    return folder


def test_the_readme_example_runs_make_check_in_the_workspace(
    sandboxes: Sandboxes,
    live_warden: WardenHarness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = live_warden.tokens[DEVELOPER]
    monkeypatch.chdir(project(tmp_path / "myapp"))
    created = cli(["workspace", "create", "myapp", "--from", "."], token)
    assert created.exit_code == 0, created.output  # type: ignore[attr-defined]
    assert "4 files" in created.output  # type: ignore[attr-defined]  # build/ stays home

    ran = cli(
        ["sandbox", "run", "--segment", "app-dev", "--workspace", "myapp", "--", "make", "check"],
        token,
    )
    assert ran.exit_code == 0, ran.output  # type: ignore[attr-defined]
    assert "app says 42" in ran.output and "/workspace" in ran.output  # type: ignore[attr-defined]

    # The next sandbox (tomorrow's shell) finds the same files, results included.
    again = cli(
        [
            "sandbox",
            "run",
            "--segment",
            "app-dev",
            "--workspace",
            "myapp",
            "--",
            "cat",
            "results.txt",
        ],
        token,
    )
    assert again.exit_code == 0 and "checked" in again.output  # type: ignore[attr-defined]

    back = tmp_path / "back"
    pulled = cli(["workspace", "pull", "myapp", "--into", str(back)], token)
    assert pulled.exit_code == 0, pulled.output  # type: ignore[attr-defined]
    assert (back / "results.txt").read_text() == "checked\n"
    assert (back / "notes.txt").exists() and not (back / "build").exists()

    (launch,) = [
        e
        for e in live_warden.audit_events(action="sandbox.launch", actor=DEVELOPER)
        if e["details"].get("workspace") and "cat" in e["details"]["command"]
    ]
    assert launch["details"]["workspace"] == "myapp"
    assert {"target": "/workspace", "read_only": False}.items() <= launch["details"]["mounts"][
        1
    ].items()


def test_a_workspace_never_appears_in_an_ml_sandbox(
    sandboxes: Sandboxes, warden: WardenHarness
) -> None:
    give_role(warden, "alice", "developer", "alice develops too")
    made = warden.http.post("/v1/workspaces", json={"name": "w"}, headers=warden.as_("alice"))
    assert made.status_code == 201, made.text
    # this runtime's containers only: other tests' sandboxes come and go on the same engine
    mine = {"warden.managed": "1", "warden.instance": sandboxes.runtime.instance}
    before = len(sandboxes.runtime.driver.list(mine))
    refused = sandboxes.launch("alice", ["ls", "/workspace"], segment="ml", workspace="w")
    assert refused.status_code == 422, refused.text
    assert "never mounts a workspace" in refused.json()["detail"]
    (denied,) = warden.audit_events(action="sandbox.launch", decision="deny")
    assert denied["details"]["workspace"] == "w" and denied["actor"] == "alice"
    assert len(sandboxes.runtime.driver.list(mine)) == before
    # A plain ML sandbox has no such folder at all.
    row, out = sandboxes.run("alice", ["sh", "-c", "ls -d /workspace || echo none"])
    assert "none" in out


def test_someone_elses_private_workspace_is_not_mounted(
    sandboxes: Sandboxes, warden: WardenHarness
) -> None:
    made = warden.http.post("/v1/workspaces", json={"name": "mine"}, headers=warden.as_(DEVELOPER))
    assert made.status_code == 201
    # the admin has no app-dev right here: refused before anything is looked up
    refused = sandboxes.launch("admin", ["true"], segment="app-dev", workspace=f"{DEVELOPER}/mine")
    assert refused.status_code in (403, 404)
    (denied,) = warden.audit_events(action="sandbox.launch", decision="deny")
    assert denied["details"]["workspace"] == f"{DEVELOPER}/mine"


def test_a_workspace_in_use_is_neither_replaced_nor_deleted(
    sandboxes: Sandboxes, warden: WardenHarness
) -> None:
    from tests.workspace.test_workspaces import GOOD, make_tar, put

    headers = warden.as_(DEVELOPER)
    assert (
        warden.http.post("/v1/workspaces", json={"name": "busy"}, headers=headers).status_code
        == 201
    )
    assert put(warden, DEVELOPER, "busy", make_tar(GOOD)).status_code == 200  # type: ignore[attr-defined]
    running = sandboxes.start(DEVELOPER, ["sleep", "300"], segment="app-dev", workspace="busy")
    refused = put(warden, DEVELOPER, "busy", make_tar(GOOD[:1]))
    assert refused.status_code == 409, refused.text  # type: ignore[attr-defined]
    assert running["id"] in refused.json()["detail"]  # type: ignore[attr-defined]
    assert warden.http.delete("/v1/workspaces/busy", headers=headers).status_code == 409
    denied = warden.audit_events(decision="deny")
    assert {"workspace.upload", "workspace.delete"} <= {e["action"] for e in denied}
    sandboxes.runtime.stop(running["id"], None, "test over")
    assert put(warden, DEVELOPER, "busy", make_tar(GOOD[:1])).status_code == 200  # type: ignore[attr-defined]


def test_a_shell_opens_in_the_workspace(sandboxes: Sandboxes, warden: WardenHarness) -> None:
    headers = warden.as_(DEVELOPER)
    assert (
        warden.http.post("/v1/workspaces", json={"name": "sh"}, headers=headers).status_code == 201
    )
    shell = sandboxes.start(
        DEVELOPER, ["bash"], segment="app-dev", interactive=True, workspace="sh"
    )
    container = sandboxes.runtime.driver.client.containers.get(shell["container_id"])
    assert container.attrs["Config"]["WorkingDir"] == "/workspace"
    (mount,) = [m for m in container.attrs["Mounts"] if m["Destination"] == "/workspace"]
    assert mount["RW"] is True and mount["Source"].endswith("/tree")
    assert container.attrs["Config"]["Tty"] is True
    sandboxes.runtime.stop(shell["id"], None, "test over")


def test_an_upload_over_the_quota_is_refused_with_a_clear_message(
    sandboxes: Sandboxes, live_warden: WardenHarness, tmp_path: Path
) -> None:
    live_warden.state.settings.workspace.quota_mb = 1
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(4):
        (folder / f"blob{i}.bin").write_bytes(b"x" * (1 << 20))
    token = live_warden.tokens[DEVELOPER]
    result = cli(["workspace", "create", "big", "--from", str(folder)], token)
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert "quota" in result.output  # type: ignore[attr-defined]
    (denied,) = live_warden.audit_events(action="workspace.upload", decision="deny")
    assert "PayloadTooLarge" in denied["reason"]
