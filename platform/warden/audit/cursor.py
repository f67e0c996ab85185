"""Audit query cursors, sealed: a page's cursor tells whoever holds it nothing.

A cursor carries the chain's global seq it continues below. In the clear it would count every
tenant's events between two of one tenant's pages, so it is encrypted (AES-GCM under a key
drawn from the deployment's first chain key, which the database does not hold) and a forged
or edited cursor is refused like a malformed one.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from warden.audit.keys import ChainKeyring, derived_key
from warden.errors import BadRequest

_LABEL = b"audit-cursor"
_AAD = b"warden audit cursor v2"
_PREFIX = "v2."
MAX_CURSOR_LENGTH = 64


def encode_cursor(keys: ChainKeyring, seq: int) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(derived_key(keys, _LABEL)).encrypt(nonce, seq.to_bytes(8, "big"), _AAD)
    return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def decode_cursor(keys: ChainKeyring, cursor: str) -> int:
    """The seq a cursor continues below; anything encode_cursor did not make is BadRequest."""
    if len(cursor) > MAX_CURSOR_LENGTH or not cursor.startswith(_PREFIX):
        raise BadRequest("malformed cursor")
    body = cursor[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        plain = AESGCM(derived_key(keys, _LABEL)).decrypt(raw[:12], raw[12:], _AAD)
    except (binascii.Error, ValueError, InvalidTag) as exc:
        raise BadRequest("malformed cursor") from exc
    seq = int.from_bytes(plain, "big")
    if len(plain) != 8 or seq < 1:
        raise BadRequest("malformed cursor")
    return seq


__all__ = ["MAX_CURSOR_LENGTH", "decode_cursor", "encode_cursor"]
