"""``davpack serve``: the cheroot server, stopped gracefully by SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from server.cli import open_repository


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve the repository over HTTP")
    serve.add_argument("--host", help="address to listen on (config server.host)")
    serve.add_argument("--port", type=int, help="port (config server.port; 0 = any free)")
    serve.add_argument("--threads", type=int, help="worker threads (config server.threads)")
    serve.set_defaults(handler=run)


def make_server(repo: Any, host: str, port: int, threads: int) -> Any:
    from cheroot import wsgi

    from server.http.app import make_app

    config = repo.config
    server = wsgi.Server((host, port), make_app(repo), numthreads=threads,
                         timeout=int(config.get("server.timeout")),
                         server_name="davpack")
    cert, key = config.get("server.ssl_certificate"), config.get("server.ssl_private_key")
    if cert and key:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(cert, key)
    return server


def run(args: argparse.Namespace) -> int:
    repo = open_repository(args)
    config = repo.config
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
    try:
        server.serve()
    except KeyboardInterrupt:
        server.stop()
    print("davpack stopped", file=sys.stderr, flush=True)
    return 0
