"""Shared fixtures: a fresh database per test, built by `alembic upgrade head`, on SQLite and
on PostgreSQL (WARDEN_TEST_POSTGRES_URL). Each test gets its own copy of a migrated template,
so tests that use several connections (the API, the audit writer) see real transactions.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import shutil
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi.dependencies.utils as fastapi_dependencies
import pytest
from sqlalchemy import Engine, create_engine, text

from warden.core.filesystem import restrict_umask
from warden.db.migrate import upgrade
from warden.db.session import make_engine

# Tests run as every Warden process does (core/filesystem.py): what they write is private.
restrict_umask()
# The CLI's tables and messages as on a wide terminal, however pytest runs (an xdist worker's
# temporary paths are longer, and rich would fold them where a test looks for them whole).
os.environ["COLUMNS"] = "200"
# Each test chooses where its datasets live (the `seaweedfs` fixture gives the bucket's settings
# to the tests that want it): a shell that exported scripts/seaweedfs-up.sh's settings must not
# move every other test's data into the bucket.
for _name in [n for n in os.environ if n == "WARDEN_STORAGE_URL" or n.startswith("WARDEN_S3_")]:
    del os.environ[_name]

# FastAPI builds an app's routes on its first request, evaluating every endpoint's and
# dependency's string annotations again for each app; the suite builds an app per test, so a
# signature (the same for the same function) is kept once made: ~8% of an API test's CPU.
_typed_signature = fastapi_dependencies.get_typed_signature
_signatures: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _kept_typed_signature(call: Any) -> Any:
    try:
        return _signatures[call]
    except (KeyError, TypeError):  # TypeError: a callable no weak reference can point at
        pass
    made = _typed_signature(call)
    with contextlib.suppress(TypeError):
        _signatures[call] = made
    return made


fastapi_dependencies.get_typed_signature = _kept_typed_signature


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection built (the imported libraries, the test items) lives as long as the
    run: out of the garbage collector's sight, its full collections stop walking it between
    tests (~5% of an API test's CPU). A Warden process started by a test leaves this freeze
    alone (core/process.py)."""
    gc.collect()
    gc.freeze()


PG_URL = os.environ.get(
    "WARDEN_TEST_POSTGRES_URL"
)  # e.g. postgresql+psycopg:///postgres?host=/var/run/postgresql
BACKENDS = ["sqlite", "postgres"]
MASK_KEY = "test-mask-key"

