"""A revoked grant's rule written back in SQL is not sealed by the seal repair (red team 22,
found after the round).

The attack (an insider of acme with SQL on the database, not the key files): erin holds a
grant on `pins`, approved by a steward; the insider copies its rule row and the
`policy_state` row. A steward revokes the grant: its rule goes, the policy version moves. The
insider inserts the rule row again and writes the old sum and seal back, the version bumped
(processes reload): every decision answers 503, and the operator runs `warden policy seal`.
The sum names nothing, so the operator is shown the stored rules, among which a grant's rule
looks like any other, and seals them by digest: erin read `pins` again on a revoked grant,
revived by an operator who approved nothing.

What must hold: a rule of a grant whose last event in the log ended it (revoked, expired) is
shown as contradicting the log; nothing is sealed while it stands, and `--restore-logged`
deletes it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.access.conftest import Access
from tests.sealed_rows import one, sql

BODY = {"purpose": "analytics", "columns": ["pin_id"], "limit": 1}
COLUMNS = ("ptype", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8")


def _digest(output: str) -> str:
    return output.split("digest: ")[1].split()[0]


def test_a_revoked_grants_rule_written_back_is_not_sealed(
    access: Access, operator_cli: Any
) -> None:
    access.clock.now = datetime.now(UTC)
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d", columns=["pin_id"])
    grant_id = access.approve("sam", req["id"])["grant_id"]
    w = access.w
    assert w.read("erin", "pins", **BODY).status_code == 200
    saved = one(w, "SELECT version, rules_sum, seal FROM policy_state")
    row = one(w, f"SELECT {', '.join(COLUMNS)} FROM casbin_rule WHERE v7 = :g", g=grant_id)
    revoked = access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "incident"})
    assert revoked.status_code == 200, revoked.text
    assert w.read("erin", "pins", **BODY).status_code != 200
    values = dict(zip(COLUMNS, row, strict=True))
    sql(w, f"INSERT INTO casbin_rule ({', '.join(COLUMNS)})"
        f" VALUES ({', '.join(':' + c for c in COLUMNS)})", **values)  # fmt: skip
    sql(w, "UPDATE policy_state SET version = version + 5, rules_sum = :s, seal = :seal",
        s=saved.rules_sum, seal=saved.seal)  # fmt: skip
    assert w.read("erin", "pins", **BODY).status_code == 503
    shown = operator_cli("policy", "seal")
    assert f"{grant_id}" in shown.output and "its grant ended at audit seq" in shown.output
    sealed = operator_cli("policy", "seal", "--accept", _digest(shown.output))
    assert sealed.exit_code != 0, sealed.output
    assert w.read("erin", "pins", **BODY).status_code == 503, "erin read on a revived grant"
    assert operator_cli("policy", "seal", "--restore-logged").exit_code == 0
    again = operator_cli("policy", "seal")
    assert grant_id not in again.output, again.output
    assert operator_cli("policy", "seal", "--accept", _digest(again.output)).exit_code == 0
    assert w.read("erin", "pins", **BODY).status_code not in (200, 503)
