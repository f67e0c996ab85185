"""`warden serve`: run the API."""

from __future__ import annotations

from typing import Annotated

import typer

from warden.cli.client import fail
from warden.config import Settings, get_settings
from warden.core.filesystem import UnsafeDataDir, check_data_at_rest, restrict_umask


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8765,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the Warden API (the CLI finds it through WARDEN_URL)."""
    import uvicorn  # here, not at the top: every other command starts without the API

    from warden.api.app import create_app

    settings = get_settings()
    refuse_unsafe_data_dir(settings)
    typer.echo(
        f"warden API on http://{host}:{port} · database {_safe(settings.resolved_database_url)}"
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


def _safe(url: str) -> str:
    """Never print a password from a database URL."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def refuse_unsafe_data_dir(settings: Settings) -> None:
    """Private umask, then exit with the fix when others can reach the data folder."""
    restrict_umask()
    try:
        check_data_at_rest(settings)
    except UnsafeDataDir as exc:
        fail(exc.detail)
