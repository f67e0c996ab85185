"""A row filter on a column its readers see masked is reviewed, and `policy check` never shows
its raw value to them (red team 13: an exclusion filter re-linked a raw id to its pseudonym).

The attack, as found:

Attack (alice, `role:ml_engineer`: she sees `user_id` only as a keyed-hash pseudonym, in
every dataset of the tenant; no collusion needed):

1. An admin does something routine: "keep the test account out of training",
   `p2, role:ml_engineer, acme, engagements, user_id, ne, 41`. A row filter narrows, so it
   applies at once (`access.changes.change_rules`); it does not reach the admin.
2. alice asks `POST /v1/policy/check {"subject": "alice", "dataset": "engagements"}`: the
   answer's `row_filters` shows the rule with its raw value, `41`.
3. alice reads `users` (unfiltered; user_id masked) and `engagements` (now filtered), both
   for training, and takes the difference of their pseudonym sets: exactly one pseudonym
   is missing from engagements, the one of raw user 41 (every user has engagements).
4. She now holds (raw 41, pseudonym P): P is the same in `users`, `gold`, `latent_users`,
   so she reads user 41's region, signup day, gold slice, latent tastes... re-identified.

Leak: a raw identifier linked to its pseudonym by a reader the mask exists for; the
"filters compare masked values" rule protects caller filters only, while a policy filter
compares raw values on a column its subjects see masked, and `policy check` prints it.
Severity: medium/high (masked ids are the platform's central promise; one routine rule).

Suggested fix: refuse (or make a reviewed change that states this risk) any `p2` on an
identifier column for subjects who see that column masked or denied
(`policy/changes.py::assess` or a CHANGE_CHECK in `policy/exposure.py`); at the very least
`api/routes/policy.py::check` must not show the value of a filter on a column the subject
may not read raw. Filters on pseudonymised columns could be written as pseudonyms instead.
"""

from __future__ import annotations

import io

import polars as pl

from tests.access.conftest import Access


def _pseudonyms(access: Access, dataset: str) -> set[int]:
    got = access.read("alice", dataset, purpose="training", columns=["user_id"])
    assert got.status_code == 200, got.text
    assert got.headers["x-warden-masked-columns"] == "user_id"
    return set(pl.read_ipc_stream(io.BytesIO(got.content))["user_id"].to_list())


def _check(access: Access, subject: str, purpose: str) -> dict:  # type: ignore[type-arg]
    got = access.http.post(
        "/v1/policy/check",
        json={"subject": subject, "dataset": "engagements", "purpose": purpose},
        headers=access.as_(subject),
    )
    assert got.status_code == 200, got.text
    return got.json()  # type: ignore[no-any-return]


def test_an_exclusion_filter_does_not_reveal_the_excluded_users_pseudonym(
    access: Access,
) -> None:
    """The admin's routine exclusion is held for review (it would reach readers who see the
    column masked), so nothing is applied and alice singles out no pseudonym."""
    raw = pl.read_parquet(access.w.settings.datasets_dir / "engagements" / "*.parquet")
    victim = int(raw["user_id"][11])
    rule = f"p2, role:ml_engineer, acme, engagements, user_id, ne, {victim}"
    r = access.propose("admin", [rule], reason="keep the test account out of training")
    assert r.status_code == 202 and r.json()["state"] != "applied", r.text
    access.w.state.policy.ensure_fresh()
    assert not [f for f in _check(access, "alice", "training")["row_filters"]
                if f["column"] == "user_id"]  # fmt: skip
    singled_out = _pseudonyms(access, "users") - _pseudonyms(access, "engagements")
    assert singled_out == set(), "one pseudonym singled out: the excluded user's"


def test_an_approved_filter_on_a_masked_column_shows_its_reader_no_raw_value(
    access: Access,
) -> None:
    """Once another admin approved the exclusion, `policy check` still shows alice the filter
    (its column and op) but not its raw value, in the value or in the rule; a reader of the
    column raw (erin's region filter) still sees hers whole."""
    r = access.propose("admin", ["p2, role:ml_engineer, acme, engagements, user_id, ne, 41"])
    assert r.status_code == 202, r.text
    assert any("does not read it raw" in w for w in r.json()["change"]["widening"])
    access.approve_change("ada", r.json()["change"]["id"])
    access.w.state.policy.ensure_fresh()
    (shown,) = _check(access, "alice", "training")["row_filters"]
    assert (shown["column"], shown["op"], shown["value"]) == ("user_id", "ne", None)
    assert "41" not in shown["rule"]
    erin = _check(access, "erin", "analytics")
    assert [(f["column"], f["value"]) for f in erin["row_filters"]] == [("region", "EU")]
