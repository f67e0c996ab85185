"""A read's caches never outlive a change, even with the change counter set back.

The attack (an insider with SQL, no DDL): the caches are kept per value of the change
counter, and a process that saw the counter go back (to 1, say) kept what it had cached at
the higher value, to serve it again once the counter came back there. So: set the counter
back, let the dataset's owner withdraw a purpose through Warden (the counter moves on from
1), then set the counter to the value the caches were filled at: every process read the
dataset as it was before the owner's change."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.sealed_rows import one, sql
from warden.catalog.service import load_view, register
from warden.db.session import unit_of_work
from warden.identity.service import get_principal, get_tenant


def _read(w: Any) -> int:
    body = {"purpose": "training", "columns": ["pin_id"], "limit": 1}
    return w.read("alice", "engagements", **body).status_code


def _withdraw_training(w: Any) -> None:
    """The owner registers engagements again for analytics only, through Warden."""
    datasets = w.state.settings.datasets_dir
    with unit_of_work(w.state.sessions) as db:
        view = load_view(db, datasets, "acme", "engagements")
        source = Path(w.state.settings.data_dir) / "engagements-again.parquet"
        shutil.copyfile(view.path, source)
        register(
            db, datasets_dir=datasets, tenant=get_tenant(db, view.tenant),
            owner=get_principal(db, view.owner), name=view.name, source=source,
            columns=list(view.columns), identifier_columns=list(view.identifier_columns),
            allowed_purposes=["analytics"], description=view.description,
            derived_from=list(view.derived_from),
        )  # fmt: skip


def test_a_change_made_while_the_counter_was_set_back_holds_on_the_next_read(
    warden: Any,
) -> None:
    assert _read(warden) == 200  # (its first use notes the token's last use: a change)
    assert _read(warden) == 200  # the caches filled at the counter's value now
    filled_at = one(warden, "SELECT value FROM change_generation")[0]
    sql(warden, "UPDATE change_generation SET value = 1")
    assert _read(warden) == 200  # read uncached at 1
    _withdraw_training(warden)
    assert _read(warden) in (403, 404)
    sql(warden, "UPDATE change_generation SET value = :g", g=filled_at)
    assert _read(warden) in (403, 404), "served from what was cached before the change"
