"""A version is reordered at registration without holding its file in memory (issue 10: a
100M-row registration reached 15 GB): rows stream through temporary bucket files, or, for a
log in time order, through the runs of one instant. Bucket and batch sizes are lowered here so
a small file spans many buckets and its runs cross batch boundaries."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from warden.catalog import order
from warden.catalog.columns import ColumnInfo
from warden.catalog.order import scrubbed

N = 10_000
GROUP = 1_500  # the registrant's row-group size, kept
COLUMNS = [
    ColumnInfo("user_id", "Int64", "pii", "user"),
    ColumnInfo("x", "Int64", "public"),
    ColumnInfo("name", "Utf8", "pii"),
    ColumnInfo("ts", "Datetime(us)", "public"),
]


@pytest.fixture(autouse=True)
def small_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(order, "BUCKET_ROWS", 1_000)  # ten buckets
    monkeypatch.setattr(order, "BATCH_ROWS", 777)  # batches that end inside runs


def _write(rows: pl.DataFrame, path: Path) -> Path:
    rows.write_parquet(path, row_group_size=GROUP)
    return path


def _same_rows(source: Path, out: Path) -> pl.DataFrame:
    """`out`'s rows, after checking they are `source`'s, every column, as a multiset."""
    before, after = pl.read_parquet(source), pl.read_parquet(out)
    assert after.schema == before.schema
    assert after.sort(after.columns).equals(before.sort(before.columns))
    return after


def _read_refused(path: Path) -> bool:
    """Whether a read would refuse `path`'s order (as it does the source's, sorted by id): a
    random order of 10,000 rows crosses `follows_identifier`'s FOLLOWS 1 time in 12."""
    return order._follows(pl.scan_parquet(path), ["user_id"], significant=True) is not None


def _row_groups(path: Path) -> list[int]:
    meta = pq.read_metadata(path)
    return [meta.row_group(k).num_rows for k in range(meta.num_row_groups)]


def _by_id(tmp_path: Path, ts: pl.Series | None = None) -> Path:
    """A file sorted by `user_id` (the raw ids by row number), with `x` naming each row."""
    ids = np.random.default_rng(3).permutation(N) + 1
    rows = pl.DataFrame({"user_id": ids, "x": np.arange(N), "name": [f"u{i}" for i in ids]})
    if ts is not None:
        rows = rows.with_columns(ts)
    return _write(rows.sort("user_id"), tmp_path / "source.parquet")


