"""Helpers of the SWORD tests: a real cheroot server on port 0 serving only the SWORD
application, a structure to deposit into, and the ``sword2`` client set up the way the
design note recommends (its httplib2 cache in a temp directory; Python >= 3.12 shim)."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from core_support import make_structure

from server import models as m
from server.context import Repository
from server.services import authz, objects, people
from server.sword import make_sword_app

ATOM = "{http://www.w3.org/2005/Atom}"
SWORD = "{http://purl.org/net/sword/terms/}"
BINARY = "http://purl.org/net/sword/package/Binary"
SIMPLEZIP = "http://purl.org/net/sword/package/SimpleZip"
METS_SIP = "http://purl.org/net/sword/package/METSDSpaceSIP"
LEGACY_METS_SIP = "http://purl.org/net/sword-types/METSDSpaceSIP"
ENTRY_TYPE = "application/atom+xml;type=entry"


@dataclass
class SwordServer:
    url: str  # SD-IRI
    repo: Repository
    collection: uuid.UUID
    collection_handle: str
    community: uuid.UUID

    @property
    def col_iri(self) -> str:
        return f"{self.url}/collection/{self.collection}"

    def admin_session(self) -> requests.Session:
        session = requests.Session()
        session.auth = ("admin@example.org", "secret")
        return session


@contextmanager
def serving(repo: Repository, **config: Any) -> Iterator[SwordServer]:
    """The SWORD application alone behind a real HTTP server on a free port."""
    from cheroot import wsgi

    for dotted, value in config.items():
        section, key = dotted.split(".", 1)
        repo.config.values[section][key] = value
    structure = make_structure(repo)
    server = wsgi.Server(("127.0.0.1", 0), make_sword_app(repo), numthreads=4)
    server.expiration_interval = 0.05
    server.prepare()
    thread = threading.Thread(target=server.serve, name="sword-server", daemon=True)
    thread.start()
    host, port = server.bind_addr[:2]
    root = repo.config.get("sword.root")
    try:
        yield SwordServer(f"http://{host}:{port}{root}", repo, structure.collection,
                          structure.collection_handle, structure.community)
    finally:
        server.stop()
        thread.join(timeout=10)


def sword2_module() -> Any:
    """``import sword2`` (skipped when the test client is not installed)."""
    if sys.version_info >= (3, 12) and "imp" not in sys.modules:  # pragma: no cover
        shim = types.ModuleType("imp")

        def find_module(name: str, path: object = None) -> tuple[None, str, None]:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                raise ImportError(name)
            return None, os.path.dirname(spec.origin), None

        shim.find_module = find_module  # type: ignore[attr-defined]
        sys.modules["imp"] = shim
    return pytest.importorskip(
        "sword2", reason="the SWORD test client is not installed (make installs it with "
        "pip install --no-deps 'sword2==0.3.*')")


def connection(server: SwordServer, tmp_path: Path, *, user: str = "admin@example.org",
               password: str = "secret", on_behalf_of: str | None = None,
               raise_except: bool = True) -> Any:
    sword2 = sword2_module()
    from sword2.http_layer import HttpLib2Layer

    cache = tmp_path / "httplib2-cache"
    conn = sword2.Connection(server.url, user_name=user, user_pass=password,
                             on_behalf_of=on_behalf_of,
                             error_response_raises_exceptions=raise_except,
                             http_impl=HttpLib2Layer(cache_dir=str(cache)))
    conn.get_service_document()
    return conn


def add_person(repo: Repository, email: str, password: str = "pw",
               collection_rights: tuple[m.Action, ...] = (),
               collection: uuid.UUID | None = None) -> uuid.UUID:
    with repo.context(system=True) as ctx:
        person = people.create_person(ctx, email, password=password)
        if collection is not None:
            target = ctx.session.get(m.Collection, collection)
            assert target is not None
            for action in collection_rights:
                authz.add_policy(ctx, target, action, eperson=person)
        return person.id


def item_state(repo: Repository, item_id: uuid.UUID) -> m.WorkflowState | None:
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        return None if item is None else item.workflow_state


def item_id_of(edit_iri: str) -> uuid.UUID:
    return uuid.UUID(edit_iri.rstrip("/").rsplit("/", 1)[-1])


def bundles_of(repo: Repository, item_id: uuid.UUID) -> dict[str, list[str]]:
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None
        return {b.name: [f.name for f in b.bitstreams] for b in item.bundles}


def set_workflow(repo: Repository, collection: uuid.UUID, enabled: bool) -> None:
    with repo.context(system=True) as ctx:
        target = ctx.session.get(m.Collection, collection)
        assert target is not None
        objects.set_workflow_enabled(ctx, target, enabled)


def multipart_body(parts: list[tuple[dict[str, str], bytes]], boundary: str) -> bytes:
    """A multipart body from (headers, raw content) pairs, CRLF line ends."""
    out = b""
    for headers, content in parts:
        out += f"--{boundary}\r\n".encode()
        for name, value in headers.items():
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()
