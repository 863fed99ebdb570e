"""``/-/`` introspection endpoints, answered before authentication (they reveal nothing).

``/-/health``: the process answers.  ``/-/ready``: the database answers and the store can
take new content.  ``/-/version``: versions and the URLs a client needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import text

from server import __version__
from server.context import Repository

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PREFIX = "/-/"


def json_response(start_response: StartResponse, status: str, body: Any) -> list[bytes]:
    payload = json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
    start_response(status, [("Content-Type", "application/json; charset=utf-8"),
                            ("Content-Length", str(len(payload))),
                            ("Cache-Control", "no-store")])
    return [payload]


class Introspection:
    """WSGI middleware: serves ``/-/...`` itself, passes everything else to ``app``."""

    def __init__(self, app: WSGIApp, repo: Repository,
                 extra: dict[str, Callable[[], Any]] | None = None) -> None:
        self.app = app
        self.repo = repo
        self.extra = extra or {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return json_response(start_response, "405 Method Not Allowed",
                                 {"error": "only GET and HEAD"})
        name = path[len(PREFIX):].strip("/")
        if name == "health":
            return json_response(start_response, "200 OK", {"status": "ok"})
        if name == "ready":
            return self._ready(start_response)
        if name == "version":
            return json_response(start_response, "200 OK", self.version())
        if name in self.extra:
            return json_response(start_response, "200 OK", self.extra[name]())
        return json_response(start_response, "404 Not Found", {"error": f"no such page {path}"})

    def version(self) -> dict[str, Any]:
        base = str(self.repo.config.get("site.base_url")).rstrip("/")
        return {"davpack": __version__, "site_handle": self.repo.site_handle,
                "base_url": base, "database": self.repo.engine.dialect.name}

    def _ready(self, start_response: StartResponse) -> list[bytes]:
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
        return json_response(start_response, "200 OK" if ok else "503 Service Unavailable",
                             {"status": "ok" if ok else "unavailable", "checks": checks})
