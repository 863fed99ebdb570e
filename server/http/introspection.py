"""``/-/`` introspection endpoints, answered before authentication (they reveal nothing
a deployment needs to hide).

``/-/health``: the process answers.  ``/-/ready``: the database answers and the store
can take new files.  ``/-/version``: versions and the URLs a
client needs.  ``/-/packagers``: every installed packager's name, aliases, MIME types,
SWORD packaging URIs, object types and options, plus the default package.  Other
``/-/`` paths go on to the application (and are 404 unless a test share lives there).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from server import __version__
from server.context import Repository
from server.http.wsgi import Environ, StartResponse, WSGIApp

if TYPE_CHECKING:
    from packagers.registry import Registry
    from server.http.runtime import Runtime

PREFIX = "/-/"


def json_response(start_response: StartResponse, status: str, body: Any,
                  method: str = "GET") -> list[bytes]:
    payload = json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
    start_response(status, [("Content-Type", "application/json; charset=utf-8"),
                            ("Content-Length", str(len(payload))),
                            ("Cache-Control", "no-store")])
    return [] if method == "HEAD" else [payload]


class Introspection:
    """WSGI middleware: serves the ``/-/`` pages itself, passes everything else on."""

    def __init__(self, app: WSGIApp, repo: Repository, *, registry: Registry | None = None,
                 runtime: Runtime | None = None,
                 extra: dict[str, Callable[[], Any]] | None = None) -> None:
        self.app = app
        self.repo = repo
        self.registry = registry
        self.runtime = runtime
        self.pages: dict[str, Callable[[], tuple[str, Any]]] = {
            "health": lambda: ("200 OK", {"status": "ok"}),
            "ready": self._ready,
            "version": lambda: ("200 OK", self.version()),
            "packagers": lambda: ("200 OK", self.packagers()),
        }
        for name, page in (extra or {}).items():
            self.pages[name] = lambda page=page: ("200 OK", page())  # type: ignore[misc]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.app(environ, start_response)
        name = path[len(PREFIX):].strip("/")
        page = self.pages.get(name)
        if page is None:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"),
                                                      ("Content-Length", "0")])
            return []
        status, body = page()
        return json_response(start_response, status, body, method)

    def version(self) -> dict[str, Any]:
        base = str(self.repo.config.get("site.base_url")).rstrip("/")
        from server.sword import service_document_url

        return {"davpack": __version__, "site_handle": self.repo.site_handle,
                "base_url": base, "database": self.repo.engine.dialect.name,
                "sword_service_document": service_document_url(self.repo.config)}

    def packagers(self) -> dict[str, Any]:
        records = [cls.describe() for cls in self.registry.all()] if self.registry else []
        default = self.runtime.default_package if self.runtime else None
        return {"default_package": default, "packagers": records}

    def _ready(self) -> tuple[str, Any]:
        checks: dict[str, str] = {}
        try:
            with self.repo.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # report, do not crash the probe
            checks["database"] = f"error: {type(exc).__name__}: {exc}"
        try:
            self.repo.store.check_writable()
            checks["store"] = "ok"
        except OSError as exc:
            checks["store"] = f"error: {exc}"
        ok = all(v == "ok" for v in checks.values())
        return ("200 OK" if ok else "503 Service Unavailable",
                {"status": "ok" if ok else "unavailable", "checks": checks})
