"""Fixtures for the policy tests (the database part is temporary, see _tmpdb.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ._tmpdb import temporary_policy_db

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "policies" / "model.conf"
SEED = REPO / "policies" / "seed.csv"
DEMO = REPO / "policies" / "demo.csv"
EXTRA = Path(__file__).resolve().parent / "data" / "extra.csv"


@pytest.fixture
def policy_db(tmp_path: Path) -> Iterator[Engine]:
    engine = temporary_policy_db(tmp_path)
    yield engine
    engine.dispose()
