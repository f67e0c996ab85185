"""The stored rule set's seal: a keyed digest a database writer cannot recompute.

Every rule's MAC (HMAC-SHA256 under the audit chain key, which lives outside the database)
is summed modulo 2**256, so adding or removing a rule moves the sum by that rule's MAC
alone and a write updates it without reading the whole set. `policy_state` keeps the sum
and a seal, the MAC of (version, sum): a rule row written, deleted or replayed in SQL, a
forged change-log row, or a sum copied from an older state with a newer version, no longer
matches it, and loading the rules fails closed (PolicyUnavailable: every decision denies)
until an operator looks and reseals (`warden policy seal`, audited).

What it does not stop: restoring the whole of an older state (rules, version, sum and seal
together) while no process that saw a newer version is running; the audit chain's
`policy.*` events still name the versions that came after.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from warden.audit.keys import ChainKey, ChainKeyring
from warden.policy.rules import Rule

_MOD = 1 << 256


class SealBroken(ValueError):
    """The stored rules do not match their seal: written past Warden, or never sealed."""


def _mac(key: ChainKey, data: bytes) -> bytes:
    return hmac.digest(key.secret, data, "sha256")


def rule_mac(key: ChainKey, rule: Rule) -> int:
    ptype, fields = rule
    text = "\x1f".join((ptype, *fields)).encode()
    return int.from_bytes(_mac(key, b"warden-policy-rule\x00" + text))


def rules_sum(key: ChainKey, rules: Iterable[Rule]) -> int:
    return sum(rule_mac(key, r) for r in rules) % _MOD


def moved(key: ChainKey, total: int, added: Iterable[Rule], removed: Iterable[Rule]) -> int:
    """`total` after adding and removing these rules (a removed duplicate counts each time)."""
    return (total + rules_sum(key, added) - rules_sum(key, removed)) % _MOD


def seal_of(key: ChainKey, version: int, total: int) -> str:
    mac = _mac(key, f"warden-policy-seal\x00{version}\x00{total:064x}".encode()).hex()
    return f"{key.id}:{mac}"


@dataclass(frozen=True)
class Sealed:
    """A state's version and rule sum, with the key they are sealed under."""

    version: int
    total: int
    key: ChainKey

    def seal(self) -> str:
        return seal_of(self.key, self.version, self.total)


def opened(keys: ChainKeyring, version: int, total_hex: str | None, seal: str | None) -> Sealed:
    """The stored (version, sum) once its seal checks out; SealBroken otherwise."""
    if version == 0 and total_hex is None and seal is None:
        return Sealed(0, 0, keys.current)  # nothing stored yet
    if not seal or total_hex is None:
        raise SealBroken(
            f"the stored policy (version {version}) is not sealed: run `warden policy seal`"
            " once its rules are checked"
        )
    kid, _, _ = seal.partition(":")
    key = keys.get(kid)
    if key is None:
        raise SealBroken(f"the stored policy is sealed with key {kid}, which this host lacks")
    try:
        total = int(total_hex, 16)
    except ValueError:
        raise SealBroken("the stored policy's rule sum is not a number") from None
    if not hmac.compare_digest(seal_of(key, version, total), seal):
        raise SealBroken(
            f"the stored policy's seal does not match version {version}: its state was"
            " written past Warden"
        )
    return Sealed(version, total, key)


def check_rules(sealed: Sealed, rules: Iterable[Rule]) -> None:
    """SealBroken unless `rules` are exactly the sealed set."""
    if rules_sum(sealed.key, rules) != sealed.total:
        raise SealBroken(
            f"the stored rules do not match the policy seal (version {sealed.version}): a rule"
            " was added, removed or replayed past Warden"
        )
