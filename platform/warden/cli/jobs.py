"""`warden jobs …`: run governed train / infer / eval jobs, list, show, follow logs, cancel;
and `warden worker`, which runs queued jobs on this machine."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from warden.cli.client import ApiClient, console, err_console, fail, given
from warden.cli.options import Cpus, Everyone, Follow, Timeout, Yes
from warden.cli.output import Format, print_one, show

app = typer.Typer(help="Governed ML jobs: train, infer and eval in ML sandboxes.")

ENDED = ("succeeded", "failed", "cancelled", "timed_out")
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 130, "timed_out": 124}
JobId = Annotated[str, typer.Argument(help="The job id")]


@app.command()
def run(
    kind: Annotated[str, typer.Argument(help="train, infer or eval")],
    command: Annotated[
        list[str] | None,
        typer.Argument(help="After --: a command to run instead of `python -m warden_ml`"),
    ] = None,
    step: Annotated[
        str | None,
        typer.Option(help="train-generic, train-domain or swap (train); infer; eval"),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", "-d", help="ROLE=NAME or NAME (repeatable)"),
    ] = None,
    purpose: Annotated[
        str | None, typer.Option(help="training / inference / evaluation (default: by kind)")
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(help="A spec JSON file (seed, datasets, params, model_in, purpose)"),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE (JSON or text)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    model_in: Annotated[
        list[str] | None,
        typer.Option(
            "--model-in",
            "-m",
            help="REF or ROLE=REF; REF is NAME or NAME@VERSION (with :FILE), or an id",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Register the result under this name")] = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1, max=8, help="train-domain: data-parallel CPU processes (torchrun, gloo)"
        ),
    ] = 1,
    timeout: Timeout = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 4g")] = None,
    cpus: Cpus = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the end; exit with it")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream the log until the end (implies --wait)")
    ] = False,
) -> None:
    """Queue a job; prints its id. e.g.

    warden jobs run train --step train-domain -d pins -d pin_pairs -p steps=100 --follow

    warden jobs run eval -d pins -d engagements -d gold -m A=swapped-stack -m B=generic-tower
    """
    if kind not in ("train", "infer", "eval"):
        fail("KIND must be train, infer or eval")
    body = _body(kind, spec, dataset or [], param or [], model_in or [], seed, purpose)
    body.update(
        {
            "step": step,
            "name": name,
            "nproc": nproc,
            "timeout": timeout,
            "memory": memory,
            "cpus": cpus,
        }
    )
    if command:
        body["command"] = command
    client = ApiClient()
    job = client.post("/v1/jobs", json={k: v for k, v in body.items() if v is not None})
    err_console.print(
        f"[dim]job {job['id']} queued: {job['kind']} {job['step']} on "
        f"{', '.join(job['datasets']) or 'no datasets'} for {job['purpose']}[/]"
    )
    console.print(job["id"])
    if follow:
        client.stream_logs(f"/v1/jobs/{job['id']}/logs", follow=True)
    if follow or wait:
        final = _wait(client, job["id"])
        raise typer.Exit(_report(final))


def _body(
    kind: str,
    spec_file: Path | None,
    datasets: list[str],
    params: list[str],
    model_in: list[str],
    seed: int | None,
    purpose: str | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if spec_file is not None:
        try:
            spec = json.loads(spec_file.read_text())
        except (OSError, ValueError) as exc:
            fail(f"--spec {spec_file}: {exc}")
        if not isinstance(spec, dict):
            fail(f"--spec {spec_file}: not a JSON object")
    body: dict[str, Any] = {"kind": kind}
    named = dict(spec.get("datasets") or {})
    for entry in datasets:
        role, sep, dataset_name = entry.partition("=")
        named[role] = dataset_name if sep else role
    body["datasets"] = {k: (v["name"] if isinstance(v, dict) else v) for k, v in named.items()}
    body["params"] = dict(spec.get("params") or {})
    for pair in params:
        key, sep, value = pair.partition("=")
        if not sep:
            fail(f"--param {pair!r}: use NAME=VALUE")
        try:
            body["params"][key] = json.loads(value)
        except ValueError:
            body["params"][key] = value
    body["seed"] = seed if seed is not None else spec.get("seed", 0)
    body["purpose"] = purpose or spec.get("purpose")
    body["model_in"] = _model_in(model_in) if model_in else spec.get("model_in")
    return body


def _model_in(values: list[str]) -> Any:
    """REF… → one ref or a list; ROLE=REF… → {role: ref, or a list when a role repeats}."""
    roles = [v.partition("=") for v in values]
    if not any(sep for _, sep, _ in roles):
        return values[0] if len(values) == 1 else values
    if not all(sep for _, sep, _ in roles):
        fail("--model-in: use ROLE=REF for every model, or REF for all")
    out: dict[str, Any] = {}
    for role, _, ref in roles:
        if role in out:
            out[role] = [*out[role], ref] if isinstance(out[role], list) else [out[role], ref]
        else:
            out[role] = ref
    return out


@app.command(name="list")
def list_(
    all_: Everyone = False,
    state: Annotated[str | None, typer.Option(help="Only this state")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind")] = None,
    fmt: Format = "table",
) -> None:
    """Your jobs, newest first."""
    rows = ApiClient().get("/v1/jobs", params=given(all=all_, state=state, kind=kind))["jobs"]
    columns = ["id", "kind", "step", "state", "launcher", "datasets", "model_id", "created_at"]
    if fmt == "table":
        for row in rows:
            row["state"] = row["state"] + (f" ({row['reason'][:60]})" if row["reason"] else "")
    show(rows, columns, fmt, title="jobs")


@app.command(name="show")
def show_(job_id: JobId, fmt: Format = "table") -> None:
    """One job: spec, state and reason, sandbox, worker, result."""
    print_one(f"/v1/jobs/{job_id}", fmt, _job_table)


def _job_table(row: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_header=False, title=f"job {row['id']}")
    for key, value in row.items():
        text = json.dumps(value) if isinstance(value, dict | list) else str(value or "")
        table.add_row(key, text)
    console.print(table)


@app.command()
def logs(job_id: JobId, follow: Follow = False) -> None:
    """A job's log: the worker's notes and the workload's progress lines."""
    ApiClient().stream_logs(f"/v1/jobs/{job_id}/logs", follow=follow)


