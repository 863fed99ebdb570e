"""Shared fixtures: a fresh repository per test, on SQLite or on PostgreSQL.

The database comes from ``DAVPACK_TEST_DATABASE_URL`` when set (``.ci/run`` runs the whole
suite a second time with a PostgreSQL URL); otherwise each test gets its own SQLite file.
On PostgreSQL every test gets a fresh schema-less database state: all tables are dropped
and re-migrated, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

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


@pytest.fixture
def repo(config: Config) -> Iterator[Repository]:
    repository = Repository(config)
    if repository.engine.dialect.name != "sqlite":
        _reset_postgres(repository)
    repository.initialise()
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
