"""The policy service: the current snapshot, swapped atomically when the stored policy changes.

Readers call `current()` (one attribute read, never blocks) or `ensure_fresh()` (one cheap
version query; it waits only when the stored policy is newer than the snapshot, so a
revocation holds from the very next read). A reload builds the new snapshot entirely off to
the side and then replaces the reference; readers holding the old snapshot finish on it.
Any database or policy failure raises `PolicyUnavailable`: callers deny (fail closed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from warden.errors import PolicyUnavailable
from warden.identity.revocations import Revocations, revocations_of
from warden.policy import store
from warden.policy.engine import DEFAULT_MODEL_PATH, PolicySnapshot, check_model
from warden.policy.rules import Rule
from warden.policy.seal import SealBroken, Sealed, moved

__all__ = ["PolicyService", "PolicyUnavailable"]

T = TypeVar("T")
log = logging.getLogger(__name__)
_VERSION = select(store.PolicyState.version).where(store.PolicyState.id == 1)


class PolicyService:
    """Holds the current `PolicySnapshot` of the rules stored in one database."""

    def __init__(self, engine: Engine, *, model_path: Path = DEFAULT_MODEL_PATH) -> None:
        """Reads and checks the model file now (ModelMismatch if it isn't Warden's model);
        touches the database only on the first `reload()` or `ensure_fresh()`."""
        self._engine = engine
        self._model_text = model_path.read_text(encoding="utf-8")
        check_model(self._model_text)
        self._snapshot: PolicySnapshot | None = None
        self._sealed: Sealed | None = None  # the sealed state `_snapshot` was checked against
        self._reload_lock = threading.Lock()
        self.full_reloads = 0  # counters, for tests and operators
        self.replays = 0
        self.version_checks = 0
        self._pinned = threading.local()  # see `one_check`
        self._revocations: Revocations | None = None  # see `_logged`

    def _logged(self) -> Revocations:
        """What the log told this process (the newest policy version an ending named)."""
        if self._revocations is None:
            self._revocations = revocations_of(self._engine)
        return self._revocations

    def current(self) -> PolicySnapshot:
        """The snapshot now in force; PolicyUnavailable if none was ever loaded."""
        snapshot = self._snapshot
        if snapshot is None:
            raise PolicyUnavailable("policy not loaded")
        return snapshot

    def _in_session(self, work: Callable[[Session], T], *, write: bool = False) -> T:
        try:
            with Session(self._engine) as session:
                result = work(session)
                if write:
                    session.commit()
                return result
        except SQLAlchemyError as exc:
            raise PolicyUnavailable(f"policy store unreachable: {exc.__class__.__name__}") from exc

    def stored_version(self, session: Session | None = None) -> int:
        """The version in the database (one query; on `session` when given)."""
        if session is None:
            return self._in_session(store.current_version)
        try:
            # Core, on the session's connection: the hot path skips the ORM execution layer.
            return session.connection().scalar(_VERSION) or 0
        except SQLAlchemyError as exc:
            raise PolicyUnavailable(f"policy store unreachable: {exc.__class__.__name__}") from exc

    def reload(self) -> PolicySnapshot:
        """Load and compile the stored rules, then swap them in; returns the new snapshot."""
        with self._reload_lock:
            return self._reload_locked()

    def _reload_locked(self) -> PolicySnapshot:
        try:
            snapshot, sealed = self._in_session(lambda s: store.load_snapshot(s, self._model_text))
        except SealBroken as exc:
            log.error("policy refused, every decision denies: %s", exc)
            raise PolicyUnavailable(f"stored policy refused: {exc}") from exc
        except ValueError as exc:  # RuleError, ModelMismatch
            raise PolicyUnavailable(f"stored policy is invalid: {exc}") from exc
        self._snapshot, self._sealed = snapshot, sealed
        self.full_reloads += 1
        return snapshot

    @contextmanager
    def one_check(
        self, session: Session | None = None, *, stored_version: int | None = None
    ) -> Iterator[None]:
        """Within this block (on this thread), the first `ensure_fresh()` checks the stored
        version as usual and the later ones reuse its snapshot: one request, one version query,
        one consistent snapshot for all its decisions. A change committed before the block
        began is always seen; nothing outlives the block. `session`: ask the version on the
        request's own connection (one round trip, no extra pool checkout). `stored_version`:
        the request already read it (in the same statement as the change generation)."""
        outer = getattr(self._pinned, "active", False)
        if not outer:
            self._pinned.active = True
            self._pinned.session = session
            self._pinned.stored = stored_version
        try:
            yield
        finally:
            if not outer:
                self._pinned.active = False
                self._pinned.snapshot = None
                self._pinned.session = None
                self._pinned.stored = None

    def ensure_fresh(self) -> PolicySnapshot:
        """The current snapshot, brought up to the database's version first if it is behind:
        by replaying the change log when it can (microseconds), else by a full reload.
        Concurrent callers share one catch-up."""
        pinned = self._pinned
        if getattr(pinned, "active", False):
            if (held := getattr(pinned, "snapshot", None)) is not None:
                return held  # type: ignore[no-any-return]
            pinned.snapshot = self._ensure_fresh()
            return pinned.snapshot  # type: ignore[no-any-return]
        return self._ensure_fresh()

    def _ensure_fresh(self) -> PolicySnapshot:
        self.version_checks += 1
        session = getattr(self._pinned, "session", None)
        version = getattr(self._pinned, "stored", None)
        if version is None:
            version = self.stored_version(session)
        if version < (logged := self._logged().policy_version):
            version = self.stored_version(session)  # the stamp may predate the change
            if version < logged:
                # set back past Warden: a process that never saw the newer version would
                # decide on rules a revocation or narrowing took away (red team 20)
                raise PolicyUnavailable(
                    f"the stored policy (version {version}) is older than version {logged},"
                    " which the audit log records: written back past Warden; run `warden"
                    " audit verify`"
                )
        snapshot = self._snapshot
        if snapshot is not None and snapshot.version == version:
            return snapshot
        with self._reload_lock:
            snapshot = self._snapshot
            if snapshot is not None and snapshot.version >= version:
                return snapshot
            if snapshot is not None and (caught_up := self._replay(snapshot)) is not None:
                self._snapshot, self._sealed = caught_up
                self.replays += 1
                return caught_up[0]
            return self._reload_locked()

    def _replay(self, snapshot: PolicySnapshot) -> tuple[PolicySnapshot, Sealed] | None:
        """The snapshot brought up to date by the change log, if the log's changes take the
        sealed rule sum exactly to the stored one; else None (a full reload decides)."""
        try:
            found = self._in_session(lambda s: store.changes_since(s, snapshot.version))
        except SealBroken:
            return None
        held = self._sealed
        if found is None or held is None or held.version != snapshot.version:
            return None
        current, delta = found
        if len({rule for _, rule in delta}) != len(delta):
            # a rule both added and removed cancels in the sum yet not in the snapshot (a
            # remove of an absent rule does nothing): such a log is checked by a full reload
            return None
        added = [rule for op, rule in delta if op == "add"]
        removed = [rule for op, rule in delta if op == "remove"]
        if current.key != held.key or moved(held.key, held.total, added, removed) != current.total:
            return None  # a log row written past Warden, or a rotated key: reload and check
        try:
            return snapshot.with_changes(delta, version=current.version), current
        except ValueError:  # RuleError: a full reload will say what is wrong
            return None

    def _change(self, work: Callable[[Session], store.Change]) -> PolicySnapshot:
        self._in_session(work, write=True)
        self._pinned.stored = None  # a version read before this change is now behind
        snapshot = self._ensure_fresh()
        if getattr(self._pinned, "active", False):
            self._pinned.snapshot = snapshot  # a change made inside a block holds in it
        return snapshot

    def add_rules(self, rules: Iterable[Rule]) -> PolicySnapshot:
        """Store rules (RuleError if any is invalid), bump the version, reload."""
        return self._change(lambda s: store.add_rules(s, list(rules)))

    def remove_rules(self, rules: Iterable[Rule]) -> PolicySnapshot:
        """Delete rules, bump the version, reload."""
        return self._change(lambda s: store.remove_rules(s, list(rules)))

    def revoke_grant(self, grant_id: str) -> PolicySnapshot:
        """Delete every rule of a grant, bump the version, reload."""
        return self._change(lambda s: store.remove_grant(s, grant_id))

    def seed_from_csv(self, paths: Sequence[Path]) -> PolicySnapshot:
        """Add the rules of CSV files (skipping those already stored), then reload."""
        return self._change(lambda s: store.seed_from_csv(s, paths))
