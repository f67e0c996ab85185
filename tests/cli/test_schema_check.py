"""`warden serve` and `warden worker` refuse a database without this Warden's schema, saying
what to run, instead of starting a server whose every request fails on a missing table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import text
from tests.serving import warden_cli

from warden.cli.startup import refuse_an_unmigrated_database
from warden.db.migrate import downgrade, revisions
from warden.db.session import make_engine


def _refusal(db_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    engine = make_engine(db_url)
    try:
        with pytest.raises(typer.Exit) as exited:
            refuse_an_unmigrated_database(engine)
    finally:
        engine.dispose()
    assert exited.value.exit_code != 0
    return " ".join(capsys.readouterr().err.split())


def test_serve_and_worker_on_a_data_folder_never_initialised_say_to_run_init(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    for args in (["serve", "--port", "1"], ["worker", "--once"]):
        done = warden_cli(tmp_path, *args)
        said = " ".join((done.stdout + done.stderr).split())
        assert done.returncode != 0, said
        assert "no Warden database" in said and "`warden init`" in said, said
        assert "Traceback" not in said
    assert not (tmp_path / "data" / "warden.db").exists()  # told, nothing created


def test_a_database_without_the_schema_is_refused(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))  # as alembic leaves an empty one
    finally:
        engine.dispose()
    said = _refusal(db_url, capsys)
    assert "has no Warden schema" in said and "`warden init`" in said, said


def test_an_older_schema_is_refused_with_the_upgrade_to_run(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    downgrade(db_url, "-1")
    said = _refusal(db_url, capsys)
    engine = make_engine(db_url)
    try:
        current, heads, _ = revisions(engine)
    finally:
        engine.dispose()
    assert current and current != heads
    assert f"at schema revision {next(iter(current))}" in said, said
    assert f"needs {next(iter(heads))}" in said and "`warden init` once to upgrade" in said


def test_a_schema_from_a_newer_warden_is_refused(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    finally:
        engine.dispose()
    said = _refusal(db_url, capsys)
    assert "0099_from_the_future, which this Warden does not know" in said, said


def test_a_database_at_head_passes(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        refuse_an_unmigrated_database(engine)  # no exit
    finally:
        engine.dispose()


def test_unsealed_principals_are_refused_at_start_saying_what_to_run(
    warden: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the upgrade that sealed rows, the stored principals carry no seal: their tokens
    authenticate nothing, so `serve` says so at start (not as a 401 on every request)."""
    from warden.cli.startup import refuse_stale_seals

    refuse_stale_seals(warden.state.engine)  # a deployment Warden wrote: starts
    with warden.state.engine.begin() as conn:
        conn.execute(text("UPDATE principal SET seal = NULL"))  # as migration 0010 leaves them
    with pytest.raises(typer.Exit):
        refuse_stale_seals(warden.state.engine)
    said = " ".join(capsys.readouterr().err.split())
    assert "`warden data seal --check`" in said and "`warden data seal --all`" in said, said
