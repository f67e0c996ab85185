"""Named dependencies, so routes read like sentences."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from warden.api.edge import report_unauthenticated
from warden.db.session import unit_of_work
from warden.errors import Unauthenticated
from warden.identity.caller import SOCKET_SCOPE
from warden.identity.service import Caller, authenticate

if TYPE_CHECKING:
    from warden.core.platform import Platform
    from warden.core.process import WardenProcess


def get_state(request: Request) -> Platform:
    return request.app.state.warden  # type: ignore[no-any-return]


State = Annotated["Platform", Depends(get_state)]


def get_process(request: Request) -> WardenProcess:
    return request.app.state.process  # type: ignore[no-any-return]


Process = Annotated["WardenProcess", Depends(get_process)]


def get_db(request: Request) -> Iterator[Session]:
    """One transaction per request: committed before the response, rolled back on error."""
    with unit_of_work(get_state(request).sessions) as session:
        yield session


DbSession = Annotated[Session, Depends(get_db, scope="function")]


def get_caller(request: Request, db: DbSession) -> Caller:
    """The authenticated caller; a refused token is audited (folded in a flood) by the edge."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not secret:
            raise Unauthenticated("missing bearer token")
        caller = authenticate(db, secret.strip(), socket_of=request.scope.get(SOCKET_SCOPE))
    except Unauthenticated as exc:
        report_unauthenticated(request, exc)
        raise
    request.state.caller = caller
    return caller


CurrentCaller = Annotated[Caller, Depends(get_caller)]
