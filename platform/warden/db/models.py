"""Imports every table module so `Base.metadata` is complete (Alembic reads it)."""

from warden.access import models as access_models
from warden.audit import models as audit_models
from warden.catalog import models as catalog_models
from warden.db import generation as generation
from warden.db.base import Base
from warden.experiments import models as experiments_models
from warden.identity import console_sessions as console_sessions
from warden.identity import models as identity_models
from warden.jobs import models as jobs_models
from warden.policy import store as policy_store
from warden.registry import models as registry_models
from warden.sandbox import models as sandbox_models
from warden.workspace import models as workspace_models

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
    "registry_models",
    "sandbox_models",
    "workspace_models",
]
