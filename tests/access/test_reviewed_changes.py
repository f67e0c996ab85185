"""Changes that widen access are reviewed changes, and reviewers are people: the attacks of
issue 15 (finding 1) as an admin with a token would try them, each refusal changing nothing.

The cast: `admin` (created by `warden init`), `ada` (a second admin, also from bootstrap),
stewards `sam` and `tess`, owner `olga`, and the test people alice / erin / mallory."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from sqlalchemy import text

from tests.access.conftest import Access, allow_browse, bootstrap_people, link_role

USERS_RAW = "p, role:admin, acme, users, *, *, read, allow, ,"


def _changes(access: Access, who: str = "ada", **params: Any) -> list[dict[str, Any]]:
    r = access.http.get("/v1/policy/changes", params=params, headers=access.as_(who))
    assert r.status_code == 200, r.text
    return r.json()["changes"]  # type: ignore[no-any-return]


def _act(access: Access, who: str, change_id: str, verb: str, **body: Any) -> Any:
    return access.http.post(
        f"/v1/policy/changes/{change_id}/{verb}", json=body, headers=access.as_(who)
    )


def _proposed(response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "pending"
    return body["change"]  # type: ignore[no-any-return]


def _service_account(access: Access, name: str, roles: list[str], owner: str = "admin") -> None:
    """A service account the admin creates (owned by `owner`), its roles approved by ada."""
    body = {"name": name, "kind": "service", "roles": roles, "owner": owner}
    r = access.http.post("/v1/principals", json=body, headers=access.as_("admin"))
    assert r.status_code == (202 if roles else 201), r.text
    assert r.json()["owner"] == owner and r.json()["created_by"] == "admin"
    if roles:
        access.approve_change("ada", r.json()["change_id"])
    t = access.http.post(f"/v1/principals/{name}/tokens", json={}, headers=access.as_("admin"))
    # Minted by its owner: usable now; by anyone else: held until a second person approves.
    assert t.status_code == (201 if owner == "admin" else 202), t.text
    if t.status_code == 202:
        access.approve_change("ada", t.json()["change_id"])
    access.w.tokens[name] = t.json()["token"]


# --- an admin widening their own access -------------------------------------------------


def test_a_rule_for_a_role_the_admin_holds_is_proposed_and_nobody_who_benefits_approves(
    access: Access,
) -> None:
    before_read = access.read("admin", "users", purpose="analytics")
    assert before_read.status_code != 200
    change = _proposed(access.propose("admin", [USERS_RAW], reason="debugging"))
    assert change["proposer"] == "admin" and {"admin", "ada"} <= set(change["beneficiaries"])
    assert access.read("admin", "users", purpose="analytics").status_code != 200
    before = access.fingerprint()
    own = _act(access, "admin", change["id"], "approve")
    assert own.status_code == 403
    assert (
        own.json()["detail"] == "a proposer never approves their own change, whatever their roles"
    )
    # ada holds role:admin too: the rule widens her own reading, so she may not approve it.
    shared = _act(access, "ada", change["id"], "approve")
    assert shared.status_code == 403 and "benefits" in shared.json()["detail"]
    # stewards review data requests, not policy.
    assert _act(access, "sam", change["id"], "approve").status_code == 404
    assert access.fingerprint() == before
    assert access.read("admin", "users", purpose="analytics").status_code != 200


def test_linking_the_admin_role_into_another_role_is_reviewed(access: Access) -> None:
    change = _proposed(access.propose("admin", ["g, role:admin, role:ml_engineer, acme"]))
    assert any("role:ml_engineer" in why for why in change["widening"])
    before = access.fingerprint()
    for who in ("admin", "ada"):
        assert _act(access, who, change["id"], "approve").status_code == 403
    assert access.fingerprint() == before
    r = access.read("admin", "engagements", purpose="training", columns=["pin_id"], limit=1)
    assert r.status_code != 200


def test_a_role_to_role_link_names_everyone_it_reaches(access: Access) -> None:
    change = _proposed(access.propose("admin", ["g, role:analyst_eu, role:ml_engineer, acme"]))
    assert "erin" in change["beneficiaries"]
    done = access.approve_change("ada", change["id"])
    assert done["state"] == "applied" and done["policy_version"]
    r = access.read("erin", "pins", purpose="training", columns=["pin_id"], limit=1)
    assert r.status_code == 200


def test_a_reviewed_change_applies_only_on_a_different_persons_approval(access: Access) -> None:
    rule = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    change = _proposed(access.propose("admin", [rule], reason="mallory helps on pins"))
    assert change["beneficiaries"] == ["mallory"] or "mallory" in change["beneficiaries"]
    assert access.read("mallory", "pins", purpose="analytics").status_code == 404
    done = access.approve_change("ada", change["id"])
    assert (done["state"], done["approvals"]) == ("applied", ["ada"])
    assert access.read("mallory", "pins", purpose="analytics", limit=1).status_code == 200
    again = _act(access, "ada", change["id"], "approve")
    assert again.status_code == 409
    shown = access.http.get(f"/v1/policy/changes/{change['id']}", headers=access.as_("admin"))
    events = [h["event"] for h in shown.json()["history"]]
    assert events == ["proposed", "approve", "applied"]
    actions = [e["action"] for e in access.events("policy.")]
    assert actions[-4:] == [
        "policy.change.proposed",
        "policy.change.reviewed",
        "policy.change",
        "policy.change.applied",
    ]
    assert access.verify_chain()["ok"] is True


def test_one_deny_rejects_and_the_proposer_alone_cancels(access: Access) -> None:
    rule = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    denied = _proposed(access.propose("admin", [rule]))
    assert _act(access, "ada", denied["id"], "deny", comment="no").json()["state"] == "denied"
    assert _act(access, "ada", denied["id"], "approve").status_code == 409
    assert access.read("mallory", "pins", purpose="analytics").status_code == 404
    pending = _proposed(access.propose("admin", [rule]))
    assert _act(access, "ada", pending["id"], "cancel").status_code == 403
    assert _act(access, "admin", pending["id"], "cancel").json()["state"] == "cancelled"
    # Nobody else even sees a change: 404, as for one that does not exist.
    assert _act(access, "mallory", pending["id"], "approve").status_code == 404
    assert (
        access.http.get(
            f"/v1/policy/changes/{pending['id']}", headers=access.as_("mallory")
        ).status_code
        == 404
    )


def test_a_no_op_bundled_with_a_widening_is_reviewed_whole(access: Access) -> None:
    existing = "p, role:ml_engineer, acme, pins, *, training, read, allow, ,"
    deny = "p, alice, acme, pins, title, *, *, deny, ,"
    widening = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    before = access.fingerprint()
    change = _proposed(access.propose("admin", [existing, deny, widening]))
    # Nothing of it applies yet, the no-op and the deny included: all or nothing.
    after = access.fingerprint()
    assert after["rules"] == before["rules"] and after["policy_version"] == before["policy_version"]
    assert len(change["widening"]) == 2  # the no-op is not provably narrowing either
    only_noop = _proposed(access.propose("admin", [existing]))
    assert only_noop["id"] != change["id"]


def test_narrowing_changes_apply_at_once_audited(access: Access) -> None:
    deny = "p, alice, acme, pins, *, *, *, deny, ,"
    r = access.propose("admin", [deny], reason="stop")
    assert r.status_code == 200 and r.json()["state"] == "applied", r.text
    assert access.read("alice", "pins", purpose="training", columns=["pin_id"]).status_code != 200
    removed = access.propose("admin", remove=[deny])  # lifting a deny widens
    _proposed(removed)
    allow = "p, role:ml_engineer, acme, pins, *, inference, read, allow, ,"
    assert access.propose("admin", remove=[allow]).json()["state"] == "applied"
    event = access.events("policy.change")[-1]
    assert event["details"]["mode"] == "narrowing"
    gone = access.http.delete("/v1/principals/alice/roles/ml_engineer", headers=access.as_("admin"))
    assert gone.status_code == 200 and gone.json()["roles"] == []


def test_lifting_a_row_filter_is_reviewed(access: Access) -> None:
    row_filter = "p2, role:analyst_eu, acme, engagements, region, eq, EU"
    change = _proposed(access.propose("admin", remove=[row_filter]))
    assert "erin" in change["beneficiaries"]
    r = access.read("erin", "engagements", purpose="analytics", columns=["region"])
    assert set(access.frame(r)["region"].unique()) == {"EU"}
    # Unlinking a role that carries a row filter (or a deny) could widen too: reviewed.
    unlink = access.http.delete("/v1/principals/erin/roles/analyst_eu", headers=access.as_("admin"))
    assert unlink.status_code == 202 and unlink.json()["change_id"]


def test_a_row_filter_that_reaches_its_author_is_refused(access: Access) -> None:
    """A filter on a masked identifier (or a denied column) the author reads through would
    tell them which rows match a raw value: an oracle. By name, by a role they hold, or on a
    principal they created, it is someone else's to add; on others it applies at once."""
    link_role(access.w, "admin", "ml_engineer")
    raw = pl.read_parquet(access.w.settings.datasets_dir / "users" / "*.parquet")
    victim = int(raw["user_id"][7])
    before = len(access.events("policy.change"))
    for subject in ("admin", "role:ml_engineer"):
        r = access.propose("admin", [f"p2, {subject}, acme, users, user_id, eq, {victim}"])
        assert r.status_code == 403, r.text
        assert "row filter that applies to you" in r.json()["detail"]
    _service_account(access, "probe-bot", [])
    r = access.propose("admin", ["p2, probe-bot, acme, users, user_id, eq, 1"])
    assert r.status_code == 403, r.text
    assert len(access.events("policy.change")) == before  # nothing changed
    assert access.read("admin", "users", purpose="training").status_code == 200
    # ada holds no role the filter reaches, so it is hers to propose; she reads no column of
    # users raw, so it waits for someone else (test_row_filter_review.py)
    change = _proposed(access.propose("ada", ["p2, role:ml_engineer, acme, users, region, eq, NA"]))
    assert "ada may not read raw" in change["widening"][0]


