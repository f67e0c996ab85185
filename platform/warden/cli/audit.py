"""`warden audit …`: who read what, and whether the audit chain is intact."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from warden.cli.client import ApiClient, console, fail

app = typer.Typer(
    help="Query the audit log, verify its keyed chain, sign checkpoints.", no_args_is_help=True
)

PAGE_MAX = 1000
_RELATIVE = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DECISION_STYLE = {"allow": "green", "deny": "red", "error": "yellow"}


class Decision(StrEnum):
    allow = "allow"
    deny = "deny"
    error = "error"


class Format(StrEnum):
    table = "table"
    json = "json"


def client() -> ApiClient:
    return ApiClient()


def parse_when(value: str, option: str) -> str:
    """ISO-8601 (naive means UTC) or a span back from now such as 15m, 2h, 7d; as ISO-8601."""
    match = _RELATIVE.fullmatch(value.strip())
    if match:
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return (datetime.now(UTC) - timedelta(**{unit: amount})).isoformat()
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option} takes an ISO-8601 time (2025-01-31T12:00:00Z) or an age like 15m, 2h, 7d")
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


@app.command("query")
def query_events(
    actor: Annotated[str | None, typer.Option(help="Only events by this principal.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only events about this dataset.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. read.")] = None,
    decision: Annotated[Decision | None, typer.Option(help="Only this decision.")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (ISO-8601 or 2h, 7d…).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO-8601 or 15m…).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many events.")] = 50,
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """Audit events of your tenant, newest first."""
    params: dict[str, Any] = {
        "actor": actor,
        "dataset": dataset,
        "action": action,
        "decision": decision.value if decision else None,
        "since": parse_when(since, "--since") if since else None,
        "until": parse_when(until, "--until") if until else None,
    }
    params = {k: v for k, v in params.items() if v is not None}
    api = client()
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(events) < limit:
        page_params = {**params, "limit": min(limit - len(events), PAGE_MAX)}
        if cursor:
            page_params["cursor"] = cursor
        page = api.get("/v1/audit/events", params=page_params)
        events.extend(page["events"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if output is Format.json:
        typer.echo(json.dumps(events, indent=2))
        return
    if not events:
        console.print("no audit events match")
        return
    console.print(events_table(events))
    if cursor:
        console.print(f"[dim]showing the newest {len(events)}; raise --limit for older events[/]")


def events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(caption="* masked column", caption_justify="left")
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    for name in ("actor", "action"):
        table.add_column(name, overflow="fold")
    table.add_column("decision", no_wrap=True)
    for name in ("dataset", "purpose", "columns"):
        table.add_column(name, overflow="fold")
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("reason", overflow="fold")
    table.add_column("event", no_wrap=True)  # a prefix; --format json gives the full id
    for ev in events:
        masked = set(ev.get("masked_columns") or [])
        columns = ", ".join(f"{c}*" if c in masked else c for c in ev.get("columns") or [])
        dataset = ev.get("dataset") or ""
        actor = ev["actor"] + (f" for {ev['on_behalf_of']}" if ev.get("on_behalf_of") else "")
        style = _DECISION_STYLE.get(ev["decision"], "")
        table.add_row(
            "" if ev.get("seq") is None else str(ev["seq"]),
            ev["ts"].replace("T", " ")[:19],
            actor,
            ev["action"],
            f"[{style}]{ev['decision']}[/]" if style else ev["decision"],
            dataset,
            ev.get("purpose") or "",
            columns,
            "" if ev.get("rows") is None else str(ev["rows"]),
            (ev.get("reason") or "")[:80],
            ev["id"][:8],
        )
    return table


@app.command("verify")
def verify_chain(
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """Check the chain with its keys and against every signed checkpoint; exits 1 on tampering.

    Reports every finding by kind (truncation, rewritten, rechained, deletion, gap, relinked,
    unknown_key, downgrade, checkpoint_forged, checkpoint_missing, …) and since when the tail
    is unprotected (events after the newest checkpoint)."""
    result = client().post("/v1/audit/verify")
    if output is Format.json:
        typer.echo(json.dumps(result, indent=2))
        if not result["ok"]:
            raise typer.Exit(1)
        return
    if result.get("scope") == "tenant":
        _verify_tenant_view(result)
        return
    keys = ", ".join(result.get("key_ids") or []) or "none"
    console.print(
        f"checked {result['checked']} events (head seq {result.get('head_seq')})"
        f" with chain key(s) {keys}"
    )
    newest = result.get("newest_checkpoint")
    where = result.get("checkpoint_file") or "no checkpoint file"
    if newest:
        console.print(
            f"against {result.get('checkpoints_checked', 0)} signed checkpoint(s) in {where};"
            f" newest: #{newest['n']} at seq {newest['seq']}, {newest['ts']}"
        )
    else:
        console.print(f"no valid signed checkpoint ({where})")
    tail = result.get("unprotected_events", 0)
    if tail:
        console.print(
            f"unprotected tail: {tail} event(s) since {result.get('unprotected_since')}"
            " (after the newest checkpoint)"
        )
    findings = result.get("findings") or []
    for f in findings:
        span = f"seq {f['seq']}" if f.get("seq") is not None else ""
        if f.get("count", 1) > 1:
            span = f"seq {f['seq']}-{f['last_seq']} ({f['count']} events)"
        if f.get("id"):
            span += f" (event {f['id']})"
        style = "red" if f["severity"] == "tampering" else "yellow"
        console.print(f"[{style}]{f['kind']}[/] {span}: {f['detail']}".replace("  ", " "))
    if result["ok"]:
        console.print(f"chain intact: {result['checked']} events")
        return
    broken = result["first_broken"] or {}
    where = f"seq {broken.get('seq')}"
    if broken.get("id"):
        where += f" (event {broken['id']})"
    kinds = sorted({f["kind"] for f in findings if f["severity"] == "tampering"})
    fail(f"chain broken at {where}: {broken.get('reason')}; tampering found: {', '.join(kinds)}")


def _verify_tenant_view(result: dict[str, Any]) -> None:
    """A tenant auditor's answer: whether the one chain holds, and its own events' count."""
    kinds = [f["kind"] for f in result.get("findings") or [] if f["severity"] == "tampering"]
    for f in result.get("findings") or []:
        style = "red" if f["severity"] == "tampering" else "yellow"
        console.print(f"[{style}]{f['kind']}[/]: {f['detail']}")
    if result["ok"]:
        console.print(f"chain intact, holding {result['checked']} events of your tenant")
        return
    fail(f"the chain is broken ({', '.join(kinds)}); the installation's auditors can see where")


@app.command("alarms")
def alarms(
    clear: Annotated[
        str | None, typer.Option("--clear", metavar="ID", help="Clear this standing alarm.")
    ] = None,
) -> None:
    """List the audit alarms in this host's checkpoint folder, or clear one (operators, on the
    host: it needs the checkpoint signing key).

    An alarm is raised when the checkpoint after a revocation, a disable or a sandbox's end is
    refused: the chain was changed under it; and when any checkpoint is refused for tampering
    (raised again at the next round while the chain stays broken). While one stands every
    Warden process sharing the folder answers 503. Before clearing, run `warden audit
    verify`, repair the database, and check that what the alarm lists as ended is ended again
    (each process keeps it ended until it restarts)."""
    from warden.audit.alarms import Alarms  # local: reads the folder, not the API
    from warden.audit.checkpoints import CheckpointStore
    from warden.audit.keys import AuditKeyError
    from warden.config import get_settings

    try:
        found = Alarms.beside(CheckpointStore.for_settings(get_settings()))
    except AuditKeyError as exc:
        fail(f"cannot read the checkpoint keys: {exc}")
    if clear is not None:
        try:
            found.clear(clear)
        except KeyError:
            fail(f"no standing alarm {clear!r}; `warden audit alarms` lists them")
        console.print(f"alarm {clear} cleared")
        return
    standing = found.read().standing
    if not standing:
        console.print(f"no alarm stands ({found.path})")
        return
    for alarm in standing:
        console.print(f"[red]alarm {alarm.id}[/] {alarm.ts}: {alarm.reason}")
        for e in alarm.endings:
            what = ", ".join(f"{k}={v}" for k, v in sorted(e.details.items()) if k != "reason")
            console.print(f"  ended: {e.action} (seq {e.seq}, tenant {e.tenant}) {what}")
    raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint() -> None:
    """Sign the chain head now (platform admins): verified since the last checkpoint first."""
    result = client().post("/v1/audit/checkpoint")
    if result.get("written"):
        console.print(
            f"checkpoint #{result['n']} at seq {result['seq']} ({result['hash'][:16]}…),"
            f" signed by {result['store']}, recorded as event {result.get('event_seq')}"
        )
        return
    if result.get("findings"):
        details = "; ".join(f"{f['kind']}: {f['detail']}" for f in result["findings"])
        fail(f"checkpoint refused, the chain does not verify: {details}")
    console.print(f"no checkpoint written: {result.get('skipped')}")


@app.command("rotate-key")
def rotate_key() -> None:
    """Add a new current audit chain key on this host (old keys stay, for verifying).

    Run it where the server's key folder is (WARDEN_AUDIT_KEYS_DIR), then restart the
    server(s); copy the new key file to every replica first."""
    from warden.audit.keys import AuditKeyError, rotate_chain_key
    from warden.config import get_settings

    try:
        key = rotate_chain_key(get_settings())
    except AuditKeyError as exc:
        fail(str(exc))
    console.print(f"new audit chain key {key.id}; restart the server(s) to use it")
