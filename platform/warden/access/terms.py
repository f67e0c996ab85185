"""A dataset's access terms: quorum and maximum duration by classification, overridable per
dataset; and the checks a request's purpose and columns must pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from warden.access import repository as repo
from warden.access.models import AccessSetting
from warden.access.present import body_of
from warden.access.schemas import MAX_DURATION_S, SettingsOut, format_duration
from warden.audit.outcomes import by
from warden.audit.service import append
from warden.catalog.view import DatasetView
from warden.config import Settings
from warden.core.platform import Platform
from warden.db.sealed import check
from warden.errors import Unavailable, Unprocessable
from warden.identity.revocations import revocations_for
from warden.identity.service import Caller
from warden.policy.rules import column_name_problem

DAY = 86_400
# Floors no setting can go below: pii needs two approvers, internal one; public is
# immediate. Unknown classes are treated as pii.
FLOOR_QUORUM: Mapping[str, int] = {"public": 0, "internal": 1, "pii": 2}
DEFAULT_QUORUM: Mapping[str, int] = {"public": 0, "internal": 1, "pii": 2}
DEFAULT_MAX_DURATION_S: Mapping[str, int] = {
    "public": 90 * DAY,
    "internal": 30 * DAY,
    "pii": 7 * DAY,
}


@dataclass(frozen=True)
class Terms:
    """The access terms of one dataset: classification defaults, then its own overrides."""

    dataset: str
    classification: str
    quorum: int
    max_duration_s: int
    overridden: tuple[str, ...]

    def out(self) -> SettingsOut:
        return body_of(SettingsOut, self, max_duration=format_duration(self.max_duration_s))


def floor_quorum(classification: str) -> int:
    return FLOOR_QUORUM.get(classification, FLOOR_QUORUM["pii"])


def ceiling_duration_s(classification: str, settings: Settings | None = None) -> int:
    """The longest grant a class may ever allow (pii 90 days, internal a year by default)."""
    if classification == "public":
        return MAX_DURATION_S
    if classification == "internal":
        days = settings.access_internal_max_duration_days if settings else 365
    else:
        days = settings.access_pii_max_duration_days if settings else 90
    return days * DAY


def _compose(
    view: DatasetView, settings: Settings | None, quorum: int | None, max_duration: int | None
) -> Terms:
    """Class defaults, then the dataset's own values; a stored value outside the floors
    (written past the API) is held to the floor."""
    cls = view.classification
    overridden: list[str] = []
    q = DEFAULT_QUORUM.get(cls, 2)
    if quorum is not None:
        q = quorum
        overridden.append("quorum")
    d = DEFAULT_MAX_DURATION_S.get(cls, 7 * DAY)
    if max_duration is not None:
        d = max_duration
        overridden.append("max_duration")
    q = max(q, floor_quorum(cls))
    d = min(d, ceiling_duration_s(cls, settings))
    return Terms(view.name, cls, q, d, tuple(overridden))


def terms_of(db: Session, view: DatasetView, settings: Settings | None = None) -> Terms:
    setting = repo.setting_of(db, view.id)
    stored = (None, None) if setting is None else (setting.quorum, setting.max_duration_s)
    if setting is not None:
        check(db, setting)  # as a reviewed change left it (db/sealed.py)
    logged = revocations_for(db).refresh(db).terms.get((view.tenant, view.name))
    if logged is not None and logged != stored:  # deleted (or restored) in SQL
        raise Unavailable(
            f"the access terms of {view.name!r} are not the ones last set (the audit log says"
            f" quorum {logged[0]}, maximum {logged[1]} s): written past Warden"
        )
    return _compose(view, settings, *stored)


def preview(
    db: Session, view: DatasetView, settings: Settings, values: Mapping[str, int | None]
) -> Terms:
    """The terms `values` would give (null: back to the class default); 422 naming the floor
    when a value is outside it."""
    cls = view.classification
    quorum = values.get("quorum")
    if quorum is not None and quorum < floor_quorum(cls):
        raise Unprocessable(
            f"quorum {quorum} is below the floor of {floor_quorum(cls)} for {cls} data"
            f" ({view.name!r})"
        )
    duration = values.get("max_duration_s")
    ceiling = ceiling_duration_s(cls, settings)
    if duration is not None and duration > ceiling:
        raise Unprocessable(
            f"maximum duration {format_duration(duration)} is over the floor of"
            f" {format_duration(ceiling)} for {cls} data ({view.name!r})"
        )
    setting = repo.setting_of(db, view.id)
    stored_q = setting.quorum if setting is not None else None
    stored_d = setting.max_duration_s if setting is not None else None
    return _compose(
        view,
        settings,
        quorum if "quorum" in values else stored_q,
        duration if "max_duration_s" in values else stored_d,
    )


def check_columns(view: DatasetView, columns: Sequence[str] | None, purpose: str) -> list[str]:
    """Check purpose and columns against the dataset; the columns a grant would cover."""
    if purpose not in view.allowed_purposes:
        raise Unprocessable(
            f"{view.name!r} may not be used for {purpose[:32]!r};"
            f" it allows {', '.join(view.allowed_purposes)}"
        )
    chosen = list(columns) if columns else list(view.column_names)
    if unknown := [c for c in chosen if view.column(c) is None]:
        raise Unprocessable(f"{view.name!r} has no columns {[c[:64] for c in unknown[:10]]}")
    if len(set(chosen)) != len(chosen):
        raise Unprocessable("a column is named more than once")
    for column in chosen:
        if problem := column_name_problem(column):  # a dataset registered before the check
            raise Unprocessable(problem)
    return chosen


def set_terms(
    db: Session,
    state: Platform,
    actor: Caller,
    view: DatasetView,
    values: Mapping[str, int | None],
    details: Mapping[str, Any],
) -> Terms:
    """Store a dataset's overrides (floors checked again), audited. Callers decide first
    whether this may apply now (narrowing) or only once approved (warden.access.changes)."""
    preview(db, view, state.settings, values)
    setting = repo.setting_of(db, view.id)
    if setting is None:
        setting = AccessSetting(dataset_id=view.id, updated_by=actor.name)
        db.add(setting)
    before = terms_of(db, view, state.settings)
    if "quorum" in values:
        setting.quorum = values["quorum"]
    if "max_duration_s" in values:
        setting.max_duration_s = values["max_duration_s"]
    setting.updated_by = actor.name
    setting.updated_at = state.now()
    db.flush()
    # composed from the row just written (the log says the old values until this commits)
    after = _compose(view, state.settings, setting.quorum, setting.max_duration_s)
    change = {
        "before": {"quorum": before.quorum, "max_duration_s": before.max_duration_s},
        "after": {"quorum": after.quorum, "max_duration_s": after.max_duration_s},
    }
    stored = {"quorum": setting.quorum, "max_duration_s": setting.max_duration_s}
    details = {**change, "stored": stored, **details}
    append(db, by(actor, "access.settings.changed", "allow", dataset=view.name, details=details))
    return after
