"""A governed read, end to end: decide → plan → audit (durably) → hand back Arrow IPC bytes.

Every outcome is audited: an allowed read before its first byte leaves, a refused one with
the reason it was refused. If the audit write fails, the read fails closed (503).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.trace import Span
from pydantic import ValidationError

from warden.access.ids import break_glass_grants
from warden.audit.service import AuditRecord, record
from warden.audit.telemetry import annotate_span, read_span
from warden.catalog.service import PURPOSES, DatasetView, load_view
from warden.core.platform import Platform
from warden.db.session import unit_of_work
from warden.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    WardenError,
)
from warden.gateway import planner
from warden.gateway.arrow import ArrowStream
from warden.gateway.schemas import ReadRequest
from warden.identity.service import Caller
from warden.policy.engine import ReadDecision

ARROW_STREAM = "application/vnd.apache.arrow.stream"
# A caller that sends `x-warden-arrow-layout: view` gets inline text in Arrow's view layout.
ARROW_LAYOUT_HEADER = "x-warden-arrow-layout"
Decision = Literal["allow", "deny", "error"]


@dataclass
class ReadResult:
    body: ArrowStream
    rows: int
    event_id: str
    columns: tuple[str, ...]
    masked: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Attempt:
    """What is known so far about a read, for the audit event whatever the outcome."""

    caller: Caller
    dataset: str
    purpose: str | None = None
    version: str | None = None
    columns: list[str] = field(default_factory=list)
    decision: ReadDecision | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def audit(self, decision: Decision, reason: str | None = None, **extra: Any) -> AuditRecord:
        d = self.decision
        return AuditRecord(
            action="dataset.read",
            decision=decision,
            actor=self.caller.name,
            actor_kind=self.caller.kind,
            on_behalf_of=self.caller.on_behalf_of,
            tenant=self.caller.tenant,
            dataset=self.dataset[:64],
            dataset_version=self.version,
            purpose=(self.purpose or "")[:32] or None,
            rule=d.deciding_rule if d else None,
            policy_version=d.policy_version if d else None,
            columns=[c[:64] for c in self.columns[:256]],
            masked_columns=list(d.masked_columns) if d else [],
            row_filter=[{"column": f.column, "op": f.op, "value": f.value} for f in d.row_filters]
            if d
            else [],
            grant_ids=list(d.grant_ids) if d else [],
            reason=reason,
            details=self.details,
            **extra,
        )


def parse_request(raw: bytes, max_bytes: int) -> ReadRequest:
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes")
    try:
        return ReadRequest.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise Unprocessable(f"invalid read request: {problems}") from None


def governed_read(
    state: Platform, caller: Caller, name: str, raw_body: bytes, *, views: bool = False
) -> ReadResult:
    """`views`: the caller reads Arrow's view layout (see ArrowStream); the rows are the same."""
    attempt = _Attempt(caller=caller, dataset=name)
    with read_span(
        "warden.read", {"warden.dataset": name[:64], "warden.actor": caller.name}
    ) as span:
        try:
            result = _read(state, attempt, raw_body, span, views)
        except WardenError as exc:
            event = record(
                state.sessions, attempt.audit("deny", f"{type(exc).__name__}: {exc.detail}")
            )
            annotate_span(span, event)
            raise
        return result


