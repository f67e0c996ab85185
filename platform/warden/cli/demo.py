"""`warden demo`: the end-to-end path on embedded defaults, in a fresh folder.

Seeds a taste graph (generated; the pin images are real scikit-learn digits), starts the API,
then runs the real CLI as different people: a reviewed policy change (proposed by one admin,
refused self-approval, approved by the other), an allowed read with a masked identifier, a
read filtered by a policy row filter, refused reads, an access request through review,
grant and revocation, then (with a Docker Engine) governed ML jobs in sandboxes: both
towers trained per seed, the swap, an A/B evaluation and the lineage behind it; last, the
audit log and its chain check.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.panel import Panel
from rich.rule import Rule

from warden.cli.client import console, fail, load_token
from warden.config import REPO_ROOT, get_settings
from warden.errors import Unavailable

if TYPE_CHECKING:
    from warden.api.background import BackgroundServer

# Who creates whom: reviewers (the stewards) come from a different admin than the people
# whose requests they review, since approvals from principals the requester's creator made
# never count.
PEOPLE = {
    "alice": ("admin", ["ml_engineer"]),
    "erin": ("admin", ["analyst_eu"]),
    "mallory": ("admin", []),
    "sam": ("ada", ["steward"]),
    "olive": ("ada", ["steward"]),
}
FOUNDER = "ada"  # a second admin, created by `warden init`: she and the admin review each other
TOKENS: dict[str, str] = {}  # filled as the admin issues tokens; the admin's own is saved


def run_demo(
    directory: Annotated[
        Path, typer.Option(help="Folder for the demo's data (wiped first)")
    ] = Path(".warden-demo"),
    scale: Annotated[str, typer.Option(help="Taste graph scale: small, medium or large")] = "small",
    ml: Annotated[
        bool, typer.Option(help="Run the sandboxed ML jobs (needs a Docker Engine)")
    ] = True,
    seeds: Annotated[
        int,
        typer.Option(
            min=1,
            max=5,
            help="Training seeds per tower (the eval's CIs). Each seed's fair generic baseline"
            " costs about 7 CPU-minutes on its own at the small scale",
        ),
    ] = 2,
    keep_serving: Annotated[
        bool,
        typer.Option(
            "--keep-serving",
            help="Leave the server up at the end (Ctrl-C stops it), with a request waiting"
            " in the console for the stewards",
        ),
    ] = False,
) -> None:
    """Run the whole governed path end to end, on SQLite, in a fresh folder."""
    directory = directory.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    os.environ.update(
        {
            "WARDEN_DATA_DIR": str(directory / "data"),
            "WARDEN_CONFIG_DIR": str(directory / "config"),
        }
    )
    # One job per CPU at once (each sandbox gets one CPU): the seeds train side by side.
    os.environ.setdefault("WARDEN_JOBS_SLOTS", str(max(1, min(4, os.cpu_count() or 1))))
    os.environ.pop("WARDEN_DATABASE_URL", None)
    os.environ.pop("WARDEN_TOKEN", None)
    get_settings.cache_clear()

    _step("1. warden init: schema, tenant acme, two founding admins, seed policy")
    out = _cli("admin", f"init --founder {FOUNDER}", capture=True)
    console.print(out.rstrip())
    match = re.search(r"token \(shown once\): (\S+)", " ".join(out.split()))
    if match is None:
        fail("`warden init` printed no token for the founding admin")
    TOKENS[FOUNDER] = match.group(1)
    _step("2. warden data seed: the taste graph, registered in the catalog")
    _cli("admin", f"data seed --scale {scale}")

    _step("3. warden serve (in the background)")
    server = _start_server(CONSOLE_PORT if keep_serving else None)
    os.environ["WARDEN_URL"] = server.url
    console.print(f"the console: [bold]{server.url}/console[/] (sign in with an API token)")
    try:
        _run_story(ml and _docker_answers(), seeds)
        if keep_serving:
            _leave_a_request()
        console.print(
            Panel(
                "Done. The taste graph is generated; the pin images are real (scikit-learn"
                f" digits).\nEverything lives in {directory}.\n"
                f"The console: {server.url}/console",
                title="demo complete",
            )
        )
        if keep_serving:
            _keep_serving(server.url)
    finally:
        server.stop()


CONSOLE_PORT = 8765  # the address the README names, when it is free


def _leave_a_request() -> None:
    _step("24. erin asks for pins for analytics: left pending, for the stewards in the console")
    _cli(
        "erin",
        "access request pins --purpose analytics --columns pin_id,category --duration 7d"
        " --justification 'category mix of the EU board feed'",
    )


def _keep_serving(url: str) -> None:
    """Print who can sign in to the console, then wait for Ctrl-C."""
    roles = {name: ", ".join(r) or "no role" for name, (_, r) in PEOPLE.items()}
    roles.update({FOUNDER: "admin", "admin": "admin (auditor)"})
    lines = [f"Open {url}/console and sign in with one of these API tokens:"]
    for name in ("sam", "olive", "admin", "alice", "erin", FOUNDER):
        token = TOKENS.get(name) or (load_token() or "" if name == "admin" else "")
        if token:
            lines.append(f"  {name:<6} {roles.get(name, ''):<18} {token}")
    lines.append("sam or olive: Reviews shows erin's request; admin: Audit. Ctrl-C stops.")
    console.print(Panel("\n".join(lines), title="the server stays up (--keep-serving)"))
    sys.stdout.flush()  # a pipe holds what a sleeping process printed
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping the server")


def _run_story(ml: bool, seeds: int) -> None:
    _step("4. the admins create people; roles widen access, so each is a proposed change")
    for name, (creator, roles) in PEOPLE.items():
        _cli(creator, f"principals create {name}" + "".join(f" --role {r}" for r in roles))
        # Issued by their creator: a token someone mints for you speaks for them too.
        TOKENS[name] = _cli(creator, f"principals token {name}", capture=True).strip()
    _reviewed_policy_change()

    _step("5. alice (ml_engineer) reads engagements for training: user_id comes back masked")
    _cli(
        "alice",
        "read engagements --purpose training --columns user_id,pin_id,action,ts,region --limit 5",
    )
    _step("6. why? `warden policy check` names the deciding rule per column")
    _cli(
        "admin",
        "policy check alice engagements --purpose training --columns user_id,pin_id,dwell_ms",
    )
    _step("7. erin (analyst_eu) reads engagements for analytics: a policy row filter keeps EU rows")
    _cli(
        "erin",
        "read engagements --purpose analytics --columns user_id,pin_id,region,action --limit 5",
    )
    _step(
        "8. denied: alice asks for the gold set and the generator's latent model for training"
        " (both are for evaluation only)"
    )
    _cli("alice", "read gold --purpose training --limit 3", refused=True)
    _cli("alice", "read latent_users --purpose training --limit 3", refused=True)
    _step("9. denied: mallory, with no role, cannot even see that engagements exists (404)")
    _cli("mallory", "read engagements --purpose training --limit 3", refused=True)
    _access_story()
    if ml:
        _ml_story(seeds)
    _step("the audit log: every read, allowed or denied, every job, access and policy change")
    _cli("admin", "audit query --limit 12")
    _step("warden audit verify: walk the hash chain")
    _cli("admin", "audit verify")


def _reviewed_policy_change() -> None:
    _step("4a. a reviewed policy change: the admin proposes the demo rules")
    _cli("admin", f"policy apply {REPO_ROOT / 'policies' / 'demo.csv'} --reason 'demo rules'")
    pending = json.loads(
        _cli(FOUNDER, "policy changes list --state pending --format json", capture=True)
    )
    demo = next(c for c in pending if "dwell_ms" in " ".join(c["payload"].get("add", [])))
    _cli(FOUNDER, f"policy changes show {demo['id']}")
    _step("4b. separation of duties: the admin cannot approve the change they proposed")
    _cli("admin", f"policy changes approve {demo['id']}", refused=True)
    _step("4c. the other admin approves each change the first proposed, and vice versa")
    for change in pending:
        approver = FOUNDER if change["proposer"] == "admin" else "admin"
        _cli(approver, f"policy changes approve {change['id']} --comment 'reviewed'")
    _step("4d. now in force: every role and rule, each approved by a second person")
    _cli("admin", "principals list")


def _access_story() -> None:
    read = "read engagements --purpose training --columns user_id,pin_id,action --limit 3"
    _step(
        "10. erin (analytics only) asks for engagements for training:"
        " pii, two distinct approvals needed"
    )
    out = _cli(
        "erin",
        "access request engagements --purpose training"
        " --columns user_id,pin_id,action --duration 7d"
        " --justification 'offline evaluation of the ranking fix' --format json",
        capture=True,
    )
    request = json.loads(out)
    console.print(f"request {request['id']}: {request['state']}, quorum {request['quorum']}")
    _step("11. separation of duties: erin cannot approve her own request")
    _cli("erin", f"access approve {request['id']}", refused=True)
    _step("12. two stewards approve; the last approval creates a time-bound grant")
    _cli("sam", f"access approve {request['id']} --comment 'scoped and masked'")
    _cli("olive", f"access approve {request['id']} --comment ok")
    _step("13. erin reads engagements for training: allowed by the grant, user_id masked")
    _cli("erin", read)
    shown = _cli("admin", f"access show {request['id']} --format json", capture=True)
    grant = json.loads(shown)["grant_id"]
    _step(f"14. the grant {grant} is revoked")
    _cli("admin", f"access revoke {grant} --reason 'demo: no longer needed' --yes")
    _step("15. erin's very next read is denied, and says her access ended")
    _cli("erin", read, refused=True)


# The domain path (train-domain, then the swap's align and post-train) and the budget the fair
# generic baseline gets: at least the whole path in steps and examples, stopped earlier only
# when its validation loss stops improving (warden_ml.train._train_generic_tower).
DOMAIN_PARAMS = "-p steps=200 -p batch=256"
SWAP_PARAMS = "-p align_steps=100 -p post_steps=100 -p batch=256"
GENERIC_PARAMS = (
    "-p batch=256 -p budget_steps=400 -p budget_examples=102400 -p eval_every=25 -p patience=3"
    " -p 'budget_basis=the demo domain path: tower 200x256 + align 100x256 + post 100x256'"
)


def _ml_story(seeds: int) -> None:
    _step("16. warden sandbox build: the ml and app-dev images (rebuilt only when inputs change)")
    _cli("admin", "sandbox build")
    started = time.monotonic()
    data = "-d pins -d pin_pairs -d engagements"
    _step(f"17. alice queues both towers for {seeds} seeds; the worker runs them side by side")
    run = "jobs run train --step"
    generic = [
        _queue(f"{run} train-generic {data} --seed {seed} {GENERIC_PARAMS}")
        for seed in range(seeds)
    ]
    domain = [
        _queue(f"{run} train-domain {data} --seed {seed} {DOMAIN_PARAMS}") for seed in range(seeds)
    ]
    _cli("alice", "jobs wait " + " ".join(generic + domain))
    _cli("alice", "jobs list")
    _step("18. one of them, as it ran: a sandbox per job, reads through the gateway, progress")
    _cli("alice", f"jobs logs {domain[0]}")
    _step(
        "19. the swap per seed: domain tower in, first sequence block kept, projector"
        " re-aligned, then post-trained with a 16-dimension score head"
    )
    # Models by id: jobs that ran side by side got their versions in the order they finished.
    stacks = [_model_of(job) for job in generic]
    swaps = [
        _queue(f"jobs run train --step swap {data} --seed {seed} {SWAP_PARAMS}"
               f" -m stack={stacks[seed]}:generic_stack.pt -m tower={_model_of(domain[seed])}")
        for seed in range(seeds)
    ]  # fmt: skip
    _cli("alice", "jobs wait " + " ".join(swaps))
    arms = "".join(
        f" -m A={_model_of(swap)} -m B={stack}:generic_stack.pt"
        for swap, stack in zip(swaps, stacks, strict=True)
    )
    _step("20. the A/B evaluation: swapped (A) against generic (B) beside oracle and random")
    names = "-p name_a=swapped -p name_b=generic"
    # latent_users/latent_pins: the generator's latent model, for the oracle (evaluation only)
    data = "-d pins -d engagements -d gold -d latent_users -d latent_pins"
    _cli("alice", f"jobs run eval {data}{arms} {names} --follow")
    took = time.monotonic() - started
    _step(
        "21. the report: full-catalog recall@10 beside the oracle and random (share of the gap"
        " closed), both training budgets, latency P50/P95, cost per 1k requests"
    )
    _cli("alice", "models report eval-report")
    _step("22. warden models lineage: data versions, grants, policy, image and code per model")
    _cli("alice", "models lineage eval-report")
    _step("23. every read the jobs made, with the job as actor on behalf of alice")
    _cli("admin", "audit query --action dataset.read --since 1h --limit 8")
    console.print(
        f"[bold]train-and-evaluate path: {seeds * 3 + 1} jobs in {took:.0f} s[/]"
        " (images built beforehand; the fair generic baseline dominates: see the report's"
        " training budgets)"
    )


def _model_of(job_id: str) -> str:
    """The id of the model a finished job registered."""
    shown = json.loads(_cli("alice", f"jobs show {job_id} --format json", capture=True))
    return str(shown["model_id"])


def _queue(command: str) -> str:
    """Queue a job as alice; its id."""
    job_id = _cli("alice", command, capture=True).strip().splitlines()[-1]
    console.print(f"[dim]queued job {job_id}[/]")
    return job_id


def _docker_answers() -> bool:
    from warden.sandbox.docker_driver import DockerDriver
    from warden.sandbox.driver import SandboxError

    try:
        DockerDriver().ping()
    except SandboxError as exc:
        console.print(
            Panel(
                f"{exc}\n\nSo the sandboxed ML jobs are skipped. (`make demo` installs and "
                "starts Docker itself when it runs as root on Debian.)",
                title="skipping the ML jobs",
                border_style="yellow",
            )
        )
        return False
    return True


def _step(title: str) -> None:
    console.print(Rule(f"[bold cyan]{title}"))


def _cli(who: str, command: str, *, capture: bool = False, refused: bool = False) -> str:
    """Run the real `warden` CLI as `who` (the admin uses the token `warden init` saved)."""
    args = shlex.split(command)
    env = dict(os.environ)
    # Wide enough for the audit table; rich folds what doesn't fit.
    env.setdefault("COLUMNS", str(max(shutil.get_terminal_size().columns, 150)))
    if who in TOKENS:
        env["WARDEN_TOKEN"] = TOKENS[who]
    console.print(f"[dim]$ {who}> warden {command}[/]")
    proc = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "warden.cli.main", *args],
        env=env,
        text=True,
        capture_output=capture,
        check=False,
    )
    if refused and proc.returncode == 0:
        fail(f"`warden {command}` should have been refused")
    if not refused and proc.returncode != 0:
        fail(f"`warden {command}` failed ({proc.returncode}): {proc.stderr or ''}")
    return proc.stdout or ""


def _start_server(port: int | None = None) -> BackgroundServer:
    from warden.api.app import create_app
    from warden.api.background import port_is_free, serve_in_thread  # the demo's own server

    try:
        chosen = port if port is not None and port_is_free(port) else None
        return serve_in_thread(create_app(get_settings()), port=chosen)
    except Unavailable as exc:
        fail(exc.detail)
