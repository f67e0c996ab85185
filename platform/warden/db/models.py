"""Imports every table module so `Base.metadata` is complete (Alembic reads it)."""

from warden.access import models as access_models
from warden.audit import models as audit_models
from warden.catalog import models as catalog_models
from warden.db import generation as generation
from warden.db.base import Base
from warden.db.sealed import Sealed
from warden.experiments import models as experiments_models
from warden.identity import console_sessions as console_sessions
from warden.identity import models as identity_models
from warden.jobs import models as jobs_models
from warden.policy import store as policy_store
from warden.registry import models as registry_models
from warden.sandbox import models as sandbox_models
from warden.workspace import models as workspace_models


def sealed_models() -> tuple[type[Sealed], ...]:
    """The models whose rows carry a seal (db/sealed.py), in the order they are shown."""
    access, identity = access_models, identity_models
    return (identity.Tenant, identity.Principal, sandbox_models.Sandbox, sandbox_models.JobToken,
            jobs_models.Job, registry_models.Model, access.ReviewedChange, access.AccessRequest,
            access.AccessGrant, experiments_models.Experiment, experiments_models.ServingDefault,
            console_sessions.ConsoleSession, access.WebhookDelivery, workspace_models.Workspace,
            access.AccessSetting)  # fmt: skip


__all__ = [
    "Base",
    "access_models",
    "audit_models",
    "catalog_models",
    "experiments_models",
    "console_sessions",
    "generation",
    "identity_models",
    "jobs_models",
    "policy_store",
    "sealed_models",
    "registry_models",
    "sandbox_models",
    "workspace_models",
]
