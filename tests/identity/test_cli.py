"""`warden principals tokens|revoke-token|disable|enable` and `warden tenants create|list`
against a real API server."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from warden.cli.main import app
from warden.config import get_settings

runner = CliRunner()


def cli(live, who: str, *args: str):  # type: ignore[no-untyped-def]
    get_settings.cache_clear()
    try:
        return runner.invoke(
            app, list(args), env={"WARDEN_TOKEN": live.tokens[who], "COLUMNS": "300"}
        )
    finally:
        get_settings.cache_clear()


def test_tokens_list_and_revoke(live_warden) -> None:  # type: ignore[no-untyped-def]
    issued = cli(live_warden, "alice", "principals", "token", "alice", "--label", "laptop")
    assert issued.exit_code == 0, issued.output
    laptop = issued.output.strip()
    listed = cli(live_warden, "alice", "principals", "tokens", "alice", "--format", "json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert {r["label"] for r in rows} == {"", "laptop"} and laptop not in listed.output
    token_id = next(r["id"] for r in rows if r["label"] == "laptop")
    table = cli(live_warden, "admin", "principals", "tokens", "alice")
    assert token_id in table.output and "live" in table.output
    done = cli(live_warden, "alice", "principals", "revoke-token", "alice", token_id)
    assert done.exit_code == 0, done.output
    assert "revoked" in done.output
    live_warden.tokens["laptop"] = laptop
    refused = cli(live_warden, "laptop", "principals", "tokens", "alice")
    assert refused.exit_code == 2 and "token revoked" in refused.output
    other = cli(live_warden, "alice", "principals", "revoke-token", "admin", token_id)
    assert other.exit_code == 2 and "Forbidden" in other.output
    # a path trick in the id stays one path segment: a clean 404
    trick = cli(live_warden, "alice", "principals", "revoke-token", "alice", "../../tenants")
    assert trick.exit_code == 2 and "NotFound" in trick.output


def test_lifetime_over_the_maximum_is_refused_by_the_cli(live_warden) -> None:  # type: ignore[no-untyped-def]
    days = str(live_warden.settings.token_person_max_days + 1)
    out = cli(live_warden, "alice", "principals", "token", "alice", "--ttl-days", days)
    assert out.exit_code == 2 and "at most" in out.output


def test_disable_and_enable(live_warden) -> None:  # type: ignore[no-untyped-def]
    out = cli(live_warden, "admin", "principals", "disable", "alice")
    assert out.exit_code == 0 and "alice: disabled" in out.output
    me = cli(live_warden, "alice", "principals", "tokens", "alice")
    assert me.exit_code == 2 and "principal disabled" in me.output
    listed = cli(live_warden, "admin", "principals", "list", "--format", "json")
    assert {p["name"]: p["disabled"] for p in json.loads(listed.output)}["alice"] is True
    last = cli(live_warden, "admin", "principals", "disable", "admin")
    assert last.exit_code == 2 and "last enabled admin" in " ".join(last.output.split())
    out = cli(live_warden, "admin", "principals", "enable", "alice")
    assert out.exit_code == 0 and "alice: enabled" in out.output
    assert cli(live_warden, "alice", "principals", "tokens", "alice").exit_code == 0


def test_tenants_create_and_list(live_warden) -> None:  # type: ignore[no-untyped-def]
    out = cli(live_warden, "admin", "tenants", "create", "globex", "--admin", "gadmin")
    assert out.exit_code == 0, out.output
    token = re.search(r"wdn_[A-Za-z0-9_-]+", out.output)
    assert token is not None
    live_warden.tokens["gadmin"] = token.group(0)
    listed = cli(live_warden, "admin", "tenants", "list", "--format", "json")
    assert [t["name"] for t in json.loads(listed.output)] == ["acme", "globex"]
    refused = cli(live_warden, "gadmin", "tenants", "create", "initech", "--admin", "iadmin")
    assert refused.exit_code == 2 and "Forbidden" in refused.output
    mine = cli(live_warden, "gadmin", "principals", "list", "--format", "json")
    assert [p["name"] for p in json.loads(mine.output)] == ["gadmin"]
