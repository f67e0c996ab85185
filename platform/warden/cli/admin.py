"""`warden init`: the first admin, saved to your config."""

from __future__ import annotations

from typing import Annotated

import typer

from warden.cli.client import console, fail, save_token
from warden.config import get_settings
from warden.errors import WardenError


def init(
    tenant: Annotated[str, typer.Option(help="The first tenant (team)")] = "acme",
    admin: Annotated[str, typer.Option(help="Name of the first admin")] = "admin",
    founder: Annotated[
        list[str] | None,
        typer.Option(help="A further founding admin (repeatable); its token is printed once"),
    ] = None,
) -> None:
    """Create the schema, the first tenant and admin, and seed policy; save the admin token.
    Widening changes need a second admin the first did not create: name founders here."""
    from warden.identity.bootstrap import initialize  # the database layer, for this command only

    settings = get_settings()
    try:
        done = initialize(settings, tenant=tenant, admin=admin, founders=founder or [])
    except WardenError as exc:
        fail(exc.detail)
    path = save_token(done.token, settings.url, done.admin)
    console.print(
        f"initialised tenant [bold]{done.tenant}[/] with admin [bold]{done.admin}[/] "
        f"(policy v{done.policy_version}); token saved to {path}"
    )
    for name, token in done.founders.items():
        console.print(f"founding admin [bold]{name}[/], token (shown once): {token}")