def test_a_role_link_that_brings_its_proposer_under_a_row_filter_is_refused(
    access: Access,
) -> None:
    """The same oracle the other way round: the admin's filter on role:ml_engineer, approved
    by ada (it reached no one they keep); linking their own service account (or themselves)
    into that role later would bring their reads under it. Someone else proposes that."""
    r = access.propose("admin", ["p2, role:ml_engineer, acme, users, user_id, eq, 1"])
    access.approve_change("ada", _proposed(r)["id"])
    _service_account(access, "admin-bot", [])  # the admin owns it
    before = len(access.events("policy.change"))
    r = access.propose("admin", ["g, admin-bot, role:ml_engineer, acme"])
    assert r.status_code == 403, r.text
    assert "row filter that applies to you" in r.json()["detail"]
    r = access.propose("admin", ["g, admin, role:ml_engineer, acme"])  # also self-granted
    assert r.status_code == 403, r.text
    r = access.http.post(
        "/v1/principals/admin-bot/roles", json={"role": "ml_engineer"}, headers=access.as_("admin")
    )
    assert r.status_code == 403, r.text
    assert len(access.events("policy.change")) == before  # nothing proposed, nothing changed
    # a role without a filter is theirs to propose (reviewed as any widening); and someone
    # who keeps neither may propose the link the admin may not
    assert access.propose("admin", ["g, admin-bot, role:auditor, acme"]).status_code == 202
    assert access.propose("ada", ["g, admin-bot, role:ml_engineer, acme"]).status_code == 202
    # people the admin creates are not theirs to read as: onboarding with a filtered role
    body = {"name": "fay", "kind": "person", "roles": ["ml_engineer"]}
    created = access.http.post("/v1/principals", json=body, headers=access.as_("admin"))
    assert created.status_code == 202, created.text


