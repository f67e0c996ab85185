"""What the audit API returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


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
