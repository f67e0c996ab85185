"""A local Reader over the generated Parquet files, for tests that need no API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest


class ParquetReader:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.reads: list[tuple[str, str]] = []

    def read(
        self, dataset: str, *, purpose: str, columns: Sequence[str] | None = None
    ) -> pl.DataFrame:
        self.reads.append((dataset, purpose))
        df = pl.read_parquet(self.directory / f"{dataset}.parquet")
        return df.select(columns) if columns else df


@pytest.fixture
def graph_reader(taste_graph: list) -> ParquetReader:
    return ParquetReader(Path(taste_graph[0].path).parent)