def test_a_person_given_the_steward_role_reviews_only_once_it_is_approved(access: Access) -> None:
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    r = access.http.post(
        "/v1/principals/mallory/roles", json={"role": "steward"}, headers=access.as_("admin")
    )
    assert r.status_code == 202 and r.json()["pending_roles"] == ["role:steward"]
    assert access.review("mallory", req["id"], "approve").status_code == 403
    assert _act(access, "mallory", r.json()["change_id"], "approve").status_code == 404
    access.approve_change("ada", r.json()["change_id"])
    assert access.approve("mallory", req["id"])["state"] == "approved"


# --- principals the requester created or owns --------------------------------------------


def test_service_accounts_never_review_sign_off_or_break_glass(access: Access) -> None:
    _service_account(access, "steward-bot-1", ["steward"])
    _service_account(access, "steward-bot-2", ["steward", "ml_engineer"])
    access.allow_break_glass()
    req = access.ask("admin", dataset="users", purpose="analytics", duration="1d")
    before = access.fingerprint()
    for bot in ("steward-bot-1", "steward-bot-2"):
        r = access.review(bot, req["id"], "approve")
        assert r.status_code == 403, r.text
        assert "reviewers are people" in r.json()["detail"]
    glass = access.post(
        "admin", "/break-glass", {"dataset": "pins", "purpose": "training", "reason": "x"}
    )
    assert glass.status_code == 201
    before = access.fingerprint()
    for bot in ("steward-bot-1", "steward-bot-2"):
        assert access.post(bot, f"/grants/{glass.json()['id']}/sign-off", {}).status_code == 403
    bot_glass = access.post(
        "steward-bot-2", "/break-glass", {"dataset": "pins", "purpose": "training", "reason": "x"}
    )
    assert bot_glass.status_code == 403 and "reviewers are people" in bot_glass.json()["detail"]
    assert access.fingerprint() == before
    assert access.show("admin", req["id"])["state"] == "pending"


