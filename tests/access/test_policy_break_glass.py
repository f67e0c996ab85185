"""Separation of duties through policy break-glass (found by a red-team review).

An access break-glass needs `sys:break_glass`, is short-lived and always keeps identifier
columns masked (`access.service.granted_masked`). A *policy* break-glass needs only
`sys:policy manage`, never expires, and may name a role the proposer holds (or a service
account they own): `_refuse_bypass` only refuses a rule whose subject is the proposer's own
name. So one admin, alone, reads raw identifiers from now on; the sign-off comes (or not)
after the data left."""

from __future__ import annotations

from tests.access.conftest import Access

ADMIN_RAW_USERS = "p, role:admin, acme, users, *, *, read, allow, ,"


def test_policy_break_glass_never_widens_the_proposers_own_reading(access: Access) -> None:
    assert access.read("admin", "users", purpose="analytics").status_code != 200
    r = access.propose("admin", [ADMIN_RAW_USERS], break_glass=True, reason="incident 7")
    # What the fix should answer: a break-glass rule that reaches its proposer (by a role
    # they hold) needs someone else, like `p, admin, ...` does.
    assert r.status_code == 403, r.text
    assert access.read("admin", "users", purpose="analytics").status_code != 200


def test_policy_break_glass_through_a_role_hands_the_proposer_raw_identifiers(
    access: Access,
) -> None:
    """The same attack, asserting on what leaves: raw user ids, with no second person (an
    access break-glass would have masked them), and no expiry."""
    access.propose("admin", [ADMIN_RAW_USERS], break_glass=True, reason="incident 7")
    access.clock.advance(days=30)  # an access break-glass ends within the hour
    r = access.read("admin", "users", purpose="analytics", columns=["user_id"], limit=5)
    leaked = r.status_code == 200 and "user_id" not in r.headers.get(
        "x-warden-masked-columns", ""
    ).split(",")
    assert not leaked, (
        "admin alone, 30 days after a policy break-glass, reads raw user_id:"
        f" {access.frame(r)['user_id'].to_list()}"
    )


def test_policy_break_glass_needs_the_break_glass_right(access: Access) -> None:
    """Managing policy is not enough to apply a widening change before anyone looks."""
    access.reviewed_rules(["p, erin, acme, sys:policy, *, *, manage, allow, ,"], reason="steward")
    rule = "p, mallory, acme, pins, *, *, read, allow, ,"
    r = access.propose("erin", [rule], break_glass=True, reason="incident 8")
    assert r.status_code == 403 and "sys:break_glass" in r.json()["detail"], r.text
    assert access.read("mallory", "pins", purpose="analytics").status_code != 200
    # the same change, proposed for review, is erin's to make
    assert access.propose("erin", [rule], reason="for review").status_code in (200, 201, 202)


def test_policy_break_glass_through_an_owned_service_account_is_refused(access: Access) -> None:
    made = access.http.post(
        "/v1/principals",
        json={"name": "admin-bot", "kind": "service", "owner": "admin"},
        headers=access.as_("admin"),
    )
    assert made.status_code in (200, 201), made.text
    rule = "p, admin-bot, acme, users, *, *, read, allow, ,"
    r = access.propose("admin", [rule], break_glass=True, reason="incident 9")
    assert r.status_code == 403, r.text
