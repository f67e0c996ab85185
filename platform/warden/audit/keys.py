"""The audit log's keys, kept outside the database.

- **Chain keys** (HMAC-SHA256 secrets): every event's hash is keyed, so someone who can write
  the database but cannot read these files cannot forge a hash. Each key is known by its id,
  a fingerprint of the secret, recorded in every event it chained; rotating adds a key and
  keeps the old ones, so old events still verify. A replaced or lost key shows up in `verify`
  as events chained with a key this deployment does not hold.
- **The checkpoint signing key** (Ed25519): signs checkpoints of the chain head; its public
  half is written beside it so anyone can check checkpoints without the private key.

Files live in `Settings.resolved_audit_keys_dir` (default `config_dir/keys`), 0600 in a 0700
folder, created on first use. `WARDEN_AUDIT_CHAIN_KEY` (comma-separated secrets, the last one
current) replaces the chain-key files.

The keys an engine's events are chained with are bound to that engine (`bind_keys`, done by
`build_platform` and `warden init`); an engine nobody bound uses the process default, loaded
from the environment's settings on first use.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select

from warden.audit.models import AuditEvent
from warden.config import Settings

CHAIN_KEY_DIR = "audit-chain"
SIGNING_KEY_FILE = "audit-signing.key"
SIGNING_PUBLIC_FILE = "audit-signing.pub"
_MIN_SECRET = 16


class AuditKeyError(Exception):
    """A key file is unreadable or malformed."""


def key_id(secret: bytes) -> str:
    """A chain key's id: 16 hex digits of a domain-separated SHA-256 of the secret."""
    return hashlib.sha256(b"warden-audit-chain-key-id\x00" + secret).hexdigest()[:16]


@dataclass(frozen=True)
class ChainKey:
    id: str
    secret: bytes = b""

    def mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never print the secret
        return f"ChainKey(id={self.id!r})"


@dataclass(frozen=True)
class ChainKeyring:
    """The current key (used for new events) and every older one (for verifying)."""

    current: ChainKey
    keys: tuple[ChainKey, ...]

    def get(self, kid: str | None) -> ChainKey | None:
        for key in self.keys:
            if key.id == kid:
                return key
        return None

    @property
    def ids(self) -> list[str]:
        return [k.id for k in self.keys]

    @classmethod
    def from_secrets(cls, secrets_: Iterable[bytes]) -> ChainKeyring:
        keys: list[ChainKey] = []
        for secret in secrets_:
            if len(secret) < _MIN_SECRET:
                raise AuditKeyError(f"an audit chain key must be at least {_MIN_SECRET} bytes")
            key = ChainKey(key_id(secret), secret)
            if key.id not in {k.id for k in keys}:
                keys.append(key)
        if not keys:
            raise AuditKeyError("no audit chain key")
        return cls(current=keys[-1], keys=tuple(keys))


