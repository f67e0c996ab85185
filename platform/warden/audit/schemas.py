"""What the audit API is asked (the events query) and what it returns."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from warden.audit.cursor import MAX_CURSOR_LENGTH
from warden.audit.service import MAX_QUERY_LIMIT

_NUMBER = re.compile(r"\s*[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*")


def _iso_8601(value: Any) -> Any:
    # pydantic would read a bare number as a Unix time; the API documents ISO-8601 only.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("expected an ISO-8601 date or date-time, not a number")
    return value


Name = Annotated[str | None, Field(max_length=64)]
When = Annotated[datetime | None, BeforeValidator(_iso_8601)]


class AuditFilters(BaseModel):
    """The query parameters of GET /v1/audit/events: what `service.query` selects by (its
    keywords, by field name) and what the query's own audit event records (`details`)."""

    actor: Name = None
    dataset: Name = None
    action: Name = None
    decision: Literal["allow", "deny", "error"] | None = None
    since: When = Field(default=None, description="ISO-8601, inclusive")
    until: When = Field(default=None, description="ISO-8601, exclusive")
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_LENGTH)
    limit: int = Field(default=100, ge=1, le=MAX_QUERY_LIMIT)
    event_id: str | None = Field(default=None, alias="id", max_length=64)

    def details(self) -> dict[str, Any]:
        """The filters given, as the audit.query event records them (the id first)."""
        given = {
            "id": self.event_id,
            "actor": self.actor,
            "dataset": self.dataset,
            "action": self.action,
            "decision": self.decision,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "cursor": self.cursor,
            "limit": self.limit,
        }
        return {k: v for k, v in given.items() if v is not None}


class AuditEventOut(BaseModel):
    seq: int | None  # the event's place in the one chain: platform admins only
    id: str
    ts: str  # ISO-8601 UTC with microseconds, as hashed
    actor: str
    actor_kind: str
    on_behalf_of: str | None
    tenant: str | None
    action: str
    dataset: str | None
    dataset_version: str | None
    purpose: str | None
    decision: str
    rule: str | None
    policy_version: int | None
    columns: list[str]
    masked_columns: list[str]
    row_filter: list[dict[str, Any]]
    rows: int | None
    bytes: int | None
    grant_ids: list[str]
    trace_id: str | None
    reason: str | None
    details: dict[str, Any]
    prev_hash: str | None  # platform admins only, as seq
    hash: str


class AuditEventsPage(BaseModel):
    events: list[AuditEventOut]
    next_cursor: str | None


class BrokenLinkOut(BaseModel):
    seq: int
    id: str | None
    reason: str


class FindingOut(BaseModel):
    kind: str  # gap, relinked, rewritten, unknown_key, downgrade, truncation, deletion, …
    severity: str  # tampering | note
    seq: int | None
    last_seq: int | None  # a run of `count` events from seq to last_seq
    count: int
    id: str | None
    detail: str


class CheckpointSummaryOut(BaseModel):
    n: int
    seq: int
    ts: str
    store: str


class VerifyOut(BaseModel):
    ok: bool
    # "chain": the whole chain, for platform admins; "tenant": whether the one chain holds,
    # with the caller's tenant's events counted and nothing of other tenants' (no seqs, no
    # checkpoints, findings by kind only)
    scope: Literal["chain", "tenant"] = "chain"
    checked: int
    first_broken: BrokenLinkOut | None
    head_seq: int | None
    findings: list[FindingOut] = []
    key_ids: list[str] = []
    checkpoints_checked: int = 0
    checkpoint_file: str | None = None
    newest_checkpoint: CheckpointSummaryOut | None = None
    unprotected_events: int = 0
    unprotected_since: str | None = None


class CheckpointOut(BaseModel):
    written: bool
    n: int | None = None
    seq: int | None = None
    hash: str | None = None
    ts: str | None = None
    store: str | None = None
    event_seq: int | None = None
    skipped: str | None = None
    findings: list[FindingOut] = []
