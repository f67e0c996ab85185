"""The checks `warden serve` and `warden worker` make before they start: a private data
folder, a database with this Warden's schema, the deployment's audit chain key and its
master mask key on this host."""

from __future__ import annotations

import socket
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from warden.audit.keys import ChainKeyring, bind_settings, foreign_chain_key
from warden.cli.client import fail
from warden.config import Settings
from warden.core.filesystem import UnsafeDataDir, check_data_at_rest, restrict_umask
from warden.db.migrate import revisions
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.gateway import master_key
from warden.gateway.master_key import load_mask_key
from warden.identity.token_keys import unkeyed_tokens_remain


def refuse_unsafe_data_dir(settings: Settings) -> None:
    """Private umask, then exit with the fix when others can reach the data folder, when the
    database lacks this Warden's schema, or when this host does not hold the key the audit
    chain was last written with, or the deployment's master mask key."""
    restrict_umask()
    try:
        check_data_at_rest(settings)
    except UnsafeDataDir as exc:
        fail(exc.detail)
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        fail(f"refusing to start: there is no Warden database at {url} yet. {INIT}")
    engine = make_engine(url)
    try:
        refuse_an_unmigrated_database(engine)
        keyring = bind_settings(engine, settings)  # a first start records the mask key, audited
        refuse_unkeyed_tokens(engine)
        refuse_stale_seals(engine)
        refuse_a_foreign_chain_key(settings, engine, keyring)
        refuse_a_foreign_mask_key(settings, engine)
    finally:
        engine.dispose()


INIT = "Run `warden init` first: it creates the schema, the first tenant and its admin."


def refuse_an_unmigrated_database(engine: Engine) -> None:
    """Without the schema, or with an older one, every request and background round would
    fail on a missing table or column: refuse, saying what to run. A database not reachable
    yet is not this check's to refuse (`/readyz` tells load balancers)."""
    try:
        current, heads, known = revisions(engine)
    except SQLAlchemyError:
        return
    where = engine.url.render_as_string(hide_password=True)
    if not current:
        fail(f"refusing to start: the database at {where} has no Warden schema. {INIT}")
    if current - known:
        fail(
            f"refusing to start: the database at {where} is at schema revision"
            f" {', '.join(sorted(current - known))}, which this Warden does not know: a newer"
            " Warden migrated it. Run that version (or a newer one) instead."
        )
    if current != heads:
        fail(
            f"refusing to start: the database at {where} is at schema revision"
            f" {', '.join(sorted(current))} and this Warden needs {', '.join(sorted(heads))}."
            " Run `warden init` once to upgrade it: on an initialised deployment it upgrades"
            " the schema and changes nothing else."
        )


def refuse_unkeyed_tokens(engine: Engine) -> None:
    """Tokens stored before hashes were keyed authenticate nothing until an operator rekeys
    them (identity/token_keys.py): say so at start, not as a 401 on every request."""
    try:
        with unit_of_work(make_sessionmaker(engine)) as db:
            remain = unkeyed_tokens_remain(db)
    except SQLAlchemyError:
        return
    if remain:
        fail(
            "refusing to start: this deployment's tokens were stored before token hashes were"
            " keyed. Run `warden data rekey-tokens` once (audited), right after the upgrade."
        )


def refuse_stale_seals(engine: Engine) -> None:
    """Rows stored before they were sealed, or sealed with another field set than this
    Warden's (an upgrade grew a table's `__sealed__`), decide nothing until an operator
    reseals them (db/sealed.py): say so at start, not as a 401 or 503 on every read. One
    query per sealed table; a row written past Warden is not this check's (it is refused
    where it is read), so editing one cannot keep Warden from starting."""
    from warden.db.models import sealed_models
    from warden.db.sealed import stale_tables

    try:
        with unit_of_work(make_sessionmaker(engine)) as db:
            stale = stale_tables(db, sealed_models())
    except SQLAlchemyError:
        return
    if stale:
        fail(
            f"refusing to start: rows of {', '.join(stale)} were stored before they were sealed,"
            " or sealed with the fields an older Warden sealed. Check them (`warden data seal"
            " --check`), then run `warden data seal --all` once, right after the upgrade: it"
            " reseals the rows that match the fields they were sealed with; any other row only"
            " `--accept DIGEST` seals, once you have looked at it (audited)."
        )


def refuse_a_foreign_chain_key(
    settings: Settings, engine: Engine, keyring: ChainKeyring, verb: str = "start"
) -> None:
    """Several hosts share one chain: one that made its own key would chain events that
    `audit verify` everywhere else reports as rewritten. Fail closed, saying how to fix it.
    A database not reachable (or not migrated) yet is not this check's to refuse."""
    try:
        with engine.connect() as conn:
            foreign = foreign_chain_key(conn, keyring)
    except SQLAlchemyError:
        return
    if foreign is not None:
        fail(
            f"refusing to {verb}: the audit chain was last written with key {foreign}, which"
            f" this host does not hold (it holds {', '.join(keyring.ids) or 'none'}). Give every"
            " host of a deployment the same WARDEN_AUDIT_CHAIN_KEY (or the same key folder,"
            f" {settings.resolved_audit_keys_dir}); a key of its own would chain events no"
            " other host can verify."
        )


def refuse_a_foreign_mask_key(settings: Settings, engine: Engine) -> None:
    """Several hosts share one master mask key: one with a key of its own would give the same
    entity other pseudonyms, and joins across hosts would silently find nothing. Fail closed,
    saying what to share (gateway/master_key.py). Database not reachable: as above."""
    master = load_mask_key(settings)
    host = f"host {socket.gethostname()}"
    sessions = make_sessionmaker(engine)
    try:
        try:
            with unit_of_work(sessions) as db:
                check = master_key.settle(db, master, actor=host)
        except IntegrityError:  # another host recorded its key first: compare with that one
            with unit_of_work(sessions) as db:
                check = master_key.settle(db, master, actor=host)
    except SQLAlchemyError:
        return
    share = (
        "Give every host of a deployment the same WARDEN_MASK_KEY (or the same key file,"
        f" {master_key.key_file(settings)}): a key of its own would pseudonymise identifiers"
        " differently from the other hosts, and joins across them would silently fail."
    )
    own = master_key.short(check.own)
    if check.foreign:
        assert check.recorded is not None
        fail(
            f"refusing to start: this host's mask key (fingerprint {own}) is not the"
            f" deployment's (fingerprint {master_key.short(check.recorded)}, recorded by"
            f" {check.recorded_by}). {share}"
        )
    if check.unknown:
        fail(
            "refusing to start: the database records no mask key fingerprint, yet reads were"
            f" already masked, so this host cannot tell whether its key (fingerprint {own}) is"
            f" the one they were masked with. {share} On a host whose key you know to be the"
            " deployment's, record it once: `warden data record-mask-key` (audited)."
        )
