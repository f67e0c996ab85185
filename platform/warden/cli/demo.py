"""`warden demo`: the end-to-end path on embedded defaults, in a fresh folder.

Seeds a taste graph (generated; the pin images are real scikit-learn digits), starts the API,
then runs the real CLI as different people: an allowed read with a masked identifier, a
read filtered by a policy row filter, refused reads, the audit log and its chain check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.rule import Rule

from warden.api.background import BackgroundServer, serve_in_thread
from warden.cli.client import console, fail
from warden.config import REPO_ROOT, get_settings
from warden.errors import Unavailable

PEOPLE = {
    "alice": ["ml_engineer"],
    "erin": ["analyst_eu"],
    "mallory": [],
    "sam": ["steward"],
    "olive": ["steward"],
}


def run_demo(
    directory: Annotated[
        Path, typer.Option(help="Folder for the demo's data (wiped first)")
    ] = Path(".warden-demo"),
    scale: Annotated[str, typer.Option(help="Taste graph scale: small, medium or large")] = "small",
) -> None:
    """Run the whole governed-read path end to end, on SQLite, in a fresh folder."""
    directory = directory.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    os.environ.update(
        {
            "WARDEN_DATA_DIR": str(directory / "data"),
            "WARDEN_CONFIG_DIR": str(directory / "config"),
        }
    )
    os.environ.pop("WARDEN_DATABASE_URL", None)
    os.environ.pop("WARDEN_TOKEN", None)
    get_settings.cache_clear()

    _step("1. warden init: schema, tenant acme, first admin, seed policy")
    _cli("admin", "init")
    _step("2. warden data seed: the taste graph, registered in the catalog")
    _cli("admin", "data", "seed", "--scale", scale)

    _step("3. warden serve (in the background)")
    server = _start_server()
    os.environ["WARDEN_URL"] = server.url
    try:
        _run_story()
    finally:
        server.stop()
    console.print(
        Panel(
            "Done. The taste graph is generated; the pin images are real (scikit-learn digits).\n"
            f"Everything lives in {directory}.",
            title="demo complete",
        )
    )


def _run_story() -> None:
    tokens: dict[str, str] = {}  # the admin uses the token `warden init` saved
    _step("4. the admin creates people with roles (policy changes, audited)")
    for name, roles in PEOPLE.items():
        args = ["principals", "create", name, *sum((["--role", r] for r in roles), [])]
        _cli("admin", *args)
        tokens[name] = _cli("admin", "principals", "token", name, capture=True).strip()
    _cli(
        "admin",
        "policy",
        "apply",
        str(REPO_ROOT / "policies" / "demo.csv"),
        "--reason",
        "demo rules",
    )
    cli_tokens = tokens

    _step("5. alice (ml_engineer) reads engagements for training: user_id comes back masked")
    _cli(
        "alice",
        "read",
        "engagements",
        "--purpose",
        "training",
        "--columns",
        "user_id,pin_id,action,ts,region",
        "--limit",
        "5",
        env_tokens=cli_tokens,
    )
    _step("6. why? `warden policy check` names the deciding rule per column")
    _cli(
        "admin",
        "policy",
        "check",
        "alice",
        "engagements",
        "--purpose",
        "training",
        "--columns",
        "user_id,pin_id,dwell_ms",
        env_tokens=cli_tokens,
    )
    _step("7. erin (analyst_eu) reads engagements for analytics: a policy row filter keeps EU rows")
    _cli(
        "erin",
        "read",
        "engagements",
        "--purpose",
        "analytics",
        "--columns",
        "user_id,pin_id,region,action",
        "--limit",
        "5",
        env_tokens=cli_tokens,
    )
    _step("8. denied: alice asks for the gold set for training (it is for evaluation only)")
    _cli(
        "alice",
        "read",
        "gold",
        "--purpose",
        "training",
        "--limit",
        "3",
        env_tokens=cli_tokens,
        expect_failure=True,
    )
    _step("9. denied: mallory, with no role, cannot even see that engagements exists (404)")
    _cli(
        "mallory",
        "read",
        "engagements",
        "--purpose",
        "training",
        "--limit",
        "3",
        env_tokens=cli_tokens,
        expect_failure=True,
    )
    _access_story(cli_tokens)
    _step("16. the audit log: every read, allowed or denied, every access and policy change")
    _cli("admin", "audit", "query", "--limit", "12", env_tokens=cli_tokens)
    _step("17. warden audit verify: walk the hash chain")
    _cli("admin", "audit", "verify", env_tokens=cli_tokens)


def _access_story(tokens: dict[str, str]) -> None:
    columns = "user_id,pin_id,action"
    _step("10. mallory asks for engagements for training (pii: two distinct approvals needed)")
    out = _cli(
        "mallory",
        "access",
        "request",
        "engagements",
        "--purpose",
        "training",
        "--columns",
        columns,
        "--duration",
        "7d",
        "--justification",
        "offline evaluation of the ranking fix",
        "--format",
        "json",
        env_tokens=tokens,
        capture=True,
    )
    request = json.loads(out)[0]
    console.print(f"request {request['id']}: {request['state']}, quorum {request['quorum']}")
    _step("11. separation of duties: mallory cannot approve her own request")
    _cli("mallory", "access", "approve", request["id"], env_tokens=tokens, expect_failure=True)
    _step("12. two stewards approve; the last approval creates a time-bound grant")
    _cli(
        "sam",
        "access",
        "approve",
        request["id"],
        "--comment",
        "scoped and masked",
        env_tokens=tokens,
    )
    _cli("olive", "access", "approve", request["id"], "--comment", "ok", env_tokens=tokens)
    _step("13. mallory reads engagements: allowed by the grant, user_id masked")
    _cli(
        "mallory",
        "read",
        "engagements",
        "--purpose",
        "training",
        "--columns",
        columns,
        "--limit",
        "3",
        env_tokens=tokens,
    )
    shown = _cli(
        "admin",
        "access",
        "show",
        request["id"],
        "--format",
        "json",
        env_tokens=tokens,
        capture=True,
    )
    grant = json.loads(shown)[0]["grant_id"]
    _step(f"14. the grant {grant} is revoked")
    _cli(
        "admin",
        "access",
        "revoke",
        grant,
        "--reason",
        "demo: no longer needed",
        "--yes",
        env_tokens=tokens,
    )
    _step("15. mallory's very next read is denied")
    _cli(
        "mallory",
        "read",
        "engagements",
        "--purpose",
        "training",
        "--columns",
        columns,
        "--limit",
        "3",
        env_tokens=tokens,
        expect_failure=True,
    )


def _step(title: str) -> None:
    console.print(Rule(f"[bold cyan]{title}"))


def _cli(
    who: str,
    *args: str,
    env_tokens: dict[str, str] | None = None,
    capture: bool = False,
    expect_failure: bool = False,
) -> str:
    """Run the real `warden` CLI as `who` (the admin uses the token `warden init` saved)."""
    env = dict(os.environ)
    # Wide enough for the audit table; rich folds what doesn't fit.
    env.setdefault("COLUMNS", str(max(shutil.get_terminal_size().columns, 150)))
    if env_tokens and who in env_tokens:
        env["WARDEN_TOKEN"] = env_tokens[who]
    console.print(f"[dim]$ {who}> warden {' '.join(args)}[/]")
    proc = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "warden.cli.main", *args],
        env=env,
        text=True,
        capture_output=capture,
        check=False,
    )
    if expect_failure and proc.returncode == 0:
        fail(f"`warden {' '.join(args)}` should have been refused")
    if not expect_failure and proc.returncode != 0:
        fail(f"`warden {' '.join(args)}` failed ({proc.returncode}): {proc.stderr or ''}")
    return proc.stdout or ""


def _start_server() -> BackgroundServer:
    from warden.api.app import create_app

    try:
        return serve_in_thread(create_app(get_settings()))
    except Unavailable as exc:
        fail(exc.detail)
