"""The one table from error classes to HTTP statuses, and how errors are rendered.

Every error davpack raises on purpose (``server.errors``, ``packagers.errors``, and the
few HTTP-only ones defined here) is answered from :data:`STATUS_TABLE`: the most specific
class listed in an error's MRO decides.  A few packager errors mean different things by
direction: an unknown or unsuitable package is *406 Not Acceptable* when a client asks
for it (GET/HEAD) and *415 Unsupported Media Type* when a client sends it.

The body carries the structured details (file, field, line, expected, found): JSON by
default and whenever the client accepts ``application/json``; plain text when the client
prefers ``text/*`` (browsers, curl users who ask for it).  WsgiDAV's own ``DAVError``s
are rendered the same way, except those carrying a WebDAV pre/postcondition, which keep
their ``DAV:error`` XML body because clients parse it.

:class:`ErrorMiddleware` replaces WsgiDAV's ``ErrorPrinter``: it defers
``start_response`` until the first body chunk, so an error raised before any byte was
sent becomes a proper response; after that, the connection is cut (the client sees a
short body, never a wrong one).  Unexpected exceptions are logged with the request id
and answered 500; a client's mistake never is.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any

from wsgidav.dav_error import DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from packagers import errors as perr
from server import errors as serr
from server.http.wsgi import Environ, StartResponse, WSGIApp

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# HTTP-only errors


class BadRequest(serr.InvalidInput):
    """The request itself is malformed (headers, body framing, query)."""


class IncompleteBody(BadRequest):
    """The body ended before its declared length, or the connection dropped."""


class MethodNotAllowed(serr.DavpackError):
    """The method makes no sense on this kind of resource."""

    def __init__(self, message: str, details: list[serr.Detail] | None = None,
                 allow: Iterable[str] = ()) -> None:
        super().__init__(message, list(details or []))
        self.allow = tuple(allow)


class NotAcceptable(serr.DavpackError):
    """No package format the client asked for can be produced for this object."""


class UnsupportedMediaType(serr.DavpackError):
    """The body is not something this resource can take."""


class PreconditionFailed(serr.DavpackError):
    """A conditional header (If-Match, If-Unmodified-Since) did not hold."""


class RangeNotSatisfiable(serr.DavpackError):
    """The requested byte range lies outside the representation."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message, [serr.Detail("range outside the content", field="Range",
                                               expected=f"bytes within [0, {size})")])
        self.size = size


# ---------------------------------------------------------------------------------------
# The table

# (error class, status when the client reads, status when the client writes)
STATUS_TABLE: tuple[tuple[type[BaseException], int, int], ...] = (
    (serr.NotFound, 404, 404),
    (serr.AuthenticationRequired, 401, 401),
    (serr.PermissionDenied, 403, 403),
    (serr.Conflict, 409, 409),
    (serr.UnknownMetadataField, 422, 422),
    (serr.UnsafeInput, 422, 422),
    (IncompleteBody, 400, 400),
    (BadRequest, 400, 400),
    (serr.InvalidInput, 400, 400),
    (serr.SizeLimitExceeded, 413, 413),
    (serr.ChecksumMismatch, 412, 412),
    (serr.ContentMissing, 500, 500),
    (serr.ConfigError, 500, 500),
    (MethodNotAllowed, 405, 405),
    (NotAcceptable, 406, 406),
    (UnsupportedMediaType, 415, 415),
    (PreconditionFailed, 412, 412),
    (RangeNotSatisfiable, 416, 416),
    (perr.UnknownPackager, 406, 415),
    (perr.AmbiguousPackage, 406, 415),
    (perr.UnsupportedOperation, 406, 415),
    (perr.UnknownOption, 400, 400),
    (perr.PackageValidationError, 422, 422),
    (perr.ObjectExists, 409, 409),
    (perr.ParentMissing, 409, 409),
    (perr.PackageError, 422, 422),
    (serr.DavpackError, 400, 400),
)

_BY_CLASS = {cls: (read, write) for cls, read, write in STATUS_TABLE}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND"})


def status_for(error: BaseException, method: str = "GET") -> int:
    """The HTTP status for ``error`` (500 for anything not in the table)."""
    for cls in type(error).__mro__:
        if cls in _BY_CLASS:
            read, write = _BY_CLASS[cls]
            return read if method.upper() in READ_METHODS else write
    return 500


def status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Error"


# ---------------------------------------------------------------------------------------
# Rendering


def wants_text(environ: Environ) -> bool:
    """True when the client prefers text/* over JSON (JSON is the default)."""
    best_json, best_text = -1.0, -1.0
    for part in (environ.get("HTTP_ACCEPT") or "").split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media in ("application/json", "application/*"):
            best_json = max(best_json, quality)
        elif media in ("text/plain", "text/html", "text/*"):
            best_text = max(best_text, quality)
    return best_text > best_json


def error_record(error: BaseException, code: int, environ: Environ) -> dict[str, Any]:
    record: dict[str, Any] = {"status": code, "error": type(error).__name__}
    if isinstance(error, serr.DavpackError):
        record["message"] = error.message
        record["details"] = [d.as_dict() for d in error.details]
    elif isinstance(error, DAVError):
        record["error"] = HTTPStatus(code).phrase if _known(code) else "Error"
        record["message"] = _dav_message(error)
        record["details"] = []
    else:
        record["message"] = "internal server error"
        record["details"] = []
    request_id = environ.get("davpack.request_id")
    if request_id:
        record["request_id"] = request_id
    return record


