"""`warden principals …`: people and service accounts of your tenant."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from warden.cli.client import ApiClient, console, err_console
from warden.cli.output import Format, show, show_one

app = typer.Typer(
    help="Manage people and service accounts (needs the admin role).", no_args_is_help=True
)


@app.command("list")
def list_(fmt: Format = "table") -> None:
    """List the principals of your tenant and their roles."""
    rows = ApiClient().get("/v1/principals")["principals"]
    show(
        rows, ["name", "kind", "roles", "owner", "created_by", "disabled"], fmt, title="principals"
    )


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Lowercase name, e.g. alice")],
    kind: Annotated[str, typer.Option(help="person or service")] = "person",
    role: Annotated[
        list[str] | None, typer.Option(help="Role to give (repeatable), e.g. ml_engineer")
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Owning person of a service account (default: you)")
    ] = None,
    token: Annotated[bool, typer.Option(help="Also issue a token and print it once")] = False,
    fmt: Format = "table",
) -> None:
    """Create a principal in your tenant. Its roles widen access: they are proposed, and
    take effect once a different person approves (`warden policy changes approve`)."""
    client = ApiClient()
    body = {"name": name, "kind": kind, "roles": role or [], "owner": owner}
    created = client.post("/v1/principals", json=body)
    show_one(created, ["name", "kind", "tenant", "roles", "owner"], fmt)
    _pending(created)
    if token:
        issued = client.post(f"/v1/principals/{name}/tokens", json={"label": "cli"})
        console.print(f"token (shown once): [bold]{issued['token']}[/]")
        _held(issued)


@app.command("token")
def token_(
    name: Annotated[str, typer.Argument(help="Principal to issue a token for")],
    ttl_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=3650,
            help="Expire after N days (default: 30 for people, 7 for services; above the"
            " kind's maximum, 90 or 30 by default, is refused)",
        ),
    ] = None,
    label: Annotated[str, typer.Option(help="A note to tell tokens apart")] = "",
) -> None:
    """Issue an API token; only its hash is stored, so it is shown once. A token for anyone
    but yourself or a service account you own works once a different person approves it."""
    issued = ApiClient().post(
        f"/v1/principals/{name}/tokens", json={"label": label, "ttl_days": ttl_days}
    )
    console.print(issued["token"])
    _held(issued)


def _held(issued: dict[str, Any]) -> None:
    """Say, on stderr (stdout carries the token alone), when a token awaits a second person."""
    if issued.get("change_id"):
        err_console.print(
            f"this token lets you act as {issued['principal']}: it works once a different"
            f" person approves `warden policy changes approve {issued['change_id']}`"
        )


@app.command("grant-role")
def grant_role(name: str, role: str) -> None:
    """Give a principal a role (a policy change, audited)."""
    _roles_changed(ApiClient().post(f"/v1/principals/{name}/roles", json={"role": role}))


@app.command("remove-role")
def remove_role(name: str, role: str) -> None:
    """Take a role away (a policy change, audited)."""
    _roles_changed(ApiClient().request("DELETE", f"/v1/principals/{name}/roles/{role}").json())


def _roles_changed(out: dict[str, Any]) -> None:
    """A principal's roles after a change, and what of it awaits review."""
    console.print(f"{out['name']}: {', '.join(out['roles']) or 'no roles'}")
    _pending(out)


def _pending(out: dict[str, Any]) -> None:
    if out.get("change_id"):
        console.print(
            f"{', '.join(out['pending_roles']) or 'role change'}: proposed, awaiting review"
            f" (change {out['change_id']})"
        )


TOKEN_COLUMNS = (
    "id",
    "label",
    "state",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "revoked_by",
)


@app.command("tokens")
def tokens(
    name: Annotated[
        str,
        typer.Argument(
            help="Principal whose tokens to list (yourself, or any of your tenant's as an admin)"
        ),
    ],
    fmt: Format = "table",
) -> None:
    """List a principal's tokens: id, label, state, created, expires, last used (to the hour),
    revoked; never the secrets."""
    out = ApiClient().get(f"/v1/principals/{_seg(name)}/tokens")
    show(
        out["tokens"],
        TOKEN_COLUMNS,
        fmt,
        title=f"tokens of {out['principal']}",
    )


@app.command("revoke-token")
def revoke_token(
    name: Annotated[str, typer.Argument(help="Principal the token belongs to")],
    token_id: Annotated[str, typer.Argument(help="Token id, from `warden principals tokens`")],
) -> None:
    """Revoke a token: refused from the very next request."""
    out = ApiClient().post(f"/v1/principals/{_seg(name)}/tokens/{_seg(token_id)}/revoke")
    console.print(f"token {out['id']} of {name}: {out['state']} (at {out['revoked_at']})")


@app.command()
def disable(name: Annotated[str, typer.Argument(help="Principal to disable")]) -> None:
    """Disable a principal: its tokens and its jobs' tokens are refused from the next request."""
    out = ApiClient().post(f"/v1/principals/{_seg(name)}/disable")
    console.print(f"{out['name']}: disabled")


@app.command()
def enable(name: Annotated[str, typer.Argument(help="Principal to enable again")]) -> None:
    """Enable a disabled principal; its unexpired, unrevoked tokens work again."""
    out = ApiClient().post(f"/v1/principals/{_seg(name)}/enable")
    console.print(f"{out['name']}: {'disabled' if out['disabled'] else 'enabled'}")


def _seg(value: str) -> str:
    """One URL path segment, whatever the argument holds."""
    return quote(value, safe="")
