"""Mixed exposure: no subject may see one entity's identifiers raw somewhere and pseudonymised
elsewhere (the join that re-identified 438 of 439 users), unless an audited exception rule
says so. Every path that changes rules is tried: policy rules, role links (direct, chained,
in one change), principals created with roles, grants from reviewed requests, removing a deny,
removing the exception, and a rule smuggled in by database write access."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from warden.audit.models import AuditEvent
from warden.policy import store
from warden.policy.exposure import IdColumn, mixed_exposure

RAW_GOLD = "p, role:ml_engineer, acme, gold, user_id, evaluation, read, allow, ,"
EXCEPTION = "p, role:ml_engineer, acme, entity:user, *, *, expose_mixed, allow, ,"


def change(w: Any, add: list[str] = (), remove: list[str] = ()) -> Any:  # type: ignore[assignment]
    return w.http.post(
        "/v1/policy/rules",
        json={"add": list(add), "remove": list(remove), "reason": "test"},
        headers=w.as_("admin"),
    )


def version(w: Any) -> int:
    with w.state.sessions() as db:
        return store.current_version(db)


def refused(w: Any, add: list[str] = (), remove: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    before = version(w)
    r = change(w, add, remove)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["error"] == "Forbidden"
    assert "mixed exposure" in body["detail"] and "user identifiers" in body["detail"]
    assert version(w) == before  # nothing changed
    return body  # type: ignore[no-any-return]


def ok(w: Any, add: list[str] = (), remove: list[str] = ()) -> None:  # type: ignore[assignment]
    """Applied: at once if narrowing, else proposed and approved by a second admin."""
    r = change(w, add, remove)
    if r.status_code == 202:
        approve(w, r.json()["change"]["id"])
        return
    assert r.status_code == 200, r.text


def approve(w: Any, change_id: str) -> None:
    """Widening changes are reviewed (tests/access/test_reviewed_changes.py): ada, a second
    admin from bootstrap, approves what the admin proposed."""
    from tests.access.conftest import bootstrap_people

    if "ada" not in w.tokens:
        bootstrap_people(w, {"ada": ["admin"]})
    r = w.http.post(f"/v1/policy/changes/{change_id}/approve", json={}, headers=w.as_("ada"))
    assert r.status_code == 200 and r.json()["state"] == "applied", r.text


def gold_user_ids(w: Any, who: str = "alice") -> pl.Series:
    r = w.read(who, "gold", purpose="evaluation", columns=["user_id"], limit=50)
    assert r.status_code == 200, r.text
    return pl.read_ipc_stream(io.BytesIO(r.content))["user_id"]


def raw_gold(w: Any) -> set[int]:
    path = w.state.settings.datasets_dir / "gold" / "*.parquet"
    return set(pl.read_parquet(path)["user_id"].to_list())


def test_the_seed_masks_gold_user_ids_for_ml_engineers(warden: Any) -> None:
    """The issue's join attack: the seed gave raw gold.user_id beside masked engagements."""
    assert not set(gold_user_ids(warden).to_list()) & raw_gold(warden)


@pytest.mark.parametrize(
    "rule",
    [
        RAW_GOLD,
        "p, role:ml_engineer, acme, gold, *, evaluation, read, allow, ,",  # the old seed rule
        "p, role:ml_engineer, acme, gold, user_id, *, read, allow, ,",
        "p, role:ml_engineer, acme, gold, user_id, evaluation, *, allow, ,",
        "p, role:ml_engineer, acme, users, user_id, analytics, read, allow, ,",  # same dataset
        "p, role:ml_engineer, acme, g*, *, *, read, allow, ,",  # a pattern
        "p, alice, acme, gold, user_id, evaluation, read, allow, ,",  # the person, not the role
    ],
)
def test_raw_beside_masked_is_refused(warden: Any, rule: str) -> None:
    body = refused(warden, [rule])
    assert "entity:user" in body["detail"]  # it says how to ask for an exception
    assert not set(gold_user_ids(warden).to_list()) & raw_gold(warden)


