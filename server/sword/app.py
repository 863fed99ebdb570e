"""The SWORD v2 WSGI application: routing, headers, bodies and answers.

Mount it in front of the WebDAV stack (``make_sword_app(repo, registry, fallback=dav_app)``
passes every path outside ``sword.root`` on to ``fallback``).  Per request:

1. the path is routed (unknown IRI: 404) and the method checked (405 with ``Allow``);
2. the person is authenticated *before the body is looked at*: no or wrong credentials is
   401 with a Basic challenge (the body is drained in small blocks, never trusted);
   ``On-Behalf-Of`` is checked (412 MediationNotAllowed, 403 TargetOwnerUnknown);
3. the body is classified by its Content-Type -- empty, an Atom entry
   (``application/atom+xml``), ``multipart/related`` (or ``multipart/form-data``), or a
   file -- and streamed to staging (size limit, Content-MD5);
4. the operation runs (:mod:`server.sword.deposit`) and the answer is a deposit receipt
   (``application/atom+xml;type=entry;charset=utf-8``, ``Cache-Control: no-store``,
   ``Location`` = Edit-IRI on creates), a statement, a feed, content, or 204;
5. any failure is a SWORD error document (:mod:`server.sword.errors`); a client's mistake
   is never a 500, and no write is ever answered with a redirect.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import quote

from packagers.base import Package
from packagers.registry import Registry, default_registry
from packagers.sword_basic import BINARY_URI
from server.config import Config
from server.context import Repository
from server.errors import Detail, SizeLimitExceeded
from server.http.wsgi import Environ, StartResponse, WSGIApp
from server.sword import atom, bodies, iris, multipart
from server.sword import headers as h
from server.sword.deposit import Deposit, Outcome, Principal, SwordService
from server.sword.errors import (
    BadRequest,
    ErrorContent,
    MethodNotAllowed,
    NotFound,
    classify,
)

log = logging.getLogger(__name__)

REALM = "davpack"
STREAM_BLOCK = 1024 * 1024
NO_STORE = ("Cache-Control", "no-store")

__all__ = ["SwordApp", "make_sword_app", "service_document_url"]


def service_document_url(config: Config) -> str:
    """The SD-IRI under the configured public base URL (for start-up and ``/-/version``)."""
    return str(config.get("site.base_url")).rstrip("/") + str(config.get("sword.root"))


def make_sword_app(repo: Repository, registry: Registry | None = None,
                   fallback: WSGIApp | None = None) -> WSGIApp:
    """The SWORD application for ``repo``: it answers every path at or below
    ``sword.root``; other paths go to ``fallback`` (404 without one)."""
    return SwordApp(repo, registry or default_registry(), fallback)


@dataclass
class Request:
    environ: Environ
    route: iris.Route
    principal: Principal
    iris: iris.Iris
    body: bodies.RequestBody
    head: bool

    @property
    def key(self) -> uuid.UUID:
        found = self.route.uuid
        if found is None:  # pragma: no cover - the routes only match UUIDs here
            raise NotFound("not a deposit IRI")
        return found


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Iterable[bytes] | None = None
    on_close: Callable[[], None] | None = None


class _Body:
    """A streamed response body that releases what it holds when the server is done."""

    def __init__(self, chunks: Iterable[bytes], on_close: Callable[[], None] | None) -> None:
        self._chunks = chunks
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:  # pragma: no cover
        return f"{code} Error"


def _xml(status: int, content_type: str, data: bytes, *extra: tuple[str, str]) -> Response:
    return Response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))),
                             NO_STORE, *extra], data)


def _disposition(name: str) -> str:
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


Handler = Callable[[Request], Response]


class SwordApp:
    def __init__(self, repo: Repository, registry: Registry,
                 fallback: WSGIApp | None = None) -> None:
        self.repo = repo
        self.service = SwordService(repo, registry)
        self.root = self.service.root
        self.fallback = fallback
        self.limit = self.service.limit
        self.block_size = self.service.block_size
        self.service.ensure_registry()
        self.routes: dict[str, dict[str, Handler]] = {
            iris.SERVICE: {"GET": self.get_service_document},
            iris.COLLECTION: {"GET": self.get_collection, "POST": self.post_collection},
            iris.EDIT: {"GET": self.get_container, "PUT": self.put_container,
                        "POST": self.post_container, "DELETE": self.delete_container},
            iris.EDIT_MEDIA: {"GET": self.get_media, "PUT": self.put_media,
                              "POST": self.post_media, "DELETE": self.delete_media},
            iris.MEDIA_FEED: {"GET": self.get_media_feed},
            iris.FILE: {"GET": self.get_file, "PUT": self.put_file,
                        "DELETE": self.delete_file},
            iris.STATEMENT_ATOM: {"GET": self.get_statement_atom},
            iris.STATEMENT_ORE: {"GET": self.get_statement_ore},
        }

    # -- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or ""
        if not iris.under_root(path, self.root) and self.fallback is not None:
            return self.fallback(environ, start_response)
        response = self.handle(environ)
        start_response(_status_line(response.status), response.headers)
        if environ.get("REQUEST_METHOD", "").upper() == "HEAD" or response.status in (204,
                                                                                    304):
            if response.on_close is not None:
                response.on_close()
            return []
        if response.stream is not None:
            return _Body(response.stream, response.on_close)
        return [response.body]

    def handle(self, environ: Environ) -> Response:
        links = iris.Iris(iris.request_base(environ), self.root)
        body: bodies.RequestBody | None = None
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        try:
            body = bodies.RequestBody(environ)
            environ["wsgi.input"] = body
            route = iris.parse(environ.get("PATH_INFO") or "", self.root)
            if route is None:
                raise NotFound("no SWORD resource at this IRI",
                               [Detail("unknown IRI", field="path",
                                       found=str(environ.get("PATH_INFO"))[:200])],
                               hint=f"Start from the service document at {links.service()}.")
            handlers = self.routes[route.kind]
            handler = handlers.get("GET" if method == "HEAD" else method)
            if handler is None:
                allow = sorted({*handlers, "HEAD"} if "GET" in handlers else handlers)
                raise MethodNotAllowed(f"{method} is not supported on this IRI",
                                       [Detail("method not allowed", field="method",
                                               found=method, expected=", ".join(allow))],
                                       allow=allow)
            login, password = bodies.credentials(environ) or (None, None)
            principal = self.service.authenticate(login, password, h.on_behalf_of(environ))
            response = handler(Request(environ, route, principal, links, body,
                                       method == "HEAD"))
            body.drain()
            return response
        except Exception as exc:
            return self.failure(environ, exc, body, links,
                                retrieving=method in ("GET", "HEAD"))

    def failure(self, environ: Environ, error: Exception, body: bodies.RequestBody | None,
                links: iris.Iris, *, retrieving: bool) -> Response:
        answer = classify(error, retrieving=retrieving, limit=self.limit)
        if answer.status >= 500:
            log.error("SWORD %s %s failed", environ.get("REQUEST_METHOD"),
                      environ.get("PATH_INFO"), exc_info=error)
        else:
            log.info("SWORD %s %s: %s %s", environ.get("REQUEST_METHOD"),
                     environ.get("PATH_INFO"), answer.status, answer.summary)
        if body is not None and answer.status != 413:  # cheroot closes on 413
            body.drain()
        extra: list[tuple[str, str]] = []
        if answer.status == 401:
            extra.append(("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'))
        if answer.allow:
            extra.append(("Allow", ", ".join(answer.allow)))
        if answer.status == 413:
            extra.append(("Connection", "close"))
        return _xml(answer.status, atom.ERROR_TYPE, atom.error_document(links, answer), *extra)

    # -- reading bodies ------------------------------------------------------------------

    def _entry(self, environ: Environ) -> atom.EntryData:
        upload = bodies.receive(environ, self.repo, limit=atom.MAX_ENTRY_BYTES,
                                block_size=self.block_size, filename="Atom entry",
                                packaging="")
        try:
            return atom.parse_entry(upload.path, environ.get("CONTENT_TYPE"))
        finally:
            upload.discard()

    def _binary(self, environ: Environ) -> bodies.Upload:
        name = h.filename(h.header(environ, "HTTP_CONTENT_DISPOSITION"))
        if name is None:
            raise BadRequest("the file has no name: Content-Disposition with a filename is "
                             "required", [Detail("missing filename", field="Content-Disposition",
                                                 expected="attachment; filename=NAME")],
                             hint="Send Content-Disposition: attachment; filename=thesis.pdf "
                             "(percent-encode or use filename*=UTF-8''... for non-ASCII names).")
        packaging = h.packaging(environ) or BINARY_URI
        return bodies.receive(environ, self.repo, limit=self.limit,
                              block_size=self.block_size, filename=name, packaging=packaging)

    def _multipart(self, req: Request, boundary: str | None) -> Deposit:
        environ = req.environ
        raw_limit = self.limit * 4 // 3 + atom.MAX_ENTRY_BYTES * 2
        declared = req.body.declared
        if declared is not None and declared > raw_limit:
            raise SizeLimitExceeded(
                f"the request body ({declared} bytes) is larger than the limit",
                [Detail("size limit exceeded", field="Content-Length",
                        expected=f"<= {raw_limit}", found=str(declared))])
        parts = multipart.read(req.body, boundary or "", staging=bodies.staging_dir(self.repo),
                               limit=self.limit, block_size=self.block_size)
        deposit = Deposit()
        try:
            entry_part, media = parts.entry_and_media()
            if entry_part is not None:
                deposit.entry = atom.parse_entry(entry_part.path,
                                                 entry_part.headers.get("content-type"))
            if media is not None:
                multipart.verify_md5(media, "media part")
                name = media.filename or h.filename(h.header(environ,
                                                             "HTTP_CONTENT_DISPOSITION"))
                if name is None:
                    raise BadRequest("the media part has no file name",
                                     [Detail("missing filename", field="Content-Disposition",
                                             file="payload")],
                                     hint="Give the media part Content-Disposition: "
                                     "attachment; name=payload; filename=NAME.")
                packaging = (h.normalise_packaging(media.header("packaging")
                                                   or media.header("x-packaging"))
                             or h.packaging(environ) or BINARY_URI)
                deposit.upload = bodies.Upload(media.path, media.digests, name,
                                               media.headers.get("content-type"), packaging,
                                               multipart.md5_of(media.header("content-md5")))
        except BaseException:
            parts.discard()
            raise
        for part in parts.parts:
            if deposit.upload is None or part.path != deposit.upload.path:
                part.discard()
        return deposit

    def _deposit(self, req: Request, *, binary: bool = True, entry: bool = True,
                 empty: bool = False) -> tuple[str, Deposit]:
        """Classify and read the body: ``("empty"|"entry"|"multipart"|"binary", deposit)``."""
        environ = req.environ
        if req.body.empty:
            if empty:
                return "empty", Deposit()
            raise BadRequest("the request has no body",
                             [Detail("empty body", field="body")],
                             hint="Send a file (with Content-Disposition), an Atom entry or "
                             "a multipart/related body.")
        ctype, params = h.media_type(environ.get("CONTENT_TYPE"))
        if ctype.startswith("multipart/"):
            if not entry:
                raise ErrorContent("a multipart body cannot be sent here",
                                   [Detail("multipart not accepted on this IRI",
                                           field="Content-Type", found=ctype)],
                                   hint="Send the file alone; multipart deposits go to the "
                                   "Col-IRI or the Edit-IRI.")
            return "multipart", self._multipart(req, params.get("boundary"))
        if ctype in ("application/atom+xml", "application/atom+xml;type=entry"):
            if not entry:
                raise ErrorContent("an Atom entry cannot be sent here",
                                   [Detail("metadata not accepted on this IRI",
                                           field="Content-Type", found=ctype)],
                                   hint="Send metadata to the Edit-IRI (PUT) or SE-IRI (POST).")
            return "entry", Deposit(entry=self._entry(environ))
        if not binary:
            raise ErrorContent("a file cannot be sent here",
                               [Detail("file not accepted on this IRI", field="Content-Type",
                                       found=ctype or "(none)",
                                       expected="application/atom+xml;type=entry or "
                                       "multipart/related")],
                               hint="PUT files to the EM-IRI (replace) or POST them to the "
                               "EM-IRI or SE-IRI (add).")
        return "binary", Deposit(upload=self._binary(environ))

    # -- answers -------------------------------------------------------------------------

    def _receipt(self, req: Request, outcome: Outcome, status: int,
                 location: str | None = None) -> Response:
        view = self.service.view(req.principal, outcome.item)
        data = atom.receipt(req.iris, view, packaging=self.service.retrieval_packaging(),
                            extras=outcome.extras(view))
        return _xml(status, atom.ENTRY_TYPE, data,
                    ("Location", location or req.iris.edit(outcome.item)))

    def _package(self, req: Request, package: Package, packaging: str | None) -> Response:
        headers = [("Content-Type", package.mime_type or "application/octet-stream"),
                   ("Content-Disposition", _disposition(package.file_name)), NO_STORE]
        if package.size is not None:
            headers.append(("Content-Length", str(package.size)))
        if packaging:
            headers.append(("Packaging", packaging))
        return Response(200, headers, stream=package.iter_bytes(), on_close=package.close)

    # -- handlers ------------------------------------------------------------------------

    def get_service_document(self, req: Request) -> Response:
        data = atom.service_document(
            req.iris, title=str(self.repo.config.get("site.name")),
            max_upload_size=self.limit, collections=self.service.collections(req.principal),
            packaging=self.service.deposit_packaging(), mediation=self.service.mediation)
        return _xml(200, atom.SERVICE_TYPE, data)

    def get_collection(self, req: Request) -> Response:
        collection, items = self.service.collection_items(req.principal, req.route.key)
        return _xml(200, atom.FEED_TYPE, atom.collection_feed(req.iris, collection, items))

    def post_collection(self, req: Request) -> Response:
        in_progress = h.in_progress(req.environ)
        slug = h.slug(req.environ)
        h.metadata_relevant(req.environ)  # checked, not needed: entries are always read
        _kind, deposit = self._deposit(req)
        try:
            outcome = self.service.create(req.principal, req.route.key, deposit,
                                          in_progress=in_progress, slug=slug)
        finally:
            deposit.discard()
        return self._receipt(req, outcome, 201)

    def get_container(self, req: Request) -> Response:
        accept = str(req.environ.get("HTTP_ACCEPT") or "").lower().replace(" ", "")
        if "application/rdf+xml" in accept and "type=entry" not in accept:
            return self.get_statement_ore(req)
        if "type=feed" in accept and "type=entry" not in accept:
            return self.get_statement_atom(req)
        view = self.service.view(req.principal, req.key)
        data = atom.receipt(req.iris, view, packaging=self.service.retrieval_packaging(),
                            extras=atom.ReceiptExtras(
                                treatment=f"Deposit receipt. {atom.state_summary(view)}"))
        return _xml(200, atom.ENTRY_TYPE, data)

    def put_container(self, req: Request) -> Response:
        in_progress = h.in_progress(req.environ)
        h.metadata_relevant(req.environ)
        _kind, deposit = self._deposit(req, binary=False)
        try:
            outcome = self.service.replace_metadata(req.principal, req.key, deposit,
                                                    in_progress=in_progress)
        finally:
            deposit.discard()
        return self._receipt(req, outcome, 200)

    def post_container(self, req: Request) -> Response:
        in_progress = h.in_progress(req.environ)
        h.metadata_relevant(req.environ)
        kind, deposit = self._deposit(req, empty=True)
        try:
            if kind == "empty":
                outcome = self.service.complete(req.principal, req.key,
                                                in_progress=in_progress)
            elif kind == "binary":
                assert deposit.upload is not None
                outcome = self.service.add_content(req.principal, req.key, deposit.upload,
                                                   in_progress=in_progress)
            else:
                outcome = self.service.add_metadata(req.principal, req.key, deposit,
                                                    in_progress=in_progress)
        finally:
            deposit.discard()
        return self._receipt(req, outcome, 200)

    def delete_container(self, req: Request) -> Response:
        self.service.delete_container(req.principal, req.key)
        return Response(204, [NO_STORE])

    def get_media(self, req: Request) -> Response:
        wanted = h.normalise_packaging(h.header(req.environ, "HTTP_ACCEPT_PACKAGING",
                                                limit=1024))
        package, packaging = self.service.open_content(req.principal, req.key, wanted)
        return self._package(req, package, packaging)

    def put_media(self, req: Request) -> Response:
        h.metadata_relevant(req.environ)
        _kind, deposit = self._deposit(req, entry=False)
        try:
            assert deposit.upload is not None
            self.service.replace_content(req.principal, req.key, deposit.upload)
        finally:
            deposit.discard()
        return Response(204, [NO_STORE, ("Location", req.iris.edit_media(req.key))])

    def post_media(self, req: Request) -> Response:
        h.metadata_relevant(req.environ, default=False)
        _kind, deposit = self._deposit(req, entry=False)
        try:
            assert deposit.upload is not None
            outcome = self.service.add_content(req.principal, req.key, deposit.upload,
                                               in_progress=None)
        finally:
            deposit.discard()
        view_files = self.service.view(req.principal, outcome.item).files
        location = req.iris.edit_media(req.key)
        if outcome.new_file is not None:
            for file in view_files:
                if file.id == outcome.new_file:
                    location = req.iris.file(file.id, file.name)
        return self._receipt(req, outcome, 201, location)

    def delete_media(self, req: Request) -> Response:
        self.service.delete_content(req.principal, req.key)
        return Response(204, [NO_STORE])

    def get_media_feed(self, req: Request) -> Response:
        view = self.service.view(req.principal, req.key)
        return _xml(200, atom.FEED_TYPE, atom.media_feed(req.iris, view))

    def get_file(self, req: Request) -> Response:
        bitstream, sha256 = self.service.open_file(req.principal, req.key)
        stream = self.repo.store.open(sha256)

        def chunks() -> Iterator[bytes]:
            while True:
                data = stream.read(STREAM_BLOCK)
                if not data:
                    return
                yield data

        return Response(200, [("Content-Type", bitstream.mime_type),
                              ("Content-Length", str(bitstream.size)),
                              ("Content-Disposition", _disposition(bitstream.name)), NO_STORE],
                        stream=chunks(), on_close=stream.close)

    def put_file(self, req: Request) -> Response:
        environ = req.environ
        # The file keeps its name (the sword2 client sends "unnamed" here anyway).
        name = h.filename(h.header(environ, "HTTP_CONTENT_DISPOSITION")) or "file"
        if req.body.empty:
            raise BadRequest("the request has no body", [Detail("empty body", field="body")])
        upload = bodies.receive(environ, self.repo, limit=self.limit,
                                block_size=self.block_size, filename=name,
                                packaging=BINARY_URI)
        try:
            self.service.replace_file(req.principal, req.key, upload)
        finally:
            upload.discard()
        return Response(204, [NO_STORE])

    def delete_file(self, req: Request) -> Response:
        self.service.delete_file(req.principal, req.key)
        return Response(204, [NO_STORE])

    def get_statement_atom(self, req: Request) -> Response:
        view = self.service.view(req.principal, req.key)
        return _xml(200, atom.FEED_TYPE, atom.statement_atom(req.iris, view))

    def get_statement_ore(self, req: Request) -> Response:
        view = self.service.view(req.principal, req.key)
        return _xml(200, atom.RDF_TYPE, atom.statement_ore(req.iris, view))

