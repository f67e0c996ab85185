"""`warden data …`: seed the taste graph; list what you may read."""

from __future__ import annotations

from typing import Annotated

import typer

from warden.cli.client import ApiClient, console, fail
from warden.cli.output import show
from warden.config import get_settings
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.errors import WardenError

app = typer.Typer(help="Seed and list governed datasets.", no_args_is_help=True)


@app.command()
def seed(
    scale: Annotated[
        str, typer.Option(help="small (~80k engagements), medium (≥1M), large (≥10M)")
    ] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files")] = 0,
    tenant: Annotated[str, typer.Option(help="Tenant that owns the datasets")] = "acme",
    owner: Annotated[str, typer.Option(help="Owner principal")] = "admin",
) -> None:
    """Generate the taste graph (generated graph, real digit images) and register its datasets.

    Runs against the database directly (an operator command, like `warden init`).
    """
    from warden.catalog.seeding import seed_taste_graph  # heavy imports only when seeding

    if scale not in ("small", "medium", "large"):
        fail("--scale must be small, medium or large")
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        with (
            console.status(f"generating the {scale} taste graph…") as status,
            unit_of_work(make_sessionmaker(engine)) as db,
        ):
            rows = seed_taste_graph(
                db,
                datasets_dir=settings.datasets_dir,
                tenant_name=tenant,
                owner_name=owner,
                scale=scale,
                seed=seed,
                progress=lambda msg: status.update(msg),
            )
    except WardenError as exc:
        fail(exc.detail)
    finally:
        engine.dispose()
    show(
        rows, ["dataset", "rows", "classification", "version"], "table", title="registered datasets"
    )
    console.print(
        "note: the taste graph is generated; the pin images are real (scikit-learn digits)"
    )


@app.command("list")
def list_(fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Datasets you may read in some way."""
    rows = ApiClient().get("/v1/datasets")["datasets"]
    show(rows, ["name", "classification", "rows", "allowed_purposes", "version"], fmt)


@app.command("show")
def show_(
    name: str, fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table"
) -> None:
    """One dataset's schema and column classes."""
    ds = ApiClient().get(f"/v1/datasets/{name}")
    if fmt == "json":
        show([ds], [], "json")
        return
    console.print(
        f"[bold]{ds['name']}[/] {ds['version']} · {ds['rows']} rows · owner {ds['owner']}"
    )
    show(ds["columns"], ["name", "dtype", "classification"], "table")