# ---------------------------------------------------------------------------------------------
# Files


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def _create_exclusive(path: Path, content: bytes) -> bool:
    """Write `path` with `content`, 0600, only if it does not exist; False if it did.

    Written to a temporary file first and linked into place, so a concurrent reader never
    sees a half-written key and two processes creating it at once agree on one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _chain_key_files(keys_dir: Path) -> list[Path]:
    folder = keys_dir / CHAIN_KEY_DIR
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.suffix == ".key" and p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def _read_secret(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
        return bytes.fromhex(text)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise AuditKeyError(f"cannot read the audit chain key {path}: {exc}") from exc


def load_chain_keyring(settings: Settings) -> ChainKeyring:
    """The chain keys from WARDEN_AUDIT_CHAIN_KEY, else from the key folder (made if empty)."""
    if settings.audit_chain_key:
        parts = [p.strip() for p in settings.audit_chain_key.split(",") if p.strip()]
        return ChainKeyring.from_secrets(p.encode("utf-8") for p in parts)
    keys_dir = settings.resolved_audit_keys_dir
    files = _chain_key_files(keys_dir)
    if not files:
        folder = _private_dir(_private_dir(keys_dir) / CHAIN_KEY_DIR)
        _create_exclusive(folder / "1.key", secrets.token_hex(32).encode("ascii"))
        files = _chain_key_files(keys_dir)
    return ChainKeyring.from_secrets(_read_secret(p) for p in files)


def rotate_chain_key(settings: Settings) -> ChainKey:
    """Add a new current chain key (the old ones stay, for verifying); returns it."""
    if settings.audit_chain_key:
        raise AuditKeyError(
            "chain keys come from WARDEN_AUDIT_CHAIN_KEY: append a new secret to it instead"
        )
    load_chain_keyring(settings)  # the first key, if there is none yet
    folder = _private_dir(settings.resolved_audit_keys_dir / CHAIN_KEY_DIR)
    while True:
        files = _chain_key_files(settings.resolved_audit_keys_dir)
        number = int(files[-1].stem) + 1 if files else 1
        secret = secrets.token_hex(32).encode("ascii")
        if _create_exclusive(folder / f"{number}.key", secret):
            return ChainKey(key_id(bytes.fromhex(secret.decode())), bytes.fromhex(secret.decode()))


# ---------------------------------------------------------------------------------------------
# The checkpoint signing key


def public_key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(b"warden-audit-signing-key-id\x00" + raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The Ed25519 checkpoint signing key, generated (with its .pub beside it) if missing."""
    keys_dir = _private_dir(settings.resolved_audit_keys_dir)
    path = keys_dir / SIGNING_KEY_FILE
    if not path.exists():
        fresh = Ed25519PrivateKey.generate()
        pem = fresh.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _create_exclusive(path, pem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AuditKeyError(f"cannot read the audit signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path} is not an Ed25519 private key")
    pub_path = keys_dir / SIGNING_PUBLIC_FILE
    if not pub_path.exists():
        _create_exclusive(pub_path, public_pem(key.public_key()))
    return key


def load_public_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """Every checkpoint-verifying public key known: the signing key's, and any `*.pub` kept
    in the key folder (older signing keys after a rotation), by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    keys_dir = settings.resolved_audit_keys_dir
    private = keys_dir / SIGNING_KEY_FILE
    if private.exists():
        public = load_signing_key(settings).public_key()
        keys[public_key_id(public)] = public
    if keys_dir.is_dir():
        for path in sorted(keys_dir.glob("*.pub")):
            try:
                loaded = serialization.load_pem_public_key(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise AuditKeyError(f"cannot read the public key {path}: {exc}") from exc
            if isinstance(loaded, Ed25519PublicKey):
                keys[public_key_id(loaded)] = loaded
    return keys


# ---------------------------------------------------------------------------------------------
# Which keys an engine's events are chained with

_bound: weakref.WeakKeyDictionary[Any, ChainKeyring] = weakref.WeakKeyDictionary()
_default: ChainKeyring | None = None
_lock = threading.Lock()


def bind_keys(engine: Any, keyring: ChainKeyring) -> None:
    """Chain events written through `engine` with `keyring` (build_platform does this)."""
    _bound[engine] = keyring


def bind_settings(engine: Any, settings: Settings) -> ChainKeyring:
    keyring = load_chain_keyring(settings)
    bind_keys(engine, keyring)
    return keyring


def keys_for(engine: Any) -> ChainKeyring:
    """The keyring bound to `engine` (or a connection's engine), else the process default
    (from the environment)."""
    keyring = _bound.get(getattr(engine, "engine", engine))
    if keyring is not None:
        return keyring
    global _default
    with _lock:
        if _default is None:
            _default = load_chain_keyring(Settings())
        return _default


def derived_mac(keys: ChainKeyring, label: bytes, text: str) -> str:
    """HMAC-SHA256 of `text` under a key for `label` (tokens, token rows, reviews) drawn from
    the deployment's first chain key, which lives outside the database: rows carrying it
    cannot be forged by a database writer. The first key, not the current one, so rotating
    the chain key invalidates nothing."""
    return hmac.new(_derived_key(keys.keys[0].secret, label), text.encode(), "sha256").hexdigest()


def derived_key(keys: ChainKeyring, label: bytes) -> bytes:
    """A 32-byte key for `label` drawn from the first chain key (as derived_mac's)."""
    return _derived_key(keys.keys[0].secret, label)


@functools.lru_cache(maxsize=64)
def _derived_key(secret: bytes, label: bytes) -> bytes:
    """Derived once per key and label: every authenticated request checks several seals."""
    return hmac.digest(secret, b"warden-derived-key\x00" + label, "sha256")


def reset_default() -> None:
    """Forget the process default keyring (tests that change the environment use this)."""
    global _default
    with _lock:
        _default = None


__all__ = [
    "ChainKey",
    "ChainKeyring",
    "AuditKeyError",
    "bind_keys",
    "bind_settings",
    "derived_key",
    "key_id",
    "keys_for",
    "load_chain_keyring",
    "load_public_keys",
    "load_signing_key",
    "public_key_id",
    "public_pem",
    "reset_default",
    "rotate_chain_key",
]


def foreign_chain_key(conn: Any, keyring: ChainKeyring) -> str | None:
    """The id of the key the chain was last written with, when `keyring` does not hold it:
    a host started with its own key (a fresh file instead of the deployment's
    WARDEN_AUDIT_CHAIN_KEY) would chain events no other host can verify."""
    newest = conn.execute(
        select(AuditEvent.key_id)
        .where(AuditEvent.key_id.is_not(None))
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).scalar()
    return str(newest) if newest is not None and keyring.get(newest) is None else None
