"""A dataset's access terms: quorum and maximum duration by classification, overridable per
dataset; and the checks a request's purpose and columns must pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from warden.access import repository as repo
from warden.access.models import AccessSetting
from warden.access.rights import ACCESS_OBJECT, can, require_person
from warden.access.schemas import SettingsOut, SettingsUpdate, format_duration
from warden.audit.service import AuditRecord, append
from warden.catalog.service import DatasetView, load_view
from warden.core.platform import Platform
from warden.errors import Forbidden, Unprocessable
from warden.identity.service import Caller
from warden.policy.rules import rule_problems

DAY = 86_400
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
        return SettingsOut(
            dataset=self.dataset,
            classification=self.classification,
            quorum=self.quorum,
            max_duration_s=self.max_duration_s,
            max_duration=format_duration(self.max_duration_s),
            overridden=list(self.overridden),
        )


def terms_of(db: Session, view: DatasetView) -> Terms:
    setting = repo.setting_of(db, view.id)
    quorum = DEFAULT_QUORUM.get(view.classification, 2)
    max_duration = DEFAULT_MAX_DURATION_S.get(view.classification, 7 * DAY)
    overridden: list[str] = []
    if setting is not None and setting.quorum is not None:
        quorum = setting.quorum
        overridden.append("quorum")
    if setting is not None and setting.max_duration_s is not None:
        max_duration = setting.max_duration_s
        overridden.append("max_duration")
    return Terms(view.name, view.classification, quorum, max_duration, tuple(overridden))


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
        probe = ("p", ("x", "acme", view.name, column, purpose, "read", "allow", "g", ""))
        if rule_problems(*probe):
            raise Unprocessable(f"column {column[:64]!r} cannot be granted by a policy rule")
    return chosen


def update_terms(
    db: Session, state: Platform, caller: Caller, name: str, body: SettingsUpdate
) -> Terms:
    """Set a dataset's overrides (its owner, or sys:access manage); audited."""
    require_person(caller)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, name)
    if caller.name != view.owner and not can(state, caller, ACCESS_OBJECT, "manage"):
        raise Forbidden(f"only the owner of {view.name!r} or an access admin may change its terms")
    setting = repo.setting_of(db, view.id)
    if setting is None:
        setting = AccessSetting(dataset_id=view.id, updated_by=caller.name)
        db.add(setting)
    before = terms_of(db, view)
    fields = body.model_fields_set
    if "quorum" in fields:
        setting.quorum = body.quorum
    if "max_duration" in fields:
        setting.max_duration_s = body.max_duration
    setting.updated_by = caller.name
    setting.updated_at = state.now()
    db.flush()
    after = terms_of(db, view)
    append(
        db,
        AuditRecord(
            action="access.settings.changed",
            decision="allow",
            actor=caller.name,
            actor_kind=caller.kind,
            tenant=caller.tenant,
            dataset=view.name,
            details={
                "before": {"quorum": before.quorum, "max_duration_s": before.max_duration_s},
                "after": {"quorum": after.quorum, "max_duration_s": after.max_duration_s},
            },
        ),
    )
    return after
