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
) -> None:
    """Create the schema, the first tenant and admin, and seed policy; save the admin token."""
    from warden.identity.bootstrap import initialize  # the database layer, for this command only

    settings = get_settings()
    try:
        done = initialize(settings, tenant=tenant, admin=admin)
    except WardenError as exc:
        fail(exc.detail)
    path = save_token(done.token, settings.url, done.admin)
    console.print(
        f"initialised tenant [bold]{done.tenant}[/] with admin [bold]{done.admin}[/] "
        f"(policy v{done.policy_version}); token saved to {path}"
    )
