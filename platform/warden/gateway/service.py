"""A governed read, end to end: decide → plan → audit (durably) → hand back Arrow IPC bytes.

Every outcome is audited: an allowed read before its first byte leaves, a refused one with
the reason it was refused. If the audit write fails, the read fails closed (503).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from opentelemetry.trace import Span
from pydantic import ValidationError
from sqlalchemy.orm import Session

from warden.access.ids import break_glass_grants
from warden.access.repository import last_grant_of
from warden.audit.chain import utc
from warden.audit.outcomes import by
from warden.audit.service import AuditRecord, record, stream_completion, stream_intent
from warden.audit.telemetry import annotate_span, read_span
from warden.catalog.order import check_served_order
from warden.catalog.service import DatasetView, load_view, pin_version
from warden.catalog.storage import storage_reason
from warden.catalog.tables import table_file
from warden.core.platform import Platform
from warden.db.generation import Stamp
from warden.db.session import commit_begun, unit_of_work
from warden.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    Unprocessable,
    WardenError,
)
from warden.gateway import planner
from warden.gateway.arrow import ArrowStream
from warden.gateway.keys import tenant_mask
from warden.gateway.schemas import ReadRequest
from warden.gateway.stream import LiveStream, Outcome
from warden.identity.service import Caller
from warden.policy.engine import ReadDecision
from warden.policy.reads import authorize_read

log = logging.getLogger(__name__)
ARROW_STREAM = "application/vnd.apache.arrow.stream"
# A caller that sends `x-warden-arrow-layout: view` gets inline text in Arrow's view layout.
ARROW_LAYOUT_HEADER = "x-warden-arrow-layout"
Decision = Literal["allow", "deny", "error"]


# An answer is streamed (intent and completion events) once the batches made while deciding
# hold more than this; below it, the whole answer is one audit event, as for a small file.
STREAM_ABOVE_BYTES = 4 << 20


@dataclass
class ReadResult:
    """`body`: the whole answer, measured (`rows` known), or a live stream (`rows` is -1:
    the completion event will say)."""

    body: ArrowStream | LiveStream
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
        return by(
            self.caller,
            "dataset.read",
            decision,
            dataset=self.dataset,
            dataset_version=self.version,
            purpose=self.purpose,
            rule=d.deciding_rule if d else None,
            policy_version=d.policy_version if d else None,
            columns=self.columns,
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
    state: Platform,
    caller: Caller,
    name: str,
    raw_body: bytes,
    *,
    views: bool = False,
    session: Session | None = None,
    stamp: Stamp | None = None,
) -> ReadResult:
    """`views`: the caller reads Arrow's view layout (see ArrowStream); the rows are the same.
    `session`: the request's open session (it authenticated the caller); the dataset is read
    on it too, then its transaction ends before the plan runs. `stamp`: the policy version and
    change generation the request read on that session; the dataset view and mask keys then
    come from the process's caches when nothing changed since they were filled."""
    state.owed.settle(state.sessions)  # a completion the log refused first (audit/owed.py)
    attempt = _Attempt(caller=caller, dataset=name)
    with read_span(
        "warden.read", {"warden.dataset": name[:64], "warden.actor": caller.name}
    ) as span:
        try:
            # One policy version query per read (or none, given the stamp), one snapshot.
            stored = stamp.policy_version if stamp is not None else None
            with state.policy.one_check(session, stored_version=stored):
                result = _read(state, attempt, raw_body, span, views, session, stamp)
        except WardenError as exc:
            event = record(
                state.sessions, attempt.audit("deny", f"{type(exc).__name__}: {exc.detail}")
            )
            exc.audited = True
            annotate_span(span, event)
            raise
        except Exception as exc:
            # an unforeseen failure (a 500) is an attempt too: audited, if the log takes it
            with contextlib.suppress(WardenError):
                failed = attempt.audit("error", f"internal error: {type(exc).__name__}")
                annotate_span(span, record(state.sessions, failed))
            raise
        return result


