"""Signing in and out: a Warden API token exchanged for a server-side session."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from warden.api.console.web import (
    COOKIE,
    CSRF_DETAIL,
    PRE_COOKIE,
    PREFIX,
    ConsoleRoute,
    Form,
    Who,
    csrf_refused,
    lifetimes,
    new_pre_token,
    platform_of,
    read_form,
    render,
    secure,
)
from warden.api.edge import report_unauthenticated
from warden.audit.outcomes import by
from warden.audit.service import append
from warden.db.session import unit_of_work
from warden.errors import Unauthenticated
from warden.identity.console_sessions import end, open_session

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

ENDED = {
    "signed-out": "You are signed out.",
    "idle": "Your session was idle too long. Sign in again.",
    "absolute": "Your session reached its maximum lifetime. Sign in again.",
    "token": "The token of your session is no longer accepted. Sign in again.",
    "unknown": "Your session is not known here. Sign in again.",
    "ended": "Your session has ended. Sign in again.",
}


def _next(value: str | None) -> str:
    """Only a console path is followed after sign-in (never another site)."""
    if value and value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX


def _sign_in_page(
    request: Request, *, status_code: int = 200, error: str | None = None
) -> HTMLResponse:
    pre = new_pre_token()
    ended = request.query_params.get("ended")
    response = render(
        request,
        "sign_in.html",
        status_code=status_code,
        pre=pre,
        next=_next(request.query_params.get("next")),
        notice=ENDED.get(ended or ""),
        error=error,
    )
    response.set_cookie(
        PRE_COOKIE,
        pre,
        max_age=3600,
        path=PREFIX,
        httponly=True,
        secure=secure(request),
        samesite="strict",
    )
    return response


@router.get("/sign-in")
def sign_in_form(request: Request) -> HTMLResponse:
    return _sign_in_page(request)


@router.post("/sign-in")
def sign_in(request: Request, form: Annotated[dict[str, str], Depends(read_form)]) -> Response:
    """The form's CSRF value must equal its cookie's (double submit); then the token."""
    state = platform_of(request)
    pre = request.cookies.get(PRE_COOKIE, "")
    if not pre or not hmac.compare_digest(form.get("csrf", ""), pre):
        csrf_refused(state, None, request)
        return _sign_in_page(request, status_code=403, error=CSRF_DETAIL)
    try:
        with unit_of_work(state.sessions) as db:
            opened = open_session(db, form.get("token", "")[:200], state.now())
            append(
                db,
                by(
                    opened.caller,
                    "console.sign_in",
                    "allow",
                    details={"session": opened.row.id[:12]},
                ),
            )
    except Unauthenticated as exc:
        report_unauthenticated(request, exc, action="console.sign_in")
        return _sign_in_page(request, status_code=401, error=f"Unauthenticated: {exc.detail}")
    response = RedirectResponse(_next(form.get("next")), status_code=303)
    _, absolute = lifetimes(state)
    response.set_cookie(
        COOKIE,
        opened.secret,
        max_age=int(absolute.total_seconds()),
        path=PREFIX,
        httponly=True,
        secure=secure(request),
        samesite="strict",
    )
    response.delete_cookie(PRE_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
def sign_out(who: Who, form: Form) -> Response:
    state = who.state
    with unit_of_work(state.sessions) as db:
        row = db.merge(who.session)
        end(row, state.now(), "signed-out")
        append(db, by(who.caller, "console.sign_out", "allow", details={"session": row.id[:12]}))
    response = RedirectResponse(f"{PREFIX}/sign-in?ended=signed-out", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("")
def home(who: Who) -> HTMLResponse:
    return render(who.request, "home.html", who)


@router.get("/", include_in_schema=False)
def home_slash() -> RedirectResponse:
    return RedirectResponse(PREFIX, status_code=307)


__all__ = ["router"]
