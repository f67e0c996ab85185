"""A row filter on a column its author may not read raw is a reviewed change, whoever it
reaches (red team 13: put on someone else, it was an oracle for whoever reads the audit log).

The attack, as found:

Attack (an admin: `sys:*`, so `sys:policy manage` and `sys:audit read`, and no right to read
any data column at all):

1. The admin knows a person's raw user id from elsewhere (a support ticket) and wants what
   Warden hides: which pins that user engaged with, the user's region; raw identifiers are
   readable by nobody (`engagements.user_id`, `users.user_id` are masked for every role).
2. They add `p2, alice, acme, engagements, user_id, eq, <raw id>`: a row filter only ever
   removes rows, so `assess` calls it narrowing and `change_rules` applies it at once, no
   second person (`_refuse_filters_on_yourself` only refuses filters that reach their
   *author*).
3. alice keeps working: her next read of engagements (a training job, a notebook) is cut to
   the victim's rows, and its audit event records `rows`.
4. The admin reads `GET /v1/audit/events?actor=alice`: the row count is the victim's number
   of engagements. With `pin_id eq P` (or `region eq EU` on users) added beside it, each of
   alice's reads answers one yes/no about the raw id: the whole history, linked to the raw
   identifier, one read at a time; the admin never touches data and no reviewer ever sees a
   proposal. (alice is also silently starved of data: her training quietly runs on the
   victim's rows only.)

Leak: raw-identifier-linked facts (existence, activity count, region, engaged pins) to a
person who may read no column of those datasets. Severity: medium (needs a reader's regular
reads; an insider admin or anyone with `sys:policy manage` + an auditor's view).

Suggested fix (`warden/access/changes.py::change_rules` / `_refuse_filters_on_yourself`): a
row filter whose column the *author* may not read raw (masked or denied for them on that
dataset) is a reviewed change, whoever it reaches; or treat every p2 on an identifier column
as widening-for-review. (Alternatively `audit` could withhold `rows` of other principals'
reads from auditors who may not read the dataset, but the count is the audit's point.)
"""

from __future__ import annotations

import polars as pl

from tests.access.conftest import Access


def _raw(access: Access, dataset: str) -> pl.DataFrame:
    files = access.w.settings.datasets_dir / dataset / "*.parquet"
    return pl.read_parquet(files)


def _alice_rows(access: Access, dataset: str) -> int:
    events = [
        e
        for e in access.w.audit_events(actor="alice", dataset=dataset)
        if e["action"] == "dataset.read" and e["decision"] == "allow"
    ]
    assert events, "alice's read was not audited"
    return int(events[0]["rows"])


def test_a_row_filter_on_another_reader_is_no_unreviewed_oracle_on_raw_ids(
    access: Access,
) -> None:
    engagements = _raw(access, "engagements")
    victim = engagements["user_id"][11]
    truth = engagements.filter(pl.col("user_id") == victim).height
    assert 0 < truth < engagements.height
    # the admin may read nothing of engagements, raw or masked
    assert access.read("admin", "engagements", purpose="training").status_code in (403, 404)
    # alice sees user_id masked only: nobody reads it raw
    check = access.http.post(
        "/v1/policy/check",
        json={"subject": "alice", "dataset": "engagements", "purpose": "training"},
        headers=access.as_("alice"),
    ).json()
    assert {c["column"]: c["effect"] for c in check["columns"]}["user_id"] == "mask"

    r = access.propose(
        "admin",
        [f"p2, alice, acme, engagements, user_id, eq, {victim}"],
        reason="routine narrowing",
    )
    applied_at_once = r.status_code == 200 and r.json().get("state") == "applied"
    if applied_at_once:
        access.w.state.policy.ensure_fresh()
        got = access.read("alice", "engagements", purpose="training", columns=["pin_id"])
        assert got.status_code == 200, got.text
        learned = _alice_rows(access, "engagements")
        # the admin now knows the raw id's engagement count without reading any data
        assert learned != truth, (
            f"admin learned raw user {victim}'s engagement count ({learned}) from alice's "
            "audited read, through a row filter applied with no review"
        )
    # secure: a filter on a column its author may not read raw waits for another person
    assert not applied_at_once, r.text