def _read(
    state: Platform,
    attempt: _Attempt,
    raw_body: bytes,
    span: Span,
    views: bool,
    session: Session | None,
    stamp: Stamp | None = None,
) -> ReadResult:
    settings = state.settings
    request = parse_request(raw_body, settings.max_request_bytes)
    attempt.purpose = request.purpose
    attempt.details["where"] = [c.model_dump() for c in request.where]
    attempt.details["limit"] = request.limit
    if request.limit is not None and request.limit > settings.max_read_rows:
        raise BadRequest(f"limit {request.limit} is over the maximum of {settings.max_read_rows}")

    caller = attempt.caller
    if session is not None:
        generation = stamp.generation if stamp is not None else None
        dataset = state.views.at(generation).get(
            (caller.tenant, attempt.dataset),
            lambda: load_view(session, settings.datasets_dir, caller.tenant, attempt.dataset),
        )
        mask = tenant_mask(
            session,
            state.mask_key,
            dataset.tenant_id,
            state.now(),
            tenant=dataset.tenant,
            cached=state.mask_schedules.at(generation),
        )
    else:
        with unit_of_work(state.sessions) as db:
            dataset = load_view(db, settings.datasets_dir, caller.tenant, attempt.dataset)
            mask = tenant_mask(
                db, state.mask_key, dataset.tenant_id, state.now(), tenant=dataset.tenant
            )
    attempt.version = dataset.version
    attempt.details["mask_key_version"] = mask.version
    attempt.columns = list(request.columns or dataset.column_names)

    def observe(decision: ReadDecision) -> None:
        attempt.decision = decision
        if flagged := break_glass_grants(decision.grant_ids):
            attempt.details["break_glass"] = True
            attempt.details["break_glass_grants"] = flagged

    try:
        allowed = authorize_read(
            state,
            caller,
            dataset,
            request.purpose,
            request.columns or None,
            filter_columns=[c.column for c in request.where],
            observe=observe,
        )
    except NotFound:
        _refuse_ended_grant(state, caller, dataset, request.purpose)
        raise
    except Forbidden:
        if attempt.decision is not None and not attempt.decision.allowed:
            _refuse_ended_grant(state, caller, dataset, request.purpose)
        raise
    current = dataset.version
    if request.version is not None:  # an earlier version, decided on today's policy
        attempt.details["as_of"] = request.version
        if session is not None:
            dataset = pin_version(session, settings.datasets_dir, dataset, request.version)
        else:
            with unit_of_work(state.sessions) as db:
                dataset = pin_version(db, settings.datasets_dir, dataset, request.version)
        attempt.version = dataset.version
    if dataset.snapshot_id is not None:
        attempt.details["snapshot"] = dataset.snapshot_id
    if session is not None:
        commit_begun(session)  # the lookups are done: hand the connection back before the plan
    decision, columns = allowed.decision, allowed.columns
    attempt.columns = columns
    if raw := _raw_identifiers(dataset, columns, decision):
        attempt.details["raw_ids"] = raw  # checkpointed at once (audit/anchor.py)
    planner.check_filters(request.where, decision, dataset)

    shard = request.shard
    if shard is not None:
        attempt.details["shard"] = {"rank": shard.rank, "world": shard.world, "by": "position"}
    try:
        if dataset.version != current:  # ordered against its own registration's identifiers
            check_served_order(
                table_file(settings, dataset), dataset.identifier_columns, dataset.name,
                dataset.version,
            )  # fmt: skip
        plan = planner.build(
            dataset,
            decision,
            columns,
            request.where,
            request.limit,
            mask,
            table_file(settings, dataset),
            shard=(shard.rank, shard.world) if shard is not None else None,
        )
        headers = {
            "x-warden-dataset-version": dataset.version,
            "x-warden-policy-version": str(decision.policy_version),
            "x-warden-masked-columns": ",".join(plan.masked),
        }
        if dataset.snapshot_id is not None:
            headers["x-warden-dataset-snapshot"] = str(dataset.snapshot_id)
        if plan.in_memory:
            frame = planner.collect(plan)
        else:
            # A large file: scan it lazily, a batch at a time. If the whole answer turns out
            # small, it is sent as one measured piece under one event, like a small file's.
            batches = planner.batches(plan)
            first, held = [], 0
            for batch in batches:
                first.append(batch)
                held += int(batch.estimated_size())
                if held > STREAM_ABOVE_BYTES:
                    return _stream(state, attempt, span, plan, first, batches, headers, views)
            frame = pl.concat(first) if first else planner.collect(plan, empty=True)
    except pl.exceptions.ColumnNotFoundError:
        # an earlier version without a column the dataset has now
        raise Unprocessable(
            f"version {dataset.version[:19]}… of {dataset.name!r} lacks a column asked for"
        ) from None
    except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
        # The bucket or file failed (unreachable, credentials, missing, corrupt): a clear 503
        # whose detail names neither the location nor anything of the credentials.
        log.warning("reading %s failed: %s", dataset.location, exc)
        raise StorageUnavailable(storage_reason(exc)) from None
    body = ArrowStream(frame, views=views)
    size = body.size

    # Audit before data: the event is committed before the caller gets a byte.
    event = record(state.sessions, attempt.audit("allow", rows=frame.height, bytes=size))
    _witness(state, attempt, event.id)
    annotate_span(span, event)
    headers["x-warden-audit-event"] = event.id
    headers["x-warden-rows"] = str(frame.height)
    headers["content-length"] = str(size)
    return ReadResult(
        body=body,
        rows=frame.height,
        event_id=event.id,
        columns=plan.columns,
        masked=plan.masked,
        headers=headers,
    )


