"""`warden serve --workers N`: the workers share one listening socket, and keep-alive
clients that connect together must still be spread across them (a burst of connections
once went to whichever worker woke first, and a second worker sat idle)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

import warden.cli.startup
from warden.api.primary import WORKERS_ENV
from warden.cli.main import app


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_with_workers_hands_connections_out_in_turn(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("UV_TCP_SINGLE_ACCEPT", WORKERS_ENV):  # restored as they were afterwards
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    seen: dict[str, Any] = {}

    def run(*args: Any, **kwargs: Any) -> None:  # instead of serving: what it was given
        seen.update(kwargs, single_accept=os.environ.get("UV_TCP_SINGLE_ACCEPT"))

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr(warden.cli.startup, "refuse_unsafe_data_dir", lambda settings: None)
    done = CliRunner().invoke(app, ["serve", "--port", "1", "--workers", str(workers)])
    assert done.exit_code == 0, done.output
    if workers == 1:
        assert seen["single_accept"] is None and "workers" not in seen
    else:
        # libuv (under uvloop) accepts one connection per wake-up: workers take turns
        assert seen["workers"] == 2 and seen["single_accept"] == "1"
