"""Assemble the WSGI application from the repository.

The stack, outermost first::

    RequestLog            request id, per-request state, one access-log line
    Introspection         /-/health, /-/ready, /-/version, /-/packagers (no authentication)
    SwordApp              SWORD v2, every IRI below ``sword.root`` (server/sword)
    Mounts                other WSGI applications under their own prefix (tests)
    WsgiDAVApp            share routing: "/" is the repository, tests may add others
      ErrorMiddleware     one status table, JSON/text error bodies (replaces ErrorPrinter)
      Authenticator       HTTP Basic against EPeople; anonymous as policies allow
      PackageMiddleware   GET ?package=, PUT replace, POST ingest, upload limits
      BrowseMiddleware    HTML pages for browsers (replaces the directory browser)
      RequestResolver     WsgiDAV's method handlers over RepositoryProvider

Locks and dead properties are kept in memory (one process serves the repository).
"""

from __future__ import annotations

from typing import Any

from wsgidav.dav_provider import DAVProvider
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from packagers.registry import Registry, default_registry
from server.context import Repository
from server.http.auth import Authenticator, RepositoryDomainController
from server.http.browse import BrowseMiddleware
from server.http.errors import ErrorMiddleware
from server.http.introspection import Introspection
from server.http.logs import RequestLog
from server.http.package_mw import PackageMiddleware
from server.http.provider import RepositoryProvider
from server.http.runtime import Runtime
from server.http.wsgi import WSGIApp
from server.sword import make_sword_app


def dav_config(runtime: Runtime, extra_shares: dict[str, DAVProvider] | None = None
               ) -> dict[str, Any]:
    """The WsgiDAV configuration of the application (a plain dict, as WsgiDAV wants)."""
    mapping: dict[str, Any] = {"/": RepositoryProvider(runtime)}
    for share, provider in (extra_shares or {}).items():
        mapping[share] = provider
    return {
        "provider_mapping": mapping,
        "middleware_stack": [ErrorMiddleware, Authenticator, PackageMiddleware,
                             BrowseMiddleware, RequestResolver],
        "http_authenticator": {"domain_controller": RepositoryDomainController,
                               "accept_basic": True, "accept_digest": False,
                               "default_to_digest": False},
        "lock_storage": True,
        "property_manager": True,
        "block_size": runtime.block_size,
        "verbose": 1,
        "logging": {"enable": False},
        "dir_browser": {"enable": False},
        "add_header_MS_Author_Via": True,
        "suppress_version_info": True,
    }


class Mounts:
    """Dispatch ``/<prefix>`` and everything below it to another WSGI application
    (``SCRIPT_NAME`` grows by the prefix, ``PATH_INFO`` keeps the rest); the rest goes
    to WebDAV.  The mounted application sees the request id and the request state."""

    def __init__(self, app: WSGIApp, mounts: dict[str, WSGIApp]) -> None:
        self.app = app
        self.mounts = sorted(((p.rstrip("/"), a) for p, a in mounts.items()),
                             key=lambda pa: len(pa[0]), reverse=True)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.mounts:
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix):]
                return app(environ, start_response)
        return self.app(environ, start_response)


def make_app(repo: Repository, registry: Registry | None = None, *,
             extra_shares: dict[str, DAVProvider] | None = None,
             mounts: dict[str, WSGIApp] | None = None) -> WSGIApp:
    """The whole application; ``registry`` defaults to the installed packagers,
    ``extra_shares`` mounts more WsgiDAV providers (tests mount a filesystem share) and
    ``mounts`` other WSGI applications under a path prefix (outside WebDAV)."""
    registry = registry or default_registry()
    registry.check()
    runtime = Runtime.from_repository(repo, registry)
    app: WSGIApp = WsgiDAVApp(dav_config(runtime, extra_shares))
    if mounts:
        app = Mounts(app, mounts)
    app = make_sword_app(repo, registry, fallback=app)
    return RequestLog(Introspection(app, repo, registry=registry, runtime=runtime), runtime)
