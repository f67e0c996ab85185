"""The one read decision: may this caller read these columns of dataset D for purpose P?

Governed reads, job launches, sandbox launches, the catalog and `policy check` all ask here,
with the platform's clock, the same refusals, and one rule for whether a caller may know a
dataset exists at all: without it every answer is the 404 a missing name gets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warden.catalog.service import PURPOSES
from warden.catalog.view import DatasetView
from warden.core.platform import Platform
from warden.errors import BadRequest, Forbidden, NotFound, WardenError
from warden.identity.service import Caller
from warden.policy.engine import ReadDecision

# Knowing that a dataset exists (its name, schema, classes, access settings) is this right.
BROWSE = "browse"


@dataclass(frozen=True)
class ReadAuthorization:
    decision: ReadDecision
    columns: list[str]  # what the read returns: asked for, or everything not denied


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


def visible(platform: Platform, caller: Caller, view: DatasetView) -> bool:
    """The visibility rule: the dataset's owner, whoever Casbin gives `browse` or `review` on
    it, and whoever may read some column of it for one of its purposes."""
    subject = policy_subject(caller)
    if subject == view.owner:
        return True
    snapshot = platform.policy.ensure_fresh()
    now = platform.now()
    if any(snapshot.can(subject, caller.tenant, view.name, act, now) for act in (BROWSE, "review")):
        return True
    columns = list(view.column_names)
    return any(
        snapshot.decide_read(subject, caller.tenant, view.name, columns, purpose, now).allowed
        for purpose in view.allowed_purposes
    )


def require_visible(platform: Platform, caller: Caller, view: DatasetView) -> None:
    if not visible(platform, caller, view):
        raise NotFound(f"no dataset named {view.name!r}")


def authorize_read(
    platform: Platform,
    caller: Caller,
    view: DatasetView,
    purpose: str,
    columns: Sequence[str] | None = None,
    *,
    filter_columns: Sequence[str] = (),
    observe: Callable[[ReadDecision], None] | None = None,
) -> ReadAuthorization:
    """Allow, or raise NotFound (hidden), BadRequest (unknown names) or Forbidden.

    `columns` None reads every column the caller may see; `filter_columns` are decided too
    (a filter on a column is a read of it). `observe` sees the decision before any refusal
    that follows it, so the caller's audit event can carry the deciding rule.
    """
    check_job_scope(caller, view.name, purpose)
    require_visible(platform, caller, view)
    if purpose not in PURPOSES:
        raise BadRequest(f"unknown purpose {purpose[:32]!r}; known: {list(PURPOSES)}")
    wanted = list(columns) if columns else list(view.column_names)
    if unknown := [c for c in wanted if view.column(c) is None]:
        raise BadRequest(f"unknown columns {[c[:64] for c in unknown[:10]]}")
    if len(set(wanted)) != len(wanted):
        raise BadRequest("a column is named more than once")
    known_filters = [c for c in filter_columns if view.column(c) is not None]
    snapshot = platform.policy.ensure_fresh()
    decision = snapshot.decide_read(
        policy_subject(caller),
        caller.tenant,
        view.name,
        list(dict.fromkeys(wanted + known_filters)),
        purpose,
        platform.now(),
    )
    if observe is not None:
        observe(decision)
    if not decision.allowed:
        raise Forbidden(f"no column of {view.name!r} may be read for {purpose!r}")
    if purpose not in view.allowed_purposes:
        raise Forbidden(f"{view.name!r} may not be used for {purpose!r}")
    denied = set(decision.denied_columns)
    if not columns:
        # No columns asked for: everything this read may see, nothing it may not.
        wanted = [c for c in wanted if c not in denied]
    elif refused := [c for c in wanted if c in denied]:
        raise Forbidden(f"columns {refused} may not be read for {purpose!r}")
    return ReadAuthorization(decision, wanted)


def seen_at_launch(decision: ReadDecision) -> dict[str, list[Any]]:
    """What a job's launcher could read of a dataset when it launched, as the job records it
    (sealed in `job.decisions`): raw and masked columns, the row filters it was under."""
    return {
        "raw": list(decision.allowed_columns),
        "masked": list(decision.masked_columns),
        "row_filters": [[f.column, f.op, f.value] for f in decision.row_filters],
    }


def seen_by_all(records: Iterable[Mapping[str, Any] | None]) -> dict[str, list[Any]] | None:
    """What several launches saw of one dataset (`seen_at_launch` records: a model's job's and
    its ancestors'), as one record that shows no less than any of them: every column any read
    raw, or masked where none read it raw; only the row filters every one of them was under.
    None when none was recorded (jobs launched before records were kept)."""
    kept = [r for r in records if r]
    if not kept:
        return None
    raw = set().union(*(r.get("raw", []) for r in kept))
    masked = set().union(*(r.get("masked", []) for r in kept)) - raw
    filters = set.intersection(*({tuple(f) for f in r.get("row_filters", [])} for r in kept))
    return {
        "raw": sorted(raw),
        "masked": sorted(masked),
        "row_filters": [list(f) for f in sorted(filters)],
    }


def authorize_use(
    platform: Platform,
    caller: Caller,
    view: DatasetView,
    prefer: str | None = None,
    *,
    built_by: str | None = None,
    built_with: Mapping[str, Any] | None = None,
) -> None:
    """Whether `caller` may use something built from `view` (a model's artifacts, a job's
    log): they may read it for `prefer` where the dataset allows that purpose, else for some
    purpose it allows, and, given `built_by` (whose job built it), at least what that person
    could read of it for that purpose: no column denied or masked to the caller that the
    builder read, no row filter the builder was not under. What was built carries what the
    builder saw: what they may read now or could at their job's launch (`built_with`: the
    job's `decisions["datasets"]`), whichever is more, so a deny added to the builder, or
    their grant ending, after the build opens nothing, and closes it to the builder too.
    Raises the first refusal (NotFound where hidden)."""
    purposes = [prefer] if prefer in view.allowed_purposes else list(view.allowed_purposes)
    errors: list[WardenError] = []
    for purpose in purposes:
        try:
            decision = authorize_read(platform, caller, view, purpose).decision
            # the builder too: a right that ended after the build takes back what it made
            if built_by is not None:
                seen = (built_with or {}).get(view.name, {}).get("seen")
                _covers(platform, caller, view, purpose, decision, built_by, seen)
            return
        except WardenError as exc:
            errors.append(exc)
    raise errors[0] if errors else NotFound(f"no dataset named {view.name!r}")


def _covers(
    platform: Platform,
    caller: Caller,
    view: DatasetView,
    purpose: str,
    mine: ReadDecision,
    built_by: str,
    seen: Mapping[str, Any] | None,
) -> None:
    """Forbidden unless `mine` shows all that the builder's decision showed, now or at their
    job's launch (`seen`, see `seen_at_launch`; None for a job launched before it was kept)."""
    snapshot = platform.policy.ensure_fresh()
    theirs = snapshot.decide_read(
        built_by, view.tenant, view.name, list(view.column_names), purpose, platform.now()
    )
    seen = seen or {}
    raw = set(theirs.allowed_columns) | set(seen.get("raw", []))
    masked = (set(theirs.masked_columns) | set(seen.get("masked", []))) - raw
    unseen = set(view.column_names) - raw - masked
    # a filter counts only where the builder was under it at launch too (when that is known)
    at_launch = {tuple(f) for f in seen.get("row_filters", [])}
    filters = {f for f in theirs.row_filters if not seen or (f.column, f.op, f.value) in at_launch}
    narrower = (
        set(mine.denied_columns) - unseen
        or set(mine.masked_columns) - masked - unseen
        or set(mine.row_filters) - filters
    )
    if narrower:
        raise Forbidden(
            f"{caller.name} may read less of {view.name!r} for {purpose!r} than {built_by},"
            " who built this from it"
        )


def missing_model(ref: str) -> NotFound:
    """The one answer for a model that does not exist and for one the caller may not use: a
    different message would tell them which it is."""
    return NotFound(f"no model {ref[:80]!r}")


def authorize_model(
    platform: Platform,
    caller: Caller,
    ref: str,
    *,
    launcher: str,
    lineage: Iterable[DatasetView],
    built_with: Mapping[str, Any],
    hidden: NotFound | None = None,
) -> None:
    """The one answer to "may `caller` use the model `ref`" (show, serve, build on it, or run
    an experiment with it): `authorize_use` on every dataset of its `lineage` (its ancestors'
    included), `inference` where the dataset allows it, no less than its `launcher` could
    read (`built_with`). A tampered or broken lineage (a 5xx while loading or deciding)
    fails closed as it is raised: 503, the same for everyone. Refused: 403 to the launcher,
    who knows the model exists; to anyone else `hidden`, the answer for what they asked for
    when it is missing (`missing_model(ref)` by default). Given `hidden`, the caller asked
    for something else (an experiment) and every refusal answers as it."""
    try:
        for view in lineage:
            authorize_use(
                platform, caller, view, "inference", built_by=launcher, built_with=built_with
            )
    except WardenError as refused:
        if refused.status_code >= 500:
            raise
        if hidden is None and launcher == policy_subject(caller):
            raise Forbidden(
                f"{caller.name} may no longer use model {ref[:80]!r}: it is built from data"
                " they may no longer read as they did (a grant ended or a rule changed);"
                " `warden access request` asks for access again"
            ) from refused
        raise hidden or missing_model(ref) from refused


def may_use(
    platform: Platform,
    caller: Caller,
    view: DatasetView,
    *,
    built_by: str | None = None,
    built_with: Mapping[str, Any] | None = None,
) -> bool:
    try:
        authorize_use(platform, caller, view, built_by=built_by, built_with=built_with)
    except WardenError as refused:
        # a tampered row or a store that cannot answer: fail closed, and say so (503)
        if refused.status_code >= 500:
            raise
        return False
    return True


def covers_sources(
    platform: Platform, caller: Caller, sources: Sequence[DatasetView], purpose: str
) -> None:
    """Forbidden unless `caller` may read each dataset a derived one was built from for
    `purpose` whole: no row filter, no column denied or masked, identifiers included.
    A copy carries neither its sources' row filters nor their denies, and who built it is
    not recorded, so fail closed: as if its builder read every source whole. Masking the
    copy's identifier columns does not stand in for a source's masked identifier: the copy
    can hold its raw ids in any column (a float, text, an offset, a list)."""
    snapshot = platform.policy.ensure_fresh()
    for source in sources:
        mine = snapshot.decide_read(
            policy_subject(caller),
            caller.tenant,
            source.name,
            list(source.column_names),
            purpose,
            platform.now(),
        )
        if mine.row_filters or mine.denied_columns or mine.masked_columns:
            raise Forbidden(
                f"{caller.name} may read less of {source.name!r} for {purpose!r} than a"
                " dataset derived from it holds"
            )
