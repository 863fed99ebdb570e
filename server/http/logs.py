"""One log line per request, with a request id; WsgiDAV's logging tamed into ours.

:class:`RequestLog` is the outermost WSGI layer.  It gives every request an id (the
client's ``X-Request-ID`` when it is short and plain, else a new one), returns it in the
``X-Request-ID`` response header, makes it available to every log record of the request
(:class:`RequestIdFilter`), fixes WsgiDAV's reason phrases (``422 Status``), sets up the
per-request state, and when the response has been sent writes one line to the
``davpack.access`` logger::

    127.0.0.1 admin@example.org "PUT /dav/Theses/x.zip" 201 0 in=1048576 0.412s id=9f3c…

:func:`configure` installs one stderr handler, text or JSON (``server.log_format``), and
sets WsgiDAV's loggers to warnings only (its own per-request lines are redundant).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from server.http.errors import status_line
from server.http.runtime import STATE_KEY, RequestState, Runtime
from server.http.wsgi import Environ, StartResponse, WSGIApp

access_log = logging.getLogger("davpack.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_local = threading.local()


def current_request_id() -> str | None:
    return getattr(_local, "request_id", None)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    EXTRAS = ("method", "path", "status", "bytes_out", "bytes_in", "duration", "user",
              "remote")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname, "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key in self.EXTRAS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure(log_format: str = "text", *, verbose: bool = False) -> None:
    """Route davpack's, cheroot's and WsgiDAV's records to one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in ("wsgidav", "cheroot"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
        logging.getLogger(name).propagate = True
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)


def _phrase_fixed(status: str) -> str:
    code, _, phrase = status.partition(" ")
    if phrase.strip() in ("", "Status") and code.isdigit():
        return status_line(int(code))
    return status


class _Response:
    """Wraps the application's iterable: counts bytes, logs and cleans up on close."""

    def __init__(self, log: RequestLog, environ: Environ, body: Iterable[bytes],
                 record: dict[str, Any]) -> None:
        self._log = log
        self._environ = environ
        self._body = body
        self._record = record
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._record["bytes_out"] += len(chunk)
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._log.finish(self._environ, self._record)


class RequestLog:
    """The outermost layer: request id, per-request state, access log."""

    def __init__(self, app: WSGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        given = environ.get("HTTP_X_REQUEST_ID") or ""
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        environ["davpack.request_id"] = request_id
        environ["davpack.mount"] = environ.get("SCRIPT_NAME", "").rstrip("/")
        environ[STATE_KEY] = RequestState(self.runtime)
        _local.request_id = request_id
        record: dict[str, Any] = {"status": None, "bytes_out": 0, "started": time.monotonic()}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status = _phrase_fixed(status)
            record["status"] = status
            headers = [*headers, ("X-Request-ID", request_id)]
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            self.finish(environ, record)
            raise
        return _Response(self, environ, body, record)

    def finish(self, environ: Environ, record: dict[str, Any]) -> None:
        state = environ.get(STATE_KEY)
        try:
            if isinstance(state, RequestState):
                state.close()
        finally:
            status = record["status"] or "000 (no response)"
            code = status.split(" ", 1)[0]
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            query = environ.get("QUERY_STRING")
            if query:
                path += "?" + query[:200]
            user = (state.login if isinstance(state, RequestState) else None) or "-"
            duration = time.monotonic() - record["started"]
            bytes_in = environ.get("CONTENT_LENGTH") or "-"
            access_log.info(
                '%s %s "%s %s" %s %d in=%s %.3fs', environ.get("REMOTE_ADDR", "-"), user,
                environ.get("REQUEST_METHOD"), path, code, record["bytes_out"], bytes_in,
                duration,
                extra={"method": environ.get("REQUEST_METHOD"), "path": path,
                       "status": int(code) if code.isdigit() else 0,
                       "bytes_out": record["bytes_out"], "bytes_in": bytes_in,
                       "duration": round(duration, 4), "user": user,
                       "remote": environ.get("REMOTE_ADDR"),
                       "request_id": environ.get("davpack.request_id")})
            _local.request_id = None
