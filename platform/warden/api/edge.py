"""The edge: every request refused before a route answers is audited, and floods are folded.
(It runs over 500 lines: sources, windows, vouching and the folded audit share one state.)

Refusals counted here: a missing or invalid token (401, on any route), a body over the size
cap (413), headers over the cap (431), a path no route serves (404), a method the path does not
take (405), and the 429s this module answers itself. Refusals a route makes and audits itself
(a read's policy decision, 404 for an unknown dataset) are not counted again.

Sources. A source is the client's address (an IPv6 address by its /64; X-Forwarded-For is
believed only from a peer listed in `edge_trusted_proxies`), plus the fingerprint of the
request's token when that token authenticates. A missing, unknown or revoked token counts
against the address alone, so neither forged forwarding headers nor random tokens split one
source into many; nor do minted ones: past `TOKENS_PER_ADDRESS` token sources in a window,
an address's further tokens count against the address alone.

Windows and folding. Time (the platform's clock) is cut into fixed windows of
`edge_window_s`. Per source and window the first `edge_record_per_window` refusals are audited
one by one (`details.count` = 1); the rest are counted, and one `http.refused` record with
`details.folded` true and `details.count` = how many is written once the window has ended: at
the next refusal from anyone, every `edge_flush_interval_s`, and at shut-down (`flush()`).
Once a source has had `edge_refusals_per_window` refusals in a window, each further request from
it is answered 429 with `Retry-After` (the seconds left in the window) before any route runs,
and counted too. So the sum of `details.count` over a source's records is exactly the number
of refusals it was given, and its rows per window are at most `edge_record_per_window` + 1.

Per process, in memory: behind several API replicas each one counts and limits its own share,
and a process killed without shutting down loses the counts of its open windows (a clean stop
writes them). At most `edge_max_sources` sources are tracked at once; beyond that, new sources
share one overflow source, "*". If a one-by-one record cannot be written the request is
answered 503 (fail closed) and the refusal is folded, so it is still counted once the store
is back.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.types import Scope

from warden.api.errors import route_table
from warden.audit.service import AuditRecord, record
from warden.db.session import unit_of_work
from warden.errors import AuditUnavailable, Unauthenticated
from warden.identity.caller import SOCKET_SCOPE
from warden.identity.service import Caller, authenticate

if TYPE_CHECKING:
    from warden.config import Settings
    from warden.core.platform import Platform

log = logging.getLogger("warden.edge")

ACTION = "http.refused"
TOKENS_PER_ADDRESS = 8
OVERFLOW = "*"
MAX_PATH = 256
MAX_TEXT = 64
# Set once a refusal is counted, so the middleware's safety net does not count it twice.
SCOPE_COUNTED = "warden.edge.counted"


@dataclass(frozen=True)
class Source:
    address: str
    token: str | None = None  # fingerprint of a token that authenticated


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    detail: str
    method: str
    path: str
    route: str | None = None
    action: str = ACTION
    dataset: str | None = None


@dataclass
class _Window:
    index: int
    refusals: int = 0
    folded: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    caller: Caller | None = None
    first: datetime | None = None
    last: datetime | None = None


class Edge:
    """The counters of one process; thread-safe (routes report from worker threads)."""

    def __init__(self, state: Platform, settings: Settings, app: Any = None) -> None:
        self.state = state
        self.settings = settings
        self.app = app  # its routes name the route of a request refused before routing ran
        self._lock = threading.Lock()
        self._open: dict[Source, _Window] = {}
        self._closed: list[tuple[Source, _Window]] = []
        self._vouched: dict[str, int] = {}  # token fingerprint -> window it authenticated in
        self._swept = -1
        self._tokens: dict[str, set[str]] = {}  # address -> token sources it has this window

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        proxies = settings.edge_trusted_proxies
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in proxies]
        self._settings = settings

    def now(self) -> datetime:
        return self.state.now()

    def index(self, now: datetime) -> int:
        return math.floor(now.timestamp() / self.settings.edge_window_s)

    def retry_after(self, now: datetime) -> int:
        end = (self.index(now) + 1) * self.settings.edge_window_s
        return max(1, math.ceil(end - now.timestamp()))

    def _bounds(self, index: int) -> tuple[str, str]:
        width = self.settings.edge_window_s
        start = datetime.fromtimestamp(index * width, UTC)
        end = datetime.fromtimestamp((index + 1) * width, UTC)
        return start.isoformat(), end.isoformat()

    # -- sources --------------------------------------------------------------------------

    def address(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        if self._trusted and self._is_trusted(peer):
            # Every line, in order (RFC 9110 combines repeated fields): a proxy may append its
            # own line after one the client wrote, so the first line alone is the client's word.
            forwarded = ",".join(_header_lines(scope, b"x-forwarded-for"))
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            for hop in reversed(hops):  # the right-most hop a trusted proxy did not add
                peer = hop
                if not self._is_trusted(hop):
                    break
        return _normalise_address(peer)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def fingerprint(self, secret: str) -> str:
        digest = hmac.new(self.state.mask_key, b"edge-token:" + secret.encode(), hashlib.sha256)
        return digest.hexdigest()[:16]

    # -- admission ------------------------------------------------------------------------

    def limited(self, scope: Scope, secret: str | None) -> tuple[Source, int] | None | bool:
        """(source, Retry-After) if this request's source is over its refusals, None if not.

        True: the address is over its limit and the request's token has not been seen to
        authenticate in this window; `vouch()` decides (it needs the database). Non-blocking.
        """
        if not self._open:
            # No source has a refusal counted (the common case): nothing to limit, so neither
            # the address nor the token's fingerprint is worked out. Read without the lock: a
            # window opened meanwhile is as if opened just after this request was admitted.
            return None
        now = self.now()
        index = self.index(now)
        address = self.address(scope)
        fingerprint = self.fingerprint(secret) if secret else None
        limit = self.settings.edge_refusals_per_window
        with self._lock:
            self._sweep(index)
            if fingerprint is not None:
                mine = self._current(Source(address, fingerprint), index)
                if mine is not None and mine.refusals >= limit:
                    return Source(address, fingerprint), self.retry_after(now)
            shared = self._current(Source(address), index)
            if shared is None or shared.refusals < limit:
                return None
            if fingerprint is None:
                return Source(address), self.retry_after(now)
            if self._vouched.get(fingerprint) == index:
                return None
        return True

    def vouch(self, scope: Scope, secret: str) -> tuple[Source, int] | None:
        """The address is over its limit: only a token that authenticates gets through."""
        now = self.now()
        if self._authenticates(secret, scope.get(SOCKET_SCOPE)) is not None:
            with self._lock:
                self._vouched[self.fingerprint(secret)] = self.index(now)
            return None
        return Source(self.address(scope)), self.retry_after(now)

    def _authenticates(self, secret: str, socket_of: str | None) -> Caller | None:
        try:
            with unit_of_work(self.state.sessions) as db:
                return authenticate(db, secret, socket_of=socket_of)
        except Unauthenticated:
            return None

    # -- counting -------------------------------------------------------------------------

    def report(
        self,
        scope: Scope,
        refusal: Refusal,
        secret: str | None = None,
        *,
        source: Source | None = None,
    ) -> None:
        """Count one refusal; audit it now if it is among its source's first in the window.

        Blocking (database): call it from a worker thread. Raises AuditUnavailable if the
        one-by-one record cannot be written (the refusal is then folded, so still counted).
        """
        scope[SCOPE_COUNTED] = True
        caller = None
        if source is None:
            caller = self._authenticates(secret, scope.get(SOCKET_SCOPE)) if secret else None
            address = self.address(scope)
            fingerprint = self.fingerprint(secret) if secret and caller else None
            source = Source(address, fingerprint)
        now = self.now()
        index = self.index(now)
        with self._lock:
            self._sweep(index)
            token = source.token
            if token is not None:
                # Minting tokens must not multiply one address's rows: a few token sources per
                # address and window; further tokens count against the address alone.
                tokens = self._tokens.setdefault(source.address, set())
                if token not in tokens and len(tokens) >= TOKENS_PER_ADDRESS:
                    source = Source(source.address)
                else:
                    tokens.add(token)
            window = self._window(source, index)
            source = window[0]
            current = window[1]
            current.refusals += 1
            if caller is not None and source.token is not None:
                current.caller = caller  # names the token source's folded record
            who = caller or (current.caller if source.token is not None else None)
            one_by_one = current.refusals <= self.settings.edge_record_per_window
            if not one_by_one:
                self._fold(current, refusal, now)
        try:
            if one_by_one:
                try:
                    record(self.state.sessions, self._one(source, refusal, who))
                except AuditUnavailable:
                    with self._lock:  # its window may have been written meanwhile: count it now
                        self._fold(self._window(source, self.index(self.now()))[1], refusal, now)
                    raise
        finally:
            self.flush()

    def _fold(self, window: _Window, refusal: Refusal, now: datetime) -> None:
        """Count a refusal into its window's folded record (lock held)."""
        window.folded += 1
        window.statuses[str(refusal.status)] += 1
        window.actions[refusal.action] += 1
        window.first = window.first or now
        window.last = now

    def _current(self, source: Source, index: int) -> _Window | None:
        window = self._open.get(source)
        return window if window is not None and window.index == index else None

    def _window(self, source: Source, index: int) -> tuple[Source, _Window]:
        """The source's window now (lock held); an ended one is queued for writing."""
        window = self._open.get(source)
        if window is not None and window.index != index:
            self._closed.append((source, self._open.pop(source)))
            window = None
        if window is not None:
            return source, window
        if len(self._open) >= self.settings.edge_max_sources and source.address != OVERFLOW:
            return self._window(Source(OVERFLOW), index)
        window = self._open[source] = _Window(index)
        return source, window

    def _sweep(self, index: int) -> None:
        """Once per window: move every ended window to the list to write (lock held)."""
        if index <= self._swept:
            return
        self._swept = index
        for source in [s for s, w in self._open.items() if w.index < index]:
            self._closed.append((source, self._open.pop(source)))
        self._vouched = {f: i for f, i in self._vouched.items() if i == index}
        self._tokens.clear()

    # -- writing --------------------------------------------------------------------------

    def flush(self, *, everything: bool = False) -> int:
        """Write the counted record of each ended window (of every window with `everything`,
        as at shut-down). Returns how many refusals the written records hold; a window whose
        record cannot be written stays queued for the next flush."""
        with self._lock:
            self._sweep(self.index(self.now()))
            if everything:
                self._closed.extend(self._open.items())
                self._open.clear()
            pending, self._closed = self._closed, []
        written = 0
        for position, (source, window) in enumerate(pending):
            if window.folded == 0:
                continue
            try:
                record(self.state.sessions, self._folded(source, window))
            except AuditUnavailable:
                log.error(
                    "could not write %d folded refusals; kept for the next flush", window.folded
                )
                with self._lock:
                    self._closed.extend(item for item in pending[position:] if item[1].folded)
                break
            written += window.folded
        return written

    def _one(self, source: Source, refusal: Refusal, caller: Caller | None) -> AuditRecord:
        details: dict[str, Any] = {
            "count": 1,
            "status": refusal.status,
            "method": refusal.method,
            "path": refusal.path,
            "source": source.address,
        }
        if refusal.route:
            details["route"] = refusal.route
        if source.token:
            details["token"] = source.token
        return AuditRecord(
            action=refusal.action,
            decision="deny",
            reason=_clip(f"{refusal.error}: {refusal.detail}", MAX_PATH),
            dataset=refusal.dataset,
            details=details,
            **_actor(caller),
        )

    def _folded(self, source: Source, window: _Window) -> AuditRecord:
        start, end = self._bounds(window.index)
        details: dict[str, Any] = {
            "count": window.folded,
            "folded": True,
            "source": source.address,
            "window_start": start,
            "window_end": end,
            "first": window.first.isoformat() if window.first else None,
            "last": window.last.isoformat() if window.last else None,
            "refusals_in_window": window.refusals,
            "statuses": dict(window.statuses),
            "actions": dict(window.actions),
        }
        if source.token:
            details["token"] = source.token
        return AuditRecord(
            action=ACTION,
            decision="deny",
            reason=f"{window.folded} further refusals from {source.address} in one window, folded",
            details=details,
            **_actor(window.caller if source.token else None),
        )


