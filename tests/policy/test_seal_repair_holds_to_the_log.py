"""`warden policy seal` holds the stored rules to the rule changes the audit log records.

The attack (an insider of acme with SQL on the database, not the key files), left open by
red team 22: the insider keeps a copy of the `policy_state` row (version, rule sum, seal).
Later an admin narrows the policy at once: a deny for alice on `users`, or alice's role taken
away. The insider then deletes the deny's row (or stores the role's row again) and writes the
old sum and seal back. Every decision answers 503 (the stored policy is older than the log's
newest rule change, or its seal no longer opens), and the operator runs `warden policy seal`:
the sum names no row added past Warden, so the operator is shown the stored rules, which
look ordinary, and seals them with `--accept DIGEST`: the narrowing is undone by an operator
who approved nothing, and alice reads `users` again.

What must hold: the rules the log's own changes applied and removed are checked against the
stored ones; a contradiction is shown, nothing is sealed while it stands, and
`--restore-logged` puts the rules back as the log records them (audited).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sealed_rows import one, sql

DENY = "p, alice, acme, users, *, *, *, deny, ,"
ROLE = "g, alice, role:ml_engineer, acme"


def _alice(warden: Any) -> int:
    return int(warden.read("alice", "users", purpose="training").status_code)


def _narrow(warden: Any, change: dict[str, Any]) -> None:
    done = warden.http.post(
        "/v1/policy/rules", json={**change, "reason": "stop"}, headers=warden.as_("admin")
    )
    assert done.status_code == 200 and done.json()["state"] == "applied", done.text


def _digest(output: str) -> str:
    return output.split("digest: ")[1].split()[0]


@pytest.mark.parametrize("bump", [0, 5], ids=["state-written-back-whole", "version-bumped"])
def test_a_deny_deleted_with_an_old_seal_is_put_back_not_sealed_away(
    warden: Any, operator_cli: Any, bump: int
) -> None:
    assert _alice(warden) == 200
    saved = one(warden, "SELECT version, rules_sum, seal FROM policy_state")
    _narrow(warden, {"add": [DENY]})
    assert _alice(warden) != 200
    sql(warden, "DELETE FROM casbin_rule WHERE ptype = 'p' AND v0 = 'alice' AND v6 = 'deny'",
        "UPDATE policy_state SET version = :v, rules_sum = :s, seal = :seal",
        v=saved.version + bump, s=saved.rules_sum, seal=saved.seal)  # fmt: skip
    assert _alice(warden) == 503
    shown = operator_cli("policy", "seal")
    assert "contradicts 1 stored or missing rule(s)" in shown.output, shown.output
    assert "  " + DENY in shown.output and "(added by the change at audit seq" in shown.output
    sealed = operator_cli("policy", "seal", "--accept", _digest(shown.output))
    assert sealed.exit_code != 0 and "nothing sealed" in sealed.output, sealed.output
    assert _alice(warden) == 503
    put = operator_cli("policy", "seal", "--restore-logged")
    assert put.exit_code == 0 and "put back as the log records" in put.output, put.output
    again = operator_cli("policy", "seal")
    assert "contradict" not in again.output, again.output
    sealed = operator_cli("policy", "seal", "--accept", _digest(again.output))
    assert sealed.exit_code == 0, sealed.output
    assert _alice(warden) not in (200, 503)  # denied again, by the rule the log recorded
    assert operator_cli("policy", "seal").output.startswith("the stored rules match their seal")
    restored = one(warden, "SELECT details FROM audit_event WHERE action = 'policy.restored'")
    assert restored is not None and DENY in str(restored.details)


def test_a_removed_role_stored_again_is_not_sealed(warden: Any, operator_cli: Any) -> None:
    assert _alice(warden) == 200
    saved = one(warden, "SELECT version, rules_sum, seal FROM policy_state")
    _narrow(warden, {"remove": [ROLE]})
    assert _alice(warden) != 200
    sql(warden, "INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5, v6, v7, v8) VALUES"
        " ('g', 'alice', 'role:ml_engineer', 'acme', '', '', '', '', '', '')",
        "UPDATE policy_state SET version = version + 1, rules_sum = :s, seal = :seal",
        s=saved.rules_sum, seal=saved.seal)  # fmt: skip
    assert _alice(warden) == 503
    shown = operator_cli("policy", "seal")
    assert f"{ROLE}  (removed by the change at audit seq" in shown.output, shown.output
    assert operator_cli("policy", "seal", "--accept", _digest(shown.output)).exit_code != 0
    assert operator_cli("policy", "seal", "--restore-logged").exit_code == 0
    again = operator_cli("policy", "seal")
    assert operator_cli("policy", "seal", "--accept", _digest(again.output)).exit_code == 0
    assert _alice(warden) not in (200, 503)  # the role stays taken away


def test_stored_rules_that_agree_with_the_log_have_nothing_to_restore(
    warden: Any, operator_cli: Any
) -> None:
    assert operator_cli("policy", "seal").output.startswith("the stored rules match their seal")
    put = operator_cli("policy", "seal", "--restore-logged")
    assert put.exit_code != 0 and "contradict no rule change" in put.output, put.output
