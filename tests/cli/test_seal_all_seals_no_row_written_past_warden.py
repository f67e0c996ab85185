"""`warden data seal --all`, run as start-up asks after an upgrade, seals only what an upgrade
left: rows that match the field set an earlier Warden sealed them with. Anything else is
someone's write, sealed only by `--accept DIGEST` after an operator looked at it.

The attack (an insider with SQL): swap two principals' names, so that mallory's token speaks
as alice, and erase (or re-mark) both rows' seals. `serve` then refuses to start, saying to run
`warden data seal --all`; the operator does, as after any upgrade, and `--all` sealed every row
shown: mallory read as alice from then on."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from tests.sealed_rows import read, sql

from warden.cli import startup
from warden.identity.models import Principal

SWAP = (
    "UPDATE principal SET name = 'alice-was', seal = :s WHERE name = 'alice'",
    "UPDATE principal SET name = 'alice', seal = :s WHERE name = 'mallory'",
    "UPDATE principal SET name = 'mallory', seal = :s WHERE name = 'alice-was'",
)


def _refused_start(warden: Any, capsys: pytest.CaptureFixture[str]) -> str | None:
    try:
        startup.refuse_stale_seals(warden.state.engine)
    except typer.Exit:
        return " ".join(capsys.readouterr().err.split())
    return None


@pytest.mark.parametrize("seal", [None, "abcdef." + "0" * 57, "0" * 64])
def test_seal_all_does_not_seal_principals_swapped_in_sql(
    warden: Any, operator_cli: Any, capsys: pytest.CaptureFixture[str], seal: str | None
) -> None:
    assert read(warden, "mallory").status_code in (403, 404)  # mallory reads nothing
    sql(warden, *SWAP, s=seal)
    if seal != "0" * 64:  # erased or another mark: start-up stops and names --all
        said = _refused_start(warden, capsys)
        assert said is not None and "--all" in said, said
    done = operator_cli("data", "seal", "--all", "--actor", "ops", "--reason", "upgrade")
    assert "alice" in done.output  # shown, for the operator to look at
    assert read(warden, "mallory").status_code == 401  # still nobody's, never alice
    assert read(warden, "alice").status_code == 401


def test_seal_all_seals_rows_that_match_an_earlier_field_set(
    warden: Any, operator_cli: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """The upgrade it is for: a table's sealed fields grew, and the model names the set
    before (`__sealed_before__`); every row that matches it is resealed."""
    before = Principal.__sealed__
    extra = next(c.key for c in Principal.__table__.columns if c.key not in (*before, "seal"))
    monkeypatch.setattr(Principal, "__sealed__", (*before, extra))
    monkeypatch.setattr(Principal, "__sealed_before__", (before,))
    assert _refused_start(warden, capsys) is not None
    sql(warden, "UPDATE principal SET kind = 'service' WHERE name = 'mallory'")  # and a write
    done = operator_cli("data", "seal", "--all", "--actor", "ops", "--reason", "upgrade")
    assert "mallory" in done.output
    assert read(warden, "alice").status_code == 200  # alice's row matched what it was sealed as
    assert read(warden, "mallory").status_code == 401  # the row written past Warden is not
