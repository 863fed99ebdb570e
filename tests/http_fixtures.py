"""Fixtures of the HTTP tests, loaded with ``pytest_plugins = ("http_fixtures",)``.

* ``dav``: the application over a small tree (:func:`http_support.make_tree`), with the
  test packagers of :mod:`http_packagers` (``TESTZIP`` is the default package).
* ``dav_server``: the same application behind a real cheroot server on port 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from http_support import Dav, DavServer, make_tree, packager_registry, running_server

from server.context import Repository


@pytest.fixture
def dav(repo: Repository) -> Iterator[Dav]:
    from server.http.app import make_app

    repo.config.values["server"]["default_package"] = "TESTZIP"
    registry = packager_registry()
    tree = make_tree(repo)
    yield Dav(make_app(repo, registry), repo, tree, registry)


@pytest.fixture
def dav_server(dav: Dav) -> Iterator[DavServer]:
    with running_server(dav.repo, dav.app, dav.tree) as server:
        yield server
