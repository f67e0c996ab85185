"""A database writer cannot change the rules: the rule set is sealed with the audit chain key
(which lives outside the database), so a rule row or change-log row written past Warden,
or an old seal replayed, fails closed (every decision denies) instead of taking effect,
until an operator repairs it with `warden policy seal` (audited). Found by a red-team review:
a `casbin_rule` row inserted in SQL gave `mallory` raw `users`."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from warden.policy import store
from warden.policy.seal import SealBroken
from warden.policy.service import PolicyUnavailable

MALLORY_RAW = (
    "INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5, v6, v7, v8) VALUES"
    " ('p', 'mallory', 'acme', 'users', '*', 'training', 'read', 'allow', '', '')"
)
BUMP = "UPDATE policy_state SET version = version + 1"


def _sql(warden: Any, *statements: str) -> None:
    with warden.state.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _reads(warden: Any) -> tuple[int, int]:
    mallory = warden.read("mallory", "users", purpose="training").status_code
    alice = warden.read("alice", "users", purpose="training").status_code
    return mallory, alice


def test_a_rule_written_in_sql_is_refused_and_everything_fails_closed(
    warden: Any, operator_cli: Any
) -> None:
    assert _reads(warden) == (404, 200)
    _sql(warden, MALLORY_RAW, BUMP)
    assert _reads(warden) == (503, 503)  # never enforced; nothing decided on a broken set
    with warden.state.sessions() as db, pytest.raises(SealBroken):
        store.load_rules(db)
    # The operator looks: the seal names the row written past Warden, and seals nothing.
    shown = operator_cli("policy", "seal")
    assert shown.exit_code != 0 and "nothing sealed" in shown.output
    assert "added past Warden: #" in shown.output
    assert "p, mallory, acme, users, *, training, read, allow" in shown.output
    assert _reads(warden) == (503, 503)
    # Removing it gives back the sealed rules: nothing new is in force, audited.
    done = operator_cli("policy", "seal", "--remove-added", "--actor", "ops", "--reason", "checked")
    assert done.exit_code == 0, done.output
    event = warden.audit_events(action="policy.restored")[-1]
    assert event["actor"] == "ops" and "past Warden" in event["details"]["was"]
    assert "mallory" in event["details"]["removed"][0]
    assert _reads(warden) == (404, 200)
    again = operator_cli("policy", "seal")
    assert again.exit_code == 0 and "match their seal" in again.output


def test_a_reseal_seals_only_the_rules_the_operator_was_shown(
    warden: Any, operator_cli: Any
) -> None:
    """Red team 21: `warden policy seal` blessed whatever was stored, so an insider who broke
    the seal (a rule deleted in SQL: nothing the seal can name) and slipped mallory's rule in
    once the operator had looked got it sealed with the rest. A reseal now names the digest of
    the rules shown; a rule written after that changes it, and nothing is sealed."""
    _sql(warden, "DELETE FROM casbin_rule WHERE ptype = 'g' AND v0 = 'erin'", BUMP)
    assert _reads(warden) == (503, 503)
    shown = operator_cli("policy", "seal")
    assert shown.exit_code != 0 and "stored rules (" in shown.output
    named = operator_cli("policy", "seal", "--remove-added")
    assert named.exit_code != 0 and "names no single row" in named.output
    # erin's role, applied at bootstrap and deleted past Warden: put back before sealing
    assert "g, erin, role:analyst_eu, acme  (added by" in shown.output
    assert operator_cli("policy", "seal", "--restore-logged").exit_code == 0
    shown = operator_cli("policy", "seal")
    assert "contradict" not in shown.output, shown.output
    digest = shown.output.split("digest: ")[1].split()[0]
    _sql(warden, MALLORY_RAW)  # after the operator looked
    stale = operator_cli("policy", "seal", "--accept", digest)
    assert stale.exit_code != 0 and "nothing sealed" in stale.output
    assert _reads(warden) == (503, 503)
    shown = operator_cli("policy", "seal")
    assert "p, mallory, acme, users" in shown.output  # now shown, for the operator to see
    digest = shown.output.split("digest: ")[1].split()[0]
    done = operator_cli("policy", "seal", "--accept", digest, "--actor", "ops")
    assert done.exit_code == 0, done.output
    event = warden.audit_events(action="policy.sealed")[-1]
    assert event["actor"] == "ops" and event["details"]["digest"] == digest
    assert _reads(warden) == (200, 200)  # what the operator chose to seal, seen and named


@pytest.mark.parametrize("change", ["delete a rule", "edit a rule", "duplicate a rule"])
def test_any_other_rule_row_change_is_refused(warden: Any, change: str) -> None:
    assert _reads(warden)[1] == 200
    statement = {
        "delete a rule": "DELETE FROM casbin_rule WHERE id = (SELECT MIN(id) FROM casbin_rule)",
        "edit a rule": "UPDATE casbin_rule SET v3 = '*'"
        " WHERE ptype = 'p' AND v0 = 'role:ml_engineer'",
        "duplicate a rule": "INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5, v6, v7, v8)"
        " SELECT ptype, v0, v1, v2, v3, v4, v5, v6, v7, v8 FROM casbin_rule"
        " WHERE id = (SELECT MIN(id) FROM casbin_rule)",
    }[change]
    _sql(warden, statement)  # the version left alone: the next full load finds it
    with pytest.raises(PolicyUnavailable, match="do not match the policy seal"):
        warden.state.policy.reload()
    _sql(warden, BUMP)
    assert _reads(warden) == (503, 503)


def test_a_forged_change_log_row_is_never_replayed(warden: Any) -> None:
    """Replicas catch up from the change log; a log row written past Warden (with the version
    bumped, the rules table untouched) does not move the seal, so it is not applied: the
    replica reloads the (intact) table instead."""
    assert _reads(warden) == (404, 200)
    policy = warden.state.policy
    _sql(
        warden,
        BUMP,
        "INSERT INTO policy_change (version, op, ptype, v0, v1, v2, v3, v4, v5, v6, v7, v8)"
        " SELECT version, 'add', 'p', 'mallory', 'acme', 'users', '*', 'training', 'read',"
        " 'allow', '', '' FROM policy_state",
    )
    replays = policy.replays
    assert _reads(warden)[0] != 200
    assert policy.replays == replays  # the forged delta was not replayed


def test_an_old_seal_replayed_with_a_newer_version_is_refused(warden: Any) -> None:
    """Save the state while a rule exists, remove the rule (reviewed), then write the rule
    back with the saved sum and seal under a newer version: the seal binds the version."""
    rule = ("p", ("mallory", "acme", "pins", "*", "training", "read", "allow", "", ""))
    warden.state.policy.add_rules([rule])
    assert warden.read("mallory", "pins", purpose="training").status_code == 200
    with warden.state.engine.connect() as conn:
        saved = conn.execute(text("SELECT version, rules_sum, seal FROM policy_state")).one()
    warden.state.policy.remove_rules([rule])
    assert warden.read("mallory", "pins", purpose="training").status_code != 200
    with warden.state.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5, v6, v7, v8) VALUES"
                " ('p', 'mallory', 'acme', 'pins', '*', 'training', 'read', 'allow', '', '')"
            )
        )
        conn.execute(
            text("UPDATE policy_state SET version = version + 1, rules_sum = :s, seal = :seal"),
            {"s": saved.rules_sum, "seal": saved.seal},
        )
    assert warden.read("mallory", "pins", purpose="training").status_code == 503
    # and with the old version too: the process has seen a newer one and keeps it
    _sql(warden, f"UPDATE policy_state SET version = {saved.version}")
    assert warden.read("mallory", "pins", purpose="training").status_code != 200


LOG = (
    "INSERT INTO policy_change (version, op, ptype, v0, v1, v2, v3, v4, v5, v6, v7, v8)"
    " SELECT version + 1, :op, 'p', :v0, 'acme', 'users', '*', 'training', 'read', :effect,"
    " '', '' FROM policy_state"
)
HARMLESS = ("p", ("erin", "acme", "pins", "*", "analytics", "browse", "allow", "", ""))


@pytest.mark.parametrize("who, effect, order", [("mallory", "allow", ("remove", "add")),
                                                 ("alice", "deny", ("add", "remove"))])  # fmt: skip
def test_log_rows_that_cancel_in_the_sum_are_never_replayed(
    warden: Any, who: str, effect: str, order: tuple[str, str]
) -> None:
    """Rows for the next version, written in SQL before a legitimate change: 'remove X' then
    'add X' cancel in the sealed sum, yet replayed in order they would add X (a remove of an
    absent rule does nothing); 'add D' then 'remove D' would drop a stored deny. A log in
    which one rule appears twice is checked by a full reload instead (found by a red-team
    review)."""
    if effect == "deny":
        warden.state.policy.add_rules([("p", (who, "acme", "users", "*", "training", "read",
                                             "deny", "", ""))])  # fmt: skip
    before = warden.read(who, "users", purpose="training").status_code
    assert before != 200
    with warden.state.engine.begin() as conn:
        for op in order:
            conn.execute(text(LOG), {"op": op, "v0": who, "effect": effect})
    warden.state.policy.add_rules([HARMLESS])  # any ordinary change
    assert warden.read(who, "users", purpose="training").status_code == before
