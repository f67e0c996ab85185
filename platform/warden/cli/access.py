"""`warden access …`: ask for access, review requests, revoke grants, break glass."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from warden.cli.client import ApiClient, console, fail, given
from warden.cli.options import (
    AuditReason,
    Columns,
    DatasetName,
    Limit,
    OnlyDataset,
    Purpose,
    Yes,
    column_names,
)
from warden.cli.output import Format, print_body, print_one, show, show_one

app = typer.Typer(
    help="Request, review and revoke time-bound access to datasets.", no_args_is_help=True
)
RequestId = Annotated[str, typer.Argument(help="Request id (req-…)")]
Comment = Annotated[str, typer.Option(help="A note for the requester and the audit log")]

REQUEST_COLUMNS = [
    "id",
    "dataset",
    "requester",
    "purpose",
    "duration",
    "state",
    "approvals",
    "quorum",
]
GRANT_COLUMNS = ["id", "dataset", "principal", "purpose", "state", "expires_at", "flags"]
HISTORY_COLUMNS = ["at", "subject", "event", "from_state", "to_state", "actor", "reason"]
_STATE_STYLE = {
    "pending": "yellow",
    "approved": "green",
    "active": "green",
    "denied": "red",
    "revoked": "red",
    "cancelled": "dim",
    "expired": "dim",
}


def _request_row(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "approvals": f"{len(r['approvals'])}/{r['quorum']}"}


def _grant_row(g: dict[str, Any]) -> dict[str, Any]:
    flags = []
    if g["break_glass"]:
        flags.append("break-glass")
    if g["needs_review"]:
        flags.append("needs review")
    return {**g, "flags": flags}


def _one_request(r: dict[str, Any], fmt: str, verb: str = "") -> None:
    print_body(r, fmt, lambda r: console.print(_request_line(r, verb)))


def _request_line(r: dict[str, Any], verb: str = "") -> str:
    style = _STATE_STYLE.get(r["state"], "")
    return (
        f"{verb}request [bold]{r['id']}[/] · [{style}]{r['state']}[/] · {r['dataset']}"
        f" for {r['purpose']} · {r['duration']} · approvals {len(r['approvals'])}/{r['quorum']}"
        + (f" · grant [bold]{r['grant_id']}[/]" if r.get("grant_id") else "")
    )


def _one_grant(g: dict[str, Any], fmt: str, verb: str = "") -> None:
    print_body(g, fmt, lambda g: console.print(_grant_line(g, verb)))


def _grant_line(g: dict[str, Any], verb: str) -> str:
    style = _STATE_STYLE.get(g["state"], "")
    flags = ", ".join(_grant_row(g)["flags"])
    return (
        f"{verb}grant [bold]{g['id']}[/] · [{style}]{g['state']}[/] · {g['principal']} on"
        f" {g['dataset']} for {g['purpose']} · until {g['expires_at']}"
        + (f" · [bold red]{flags}[/]" if flags else "")
    )


@app.command()
def request(
    dataset: Annotated[str, typer.Argument(help="Dataset name, e.g. engagements")],
    purpose: Purpose,
    duration: Annotated[str, typer.Option(help="How long, from approval: 12h, 7d, 2w")],
    justification: Annotated[str, typer.Option(help="Why you need it (reviewers read this)")],
    columns: Columns = None,
    fmt: Format = "table",
) -> None:
    """Ask for access to a dataset for a purpose and a duration."""
    body = {
        "dataset": dataset,
        "purpose": purpose,
        "duration": duration,
        "justification": justification,
        "columns": column_names(columns),
    }
    _one_request(ApiClient().post("/v1/access/requests", json=body), fmt, "created ")


@app.command("list")
def list_(
    state: Annotated[
        list[str] | None, typer.Option(help="pending, approved, denied, cancelled, expired")
    ] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only requests you made")] = False,
    reviewable: Annotated[
        bool, typer.Option("--reviewable", help="Only pending requests you may review")
    ] = False,
    dataset: OnlyDataset = None,
    limit: Limit = 100,
    fmt: Format = "table",
) -> None:
    """Requests you made or may review, newest first."""
    params = given(mine=mine, reviewable=reviewable, limit=limit, state=state, dataset=dataset)
    rows = ApiClient().get("/v1/access/requests", params=params)["requests"]
    show(rows, REQUEST_COLUMNS, fmt, title="access requests", table_row=_request_row)


@app.command("show")
def show_(request_id: RequestId, fmt: Format = "table") -> None:
    """One request: its terms, reviews and full history."""
    print_one(f"/v1/access/requests/{request_id}", fmt, _request_details)


def _request_details(r: dict[str, Any]) -> None:
    console.print(_request_line(r))
    console.print(f"requester {r['requester']} · columns {', '.join(r['columns'])}")
    console.print(f"justification: {r['justification']}")
    if r["reviews"]:
        show(r["reviews"], ["reviewer", "decision", "comment", "at"], "table", title="reviews")
    show(r["history"], HISTORY_COLUMNS, "table", title="history")


def _review(request_id: str, decision: str, comment: str, fmt: str) -> None:
    body = {"decision": decision, "comment": comment}
    out = ApiClient().post(f"/v1/access/requests/{request_id}/review", json=body)
    _one_request(out, fmt, f"{decision}d: " if decision == "approve" else "denied: ")


@app.command()
def approve(
    request_id: RequestId,
    comment: Comment = "",
    fmt: Format = "table",
) -> None:
    """Approve a request (never your own); the quorum's last approval creates the grant."""
    _review(request_id, "approve", comment, fmt)


