"""Shared fixtures: a fresh repository per test, on SQLite or on PostgreSQL.

The database comes from ``DAVPACK_TEST_DATABASE_URL`` when set (``.ci/run`` runs the whole
suite a second time with a PostgreSQL URL); otherwise each test gets its own SQLite file.
Migrating and seeding a database costs far more than copying one, so each run migrates
once into a template (a file on SQLite, a ``<test db>_template`` database on PostgreSQL)
and every test starts from a fresh copy: tests never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, make_url, text

from server.config import Config, load_config
from server.context import Repository

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DATA = Path(__file__).parent / "data"
TEST_DATABASE_URL = os.environ.get("DAVPACK_TEST_DATABASE_URL")


def corpus_path(*parts: str) -> Path:
    """A path inside ../shared/corpus, or skip the test cleanly when the corpus is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"corpus sample not available: {path}")
    return path


def make_config(tmp_path: Path, **overrides: object) -> Config:
    values: dict[str, object] = {
        "database.url": TEST_DATABASE_URL or f"sqlite:///{tmp_path / 'davpack.db'}",
        "store.path": str(tmp_path / "store"),
        "server.staging_dir": str(tmp_path / "staging"),
        "store.fsync": False,
    }
    values.update(overrides)
    return load_config(environ={}, overrides=values)


def _reset_postgres(repo: Repository) -> None:
    """Drop every table there is (whatever schema an earlier run left), in one statement."""
    with repo.engine.begin() as conn:
        names = inspect(conn).get_table_names()
        if names:
            conn.execute(text("DROP TABLE " + ", ".join(f'"{n}"' for n in names) + " CASCADE"))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


class DatabaseTemplates:
    """Migrated, seeded databases to copy from, one per seed-relevant configuration.

    Seeding depends on the handle prefix and the site name; a test whose configuration
    differs in those gets its own template, made the first time it is needed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: dict[tuple[str, str], str] = {}

    @staticmethod
    def key(config: Config) -> tuple[str, str]:
        return (config.handle_prefix, str(config.get("site.name")))

    def fresh_database(self, config: Config) -> None:
        """Give ``config``'s database the migrated, seeded state (nothing else in it)."""
        url = make_url(str(config.get("database.url")))
        if url.get_backend_name() == "sqlite":
            self._fresh_sqlite(config, Path(str(url.database)))
        else:
            self._fresh_postgres(config, url)

    def _fresh_sqlite(self, config: Config, path: Path) -> None:
        key = self.key(config)
        if key not in self.made:
            template = self.directory / f"template-{len(self.made)}.db"
            made = Repository(make_config(self.directory, **{
                "database.url": f"sqlite:///{template}", "site.handle_prefix": key[0],
                "site.name": key[1]}))
            made.initialise()
            made.dispose()  # the last connection checkpoints the WAL into the file
            self.made[key] = str(template)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.made[key], path)

    def _fresh_postgres(self, config: Config, url: Any) -> None:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                key = self.key(config)
                if key not in self.made:
                    name = f"{url.database}_template{len(self.made) or ''}"
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                    made = Repository(make_config(self.directory, **{
                        "database.url": url.set(database=name).render_as_string(
                            hide_password=False),
                        "site.handle_prefix": key[0], "site.name": key[1]}))
                    made.initialise()
                    made.dispose()
                    self.made[key] = name
                # FORCE ends connections a test leaked (a server thread, a CLI child).
                conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{url.database}" '
                                  f'TEMPLATE "{self.made[key]}" STRATEGY FILE_COPY'))
        finally:
            admin.dispose()

    def drop_postgres_templates(self) -> None:
        if not TEST_DATABASE_URL or not self.made:
            return
        url = make_url(TEST_DATABASE_URL)
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self.made.values():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseTemplates]:
    templates = DatabaseTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.drop_postgres_templates()


@pytest.fixture
def repo(config: Config, database_templates: DatabaseTemplates) -> Iterator[Repository]:
    database_templates.fresh_database(config)
    repository = Repository(config)
    repository.initialise()  # a no-op on the copy, but checks it is at the head revision
    yield repository
    repository.dispose()


@pytest.fixture
def admin(repo: Repository):  # type: ignore[no-untyped-def]
    """An administrator with password ``secret``."""
    from server.services import authz, people

    with repo.context(system=True) as ctx:
        person = people.create_person(ctx, "admin@example.org", password="secret",
                                      first_name="Ada", last_name="Admin")
        people.add_member(ctx, authz.admin_group(ctx), person)
    return person


@dataclass
class LiveServer:
    """A real cheroot server on a free port, serving ``repo`` from a background thread."""

    url: str
    repo: Repository
    server: Any


@pytest.fixture
def live_server(repo: Repository) -> Iterator[LiveServer]:
    """The WSGI application behind a real HTTP server; ``.url`` ends without a slash."""
    from server.cli.serve import make_server

    server = make_server(repo, "127.0.0.1", 0, 4)
    server.expiration_interval = 0.05  # how often serve() looks up: keeps stop() quick
    server.prepare()
    thread = threading.Thread(target=server.serve, name="live-server", daemon=True)
    thread.start()
    host, port = server.bind_addr[:2]
    try:
        yield LiveServer(url=f"http://{host}:{port}", repo=repo, server=server)
    finally:
        server.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the live server did not stop"