def test_a_service_account_the_requester_owns_never_counts(access: Access) -> None:
    _service_account(access, "erin-bot", ["steward"], owner="erin")
    listed = access.http.get("/v1/principals", headers=access.as_("admin")).json()["principals"]
    bot = next(p for p in listed if p["name"] == "erin-bot")
    assert (bot["owner"], bot["created_by"], bot["kind"]) == ("erin", "admin", "service")
    req = access.ask("erin", dataset="users", purpose="analytics", duration="1d")
    before = access.fingerprint()
    assert access.review("erin-bot", req["id"], "approve").status_code == 403
    assert access.fingerprint() == before


def test_nobody_approves_a_request_of_a_service_account_they_own_or_created(
    access: Access,
) -> None:
    _service_account(access, "etl-bot", [], owner="sam")  # created by the admin, owned by sam
    allow_browse(access.w, "etl-bot")
    req = access.ask("etl-bot", dataset="pins", purpose="analytics", duration="1d")
    before = access.fingerprint()
    for keeper in ("sam", "admin"):
        r = access.review(keeper, req["id"], "approve")
        assert r.status_code == 403 and "benefits" in r.json()["detail"], r.text
    assert access.fingerprint() == before
    assert access.approve("tess", req["id"])["state"] == "approved"


def test_a_person_the_requester_created_then_handed_over_never_counts(access: Access) -> None:
    access.add_person("pat", ["steward"])  # created by the admin, token handed to pat
    req = access.ask("admin", dataset="users", purpose="analytics", duration="1d")
    before = access.fingerprint()
    r = access.review("pat", req["id"], "approve")
    assert r.status_code == 403 and "created or is owned" in r.json()["detail"]
    assert access.fingerprint() == before
    # pat still reviews everyone else's requests.
    other = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    assert access.approve("pat", other["id"])["state"] == "approved"


def test_a_token_the_admin_mints_for_another_admin_never_approves_the_admins_change(
    access: Access,
) -> None:
    """A token the admin mints for someone else, even once a second person let it work,
    speaks for the admin too: it never approves or reviews what the admin asked for."""
    minted = access.http.post("/v1/principals/ada/tokens", json={}, headers=access.as_("admin"))
    assert minted.status_code == 202
    # ada may not approve a token that lets the admin act as her; tess (no admin) may not
    # review changes; so a third person, pat (an admin from bootstrap), approves it.
    bootstrap_people(access.w, {"pat": ["admin"]})
    access.approve_change("pat", minted.json()["change_id"])
    change = _proposed(access.propose("admin", ["p, mallory, acme, pins, *, *, read, allow, ,"]))
    req = access.ask("admin", dataset="users", purpose="analytics", duration="1d")
    sam = access.http.post("/v1/principals/sam/tokens", json={}, headers=access.as_("admin"))
    access.approve_change("ada", sam.json()["change_id"])
    before = access.fingerprint()
    as_ada = {"authorization": f"Bearer {minted.json()['token']}"}
    r = access.http.post(f"/v1/policy/changes/{change['id']}/approve", json={}, headers=as_ada)
    assert r.status_code == 403 and "issued by someone" in r.json()["detail"]
    as_sam = {"authorization": f"Bearer {sam.json()['token']}"}
    r = access.http.post(
        f"/v1/access/requests/{req['id']}/review", json={"decision": "approve"}, headers=as_sam
    )
    assert r.status_code == 403 and "issued by someone" in r.json()["detail"]
    assert access.fingerprint() == before
    # Her own token (from bootstrap) still approves.
    assert access.approve_change("ada", change["id"])["state"] == "applied"


