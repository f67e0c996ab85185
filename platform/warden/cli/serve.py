"""`warden serve`: run the API."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from warden.config import get_settings, safe_url


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
    import uvicorn

    from warden.api.app import create_app
    from warden.api.primary import WORKERS_ENV
    from warden.cli.startup import refuse_unsafe_data_dir

    settings = get_settings()
    refuse_unsafe_data_dir(settings)
    typer.echo(
        f"warden API on http://{host}:{port} · database {safe_url(settings.resolved_database_url)}"
        + (f" · {workers} workers" if workers > 1 else "")
    )
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
        return
    # Each worker builds its own app (and platform) from the same environment.
    os.environ[WORKERS_ENV] = str(workers)
    # The workers share one listening socket, and by default the first to wake accepts a
    # whole burst of connections: keep-alive clients that connect together then all talk to
    # one process. libuv's single-accept mode (uvloop runs on libuv) yields after each accept,
    # so the others get their share (most of the time: a socket per worker with SO_REUSEPORT
    # would make it always).
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    uvicorn.run(
        "warden.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        workers=workers,
    )