@app.command()
def deny(
    request_id: RequestId,
    comment: Comment = "",
    fmt: Format = "table",
) -> None:
    """Deny a request; one deny rejects it."""
    _review(request_id, "deny", comment, fmt)


@app.command()
def cancel(
    request_id: RequestId,
    reason: AuditReason = "",
    fmt: Format = "table",
) -> None:
    """Withdraw your own pending request."""
    out = ApiClient().post(f"/v1/access/requests/{request_id}/cancel", json={"reason": reason})
    _one_request(out, fmt, "cancelled: ")


@app.command()
def grants(
    state: Annotated[list[str] | None, typer.Option(help="active, expired, revoked")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only grants you hold")] = False,
    needs_review: Annotated[
        bool, typer.Option("--needs-review", help="Only break-glass grants not yet signed off")
    ] = False,
    dataset: OnlyDataset = None,
    limit: Limit = 100,
    fmt: Format = "table",
) -> None:
    """Grants you hold or may review, newest first."""
    params = given(
        mine=mine, limit=limit, state=state, needs_review=needs_review or None, dataset=dataset
    )
    rows = ApiClient().get("/v1/access/grants", params=params)["grants"]
    show(rows, GRANT_COLUMNS, fmt, title="grants", table_row=_grant_row)


@app.command()
def revoke(
    grant_id: Annotated[str, typer.Argument(help="Grant id (grant-… or bg-…)")],
    reason: Annotated[str, typer.Option(help="Why, for the holder and the audit log")],
    yes: Yes = False,
    fmt: Format = "table",
) -> None:
    """Revoke a grant now: the holder's very next read is denied."""
    if not yes and not typer.confirm(f"revoke {grant_id}?"):
        fail("nothing revoked")
    out = ApiClient().post(f"/v1/access/grants/{grant_id}/revoke", json={"reason": reason})
    _one_grant(out, fmt, "revoked: ")


@app.command("break-glass")
def break_glass(
    dataset: DatasetName,
    purpose: Purpose,
    reason: Annotated[str, typer.Option(help="The emergency (reviewers read this)")],
    columns: Columns = None,
    yes: Yes = False,
    fmt: Format = "table",
) -> None:
    """Emergency access at once: short, flagged on every read, reviewed afterwards."""
    if not yes and not typer.confirm(
        f"break glass on {dataset}? every read is flagged and reviewers are told"
    ):
        fail("nothing done")
    body = {
        "dataset": dataset,
        "purpose": purpose,
        "reason": reason,
        "columns": column_names(columns),
    }
    _one_grant(ApiClient().post("/v1/access/break-glass", json=body), fmt, "break-glass ")


@app.command("sign-off")
def sign_off(
    grant_id: Annotated[str, typer.Argument(help="Break-glass grant id (bg-…)")],
    comment: Comment = "",
    fmt: Format = "table",
) -> None:
    """Sign off someone else's break-glass grant after reviewing its use."""
    out = ApiClient().post(f"/v1/access/grants/{grant_id}/sign-off", json={"comment": comment})
    _one_grant(out, fmt, "signed off: ")


@app.command()
def terms(
    dataset: DatasetName,
    quorum: Annotated[int | None, typer.Option(min=0, max=10, help="Approvers needed")] = None,
    max_duration: Annotated[str | None, typer.Option(help="Longest grant, e.g. 14d")] = None,
    fmt: Format = "table",
) -> None:
    """Show a dataset's access terms, or override them (its owner, or an admin)."""
    client = ApiClient()
    body: dict[str, Any] = {}
    if quorum is not None:
        body["quorum"] = quorum
    if max_duration is not None:
        body["max_duration"] = max_duration
    path = f"/v1/access/settings/{dataset}"
    out = client.request("PUT", path, json=body).json() if body else client.get(path)
    if out.get("state") == "pending":
        change = out["change"]
        console.print(
            f"proposed, awaiting review: change [bold]{change['id']}[/] ({change['summary']})"
        )
        out = out["terms"]
    show_one(out, ["dataset", "classification", "quorum", "max_duration", "overridden"], fmt)


@app.command()
def deliveries(
    state: Annotated[list[str] | None, typer.Option(help="pending, delivered, failed")] = None,
    fmt: Format = "table",
) -> None:
    """Webhook deliveries; failed ones stay here until retried."""
    params: dict[str, Any] = {"state": state} if state else {}
    out = ApiClient().get("/v1/access/webhooks/deliveries", params=params)
    show(
        out["deliveries"],
        ["id", "event", "recipients", "state", "attempts", "last_error"],
        fmt,
        title=f"webhook deliveries ({out['failed']} failed, {out['pending']} pending)",
    )


@app.command()
def tidy() -> None:
    """Expire what is due and drop ended grants' rules now (admins)."""
    out = ApiClient().post("/v1/access/tidy")
    console.print(
        f"{out['requests_expired']} request(s) and {out['grants_expired']} grant(s) expired;"
        f" {out['rules_pruned']} rule(s) pruned"
    )