def _known(code: int) -> bool:
    try:
        HTTPStatus(code)
    except ValueError:
        return False
    return True


def _dav_message(error: DAVError) -> str:
    if error.context_info:
        return str(error.context_info)
    return HTTPStatus(error.value).description if _known(error.value) else str(error.value)


def render_body(record: dict[str, Any], as_text: bool) -> tuple[str, bytes]:
    """``(content type, body)`` of an error record."""
    if not as_text:
        body = json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        return "application/json; charset=utf-8", body.encode("utf-8")
    lines = [f"{status_line(record['status'])}: {record['message']}"]
    for detail in record.get("details", []):
        lines.append("  - " + str(serr.Detail(**detail)))
    if record.get("request_id"):
        lines.append(f"(request id {record['request_id']})")
    return "text/plain; charset=utf-8", ("\n".join(lines) + "\n").encode("utf-8")


def error_headers(error: BaseException, code: int, environ: Environ) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    if code == 401:
        realm = environ.get("wsgidav.auth.realm") or "davpack"
        headers.append(("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'))
    if isinstance(error, MethodNotAllowed) and error.allow:
        headers.append(("Allow", ", ".join(error.allow)))
    if isinstance(error, RangeNotSatisfiable):
        headers.append(("Content-Range", f"bytes */{error.size}"))
    if isinstance(error, DAVError) and error.add_headers:
        headers.extend(error.add_headers)
    return headers


def respond(environ: Environ, start_response: StartResponse, error: BaseException,
            code: int | None = None) -> list[bytes]:
    """Answer ``error`` completely (status, headers, body)."""
    method = environ.get("REQUEST_METHOD", "GET")
    if code is None:
        code = error.value if isinstance(error, DAVError) else status_for(error, method)
    if code in (204, 304):
        start_response(status_line(code), [("Content-Length", "0")])
        return []
    if isinstance(error, DAVError) and error.err_condition is not None:
        content_type, body = error.get_response_page()
    else:
        record = error_record(error, code, environ)
        content_type, body = render_body(record, wants_text(environ))
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store"), *error_headers(error, code, environ)]
    start_response(status_line(code), headers)
    return [] if method == "HEAD" else [body]


def unwrap(error: BaseException) -> BaseException:
    """The DavpackError a WsgiDAV ``DAVError(500, src_exception=...)`` was made from."""
    if isinstance(error, DAVError) and isinstance(error.src_exception, serr.DavpackError):
        return error.src_exception
    return error


class DavpackDAVError(DAVError):
    """A DavpackError dressed as a DAVError, for WsgiDAV hooks that swallow exceptions
    into per-resource error lists (DELETE, COPY, MOVE): WsgiDAV renders it through
    :meth:`get_response_page`, which uses our table and formats."""

    def __init__(self, error: serr.DavpackError, environ: Environ) -> None:
        code = status_for(error, environ.get("REQUEST_METHOD", "GET"))
        super().__init__(code, error.message, src_exception=error,
                         add_headers=error_headers(error, code, environ) or None)
        self.error = error
        self._record = error_record(error, code, environ)
        self._as_text = wants_text(environ)

    def get_response_page(self) -> tuple[str, bytes]:
        return render_body(self._record, self._as_text)


def as_dav_error(error: serr.DavpackError, environ: Environ) -> DavpackDAVError:
    return DavpackDAVError(error, environ)


# ---------------------------------------------------------------------------------------
# The middleware


class _Capture:
    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.exc_info: Any = None

    def __call__(self, status: str, headers: list[tuple[str, str]],
                 exc_info: Any = None) -> Any:
        self.status, self.headers, self.exc_info = status, list(headers), exc_info
        return _no_write


def _no_write(_data: bytes) -> None:  # pragma: no cover - WSGI write() is not used here
    raise RuntimeError("the write() callable is not supported")


class ErrorMiddleware(BaseMiddleware):
    """Turns exceptions into responses through :data:`STATUS_TABLE` (outermost layer
    of the WsgiDAV stack, in place of ``ErrorPrinter``)."""

    def __init__(self, wsgidav_app: Any, next_app: WSGIApp, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, next_app, config)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        capture = _Capture()
        started = False
        app_iter: Iterable[bytes] | None = None
        try:
            app_iter = self.next_app(environ, capture)
            for chunk in app_iter:
                if not started:
                    assert capture.status is not None
                    start_response(capture.status, capture.headers)
                    started = True
                yield chunk
            if not started:
                if capture.status is None:
                    raise RuntimeError("the application returned without a status")
                start_response(capture.status, capture.headers)
                started = True
        except Exception as exc:
            if started:
                log.error("response to %s %s failed after the headers were sent: %s: %s",
                          environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                          type(exc).__name__, exc)
                raise
            error = unwrap(exc)
            if isinstance(error, serr.DavpackError):
                code = status_for(error, environ.get("REQUEST_METHOD", "GET"))
            elif isinstance(error, DAVError):
                code = error.value
            else:
                code = 500
            if code >= 500:
                log.error("internal error answering %s %s", environ.get("REQUEST_METHOD"),
                          environ.get("PATH_INFO"), exc_info=sys.exc_info())
            yield from respond(environ, start_response, error, code)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