def test_through_a_role_link_either_order_and_chained(warden: Any) -> None:
    raw_x = "p, role:x, acme, gold, user_id, evaluation, read, allow, ,"
    ok(warden, [raw_x])  # raw alone exposes nothing masked
    refused(warden, ["g, role:x, role:ml_engineer, acme"])
    ok(warden, ["g, role:y, role:ml_engineer, acme"])
    refused(warden, [raw_x.replace("role:x", "role:y")])
    # two links deep
    ok(warden, ["g, role:z, role:w, acme", "g, role:w, role:ml_engineer, acme"])
    refused(warden, [raw_x.replace("role:x", "role:z")])
    # a person holding both roles
    ok(warden, ["g, bob, role:x, acme"])
    refused(warden, ["g, bob, role:ml_engineer, acme"])
    # both halves in one change
    refused(warden, ["g, role:v, role:ml_engineer, acme", raw_x.replace("role:x", "role:v")])


def test_through_principal_creation_with_roles(warden: Any) -> None:
    ok(warden, ["p, role:support, acme, users, user_id, analytics, read, allow, ,"])
    r = warden.http.post(
        "/v1/principals",
        json={"name": "bob", "roles": ["support", "ml_engineer"]},
        headers=warden.as_("admin"),
    )
    assert r.status_code == 403, r.text
    people = warden.http.get("/v1/principals", headers=warden.as_("admin")).json()["principals"]
    assert "bob" not in {p["name"] for p in people}  # the principal was not created either
    r = warden.http.post(
        "/v1/principals", json={"name": "bob", "roles": ["support"]}, headers=warden.as_("admin")
    )
    assert r.status_code == 202, r.text  # created; the role is a reviewed change
    approve(warden, r.json()["change_id"])
    r = warden.http.post(
        "/v1/principals/bob/roles", json={"role": "ml_engineer"}, headers=warden.as_("admin")
    )
    assert r.status_code == 403, r.text


def test_removing_a_deny_that_hid_the_raw_side_is_refused(warden: Any) -> None:
    deny = "p, role:y, acme, gold, user_id, *, *, deny, ,"
    ok(
        warden,
        [
            deny,
            "p, role:y, acme, gold, user_id, evaluation, read, allow, ,",
            "g, role:y, role:ml_engineer, acme",
        ],
    )
    refused(warden, remove=[deny])


def test_an_explicit_exception_allows_it_and_is_audited_like_any_rule(warden: Any) -> None:
    refused(warden, [RAW_GOLD])
    ok(warden, [EXCEPTION])
    ok(warden, [RAW_GOLD])
    assert set(gold_user_ids(warden).to_list()) <= raw_gold(warden)  # raw now, by exception
    with warden.state.sessions() as db:
        changes = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "policy.change")))
    added = [line.strip() for e in changes for line in e.details["added"]]
    assert EXCEPTION in added
    # The exception cannot be dropped while the raw side is still there...
    refused(warden, remove=[EXCEPTION])
    # ... nor cancelled for one holder by a deny ...
    refused(warden, ["p, alice, acme, entity:user, *, *, expose_mixed, deny, ,"])
    # ... but both can go together.
    ok(warden, remove=[EXCEPTION, RAW_GOLD])
    assert not set(gold_user_ids(warden).to_list()) & raw_gold(warden)


def test_an_exception_covers_only_its_entity_and_its_holders(warden: Any) -> None:
    ok(warden, [EXCEPTION.replace("entity:user", "entity:pin")])
    refused(warden, [RAW_GOLD])
    ok(warden, ["p, role:other, acme, entity:user, *, *, expose_mixed, allow, ,"])
    refused(warden, [RAW_GOLD])


