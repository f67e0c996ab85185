"""The read path's caches (warden/db/generation.py) never outlive a change.

A governed read takes the caller's token, the dataset view and the tenant's mask key
schedule from in-process caches kept per change generation. Each test here makes one kind of
change straight in the database, past every Warden service (as someone with database write
access, or a hand-run fix, would), and the very next read must see it. The multi-process
variants (a change through one server, seen by another) are in test_processes.py.
"""

from __future__ import annotations

import io
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import delete, event, insert, select, text, update

from tests.sealed_rows import live_token_id, one, sql
from warden.catalog.models import Dataset, DatasetColumn, DatasetVersion, MaskKeyVersion
from warden.db.generation import GenerationCache
from warden.identity.models import ApiToken, Principal, Tenant

MIGRATION = Path(__file__).parents[2] / "migrations" / "versions" / "0008_change_generation.py"


def _read(w: Any, **body: Any) -> Any:
    body = {"purpose": "training", "columns": ["user_id", "pin_id"], "limit": 5, **body}
    return w.read("alice", "engagements", **body)


def _user_ids(answer: Any) -> list[int]:
    assert answer.status_code == 200, answer.text
    return pl.read_ipc_stream(io.BytesIO(answer.content))["user_id"].to_list()


def _write(w: Any, *statements: Any) -> None:
    with w.state.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def _ids(w: Any) -> dict[str, str]:
    with w.state.engine.connect() as conn:
        alice = conn.execute(select(Principal.id).where(Principal.name == "alice")).scalar_one()
        dataset = conn.execute(select(Dataset.id).where(Dataset.name == "engagements")).scalar_one()
        tenant = conn.execute(select(Tenant.id).where(Tenant.name == "acme")).scalar_one()
    return {"alice": alice, "dataset": dataset, "tenant": tenant}


def _statements_of(w: Any, work: Callable[[], object]) -> list[str]:
    """The SQL the app's engine ran during `work`."""
    statements: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(w.state.engine, "before_cursor_execute", seen)
    try:
        work()
    finally:
        event.remove(w.state.engine, "before_cursor_execute", seen)
    return statements


