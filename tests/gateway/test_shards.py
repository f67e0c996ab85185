"""Shards for distributed training: `shard={"rank", "world"}` takes the rows whose position in
the dataset version's file is rank modulo world; the shards are disjoint and cover the answer."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.gateway.test_streaming import COLUMNS, big_engagements
from warden.sdk import Client


def frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def partition_holds(whole: pl.DataFrame, parts: list[pl.DataFrame]) -> None:
    """The parts are a partition of `whole`: as many rows, and the same rows (as a multiset,
    so a row in two shards, or in none, shows)."""
    assert sum(p.height for p in parts) == whole.height
    joined = pl.concat(parts)
    assert joined.sort(joined.columns).equals(whole.sort(whole.columns))


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_the_answer(warden: Any, world: int) -> None:
    body = {
        "purpose": "training",
        "columns": ["user_id", "pin_id", "action", "ts"],
        "where": [{"column": "action", "op": "ne", "value": "hide"}],
    }
    whole = frame(warden.read("alice", "engagements", **body))
    parts = [
        frame(warden.read("alice", "engagements", shard={"rank": r, "world": world}, **body))
        for r in range(world)
    ]
    partition_holds(whole, parts)
    if world > 1:
        assert all(0 < p.height < whole.height for p in parts)
    again = frame(warden.read("alice", "engagements", shard={"rank": 0, "world": world}, **body))
    assert again.equals(parts[0])  # deterministic


def test_a_shard_is_audited_with_the_read(warden: Any) -> None:
    r = warden.read(
        "alice",
        "engagements",
        purpose="training",
        columns=["pin_id"],
        shard={"rank": 1, "world": 4},
    )
    frame(r)
    (event,) = [
        e
        for e in warden.audit_events(actor="alice")
        if e["id"] == r.headers["x-warden-audit-event"]
    ]
    assert event["details"]["shard"] == {"rank": 1, "world": 4, "by": "position"}


@pytest.mark.parametrize(
    "shard", [{"rank": 2, "world": 2}, {"rank": -1, "world": 2}, {"rank": 0, "world": 0}]
)
def test_a_bad_shard_is_a_clear_4xx_and_audited(warden: Any, shard: dict[str, int]) -> None:
    r = warden.read("alice", "engagements", purpose="training", columns=["pin_id"], shard=shard)
    assert r.status_code == 422
    assert set(r.json()) == {"error", "detail"} and "shard" in r.json()["detail"]
    assert warden.audit_events(actor="alice")[0]["decision"] == "deny"


@pytest.mark.usefixtures("big_world")
def test_shards_of_a_streamed_read_are_a_partition_too(live_warden: Any, tmp_path: Path) -> None:
    big_engagements(live_warden, tmp_path)
    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as client:
        whole = client.read("engagements", purpose="training", columns=COLUMNS)
        parts = [
            client.read("engagements", purpose="training", columns=COLUMNS, shard=(r, 3))
            for r in range(3)
        ]
    partition_holds(whole, parts)


def test_a_read_pins_an_earlier_version_so_ranks_agree(live_warden: Any, tmp_path: Path) -> None:
    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as client:
        before, info = client.read_with_info("engagements", purpose="training", columns=COLUMNS)
        old = info["x-warden-dataset-version"]
        big_engagements(live_warden, tmp_path, rows=300_000)
        parts = [
            client.read(
                "engagements", purpose="training", columns=COLUMNS, shard=(r, 2), version=old
            )
            for r in range(2)
        ]
        current = client.read("engagements", purpose="training", columns=COLUMNS)
    partition_holds(before, parts)
    assert current.height == 300_000 != before.height
    (event,) = [
        e
        for e in live_warden.audit_events(actor="alice")
        if (e["details"] or {}).get("as_of") and (e["details"] or {})["shard"]["rank"] == 1
    ]
    assert event["dataset_version"] == old and event["details"]["as_of"] == old


def test_a_version_that_does_not_exist_is_a_clear_404_and_audited(warden: Any) -> None:
    missing = "sha256:" + "0" * 64
    r = warden.read("alice", "engagements", purpose="training", version=missing)
    assert r.status_code == 404
    assert r.json() == {
        "error": "NotFound",
        "detail": f"dataset 'engagements' has no version {missing!r}",
    }
    assert warden.audit_events(actor="alice")[0]["decision"] == "deny"
    # a dataset the caller cannot see still answers as if it did not exist
    hidden = warden.read("mallory", "engagements", purpose="training", version=missing)
    assert hidden.json() == {"error": "NotFound", "detail": "no dataset named 'engagements'"}
    bad = warden.read("alice", "engagements", purpose="training", version="latest")
    assert bad.status_code == 422 and bad.json()["error"] == "Unprocessable"
