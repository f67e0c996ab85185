"""Red team 16b: after an upgrade whose sealed fields grew, `warden serve` and `warden worker`
refuse to start, naming what to run, instead of answering 503 on every row sealed before.

The gap (upgrade UX): a model's `__sealed__` that grows changes every seal; each row sealed
with the older field set no longer matches and is refused (503) where it is read, until an
operator runs `warden data seal --all`; the operator learned it only from the 503s. A seal
now starts with a short mark of the field set it was made with (db/sealed.py), so start-up
tells a row sealed with another field set (or never sealed) from a row written past Warden
(which stays a 503 where it is read: a database writer cannot keep `serve` from starting by
editing a row), with one query per sealed table.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer
from tests.sealed_rows import one, read, sql

from warden.cli import startup
from warden.db.session import unit_of_work
from warden.identity.models import Principal
from warden.identity.service import get_principal
from warden.workspace.models import Workspace

SEALED = (*Principal.__sealed__, "seal")
MORE = next(c.key for c in Principal.__table__.columns if c.key not in SEALED)


def _start(warden: Any, capsys: pytest.CaptureFixture[str]) -> str | None:
    """What `serve` says when it refuses to start over the rows' seals; None: it starts."""
    try:
        startup.refuse_stale_seals(warden.state.engine)
    except typer.Exit:
        return " ".join(capsys.readouterr().err.split())
    return None


def test_rows_sealed_with_an_older_field_set_refuse_start_until_resealed(
    warden: Any, operator_cli: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    assert _start(warden, capsys) is None
    # the upgrade: principal's sealed fields grew (and it names the set before)
    monkeypatch.setattr(Principal, "__sealed_before__", (Principal.__sealed__,))
    monkeypatch.setattr(Principal, "__sealed__", (*Principal.__sealed__, MORE))
    said = _start(warden, capsys)
    assert said is not None, "serve started over principals sealed with an older field set"
    assert "principal" in said and "`warden data seal --check`" in said, said
    assert "`warden data seal --all`" in said, said
    assert read(warden, "alice").status_code == 401  # what the operator saw before: refusals
    done = operator_cli("data", "seal", "--all", "--actor", "ops", "--reason", "upgrade")
    assert done.exit_code == 0, done.output
    assert _start(warden, capsys) is None
    assert read(warden, "alice").status_code == 200


@pytest.mark.parametrize("table", ["principal", "workspace"])
def test_a_row_never_sealed_refuses_start(
    warden: Any, capsys: pytest.CaptureFixture[str], table: str
) -> None:
    """Any sealed table, not only principals and tenants as before."""
    if table == "workspace":
        with unit_of_work(warden.state.sessions) as db:
            alice = get_principal(db, "alice")
            space = Workspace(tenant_id=alice.tenant_id, tenant="acme", owner_id=alice.id)
            db.add(space)
            space.owner, space.name = "alice", "w"
    sql(warden, f"UPDATE {table} SET seal = NULL")  # noqa: S608
    said = _start(warden, capsys)
    assert said is not None and table in said and "`warden data seal --check`" in said, said


def test_a_row_written_past_warden_does_not_stop_start(
    warden: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tampering is the row's (503 or 401 where it is read), never a lever on start-up."""
    sql(warden, "UPDATE principal SET kind = 'service' WHERE name = 'alice'")
    assert _start(warden, capsys) is None
    assert read(warden, "alice").status_code == 401


def test_seals_made_before_marks_are_marked_by_seal_all_so_the_next_upgrade_is_caught(
    warden: Any, operator_cli: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """A seal made before seals carried their field set's mark matches but cannot be told
    apart at start-up; `warden data seal --all` marks every such matching seal (and only
    those), so the upgrade after this one stops start-up for every row, not only new ones."""
    from warden.audit.keys import keys_for
    from warden.db.sealed import _mac

    with unit_of_work(warden.state.sessions) as db:
        alice = get_principal(db, "alice")
        old = _mac(
            keys_for(warden.state.engine), Principal, [getattr(alice, f) for f in SEALED[:-1]]
        )
    sql(warden, "UPDATE principal SET seal = :s WHERE name = 'alice'", s=old)  # as sealed before
    assert read(warden, "alice").status_code == 200  # an old seal still matches
    sql(warden, "UPDATE principal SET seal = :s WHERE name = 'erin'", s="0" * 64)  # not a match
    done = operator_cli("data", "seal", "--check")
    assert "principal" in done.output and "erin" in done.output and "alice" not in done.output
    done = operator_cli("data", "seal", "--accept", "nothing-shown", "--actor", "ops")
    assert done.exit_code != 0  # not --all: nothing marked, nothing sealed
    assert one(warden, "SELECT seal FROM principal WHERE name = 'alice'")[0] == old
    done = operator_cli("data", "seal", "--all", "--actor", "ops", "--reason", "upgrade")
    assert "marked 1 matching seal" in done.output, done.output
    assert done.exit_code == 1 and "--accept DIGEST" in done.output  # erin's: by digest only
    assert "." in one(warden, "SELECT seal FROM principal WHERE name = 'alice'")[0]
    monkeypatch.setattr(Principal, "__sealed__", (*Principal.__sealed__, MORE))  # the next upgrade
    said = _start(warden, capsys)
    assert said is not None and "principal" in said, "a row sealed before marks slipped through"
