"""A masked identifier column is masked whatever it holds, or the read is refused (audited);
never a 500 that leaves no audit event of the attempt (red team 17a).

A job's output makes every column whose name ends in `_id` an identifier, whatever its type
(jobs/outputs.py), and an operator may declare any column one. A column of lists or structs
of ids (`friend_id: [3, 9]`) failed every masked read of it in the token table (a list is no
dict key), and a Boolean one built its tokens as integers into a text column: 500, and the
read's attempt was in no audit event.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from tests.serving import add_rules_as_admin, register_as_admin
from warden.audit.models import AuditEvent
from warden.catalog.service import ColumnInfo

IDS = {
    "list": pl.Series("friend_id", [[3, 9], [4], None, [3, 9]]),
    "struct": pl.Series("friend_id", [{"a": 3}, {"a": 4}, None, {"a": 3}]),
    "bool": pl.Series("friend_id", [True, False, None, True]),
}


def _friends(warden: Any, ids: pl.Series) -> None:
    """A dataset `friends` (friend_id, n) that erin reads for analytics, friend_id masked."""
    source = Path(warden.state.settings.data_dir) / "src-friends.parquet"
    pl.DataFrame([ids, pl.Series("n", [1, 2, 3, 4])]).write_parquet(source)
    dtype = str(pl.read_parquet_schema(source)["friend_id"])
    columns = [
        ColumnInfo("friend_id", dtype, "pii", "out_friends"),
        ColumnInfo("n", "Int64", "internal"),
    ]
    register_as_admin(
        warden, "friends", source, columns, identifier_columns=["friend_id"],
        allowed_purposes=["analytics"],
    )  # fmt: skip
    add_rules_as_admin(
        warden,
        [
            ("p", ("erin", "acme", "friends", "friend_id", "analytics", "mask", "allow", "", "")),
            ("p", ("erin", "acme", "friends", "n", "analytics", "read", "allow", "", "")),
        ],
    )


def _reads(warden: Any) -> list[AuditEvent]:
    with warden.state.sessions() as db:
        query = select(AuditEvent).where(
            AuditEvent.action == "dataset.read", AuditEvent.dataset == "friends"
        )
        return list(db.scalars(query))


@pytest.mark.parametrize("kind", IDS)
@pytest.mark.parametrize(
    "where", [[], [{"column": "friend_id", "op": "not_null"}]], ids=["whole", "filtered"]
)
def test_identifier_column_that_cannot_be_masked_is_refused(
    warden: Any, kind: str, where: list[dict[str, Any]]
) -> None:
    ids = IDS[kind]
    _friends(warden, ids)
    for limit in (None, 2):
        before = len(_reads(warden))
        r = warden.read("erin", "friends", purpose="analytics", where=where, limit=limit)
        assert r.status_code in (200, 422), (r.status_code, r.text[:300])
        events = _reads(warden)[before:]
        assert len(events) == 1  # the attempt is audited, whatever its outcome
        if r.status_code == 422:
            assert events[0].decision == "deny" and "cannot be masked" in r.json()["detail"]
            continue
        got = pl.read_ipc_stream(io.BytesIO(r.content))["friend_id"]
        raw = {str(v) for v in ids.to_list() if v is not None}
        assert not {str(v) for v in got.to_list() if v is not None} & raw
        assert events[0].decision == "allow" and events[0].rows == got.len()