def test_a_service_account_needs_an_owning_person(access: Access) -> None:
    r = access.http.post(
        "/v1/principals", json={"name": "etl", "kind": "service"}, headers=access.as_("admin")
    )
    assert r.status_code == 201 and r.json()["owner"] == "admin"  # its creator by default
    bad = access.http.post(
        "/v1/principals",
        json={"name": "etl2", "kind": "service", "owner": "etl"},
        headers=access.as_("admin"),
    )
    assert bad.status_code == 422 and "owning person" in bad.json()["detail"]
    person = access.http.post(
        "/v1/principals",
        json={"name": "pam", "kind": "person", "owner": "admin"},
        headers=access.as_("admin"),
    )
    assert person.status_code == 422


def test_a_principal_inherits_no_rules_left_under_its_name(access: Access) -> None:
    access.reviewed_rules(["p, ghost, acme, pins, *, analytics, read, allow, ,"])
    r = access.http.post("/v1/principals", json={"name": "ghost"}, headers=access.as_("admin"))
    assert r.status_code == 409 and "rules already name" in r.json()["detail"]


def test_a_forged_review_row_never_counts(access: Access) -> None:
    """An insider with database write access adds approvals from the requester's own
    principals; the quorum is counted again from people who may approve."""
    access.add_person("pat", [])
    req = access.ask("admin", dataset="users", purpose="analytics", duration="1d")
    with access.w.state.engine.begin() as conn:
        ids = dict(conn.execute(text("SELECT name, id FROM principal")).all())
        conn.execute(
            text(
                "INSERT INTO access_review (request_id, reviewer_id, reviewer, decision,"
                " comment, created_at) VALUES (:r, :p, 'pat', 'approve', '', :t)"
            ),
            {"r": req["id"], "p": ids["pat"], "t": access.clock.now},
        )
    shown = access.approve("sam", req["id"])
    assert shown["state"] == "pending"
    assert access.approve("tess", req["id"])["state"] == "approved"


# --- the class floors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"quorum": 0}, "floor of 2 for pii"),
        ({"quorum": 1}, "floor of 2 for pii"),
        ({"max_duration": "3650d"}, "floor of 90d for pii"),
    ],
)
def test_pii_terms_never_go_below_the_floors(access: Access, body: Any, says: str) -> None:
    before = access.fingerprint()
    for who in ("admin", "ada"):
        r = access.http.put("/v1/access/settings/users", json=body, headers=access.as_(who))
        assert r.status_code == 422, r.text
        assert says in r.json()["detail"]
    assert access.fingerprint() == before
    req = access.ask("admin", dataset="users", purpose="analytics", duration="1d")
    assert req["state"] == "pending" and req["quorum"] == 2


def test_lowering_terms_is_reviewed_and_raising_them_is_not(access: Access) -> None:
    raised = access.http.put(
        "/v1/access/settings/users", json={"quorum": 3}, headers=access.as_("admin")
    )
    assert raised.status_code == 200 and raised.json()["quorum"] == 3
    lowered = access.http.put(
        "/v1/access/settings/users", json={"quorum": 2}, headers=access.as_("admin")
    )
    change = _proposed(lowered)
    assert change["kind"] == "settings" and lowered.json()["terms"]["quorum"] == 3
    assert _act(access, "admin", change["id"], "approve").status_code == 403
    access.approve_change("ada", change["id"])
    shown = access.get("erin", "/settings/users").json()
    assert shown["quorum"] == 2
    # internal: quorum never below 1
    r = access.http.put("/v1/access/settings/pins", json={"quorum": 0}, headers=access.as_("admin"))
    assert r.status_code == 422 and "floor of 1 for internal" in r.json()["detail"]


