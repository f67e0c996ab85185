"""pyiceberg's SQL catalog inside Warden's unit of work (catalog/tables.py registers versions
with it). A module of its own so that only a registration imports pyiceberg's catalog."""

from __future__ import annotations

from pyiceberg.catalog import MetastoreCatalog
from pyiceberg.catalog.sql import SqlCatalog
from sqlalchemy.orm import Session


class UnitCatalog(SqlCatalog):
    """pyiceberg's SQL catalog on the connection of Warden's unit of work. Its sessions join
    that transaction (SQLAlchemy's default for a session bound to a connection already in
    one: it never commits it), so a table's pointer moves only if the registration commits.
    Its tables are created by migration 0008i, never by pyiceberg."""

    def __init__(self, db: Session, name: str, properties: dict[str, str]) -> None:
        MetastoreCatalog.__init__(self, name, **properties)  # no engine of its own
        self.engine = db.connection()  # type: ignore[assignment]
        self._schema_version = "v1"