@app.command()
def cancel(job_id: JobId, yes: Yes = False) -> None:
    """Cancel a job (a running one's sandbox is stopped)."""
    if not yes and not typer.confirm(f"cancel job {job_id}?"):
        raise typer.Exit(1)
    row = ApiClient().post(f"/v1/jobs/{job_id}/cancel")
    console.print(f"{row['id']}: {row['state']}" + (f" ({_why(row)})" if row["reason"] else ""))


def worker(
    once: Annotated[
        bool, typer.Option(help="Run queued jobs until none is left, then exit")
    ] = False,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between queue polls")] = 1.0,
    slots: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once")] = 1,
) -> None:
    """Run queued jobs on this machine (beside, or instead of, `warden serve`'s own worker)."""
    from warden.cli.startup import refuse_unsafe_data_dir
    from warden.config import get_settings, safe_url

    settings = get_settings()
    refuse_unsafe_data_dir(settings)
    # After the checks: a refusal says so without importing the read path and the workers.
    from warden.api.gateway_app import create_gateway_app
    from warden.core.platform import build_platform
    from warden.core.process import WardenProcess

    platform = build_platform(settings)
    # Its sandboxes' sockets are served by a gateway-only app: the governed read path.
    process = WardenProcess.build(
        platform, create_gateway_app(platform), jobs=True, access=False, slots=slots, poll_s=poll
    )
    runner = process.jobs
    assert runner is not None
    where = safe_url(settings.resolved_database_url)
    err_console.print(f"[dim]worker {runner.worker_id} on {where}[/]")
    try:
        if once:
            while runner.run_once() is not None:
                pass
        else:
            process.start()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        err_console.print("[dim]stopping: running sandboxes are stopped and recorded[/]")
    finally:
        process.stop()


@app.command()
def wait(
    job_ids: Annotated[list[str], typer.Argument(help="Job ids")],
    timeout: Annotated[float | None, typer.Option(min=1, help="Give up after seconds")] = None,
) -> None:
    """Wait until every job has ended; exit 0 only when all succeeded."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    client = ApiClient()
    rows = {job_id: client.get(f"/v1/jobs/{job_id}") for job_id in job_ids}  # unknown: fail now
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("", total=None)
        while True:
            states = [row["state"] for row in rows.values()]
            ended = sum(state in ENDED for state in states)
            running = states.count("running")
            progress.update(task, description=f"{ended}/{len(rows)} ended, {running} running")
            if ended == len(rows):
                break
            if deadline is not None and time.monotonic() > deadline:
                fail(f"{len(rows) - ended} job(s) still not ended after {timeout:.0f}s")
            time.sleep(1.0)
            rows = {i: r if r["state"] in ENDED else client.get(f"/v1/jobs/{i}")
                    for i, r in rows.items()}  # fmt: skip
    codes = [_report(row) for row in rows.values()]
    raise typer.Exit(max(codes, default=0) and 1)


def _wait(client: ApiClient, job_id: str) -> dict[str, Any]:
    while True:
        row: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
        if row["state"] in ENDED:
            return row
        time.sleep(0.5)


def _why(row: dict[str, Any]) -> str:
    """Warden's reason, and the workload's last line where the caller may see it."""
    last = f" (its last line: {row['last_line']})" if row.get("last_line") else ""
    return f"{row['reason']}{last}" if row.get("reason") else ""


def _report(row: dict[str, Any]) -> int:
    reason = f": {_why(row)}" if row.get("reason") else ""
    model = f" · model {row['model_id']}" if row.get("model_id") else ""
    outputs = f" · datasets {', '.join(row['outputs'])}" if row.get("outputs") else ""
    err_console.print(f"job {row['id']} {row['state']}{reason}{model}{outputs}")
    return EXIT_CODES.get(row["state"], 1)