def _read(
    state: Platform, attempt: _Attempt, raw_body: bytes, span: Span, views: bool
) -> ReadResult:
    settings = state.settings
    request = parse_request(raw_body, settings.max_request_bytes)
    attempt.purpose = request.purpose
    attempt.details["where"] = [c.model_dump() for c in request.where]
    attempt.details["limit"] = request.limit
    if request.limit is not None and request.limit > settings.max_read_rows:
        raise BadRequest(f"limit {request.limit} is over the maximum of {settings.max_read_rows}")

    caller = attempt.caller
    with unit_of_work(state.sessions) as db:
        dataset = load_view(db, settings.datasets_dir, caller.tenant, attempt.dataset)
    attempt.version = dataset.version
    check_job_scope(caller, dataset.name, request.purpose)
    state.policy.ensure_fresh()
    columns = list(request.columns) if request.columns else list(dataset.column_names)
    attempt.columns = columns
    if unknown := [c for c in columns if dataset.column(c) is None]:
        _hide_unless_visible(state, caller, dataset)
        raise BadRequest(f"unknown columns {[c[:64] for c in unknown[:10]]}")
    if len(set(columns)) != len(columns):
        raise BadRequest("a column is named more than once")

    now = state.now()
    filter_columns = [c.column for c in request.where if dataset.column(c.column) is not None]
    decided = list(dict.fromkeys(columns + filter_columns))
    decision = state.policy.current().decide_read(
        policy_subject(caller), caller.tenant, dataset.name, decided, request.purpose, now
    )
    attempt.decision = decision
    if flagged := break_glass_grants(decision.grant_ids):
        attempt.details["break_glass"] = True
        attempt.details["break_glass_grants"] = flagged
    if request.purpose not in PURPOSES:
        _hide_unless_visible(state, caller, dataset)
        raise BadRequest(f"unknown purpose {request.purpose[:32]!r}; known: {list(PURPOSES)}")
    if not decision.allowed:
        _hide_unless_visible(state, caller, dataset)
        raise Forbidden(f"no column of {dataset.name!r} may be read for {request.purpose!r}")
    if request.purpose not in dataset.allowed_purposes:
        raise Forbidden(f"{dataset.name!r} may not be used for {request.purpose!r}")
    if not request.columns:
        # No columns asked for: everything this read may see, nothing it may not.
        columns = [c for c in columns if c not in set(decision.denied_columns)]
        attempt.columns = columns
    if denied := [c for c in columns if c in set(decision.denied_columns)]:
        raise Forbidden(f"columns {denied} may not be read for {request.purpose!r}")
    planner.check_filters(request.where, decision, dataset)

    plan = planner.build(dataset, decision, columns, request.where, request.limit, state.mask_key)
    frame = planner.collect(plan)
    body = ArrowStream(frame, views=views)
    size = body.size

    # Audit before data: the event is committed before the caller gets a byte.
    event = record(state.sessions, attempt.audit("allow", rows=frame.height, bytes=size))
    annotate_span(span, event)
    return ReadResult(
        body=body,
        rows=frame.height,
        event_id=event.id,
        columns=plan.columns,
        masked=plan.masked,
        headers={
            "x-warden-audit-event": event.id,
            "x-warden-dataset-version": dataset.version,
            "x-warden-policy-version": str(decision.policy_version),
            "x-warden-masked-columns": ",".join(plan.masked),
            "x-warden-rows": str(frame.height),
            "content-length": str(size),
        },
    )


def policy_subject(caller: Caller) -> str:
    """Jobs read with their launcher's rights (and never more: see check_job_scope)."""
    if caller.kind == "job":
        return caller.on_behalf_of or ""
    return caller.name


def check_job_scope(caller: Caller, dataset: str, purpose: str) -> None:
    """A job reads only its own datasets, for its own purpose, from the ML segment."""
    if caller.kind != "job":
        return
    if caller.segment != "ml":
        raise Forbidden(f"reads from the {caller.segment!r} segment are refused")
    if caller.scope_datasets is None or dataset not in caller.scope_datasets:
        raise Forbidden(f"this job's token does not cover {dataset!r}")
    if purpose != caller.scope_purpose:
        raise Forbidden(f"this job's token is for {caller.scope_purpose!r}, not {purpose!r}")


def _hide_unless_visible(state: Platform, caller: Caller, dataset: DatasetView) -> None:
    """A dataset the caller has no right to see at all answers 404, not 403."""
    if not visible(state, caller, dataset):
        raise NotFound(f"no dataset named {dataset.name!r}")


def visible(state: Platform, caller: Caller, dataset: DatasetView) -> bool:
    snapshot = state.policy.current()
    now = state.now()
    return any(
        snapshot.decide_read(
            policy_subject(caller),
            caller.tenant,
            dataset.name,
            list(dataset.column_names),
            purpose,
            now,
        ).allowed
        for purpose in dataset.allowed_purposes
    )
