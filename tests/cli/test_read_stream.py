"""`warden read` writes a streamed answer batch by batch, and reads an earlier version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from tests.cli.test_cli_end_to_end import warden_cli
from tests.gateway.test_streaming import COLUMNS, big_engagements


def test_read_writes_a_streamed_answer_and_reads_an_earlier_version(
    live_warden: Any, tmp_path: Path
) -> None:
    small = live_warden.read("alice", "engagements", purpose="training", columns=COLUMNS)
    old = small.headers["x-warden-dataset-version"]
    path = big_engagements(live_warden, tmp_path, rows=600_000)
    out = tmp_path / "all.parquet"
    columns = ",".join(COLUMNS)
    common = ["read", "engagements", "--purpose", "training", "--columns", columns]
    done = warden_cli(
        live_warden, "alice", *common, "--limit", "600000", "--format", "parquet", "--out", str(out)
    )
    assert done.exit_code == 0, done.output
    assert pl.read_parquet(out).equals(pl.read_parquet(path, columns=COLUMNS))

    csv = tmp_path / "old.csv"
    done = warden_cli(
        live_warden, "alice", *common, "--as-of", old, "--format", "csv", "--out", str(csv)
    )
    assert done.exit_code == 0, done.output
    assert pl.read_csv(csv).height == 20  # the CLI's default limit, from the old version

    missing = "sha256:" + "f" * 64
    refused = warden_cli(live_warden, "alice", *common, "--as-of", missing)
    assert refused.exit_code == 2 and "has no version" in refused.output