def _actor(caller: Caller | None) -> dict[str, Any]:
    if caller is None:
        return {"actor": "anonymous", "actor_kind": "anonymous"}
    return {
        "actor": caller.name,
        "actor_kind": caller.kind,
        "on_behalf_of": caller.on_behalf_of,
        "tenant": caller.tenant,
    }


# -- what routes call ---------------------------------------------------------------------


def edge_of(app: Any) -> Edge | None:
    return getattr(app.state, "edge", None)


def report_unauthenticated(
    request: Request,
    exc: Unauthenticated,
    *,
    action: str = ACTION,
    dataset: str | None = None,
) -> None:
    """Audit (or fold) a request refused for its token; blocking, call from a worker thread."""
    scope = request.scope
    edge = edge_of(request.app)
    refusal = Refusal(
        status=exc.status_code,
        error=type(exc).__name__,
        detail=exc.detail,
        method=_clip(scope.get("method", ""), 16),
        path=scope_path(scope),
        route=_route(scope, request.app),
        action=action,
        dataset=dataset,
    )
    if edge is not None:
        edge.report(scope, refusal, source=Source(edge.address(scope)))
        return
    # An app built without the edge still audits every refusal, one by one.
    record(
        request.app.state.warden.sessions,
        AuditRecord(
            action=action,
            decision="deny",
            actor="anonymous",
            actor_kind="anonymous",
            dataset=dataset,
            reason=f"{refusal.error}: {refusal.detail}",
            details={"count": 1, "status": 401, "method": refusal.method, "path": refusal.path},
        ),
    )


