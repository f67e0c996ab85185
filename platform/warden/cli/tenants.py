"""`warden tenants …`: tenants of the installation (platform admins only)."""

from __future__ import annotations

from typing import Annotated

import typer

from warden.cli.client import ApiClient, console
from warden.cli.output import Format, show

app = typer.Typer(
    help="Create and list tenants (platform admins: admins of the tenant `warden init` made).",
    no_args_is_help=True,
)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Lowercase tenant name, e.g. globex")],
    admin: Annotated[str, typer.Option("--admin", help="Name of the tenant's first admin")],
    founder: Annotated[
        str | None,
        typer.Option(
            help="A second founding admin: widening changes need a different person's approval,"
            " so without one nobody in the tenant can approve any"
        ),
    ] = None,
) -> None:
    """Create a tenant, its first admin (and a founding admin) and its seed role rules; print
    their tokens once."""
    body = {"name": name, "admin": admin, "founder": founder}
    out = ApiClient().post("/v1/tenants", json=body)
    console.print(
        f"created tenant [bold]{out['tenant']}[/] with admin [bold]{out['admin']}[/]"
        f" (policy v{out['policy_version']})"
    )
    console.print(f"token of {out['admin']} (shown once): [bold]{out['token']}[/]")
    for person, token in out.get("founders", {}).items():
        console.print(f"token of founding admin {person} (shown once): [bold]{token}[/]")
    if not founder:
        console.print(
            "note: with one admin nobody in the tenant can approve a widening change;"
            " `--founder NAME` names a second"
        )


@app.command("list")
def list_(fmt: Format = "table") -> None:
    """List the installation's tenants."""
    show(ApiClient().get("/v1/tenants")["tenants"], ["name", "installation", "created_at"], fmt)
