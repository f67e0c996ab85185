"""A shard's positions count only the rows the reader's policy shows (red team 17a).

erin (role:analyst_eu) reads `engagements` under the row filter `region = EU`. A shard took
the rows whose position in the version's *file* is rank modulo world, numbered before the
policy's filter: reading every shard of two coprime worlds gives each of her rows its exact
position in the file, so the gap between two of her rows is the number of rows the policy
hides from her between them. `engagements` is an event log stored in the order of its public
`ts` (catalog/order.py), so she learned how many non-EU engagements there are and when each
happened, to within the times of her own neighbouring rows: rows a policy filters out.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl

from warden.catalog.service import load_view
from warden.db.session import unit_of_work

BODY = {"purpose": "analytics", "columns": ["pin_id", "board_id", "action", "ts", "region"]}


def _frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def test_shard_positions_count_only_rows_the_policy_shows(warden: Any) -> None:
    with unit_of_work(warden.state.sessions) as db:
        view = load_view(db, warden.state.settings.datasets_dir, "acme", "engagements")
    stored = pl.read_parquet(view.path)
    assert stored["ts"].is_sorted()  # a log: kept in its time order, ties shuffled
    hidden = stored.filter(pl.col("region") != "EU").height
    assert hidden > 0  # the policy hides rows from erin

    whole = _frame(warden.read("erin", "engagements", **BODY))
    assert whole.height == stored.height - hidden
    for world in (2, 3, 7):
        for rank in range(world):
            shard = {"rank": rank, "world": world}
            part = _frame(warden.read("erin", "engagements", shard=shard, **BODY))
            # her rows at positions rank, rank + world, ... of what she may see: the shard
            # says nothing of where the hidden rows stand
            assert part.equals(whole.gather(range(rank, whole.height, world))), (world, rank)
    # and a limited shard is the head of that shard (the first-rows path numbers alike)
    shard = {"rank": 1, "world": 3}
    limited = _frame(warden.read("erin", "engagements", shard=shard, limit=7, **BODY))
    assert limited.equals(whole.gather(range(1, whole.height, 3)).head(7))
