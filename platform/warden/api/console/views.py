"""What a reviewer sees of a request: what it would give, next to what its requester holds now.

Both come from the platform's own answers: the columns a grant would mask are the access
service's (`granted_masked`), and what the requester holds now is the policy engine's current
decision for them (the same snapshot every read asks), with their live grants on the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from warden.access import service
from warden.access.models import AccessGrant, AccessRequest, AccessReview
from warden.access.present import grant_out, request_out
from warden.access.schemas import GrantOut, RequestOut
from warden.catalog.service import load_view
from warden.core.platform import Platform
from warden.errors import NotFound
from warden.identity.service import Caller


@dataclass(frozen=True)
class ColumnGain:
    column: str
    classification: str
    would_get: str  # raw | masked
    holds_now: str  # raw | masked | none

    @property
    def changes(self) -> bool:
        return self.would_get != self.holds_now


@dataclass
class RequestView:
    request: RequestOut
    owner: str = ""
    columns: list[ColumnGain] = field(default_factory=list)
    held_grants: list[GrantOut] = field(default_factory=list)

    @property
    def quorum_text(self) -> str:
        r = self.request
        return f"{len(r.approvals)} of {r.quorum} approvals"


EFFECT = {"allow": "raw", "mask": "masked", "deny": "none"}


def request_view(
    db: Session,
    state: Platform,
    caller: Caller,
    req: AccessRequest,
    reviews: list[AccessReview],
    *,
    history: list | None = None,
) -> RequestView:
    out = request_out(req, reviews, history=history, with_reviews=True)
    try:
        view = load_view(db, state.settings.datasets_dir, caller.tenant, req.dataset)
    except NotFound:
        return RequestView(out)
    masked = set(service.granted_masked(view, req.columns))
    decision = state.policy.ensure_fresh().decide_read(
        req.requester, caller.tenant, view.name, list(req.columns), req.purpose, state.now()
    )
    now = {c.column: EFFECT.get(c.effect, c.effect) for c in decision.columns}
    gains = []
    for name in req.columns:
        column = view.column(name)
        gains.append(
            ColumnGain(
                column=name,
                classification=column.classification if column else "?",
                would_get="masked" if name in masked else "raw",
                holds_now=now.get(name, "none"),
            )
        )
    held = service.list_grants(db, state, caller, service.Wanted(["active"], dataset=req.dataset))
    return RequestView(
        out,
        owner=view.owner,
        columns=gains,
        held_grants=[grant_out(g) for g in held if _held_by(g, req)],
    )


def _held_by(grant: AccessGrant, req: AccessRequest) -> bool:
    return grant.principal_id == req.requester_id
