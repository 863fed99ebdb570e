"""Package semantics on top of WebDAV (placed after authentication, before the browse
page and WsgiDAV's request handling).

=========  ==================================================================================
GET/HEAD   On an object (folder, canonical URL or package file): its package, the default one
           or ``?package=NAME``; other query arguments are packager options.  Browsers
           (``Accept: text/html``) get the browse page for folders instead.  On a bitstream:
           its bytes.  Exact ``Content-Length``, ``ETag``, ``Last-Modified``, 304 and 206.
PUT        On an existing object: replace it from the package in the body (packager from
           ``?package=``, the SWORD ``Packaging`` header, ``Content-Type``, or the content);
           200 with a JSON receipt.  On a new name in a container, WsgiDAV's own PUT runs
           and the resource ingests the file (see :class:`resources.PendingFile`).
POST       On a site, community or collection: ingest the package as a new child; 201 with
           ``Location`` and a JSON receipt (one entry per object).
other      WsgiDAV, with the resources of :mod:`server.http.resources`.
=========  ==================================================================================

Permission is checked before the body is read (401/403 arrive at once), and a declared
body over the limit is refused with 413 before reading.  Requests whose ``Origin`` is
another site are refused for every method that changes something (a form on another site
cannot make a logged-in browser deposit).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from wsgidav import util as dav_util
from wsgidav.dav_error import HTTP_PRECONDITION_FAILED, DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from packagers.base import IngestResult, Mode, Outcome
from server import models as m
from server.errors import (
    AuthenticationRequired,
    DavpackError,
    Detail,
    NotFound,
    PermissionDenied,
    SizeLimitExceeded,
)
from server.http import packages, responses, urls
from server.http.errors import MethodNotAllowed, NotAcceptable, PreconditionFailed, respond
from server.http.nodes import Node
from server.http.provider import RepositoryProvider
from server.http.resources import (
    BitstreamFile,
    DepositFile,
    ObjectFolder,
    PackageFile,
    PendingFile,
    RootFolder,
)
from server.http.runtime import RequestState
from server.http.uploads import StagedPackage, check_declared_size, receive_package
from server.http.wsgi import (
    Environ,
    StartResponse,
    WSGIApp,
    base_url,
    content_length,
    query_pairs,
    query_value,
)
from server.services import authz

log = logging.getLogger(__name__)

XML_BODY_LIMIT = 1024 * 1024
"""Largest body accepted for PROPFIND, PROPPATCH, LOCK and friends (WsgiDAV reads those
into memory)."""

UNSAFE_METHODS = frozenset({"PUT", "POST", "DELETE", "MKCOL", "COPY", "MOVE", "PROPPATCH",
                            "LOCK", "UNLOCK"})
XML_METHODS = frozenset({"PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "MKCOL", "COPY", "MOVE",
                         "DELETE", "OPTIONS"})
LOGIN_METHODS = frozenset({"LOCK", "UNLOCK", "PROPPATCH", "DELETE", "MKCOL", "MOVE", "COPY"})
"""WebDAV methods only a logged-in person may use (the services decide the rest)."""
FOLDER_METHODS = ("OPTIONS", "GET", "HEAD", "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK")


def wants_html(environ: Environ) -> bool:
    """True for browsers: ``text/html`` is named in Accept (``*/*`` is not enough)."""
    for part in (environ.get("HTTP_ACCEPT") or "").split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() in ("text/html", "application/xhtml+xml"):
            return "q=0" not in params.replace(" ", "").replace("q=0.", "q=x")
    return False


class PackageMiddleware(BaseMiddleware):
    def __init__(self, wsgidav_app: Any, next_app: WSGIApp, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, next_app, config)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        if not isinstance(environ.get("wsgidav.provider"), RepositoryProvider):
            return self.next_app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        if method in UNSAFE_METHODS:
            _check_origin(environ)
        if method in XML_METHODS:
            declared = content_length(environ)
            if declared is not None and declared > XML_BODY_LIMIT:
                raise SizeLimitExceeded(
                    f"a {method} body may not exceed {XML_BODY_LIMIT} bytes",
                    [Detail("body too large", field="Content-Length",
                            expected=f"<= {XML_BODY_LIMIT}", found=str(declared))])
        if method in LOGIN_METHODS and RequestState.of(environ).actor is None:
            raise AuthenticationRequired(f"log in to {method}")
        if method in ("LOCK", "PROPPATCH"):
            _require_write(environ, self._resource(environ))
        if method in ("GET", "HEAD"):
            return self._get(environ, start_response)
        if method == "PUT":
            return self._put(environ, start_response)
        if method == "POST":
            return self._post(environ, start_response)
        if method == "OPTIONS":
            return self.next_app(environ, _advertise_post(environ, start_response))
        return self.next_app(environ, start_response)

    def _resource(self, environ: Environ) -> Any:
        provider: RepositoryProvider = environ["wsgidav.provider"]
        return provider.get_resource_inst(environ.get("PATH_INFO", "/"), environ)

    # -- GET / HEAD --------------------------------------------------------------------

    def _get(self, environ: Environ, start_response: StartResponse) -> Any:
        pairs = query_pairs(environ)
        name = query_value(pairs, "package")
        resource = self._resource(environ)
        state = RequestState.of(environ)
        if isinstance(resource, BitstreamFile):
            if name is not None:
                raise NotAcceptable("files are not packaged: fetch the file, or its item's "
                                    "package", [Detail("not a packageable object",
                                                       field="package", found=name)])
            return _send_bitstream(environ, start_response, state, resource)
        if isinstance(resource, DepositFile) and resource.kept is not None and name is None:
            return _send_kept(environ, start_response, resource)
        if isinstance(resource, (PackageFile, DepositFile)):
            node = resource.node
            file_name = resource.name if name is None else None
            return _send_package(environ, start_response, state, node, name, pairs,
                                 file_name)
        if isinstance(resource, ObjectFolder) and resource.node.is_object:
            if name is None and wants_html(environ):
                return self.next_app(environ, start_response)
            return _send_package(environ, start_response, state, resource.node, name, pairs,
                                 None)
        if name is not None and resource is not None:
            raise NotAcceptable("nothing here can be packaged",
                                [Detail("not a packageable object", field="package",
                                        found=name)])
        return self.next_app(environ, start_response)

    # -- PUT ---------------------------------------------------------------------------

    def _put(self, environ: Environ, start_response: StartResponse) -> Any:
        resource = self._resource(environ)
        if resource is None or isinstance(resource, PendingFile):
            return self._put_new(environ, start_response)
        if isinstance(resource, (ObjectFolder, PackageFile, DepositFile)) and \
                resource.node.is_object:
            return self._replace(environ, start_response, resource)
        raise MethodNotAllowed(
            "only a site, community, collection or item can be replaced with PUT",
            [Detail("not replaceable", field="path", found=environ.get("PATH_INFO"))],
            allow=FOLDER_METHODS)

    def _put_new(self, environ: Environ, start_response: StartResponse) -> Any:
        """A PUT to a new (or reserved) name: WsgiDAV's PUT runs (locks, If headers) and
        the resource ingests the file; the answer is then our receipt, not WsgiDAV's
        status page."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return None

        body = self.next_app(environ, capture)
        try:
            chunks = list(body)  # WsgiDAV's PUT answer is a short status page
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        found = environ.get("davpack.ingest_result")
        if found is None or captured["status"][:3] not in ("201", "204"):
            start_response(captured["status"], captured["headers"])
            return chunks
        result, packager = found
        receipt = packages.receipt(result, base=base_url(environ), packager=packager)
        headers = []
        primary = result.primary
        if primary is not None and (primary.handle or primary.uuid):
            headers.append(("Location", urls.absolute(
                base_url(environ), urls.object_path(primary.handle, primary.uuid))))
        return responses.json_body(start_response, 201, receipt, headers)

    def _replace(self, environ: Environ, start_response: StartResponse,
                 resource: Any) -> list[bytes]:
        state = RequestState.of(environ)
        runtime = state.runtime
        node: Node = resource.node
        ctx = state.read()
        target = ctx.session.get(m.DSpaceObject, node.id)
        if target is None:
            raise PermissionDenied("the object disappeared")
        authz.authorize(ctx, target, m.Action.WRITE)
        declared = check_declared_size(environ, runtime.max_upload_size)
        if declared == 0 and isinstance(resource, (PackageFile, DepositFile)):
            return responses.no_body(start_response, 204)  # a file manager's empty write
        _check_locks(environ, resource)
        _check_conditions(environ, state, node)
        plan = packages.write_plan(query_pairs(environ), environ, default_mode=Mode.REPLACE)
        cls = packages.choose_ingester(runtime, plan, content_type=environ.get("CONTENT_TYPE"),
                                       source=None, parent_type=None, replace_type=node.type)
        staged = self._receive(environ, state, _upload_name(environ) or _package_name(node))
        try:
            if cls is None:
                cls = packages.choose_ingester(runtime, plan,
                                               content_type=staged.content_type,
                                               source=staged.source(), parent_type=None,
                                               replace_type=node.type)
            assert cls is not None
            started = time.monotonic()
            with staged.copies_in_use():
                result = packages.replace(state, cls, node.id, staged.source(), plan.request)
            _log_ingest("replace", state, node, cls.name, staged, result, started)
        finally:
            staged.discard()
        body = packages.receipt(result, base=base_url(environ), packager=cls.name)
        return responses.json_body(start_response, 200, body)

    # -- POST --------------------------------------------------------------------------

    def _post(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        resource = self._resource(environ)
        if resource is None:
            return respond(environ, start_response, DAVError(404, "nothing here"))
        if not (isinstance(resource, ObjectFolder) and resource.node.is_container):
            raise MethodNotAllowed(
                "packages are posted to a site, community or collection",
                [Detail("not a container", field="path", found=environ.get("PATH_INFO"))],
                allow=("GET", "HEAD", "PUT", "DELETE", "PROPFIND", "OPTIONS"))
        state = RequestState.of(environ)
        runtime = state.runtime
        node: Node = resource.node
        ctx = state.read()
        container = ctx.session.get(m.DSpaceObject, node.id)
        if container is None:
            raise PermissionDenied("the container disappeared")
        authz.authorize(ctx, container, m.Action.ADD)
        check_declared_size(environ, runtime.max_upload_size)
        plan = packages.write_plan(query_pairs(environ), environ, default_mode=Mode.SUBMIT)
        cls = packages.choose_ingester(runtime, plan, content_type=environ.get("CONTENT_TYPE"),
                                       source=None, parent_type=node.type, replace_type=None)
        staged = self._receive(environ, state, _upload_name(environ) or "request-body")
        try:
            if cls is None:
                cls = packages.choose_ingester(runtime, plan,
                                               content_type=staged.content_type,
                                               source=staged.source(), parent_type=node.type,
                                               replace_type=None)
            assert cls is not None
            plan.request.parent = node.id
            started = time.monotonic()
            with staged.copies_in_use():
                result = packages.ingest(state, cls, staged.source(), plan.request)
            _log_ingest("ingest", state, node, cls.name, staged, result, started)
        finally:
            staged.discard()
        body = packages.receipt(result, base=base_url(environ), packager=cls.name)
        primary = result.primary
        headers = []
        code = 200
        if primary is not None and primary.outcome is Outcome.CREATED:
            code = 201
        if primary is not None and (primary.handle or primary.uuid):
            headers.append(("Location", urls.absolute(
                base_url(environ), urls.object_path(primary.handle, primary.uuid))))
        return responses.json_body(start_response, code, body, headers)

    def _receive(self, environ: Environ, state: RequestState,
                 name: str | None) -> StagedPackage:
        runtime = state.runtime
        state.release()
        return receive_package(environ, staging_dir=runtime.staging_dir,
                               store=runtime.repo.store, limit=runtime.max_upload_size,
                               block_size=runtime.block_size, name=name)


# ---------------------------------------------------------------------------------------
# Helpers


def _send_package(environ: Environ, start_response: StartResponse, state: RequestState,
                  node: Node, name: str | None, pairs: list[tuple[str, str]],
                  file_name: str | None) -> Any:
    runtime = state.runtime
    cls = packages.disseminator_for(runtime, name, node.type)
    params = packages.options(pairs, packages.READ_RESERVED)
    packages.check_options(params, cls, "disseminate")
    extra = [("X-Davpack-Package", cls.name)]
    if cls.sword_packaging:
        extra.append(("Packaging", cls.sword_packaging[0]))
    known = packages.cached_info(state, node, cls, params)
    if known is not None and known.last_modified is not None and (
            environ.get("REQUEST_METHOD") == "HEAD"
            or responses.none_match(environ, known.etag)):
        # HEAD, or a GET the client already has: answered without building the package
        return responses.send(environ, start_response, size=known.size, etag=known.etag,
                              last_modified=known.last_modified, mime_type=known.mime_type,
                              file_name=file_name or known.file_name,
                              chunks=_nothing, on_close=_nothing_to_close,
                              extra_headers=extra)
    opened = packages.open_package(state, node, cls, params)
    return responses.send(environ, start_response, size=opened.size, etag=opened.etag,
                          last_modified=opened.last_modified, mime_type=opened.mime_type,
                          file_name=file_name or opened.file_name, chunks=opened.iter_bytes,
                          on_close=opened.close, extra_headers=extra)


def _nothing(start: int, end: int) -> Any:
    raise AssertionError("a HEAD or 304 answer has no body")


def _nothing_to_close() -> None:
    return None


def _send_bitstream(environ: Environ, start_response: StartResponse, state: RequestState,
                    resource: BitstreamFile) -> Any:
    node = resource.node
    assert node.sha256 is not None and node.size is not None
    store = state.runtime.repo.store
    block = state.runtime.block_size
    state.release()
    sha256 = node.sha256

    def chunks(start: int, end: int) -> Any:
        with store.open(sha256) as stream:
            stream.seek(start)
            left = end - start
            while left > 0:
                data = stream.read(min(block, left))
                if not data:
                    raise OSError(f"stored content {sha256} is shorter than recorded")
                left -= len(data)
                yield data

    mime = node.mime_type or "application/octet-stream"
    return responses.send(environ, start_response, size=node.size,
                          etag=resource.get_etag(), last_modified=node.last_modified,
                          mime_type=mime, file_name=resource.name, chunks=chunks,
                          on_close=lambda: None,
                          disposition=responses.disposition_for(mime),
                          extra_headers=[("Content-Security-Policy", "sandbox")])


def _send_kept(environ: Environ, start_response: StartResponse,
               resource: DepositFile) -> Any:
    """An upload's bytes as received, under the name it was uploaded as."""
    kept = resource.kept
    assert kept is not None
    try:
        stream = open(kept.path, "rb")  # noqa: SIM115 - closed by the response
    except FileNotFoundError:
        raise NotFound("the uploaded file is no longer kept") from None
    block = RequestState.of(environ).runtime.block_size
    RequestState.of(environ).release()

    def chunks(start: int, end: int) -> Any:
        stream.seek(start)
        left = end - start
        while left > 0:
            data = stream.read(min(block, left))
            if not data:
                raise OSError(f"{kept.path} is shorter than recorded")
            left -= len(data)
            yield data

    when = datetime.fromtimestamp(resource.get_last_modified(), UTC)
    return responses.send(environ, start_response, size=kept.size, etag=f"sha256-{kept.sha256}",
                          last_modified=when, mime_type=resource.get_content_type(),
                          file_name=resource.name, chunks=chunks, on_close=stream.close)


def _upload_name(environ: Environ) -> str | None:
    """The file name a client gave (``Content-Disposition: attachment; filename=…`` or
    ``filename*=UTF-8''…``)."""
    header = (environ.get("HTTP_CONTENT_DISPOSITION") or "")[:2048]
    found: dict[str, str] = {}
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        found[key.strip().lower()] = value.strip()
    if found.get("filename*"):
        charset, _, rest = found["filename*"].partition("'")
        _lang, _, encoded = rest.partition("'")
        try:
            name = unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = ""
        if urls.clean_name(name):
            return urls.clean_name(name)
    if found.get("filename"):
        return urls.clean_name(found["filename"].strip('"')) or None
    return None


def _require_write(environ: Environ, resource: Any) -> None:
    """LOCK and PROPPATCH change what others see: WRITE on the object (ADD on the
    folder for a reserved name; unmapped URLs are checked when the name is reserved)."""
    if resource is None:
        return
    state = RequestState.of(environ)
    ctx = state.read()
    if isinstance(resource, RootFolder):
        authz.require_admin(ctx)
        return
    if isinstance(resource, PendingFile):
        target_id = resource.container.id
        action = m.Action.ADD
    else:
        node: Node = resource.node
        target_id = node.item_id if node.item_id is not None else node.id
        action = m.Action.WRITE
    target = ctx.session.get(m.DSpaceObject, target_id)
    if target is None:
        raise PermissionDenied("the object disappeared")
    authz.authorize(ctx, target, action)


def _package_name(node: Node) -> str:
    token = urls.handle_token(node.handle) if node.handle else f"internal-id-{node.id}"
    return f"{node.type.value}@{token}"


def _check_origin(environ: Environ) -> None:
    origin = environ.get("HTTP_ORIGIN")
    if not origin or origin == "null":
        if origin == "null":
            raise PermissionDenied("requests from opaque origins may not change anything")
        return
    host = (environ.get("HTTP_HOST") or "").lower()
    if urlsplit(origin).netloc.lower() != host:
        raise PermissionDenied("requests from other sites may not change anything",
                               [Detail("cross-site request", field="Origin",
                                       found=origin[:200])])


def _check_locks(environ: Environ, resource: Any) -> None:
    """Honour WebDAV locks on a replaced object like WsgiDAV's own PUT does."""
    provider: RepositoryProvider = environ["wsgidav.provider"]
    lock_manager = provider.lock_manager
    if lock_manager is None:
        return
    dav_util.parse_if_header_dict(environ)
    lock_manager.check_write_permission(
        url=resource.get_ref_url(), depth="0", token_list=environ["wsgidav.ifLockTokenList"],
        principal=environ.get("wsgidav.auth.user_name") or "")
    if_dict = environ.get("wsgidav.conditions.if")
    if if_dict:
        ref_url = resource.get_ref_url()
        tokens = [lock["token"] for lock in lock_manager.get_indirect_url_lock_list(
            ref_url, principal=environ.get("wsgidav.auth.user_name") or "")]
        etag = resource.get_etag() or "[]"
        if not dav_util.test_if_header_dict(resource, if_dict, ref_url, tokens, etag):
            raise DAVError(HTTP_PRECONDITION_FAILED, "'If' header condition failed.")


def _check_conditions(environ: Environ, state: RequestState, node: Node) -> None:
    """If-Match / If-Unmodified-Since against the object's default package."""
    if_match = environ.get("HTTP_IF_MATCH")
    since = environ.get("HTTP_IF_UNMODIFIED_SINCE")
    if if_match is None and since is None:
        return
    cls = packages.default_disseminator(state.runtime, node.type)
    etag = packages.package_info(state, node, cls).etag if cls is not None else None
    if if_match is not None:
        tags = [t.strip().removeprefix("W/").strip('"') for t in if_match.split(",")]
        if "*" not in tags and (etag is None or etag not in tags):
            raise PreconditionFailed("If-Match does not match the object's current ETag")
    elif since is not None:
        import email.utils

        try:
            limit = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError, IndexError):
            return
        if limit is not None and node.timestamp > limit.timestamp():
            raise PreconditionFailed("the object changed after If-Unmodified-Since")


def _log_ingest(kind: str, state: RequestState, node: Node, packager: str,
                staged: StagedPackage, result: IngestResult, started: float) -> None:
    primary = result.primary
    log.info("%s %s into %s %s by %s: %s bytes, %d object(s), primary %s %s, %.2fs",
             kind, packager, node.type.value, node.handle or node.id, state.login or
             "anonymous", staged.size, len(result.objects),
             primary.outcome.value if primary else "-",
             (primary.handle or primary.uuid) if primary else "-",
             time.monotonic() - started)


def _advertise_post(environ: Environ, start_response: StartResponse) -> StartResponse:
    """WsgiDAV never lists POST in ``Allow``; containers take it."""

    def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if status.startswith("200"):
            try:
                resource = environ["wsgidav.provider"].get_resource_inst(
                    environ.get("PATH_INFO", "/"), environ)
            except (DAVError, DavpackError):  # OPTIONS answers even if resolution fails
                resource = None
            if isinstance(resource, ObjectFolder) and resource.node.is_container:
                headers = [(k, f"{v}, POST" if k.lower() == "allow" and "POST" not in v else v)
                           for k, v in headers]
        return start_response(status, headers, exc_info)

    return wrapped

