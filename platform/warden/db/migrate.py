"""Alembic from code: the schema is whatever `upgrade head` builds, in tests and in production."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from warden.config import REPO_ROOT


def alembic_config(url: str) -> Config:
    cfg = Config(toml_file=str(REPO_ROOT / "pyproject.toml"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["database_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
