"""Pseudonyms that cannot be re-linked: per tenant, per entity, per key version; consistent
for one entity across a tenant's datasets (so masked columns still join)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from warden.audit.models import AuditEvent
from warden.gateway import keys

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def raw(warden: Any, dataset: str) -> pl.DataFrame:
    return pl.read_parquet(warden.state.settings.datasets_dir / dataset / "*.parquet")


def pseudonyms(warden: Any, who: str, dataset: str, purpose: str) -> dict[int, int]:
    """raw user id -> the pseudonym `who` reads, row by row (reads keep file order)."""
    got = frame(warden.read(who, dataset, purpose=purpose, columns=["user_id"]))["user_id"]
    ids = raw(warden, dataset)["user_id"]
    assert got.len() == ids.len()
    mapping: dict[int, int] = {}
    for user, token in zip(ids.to_list(), got.to_list(), strict=True):
        assert mapping.setdefault(user, token) == token  # one pseudonym per user
    return mapping


def event(warden: Any, event_id: str) -> dict[str, Any]:
    from warden.audit.service import event_dict

    with warden.state.sessions() as db:
        row = db.scalar(select(AuditEvent).where(AuditEvent.id == event_id))
        assert row is not None
        return event_dict(row)


@pytest.fixture
def two_tenants(warden: Any, taste_graph: list) -> Any:
    """A second tenant, globex, with the same seeded files and its own engineer, gina, who may
    (by an audited exception) read users.user_id raw and engagements.user_id masked: the
    position from which a dictionary of raw id -> pseudonym can be built."""
    from warden.catalog.seeding import register_generated
    from warden.db.session import unit_of_work
    from warden.identity.service import (
        Caller,
        create_principal,
        get_or_create_tenant,
        get_principal,
        issue_token,
    )
    from warden.policy.changes import apply_change

    state = warden.state
    with unit_of_work(state.sessions) as db:
        tenant = get_or_create_tenant(db, "globex")
        boss = create_principal(db, "gboss", "person", tenant)
        gina = create_principal(db, "gina", "person", tenant)
        warden.tokens["gina"] = issue_token(db, gina)
        register_generated(
            db, taste_graph, state.settings.datasets_dir, "globex", "gboss", {"test": True}
        )
        actor = Caller("gboss", "person", "globex", boss.id)
        eng = ("role:eng", "globex")
        rules = [
            ("g", ("gina", "role:eng", "globex")),
            ("p", (*eng, "entity:user", "*", "*", "expose_mixed", "allow", "", "")),
            ("p", (*eng, "users", "user_id", "training", "read", "allow", "", "")),
            ("p", (*eng, "engagements", "user_id", "training", "mask", "allow", "", "")),
        ]
        apply_change(db, actor, add=rules, reason="globex engineers")
        assert get_principal(db, "gina", tenant.id)
    state.policy.reload()
    return warden


def test_same_user_gets_another_pseudonym_in_another_tenant(two_tenants: Any) -> None:
    w = two_tenants
    acme = pseudonyms(w, "alice", "engagements", "training")
    globex = pseudonyms(w, "gina", "engagements", "training")
    assert acme.keys() == globex.keys()
    assert not set(acme.values()) & set(globex.values())


def test_a_dictionary_built_in_one_tenant_unmasks_nothing_in_another(two_tenants: Any) -> None:
    """The attack from the issue: gina reads users.user_id raw and engagements.user_id masked,
    joins them into raw -> pseudonym, and applies it to acme's pseudonyms."""
    w = two_tenants
    users = frame(w.read("gina", "users", purpose="training", columns=["user_id"]))["user_id"]
    assert set(users.to_list()) == set(raw(w, "users")["user_id"].to_list())  # raw, truly
    globex = pseudonyms(w, "gina", "engagements", "training")
    dictionary = {token: user for user, token in globex.items()}
    assert len(dictionary) > 1000  # the attacker's dictionary is complete for globex
    acme_tokens = set(pseudonyms(w, "alice", "engagements", "training").values())
    assert not acme_tokens & dictionary.keys()  # 0 of them re-identified