@pytest.mark.parametrize(
    "rule",
    [
        "p, role:ml_engineer, acme, entity:*, *, *, expose_mixed, allow, ,",
        "p, role:ml_engineer, acme, *, *, *, expose_mixed, allow, ,",
        "p, role:ml_engineer, acme, gold, *, *, expose_mixed, allow, ,",
        "p, role:ml_engineer, acme, entity:user, user_id, *, expose_mixed, allow, ,",
        "p, role:ml_engineer, acme, entity:user, *, evaluation, expose_mixed, allow, ,",
        "p, role:ml_engineer, acme, entity:user, *, *, read, allow, ,",
        "p, role:ml_engineer, acme, entity:User, *, *, expose_mixed, allow, ,",
    ],
)
def test_malformed_exceptions_are_invalid_rules(warden: Any, rule: str) -> None:
    r = change(warden, [rule])
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "Unprocessable"


def test_a_wildcard_allow_is_no_exception(warden: Any) -> None:
    # Casbin's matcher would let this match entity:user with act expose_mixed: not an exception
    ok(warden, ["p, role:ml_engineer, acme, entit*, *, *, *, allow, ,"])
    refused(warden, [RAW_GOLD])


def test_a_grant_that_would_add_the_masked_side_is_refused_at_approval(warden: Any) -> None:
    """bob reads users.user_id raw (support); a reviewed grant on engagements would hand him
    the pseudonymised side: the approval is refused and leaves nothing behind."""
    ok(warden, ["p, role:support, acme, users, user_id, analytics, read, allow, ,"])
    from tests.access.conftest import allow_browse, bootstrap_people

    # The stewards come from bootstrap: ones the admin created never approve for bob, whom
    # the admin created too (separation of duties, tests/access/test_reviewed_changes.py).
    bootstrap_people(warden, {"sam": ["steward"], "tess": ["steward"]})
    for name, roles in (("bob", ["support"]),):
        r = warden.http.post(
            "/v1/principals", json={"name": name, "roles": roles}, headers=warden.as_("admin")
        )
        assert r.status_code == 202, r.text  # created; the role is a reviewed change
        approve(warden, r.json()["change_id"])
        t = warden.http.post(f"/v1/principals/{name}/tokens", json={}, headers=warden.as_("admin"))
        approve(warden, t.json()["change_id"])  # a token for someone else is reviewed too
        warden.tokens[name] = t.json()["token"]
    allow_browse(warden, "bob")
    body = {
        "dataset": "engagements",
        "columns": ["user_id", "pin_id"],
        "purpose": "training",
        "duration": "1d",
        "justification": "model work",
    }
    req = warden.http.post("/v1/access/requests", json=body, headers=warden.as_("bob")).json()
    assert req["quorum"] == 2
    review = {"decision": "approve", "comment": "ok"}
    path = f"/v1/access/requests/{req['id']}/review"
    assert warden.http.post(path, json=review, headers=warden.as_("sam")).status_code == 200
    before = version(warden)
    last = warden.http.post(path, json=review, headers=warden.as_("tess"))
    assert last.status_code == 403, last.text
    assert "mixed exposure" in last.json()["detail"]
    assert version(warden) == before
    shown = warden.http.get(f"/v1/access/requests/{req['id']}", headers=warden.as_("bob")).json()
    assert (shown["state"], shown["grant_id"]) == ("pending", None)
    assert warden.read("bob", "engagements", purpose="training").status_code in (403, 404)
    # With an exception for bob, the same approval goes through (and masks user_id).
    ok(warden, ["p, bob, acme, entity:user, *, *, expose_mixed, allow, ,"])
    assert warden.http.post(path, json=review, headers=warden.as_("tess")).status_code == 200


def test_a_rule_smuggled_in_by_database_write_can_be_removed_but_not_built_on(
    warden: Any,
) -> None:
    """An insider writes the raw rule straight into casbin_rule. Cleaning it up is never
    blocked; an unrelated change is fine; a change that widens the exposure is refused."""
    from warden.db.session import unit_of_work
    from warden.policy.rules import split_line

    tokens = split_line(RAW_GOLD)
    assert tokens
    with unit_of_work(warden.state.sessions) as db:
        store.add_rules(db, [(tokens[0], tuple(tokens[1:]))])
    warden.state.policy.reload()
    ok(warden, ["p, role:analyst_eu, acme, pins, pin_id, analytics, read, allow, ,"])
    refused(warden, ["g, bob, role:ml_engineer, acme"])  # a new person in the exposed role
    refused(warden, ["p, role:ml_engineer, acme, users, user_id, analytics, read, allow, ,"])
    ok(warden, remove=[RAW_GOLD])
    ok(warden, ["g, bob, role:ml_engineer, acme"])


