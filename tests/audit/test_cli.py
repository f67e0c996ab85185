"""`warden audit query|verify` against the real audit routes (in-process HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from warden.api.errors import install_error_handlers
from warden.api.routes.audit import router
from warden.audit.service import AuditRecord, record
from warden.cli import audit as audit_cli
from warden.cli.client import ApiClient, console
from warden.config import REPO_ROOT, Settings
from warden.core.platform import Platform
from warden.db.session import unit_of_work
from warden.identity.service import create_principal, get_or_create_tenant, issue_token
from warden.policy.service import PolicyService

runner = CliRunner()


@pytest.fixture
def cli(
    engine: Engine,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> list[dict[str, Any]]:
    """Logged in as an acme auditor; returns the GET params the CLI sent, page by page."""
    with unit_of_work(sessions) as db:
        acme = get_or_create_tenant(db, "acme")
        acme.installation = True  # as `warden init` makes it: its auditors see the whole chain
        principal = create_principal(db, "audrey", "person", acme)
        token = issue_token(db, principal)
    policy = PolicyService(engine)
    policy.seed_from_csv([REPO_ROOT / "policies" / "seed.csv"])
    policy.add_rules([("g", ("audrey", "role:auditor", "acme"))])
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.warden = Platform(
        settings=Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config"),
        engine=engine,
        sessions=sessions,
        policy=policy,
        mask_key=b"test-mask-key",
    )
    for i in range(7):
        record(
            sessions,
            AuditRecord(
                action="read",
                decision="deny" if i == 2 else "allow",
                actor=f"user{i}",
                actor_kind="person",
                tenant="acme",
                dataset="engagements",
                dataset_version="sha256:" + "c" * 64,
                purpose="training",
                columns=["pin_id", "user_id"],
                masked_columns=["user_id"],
                rows=i,
            ),
        )
    sent: list[dict[str, Any]] = []

    def make_client() -> ApiClient:
        api = ApiClient(url="http://testserver", token=token)
        http = TestClient(app, headers={"authorization": f"Bearer {token}"})
        original = http.request

        def spy(method: str, url: str, **kwargs: Any) -> Any:
            if method == "GET":
                sent.append(dict(kwargs.get("params") or {}))
            return original(method, url, **kwargs)

        http.request = spy  # type: ignore[method-assign]
        api.http = http
        return api

    monkeypatch.setattr(audit_cli, "client", make_client)
    return sent


def test_query_prints_a_table_newest_first(
    cli: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "_width", 220)  # undone to None: the width follows COLUMNS again
    result = runner.invoke(audit_cli.app, ["query", "--dataset", "engagements"])
    assert result.exit_code == 0, result.output
    assert result.output.index("user6") < result.output.index("user0")
    assert "user_id*" in result.output and "engagements" in result.output


def test_query_json_follows_cursors_up_to_the_limit(
    cli: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_cli, "PAGE_MAX", 3)
    result = runner.invoke(
        audit_cli.app, ["query", "--actor", "user6", "--limit", "1", "--format", "json"]
    )
    assert [e["actor"] for e in json.loads(result.output)] == ["user6"]

    cli.clear()
    result = runner.invoke(
        audit_cli.app, ["query", "--action", "read", "--limit", "7", "--format", "json"]
    )
    events = json.loads(result.output)
    assert [e["actor"] for e in events] == [f"user{i}" for i in range(6, -1, -1)]
    assert [p["limit"] for p in cli] == [3, 3, 1]
    assert "cursor" not in cli[0] and cli[1]["cursor"] and cli[2]["cursor"] != cli[1]["cursor"]


def test_query_passes_filters_and_parses_times(cli: list[dict[str, Any]]) -> None:
    result = runner.invoke(
        audit_cli.app,
        [
            "query",
            "--decision",
            "deny",
            "--since",
            "2h",
            "--until",
            "2999-01-01",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert [e["actor"] for e in json.loads(result.output)] == ["user2"]
    assert cli[0]["decision"] == "deny" and cli[0]["until"] == "2999-01-01T00:00:00+00:00"


def test_a_bad_time_is_refused_before_any_request(cli: list[dict[str, Any]]) -> None:
    result = runner.invoke(audit_cli.app, ["query", "--since", "last tuesday"])
    assert result.exit_code == 1 and cli == []


def test_verify_says_the_chain_is_intact(cli: list[dict[str, Any]]) -> None:
    result = runner.invoke(audit_cli.app, ["verify"])
    assert result.exit_code == 0
    assert "chain intact: 7 events" in result.output


def test_verify_names_the_broken_event_and_fails(cli: list[dict[str, Any]], engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET rows = 999 WHERE seq = 5"))
        event_id = conn.execute(text("SELECT id FROM audit_event WHERE seq = 5")).scalar_one()
    result = runner.invoke(audit_cli.app, ["verify"])
    assert result.exit_code == 1
    assert "seq 5" in result.output and event_id in result.output


def test_checkpoint_then_verify_reports_what_it_checked(
    make_platform_admin: Any,
    cli: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(console, "_width", 220)
    refused = runner.invoke(audit_cli.app, ["checkpoint"])
    assert refused.exit_code == 2 and "platform admins" in refused.output

    state = audit_cli.client().http.app.state.warden  # type: ignore[attr-defined]
    make_platform_admin(state.sessions, state.policy, "audrey")
    written = runner.invoke(audit_cli.app, ["checkpoint"])
    assert written.exit_code == 0, written.output
    # 7 reads and the refused checkpoint call: the checkpoint covers seq 8, its record is 9
    assert "checkpoint #1 at seq 8" in written.output and "event 9" in written.output

    again = runner.invoke(audit_cli.app, ["checkpoint"])
    assert again.exit_code == 0 and "no checkpoint written" in again.output

    checked = runner.invoke(audit_cli.app, ["verify"])
    assert checked.exit_code == 0, checked.output
    assert "checked 10 events" in checked.output  # and the skipped call, audited too
    assert "1 signed checkpoint(s)" in checked.output and "newest: #1 at seq 8" in checked.output
    assert "unprotected tail: 2 event(s)" in checked.output

    path = tmp_path / "data" / "audit-checkpoints" / "checkpoints.jsonl"
    path.write_text(path.read_text().replace('"seq":8', '"seq":7'))
    broken = runner.invoke(audit_cli.app, ["verify"])
    assert broken.exit_code == 1
    assert "checkpoint_forged" in broken.output and "signature" in broken.output