def test_one_user_one_pseudonym_in_every_dataset_of_a_tenant(warden: Any) -> None:
    eng = pseudonyms(warden, "alice", "engagements", "evaluation")
    users = pseudonyms(warden, "alice", "users", "evaluation")
    gold = pseudonyms(warden, "alice", "gold", "evaluation")
    for user, token in gold.items():
        assert eng.get(user, token) == token and users[user] == token
    assert len(set(gold) & set(eng)) > 100  # the gold users are engagement users: they join


def test_pseudonyms_differ_by_entity_version_and_tenant() -> None:
    master = b"m" * 32
    base = keys.derive(master, "t1", 1, "user")
    assert base == keys.derive(master, "t1", 1, "user")
    others = [
        keys.derive(master, "t2", 1, "user"),
        keys.derive(master, "t1", 2, "user"),
        keys.derive(master, "t1", 1, "pin"),
        keys.derive(b"n" * 32, "t1", 1, "user"),
        keys.derive(master, "t1", 1, None),
    ]
    assert len({base, *others}) == 6
    with pytest.raises(ValueError):
        keys.derive(b"", "t1", 1, "user")


def test_rotation_rekeys_reads_from_its_time_and_the_audit_names_the_version(
    warden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warden.cli.main import app
    from warden.config import get_settings

    clock = {"now": T0}
    warden.state.clock = lambda: clock["now"]
    before = warden.read("alice", "engagements", purpose="training", columns=["user_id"], limit=200)
    old = frame(before)["user_id"]
    assert event(warden, before.headers["x-warden-audit-event"])["details"]["mask_key_version"] == 1

    s = warden.settings
    monkeypatch.setenv("WARDEN_DATABASE_URL", s.database_url)
    monkeypatch.setenv("WARDEN_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("WARDEN_CONFIG_DIR", str(s.config_dir))  # the deployment's chain key
    monkeypatch.setenv("WARDEN_MASK_KEY", "test-mask-key")
    get_settings.cache_clear()
    at = T0 + timedelta(hours=1)
    out = CliRunner().invoke(
        app,
        ["data", "rotate-mask-key", "--tenant", "acme", "--from", "2026-12-01T11:00:00+01:00",
         "--actor", "ops", "--reason", "yearly"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "version 2" in out.output

    # Not yet in force: the same pseudonyms, still version 1.
    clock["now"] = at - timedelta(seconds=1)
    same = warden.read("alice", "engagements", purpose="training", columns=["user_id"], limit=200)
    assert frame(same)["user_id"].to_list() == old.to_list()
    assert event(warden, same.headers["x-warden-audit-event"])["details"]["mask_key_version"] == 1

    clock["now"] = at
    after = warden.read("alice", "engagements", purpose="training", columns=["user_id"], limit=200)
    new = frame(after)["user_id"]
    assert event(warden, after.headers["x-warden-audit-event"])["details"]["mask_key_version"] == 2
    assert not set(old.to_list()) & set(new.to_list())
    # still one pseudonym per user, still joining across datasets under the new version
    users = frame(warden.read("alice", "users", purpose="training", columns=["user_id"]))
    assert set(new.to_list()) <= set(users["user_id"].to_list())
    # an old pseudonym used as a filter finds nothing once the key has rotated
    hit = warden.read(
        "alice", "engagements", purpose="training", columns=["user_id"],
        where=[{"column": "user_id", "op": "eq", "value": old[0]}],
    )  # fmt: skip
    assert frame(hit).height == 0

    # The rotation itself is audited, with the version and its start, and no key anywhere.
    with warden.state.sessions() as db:
        query = select(AuditEvent).where(AuditEvent.action == "mask_key.rotate")
        rotations = list(db.scalars(query))
    assert [(e.actor, e.details["key_version"]) for e in rotations] == [("ops", 2)]
    assert rotations[0].details["effective_from"].startswith("2026-12-01T10:00:00")

    # Versions only move forward: a rotation that starts before the latest one is refused.
    back = CliRunner().invoke(
        app, ["data", "rotate-mask-key", "--tenant", "acme", "--from", "2026-12-01T09:30:00Z"]
    )
    assert back.exit_code != 0 and "cannot start before" in back.output
    bad = CliRunner().invoke(app, ["data", "rotate-mask-key", "--tenant", "acme", "--from", "soon"])
    assert bad.exit_code != 0 and "is not a time" in bad.output
    nobody = CliRunner().invoke(app, ["data", "rotate-mask-key", "--tenant", "nope"])
    assert nobody.exit_code != 0 and "no tenant" in nobody.output
    listed = CliRunner().invoke(app, ["data", "mask-keys", "--tenant", "acme", "--format", "json"])
    assert listed.exit_code == 0 and '"version": 2' in listed.output
    get_settings.cache_clear()


def test_the_key_version_is_the_readers_tenants_only(two_tenants: Any) -> None:
    """A rotation in one tenant re-keys that tenant only."""
    from warden.db.session import unit_of_work
    from warden.identity.service import get_tenant

    w = two_tenants
    globex_before = pseudonyms(w, "gina", "engagements", "training")
    acme_before = pseudonyms(w, "alice", "engagements", "training")
    with unit_of_work(w.state.sessions) as db:
        tenant = get_tenant(db, "acme")
        start = datetime.now(UTC) - timedelta(minutes=1)
        keys.rotate(db, tenant.id, effective_from=start, actor="t")
    assert pseudonyms(w, "gina", "engagements", "training") == globex_before
    acme_after = pseudonyms(w, "alice", "engagements", "training")
    assert not set(acme_after.values()) & set(acme_before.values())


def test_a_rotation_deleted_in_sql_brings_no_old_pseudonyms_back(
    warden: Any, operator_cli: Any
) -> None:
    """Found by a red-team round: deleting the rotated version's row put version 1 (the
    pseudonyms the rotation retired, perhaps because they leaked) back in force. The log
    records every rotation; a schedule that lacks one, or starts it later, is refused."""
    from sqlalchemy import text

    before = frame(warden.read("alice", "engagements", purpose="training", limit=50))
    rotated = operator_cli("data", "rotate-mask-key", "--tenant", "acme", "--reason", "leak")
    assert rotated.exit_code == 0, rotated.output
    after = frame(warden.read("alice", "engagements", purpose="training", limit=50))
    assert set(after["user_id"]).isdisjoint(before["user_id"])
    with warden.state.engine.begin() as conn:
        conn.execute(text("DELETE FROM mask_key_version"))
    answer = warden.read("alice", "engagements", purpose="training", limit=50)
    assert answer.status_code == 503 and "mask key version 2" in answer.text, answer.text


def test_an_earlier_version_read_after_a_rotation_is_masked_with_todays_key(
    warden: Any, operator_cli: Any
) -> None:
    """Red team 22b: a reader of masked `users` reads an earlier version (`--as-of`) after a
    rotation, hoping its pseudonyms come out under the retired key (the one that leaked) while
    today's come out under the new one, and a join of the two re-links them. A version is
    masked with the key in force at the read's time, whatever version it is."""
    from tests.gateway.test_row_order import register_users
    from warden.catalog.service import load_view
    from warden.catalog.tables import table_file
    from warden.db.session import unit_of_work

    first = warden.read("alice", "users", purpose="training", columns=["user_id"])
    retired = set(frame(first)["user_id"].to_list())
    old = first.headers["x-warden-dataset-version"]
    with unit_of_work(warden.state.sessions) as db:
        today = load_view(db, warden.state.settings.datasets_dir, "acme", "users")
    newer = Path(warden.state.settings.data_dir) / "users-newer.parquet"
    rows = table_file(warden.state.settings, today).scan().collect()
    rows.with_columns(pl.col("region").reverse()).write_parquet(newer)
    register_users(warden, newer, ["user_id"])
    rotated = operator_cli("data", "rotate-mask-key", "--tenant", "acme", "--reason", "leak")
    assert rotated.exit_code == 0, rotated.output

    now = frame(warden.read("alice", "users", purpose="training", columns=["user_id"]))
    as_of = warden.read("alice", "users", purpose="training", columns=["user_id"], version=old)
    assert as_of.headers["x-warden-dataset-version"] == old
    earlier = set(frame(as_of)["user_id"].to_list())
    assert earlier.isdisjoint(retired), "the earlier version came out under the retired key"
    assert earlier == set(now["user_id"].to_list())  # one user, one pseudonym, today's key