# Under pytest-xdist (`--dist loadgroup`, as scripts/test.sh runs it), tests that share one
# machine-wide thing run in one worker, one after another: the sandbox tests (they share the
# compose deployment, and several watch the host's firewall and networks), the browser, the
# object store's tests (the one SeaweedFS the first of them starts). A test is in a group by
# the fixtures it uses (or the `docker` mark), not by its folder: the sandbox, workspace and
# console tests that need no engine (refusals before a container exists, the console over a
# test client) run beside the rest. Jobs through a worker (ML sandboxes: no network, no
# firewall rule, containers labelled with their own database's instance) are a group of their
# own, so that the longest runs (tests/registry's real training) share the machine with the
# sandbox tests instead of queueing behind them; the images are built once either way
# (sandbox/images.py: one builder at a time). xdist hands out the largest groups first.
_SHARED = {
    "docker": ("docker_engine", "sandbox_images", "compose"),
    "browser": ("chromium",),
    "s3": ("seaweedfs",),
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        group = next((g for g, fixtures in _SHARED.items() if names & set(fixtures)), None)
        if group is None and item.get_closest_marker("docker") is not None:
            group = "docker"
        if group == "docker" and "ml_warden" in names:
            group = "docker-jobs"
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
            _send_group(config, item, group)


def _send_group(config: pytest.Config, item: pytest.Item, group: str) -> None:
    """A worker tells the scheduler a test's group by its node id, `ID@GROUP`. xdist 3.8 still
    renames the field pytest 9.2 no longer reads a node id from, so the groups were silently
    ignored and every grouped test ran on either worker (pytest-xdist#1386): rename it the way
    pytest 9.2 reads it, until xdist sends groups another way."""
    # Only an xdist worker has the option (set from `--dist`); a plain run has no groups to send.
    worker = getattr(config.option, "loadgroup", False)
    if not worker or "@" in item.nodeid or not hasattr(item, "_id"):
        return
    from _pytest.nodes import coerce_node_id  # pytest's own parser of a node id

    item._id = coerce_node_id(f"{item.nodeid}@{group}")


def _pg_admin() -> Engine:
    assert PG_URL
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


def _pg_url(dbname: str) -> str:
    assert PG_URL
    base, _, query = PG_URL.partition("?")
    root = base.rsplit("/", 1)[0]
    return f"{root}/{dbname}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    if not PG_URL:
        if os.environ.get("WARDEN_REQUIRE_POSTGRES"):
            pytest.fail("WARDEN_REQUIRE_POSTGRES is set but WARDEN_TEST_POSTGRES_URL is not")
        pytest.skip("PostgreSQL not configured (set WARDEN_TEST_POSTGRES_URL)")
    name = f"warden_tpl_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade(_pg_url(name))
    with _Copies.of(name):
        yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class _Copies:
    """Fresh copies of one template database, made ahead on a background thread: CREATE
    DATABASE … TEMPLATE waits on the server's disk (its WAL, fsync: one to two seconds on a
    busy machine) that a test need not wait for. Each copy is taken once, by one test, so
    every test still starts on an untouched copy of the template."""

    AHEAD = 2
    _open: dict[str, _Copies] = {}  # by template name

    def __init__(self, template: str) -> None:
        self.template = template
        self.ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=self.AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-copies", daemon=True)
        self._thread.start()

    @classmethod
    @contextmanager
    def of(cls, template: str) -> Iterator[_Copies]:
        """Copies of `template` while the context lasts; made until then, the rest dropped."""
        copies = cls._open[template] = cls(template)
        try:
            yield copies
        finally:
            del cls._open[template]
            copies.close()

    @classmethod
    def take(cls, template: str) -> str:
        found = cls._open[template].ready.get()
        if isinstance(found, BaseException):
            raise found
        return found

    def _run(self) -> None:
        admin = _pg_admin()
        try:
            while not self._stop.is_set():
                name = f"warden_t_{uuid.uuid4().hex[:10]}"
                try:
                    with admin.connect() as conn:
                        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
                except Exception as exc:  # noqa: BLE001 - handed to the test that takes it
                    self._put(exc)
                    return
                if not self._put(name):
                    _drop(admin, name)
        finally:
            admin.dispose()

    def _put(self, item: str | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self.ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        admin = _pg_admin()
        while not self.ready.empty():
            left = self.ready.get_nowait()
            if isinstance(left, str):
                _drop(admin, left)
        admin.dispose()


def _drop(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class _Dropper:
    """Drops finished tests' PostgreSQL databases on background threads: DROP DATABASE waits
    for a checkpoint (one to several seconds on a busy machine) that no test needs to wait
    for. Several at once share one checkpoint: one thread alone falls behind the suite."""

    THREADS = 4

    def __init__(self) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.threads = [
            threading.Thread(target=self._run, name="pg-dropper", daemon=True)
            for _ in range(self.THREADS)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        admin = _pg_admin()
        try:
            while (name := self.queue.get()) is not None:
                _drop(admin, name)
        finally:
            admin.dispose()

    def drop(self, name: str) -> None:
        self.queue.put(name)

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()


@pytest.fixture(scope="session")
def pg_dropper() -> Iterator[_Dropper]:
    dropper = _Dropper()
    yield dropper
    dropper.close()


# Databases created already seeded for the `warden` harness (see `seeded`), by URL.
_SEEDED: dict[str, Seeded] = {}


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database on each backend. For a test that uses the `warden`
    harness, a copy of one already initialised and seeded the same way (built once)."""
    seed: Seeded | None = None
    if "warden" in request.fixturenames:
        # the access harness's reviewers come seeded too (tests/access/conftest.py), and so
        # does the streamed-read tests' large version (`big_world`)
        names = request.fixturenames
        world = "seeded_access" if "access" in names else "seeded"
        world = "seeded_big" if "big_world" in names else world
        seed = request.getfixturevalue(f"{world}_{request.param}")
    if request.param == "sqlite":
        template = seed.sqlite if seed else request.getfixturevalue("sqlite_template")
        path = tmp_path / "warden.db"
        shutil.copyfile(template, path)
        url = f"sqlite:///{path}"
        if seed:
            _SEEDED[url] = seed
        yield url
        _SEEDED.pop(url, None)
        return
    template = seed.pg if seed else request.getfixturevalue("pg_template")
    dropper = request.getfixturevalue("pg_dropper")
    assert template is not None
    name = _Copies.take(template)
    url = _pg_url(name)
    if seed:
        _SEEDED[url] = seed
    try:
        yield url
    finally:
        _SEEDED.pop(url, None)
        dropper.drop(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


# --- a running Warden: tenant acme, people with roles, the small taste graph --------------

PEOPLE = {"alice": ["role:ml_engineer"], "erin": ["role:analyst_eu"], "mallory": []}


@pytest.fixture(scope="session")
def taste_graph(tmp_path_factory: pytest.TempPathFactory) -> list:
    """The small taste graph, generated once per session (generated graph, real images)."""
    from warden.tastegraph import generate

    return generate(tmp_path_factory.mktemp("graph"), scale="small", seed=0)


@dataclass(frozen=True)
class Seeded:
    """A database initialised and seeded as WardenHarness.build does it, and its data folder:
    built once per session and backend, copied for each test (the same state, without
    redoing `warden init`, the people and the catalog for every test)."""

    tokens: dict[str, str]
    data_dir: Path
    config_dir: Path
    keys_dir: Path  # the audit keys its chain was written with (WARDEN_AUDIT_KEYS_DIR or config)
    chain_key: str | None  # WARDEN_AUDIT_CHAIN_KEY when it was seeded
    sqlite: Path | None = None  # the SQLite file to copy
    pg: str | None = None  # the PostgreSQL template database
    adds: tuple[str, ...] = ()  # what it holds beyond the harness's seed (`SEEDED_BIG`)


def _seed_settings(root: Path, database_url: str) -> Any:
    from warden.config import Settings

    return Settings(
        data_dir=root / "data",
        config_dir=root / "config",
        database_url=database_url,
        mask_key=MASK_KEY,
    )


def _seeded_dirs(settings: Any) -> tuple[Path, Path, Path, str | None]:
    dirs = (settings.data_dir, settings.config_dir, settings.resolved_audit_keys_dir)
    return (*dirs, settings.audit_chain_key)


def _copy_audit_keys(seed: Seeded, settings: Any) -> None:
    """The seeded chain's keys into this test's key folder (a suite may point each test's
    WARDEN_AUDIT_KEYS_DIR at a folder of its own): the copied chain must verify."""
    if settings.audit_chain_key != seed.chain_key:
        pytest.fail("WARDEN_AUDIT_CHAIN_KEY changed since the harness database was seeded")
    target = settings.resolved_audit_keys_dir
    if not seed.keys_dir.is_dir() or target.resolve() == seed.keys_dir.resolve():
        return
    for source in sorted(seed.keys_dir.rglob("*")):
        dest = target / source.relative_to(seed.keys_dir)
        if source.is_dir():
            dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not dest.exists():
            shutil.copy2(source, dest)
        elif dest.read_bytes() != source.read_bytes():
            pytest.fail(f"{dest} differs from the key the harness database was seeded with")


@pytest.fixture(scope="session")
def seeded_sqlite(
    sqlite_template: Path, taste_graph: list, tmp_path_factory: pytest.TempPathFactory
) -> Seeded:
    root = tmp_path_factory.mktemp("seeded-sqlite")
    path = root / "seeded.db"
    shutil.copyfile(sqlite_template, path)
    settings = _seed_settings(root, f"sqlite:///{path}")
    tokens = WardenHarness.seed(settings, taste_graph)
    return Seeded(tokens, *_seeded_dirs(settings), sqlite=path)


@pytest.fixture(scope="session")
def seeded_postgres(
    pg_template: str, taste_graph: list, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    name = f"warden_seed_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    settings = _seed_settings(tmp_path_factory.mktemp("seeded-postgres"), _pg_url(name))
    tokens = WardenHarness.seed(settings, taste_graph)  # disposes its engines: a template
    with _Copies.of(name):
        yield Seeded(tokens, *_seeded_dirs(settings), pg=name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def seeded_access_sqlite(seeded_sqlite: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return _derived_sqlite(seeded_sqlite, tmp_path_factory, "seeded-access", _add_reviewers)


@pytest.fixture(scope="session")
def seeded_access_postgres(
    seeded_postgres: Seeded, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    with _derived_postgres(
        seeded_postgres, tmp_path_factory, "seeded-access", _add_reviewers
    ) as seed:
        yield seed


@pytest.fixture(scope="session")
def seeded_big_sqlite(seeded_sqlite: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return _derived_sqlite(seeded_sqlite, tmp_path_factory, "seeded-big", _add_big_version)


@pytest.fixture(scope="session")
def seeded_big_postgres(
    seeded_postgres: Seeded, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    with _derived_postgres(
        seeded_postgres, tmp_path_factory, "seeded-big", _add_big_version
    ) as seed:
        yield seed


@pytest.fixture
def big_world() -> None:
    """Asked for by a test whose database should already hold the large version of
    `engagements` (tests/gateway/big.py): `db_url` then copies a seeded one that does."""


def _add_reviewers(harness: WardenHarness, root: Path) -> str:
    """The access harness's reviewers (`Access` bootstraps them when its database lacks
    them): the same people, roles, tokens and audit events, made once."""
    from tests.access.conftest import REVIEWERS, bootstrap_people

    bootstrap_people(harness, REVIEWERS)
    return "reviewers"


def _add_big_version(harness: WardenHarness, root: Path) -> str:
    from tests.gateway.big import SEEDED_BIG, register_big

    register_big(harness.state.settings, harness.state.sessions, root)
    return SEEDED_BIG


def _derived_sqlite(
    seed: Seeded, tmp_path_factory: pytest.TempPathFactory, label: str, add: Any
) -> Seeded:
    assert seed.sqlite is not None
    root = tmp_path_factory.mktemp(f"{label}-sqlite")
    path = root / "seeded.db"
    shutil.copyfile(seed.sqlite, path)
    return _derived(seed, root, f"sqlite:///{path}", add, sqlite=path)


@contextmanager
def _derived_postgres(
    seed: Seeded, tmp_path_factory: pytest.TempPathFactory, label: str, add: Any
) -> Iterator[Seeded]:
    name = f"warden_{label.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{seed.pg}"'))
    root = tmp_path_factory.mktemp(f"{label}-postgres")
    derived = _derived(seed, root, _pg_url(name), add, pg=name)
    with _Copies.of(name):
        yield derived
    _drop(admin, name)
    admin.dispose()


def _derived(seed: Seeded, root: Path, database_url: str, add: Any, **template: Any) -> Seeded:
    """The seeded state plus what `add(harness, root)` writes and names, made once."""
    settings = _seed_settings(root, database_url)
    harness = open_seeded(seed, settings)
    try:
        added = add(harness, root)
    finally:
        harness.close()  # disposes its engine: a template has no open connection
    return Seeded(harness.tokens, *_seeded_dirs(settings), **template, adds=(*seed.adds, added))


@pytest.fixture
def warden(
    request: pytest.FixtureRequest, db_url: str, tmp_path: Path, taste_graph: list
) -> Iterator[WardenHarness]:
    settings = _seed_settings(tmp_path, db_url)
    seed = _SEEDED.get(db_url)
    if seed is None and db_url.startswith("sqlite:///"):
        # A suite's own SQLite db_url (sandbox, jobs): not opened yet, so replace the file.
        seed = request.getfixturevalue("seeded_sqlite")
        assert seed.sqlite is not None
        shutil.copyfile(seed.sqlite, db_url.removeprefix("sqlite:///"))
    if seed is not None:  # the database is a copy of the seeded one: copy its files too
        harness = open_seeded(seed, settings)
    else:
        harness = WardenHarness.build(settings, taste_graph)
    # as `warden init` leaves them: `warden serve` refuses data others can reach
    _make_private(settings.data_dir)
    if db_url.startswith("sqlite:///"):
        _make_private(Path(db_url.removeprefix("sqlite:///")))
    yield harness
    harness.close()


def open_seeded(seed: Seeded, settings: Any) -> WardenHarness:
    """The harness over `settings`, whose database is a copy of `seed`'s: its data, config
    and audit keys copied too (the seeded state without seeding again)."""
    shutil.copytree(seed.data_dir, settings.data_dir)
    if seed.config_dir.exists():
        shutil.copytree(seed.config_dir, settings.config_dir)
    _copy_audit_keys(seed, settings)
    harness = WardenHarness.open(settings, dict(seed.tokens))
    harness.seeded_with = seed.adds
    return harness


def _make_private(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & 0o700)


class WardenHarness:
    """An API app over a real database, plus tokens for the admin and each demo person."""

    def __init__(self, settings: object, app: object, tokens: dict[str, str]) -> None:
        from fastapi.testclient import TestClient

        self.settings = settings
        self.app = app
        self.tokens = tokens
        self.http = TestClient(app)  # type: ignore[arg-type]
        self.seeded_with: tuple[str, ...] = ()  # what its seeded copy held beyond the seed

    @classmethod
    def build(cls, settings: object, specs: list) -> WardenHarness:
        tokens = cls.seed(settings, specs)
        return cls.open(settings, tokens)

    @staticmethod
    def seed(settings: object, specs: list) -> dict[str, str]:
        """`warden init`, the people with their roles and tokens, the taste graph in the
        catalog: everything the harness writes (database and data folder); returns tokens."""
        from warden.catalog.seeding import register_generated
        from warden.catalog.storage import storage_for
        from warden.core.platform import build_platform
        from warden.db.session import unit_of_work
        from warden.identity.bootstrap import initialize
        from warden.identity.service import (
            Caller,
            create_principal,
            get_principal,
            get_tenant,
            issue_token,
        )
        from warden.policy.changes import apply_change

        done = initialize(settings, tenant="acme", admin="admin")  # type: ignore[arg-type]
        state = build_platform(settings)  # type: ignore[arg-type]
        tokens = {"admin": done.token}
        try:
            with unit_of_work(state.sessions) as db:
                tenant = get_tenant(db, "acme")
                admin = get_principal(db, "admin")
                actor = Caller("admin", "person", "acme", admin.id)
                links = []
                for name, roles in PEOPLE.items():
                    principal = create_principal(db, name, "person", tenant)
                    tokens[name] = issue_token(db, principal)
                    links += [("g", (name, role, "acme")) for role in roles]
                apply_change(db, actor, add=links, reason="test people")
                store = storage_for(settings)  # type: ignore[arg-type]
                register_generated(db, specs, store, "acme", "admin", {"test": True})
        finally:
            state.engine.dispose()
        return tokens

    @classmethod
    def open(cls, settings: object, tokens: dict[str, str]) -> WardenHarness:
        """The API app over a seeded database (its policy loaded)."""
        from warden.api.app import create_app
        from warden.core.platform import build_platform

        state = build_platform(settings)  # type: ignore[arg-type]
        state.policy.reload()
        return cls(settings, create_app(settings, state=state), tokens)

    def as_(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[who]}"}

    def read(self, who: str, dataset: str, **body: object) -> object:
        return self.http.post(f"/v1/datasets/{dataset}/read", json=body, headers=self.as_(who))

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.app.state.warden  # type: ignore[attr-defined]

    @property
    def process(self):  # type: ignore[no-untyped-def]
        return self.app.state.process  # type: ignore[attr-defined]

    def audit_events(self, **filters: str) -> list[dict]:
        response = self.http.get("/v1/audit/events", params=filters, headers=self.as_("admin"))
        assert response.status_code == 200, response.text
        return response.json()["events"]

    def close(self) -> None:
        self.http.close()
        self.state.engine.dispose()


@pytest.fixture
def live_warden(warden: WardenHarness, monkeypatch: pytest.MonkeyPatch) -> Iterator[WardenHarness]:
    """The same Warden served by a real uvicorn on a free port; WARDEN_URL points at it."""
    from warden.api.background import serve_in_thread
    from warden.config import get_settings

    server = serve_in_thread(warden.app)  # type: ignore[arg-type]
    monkeypatch.setenv("WARDEN_URL", server.url)
    monkeypatch.setenv("WARDEN_CONFIG_DIR", str(warden.settings.config_dir))  # type: ignore[attr-defined]
    monkeypatch.delenv("WARDEN_TOKEN", raising=False)
    get_settings.cache_clear()
    warden.url = server.url  # type: ignore[attr-defined]
    yield warden
    server.stop()
    get_settings.cache_clear()


@pytest.fixture
def operator_cli(warden: WardenHarness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`warden …` run in process by an operator, against this harness's database, data and
    keys (the commands that work on the database directly); returns typer's Result."""
    from typer.testing import CliRunner

    from warden.cli.main import app
    from warden.config import get_settings

    s = warden.settings  # type: ignore[attr-defined]
    monkeypatch.setenv("WARDEN_DATABASE_URL", s.database_url)
    monkeypatch.setenv("WARDEN_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("WARDEN_CONFIG_DIR", str(s.config_dir))
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()