def test_terms_written_past_the_api_are_held_to_the_floors(access: Access) -> None:
    with access.w.state.engine.begin() as conn:
        dataset_id = conn.execute(text("SELECT id FROM dataset WHERE name = 'users'")).scalar()
        conn.execute(
            text(
                "INSERT INTO access_setting (dataset_id, quorum, max_duration_s, updated_by,"
                " updated_at) VALUES (:d, 0, 315360000, 'insider', :t)"
            ),
            {"d": dataset_id, "t": access.clock.now},
        )
    refused = access.get("erin", "/settings/users")  # the row is not sealed: nothing decided
    assert refused.status_code == 503 and refused.json()["error"] == "RowTampered"
    # sealed as it stands by an operator who did not look: the floors still hold
    from warden.access.models import AccessSetting
    from warden.audit.keys import keys_for
    from warden.db.sealed import seal_of
    from warden.db.session import unit_of_work

    with unit_of_work(access.w.state.sessions) as db:
        row = db.get_one(AccessSetting, dataset_id)
        row.seal = seal_of(keys_for(db.get_bind()), row)
    terms = access.get("erin", "/settings/users").json()
    assert (terms["quorum"], terms["max_duration"]) == (2, "90d")
    req = access.ask("erin", dataset="users", purpose="analytics", duration="1d")
    assert req["state"] == "pending"
    assert (
        access.request("erin", dataset="users", purpose="analytics", duration="91d").status_code
        == 422
    )


# --- break-glass for policy ---------------------------------------------------------------


def test_policy_break_glass_applies_now_flagged_until_another_person_signs_off(
    access: Access,
) -> None:
    rule = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    no_reason = access.propose("admin", [rule], break_glass=True)
    assert no_reason.status_code == 422
    r = access.propose("admin", [rule], break_glass=True, reason="incident 42")
    assert r.status_code == 200 and r.json()["state"] == "applied", r.text
    change = r.json()["change"]
    assert (change["break_glass"], change["needs_review"]) == (True, True)
    assert access.read("mallory", "pins", purpose="analytics", limit=1).status_code == 200
    flagged = [e for e in access.events("policy.") if e["details"].get("change_id") == change["id"]]
    assert flagged and all(e["details"]["break_glass"] is True for e in flagged)
    assert [c["id"] for c in _changes(access, needs_review=True)] == [change["id"]]
    _service_account(access, "ops-bot", ["admin"])
    before = access.fingerprint()
    assert _act(access, "admin", change["id"], "sign-off").status_code == 403
    assert _act(access, "ops-bot", change["id"], "sign-off").status_code == 403
    assert _act(access, "mallory", change["id"], "sign-off").status_code == 404
    assert access.fingerprint() == before
    signed = _act(access, "ada", change["id"], "sign-off", comment="checked")
    assert signed.status_code == 200 and signed.json()["signed_off_by"] == "ada"
    assert _changes(access, needs_review=True) == []


def test_a_service_account_cannot_break_glass_on_policy(access: Access) -> None:
    _service_account(access, "ops-bot", ["admin"])
    before = access.fingerprint()
    r = access.propose(
        "ops-bot", ["p, mallory, acme, pins, *, analytics, read, allow, ,"],
        break_glass=True, reason="x",
    )  # fmt: skip
    assert r.status_code == 403 and "reviewers are people" in r.json()["detail"]
    assert access.fingerprint() == before


# --- jobs, an unreachable store, bootstrap ------------------------------------------------


