"""Several hosts, one audit chain and one master mask key: a host that does not hold the key
the chain was last written with refuses to start (it would chain events no other host can
verify), and so does one whose mask key is not the deployment's (its pseudonyms would not
join the other hosts')."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.serving import warden_cli
from warden.audit.keys import ChainKeyring, foreign_chain_key, key_id, load_chain_keyring
from warden.config import Settings
from warden.db.session import make_engine
from warden.gateway.master_key import fingerprint, key_file, load_mask_key, short
from warden.identity.bootstrap import initialize

OTHER = "another-hosts-own-chain-key-0123456789"
OTHER_MASK = "another-hosts-own-mask-key-0123456789"


def _deployment(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config")
    initialize(settings, tenant="acme", admin="admin")  # chains `policy.bootstrap`
    return settings


def _foreign(settings: Settings, keyring: ChainKeyring) -> str | None:
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return foreign_chain_key(conn, keyring)
    finally:
        engine.dispose()


def test_only_a_keyring_without_the_chains_newest_key_is_foreign(tmp_path: Path) -> None:
    settings = _deployment(tmp_path)
    own = load_chain_keyring(settings)
    assert _foreign(settings, own) is None
    current = own.keys[-1].secret
    rotated = ChainKeyring.from_secrets([current, b"a-newer-key-after-rotation-000"])
    assert _foreign(settings, rotated) is None  # old keys kept: still this deployment
    other = ChainKeyring.from_secrets([OTHER.encode()])
    assert _foreign(settings, other) == own.keys[-1].id


def test_serve_and_worker_refuse_a_key_of_their_own(tmp_path: Path) -> None:
    settings = _deployment(tmp_path)
    chained_with = load_chain_keyring(settings).keys[-1].id
    for args in (["serve", "--port", "1"], ["worker", "--once"]):
        done = warden_cli(tmp_path, *args, WARDEN_AUDIT_CHAIN_KEY=OTHER)
        said = " ".join((done.stdout + done.stderr).split())
        assert done.returncode != 0, (args, said)
        assert "refusing to start" in said and chained_with in said, said
        assert key_id(OTHER.encode()) in said and "WARDEN_AUDIT_CHAIN_KEY" in said, said
    # The deployment's own key (from its key folder) starts: the worker runs one round.
    done = warden_cli(tmp_path, "worker", "--once")
    assert done.returncode == 0, done.stdout + done.stderr


# --- the master mask key ------------------------------------------------------------------


def _sql(url: str, statement: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement))
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _recorded(url: str) -> list[Any]:
    return _sql(url, "SELECT fingerprint, recorded_by FROM deployment_key WHERE name = 'mask'")


def _said(done: Any) -> str:
    return " ".join((done.stdout + done.stderr).split())


def test_init_records_a_keyed_fingerprint_of_the_mask_key_never_the_key(tmp_path: Path) -> None:
    settings = _deployment(tmp_path)
    key = load_mask_key(settings)  # the deployment's key file, made by `warden init`
    [(recorded, by)] = _recorded(settings.resolved_database_url)
    assert recorded == fingerprint(key) != fingerprint(OTHER_MASK.encode()) and by == "warden init"
    assert recorded not in (hashlib.sha256(key).hexdigest(), key.decode())  # keyed, one-way
    [(details,)] = _sql(
        settings.resolved_database_url,
        "SELECT details FROM audit_event WHERE action = 'mask_key.record'",
    )
    assert short(recorded) in str(details) and key.decode() not in str(details)


def test_serve_and_worker_refuse_a_mask_key_of_their_own(tmp_path: Path) -> None:
    settings = _deployment(tmp_path)
    key = load_mask_key(settings)
    for args in (["serve", "--port", "1"], ["worker", "--once"]):
        said = _said(done := warden_cli(tmp_path, *args, WARDEN_MASK_KEY=OTHER_MASK))
        assert done.returncode != 0, (args, said)
        assert "refusing to start" in said and short(fingerprint(key)) in said, said
        assert short(fingerprint(OTHER_MASK.encode())) in said, said
        assert "WARDEN_MASK_KEY" in said and str(key_file(settings)) in said, said
    # The same key, given in the environment instead of the file, starts.
    done = warden_cli(tmp_path, "worker", "--once", WARDEN_MASK_KEY=key.decode())
    assert done.returncode == 0, _said(done)


def test_the_first_host_of_a_deployment_without_a_fingerprint_records_its_key(
    tmp_path: Path,
) -> None:
    """A deployment from before fingerprints were kept, which has masked nothing yet."""
    settings = _deployment(tmp_path)
    url = settings.resolved_database_url
    _sql(url, "DELETE FROM deployment_key WHERE name = 'mask'")
    done = warden_cli(tmp_path, "worker", "--once")
    assert done.returncode == 0, _said(done)
    [(recorded, by)] = _recorded(url)
    assert recorded == fingerprint(load_mask_key(settings)) and by.startswith("host ")
    hows = _sql(url, "SELECT details FROM audit_event WHERE action = 'mask_key.record'")
    assert len(hows) == 2 and "first start" in str(hows)  # init's, then this host's
    done = warden_cli(tmp_path, "worker", "--once", WARDEN_MASK_KEY=OTHER_MASK)
    assert done.returncode != 0 and "is not the deployment's" in _said(done)


def test_deleting_the_fingerprint_after_masked_reads_lets_no_key_in(
    warden: Any, db_url: str, tmp_path: Path
) -> None:
    def start(key: str) -> Any:
        return warden_cli(tmp_path, "worker", "--once", WARDEN_DATABASE_URL=db_url,
                          WARDEN_MASK_KEY=key)  # fmt: skip

    def forget() -> None:  # as someone who can write the database would
        _sql(db_url, "DELETE FROM deployment_key WHERE name = 'mask'")

    ours = "test-mask-key"  # the harness's (tests/conftest.py MASK_KEY)
    assert _recorded(db_url)[0][0] == fingerprint(ours.encode())
    # only unmasked reads so far: a first start may record its key
    plain = warden.read("alice", "pins", purpose="training", columns=["pin_id"], limit=3)
    assert plain.status_code == 200 and not plain.headers["x-warden-masked-columns"]
    forget()
    assert start(ours).returncode == 0 and _recorded(db_url)[0][0] == fingerprint(ours.encode())

    masked = warden.read("alice", "engagements", purpose="training", columns=["user_id"], limit=3)
    assert masked.status_code == 200 and masked.headers["x-warden-masked-columns"] == "user_id"
    forget()
    # Pseudonyms are out: no host's key is taken on trust, not even the right one.
    for key in (OTHER_MASK, ours):
        said = _said(done := start(key))
        assert done.returncode != 0 and "records no mask key fingerprint" in said, said
        assert "warden data record-mask-key" in said, said
    assert _recorded(db_url) == []

    # An operator records the key they know (audited); then it starts, and a foreign one not.
    done = warden_cli(tmp_path, "data", "record-mask-key", "--reason", "lost the row",
                      WARDEN_DATABASE_URL=db_url, WARDEN_MASK_KEY=ours)  # fmt: skip
    assert done.returncode == 0, _said(done)
    event = warden.audit_events(action="mask_key.record")[0]
    assert event["reason"] == "lost the row"
    assert event["details"]["fingerprint"] == short(fingerprint(ours.encode()))
    assert start(ours).returncode == 0
    said = _said(done := start(OTHER_MASK))
    assert done.returncode != 0 and "is not the deployment's" in said, said
    # recording another key over the deployment's needs --replace (every pseudonym changes)
    done = warden_cli(tmp_path, "data", "record-mask-key",
                      WARDEN_DATABASE_URL=db_url, WARDEN_MASK_KEY=OTHER_MASK)  # fmt: skip
    assert done.returncode != 0 and "--replace" in _said(done)
    assert _recorded(db_url)[0][0] == fingerprint(ours.encode())
