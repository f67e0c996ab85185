"""The `warden` CLI against a real API server: reads, policy, principals, errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from tests.access.conftest import bootstrap_people
from typer.testing import CliRunner

from warden.cli.main import app
from warden.config import get_settings

runner = CliRunner()


def warden_cli(live, who: str, *args: str):  # type: ignore[no-untyped-def]
    """One CLI invocation as `who` (settings are cached per process, so reset them)."""
    get_settings.cache_clear()
    try:
        return runner.invoke(app, list(args), env={"WARDEN_TOKEN": live.tokens[who]})
    finally:
        get_settings.cache_clear()


def test_read_prints_a_table_with_masked_column(live_warden) -> None:  # type: ignore[no-untyped-def]
    result = warden_cli(
        live_warden,
        "alice",
        "read",
        "engagements",
        "--purpose",
        "training",
        "--columns",
        "user_id,pin_id",
        "--limit",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert "user_id (masked)" in result.output
    assert "3 rows" in result.output


def test_read_writes_csv_and_parquet(live_warden, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pins.parquet"
    result = warden_cli(
        live_warden,
        "alice",
        "read",
        "pins",
        "--purpose",
        "training",
        "--columns",
        "pin_id,category",
        "--where",
        "pin_id:in:[1,2,3]",
        "--format",
        "parquet",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert sorted(pl.read_parquet(out)["pin_id"].to_list()) == [1, 2, 3]
    csv = warden_cli(
        live_warden,
        "alice",
        "read",
        "pins",
        "--purpose",
        "training",
        "--columns",
        "pin_id",
        "--where",
        "pin_id:eq:7",
        "--format",
        "csv",
    )
    assert csv.exit_code == 0
    assert csv.stdout.splitlines()[:2] == ["pin_id", "7"]


def test_read_refusals_exit_nonzero_with_the_api_error(live_warden) -> None:  # type: ignore[no-untyped-def]
    denied = warden_cli(live_warden, "mallory", "read", "engagements", "--purpose", "training")
    assert denied.exit_code == 2
    assert "NotFound (404)" in denied.output
    bad = warden_cli(
        live_warden, "alice", "read", "pins", "--purpose", "training", "--where", "pin_id"
    )
    assert bad.exit_code == 1
    assert "COLUMN:OP" in bad.output


def test_policy_check_names_the_deciding_rule(live_warden) -> None:  # type: ignore[no-untyped-def]
    result = warden_cli(
        live_warden,
        "admin",
        "policy",
        "check",
        "alice",
        "engagements",
        "--purpose",
        "training",
        "--columns",
        "user_id,pin_id",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    effects = {c["column"]: (c["effect"], c["rule"]) for c in decision["columns"]}
    assert effects["user_id"][0] == "mask"
    assert effects["pin_id"] == (
        "allow",
        "p, role:ml_engineer, acme, engagements, pin_id, training, read, allow, , ",
    )


def test_policy_lint_rejects_a_bad_rule_with_line_and_reason(live_warden, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "p, role:admin, acme, sys:*, *, *, manage, allow, ,\n"
        "p, x, acme, pins, *, training, fly, allow, ,\n"
    )
    result = warden_cli(live_warden, "admin", "policy", "lint", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:2:" in result.output
    before = warden_cli(live_warden, "admin", "policy", "rules", "--format", "json").stdout
    applied = warden_cli(live_warden, "admin", "policy", "apply", str(bad))
    assert applied.exit_code == 1
    assert warden_cli(live_warden, "admin", "policy", "rules", "--format", "json").stdout == before


def test_principals_create_and_list(live_warden) -> None:  # type: ignore[no-untyped-def]
    created = warden_cli(
        live_warden, "admin", "principals", "create", "bob", "--role", "ml_engineer"
    )
    assert created.exit_code == 0, created.output
    assert "proposed, awaiting review" in created.output  # a role widens: a second admin
    bootstrap_people(live_warden, {"ada": ["admin"]})
    change = " ".join(created.output.split()).split("(change ")[1].split(")")[0]
    approved = warden_cli(live_warden, "ada", "policy", "changes", "approve", change)
    assert approved.exit_code == 0, approved.output
    listed = warden_cli(live_warden, "admin", "principals", "list", "--format", "json")
    rows = {p["name"]: p for p in json.loads(listed.stdout)}
    assert rows["bob"]["roles"] == ["role:ml_engineer"]
    refused = warden_cli(live_warden, "alice", "principals", "create", "eve")
    assert refused.exit_code == 2 and "Forbidden (403)" in refused.output


def test_audit_verify_reports_an_intact_chain(live_warden) -> None:  # type: ignore[no-untyped-def]
    warden_cli(live_warden, "alice", "read", "pins", "--purpose", "training", "--limit", "1")
    result = warden_cli(live_warden, "admin", "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "chain intact" in result.output


def test_cli_without_a_server_says_how_to_fix_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WARDEN_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    result = runner.invoke(app, ["data", "list"], env={"WARDEN_TOKEN": "wdn_x"})
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert "is `warden serve` running?" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args", [["--help"], ["read", "--help"], ["policy", "--help"], ["audit", "--help"]]
)
def test_help_is_helpful(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Usage" in result.output