def _rule(line: str) -> tuple[str, tuple[str, ...]]:
    parts = [t.strip() for t in line.split(",")]
    return parts[0], tuple(parts[1:])


CATALOG = {
    "acme": [
        IdColumn("engagements", "user_id", "user", True),
        IdColumn("gold", "user_id", "user", True),
        IdColumn("pins", "pin_id", "pin", False),
    ]
}


def test_pure_function_expiry_blank_masks_and_tenants() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    masked = "p, role:m, acme, engagements, user_id, training, mask, allow, ,"
    raw = "p, role:m, acme, gold, user_id, evaluation, read, allow, ,"
    rules = [_rule(masked), _rule(raw)]
    [found] = mixed_exposure(rules, CATALOG, now=now)
    assert (found.subject, found.entity) == ("role:m", "user")
    # an expired exception is no exception; a live one is
    late = "p, role:m, acme, entity:user, *, *, expose_mixed, allow, g1, 2026-11-30T00:00:00Z"
    assert mixed_exposure([*rules, _rule(late)], CATALOG, now=now)
    live = late.replace("2026-11-30", "2026-12-30")
    assert mixed_exposure([*rules, _rule(live)], CATALOG, now=now) == []
    # an expired raw grant exposes nothing
    expired = raw.replace(", ,", ", g2, 2026-11-30T00:00:00Z")
    assert mixed_exposure([_rule(masked), _rule(expired)], CATALOG, now=now) == []
    # a masked column that is not an identifier is blanked, not pseudonymised: no link
    pins = [
        _rule("p, role:m, acme, pins, pin_id, training, mask, allow, ,"),
        _rule("p, role:m, acme, engagements, *, training, read, allow, ,"),
    ]
    cat = {"acme": [*CATALOG["acme"], IdColumn("engagements", "pin_id", "pin", False)]}
    assert mixed_exposure(pins, cat, now=now) == []
    # rules of another tenant do not mix with acme's catalog
    other = [_rule(masked.replace("acme", "globex")), _rule(raw)]
    assert mixed_exposure(other, CATALOG, now=now) == []


def test_policy_lint_live_checks_the_registered_catalog(
    warden: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset only the database knows (a job's output with user ids) is checked with
    --live; the seeded catalog alone cannot see it."""
    from typer.testing import CliRunner

    from tests.serving import register_as_admin
    from warden.catalog.service import ColumnInfo
    from warden.cli.main import app
    from warden.config import get_settings

    source = tmp_path / "recs.parquet"
    pl.DataFrame({"user_id": [1, 2], "score": [0.1, 0.2]}).write_parquet(source)
    register_as_admin(
        warden,
        "recs",
        source,
        [ColumnInfo("user_id", "Int64", "pii", "user"), ColumnInfo("score", "Float64", "internal")],
        identifier_columns=["user_id"],
        allowed_purposes=["inference"],
        derived_from=["engagements"],
    )
    rules = tmp_path / "r.csv"
    rules.write_text(
        "p, role:crm, acme, users, user_id, analytics, read, allow, ,\n"
        "p, role:crm, acme, recs, user_id, inference, mask, allow, ,\n"
    )
    monkeypatch.setenv("WARDEN_DATABASE_URL", warden.settings.database_url)
    get_settings.cache_clear()
    try:
        assert CliRunner().invoke(app, ["policy", "lint", str(rules)]).exit_code == 0
        live = CliRunner().invoke(app, ["policy", "lint", "--live", str(rules)])
        assert live.exit_code != 0
        assert f"{rules}:1:" in live.output and "recs.user_id" in live.output
    finally:
        get_settings.cache_clear()
