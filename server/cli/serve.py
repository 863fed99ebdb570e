"""``davpack serve``: the cheroot server, stopped gracefully by SIGTERM or Ctrl-C.

Settings for multi-GB transfers: WsgiDAV reads and writes in ``server.block_size``
blocks (1 MiB by default; its own default of 8 KiB costs several times the CPU), the
socket timeout is ``server.timeout`` (300 s: slow clients mid-upload are not cut off),
and a refused upload is not drained: when the application answers before reading a body
(401, 403, 413, 415...) and more than :data:`DRAIN_LIMIT` bytes are still to come, the
connection is closed instead of cheroot reading the rest.

TLS: set ``server.ssl_certificate`` and ``server.ssl_private_key`` (PEM files) and the
server speaks HTTPS through cheroot's builtin adapter (Python's ``ssl``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from cheroot import wsgi

from server.cli import open_repository

DRAIN_LIMIT = 1024 * 1024
"""Unread request body (bytes) beyond which a refused request's connection is closed."""


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve the repository over HTTP")
    serve.add_argument("--host", help="address to listen on (config server.host)")
    serve.add_argument("--port", type=int, help="port (config server.port; 0 = any free)")
    serve.add_argument("--threads", type=int, help="worker threads (config server.threads)")
    serve.set_defaults(handler=run)


class ClosingGateway(wsgi.Gateway_10):
    """Closes the connection instead of draining a large unread request body."""

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        remaining = getattr(self.req.rfile, "remaining", 0) or 0
        if remaining > DRAIN_LIMIT and not self.req.chunked_read:
            self.req.close_connection = True
            if not any(k.lower() == "connection" for k, _ in headers):
                headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)


def make_server(repo: Any, host: str, port: int, threads: int, *,
                app: Any = None) -> Any:
    """A cheroot server for ``repo`` (or for a ready-made ``app``), not yet started."""
    from server.http.app import make_app

    config = repo.config
    server = wsgi.Server((host, port), app if app is not None else make_app(repo),
                         numthreads=threads, timeout=int(config.get("server.timeout")),
                         server_name="davpack", request_queue_size=64,
                         accepted_queue_timeout=30)
    server.gateway = ClosingGateway
    server.max_request_body_size = 0  # the application enforces store.max_upload_size
    cert, key = config.get("server.ssl_certificate"), config.get("server.ssl_private_key")
    if cert and key:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(cert, key)
    return server


def run(args: argparse.Namespace) -> int:
    from server.http import logs

    repo = open_repository(args)
    config = repo.config
    logs.configure(str(config.get("server.log_format")), verbose=bool(args.verbose))
    host = args.host or config.get("server.host")
    port = config.get("server.port") if args.port is None else args.port
    threads = args.threads or config.get("server.threads")
    server = make_server(repo, host, port, threads)

    def stop(_signum: int, _frame: Any) -> None:
        # Leave the accept loop from the main thread; cleanup happens below.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server.prepare()
    bound_host, bound_port = server.bind_addr[:2]
    scheme = "https" if server.ssl_adapter else "http"
    print(f"davpack serving {scheme}://{bound_host}:{bound_port}/ "
          f"(database {repo.engine.dialect.name}, store {config.path('store.path')})",
          flush=True)
    print(f"SWORD service document: {scheme}://{bound_host}:{bound_port}"
          f"{config.get('sword.root')}", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        server.stop()
    print("davpack stopped", file=sys.stderr, flush=True)
    return 0