def test_a_file_of_many_buckets_comes_out_whole_in_a_random_order(tmp_path: Path) -> None:
    source = _by_id(tmp_path)
    assert _read_refused(source)
    out = scrubbed(source, tmp_path / "out.parquet", COLUMNS[:3], ["user_id"])
    stored = _same_rows(source, out)
    assert stored["user_id"].to_list() != pl.read_parquet(source)["user_id"].to_list()
    assert not _read_refused(out)
    # no bucket's rows come out together: each tenth of the output spans the whole id range
    for tenth in stored["user_id"].to_numpy().reshape(10, -1):
        assert tenth.min() < N // 10 and tenth.max() > N - N // 10
    assert _row_groups(out) == [GROUP] * (N // GROUP) + [N % GROUP]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "source.parquet"]


def _log(tmp_path: Path, descending: bool) -> Path:
    """A log sorted by `ts`, runs of one instant from 1 to 400 rows (several span batches and
    buckets), each run in the order of its ids: what ties must not keep."""
    lengths = np.random.default_rng(5).integers(1, 400, N)
    instants = np.repeat(np.arange(len(lengths)), lengths)[:N]
    start = datetime(2026, 1, 1)
    ts = pl.Series("ts", [start + timedelta(minutes=int(i)) for i in instants])
    rows = pl.DataFrame({"user_id": np.random.default_rng(6).integers(1, 3_000, N), "ts": ts})
    rows = rows.with_columns(x=pl.int_range(N), name=pl.format("u{}", "user_id"))
    rows = rows.sort("ts", "user_id", descending=[descending, False])
    return _write(rows, tmp_path / "log.parquet")


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("bucket", [1_000, 100], ids=["runs-in-memory", "runs-spilled"])
def test_a_log_keeps_its_time_order_and_every_run_is_shuffled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, descending: bool, bucket: int
) -> None:
    """Runs up to BUCKET_ROWS stream through memory; a longer one (100 here) goes through
    temporary files by output position: the time order holds either way."""
    monkeypatch.setattr(order, "BUCKET_ROWS", bucket)
    source = _log(tmp_path, descending)
    out = scrubbed(source, tmp_path / "out.parquet", COLUMNS, ["user_id"])
    stored, before = _same_rows(source, out), pl.read_parquet(source)
    assert stored["ts"].to_list() == before["ts"].to_list()  # each row stays in its instant
    shuffled = rises = steps = 0
    for (instant,), run in stored.group_by("ts", maintain_order=True):
        was = before.filter(pl.col("ts") == instant)
        assert sorted(run["x"].to_list()) == sorted(was["x"].to_list())  # its own rows
        if run.height >= 50:
            shuffled += run["x"].to_list() != was["x"].to_list()
        ids = run["user_id"]
        rises += int((ids > ids.shift(1)).sum())
        steps += int((ids != ids.shift(1)).sum())
    long_runs = before["ts"].rle_id().value_counts().filter(pl.col("count") >= 50).height
    assert long_runs > 10 and shuffled == long_runs  # 1 in 50! for a run left as it came
    assert 0.45 < rises / steps < 0.55  # in id order within a run it rose every time
    assert _row_groups(out) == [GROUP] * (N // GROUP) + [N % GROUP]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.parquet", "out.parquet"]


def test_a_time_order_that_follows_the_id_still_goes_random(tmp_path: Path) -> None:
    """Signed up in the order of their ids: sorted by `ts` is sorted by `user_id`."""
    hours = pl.datetime_range(
        datetime(2020, 1, 1), datetime(2020, 1, 1) + timedelta(hours=N - 1), "1h", eager=True
    )
    source = _by_id(tmp_path, hours.alias("ts"))
    assert _read_refused(source)
    out = scrubbed(source, tmp_path / "out.parquet", COLUMNS, ["user_id"])
    stored = _same_rows(source, out)
    assert not stored["ts"].is_sorted() and not stored["ts"].is_sorted(descending=True)
    assert not _read_refused(out)
    assert _row_groups(out) == [GROUP] * (N // GROUP) + [N % GROUP]


def test_a_long_log_is_judged_on_a_sample_and_keeps_its_time_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over 2·FOLLOWS_PAIRS rows the check reads a sample of adjacent pairs (here 1,000 of
    10,000 rows' pairs): a log that follows no id keeps its time order."""
    monkeypatch.setattr(order, "FOLLOWS_PAIRS", 1_000)
    source = _log(tmp_path, descending=False)
    out = scrubbed(source, tmp_path / "out.parquet", COLUMNS, ["user_id"])
    stored = _same_rows(source, out)
    assert stored["ts"].to_list() == pl.read_parquet(source)["ts"].to_list()


def _blocks(n: int) -> np.ndarray:
    """Ids 1..n as partitions by id % 16 concatenated, each ascending: ρ near 0, but row k
    still gives the id away (neighbours hold neighbouring ids)."""
    ids = np.arange(1, n + 1)
    return np.concatenate([ids[ids % 16 == k] for k in range(16)])


@pytest.mark.parametrize("pairs", [1_000_000, 1_000], ids=["exact", "sampled"])
@pytest.mark.parametrize("follows", ["globally", "locally"])
def test_a_long_log_that_follows_the_id_goes_random(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pairs: int, follows: str
) -> None:
    """One instant a row (no ties to shuffle), ids given in turn or in blocks: judged on all
    rows or on a sample, the time order would give the ids away, so the rows go random."""
    monkeypatch.setattr(order, "FOLLOWS_PAIRS", pairs)
    ids = np.arange(1, N + 1) if follows == "globally" else _blocks(N)
    start = datetime(2020, 1, 1)
    ts = pl.datetime_range(start, start + timedelta(hours=N - 1), "1h", eager=True)
    rows = pl.DataFrame({"user_id": ids, "x": np.arange(N), "name": [f"u{i}" for i in ids]})
    source = _write(rows.with_columns(ts.alias("ts")), tmp_path / "source.parquet")
    rho = rows.select(pl.corr(pl.int_range(N), "user_id", method="spearman")).item()
    assert abs(rho) > 0.9 if follows == "globally" else abs(rho) < 0.1  # blocks: only locally
    out = scrubbed(source, tmp_path / "out.parquet", COLUMNS, ["user_id"])
    stored = _same_rows(source, out)
    assert not stored["ts"].is_sorted() and not stored["ts"].is_sorted(descending=True)
    assert not _read_refused(out)
