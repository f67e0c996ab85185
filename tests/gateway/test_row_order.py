"""Where a row stands never says whose it is: a version whose order follows an identifier is
stored shuffled, so neither row numbers, `limit` nor a shard's position turn a pseudonym back
into the raw id (found by a red-team review: `users` was stored sorted by `user_id`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from warden.catalog.order import follows_identifier, shuffled


def frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def _raw_ids(warden: Any, dataset: str) -> list[int]:
    """The raw ids in the order the catalog's current version stores them."""
    from warden.catalog.service import load_view
    from warden.db.session import unit_of_work

    with unit_of_work(warden.state.sessions) as db:
        view = load_view(db, warden.state.settings.datasets_dir, "acme", dataset)
    return pl.read_parquet(view.path)["user_id"].to_list()


@pytest.mark.parametrize("dictionary", ["users", "latent_users"])
def test_row_numbers_of_a_masked_read_do_not_give_raw_ids(warden: Any, dictionary: str) -> None:
    purpose = "evaluation"
    tokens = frame(warden.read("alice", dictionary, purpose=purpose, columns=["user_id"]))
    guess = {t: k + 1 for k, t in enumerate(tokens["user_id"].to_list())}  # "row k is user k+1"
    raw = _raw_ids(warden, dictionary)
    hits = sum(guess[t] == u for t, u in zip(tokens["user_id"].to_list(), raw, strict=True))
    assert hits / len(raw) < 0.01, f"{hits} of {len(raw)} pseudonyms re-identified by row number"


def test_neither_limit_nor_a_shard_singles_out_a_raw_id(warden: Any) -> None:
    n = len(_raw_ids(warden, "users"))
    everything = frame(warden.read("alice", "users", purpose="training", columns=["user_id"]))
    first = frame(warden.read("alice", "users", purpose="training", columns=["user_id"], limit=1))
    shard = frame(
        warden.read(
            "alice", "users", purpose="training", columns=["user_id"],
            shard={"rank": 41, "world": n},
        )
    )  # fmt: skip
    raw = _raw_ids(warden, "users")
    assert first["user_id"][0] == everything["user_id"][0]  # limit takes the stored order,
    assert shard.height == 1 and shard["user_id"][0] == everything["user_id"][41]  # a shard too,
    assert sum(r == i + 1 for i, r in enumerate(raw)) < n // 100  # and it is not the ids' order


def test_only_an_order_that_follows_an_identifier_is_shuffled(tmp_path: Path) -> None:
    n = 100_000  # a random order of this many rows stays under the threshold (z > 6)
    ids = pl.Series("user_id", range(1, n + 1), dtype=pl.Int64)
    sorted_file = tmp_path / "sorted.parquet"
    pl.DataFrame({"user_id": ids, "x": range(n)}).write_parquet(sorted_file)
    assert follows_identifier(sorted_file, ["user_id"]) == "user_id"
    descending = tmp_path / "descending.parquet"
    pl.DataFrame({"user_id": ids.reverse()}).write_parquet(descending)
    assert follows_identifier(descending, ["user_id"]) == "user_id"
    assert follows_identifier(sorted_file, []) is None
    mixed = shuffled(sorted_file, tmp_path / "mixed.parquet")
    assert follows_identifier(mixed, ["user_id"]) is None
    back = pl.read_parquet(mixed)
    assert sorted(back["user_id"].to_list()) == ids.to_list()  # the same rows
    assert back.sort("user_id")["x"].to_list() == list(range(n))  # each row whole
