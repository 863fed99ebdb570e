"""Helpers and fixtures for the HTTP tests (tests/test_http_*.py).

* :func:`call`: drive the WSGI application in-process (no socket).
* :func:`make_tree`, :class:`Dav`, :func:`running_server`: what the fixtures in
  :mod:`http_fixtures` are made of.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from packagers.registry import GROUP, Registry
from server.context import Repository
from server.services import authz, metadata, objects, people

ADMIN = ("admin@example.org", "secret")
USER = ("user@example.org", "secret")


def packager_registry(*names: str) -> Registry:
    available = {
        "TESTZIP": "http_packagers:ZipPackagerForTests",
        "TESTSTREAM": "http_packagers:StreamPackagerForTests",
    }
    wanted = names or tuple(available)
    return Registry(eps=[EntryPoint(name=n, value=available[n], group=GROUP) for n in wanted])


@dataclass
class Response:
    status: int
    reason: str
    header_list: list[tuple[str, str]]
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.header_list}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def call(app: Any, method: str, path: str, *, body: bytes | None = None,
         headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None,
         query: str = "", chunked: bool = False) -> Response:
    """One request through the WSGI application, the way cheroot would present it."""
    import base64

    raw_path = unquote_to_bytes(path.split("?", 1)[0]).decode("latin-1")
    if "?" in path:
        query = path.split("?", 1)[1]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": raw_path,
        "QUERY_STRING": query, "SERVER_NAME": "localhost", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost", "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
        "wsgi.input": io.BytesIO(body or b""), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if body is not None and not chunked:
        environ["CONTENT_LENGTH"] = str(len(body))
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    for key, value in (headers or {}).items():
        name = key.upper().replace("-", "_")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
        else:
            environ[f"HTTP_{name}"] = value
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        environ["HTTP_AUTHORIZATION"] = f"Basic {token}"
    captured: dict[str, Any] = {}

    def start_response(status: str, header_list: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        captured["status"] = status
        captured["headers"] = header_list
        return lambda data: None

    result = app(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    code, _, reason = captured["status"].partition(" ")
    return Response(int(code), reason, captured["headers"], data)


@dataclass
class Tree:
    """The IDs and handles of the small repository every HTTP test starts from."""

    community: uuid.UUID
    community_handle: str
    collection: uuid.UUID
    collection_handle: str
    other_collection: uuid.UUID
    other_handle: str
    item: uuid.UUID
    item_handle: str
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def item_path(self) -> str:
        return f"/handle/{self.item_handle}"

    @property
    def collection_path(self) -> str:
        return f"/handle/{self.collection_handle}"

    @property
    def community_path(self) -> str:
        return f"/handle/{self.community_handle}"

    def item_file(self) -> str:
        return f"ITEM@{self.item_handle.replace('/', '-')}.zip"


def make_tree(repo: Repository) -> Tree:
    files = {"thesis.pdf": b"%PDF-1.4\n" + bytes(range(256)) * 64, "data.csv": b"a,b\n1,2\n"}
    with repo.context(system=True) as ctx:
        admin = people.by_email(ctx, ADMIN[0])
        if admin is None:
            admin = people.create_person(ctx, ADMIN[0], password=ADMIN[1])
            people.add_member(ctx, authz.admin_group(ctx), admin)
        if people.by_email(ctx, USER[0]) is None:
            people.create_person(ctx, USER[0], password=USER[1])
        community = objects.create_community(ctx, None, "Community A")
        collection = objects.create_collection(ctx, community, "Collection 1")
        other = objects.create_collection(ctx, community, "Collection 2")
        item = objects.create_item(ctx, collection)
        metadata.add(ctx, item, "dc.title", "A thesis")
        bundle = objects.bundle_named(ctx, item, "ORIGINAL")
        for name, data in files.items():
            content = ctx.add_content(io.BytesIO(data), name=name)
            objects.add_bitstream(ctx, bundle, content, name=name, mime_type="application/pdf"
                                  if name.endswith(".pdf") else "text/csv")
        objects.install(ctx, item)
        assert community.handle and collection.handle and other.handle and item.handle
        return Tree(community.id, community.handle, collection.id, collection.handle,
                    other.id, other.handle, item.id, item.handle, files)


@dataclass
class Dav:
    app: Any
    repo: Repository
    tree: Tree
    registry: Registry

    def __call__(self, method: str, path: str, **kwargs: Any) -> Response:
        return call(self.app, method, path, **kwargs)


@dataclass
class DavServer:
    url: str
    repo: Repository
    tree: Tree
    server: Any
    log: list[logging.LogRecord]

    def errors_5xx(self) -> list[str]:
        return [r.getMessage() for r in self.log
                if r.name == "davpack.access" and getattr(r, "status", 0) >= 500]


class _Collect(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record)


@contextmanager
def running_server(repo: Repository, app: Any, tree: Tree, *, threads: int = 8,
                   ) -> Iterator[DavServer]:
    """``app`` behind a real cheroot server on a free port, its access log collected."""
    from server.cli.serve import make_server

    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    access = logging.getLogger("davpack.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    server = make_server(repo, "127.0.0.1", 0, threads, app=app)
    server.prepare()
    thread = threading.Thread(target=server.serve, name="dav-server", daemon=True)
    thread.start()
    host, port = server.bind_addr[:2]
    try:
        yield DavServer(f"http://{host}:{port}", repo, tree, server, records)
    finally:
        server.stop()
        thread.join(timeout=15)
        access.removeHandler(handler)
        access.setLevel(old_level)


def dav_path(*names: str) -> str:
    """A quoted path below /dav/."""
    return "/dav/" + "/".join(quote(n) for n in names)
