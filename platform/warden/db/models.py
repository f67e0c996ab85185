"""Imports every table module so `Base.metadata` is complete (Alembic reads it)."""

from warden.audit import models as audit_models
from warden.catalog import models as catalog_models
from warden.db.base import Base
from warden.identity import models as identity_models
from warden.policy import store as policy_store

__all__ = ["Base", "audit_models", "catalog_models", "identity_models", "policy_store"]
