"""Mixed exposure through a service account one holds a token of (found by a red-team review).

The exposure check (policy/exposure.py, `owned_from_db`) counts what a principal's *owned*
service accounts read as its own: whoever owns one mints its tokens. But a token minted for
someone else (a reviewed change, `access.changes.propose_token`) puts another principal's
keys in the minter's hands too, and approving it ran no exposure check: alice, who sees
`users.user_id` pseudonymised, ends up holding a token of a service account that reads it
raw (owned by someone else, so the check never counted her), and zips the two reads into a
pseudonym -> user id dictionary for the whole tenant."""

from __future__ import annotations

from tests.access.conftest import Access, link_role

BOT_RAW = "p, feed-bot, acme, users, *, analytics, read, allow, ,"


def test_an_approved_token_for_a_raw_reader_is_a_mixed_exposure_for_its_holder(
    access: Access,
) -> None:
    # feed-bot belongs to olga (who reads nothing of users), and reads users raw: no one it
    # is counted for sees user ids masked, so the change passes the exposure check
    body = {"name": "feed-bot", "kind": "service", "roles": [], "owner": "olga"}
    made = access.http.post("/v1/principals", json=body, headers=access.as_("admin"))
    assert made.status_code == 201, made.text
    access.reviewed_rules([BOT_RAW], reason="feed needs users")
    # alice (ml_engineer: users.user_id masked for training) is also an admin of the tenant
    link_role(access.w, "alice", "admin")
    masked = access.read("alice", "users", purpose="training", columns=["user_id", "region"])
    assert masked.status_code == 200 and "user_id" in masked.headers["x-warden-masked-columns"]
    # she mints herself a token of feed-bot: refused at once (or, were it proposed, at
    # ada's approval), a mixed exposure of entity user for alice through feed-bot
    t = access.http.post("/v1/principals/feed-bot/tokens", json={}, headers=access.as_("alice"))
    approved = t
    if t.status_code == 202:
        approved = access.http.post(
            f"/v1/policy/changes/{t.json()['change_id']}/approve",
            json={"comment": "ok"},
            headers=access.as_("ada"),
        )
    leaked: dict[object, object] = {}
    if approved.status_code == 200:
        access.w.tokens["alice-as-bot"] = t.json()["token"]
        raw = access.read(
            "alice-as-bot", "users", purpose="analytics", columns=["user_id", "region"]
        )
        if raw.status_code == 200 and "user_id" not in raw.headers.get(
            "x-warden-masked-columns", ""
        ):
            a, b = access.frame(masked), access.frame(raw)
            if a.height == b.height and a["region"].to_list() == b["region"].to_list():
                leaked = dict(zip(a["user_id"].to_list(), b["user_id"].to_list(), strict=True))
    assert not leaked, f"alice maps {len(leaked)} pseudonyms to raw user ids, e.g. " + str(
        list(leaked.items())[:3]
    )
    assert approved.status_code == 403 and "mixed exposure" in approved.text, approved.text
