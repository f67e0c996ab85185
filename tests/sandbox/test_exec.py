"""`warden sandbox exec` through the API with the caller's token: only the launcher (or an
admin of the tenant) may, never into the ML segment; each one an audited session."""

from __future__ import annotations

import pytest

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER, Sandboxes
from tests.sandbox.test_cli import cli

pytestmark = pytest.mark.docker

SCRIPT = "echo out-line; echo err-line >&2; echo SECRET-ARG-$0 > /dev/null; exit 3"


def _exec(warden: WardenHarness, who: str, sandbox_id: str, command: list[str]) -> object:
    return warden.http.post(
        f"/v1/sandboxes/{sandbox_id}/exec", json={"command": command}, headers=warden.as_(who)
    )


def test_the_launcher_execs_through_the_api_and_each_session_is_audited(
    sandboxes: Sandboxes, live_warden: WardenHarness
) -> None:
    sandbox = sandboxes.start(DEVELOPER, ["sleep", "300"], segment="app-dev")
    result = cli(
        ["sandbox", "exec", sandbox["id"], "--", "sh", "-c", SCRIPT, "hidden"],
        live_warden.tokens[DEVELOPER],
    )
    assert result.exit_code == 3, result.output  # type: ignore[attr-defined]
    assert "out-line" in result.output and "err-line" in result.output  # type: ignore[attr-defined]

    (started,) = live_warden.audit_events(action="sandbox.exec", decision="allow")
    (ended,) = live_warden.audit_events(action="sandbox.exec.end")
    assert started["actor"] == DEVELOPER and started["details"]["sandbox"] == sandbox["id"]
    assert started["details"]["program"] == "sh" and started["details"]["args"] == 3
    assert ended["details"]["session"] == started["details"]["session"]
    assert ended["details"]["exit_code"] == 3
    assert ended["details"]["bytes_out"] == len("out-line\nerr-line\n")
    assert ended["details"]["wall_s"] >= 0
    # the command's contents are never recorded
    assert "SECRET-ARG" not in str(started) + str(ended)

    # Anyone else in the tenant is told there is no such sandbox; each attempt audited.
    for who in ("alice", "mallory"):
        refused = _exec(live_warden, who, sandbox["id"], ["true"])
        assert refused.status_code == 404, refused.text  # type: ignore[attr-defined]
    denied = live_warden.audit_events(action="sandbox.exec", decision="deny")
    assert sorted(e["actor"] for e in denied) == ["alice", "mallory"]
    # ... but the tenant's admin may, as with stop
    admin = _exec(live_warden, "admin", sandbox["id"], ["true"])
    assert admin.status_code == 200  # type: ignore[attr-defined]

    sandboxes.runtime.stop(sandbox["id"], None, "test over")
    after = _exec(live_warden, DEVELOPER, sandbox["id"], ["true"])
    assert after.status_code == 409  # type: ignore[attr-defined]


def test_no_exec_into_an_ml_sandbox(sandboxes: Sandboxes, warden: WardenHarness) -> None:
    sandbox = sandboxes.start("alice", ["sleep", "300"], segment="ml")
    refused = _exec(warden, "alice", sandbox["id"], ["env"])
    assert refused.status_code == 403, refused.text  # type: ignore[attr-defined]
    (denied,) = warden.audit_events(action="sandbox.exec", decision="deny")
    assert denied["actor"] == "alice" and "run jobs with data" in denied["reason"]
    assert warden.audit_events(action="sandbox.exec", decision="allow") == []


BUSY = "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done"


def test_session_records_count_wall_time_cpu_and_commands(
    sandboxes: Sandboxes, live_warden: WardenHarness
) -> None:
    busy = sandboxes.start(DEVELOPER, ["sh", "-c", BUSY], segment="app-dev")
    sandboxes.wait(busy["id"], timeout=300)
    idle = sandboxes.start(DEVELOPER, ["sleep", "300"], segment="app-dev")
    for _ in range(2):
        done = _exec(live_warden, DEVELOPER, idle["id"], ["true"])
        assert done.status_code == 200  # type: ignore[attr-defined]
    assert _exec(live_warden, "admin", idle["id"], ["true"]).status_code == 200  # type: ignore[attr-defined]
    sandboxes.runtime.stop(idle["id"], None, "test over")

    def listed(who: str, **params: object) -> dict[tuple[str, str], dict]:
        got = live_warden.http.get(
            "/v1/sandboxes/sessions", params=params, headers=live_warden.as_(who)
        )
        assert got.status_code == 200, got.text
        return {(r["sandbox"], r["person"]): r for r in got.json()["sessions"]}

    mine = listed(DEVELOPER)
    assert set(mine) == {(busy["id"], DEVELOPER), (idle["id"], DEVELOPER)}
    ran = mine[(busy["id"], DEVELOPER)]
    assert ran["sessions"] == 1 and ran["commands"] == 1
    assert ran["wall_s"] > 0 and ran["cpu_s"] > 0
    assert mine[(idle["id"], DEVELOPER)]["commands"] == 3  # the run and two execs
    # on one sandbox, everyone's; the tenant's admin sees everyone's with all=true
    assert set(listed(DEVELOPER, sandbox=idle["id"])) == {
        (idle["id"], DEVELOPER),
        (idle["id"], "admin"),
    }
    assert len(listed("admin", all=True)) == 3
    refused = live_warden.http.get(
        "/v1/sandboxes/sessions", params={"all": True}, headers=live_warden.as_(DEVELOPER)
    )
    assert refused.status_code == 403
    shown = cli(["sandbox", "sessions"], live_warden.tokens[DEVELOPER])
    assert shown.exit_code == 0 and busy["id"] in shown.output  # type: ignore[attr-defined]