def _refused_as_tampered(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "CatalogTampered"


def _warm(w: Any) -> list[int]:
    first = _user_ids(_read(w))
    assert _user_ids(_read(w)) == first
    return first


def test_unchanged_state_is_served_from_the_caches(warden) -> None:  # type: ignore[no-untyped-def]
    _warm(warden)
    state = warden.state
    before = (state.tokens.hits, state.views.hits, state.mask_schedules.hits)
    statements = _statements_of(warden, lambda: _user_ids(_read(warden)))
    after = (state.tokens.hits, state.views.hits, state.mask_schedules.hits)
    assert all(b > a for a, b in zip(before, after, strict=True)), (before, after)
    looked_up = [s for s in statements if re.search(r"\bFROM (api_token|dataset|mask_key)", s)]
    assert not looked_up, looked_up


@pytest.mark.parametrize(
    "change",
    ["token revoked", "token expired", "token deleted", "principal disabled", "tenant renamed"],
)
def test_a_token_change_written_in_the_database_holds_on_the_next_read(warden, change) -> None:  # type: ignore[no-untyped-def]
    _warm(warden)
    ids = _ids(warden)
    now = datetime.now(UTC)
    token = ApiToken.principal_id == ids["alice"]
    statement = {
        "token revoked": update(ApiToken).where(token).values(revoked_at=now, revoked_by="sql"),
        "token expired": update(ApiToken).where(token).values(expires_at=now - timedelta(1)),
        "token deleted": delete(ApiToken).where(token),
        "principal disabled": update(Principal)
        .where(Principal.id == ids["alice"])
        .values(disabled=True),
        "tenant renamed": update(Tenant).where(Tenant.id == ids["tenant"]).values(name="other"),
    }[change]
    _write(warden, statement)
    answer = _read(warden)
    assert answer.status_code != 200, f"{change}: still served from a cache"
    assert answer.status_code in (401, 403, 404)


def test_a_dataset_change_written_in_the_database_holds_on_the_next_read(warden) -> None:  # type: ignore[no-untyped-def]
    _warm(warden)
    ids = _ids(warden)
    _write(
        warden,
        update(Dataset).where(Dataset.id == ids["dataset"]).values(allowed_purposes=["analytics"]),
    )
    _refused_as_tampered(_read(warden))  # the row no longer matches its seal (catalog/seal.py)


def test_a_column_change_written_in_the_database_holds_on_the_next_read(warden) -> None:  # type: ignore[no-untyped-def]
    _warm(warden)
    ids = _ids(warden)
    _write(
        warden,
        update(DatasetColumn)
        .where(DatasetColumn.dataset_id == ids["dataset"], DatasetColumn.name == "user_id")
        .values(entity="board"),
    )
    _refused_as_tampered(_read(warden))


def test_a_version_change_written_in_the_database_holds_on_the_next_read(warden) -> None:  # type: ignore[no-untyped-def]
    _warm(warden)
    ids = _ids(warden)
    _write(
        warden,
        update(DatasetVersion)
        .where(DatasetVersion.dataset_id == ids["dataset"])
        .values(path="engagements/gone.parquet", table_metadata="engagements/gone.json"),
    )
    _refused_as_tampered(_read(warden))


def _rotate_by_hand(w: Any, tenant_id: str, effective_from: datetime) -> None:
    """Key version 2 for the tenant, inserted in SQL (no `warden data rotate-mask-key`)."""
    row = {"id": uuid.uuid4().hex, "created_at": datetime.now(UTC), "tenant_id": tenant_id}
    row |= {"version": 2, "effective_from": effective_from, "created_by": "sql", "reason": ""}
    _write(w, insert(MaskKeyVersion).values(**row))


def test_a_mask_key_rotation_written_in_the_database_holds_on_the_next_read(warden) -> None:  # type: ignore[no-untyped-def]
    before = _warm(warden)
    ids = _ids(warden)
    _rotate_by_hand(warden, ids["tenant"], datetime.now(UTC) - timedelta(seconds=1))
    answer = _read(warden)
    assert _user_ids(answer) != before
    event_id = answer.headers["x-warden-audit-event"]
    (event_,) = [e for e in warden.audit_events(actor="alice") if e["id"] == event_id]
    assert event_["details"]["mask_key_version"] == 2


def test_a_rotation_scheduled_ahead_takes_effect_at_its_instant(warden) -> None:  # type: ignore[no-untyped-def]
    """The schedule is cached, the instant is not: a later start holds when the clock gets there."""
    before = _warm(warden)
    ids = _ids(warden)
    start = datetime.now(UTC) + timedelta(hours=1)
    _rotate_by_hand(warden, ids["tenant"], start)
    assert _user_ids(_read(warden)) == before
    warden.state.clock = lambda: start + timedelta(seconds=1)
    assert _user_ids(_read(warden)) != before


def test_every_table_the_read_path_looks_up_bumps_the_generation(warden) -> None:  # type: ignore[no-untyped-def]
    """Fails when someone adds a table to a cached lookup without a trigger on it."""
    state = warden.state
    for cache in (state.tokens, state.views, state.mask_schedules):
        cache.clear()
    statements = _statements_of(warden, lambda: _user_ids(_read(warden)))
    read = set()
    for statement in statements:
        if statement.lstrip().upper().startswith("SELECT") and "audit" not in statement:
            read |= set(re.findall(r"\b(?:FROM|JOIN)\s+\"?(\w+)", statement))
    read -= {"policy_state", "change_generation", "casbin_rule", "policy_change"}
    source = MIGRATION.read_text()
    watched = set(re.findall(r'^\s+"(\w+)",$', source.split("WATCHED = (")[1].split(")")[0], re.M))
    assert read and read <= watched, f"looked up without a trigger: {read - watched}"
    with state.engine.connect() as conn:
        if state.engine.dialect.name == "sqlite":
            found = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            found = conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
        triggers = {row[0] for row in found}
    for table in watched:
        for kind in ("insert", "update", "delete"):
            assert f"wg_{table}_{kind}" in triggers


def test_an_older_reader_never_fills_a_newer_cache() -> None:
    cache: GenerationCache[str, str] = GenerationCache()
    assert cache.get(5, "k", lambda: "at 5") == "at 5"
    assert cache.get(6, "k", lambda: "at 6") == "at 6"  # a change: emptied, then refilled
    # A request that read generation 5 before the change finishes late: it gets what it
    # loaded, and never fills the generation-6 cache; it empties it (it cannot tell itself
    # from the counter set back in SQL: test_change_counter_set_back_serves_nothing_stale.py)
    assert cache.get(5, "k", lambda: "late 5") == "late 5"
    assert cache.get(6, "k", lambda: "at 6 again") == "at 6 again"
    assert cache.get(6, "k", lambda: "never") == "at 6 again"
    assert cache.get(None, "k", lambda: "uncached") == "uncached"


def test_a_reader_racing_a_change_never_stores_the_old_state_as_new() -> None:
    """The load starts at generation 1 and is slow; a reader at generation 2 meanwhile empties
    the cache. The slow load must not land in the generation-2 cache."""
    cache: GenerationCache[str, str] = GenerationCache()
    loading, release = threading.Event(), threading.Event()

    def slow() -> str:
        loading.set()
        release.wait(30)
        return "old"

    worker = threading.Thread(target=lambda: cache.get(1, "k", slow))
    worker.start()
    assert loading.wait(30)
    assert cache.get(2, "k", lambda: "new") == "new"
    release.set()
    worker.join(30)
    assert cache.get(2, "k", lambda: "reloaded") == "new"


def test_a_failed_lookup_is_not_kept() -> None:
    cache: GenerationCache[str, str] = GenerationCache()

    def missing() -> str:
        raise LookupError("no such token")

    with pytest.raises(LookupError):
        cache.get(1, "k", missing)
    assert cache.get(1, "k", lambda: "found later") == "found later"


# Found by a red-team round: the counter frozen (a REAL, or the top of the range, makes the
# triggers' +1 a no-op) or a trigger dropped kept a revoked token or disabled principal
# served from the cache. A counter that is not a plausible integer caches nothing, and a
# revocation or a disable moves the counter from Warden's own code too.


def _revoke_alices_token(w: Any) -> None:
    token_id = live_token_id(w, "alice")
    r = w.http.post(f"/v1/principals/alice/tokens/{token_id}/revoke", headers=w.as_("admin"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL refuses the values
def test_a_counter_frozen_as_a_real_serves_no_revoked_token(warden: Any) -> None:
    # one UPDATE, no DDL: on SQLite value+1 of a huge REAL is itself
    sql(warden, "UPDATE change_generation SET value = 1e300")
    assert _read(warden).status_code == 200  # cache filled at the frozen generation
    before = one(warden, "SELECT value FROM change_generation")[0]
    _revoke_alices_token(warden)
    assert one(warden, "SELECT value FROM change_generation")[0] == before  # frozen
    assert _read(warden).status_code == 401


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_counter_frozen_at_the_top_serves_no_disabled_principal(warden: Any) -> None:
    # int64 max: the trigger's +1 overflows to REAL 9.22e18 and stays there
    sql(warden, "UPDATE change_generation SET value = 9223372036854775807")
    assert _read(warden).status_code == 200
    _read(warden)  # the first bump made it REAL; now frozen
    assert _read(warden).status_code == 200
    r = warden.http.post("/v1/principals/alice/disable", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert _read(warden).status_code == 401


def test_a_dropped_trigger_serves_no_revoked_token(warden: Any) -> None:
    on = " ON api_token" if warden.state.engine.dialect.name == "postgresql" else ""
    sql(warden, "DROP TRIGGER wg_api_token_update" + on)
    assert _read(warden).status_code == 200
    _revoke_alices_token(warden)
    assert _read(warden).status_code == 401
