"""Mixed exposure through a principal one holds the keys of (found by a red-team review).

The exposure check (policy/exposure.py) looks at one subject at a time. A person who sees
`users.user_id` pseudonymised (alice, role:ml_engineer, for training) and owns a service
account that is given the same column raw sees the entity both ways: two reads of the same
version come back in the same row order, so zipping them maps every pseudonym to its user
id, and that dictionary un-masks every other dataset of the tenant (one key per entity and
tenant). The row-filter rule (`_refuse_filters_on_yourself`) already treats a principal one
owns or created as oneself; the exposure check does not."""

from __future__ import annotations

from tests.access.conftest import Access

BOT_RAW = "p, alice-bot, acme, users, *, analytics, read, allow, ,"


def _alice_owns_a_bot(access: Access) -> None:
    body = {"name": "alice-bot", "kind": "service", "roles": [], "owner": "alice"}
    r = access.http.post("/v1/principals", json=body, headers=access.as_("admin"))
    assert r.status_code == 201, r.text
    # alice may not mint it herself; the admin mints it for her, held until ada releases it
    t = access.http.post("/v1/principals/alice-bot/tokens", json={}, headers=access.as_("admin"))
    assert t.status_code == 202, t.text
    access.approve_change("ada", t.json()["change_id"])
    access.w.tokens["alice-bot"] = t.json()["token"]


def test_raw_identifiers_for_an_owned_service_account_are_a_mixed_exposure(
    access: Access,
) -> None:
    _alice_owns_a_bot(access)
    masked = access.read("alice", "users", purpose="training", columns=["user_id", "region"])
    assert masked.status_code == 200 and "user_id" in masked.headers["x-warden-masked-columns"]
    r = access.propose("admin", [BOT_RAW], reason="bot needs users")
    if r.status_code == 202:
        access.approve_change("ada", r.json()["change"]["id"])
    raw = access.read("alice-bot", "users", purpose="analytics", columns=["user_id", "region"])
    leaked = {}
    if raw.status_code == 200 and "user_id" not in raw.headers.get("x-warden-masked-columns", ""):
        a, b = access.frame(masked), access.frame(raw)
        if a.height == b.height and a["region"].to_list() == b["region"].to_list():
            leaked = dict(zip(a["user_id"].to_list(), b["user_id"].to_list(), strict=True))
    # What the fix should give: the change refused (403, mixed exposure of entity user for
    # alice through alice-bot), so no dictionary of pseudonym -> user id can be built.
    assert not leaked, f"alice maps {len(leaked)} pseudonyms to raw user ids, e.g. " + str(
        list(leaked.items())[:3]
    )
    assert r.status_code == 403, r.text
