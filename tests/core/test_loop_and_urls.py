"""The background loop outlives failed rounds and logs one traceback per outage, not one per
round; database URLs are printed without their passwords."""

from __future__ import annotations

import logging
import threading

import pytest

from warden.config import safe_url
from warden.core.loop import BackgroundLoop


class _Flaky(BackgroundLoop):
    name = "flaky"

    def __init__(self, failures: int) -> None:
        super().__init__(poll_s=0.001)
        self.failures = failures
        self.rounds = 0
        self.recovered = threading.Event()

    def run_once(self) -> object:
        self.rounds += 1
        if self.rounds <= self.failures:
            raise ConnectionError("database is down")
        self.recovered.set()
        return None


def test_an_outage_logs_one_traceback_then_one_line_a_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = _Flaky(failures=5)
    with caplog.at_level(logging.WARNING, logger="warden.loop"):
        loop.start()
        assert loop.recovered.wait(30)
        loop.stop()
    records = [r for r in caplog.records if r.name == "warden.loop"]
    tracebacks = [r for r in records if r.exc_info]
    assert len(tracebacks) == 1
    lines = [r.getMessage() for r in records if not r.exc_info]
    assert sum("in a row failed: database is down" in m for m in lines) == 4
    assert any("recovered after 5 failed rounds" in m for m in lines)


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        (
            "postgresql+psycopg://warden:s3cret@db:5432/warden",
            "postgresql+psycopg://warden:***@db:5432/warden",
        ),
        (
            "postgresql+psycopg:///warden?host=/var/run/postgresql",
            "postgresql+psycopg:///warden?host=%2Fvar%2Frun%2Fpostgresql",
        ),
        ("sqlite:////var/lib/warden/warden.db", "sqlite:////var/lib/warden/warden.db"),
        ("not a url with s3cret", "(a database URL that does not parse)"),
    ],
)
def test_database_urls_print_without_passwords(url: str, printed: str) -> None:
    assert safe_url(url) == printed
    assert "s3cret" not in safe_url(url)