# -- reading the request ------------------------------------------------------------------


def where(scope: Scope, app: Any) -> tuple[str, str, str | None]:
    return _clip(str(scope.get("method", "")), 16), scope_path(scope), _route(scope, app)


def _route(scope: Scope, app: Any) -> str | None:
    """The template of the route serving the request's path, if any (by any method)."""
    if app is None:
        return None
    wanted = str(scope.get("path", ""))
    path = next((t for pattern, t, _ in route_table(app) if pattern.fullmatch(wanted)), None)
    return _clip(path, MAX_PATH) if path is not None else None


def scope_path(scope: Scope) -> str:
    """The request's path as the routes see it (decoded, no query), escaped to printable ASCII
    and clipped: control, bidi and other hostile characters show as escapes."""
    return _clip(str(scope.get("path", "")), MAX_PATH)


def bearer_secret(scope: Scope) -> str | None:
    scheme, _, secret = _header(scope, b"authorization").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


def _header_lines(scope: Scope, name: bytes) -> list[str]:
    return [bytes(v).decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name]


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


@functools.lru_cache(maxsize=4096)  # parsing an address cost every request a few microseconds
def _normalise_address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return _clip(address, MAX_TEXT)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _clip(text: str, limit: int) -> str:
    """Printable ASCII only (anything else as a \\x, \\u or \\U escape), at most `limit` chars;
    a clipped text ends in "~"."""
    out: list[str] = []
    size = 0
    for char in text:
        code = ord(char)
        if char == "\\":
            piece = "\\\\"
        elif 0x20 <= code < 0x7F:
            piece = char
        elif code <= 0xFF:
            piece = f"\\x{code:02x}"
        elif code <= 0xFFFF:
            piece = f"\\u{code:04x}"
        else:
            piece = f"\\U{code:08x}"
        out.append(piece)
        size += len(piece)
        if size > limit:
            break
    escaped = "".join(out)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "~"
