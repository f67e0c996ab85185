"""`warden sandbox …`: build images, run, list, follow logs, stop, and app-dev shells."""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Annotated, Any

import typer

from warden.cli.client import ApiClient, console, err_console, fail, given
from warden.cli.options import Cpus, Everyone, Follow, SandboxId, Timeout
from warden.cli.output import Format, show

app = typer.Typer(help="Segmented Docker sandboxes: ml (governed data only) and app-dev (none).")

ENDED = ("succeeded", "failed", "timed_out", "stopped", "lost")
TIMEOUT_EXIT = 124


@app.command()
def build(
    images: Annotated[
        list[str] | None, typer.Argument(help="Images to build (default: ml and app-dev)")
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when the tag exists")] = False,
) -> None:
    """Build the sandbox images on this machine (base from Debian, wheels from the host)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from warden.config import get_settings
    from warden.sandbox.docker_driver import DockerDriver
    from warden.sandbox.driver import SandboxError
    from warden.sandbox.images import build_all

    names = images or ["ml", "app-dev"]
    driver = DockerDriver()
    started = time.monotonic()
    try:
        driver.ping()
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=False,
        ) as progress:
            task = progress.add_task("building", total=None)

            def report(message: str) -> None:
                progress.update(task, description=message[:110])
                if message.split(": ", 1)[-1].startswith(("built", "debootstrap", "docker")):
                    progress.console.print(f"  {message}")

            results = build_all(driver.client, get_settings().sandbox, names, report, force=force)
    except SandboxError as exc:
        fail(str(exc))
    for result in results:
        what = f"built in {result.seconds:.0f}s" if result.built else "up to date"
        console.print(f"{result.name:8} {result.tag:34} {what}")
    err_console.print(f"done in {time.monotonic() - started:.0f}s")


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[list[str], typer.Argument(help="The command, after --")],
    segment: Annotated[str, typer.Option(help="ml or app-dev")] = "ml",
    dataset: Annotated[
        list[str] | None, typer.Option(help="A dataset the job may read (repeatable)")
    ] = None,
    purpose: Annotated[
        str | None, typer.Option(help="The purpose bound into the job token")
    ] = None,
    timeout: Timeout = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 2g")] = None,
    cpus: Cpus = None,
    env: Annotated[list[str] | None, typer.Option(help="NAME=VALUE the profile allows")] = None,
    workspace: Annotated[
        str | None,
        typer.Option(help="Mount this workspace read-write at /workspace and run there (app-dev)"),
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Print the id and return")] = False,
) -> None:
    """Run a command in a sandbox, stream its output, exit with its exit code.

    e.g. warden sandbox run --segment ml --dataset pins --purpose training -- python train.py
    or   warden sandbox run --segment app-dev --workspace myapp -- make check
    """
    client = ApiClient()
    body: dict[str, Any] = {
        "segment": segment,
        "command": command,
        "datasets": dataset or [],
        "purpose": purpose,
        "timeout": timeout,
        "memory": memory,
        "cpus": cpus,
        "env": _env(env or []),
    }
    if workspace:
        body["workspace"] = workspace
    if dataset and purpose is None:
        fail("--dataset needs --purpose")
    if purpose and not dataset:
        # Purpose alone: the datasets are those named on each read; the token allows none.
        fail("--purpose needs at least one --dataset")
    sandbox = client.post("/v1/sandboxes", json=body)
    err_console.print(
        f"[dim]sandbox {sandbox['id']} ({sandbox['segment']}, {sandbox['image']}) "
        f"as {sandbox['job']}[/]"
    )
    if detach:
        console.print(sandbox["id"])
        return
    client.stream_logs(f"/v1/sandboxes/{sandbox['id']}/logs", follow=True)
    final = _wait_ended(client, sandbox["id"])
    raise typer.Exit(_report(final))


@app.command(name="list")
def list_(
    all_: Everyone = False,
    status: Annotated[str | None, typer.Option(help="Only this status")] = None,
    fmt: Format = "table",
) -> None:
    """Your sandboxes, newest first."""
    rows = ApiClient().get("/v1/sandboxes", params=given(all=all_, status=status))["sandboxes"]
    for row in rows:
        row["command"] = " ".join(row["command"])[:60]
    columns = ["id", "segment", "status", "exit_code", "launcher", "created_at", "command"]
    show(rows, columns, fmt, title="sandboxes")


@app.command()
def sessions(
    sandbox: Annotated[str | None, typer.Option(help="Only this sandbox (everyone on it)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Everyone's in the tenant (admins)")] = False,
    fmt: Format = "table",
) -> None:
    """What your sandboxes cost: per sandbox and person, wall time, CPU-seconds, commands."""
    params = given(all=all_, sandbox=sandbox)
    rows = ApiClient().get("/v1/sandboxes/sessions", params=params)["sessions"]
    if fmt == "table":
        for row in rows:
            row["egress"] = " ".join(row["egress"])[:60]
    columns = ["sandbox", "segment", "person", "sessions", "commands", "wall_s", "cpu_s", "egress"]
    show(rows, columns, fmt, title="sandbox sessions")


@app.command()
def logs(sandbox_id: SandboxId, follow: Follow = False) -> None:
    """A sandbox's output (stdout and stderr)."""
    ApiClient().stream_logs(f"/v1/sandboxes/{sandbox_id}/logs", follow=follow)


@app.command()
def stop(sandbox_id: SandboxId) -> None:
    """Stop a sandbox (its job token dies at once)."""
    row = ApiClient().post(f"/v1/sandboxes/{sandbox_id}/stop")
    console.print(f"{row['id']}: {row['status']}")


@app.command(name="exec", context_settings={"allow_interspersed_args": False})
def exec_(
    sandbox_id: SandboxId,
    command: Annotated[list[str], typer.Argument(help="The command, after --")],
) -> None:
    """Run a command in your running app-dev sandbox through the API; exits with its code.

    e.g. warden sandbox exec 3f2a9c1b0d4e -- make test
    """
    if command and command[0] == "--":  # after a positional, click passes the `--` along
        command = command[1:]
    if not command:
        fail("a command is required after --")
    client = ApiClient()
    code = client.stream_frames(f"/v1/sandboxes/{sandbox_id}/exec", {"command": command})
    raise typer.Exit(code)


@app.command()
def forward(
    sandbox_id: SandboxId,
    port: Annotated[int, typer.Argument(min=1, max=65535, help="Its port, e.g. a dev server's")],
    local_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Here (default: the same port)")
    ] = None,
) -> None:
    """Reach a port of your running app-dev sandbox at 127.0.0.1 here, through the API."""
    import socket
    import threading

    from warden.cli.forward import serve, ws_url

    client = ApiClient()
    client.get(f"/v1/sandboxes/{sandbox_id}")  # a clear error now rather than per connection
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", port if local_port is None else local_port))
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{local_port or port}: {exc}")
    listener.listen()
    here = listener.getsockname()[1]
    err_console.print(f"127.0.0.1:{here} → sandbox {sandbox_id} port {port}; Ctrl-C to stop")
    stop = threading.Event()
    try:
        serve(
            listener,
            ws_url(client.url, sandbox_id, port),
            client.token or "",
            stop,
            err_console.print,
        )
    except KeyboardInterrupt:
        stop.set()
    finally:
        listener.close()


