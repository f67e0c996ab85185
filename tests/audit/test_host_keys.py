"""Several hosts, one audit chain: a host that does not hold the key the chain was last
written with refuses to start (it would chain events no other host can verify)."""

from __future__ import annotations

from pathlib import Path

from tests.serving import warden_cli
from warden.audit.keys import ChainKeyring, foreign_chain_key, key_id, load_chain_keyring
from warden.config import Settings
from warden.db.session import make_engine
from warden.identity.bootstrap import initialize

OTHER = "another-hosts-own-chain-key-0123456789"


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
