"""`warden sandbox run | list | logs | stop` against a live API, with real Docker."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER, Sandboxes

pytestmark = pytest.mark.docker

READ = (
    "from warden.sdk import Client; "
    "print(Client().read('pins', purpose='training', columns=['pin_id'], limit=3))"
)


def cli(args: list[str], token: str) -> object:
    from warden.cli.main import app
    from warden.config import get_settings

    get_settings.cache_clear()
    return CliRunner().invoke(app, args, env={"WARDEN_TOKEN": token})


def test_run_prints_the_rows_and_exits_with_the_sandbox_code(
    sandboxes: Sandboxes, live_warden: WardenHarness
) -> None:
    args = ["sandbox", "run", "--segment", "ml", "--dataset", "pins", "--purpose", "training"]
    result = cli([*args, "--", "python", "-c", READ], live_warden.tokens["alice"])
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "pin_id" in result.output and "shape: (3, 1)" in result.output  # type: ignore[attr-defined]
    failed = cli(["sandbox", "run", "--", "sh", "-c", "exit 7"], live_warden.tokens["alice"])
    assert failed.exit_code == 7  # type: ignore[attr-defined]
    listed = cli(["sandbox", "list", "--format", "json"], live_warden.tokens["alice"])
    assert listed.output.count('"segment": "ml"') == 2  # type: ignore[attr-defined]


def test_the_same_code_in_app_dev_reads_nothing(
    sandboxes: Sandboxes, live_warden: WardenHarness
) -> None:
    result = cli(
        ["sandbox", "run", "--segment", "app-dev", "--", "python", "-c", READ],
        live_warden.tokens[DEVELOPER],
    )
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    assert "ConnectError" in result.output  # type: ignore[attr-defined]
    refused = cli(
        [
            "sandbox",
            "run",
            "--segment",
            "app-dev",
            "--dataset",
            "pins",
            "--purpose",
            "training",
            "--",
            "true",
        ],
        live_warden.tokens[DEVELOPER],
    )
    assert refused.exit_code == 2 and "never gets data" in refused.output  # type: ignore[attr-defined]


def test_timeout_exit_code_and_stop(sandboxes: Sandboxes, live_warden: WardenHarness) -> None:
    timed = cli(
        ["sandbox", "run", "--timeout", "1", "--", "sleep", "30"], live_warden.tokens["alice"]
    )
    assert timed.exit_code == 124, timed.output  # type: ignore[attr-defined]
    started = cli(["sandbox", "run", "-d", "--", "sleep", "30"], live_warden.tokens["alice"])
    sandbox_id = started.output.strip().splitlines()[-1]  # type: ignore[attr-defined]
    stopped = cli(["sandbox", "stop", sandbox_id], live_warden.tokens["alice"])
    assert f"{sandbox_id}: stopped" in stopped.output  # type: ignore[attr-defined]
    logs = cli(["sandbox", "logs", sandbox_id], live_warden.tokens["alice"])
    assert logs.exit_code == 0  # type: ignore[attr-defined]
