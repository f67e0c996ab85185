"""`warden access …` against a real API server: the whole lifecycle, tables and JSON."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from tests.access.conftest import Access
from warden.cli.main import app
from warden.config import get_settings

runner = CliRunner()


def cli(live: Any, who: str, *args: str) -> Any:
    get_settings.cache_clear()
    try:
        return runner.invoke(
            app, list(args), env={"WARDEN_TOKEN": live.tokens[who], "COLUMNS": "200"}
        )
    finally:
        get_settings.cache_clear()


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def as_json(result: Any) -> Any:
    return json.loads(ok(result).stdout)


def test_request_review_read_revoke_through_the_cli(live_warden: Any, access: Access) -> None:
    live = live_warden
    req = as_json(
        cli(
            live,
            "erin",
            "access",
            "request",
            "pins",
            "--purpose",
            "analytics",
            "--duration",
            "7d",
            "--justification",
            "weekly dashboards",
            "--columns",
            "pin_id,category",
            "--format",
            "json",
        )
    )
    assert (req["state"], req["quorum"]) == ("pending", 1)

    table = ok(cli(live, "sam", "access", "list", "--reviewable"))
    assert req["id"] in table.stdout and "0/1" in table.stdout
    mine = as_json(cli(live, "erin", "access", "list", "--mine", "--format", "json"))
    assert [r["id"] for r in mine] == [req["id"]]

    own = cli(live, "erin", "access", "approve", req["id"])
    assert own.exit_code == 2 and "Forbidden (403)" in own.output
    approved = ok(cli(live, "sam", "access", "approve", req["id"], "--comment", "fine"))
    assert "approved" in approved.stdout
    again = cli(live, "tess", "access", "approve", req["id"])
    assert again.exit_code == 2 and "Conflict (409)" in again.output

    shown = ok(cli(live, "erin", "access", "show", req["id"]))
    for word in ("history", "created", "approved", "weekly dashboards", "fine"):
        assert word in shown.stdout, word
    (grant,) = as_json(cli(live, "erin", "access", "grants", "--mine", "--format", "json"))
    assert grant["state"] == "active"

    read = ok(
        cli(
            live,
            "erin",
            "read",
            "pins",
            "--purpose",
            "analytics",
            "--columns",
            "pin_id",
            "--limit",
            "2",
        )
    )
    assert "2 rows" in read.output

    asked = cli(live, "sam", "access", "revoke", grant["id"], "--reason", "done")  # no --yes
    assert asked.exit_code == 1 and "Aborted" in asked.output
    assert access.grant("erin", grant["id"])["state"] == "active"
    revoked = ok(cli(live, "sam", "access", "revoke", grant["id"], "--reason", "done", "--yes"))
    assert "revoked" in revoked.stdout
    denied = cli(live, "erin", "read", "pins", "--purpose", "analytics", "--columns", "pin_id")
    assert denied.exit_code == 2
    history = as_json(cli(live, "erin", "access", "show", req["id"], "--format", "json"))["history"]
    assert history[-1]["event"] == "revoked" and history[-1]["actor"] == "sam"


def test_deny_cancel_break_glass_sign_off_and_terms(live_warden: Any, access: Access) -> None:
    live = live_warden
    access.allow_break_glass()

    def ask(who: str, dataset: str, purpose: str) -> str:
        r = as_json(
            cli(
                live,
                who,
                "access",
                "request",
                dataset,
                "--purpose",
                purpose,
                "--duration",
                "1d",
                "--justification",
                "x",
                "--format",
                "json",
            )
        )
        return str(r["id"])

    a = ask("alice", "users", "analytics")
    assert "denied" in ok(cli(live, "sam", "access", "deny", a, "--comment", "no")).stdout
    b = ask("alice", "users", "analytics")
    assert "cancelled" in ok(cli(live, "alice", "access", "cancel", b, "--reason", "oops")).stdout
    states = {
        r["id"]: r["state"]
        for r in as_json(cli(live, "alice", "access", "list", "--format", "json"))
    }
    assert states == {a: "denied", b: "cancelled"}

    def break_glass(who: str, reason: str, *more: str) -> Any:
        args = ("break-glass", "users", "--purpose", "analytics", "--reason", reason, "--yes")
        return cli(live, who, "access", *args, *more)

    refused = break_glass("mallory", "x")
    assert refused.exit_code == 2 and "Forbidden (403)" in refused.output
    bg = as_json(break_glass("alice", "incident 7", "--format", "json"))
    assert bg["needs_review"] is True
    flagged = ok(cli(live, "sam", "access", "grants", "--needs-review"))
    assert bg["id"] in flagged.stdout and "break-glass" in flagged.stdout
    own = cli(live, "alice", "access", "sign-off", bg["id"])
    assert own.exit_code == 2 and "Forbidden (403)" in own.output
    assert (
        "signed off"
        in ok(cli(live, "sam", "access", "sign-off", bg["id"], "--comment", "ok")).stdout
    )

    terms = as_json(
        cli(live, "admin", "access", "terms", "users", "--max-duration", "3d", "--format", "json")
    )
    assert (terms["quorum"], terms["max_duration"]) == (2, "3d")
    over = cli(
        live,
        "alice",
        "access",
        "request",
        "users",
        "--purpose",
        "analytics",
        "--duration",
        "4d",
        "--justification",
        "x",
    )
    assert over.exit_code == 2 and "over the maximum of 3d" in " ".join(over.output.split())


def test_access_help_lists_every_command() -> None:
    result = runner.invoke(app, ["access", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in (
        "request",
        "list",
        "show",
        "approve",
        "deny",
        "cancel",
        "grants",
        "revoke",
        "break-glass",
        "sign-off",
        "terms",
        "deliveries",
        "tidy",
    ):
        assert command in result.output, command


def test_a_reviewed_policy_change_through_the_cli(live_warden: Any, access: Access) -> None:
    live = live_warden
    rule = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    proposed = ok(cli(live, "admin", "policy", "propose", "--add", rule, "--reason", "pins work"))
    assert "proposed, awaiting review" in proposed.stdout
    (change,) = as_json(cli(live, "ada", "policy", "changes", "list", "--format", "json"))
    assert (change["state"], change["proposer"]) == ("pending", "admin")
    own = cli(live, "admin", "policy", "changes", "approve", change["id"])
    assert own.exit_code == 2 and "Forbidden (403)" in own.output
    shown = ok(cli(live, "ada", "policy", "changes", "show", change["id"]))
    assert "mallory" in shown.stdout and "widens" in shown.stdout
    done = ok(cli(live, "ada", "policy", "changes", "approve", change["id"], "--comment", "ok"))
    assert "applied" in done.stdout
    read = cli(live, "mallory", "read", "pins", "--purpose", "analytics", "--limit", "1")
    assert read.exit_code == 0, read.output

    narrowing = ok(cli(live, "admin", "policy", "propose", "--remove", rule))
    assert "1 removed" in narrowing.stdout

    created = ok(cli(live, "admin", "principals", "create", "bob", "--role", "ml_engineer"))
    assert "proposed, awaiting review" in created.stdout
    ok(cli(live, "admin", "access", "terms", "users", "--quorum", "3"))
    lowered = ok(cli(live, "admin", "access", "terms", "users", "--quorum", "2"))
    assert "proposed, awaiting review" in lowered.stdout
    floor = cli(live, "admin", "access", "terms", "users", "--quorum", "1")
    assert floor.exit_code == 2 and "floor of 2" in floor.output
    pending = as_json(
        cli(live, "ada", "policy", "changes", "list", "--state", "pending", "--format", "json")
    )
    assert len(pending) == 2


def test_one_object_prints_as_one_json_object(live_warden: Any, access: Access) -> None:
    """`--format json` of a command about one thing prints an object; lists stay lists."""
    live = live_warden
    access.allow_break_glass()
    ask = "access request pins --purpose analytics --duration 1d --justification x --format json"
    req = as_json(cli(live, "erin", *ask.split()))
    assert isinstance(req, dict) and req["state"] == "pending"
    singles = {
        "show": cli(live, "erin", "access", "show", req["id"], "--format", "json"),
        "approve": cli(live, "sam", "access", "approve", req["id"], "--format", "json"),
        "terms": cli(live, "admin", "access", "terms", "pins", "--format", "json"),
        "break-glass": cli(
            live,
            "alice",
            "access",
            "break-glass",
            "users",
            "--purpose",
            "analytics",
            "--reason",
            "incident",
            "--yes",
            "--format",
            "json",
        ),  # fmt: skip
        "data show": cli(live, "erin", "data", "show", "pins", "--format", "json"),
        "policy check": cli(
            live,
            "admin",
            "policy",
            "check",
            "erin",
            "pins",
            "--purpose",
            "analytics",
            "--format",
            "json",
        ),  # fmt: skip
        "principals create": cli(
            live, "admin", "principals", "create", "newbie", "--format", "json"
        ),
    }
    shapes = {name: type(as_json(result)).__name__ for name, result in singles.items()}
    assert shapes == dict.fromkeys(singles, "dict")
    approved = as_json(singles["approve"])
    grant = approved["grant_id"]
    revoked = as_json(cli(live, "sam", "access", "revoke", grant, "--reason", "x", "-y",
                          "--format", "json"))  # fmt: skip
    assert isinstance(revoked, dict) and revoked["state"] == "revoked"
    bg = as_json(singles["break-glass"])
    signed = as_json(cli(live, "sam", "access", "sign-off", bg["id"], "--format", "json"))
    assert isinstance(signed, dict) and signed["needs_review"] is False
    listed = as_json(cli(live, "erin", "access", "list", "--mine", "--format", "json"))
    assert isinstance(listed, list) and [r["id"] for r in listed] == [req["id"]]


def test_one_policy_change_prints_as_one_json_object(live_warden: Any, access: Access) -> None:
    """`policy propose`, `policy changes show` and a review of one change print an object
    (they printed a one-element list); `policy changes list` stays a list."""
    live = live_warden
    rule = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    proposed = as_json(cli(live, "admin", "policy", "propose", "--add", rule, "--reason", "x",
                           "--format", "json"))  # fmt: skip
    assert isinstance(proposed, dict) and proposed["state"] == "pending"
    shown = as_json(cli(live, "ada", "policy", "changes", "show", proposed["id"], "--format",
                        "json"))  # fmt: skip
    assert isinstance(shown, dict) and shown["id"] == proposed["id"]
    approved = as_json(cli(live, "ada", "policy", "changes", "approve", proposed["id"],
                           "--format", "json"))  # fmt: skip
    assert isinstance(approved, dict) and approved["state"] == "applied"
    narrowed = as_json(cli(live, "admin", "policy", "propose", "--remove", rule, "--format",
                           "json"))  # fmt: skip
    assert isinstance(narrowed, dict) and narrowed["removed"] == 1
    listed = as_json(cli(live, "ada", "policy", "changes", "list", "--format", "json"))
    assert isinstance(listed, list) and [c["id"] for c in listed] == [proposed["id"]]
