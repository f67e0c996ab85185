"""Fixtures for the policy tests. `policy_db` is the shared migrated database (tests/conftest.py
`db_url`: SQLite, and PostgreSQL when WARDEN_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from warden.db.session import make_engine

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "policies" / "model.conf"
SEED = REPO / "policies" / "seed.csv"
DEMO = REPO / "policies" / "demo.csv"
EXTRA = Path(__file__).resolve().parent / "data" / "extra.csv"


@pytest.fixture
def policy_db(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
