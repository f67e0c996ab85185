"""An insider with database write access (and, for the file attacks, the checkpoint folder)
tries to rewrite the audit log; `verify` must say what was done, by kind.

The database attacks re-hash what they leave with the unkeyed hash, all the old chain asked
for; where a test re-hashes the whole chain, `old_verify` (the check before keyed chaining and
checkpoints) shows that the attack used to pass.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from warden.audit import chain
from warden.audit.checkpoints import Checkpointer, CheckpointStore
from warden.audit.keys import bind_settings, rotate_chain_key
from warden.audit.models import AuditEvent, AuditHead
from warden.audit.service import AuditRecord, record, verify
from warden.audit.verify import VerifyResult
from warden.config import Settings
from warden.db.session import unit_of_work

TABLE = AuditEvent.__table__


@dataclass
class Chain:
    engine: Engine
    sessions: sessionmaker[Session]
    settings: Settings
    checkpointer: Checkpointer

    @property
    def store(self) -> CheckpointStore:
        return self.checkpointer.store

    def fill(self, n: int, actor: str = "alice") -> None:
        for i in range(n):
            who = ("mallory", "alice")[i % 2] if actor == "mixed" else actor
            record(self.sessions, read(who))

    def checkpoint(self) -> int:
        outcome = self.checkpointer.checkpoint_now()
        assert outcome.checkpoint is not None, (outcome.skipped, outcome.findings)
        return outcome.checkpoint.seq

    def verify(self) -> VerifyResult:
        store = CheckpointStore.for_settings(self.settings)
        with unit_of_work(self.sessions) as db:
            return verify(db, checkpoints=store.read())

    def chain_only(self) -> VerifyResult:
        with unit_of_work(self.sessions) as db:
            return verify(db)

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(TABLE).order_by(TABLE.c.seq)).mappings()]

    def replace(self, rows: list[dict[str, Any]], *, rehash: bool = True, keep: int = 0) -> None:
        """Write `rows` as the whole chain, renumbered and re-linked with the unkeyed hash (all
        an attacker without the chain key can compute) after the first `keep` rows, and point
        the head at the end."""
        prev = chain.GENESIS_HASH
        out = []
        for seq, row in enumerate(rows, start=1):
            row = dict(row)
            if rehash and seq > keep:
                row["seq"], row["prev_hash"] = seq, prev
                row["hash"] = chain.event_hash(row)
            prev = row["hash"]
            out.append(row)
        with self.engine.begin() as conn:
            conn.execute(delete(TABLE))
            if out:
                conn.execute(insert(TABLE), out)
            conn.execute(update(AuditHead).values(seq=len(out), hash=prev))

    def kinds(self, result: VerifyResult) -> set[str]:
        return {f.kind for f in result.findings if f.severity == "tampering"}


def read(actor: str) -> AuditRecord:
    return AuditRecord(
        action="read",
        decision="allow",
        actor=actor,
        actor_kind="person",
        tenant="acme",
        dataset="engagements",
        columns=["pin_id"],
        rows=3,
    )


def old_verify(rows: list[dict[str, Any]], head: tuple[int, str]) -> bool:
    """The check before keyed chaining: sequence, links, sha256(prev || canonical), head."""
    prev_seq, prev = 0, chain.GENESIS_HASH
    for row in rows:
        if row["seq"] != prev_seq + 1 or row["prev_hash"] != prev:
            return False
        if chain.chain_hash(row["prev_hash"], chain.canonical(row, chain.CHAIN_V1)) != row["hash"]:
            return False
        prev_seq, prev = row["seq"], row["hash"]
    return head == (prev_seq, prev)


@pytest.fixture
def c(engine: Engine, sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[Chain]:
    settings = Settings(
        data_dir=tmp_path / "data", config_dir=tmp_path / "config", audit_checkpoint_interval_s=0
    )
    bind_settings(engine, settings)
    platform = SimpleNamespace(settings=settings, sessions=sessions, engine=engine)
    yield Chain(engine, sessions, settings, Checkpointer(platform))  # type: ignore[arg-type]


def head_of(c: Chain) -> tuple[int, str]:
    with c.engine.connect() as conn:
        row = conn.execute(select(AuditHead.seq, AuditHead.hash)).one()
    return row.seq, row.hash


# --- the four rewrites of the finding ------------------------------------------------------


def test_truncation_past_a_checkpoint_is_found(c: Chain) -> None:
    c.fill(6)
    c.checkpoint()  # covers seq 6; its record is event 7
    c.fill(3)
    kept = [r for r in c.rows() if r["seq"] <= 4]
    with c.engine.begin() as conn:
        conn.execute(delete(TABLE).where(TABLE.c.seq > 4))
        conn.execute(update(AuditHead).values(seq=4, hash=kept[-1]["hash"]))
    # A head reset leaves a consistent chain (as it did before): only the checkpoint tells.
    assert c.chain_only().ok

    result = c.verify()
    assert not result.ok
    assert c.kinds(result) == {"truncation"}
    truncation = next(f for f in result.findings if f.kind == "truncation")
    assert truncation.seq == 6 and "ends at seq 4" in truncation.detail


def test_an_edited_event_with_recomputed_later_hashes_is_found(c: Chain) -> None:
    c.fill(6)
    c.checkpoint()
    c.fill(2)
    rows = c.rows()
    rows[2]["actor"] = "nobody"
    c.replace(rows, keep=2)  # re-hash from the edit on

    result = c.verify()
    assert not result.ok and c.kinds(result) == {"rewritten"}
    first = result.findings[0]
    assert (first.kind, first.seq) == ("rewritten", 3)
    assert first.count == len(rows) - 2  # the edit and every re-hashed event after it
    assert any(f.kind == "rewritten" and "checkpoint 1" in f.detail for f in result.findings)


def test_an_edit_with_the_whole_chain_rehashed_is_found(c: Chain) -> None:
    c.fill(6)
    c.checkpoint()
    rows = c.rows()
    rows[2]["actor"] = "nobody"
    c.replace(rows)
    assert old_verify(c.rows(), head_of(c))  # all the unkeyed chain ever asked
    result = c.verify()
    assert not result.ok and c.kinds(result) == {"rewritten"}


def test_deleting_one_actors_events_and_rechaining_is_found(c: Chain) -> None:
    c.fill(8, actor="mixed")
    c.checkpoint()
    rows = [r for r in c.rows() if r["actor"] != "mallory"]
    c.replace(rows)
    assert old_verify(c.rows(), head_of(c))

    result = c.verify()
    assert not result.ok
    assert {"rewritten", "rechained"} <= c.kinds(result)
    moved = next(f for f in result.findings if f.kind == "rechained")
    assert "were removed and the chain renumbered" in moved.detail


def test_deleting_everything_and_resetting_to_genesis_is_found(c: Chain) -> None:
    c.fill(5)
    c.checkpoint()
    c.replace([])
    assert old_verify(c.rows(), head_of(c)) and head_of(c) == (0, chain.GENESIS_HASH)
    assert c.chain_only().ok

    result = c.verify()
    assert not result.ok and c.kinds(result) == {"deletion"}


# --- variants ------------------------------------------------------------------------------


def test_replacing_everything_with_a_fresh_plausible_chain_is_found(c: Chain) -> None:
    c.fill(5)
    c.checkpoint()
    fake = c.rows()
    for row in fake:
        row["id"] = os.urandom(16).hex()
        row["actor"] = "someone-else"
    c.replace(fake)
    result = c.verify()
    assert not result.ok and "rewritten" in c.kinds(result)


def test_deleting_a_middle_event_and_renumbering_is_found(c: Chain) -> None:
    c.fill(6)
    c.checkpoint()
    rows = c.rows()
    del rows[2]
    c.replace(rows)
    assert old_verify(c.rows(), head_of(c))
    result = c.verify()
    assert not result.ok and {"rewritten", "rechained"} <= c.kinds(result)


def test_a_middle_gap_left_as_it_is_is_a_gap(c: Chain) -> None:
    c.fill(5)
    with c.engine.begin() as conn:
        conn.execute(delete(TABLE).where(TABLE.c.seq == 3))
    result = c.chain_only()
    assert not result.ok and "gap" in c.kinds(result)


def test_swapping_two_events_is_found(c: Chain) -> None:
    c.fill(5, actor="mixed")
    rows = c.rows()
    rows[1], rows[2] = rows[2], rows[1]
    c.replace(rows)
    assert old_verify(c.rows(), head_of(c))
    result = c.verify()
    assert not result.ok and "rewritten" in c.kinds(result)


def test_swapping_two_events_without_rehashing_breaks_the_links(c: Chain) -> None:
    c.fill(5, actor="mixed")
    rows = c.rows()
    rows[1]["seq"], rows[2]["seq"] = 3, 2
    rows.sort(key=lambda r: r["seq"])
    c.replace(rows, rehash=False)
    result = c.chain_only()
    assert not result.ok and {"relinked", "rewritten"} <= c.kinds(result)


def test_a_guessed_key_does_not_help(c: Chain) -> None:
    c.fill(4)
    rows = c.rows()
    rows[1]["rows"] = 999_999
    prev = rows[0]["hash"]
    for row in rows[1:]:
        row["prev_hash"] = prev
        row["hash"] = prev = chain.keyed_hash(b"admin-guess-" * 4, prev, chain.canonical(row))
    c.replace(rows, rehash=False)
    result = c.chain_only()
    assert not result.ok and c.kinds(result) == {"rewritten"}


def test_a_downgraded_rewrite_to_the_unkeyed_form_is_found(c: Chain) -> None:
    c.fill(5)
    c.checkpoint()
    rows = c.rows()
    for row in rows:
        row["chain_v"], row["key_id"] = 1, None
    rows[1]["actor"] = "nobody"
    c.replace(rows)
    assert old_verify(c.rows(), head_of(c))
    result = c.verify()
    assert not result.ok and {"downgrade", "rewritten"} <= c.kinds(result)


def test_an_unkeyed_event_appended_after_keyed_ones_is_a_downgrade(c: Chain) -> None:
    c.fill(3)
    rows = c.rows()
    extra = dict(rows[-1], seq=4, id="e" * 32, prev_hash=rows[-1]["hash"], chain_v=1, key_id=None)
    rows.append(extra)
    c.replace(rows)
    result = c.chain_only()
    assert not result.ok and "downgrade" in c.kinds(result)


def test_a_forged_key_id_is_an_unknown_key(c: Chain) -> None:
    c.fill(3)
    with c.engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(key_id="0" * 16))
    result = c.chain_only()
    assert not result.ok and "unknown_key" in c.kinds(result)


def test_a_head_row_reset_alone_is_found(c: Chain) -> None:
    c.fill(3)
    with c.engine.begin() as conn:
        conn.execute(update(AuditHead).values(hash="f" * 64))
    result = c.chain_only()
    assert not result.ok and "head_mismatch" in c.kinds(result)


# --- the checkpoint file and the keys ------------------------------------------------------


def test_an_edited_checkpoint_line_fails_its_signature(c: Chain) -> None:
    c.fill(4)
    c.checkpoint()
    path = c.store.path
    doc = json.loads(path.read_text())
    doc["seq"] = 2  # say the chain was shorter
    path.write_text(json.dumps(doc) + "\n")
    result = c.verify()
    assert not result.ok and "checkpoint_forged" in c.kinds(result)
    assert result.checkpoints_checked == 0


def test_a_checkpoint_signed_with_another_key_is_forged(c: Chain) -> None:
    c.fill(4)
    c.checkpoint()
    rogue = CheckpointStore(c.store.folder, {}, Ed25519PrivateKey.generate())
    forged = rogue.sign(n=2, seq=1, event_id=None, hash_="0" * 64, v1_until=0, keys=[])
    rogue.append(forged)
    result = c.verify()
    assert not result.ok and c.kinds(result) == {"checkpoint_forged"}
    assert any("does not know" in f.detail for f in result.findings)


def test_a_deleted_checkpoint_file_is_reported(c: Chain) -> None:
    c.fill(4)
    c.checkpoint()
    c.store.path.unlink()
    result = c.verify()
    assert not result.ok and c.kinds(result) == {"checkpoint_missing"}
    assert any("does not exist" in f.detail for f in result.findings)


def test_a_deleted_last_checkpoint_line_is_reported(c: Chain) -> None:
    c.fill(2)
    c.checkpoint()
    c.fill(2)
    c.checkpoint()
    lines = c.store.path.read_text().splitlines(keepends=True)
    c.store.path.write_text(lines[0])
    result = c.verify()
    assert not result.ok and c.kinds(result) == {"checkpoint_missing"}


def test_a_deleted_middle_checkpoint_line_is_reported(c: Chain) -> None:
    for _ in range(3):
        c.fill(1)
        c.checkpoint()
    lines = c.store.path.read_text().splitlines(keepends=True)
    c.store.path.write_text(lines[0] + lines[2])
    result = c.verify()
    assert not result.ok and c.kinds(result) == {"checkpoint_missing"}


def test_a_replaced_chain_key_file_is_a_key_mismatch_not_silence(c: Chain) -> None:
    c.fill(3)
    key_file = c.settings.resolved_audit_keys_dir / "audit-chain" / "1.key"
    key_file.write_text(os.urandom(32).hex())
    bind_settings(c.engine, c.settings)  # the server restarts with the replaced file
    c.fill(1)
    result = c.chain_only()
    assert not result.ok and c.kinds(result) == {"unknown_key"}
    unknown = next(f for f in result.findings if f.kind == "unknown_key")
    assert unknown.seq == 1 and unknown.count == 3 and "replaced or lost" in unknown.detail


def test_a_replaced_signing_key_is_reported(c: Chain) -> None:
    c.fill(2)
    c.checkpoint()
    keys_dir = c.settings.resolved_audit_keys_dir
    (keys_dir / "audit-signing.key").unlink()
    (keys_dir / "audit-signing.pub").unlink()
    result = c.verify()  # a new signing key is made; the old checkpoint is no longer its
    assert not result.ok and "checkpoint_forged" in c.kinds(result)


def test_rotated_keys_keep_old_events_verifiable(c: Chain) -> None:
    c.fill(2)
    old = rotate_chain_key(c.settings)
    bind_settings(c.engine, c.settings)
    c.fill(2)
    ids = [r["key_id"] for r in c.rows()]
    assert ids[2:] == [old.id, old.id] and ids[0] != old.id
    result = c.verify()
    assert result.ok and len(result.key_ids) == 2


def test_legacy_unkeyed_events_verify_and_stay_protected(c: Chain) -> None:
    c.fill(3)
    rows = c.rows()
    for row in rows:  # as migration 0002 leaves events written before it
        row["chain_v"], row["key_id"] = 1, None
    c.replace(rows)
    c.fill(2)  # keyed from here; the first keyed event's HMAC covers the last legacy hash
    c.checkpoint()
    assert c.verify().ok
    rows = c.rows()
    rows[0]["actor"] = "nobody"
    c.replace(rows[:3], rehash=True)  # rewrite the legacy part and drop the rest
    assert not c.verify().ok


# --- the checkpointer ----------------------------------------------------------------------


def test_a_checkpoint_is_signed_filed_and_recorded(c: Chain, captured: Any) -> None:
    c.fill(3)
    outcome = c.checkpointer.checkpoint_now()
    cp = outcome.checkpoint
    assert cp is not None and cp.seq == 3 and cp.n == 1
    line = json.loads(c.store.path.read_text())
    assert line["seq"] == 3 and line["hash"] == c.rows()[2]["hash"] and line["sig"]
    recorded = c.rows()[-1]
    assert recorded["seq"] == outcome.event_seq == 4
    assert recorded["action"] == "audit.checkpoint" and recorded["tenant"] is None
    assert recorded["details"]["digest"] == cp.digest
    logs = [r.log_record for r in captured.logs.get_finished_logs()]
    assert any((r.attributes or {}).get("warden.checkpoint.seq") == 3 for r in logs)
    # Nothing new (only its own record): no checkpoint of a checkpoint.
    assert c.checkpointer.checkpoint_now().skipped
    result = c.verify()
    assert result.ok and result.newest_checkpoint is not None
    assert result.unprotected_events == 1  # its own record, until the next checkpoint


def test_the_checkpointer_refuses_to_sign_a_tampered_chain(c: Chain) -> None:
    c.fill(3)
    c.checkpoint()
    c.fill(2)
    with c.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'nobody' WHERE seq = 5"))
    before = c.store.path.read_text()
    outcome = c.checkpointer.checkpoint_now()
    assert outcome.checkpoint is None and {f.kind for f in outcome.findings} == {"rewritten"}
    assert c.store.path.read_text() == before


def test_the_tail_after_the_newest_checkpoint_is_the_window(c: Chain) -> None:
    """What checkpoints cannot do: events after the newest one can be removed unseen; verify
    says how many events are exposed and since when."""
    c.fill(3)
    c.checkpoint()
    c.fill(2)
    assert c.verify().unprotected_events == 3  # the checkpoint's record and two reads
    rows = c.rows()
    with c.engine.begin() as conn:
        conn.execute(delete(TABLE).where(TABLE.c.seq > 4))
        conn.execute(update(AuditHead).values(seq=4, hash=rows[3]["hash"]))
    result = c.verify()
    assert result.ok and result.unprotected_events == 1 and result.unprotected_since


def test_the_background_checkpointer_writes_on_its_cadence(c: Chain) -> None:
    c.fill(2)
    platform = SimpleNamespace(settings=c.settings, sessions=c.sessions, engine=c.engine)
    ticker = Checkpointer(platform, interval_s=0.05)  # type: ignore[arg-type]
    ticker.start()
    try:
        assert ticker.wait_for_checkpoint(timeout=60)
    finally:
        ticker.stop()
    assert c.verify().newest_checkpoint is not None


def test_keys_and_checkpoints_are_private_files(c: Chain) -> None:
    c.fill(1)
    c.checkpoint()
    keys_dir = c.settings.resolved_audit_keys_dir
    private = [keys_dir / "audit-signing.key", keys_dir / "audit-chain" / "1.key", c.store.path]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (keys_dir, keys_dir / "audit-chain", c.store.folder):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_rotated_signing_key_keeps_old_checkpoints_verifiable(c: Chain) -> None:
    c.fill(2)
    c.checkpoint()
    keys_dir = c.settings.resolved_audit_keys_dir
    (keys_dir / "audit-signing.pub").rename(keys_dir / "audit-signing-2026-01.pub")
    (keys_dir / "audit-signing.key").unlink()
    platform = SimpleNamespace(settings=c.settings, sessions=c.sessions, engine=c.engine)
    rotated = Checkpointer(platform)  # type: ignore[arg-type]
    assert rotated.store.store != c.store.store
    c.fill(2)
    outcome = rotated.checkpoint_now()
    assert outcome.checkpoint is not None and outcome.checkpoint.n == 1
    result = c.verify()
    assert result.ok, result.findings
    assert result.checkpoints_checked == 2
    assert not [f for f in result.findings if f.kind == "other_store"]
    # Drop the old checkpoint's line: still caught, under the old key's store.
    lines = c.store.path.read_text().splitlines(keepends=True)
    c.store.path.write_text(lines[1])
    assert c.kinds(c.verify()) == {"checkpoint_missing"}


# --- rows the walk never reads (found by a red-team review) ---------------------------------


@pytest.mark.parametrize("seq", [0, -7])
def test_a_forged_event_numbered_below_the_chain_is_found(c: Chain, seq: int) -> None:
    """The walk starts at seq 1 and the head bounds it above: a row planted below 1 was never
    walked, yet the query API listed it as a real read."""
    c.fill(3)
    c.checkpoint()
    forged = dict(c.rows()[0], seq=seq, id="f" * 32, actor="bob", dataset="payroll", rows=10**6)
    forged["hash"] = "0" * 64
    with c.engine.begin() as conn:
        conn.execute(insert(TABLE), [forged])
    result = c.verify()
    assert c.kinds(result) == {"outside_chain"}, result.findings
    assert "1 event(s) numbered below 1" in result.findings[0].detail


def test_an_event_numbered_with_text_is_found_not_a_crash(c: Chain) -> None:
    if c.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL refuses text in an integer column")
    c.fill(2)
    c.checkpoint()
    with c.engine.begin() as conn:
        conn.execute(insert(TABLE), [dict(c.rows()[0], seq="zz", id="e" * 32)])
    assert "outside_chain" in c.kinds(c.verify())


@pytest.mark.parametrize("rendered", ["offset", "T"])
def test_a_timestamp_rewritten_as_other_text_for_the_same_instant_is_found(
    c: Chain, rendered: str
) -> None:
    """SQLite keeps text: '+14:00' or a 'T' parses to the same instant (so the hash holds)
    but sorts elsewhere, hiding the event from since/until queries."""
    if c.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL stores timestamptz, not text")
    c.fill(4)
    c.checkpoint()
    when = chain.utc(c.rows()[2]["ts"])
    if rendered == "offset":
        text_ts = (when + timedelta(hours=14)).strftime("%Y-%m-%d %H:%M:%S.%f") + "+14:00"
    else:
        text_ts = when.strftime("%Y-%m-%dT%H:%M:%S.%f")
    with c.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET ts = :ts WHERE seq = 3"), {"ts": text_ts})
    result = c.verify()
    assert c.kinds(result) == {"not_canonical"}, result.findings
    assert result.findings[0].seq == 3


@pytest.mark.parametrize("how", ["view", "trigger"])
def test_a_log_table_made_to_answer_queries_unlike_the_walk_is_found(c: Chain, how: str) -> None:
    """A view named audit_event that hides one actor from some queries (or a trigger on the
    table) could make auditors' queries disagree with what `verify` walks."""
    c.fill(3, actor="mixed")
    c.checkpoint()
    postgres = c.engine.dialect.name == "postgresql"
    with c.engine.begin() as conn:
        if how == "view":
            conn.execute(text("ALTER TABLE audit_event RENAME TO audit_event_real"))
            conn.execute(
                text(
                    "CREATE VIEW audit_event AS SELECT * FROM audit_event_real"
                    " WHERE actor <> 'mallory'"
                    + (" OR current_query() NOT LIKE '%tenant =%'" if postgres else "")
                )
            )
        elif postgres:
            conn.execute(
                text(
                    "CREATE FUNCTION rt_noop() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RETURN NEW; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER rt_hide BEFORE INSERT ON audit_event"
                    " FOR EACH ROW EXECUTE FUNCTION rt_noop()"
                )
            )
        else:
            conn.execute(
                text("CREATE TRIGGER rt_hide AFTER INSERT ON audit_event BEGIN SELECT 1; END")
            )
    assert "not_a_table" in c.kinds(c.verify())
