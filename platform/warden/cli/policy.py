"""`warden policy …`: explain decisions, lint rule files, change rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from warden.cli.client import ApiClient, console, err_console, fail
from warden.cli.output import show
from warden.config import get_settings
from warden.policy.exposure import IdColumn, catalog_from_db
from warden.policy.lint import lint as lint_files

app = typer.Typer(help="Explain, lint and change Casbin policy.", no_args_is_help=True)
Format = Annotated[str, typer.Option("--format", help="table or json")]


@app.command()
def check(
    subject: Annotated[str, typer.Argument(help="Principal name, e.g. alice")],
    dataset: Annotated[str, typer.Argument(help="Dataset name")],
    purpose: Annotated[str, typer.Option(help="training, evaluation, inference or analytics")],
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns (default: all)")
    ] = None,
    fmt: Format = "table",
) -> None:
    """Explain a read decision column by column, naming the rule that decided each."""
    body = {
        "subject": subject,
        "dataset": dataset,
        "purpose": purpose,
        "columns": [c.strip() for c in columns.split(",")] if columns else None,
    }
    result = ApiClient().post("/v1/policy/check", json=body)
    if fmt == "json":
        show([result], [], "json")
        return
    console.print(
        f"[bold]{subject}[/] on [bold]{result['dataset']}[/] for [bold]{purpose}[/] · policy "
        f"v{result['policy_version']} · roles: {', '.join(result['roles']) or 'none'}"
    )
    if not result["purpose_allowed_by_dataset"]:
        console.print(f"[red]the dataset does not allow the purpose {purpose!r}[/]")
    show(result["columns"], ["column", "effect", "rule", "grant_id"], "table")
    if result["row_filters"]:
        show(result["row_filters"], ["column", "op", "value", "rule"], "table", title="row filters")


@app.command()
def lint(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Rule CSV files (default: policies/*.csv)")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: policies/model.conf)")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Check identifiers against the datasets registered in the database "
            "(default: the seeded taste graph's)",
        ),
    ] = False,
) -> None:
    """Check the model and rule files: each problem with file, line and reason. Applies nothing.

    Also refuses rules under which a subject could see one entity's identifiers raw in one
    place and masked in another (unless an `entity:NAME ... expose_mixed` exception says so).
    """
    settings = get_settings()
    policies = settings.policies_dir
    paths = files or sorted(policies.glob("*.csv"))
    catalog = _live_catalog() if live else None
    problems = lint_files(model or policies / "model.conf", paths, catalog)
    if not problems:
        console.print(f"ok: {len(paths)} rule file(s) and the model are valid")
        return
    for problem in problems:
        err_console.print(f"{problem.file}:{problem.line}: {problem.reason}")
    fail(f"{len(problems)} problem(s); nothing applied")


def _live_catalog() -> dict[str, list[IdColumn]]:
    from sqlalchemy import select

    from warden.db.session import make_engine
    from warden.identity.models import Tenant

    engine = make_engine(get_settings().resolved_database_url)
    try:
        with Session(engine) as db:
            return catalog_from_db(db, db.scalars(select(Tenant.name)).all())
    except SQLAlchemyError as exc:
        fail(f"cannot read the catalog: {exc.__class__.__name__}")
    finally:
        engine.dispose()


@app.command()
def rules(fmt: Format = "table") -> None:
    """List your tenant's rules in policy order."""
    result = ApiClient().get("/v1/policy/rules")
    show(
        [{"rule": r} for r in result["rules"]], ["rule"], fmt, title=f"policy v{result['version']}"
    )


@app.command()
def apply(
    file: Annotated[Path, typer.Argument(help="CSV of rules to add (linted first)")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log")] = "",
) -> None:
    """Add the rules of a CSV file (all or nothing; audited)."""
    policies = get_settings().policies_dir
    context = [p for p in sorted(policies.glob("*.csv")) if p.resolve() != file.resolve()]
    # Lint with the seed rules as context (roles are defined there), report this file only.
    problems = [
        p for p in lint_files(policies / "model.conf", [*context, file]) if p.file == str(file)
    ]
    if problems:
        for problem in problems:
            err_console.print(f"{problem.file}:{problem.line}: {problem.reason}")
        fail("nothing applied")
    lines = [
        line.strip()
        for line in file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    out = ApiClient().post("/v1/policy/rules", json={"add": lines, "reason": reason})
    console.print(f"policy v{out['version']}: {out['added']} rule(s) applied")
