"""The benchmark server (a child process of the suite): ``python -m bench.serve CONFIG FSDIR``.

davpack's application over the repository of ``CONFIG`` with WsgiDAV's FilesystemProvider
over ``FSDIR`` mounted at ``/-/bench-fs`` in the same application, on one cheroot server
made by ``davpack serve``'s own ``make_server`` (threads, block size and timeout from the
configuration).  Prints one JSON line (port, pid, threads) once it listens; SIGTERM stops it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any


def main(config_path: str, fs_dir: str) -> int:
    from wsgidav.fs_dav_provider import FilesystemProvider

    from bench.harness import FS_SHARE
    from server.cli.serve import make_server
    from server.config import load_config
    from server.context import Repository
    from server.http import logs
    from server.http.app import make_app

    repo = Repository(load_config(config_path, environ={}))
    logs.configure("text")
    app = make_app(repo, extra_shares={FS_SHARE: FilesystemProvider(fs_dir, fs_opts={})})
    threads = int(repo.config.get("server.threads"))
    server = make_server(repo, "127.0.0.1", 0, threads, app=app)

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server.prepare()
    print(json.dumps({"port": server.bind_addr[1], "pid": os.getpid(), "threads": threads}),
          flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        server.stop()
    repo.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
