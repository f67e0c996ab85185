"""The console's plumbing: templates, the signed-in session, CSRF, security headers, and the
one way a console action calls a service (audited like its API twin, with the channel).

Nothing is decided here: pages ask the same services as the API routes, and a refusal is the
service's own error, shown as the page's message with the API's status code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warden.access import expiry
from warden.access.service import Outcome
from warden.api.routes.access import take_effect
from warden.audit.channel import channel
from warden.audit.outcomes import by, by_caller_or_warden, refusals_audited
from warden.audit.service import record
from warden.core.platform import Platform
from warden.db.session import unit_of_work
from warden.errors import Forbidden, WardenError
from warden.identity.console_sessions import ConsoleSession, SessionEnded, resolve
from warden.identity.service import Caller

PREFIX = "/console"
CHANNEL = "console"
COOKIE = "warden_console"
PRE_COOKIE = "warden_console_pre"  # the sign-in form's CSRF value (double submit)
MAX_FORM_BYTES = 64 * 1024
HERE = Path(__file__).resolve().parent

# Strict: nothing inline, nothing from elsewhere, no framing, forms post only here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class ConsoleMiddleware:
    """Under /console: the security headers on every answer, and the audit channel set for
    everything the request does (audit/channel.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + HEADERS
            await send(message)

        with channel(CHANNEL):
            await self.app(scope, receive, send_with_headers)


# -- who is signed in ------------------------------------------------------------------------


class SignInRequired(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Signed:
    """A signed-in request: its caller, session and the CSRF token its forms carry."""

    request: Request
    state: Platform
    caller: Caller
    session: ConsoleSession
    csrf: str


def platform_of(request: Request) -> Platform:
    return request.app.state.warden  # type: ignore[no-any-return]


def csrf_for(secret: str) -> str:
    """Bound to the session: derived from its secret, which only the HttpOnly cookie holds."""
    return hmac.new(secret.encode(), b"warden-console-csrf", hashlib.sha256).hexdigest()


def lifetimes(state: Platform) -> tuple[timedelta, timedelta]:
    s = state.settings
    return (
        timedelta(seconds=s.console_idle_timeout_s),
        timedelta(seconds=s.console_absolute_timeout_s),
    )


def signed_in(request: Request) -> Signed:
    """The request's live session, or SignInRequired (an ended session's end is audited)."""
    state = platform_of(request)
    secret = request.cookies.get(COOKIE, "")
    if not secret:
        raise SignInRequired("signed-out")
    idle, absolute = lifetimes(state)
    ended: SessionEnded | None = None
    with unit_of_work(state.sessions) as db:
        try:
            row, caller = resolve(db, secret, state.now(), idle=idle, absolute=absolute)
        except SessionEnded as exc:
            ended = exc
    if ended is not None:
        if ended.reason in ("idle", "absolute", "token"):
            record(
                state.sessions,
                by_caller_or_warden(
                    None, "console.session.expired", "deny", reason=ended.detail,
                    details={"ended": ended.reason},
                ),
            )  # fmt: skip
        raise SignInRequired(ended.reason)
    who = Signed(request, state, caller, row, csrf_for(secret))
    request.state.console_who = who  # an error page of this request keeps the navigation
    return who


Who = Annotated[Signed, Depends(signed_in)]


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form (the console's only body), at most MAX_FORM_BYTES."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Forbidden(f"a console form holds at most {MAX_FORM_BYTES} bytes")
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    form: dict[str, str] = {}
    for key, value in pairs:
        form[key] = f"{form[key]},{value}" if key in form else value
    return form


def csrf_refused(state: Platform, caller: Caller | None, request: Request) -> None:
    """Audit a POST refused for its CSRF token (blocking)."""
    details = {"method": request.method, "path": request.url.path[:200]}
    reason = "Forbidden: missing or wrong CSRF token"
    if caller is None:
        rec = by_caller_or_warden(None, "console.csrf", "deny", reason=reason, details=details)
        rec.actor, rec.actor_kind = "anonymous", "anonymous"
    else:
        rec = by(caller, "console.csrf", "deny", reason=reason, details=details)
    record(state.sessions, rec)


CSRF_DETAIL = "missing or wrong CSRF token: reload the page and try again"


async def checked_form(request: Request, who: Who) -> dict[str, str]:
    """The POSTed form, once its CSRF token matches the session's; refusals are audited."""
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf", ""), who.csrf):
        await run_in_threadpool(csrf_refused, who.state, who.caller, request)
        raise Forbidden(CSRF_DETAIL)
    return form


Form = Annotated[dict[str, str], Depends(checked_form)]

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], form: dict[str, str], **fields: Any) -> M:
    """The API's own body model, from form fields (so validation says what the API says)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


# -- acting and rendering ----------------------------------------------------------------------


def act(who: Signed, action: str, work: Callable[[Session], Outcome], **fields: Any) -> Outcome:
    """Run one service call as the API route does: due expiries first, one transaction, its
    refusal audited (with the channel), then the policy reloaded and the access worker woken."""
    state = who.state
    expiry.expire_due_now(state)
    # The refusal is audited after the rollback, in a transaction of its own.
    with (
        refusals_audited(state.sessions, who.caller, action, **fields),
        unit_of_work(state.sessions) as db,
    ):
        outcome = work(db)
    take_effect(who.request, state, outcome)
    return outcome


def render(
    request: Request,
    name: str,
    who: Signed | None = None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    page = templates.get_template(name).render(
        request=request,
        who=who,
        caller=who.caller if who else None,
        csrf=who.csrf if who else "",
        path=request.url.path,
        **context,
    )
    return HTMLResponse(page, status_code=status_code)


def done(path: str, message: str) -> RedirectResponse:
    """After a POST, GET the page again with what happened (post/redirect/get)."""
    joiner = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{joiner}done={quote(message[:200])}", status_code=303)


def sign_in_redirect(request: Request, reason: str) -> RedirectResponse:
    target = request.url.path if request.method == "GET" else PREFIX
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    url = f"{PREFIX}/sign-in?next={quote(target, safe='')}&ended={quote(reason)}"
    response = RedirectResponse(url, status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def error_page(request: Request, status: int, error: str, detail: Any) -> HTMLResponse:
    """A refusal as a page: the API's status code, error name and message."""
    who: Signed | None = getattr(request.state, "console_who", None)
    problems = detail if isinstance(detail, list) else None
    return render(
        request,
        "error.html",
        who,
        status_code=status,
        error=error,
        detail=None if problems else str(detail),
        problems=problems,
    )


class ConsoleRoute(APIRoute):
    """Console routes answer pages: a service's WardenError becomes an error page with its
    status and message, and a missing or ended session a redirect to sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return sign_in_redirect(request, exc.reason)
            except WardenError as exc:
                return error_page(request, exc.status_code, type(exc).__name__, exc.detail)
            except RequestValidationError as exc:
                problems = [
                    {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                    for e in exc.errors()
                ]
                return error_page(request, 422, "ValidationError", problems)

        return page


def new_pre_token() -> str:
    return secrets.token_urlsafe(24)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"
