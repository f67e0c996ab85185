"""`warden serve`: run the API."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from warden.config import get_settings, safe_url

WORKER_HEALTHCHECK_S = 60


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8765,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes (uvicorn workers), each with its own policy snapshot; one of"
            " them runs the job and access workers",
        ),
    ] = 1,
) -> None:
    """Run the Warden API (the CLI finds it through WARDEN_URL)."""
    # Here, not at the top: every other command starts without the API and the database.
    from warden.cli.startup import refuse_unsafe_data_dir

    settings = get_settings()
    refuse_unsafe_data_dir(settings)
    # After the checks: a refusal says so without importing the API first (about 1.4 s).
    import uvicorn

    from warden.api.app import create_app
    from warden.api.primary import WORKERS_ENV
    from warden.core.http_protocol import HttpProtocol

    typer.echo(
        f"warden API on http://{host}:{port} · database {safe_url(settings.resolved_database_url)}"
        + (f" · {workers} workers" if workers > 1 else "")
    )
    # one process or many, each listens alike: same address, log level and HTTP protocol
    listen: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "http": HttpProtocol,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **listen)
        return
    _warn_of_connection_shortfall(settings.resolved_database_url, workers)
    # Each worker builds its own app (and platform) from the same environment, and listens on a
    # socket of its own (SO_REUSEPORT): the kernel, not whichever worker wakes first, decides
    # which process a new connection goes to.
    from warden.cli.serve_workers import PortSharingWorkers

    os.environ[WORKERS_ENV] = str(workers)
    # A worker answers the supervisor's ping only once its interpreter has started and
    # imported `warden.cli.main` again (spawn): on a loaded machine that passed uvicorn's 5 s,
    # and each worker was killed as hung and restarted, over and over (seen at load 25).
    config = uvicorn.Config(
        "warden.api.app:create_app",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        **listen,
    )
    try:
        supervisor = PortSharingWorkers(config)
    except OSError as exc:  # the port is taken, or the interface is not ours
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    supervisor.run()


def _warn_of_connection_shortfall(url: str, workers: int) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from warden.cli.client import err_console
    from warden.db.session import connection_shortfall, make_engine

    engine = make_engine(url)
    try:
        shortfall = connection_shortfall(engine, workers)
    except SQLAlchemyError:  # not reachable yet: /readyz says so once serving; no check
        return
    finally:
        engine.dispose()
    if shortfall:
        err_console.print(f"[bold yellow]warning:[/] {shortfall}")
