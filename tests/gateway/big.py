"""A large version of `engagements` (the streamed-read tests' data): registered by a test, or
once per session into a seeded database of its own that those tests copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tests.serving import register_like
from warden.catalog.service import load_view
from warden.db.session import unit_of_work

# Large enough that the answer's frames pass STREAM_ABOVE_BYTES several times over.
BIG_ROWS = 1_500_000
# What `Seeded.adds` names when the seeded database already holds it (tests/conftest.py).
SEEDED_BIG = "big_engagements"


def register_big(
    settings: Any, sessions: Any, tmp_path: Path, rows: int = BIG_ROWS, salt: int = 0
) -> Path:
    """Register a new, large version of `engagements` (same columns and classes, so every
    rule, mask and row filter is the one the small version has); returns its file."""
    with unit_of_work(sessions) as db:
        view = load_view(db, settings.datasets_dir, "acme", "engagements")
    small = pl.read_parquet(view.path)
    times = -(-rows // small.height)
    big = pl.concat([small] * times).head(rows)
    big = big.with_columns((pl.col("dwell_ms") + salt).alias("dwell_ms"))
    source = tmp_path / f"big-{salt}.parquet"
    big.write_parquet(source, row_group_size=64 * 1024)
    with unit_of_work(sessions) as db:
        register_like(db, settings.datasets_dir, view, source)
    return current_file(settings, sessions)


def current_file(settings: Any, sessions: Any) -> Path:
    with unit_of_work(sessions) as db:
        return load_view(db, settings.datasets_dir, "acme", "engagements").path
