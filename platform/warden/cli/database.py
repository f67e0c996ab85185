"""The database, for the operator commands that run against it directly (`warden data seed`,
`data rotate-mask-key`, `policy lint --live`, …) rather than through the API.

SQLAlchemy and the domain modules are imported when such a command runs, not when the CLI
starts: they take most of a second to import, and every other command goes without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from warden.cli.client import fail
from warden.config import get_settings
from warden.errors import WardenError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@contextmanager
def direct_session(*, conflict: str | None = None, keys: bool = True) -> Iterator[Session]:
    """One unit of work on the configured database (committed when the block ends), the
    engine disposed after. A WardenError ends the command with its detail; `conflict`: what
    to say when another writer committed first (an IntegrityError). This host's audit chain
    key is loaded first, and must be the deployment's: commands audit, record keys and seal
    what they write with it (a host with a key of its own would lock out what it writes).
    `keys=False`: a command that only reads rows no seal is checked on (`policy lint`)."""
    from sqlalchemy.exc import IntegrityError

    from warden.audit.keys import bind_settings
    from warden.cli.startup import refuse_a_foreign_chain_key
    from warden.db.session import make_engine, make_sessionmaker, unit_of_work

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        if keys:
            refuse_a_foreign_chain_key(settings, engine, bind_settings(engine, settings), "run")
        with unit_of_work(make_sessionmaker(engine)) as db:
            yield db
    except WardenError as exc:
        fail(exc.detail)
    except IntegrityError:
        if conflict is None:
            raise
        fail(conflict)
    finally:
        engine.dispose()