def _raw_identifiers(view: DatasetView, columns: list[str], decision: ReadDecision) -> list[str]:
    """The identifier or entity columns a read returns unmasked: what its reader keeps
    (policy/raw_reads.py), so its event must not wait in the log's unprotected tail."""
    masked = set(decision.masked_columns)
    return [
        c
        for c in columns
        if c not in masked
        and (c in view.identifier_columns or ((info := view.column(c)) is not None and info.entity))
    ]


def _witness(state: Platform, attempt: _Attempt, event_id: str) -> None:
    """A job's read, kept for its exit event (audit/witness.py)."""
    if attempt.caller.kind == "job":
        state.job_reads.note(attempt.caller.name, event_id)


def _stream(
    state: Platform,
    attempt: _Attempt,
    span: Span,
    plan: planner.Plan,
    first: list[pl.DataFrame],
    rest: Iterator[pl.DataFrame],
    headers: dict[str, str],
    views: bool,
) -> ReadResult:
    """Audit before data, for an answer of unknown length: the intent is committed before the
    first byte (a failed write answers 503 and sends nothing); the completion follows the
    last byte, or the moment the client went away, with what was sent and its SHA-256."""
    opened = stream_intent(attempt.audit("allow"))
    stream_id = str(opened.details["stream"]["id"])
    try:
        intent = record(state.sessions, opened)
    except BaseException:
        rest.close()  # type: ignore[attr-defined]
        raise
    _witness(state, attempt, intent.id)
    annotate_span(span, intent)

    def complete(outcome: Outcome) -> None:
        completion = stream_completion(
            intent,
            rows=outcome.rows,
            bytes=outcome.bytes,
            sha256=outcome.sha256,
            complete=outcome.complete,
            reason=outcome.reason,
        )
        try:
            record(state.sessions, completion)
        except Exception:
            state.owed.owe(completion)  # the bytes left: written before the next read
            raise

    headers["x-warden-audit-event"] = intent.id
    headers["x-warden-stream"] = stream_id
    return ReadResult(
        body=LiveStream(first, rest, complete, stream_id=stream_id, views=views),
        rows=-1,
        event_id=intent.id,
        columns=plan.columns,
        masked=plan.masked,
        headers=headers,
    )


def _refuse_ended_grant(state: Platform, caller: Caller, view: DatasetView, purpose: str) -> None:
    """Someone whose grant on the dataset ended knows it exists: say so, and how to ask again."""
    with unit_of_work(state.sessions) as db:
        ended = last_grant_of(db, caller.principal_id, view.id)
    if ended is not None and (ended.state != "active" or utc(ended.expires_at) <= state.now()):
        raise Forbidden(
            f"your access to {view.name!r} ended ({ended.id} {ended.state});"
            f" ask again with `warden access request {view.name} --purpose {purpose}`"
        )
