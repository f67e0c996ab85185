"""A masked grant to someone the log shows reading the same entity's identifiers raw is refused
(red team 18: mixed exposure was judged on the rules as they stand, not on what was read).

The attack (an admin's token and a reviewer, each doing something routine):

1. bob is given `users.user_id` raw for analytics (reviewed) and reads it: user ids and regions.
2. His raw rule is removed, leaving the masked one (a narrowing applies at once). He reads
   `users` again: the same version comes back in the same row order, so zipping the two
   reads maps every pseudonym to its user id.
3. He asks for `engagements` (its `user_id` is granted masked) and two stewards approve: by
   the rules he now sees `user` only masked, so no mixed exposure was found.
4. He reads `engagements` and his dictionary turns every pseudonym back into a user id
   (one key per entity and tenant): each engagement is re-linked to its raw user.

What must hold: the approval is refused (403, mixed exposure, naming the raw read), because
the log shows bob read `user` identifiers raw, whatever his rules say today. The narrowing
itself stays possible (it exposes nothing he had not read), and a grant to someone who only
ever read masked is untouched. The raw read counts through a job or a service account too.
"""

from __future__ import annotations

from typing import Any

from tests.access.conftest import Access

RAW = "p, bob, acme, users, user_id, analytics, read, allow, ,"
MASKED = [
    "p, bob, acme, users, user_id, analytics, mask, allow, ,",
    "p, bob, acme, users, region, analytics, read, allow, ,",
    "p, bob, acme, engagements, *, *, browse, allow, ,",  # he may ask for it
]


def _dictionary(access: Access) -> dict[str, object]:
    """bob's reads of `users` raw and then masked, zipped: pseudonym -> user id."""
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw = access.frame(
        access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    )
    r = access.propose("admin", remove=[RAW], reason="bob sees user ids masked now")
    assert r.status_code == 200, r.text  # a narrowing: applied at once, never refused
    masked_read = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    assert "user_id" in masked_read.headers["x-warden-masked-columns"]
    masked = access.frame(masked_read)
    assert masked["region"].to_list() == raw["region"].to_list()  # one version, one order
    return dict(zip(masked["user_id"].to_list(), raw["user_id"].to_list(), strict=True))


def relink_after_narrowing(access: Any, raw: Any) -> tuple[int, Any]:
    """After bob's raw read of `users` (`raw`, its frame): the narrowing, his masked read zipped
    with the raw one (pseudonym -> user id), his request for `engagements` and both stewards'
    approvals, through `access` (a harness of this process or another's): (engagements he
    re-linked, the first answer that was not a success, else the last review)."""
    narrowed = access.propose("admin", remove=[RAW], reason="bob sees user ids masked now")
    if narrowed.status_code != 200:
        return 0, narrowed
    masked_read = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    if masked_read.status_code != 200:
        return 0, masked_read
    masked = access.frame(masked_read)
    dictionary = dict(zip(masked["user_id"].to_list(), raw["user_id"].to_list(), strict=True))
    req = access.ask("bob", dataset="engagements", columns=["user_id", "action"],
                     purpose="analytics", duration="1d")  # fmt: skip
    for steward in ("sam", "tess"):
        review = access.review(steward, req["id"], "approve", "ok")
        if review.status_code != 200:
            return 0, review
    if access.show("bob", req["id"])["state"] != "approved":
        return 0, review
    read = access.read("bob", "engagements", purpose="analytics", columns=["user_id", "action"])
    return sum(p in dictionary for p in access.frame(read)["user_id"].to_list()), review


def _ask_for_engagements(access: Access) -> tuple[str, Any]:
    """bob asks for `engagements` with its `user_id` (granted masked), sam approves (pii: two
    stewards) and tess's approval would grant it: her answer."""
    req = access.ask("bob", dataset="engagements", columns=["user_id", "action"],
                     purpose="analytics", duration="1d")  # fmt: skip
    access.approve("sam", req["id"])
    return req["id"], access.review("tess", req["id"], "approve", "ok")


def _refused_for_a_raw_read(review: Any) -> None:
    assert review.status_code == 403, review.text
    assert "read raw in audit event" in review.json()["detail"]


def test_masked_grant_after_a_raw_read_is_refused(access: Access) -> None:
    dictionary = _dictionary(access)
    req_id, review = _ask_for_engagements(access)
    relinked = 0
    if review.status_code == 200 and access.show("bob", req_id)["state"] == "approved":
        read = access.read("bob", "engagements", purpose="analytics", columns=["user_id", "action"])
        relinked = sum(p in dictionary for p in access.frame(read)["user_id"].to_list())
    assert relinked == 0, f"bob re-linked {relinked} engagements to raw user ids"
    assert review.status_code == 403, review.text
    assert "mixed exposure" in review.json()["detail"] and "read raw" in review.json()["detail"]
    assert access.show("bob", req_id)["state"] == "pending"
    refused = [e for e in access.events("http.refused") if e["actor"] == "tess"]
    assert refused and "mixed exposure" in (refused[-1]["reason"] or ""), refused


def test_masked_grant_after_only_masked_reads_is_approved(access: Access) -> None:
    access.add_person("bob", [])
    access.reviewed_rules(MASKED, reason="bob sees user ids masked")
    assert access.read("bob", "users", purpose="analytics", columns=["user_id"]).status_code == 200
    req_id, review = _ask_for_engagements(access)
    assert review.status_code == 200
    assert access.show("bob", req_id)["state"] == "approved"


def test_raw_read_by_an_owned_service_account_counts_as_its_owner(access: Access) -> None:
    access.add_person("bob", [])
    body = {"name": "bob-bot", "kind": "service", "roles": [], "owner": "bob"}
    assert (
        access.http.post("/v1/principals", json=body, headers=access.as_("admin")).status_code
        == 201
    )
    t = access.http.post("/v1/principals/bob-bot/tokens", json={}, headers=access.as_("admin"))
    access.approve_change("ada", t.json()["change_id"])
    access.w.tokens["bob-bot"] = t.json()["token"]
    bot_raw = "p, bob-bot, acme, users, user_id, analytics, read, allow, ,"
    access.reviewed_rules([bot_raw, "p, bob, acme, engagements, *, *, browse, allow, ,"])
    read = access.read("bob-bot", "users", purpose="analytics", columns=["user_id"])
    assert read.status_code == 200 and not read.headers.get("x-warden-masked-columns")
    assert access.propose("admin", remove=[bot_raw]).status_code == 200  # narrowing
    _refused_for_a_raw_read(_ask_for_engagements(access)[1])


def test_raw_read_by_a_job_counts_as_its_launcher(access: Access) -> None:
    from tests.sealed_rows import job_read, job_token_of, sandbox_of

    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    token = job_token_of(access.w, sandbox_of(access.w, "bob", ["users"], "analytics"))
    read = job_read(access.w, token, "users", purpose="analytics", columns=["user_id"])
    assert read.status_code == 200 and not read.headers.get("x-warden-masked-columns")
    assert access.propose("admin", remove=[RAW]).status_code == 200  # narrowing
    _refused_for_a_raw_read(_ask_for_engagements(access)[1])
