"""A few compact integer ids are masked by one numpy gather (masking.TokenTable._gathered):
the same tokens, nulls and type as the path for many rows, whatever the ids."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from warden.gateway import masking
from warden.gateway.masking import token_table

KEY = b"k" * 32


@pytest.fixture
def table(tmp_path: Path) -> masking.TokenTable:
    path = tmp_path / "ids.parquet"
    pl.DataFrame({"user_id": [5, 6, 8, 9, 12, 5]}).write_parquet(path)  # gaps at 7, 10, 11
    made = token_table(path, "user_id", KEY)
    assert made.dense is not None
    return made


@pytest.mark.parametrize(
    "ids",
    [
        pl.Series("user_id", [5, 9, 12, 5], dtype=pl.Int64),
        pl.Series("user_id", [], dtype=pl.Int64),
        pl.Series("user_id", [6, 7], dtype=pl.Int64),  # 7: in a gap
        pl.Series("user_id", [6, None], dtype=pl.Int64),
        pl.Series("user_id", [4, 13, -1], dtype=pl.Int64),  # outside the table
        pl.Series("user_id", [8, 2**64 - 1], dtype=pl.UInt64),
        pl.Series("user_id", [8, 9], dtype=pl.Int16),
    ],
)
def test_a_tiny_frame_is_masked_as_a_big_one(
    table: masking.TokenTable, ids: pl.Series, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pl.DataFrame([ids, pl.Series("n", range(len(ids)))])
    tiny = table.apply(frame, "user_id")
    monkeypatch.setattr(masking, "TINY_FRAME", -1)
    assert tiny.equals(table.apply(frame, "user_id"))
    assert tiny["user_id"].dtype == pl.Int64
    assert tiny["user_id"].drop_nulls().is_in(table.tokens.implode()).all()


def test_the_gather_answers_for_ids_that_all_have_a_token(table: masking.TokenTable) -> None:
    assert table._gathered(pl.Series("user_id", [5, 12, 9])) is not None
    assert table._gathered(pl.Series("user_id", [5, 7])) is None  # 7: no token, so null


def test_a_table_without_gaps_masks_by_the_gather_as_the_path_for_many_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ids.parquet"
    pl.DataFrame({"user_id": [3, 4, 5, 6]}).write_parquet(path)
    table = token_table(path, "user_id", KEY)
    assert table.dense_arrays[1] is None  # every slot holds a token: no presence check
    frame = pl.DataFrame({"user_id": [6, 3, 3], "n": [0, 1, 2]})
    assert table._gathered(frame["user_id"]) is not None
    assert table._gathered(pl.Series("user_id", [3, 7])) is None  # 7: outside the table
    tiny = table.apply(frame, "user_id")
    monkeypatch.setattr(masking, "TINY_FRAME", -1)
    assert tiny.equals(table.apply(frame, "user_id"))
    assert tiny["user_id"].dtype == pl.Int64
