"""The `warden` command: small Typer apps, one per command group."""

from __future__ import annotations

import typer

from warden.cli import (
    access,
    audit,
    data,
    demo,
    experiments,
    jobs,
    models,
    policy,
    principals,
    sandbox,
    tenants,
    workspace,
)
from warden.cli.admin import init
from warden.cli.read import read
from warden.cli.serve import serve
from warden.core.filesystem import restrict_umask

app = typer.Typer(
    name="warden",
    help="Governed data access and sandboxes for ML teams.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@app.callback()
def _private_files() -> None:
    """Governed data access and sandboxes for ML teams."""
    # Everything a warden process writes (database, datasets, keys, artifacts) is 0600 in 0700.
    restrict_umask()


app.command()(init)
app.command()(serve)
app.command()(read)
app.command(name="demo")(demo.run_demo)
app.command(name="worker")(jobs.worker)
app.add_typer(principals.app, name="principals")
app.add_typer(tenants.app, name="tenants")
app.add_typer(data.app, name="data")
app.add_typer(policy.app, name="policy")
app.add_typer(audit.app, name="audit")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(workspace.app, name="workspace")
app.add_typer(access.app, name="access")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.add_typer(experiments.app, name="experiments")

if __name__ == "__main__":
    app()