def test_job_tokens_neither_review_requests_nor_changes(access: Access) -> None:
    from warden.access import changes, service
    from warden.errors import Forbidden
    from warden.identity.service import Caller

    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    change = _proposed(access.propose("admin", ["p, mallory, acme, pins, *, *, read, allow, ,"]))
    with access.w.state.sessions() as db:
        ada = db.execute(text("SELECT id FROM principal WHERE name = 'ada'")).scalar()
    job = Caller("ada", "job", "acme", ada, on_behalf_of="ada", job_id="j1", segment="ml")
    state = access.w.state
    with state.sessions() as db, pytest.raises(Forbidden):
        service.review(db, state, job, req["id"], "approve", "")
    with state.sessions() as db, pytest.raises(Forbidden):
        changes.review(db, state, job, change["id"], "approve", "")
    with state.sessions() as db, pytest.raises(Forbidden):
        changes.sign_off(db, state, job, change["id"], "")


def test_changes_fail_closed_when_the_policy_store_is_unreachable(access: Access) -> None:
    change = _proposed(access.propose("admin", ["p, mallory, acme, pins, *, *, read, allow, ,"]))
    with access.w.state.engine.begin() as conn:
        conn.execute(text("DROP TABLE policy_state"))
    for r in (
        access.propose("admin", ["p, erin, acme, pins, *, *, read, allow, ,"]),
        access.propose("admin", ["p, alice, acme, pins, *, *, *, deny, ,"]),
        _act(access, "ada", change["id"], "approve"),
    ):
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "PolicyUnavailable"
    with access.w.state.engine.connect() as conn:
        states = conn.execute(text("SELECT state FROM reviewed_change")).scalars().all()
    assert states == ["pending"]


def test_bootstrap_is_the_one_unreviewed_change_and_says_so(access: Access) -> None:
    actions = [e["action"] for e in access.events("policy.")]
    assert actions[0] == "policy.bootstrap"
    first = access.events("policy.bootstrap")[0]
    assert first["details"]["bootstrap"] is True and first["actor"] == "admin"


# --- hooks for other areas, and expiry ----------------------------------------------------


def test_a_pending_change_expires_and_can_no_longer_be_approved(access: Access) -> None:
    change = _proposed(access.propose("admin", ["p, mallory, acme, pins, *, *, read, allow, ,"]))
    access.clock.advance(hours=access.w.state.settings.access_pending_ttl_hours + 1)
    r = _act(access, "ada", change["id"], "approve")
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert access.read("mallory", "pins", purpose="analytics").status_code == 404
    assert _changes(access)[0]["state"] == "expired"


def test_registered_change_checks_refuse_proposals_and_approvals_alike(
    access: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warden.errors import Unprocessable
    from warden.policy import changes as policy_changes

    rule = "p, mallory, acme, pins, *, *, read, allow, ,"
    pending = _proposed(access.propose("admin", [rule]))
    refusing: list[bool] = []

    def check(db: Any, add: Any, remove: Any) -> None:
        if refusing:
            raise Unprocessable("mixed raw and masked exposure")

    monkeypatch.setattr(policy_changes, "CHANGE_CHECKS", [check])
    refusing.append(True)
    before = access.fingerprint()
    assert access.propose("admin", [rule]).status_code == 422
    assert _act(access, "ada", pending["id"], "approve").status_code == 422
    assert access.fingerprint() == before


def test_class_lowering_is_a_reviewed_change_once_the_catalog_registers_it(
    access: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warden.access import changes
    from warden.errors import Conflict
    from warden.identity.service import Caller

    state = access.w.state
    with state.sessions() as db:
        ids = dict(db.execute(text("SELECT name, id FROM principal")).all())
    admin = Caller("admin", "person", "acme", ids["admin"])
    ada = Caller("ada", "person", "acme", ids["ada"])
    with state.sessions() as db, pytest.raises(Conflict):
        changes.propose_classification(db, state, admin, "users", "internal", "x")
    applied: list[str] = []
    monkeypatch.setitem(
        changes._APPLIERS, "classification", lambda db, st, who, c: applied.append(who.name)
    )
    with state.sessions() as db:
        outcome = changes.propose_classification(db, state, admin, "users", "internal", "why")
        assert outcome.change is not None and outcome.change.state == "pending"
        change_id = outcome.change.id
        db.commit()
    with state.sessions() as db:
        with pytest.raises(Exception, match="proposer never approves"):
            changes.review(db, state, admin, change_id, "approve", "")
        db.rollback()
        done = changes.review(db, state, ada, change_id, "approve", "ok")
        db.commit()
    assert done.applied and applied == ["ada"]
