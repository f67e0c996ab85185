"""`warden policy seal --remove-added` never removes a rule Warden applied (red team 22).

The attack (an insider of acme with SQL on the database, not the key files): the insider
keeps a copy of the `policy_state` row (version, rule sum, seal: a state Warden sealed).
Later an admin denies alice `users` (a narrowing, applied at once, version V+1). The insider
writes the old sum and seal back, the version bumped past V+1 (processes reload): every
decision now answers 503 (the rules no longer match their seal), and the operator runs
`warden policy seal`, which opens the old seal (it looks for the sealed sum near the stored
version, since an insider bumps the version so that processes reload), finds the deny is the
one row the stored rules carry beyond that sum, and names it "added past Warden". The
operator runs `--remove-added`, as told: the deny is deleted, the rules resealed under a new
version, and alice reads `users` again; the narrowing undone by an operator who approved
nothing.

What must hold: a sum sealed before a rule change the audit log records is not "the sum
Warden sealed"; the seal names nothing then, and the operator is shown every stored rule.
"""

from __future__ import annotations

from typing import Any

from tests.sealed_rows import one, sql

DENY = "p, alice, acme, users, *, *, *, deny, ,"


def test_a_narrowing_is_not_named_as_added_past_warden(warden: Any, operator_cli: Any) -> None:
    assert warden.read("alice", "users", purpose="training").status_code == 200
    saved = one(warden, "SELECT version, rules_sum, seal FROM policy_state")
    deny = warden.http.post(
        "/v1/policy/rules", json={"add": [DENY], "reason": "stop"}, headers=warden.as_("admin")
    )
    assert deny.status_code == 200 and deny.json()["state"] == "applied", deny.text
    assert warden.read("alice", "users", purpose="training").status_code != 200
    sql(warden, "UPDATE policy_state SET version = version + 1, rules_sum = :s, seal = :seal",
        s=saved.rules_sum, seal=saved.seal)  # fmt: skip
    assert warden.read("alice", "users", purpose="training").status_code == 503
    shown = operator_cli("policy", "seal")
    assert "added past Warden" not in shown.output, shown.output
    assert "stored rules (" in shown.output and DENY.rstrip(", ") in shown.output
    removed = operator_cli("policy", "seal", "--remove-added")
    assert removed.exit_code != 0, removed.output
    assert warden.read("alice", "users", purpose="training").status_code == 503
    digest = shown.output.split("digest: ")[1].split()[0]
    sealed = operator_cli("policy", "seal", "--accept", digest)
    assert sealed.exit_code == 0, sealed.output
    assert warden.read("alice", "users", purpose="training").status_code != 200  # still denied
