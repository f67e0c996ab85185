"""Principal and tenant rows are sealed (warden/db/sealed.py): someone with database write
access but not the deployment's key files edits one, and nothing is decided on it any more.

Found by red-team reviews (an insider with an ordinary token and SQL on Warden's database):
renaming principals moved grants and admin rights (Casbin decides on names), a tenant marked
the installation's in SQL made its admin a platform admin, and a principal disabled or a
token revoked through the API came back when its earlier row was written back, seal and
all. Each test is one of those writes, or a variant of it. The same for sandboxes and job
tokens: tests/sandbox/test_sealed_sandboxes.py; models, jobs and experiments:
tests/registry/test_sealed_models.py; requests, grants and changes:
tests/access/test_sealed_requests.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select, text
from tests.sealed_rows import (
    one,
    read,
    rolled_back,
    sql,
)

from warden.db.sealed import RowTampered
from warden.db.session import unit_of_work
from warden.identity.models import Principal


def test_swapping_principal_names_moves_no_grants(warden: Any) -> None:
    assert read(warden, "mallory").status_code == 404
    sql(
        warden,
        "UPDATE principal SET name='alice-old' WHERE name='alice'",
        "UPDATE principal SET name='alice' WHERE name='mallory'",
    )
    assert read(warden, "mallory").status_code == 401  # her token speaks for nobody now
    assert read(warden, "alice").status_code == 401  # nor does alice's


def test_renaming_yourself_admin_gives_no_admin_rights(warden: Any) -> None:
    sql(
        warden,
        "UPDATE principal SET name='admin-old' WHERE name='admin'",
        "UPDATE principal SET name='admin' WHERE name='mallory'",
    )
    answer = warden.http.get("/v1/audit/events", headers=warden.as_("mallory"))
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize(
    "change",
    [
        "disabled=FALSE",  # a principal disabled through the API, revived in SQL
        "kind='service'",
        "tenant_id=(SELECT id FROM tenant WHERE name='acme')||''",  # the same id, rewritten
        "owner_id='someone'",
        "seal=NULL",
    ],
)
def test_any_write_to_a_principal_row_locks_it_out(warden: Any, change: str) -> None:
    if change.startswith("disabled"):
        r = warden.http.post("/v1/principals/alice/disable", headers=warden.as_("admin"))
        assert r.status_code == 200, r.text
        assert read(warden, "alice").status_code == 401
    else:
        assert read(warden, "alice").status_code == 200
    sql(warden, f"UPDATE principal SET {change} WHERE name='alice'")  # noqa: S608
    if change.startswith("tenant_id"):  # the same value written again changes no seal
        assert read(warden, "alice").status_code == 200
        return
    assert read(warden, "alice").status_code == 401


def test_a_tenant_made_the_installations_in_sql_makes_no_platform_admin(warden: Any) -> None:
    r = warden.http.post(
        "/v1/tenants", json={"name": "globex", "admin": "gadmin"}, headers=warden.as_("admin")
    )
    assert r.status_code == 201, r.text
    warden.tokens["gadmin"] = r.json()["token"]
    sql(warden, "UPDATE tenant SET installation=TRUE WHERE name='globex'")
    r = warden.http.post(
        "/v1/tenants", json={"name": "evil", "admin": "evil-admin"}, headers=warden.as_("gadmin")
    )
    assert r.status_code == 401, r.text


def test_a_renamed_tenant_speaks_for_nobody(warden: Any) -> None:
    sql(warden, "UPDATE tenant SET name='acme2' WHERE name='acme'")
    assert read(warden, "alice").status_code == 401


def test_warden_never_seals_a_principal_changed_past_it_in_passing(warden: Any) -> None:
    """alice's row renamed in SQL, then disabled through the API: the disable would seal the
    rename along with it; it is refused and nothing changes."""
    sql(warden, "UPDATE principal SET kind='service' WHERE name='alice'")
    with pytest.raises(RowTampered), unit_of_work(warden.state.sessions) as db:
        row = db.scalars(select(Principal).where(Principal.name == "alice")).one()
        row.disabled = True
    with warden.state.engine.connect() as conn:
        stored = conn.execute(text("SELECT disabled FROM principal WHERE name='alice'")).scalar()
    assert not stored


def test_an_operator_reseals_what_they_looked_at_and_nothing_changed_since(
    warden: Any, operator_cli: Any
) -> None:
    sql(warden, "UPDATE principal SET seal=NULL WHERE name IN ('alice', 'erin')")
    listed = operator_cli("data", "seal", "--check")
    assert listed.exit_code == 1 and "principal" in listed.output, listed.output
    shown = dict(re.findall(r"principal \S+ (\w+): .*\n    digest: ([0-9a-f]{32})", listed.output))
    assert set(shown) == {"alice", "erin"} and 'kind: "person"' in listed.output
    assert read(warden, "alice").status_code == 401
    # erin's row changes after the operator looked: her digest no longer matches; nothing sealed
    sql(warden, "UPDATE principal SET kind='service' WHERE name='erin'")
    stale = operator_cli("data", "seal", "--accept", shown["alice"], "--accept", shown["erin"])
    assert stale.exit_code != 0 and shown["erin"] in stale.output, stale.output
    assert read(warden, "alice").status_code == 401
    sealed = operator_cli("data", "seal", "--accept", shown["alice"], "--actor", "ops")
    assert sealed.exit_code == 0 and "sealed 1 principal" in sealed.output, sealed.output
    (event,) = warden.audit_events(action="rows.sealed")
    assert event["actor"] == "ops" and list(event["details"]["rows"]) == ["principal"]
    assert read(warden, "alice").status_code == 200
    assert read(warden, "erin", purpose="analytics").status_code == 401  # still unsealed


def test_a_disabled_principal_written_back_whole_stays_disabled(warden: Any) -> None:
    """Its earlier row, seal and all, is Warden's own: the row alone cannot tell. The keyed,
    checkpointed log can: each process refuses what it says was disabled
    (identity/revocations.py), and `verify` reports the row."""
    old_seal = one(warden, "SELECT seal FROM principal WHERE name='alice'")[0]
    r = warden.http.post("/v1/principals/alice/disable", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert not rolled_back(warden)
    sql(warden, "UPDATE principal SET disabled=FALSE, seal=:s WHERE name='alice'", s=old_seal)
    assert read(warden, "alice").status_code == 401
    (found,) = rolled_back(warden)
    assert "principal alice was disabled" in found["detail"]


def test_a_revoked_token_written_back_whole_stays_revoked(warden: Any) -> None:
    tid, seal = one(
        warden,
        "SELECT t.id, t.seal FROM api_token t JOIN principal p ON p.id=t.principal_id"
        " WHERE p.name='alice' AND t.revoked_at IS NULL",
    )
    r = warden.http.post(f"/v1/principals/alice/tokens/{tid}/revoke", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert not rolled_back(warden)
    sql(
        warden,
        "UPDATE api_token SET revoked_at=NULL, revoked_by=NULL, seal=:s WHERE id=:i",
        s=seal,
        i=tid,
    )
    answer = read(warden, "alice")
    assert answer.status_code == 401 and "revoked" in answer.text
    (found,) = rolled_back(warden)
    assert f"token {tid} was revoked" in found["detail"]


# Found by a red-team round: the revocations each process keeps came from any audit_event row.
# Only the chain's own events count: at or below its head, and keyed with the chain key.


def _forge_event(w: Any, seq: int, action: str, details: str) -> None:
    sql(
        w,
        "INSERT INTO audit_event (seq, id, ts, actor, actor_kind, action, decision, columns,"
        " masked_columns, row_filter, grant_ids, details, prev_hash, hash, chain_v)"
        " VALUES (:seq, :id, '2020-01-01 00:00:00.000000', 'x', 'person', :action, 'allow',"
        " '[]', '[]', '[]', '[]', :details, :z, :z, 2)",
        seq=seq,
        id=f"forged{seq}",
        action=action,
        details=details,
        z="0" * 64,
    )


def _any_uncached_call(w: Any) -> None:
    # every non-read API call authenticates uncached, which refreshes the revocations
    assert w.http.get("/v1/principals/alice/tokens", headers=w.as_("alice")).status_code == 200


def test_an_event_forged_far_ahead_hides_no_later_revocation(warden: Any) -> None:
    _forge_event(warden, 10**15, "token.revoke", '{"token_id": "nothing"}')
    _any_uncached_call(warden)  # the process now remembers seq 10**15
    row = one(
        warden,
        "SELECT t.id, t.seal FROM api_token t JOIN principal p ON p.id=t.principal_id"
        " WHERE p.name='alice'",
    )
    token_id, old_seal = row
    r = warden.http.post(
        f"/v1/principals/alice/tokens/{token_id}/revoke", headers=warden.as_("admin")
    )
    assert r.status_code == 200, r.text
    assert read(warden, "alice").status_code == 401
    # the row written back whole to before its revocation (documented as caught by the log)
    sql(
        warden,
        "UPDATE api_token SET revoked_at=NULL, revoked_by=NULL, seal=:s WHERE id=:i",
        s=old_seal,
        i=token_id,
    )
    assert read(warden, "alice").status_code == 401
    ev = [
        e
        for e in warden.audit_events(action="token.revoke")
        if e.get("details", {}).get("token_id") == token_id
    ]
    assert ev  # the real event is in the log, below the forged seq


def test_a_forged_enable_event_undoes_no_disable(warden: Any) -> None:
    old = one(warden, "SELECT disabled, seal FROM principal WHERE name='alice'")
    r = warden.http.post("/v1/principals/alice/disable", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert read(warden, "alice").status_code == 401  # the process has read the disable
    head = one(warden, "SELECT seq FROM audit_head")[0]
    _forge_event(warden, head + 10**6, "principal.enable", '{"principal": "alice"}')
    sql(
        warden,
        "UPDATE principal SET disabled=:d, seal=:s WHERE name='alice'",
        d=old[0],
        s=old[1],
    )
    assert read(warden, "alice").status_code == 401


def test_a_cached_token_rows_seals_are_checked_once_and_a_forged_row_every_time(
    warden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warden.identity.row_seals as row_seals
    from warden.errors import Unauthenticated
    from warden.identity.models import ApiToken
    from warden.identity.service import _token_row

    made: list[str] = []

    def counted(*args: Any) -> str:
        made.append(args[1])
        return real(*args)

    real = row_seals.token_seal
    monkeypatch.setattr(row_seals, "token_seal", counted)
    monkeypatch.setattr(row_seals, "_SEEN", {})
    with unit_of_work(warden.state.sessions) as db:
        row = _token_row(db, ApiToken.id.is_not(None))
        row_seals.check_row_seals(db, row, remember=True)
        row_seals.check_row_seals(db, row, remember=True)  # the same tuple: known
        assert len(made) == 1
        fresh = tuple(list(row))  # equal, not the same tuple, and not the cache's
        row_seals.check_row_seals(db, fresh)
        row_seals.check_row_seals(db, fresh)
        assert len(made) == 3
        forged = (*row[:7], "0" * 64, *row[8:])  # the token's seal replaced
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                row_seals.check_row_seals(db, forged, remember=True)
        assert len(made) == 5
        renamed = list(row)
        renamed[8 + Principal.__sealed__.index("name")] = "someone-else"
        with pytest.raises(Unauthenticated):
            row_seals.check_row_seals(db, tuple(renamed), remember=True)