@app.command()
def shell(
    timeout: Timeout = None,
    workspace: Annotated[
        str | None, typer.Option(help="Open the shell in this workspace (/workspace)")
    ] = None,
) -> None:
    """An interactive app-dev session (needs the Docker CLI on the API's machine)."""
    if shutil.which("docker") is None:
        fail("`warden sandbox shell` attaches with the docker CLI, which is not installed here")
    client = ApiClient()
    body: dict[str, Any] = {
        "segment": "app-dev",
        "command": ["bash"],
        "interactive": True,
        "timeout": timeout,
    }
    if workspace:
        body["workspace"] = workspace
    sandbox = client.post("/v1/sandboxes", json=body)
    err_console.print(f"[dim]app-dev sandbox {sandbox['id']}; exit the shell to end it[/]")
    if not sandbox.get("container_id"):
        fail("the sandbox has no container to attach to")
    sys.stdout.flush()
    os.execvp("docker", ["docker", "attach", sandbox["container_id"]])  # noqa: S606,S607


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            fail(f"--env {pair!r}: use NAME=VALUE")
        env[name] = value
    return env


def _wait_ended(client: ApiClient, sandbox_id: str, limit_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while True:
        row: dict[str, Any] = client.get(f"/v1/sandboxes/{sandbox_id}")
        if row["status"] in ENDED or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def _report(row: dict[str, Any]) -> int:
    status, code = row["status"], row.get("exit_code")
    reason = f" · {row['reason']}" if row.get("reason") else ""
    err_console.print(f"[dim]sandbox {row['id']}: {status}, exit code {code}{reason}[/]")
    if status == "timed_out":
        return TIMEOUT_EXIT
    if code is None:
        return 1
    return int(code) if 0 <= int(code) < 256 else 1
