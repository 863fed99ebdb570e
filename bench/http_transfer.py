"""Benchmark: large transfers through the WebDAV package server against WsgiDAV's own
FilesystemProvider, on the same server process and settings, in the same run.

* GET of a single-item AIP (``--files`` bitstreams of random data, ``--size`` bytes in
  all, the AIP built on the fly) against a FilesystemProvider GET of a file of the same
  bytes (the AIP itself, saved once).  Target ratio >= 0.9.
* POST ingest of that AIP into a collection (receive, hash, extract, store durably)
  against a FilesystemProvider PUT of the same bytes.  Target ratio >= 0.4.
* The server's peak RSS during each transfer (sampled from /proc every 20 ms).

The server runs in a child process (``make_server`` with the configured block size,
timeout and threads; the filesystem share is mounted in the same application at
``/-/bench-fs``); transfers use curl when it is installed (as the performance notes do),
else Python's http.client, streaming to and from disk.  Each measurement is the median of
``--runs`` runs.  Everything lives in a temporary directory, removed at the end
(``--keep`` keeps it)::

    .venv/bin/python bench/http_transfer.py            # 1 GiB
    .venv/bin/python bench/http_transfer.py --quick    # 64 MiB
    .venv/bin/python bench/http_transfer.py --size 4GiB --runs 1
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = ("bench@example.org", "bench")
FS_SHARE = "/-/bench-fs"


# ---------------------------------------------------------------------------------------
# The server side (run as a child process)


def _config(work: Path) -> dict[str, object]:
    return {
        "database.url": f"sqlite:///{work / 'davpack.db'}",
        "store.path": str(work / "store"),
        "server.staging_dir": str(work / "staging"),
        "server.deposit_ttl": 0,
    }


def prepare(work: Path, size: int, files: int) -> dict[str, str]:
    """A repository with one item of ``files`` random bitstreams totalling ``size``."""
    from server.config import load_config
    from server.context import Repository
    from server.services import authz, metadata, objects, people

    repo = Repository(load_config(environ={}, overrides=_config(work)))
    repo.initialise()
    per_file = max(1, size // files)
    with repo.context(system=True) as ctx:
        admin = people.create_person(ctx, ADMIN[0], password=ADMIN[1])
        people.add_member(ctx, authz.admin_group(ctx), admin)
        community = objects.create_community(ctx, None, "Bench")
        collection = objects.create_collection(ctx, community, "Big items")
        target = objects.create_collection(ctx, community, "Ingested")
        item = objects.create_item(ctx, collection)
        metadata.add(ctx, item, "dc.title", "One large item")
        bundle = objects.bundle_named(ctx, item, "ORIGINAL")
        scratch = work / "scratch.bin"
        for n in range(files):
            length = per_file if n < files - 1 else size - per_file * (files - 1)
            with open(scratch, "wb") as out:
                left = length
                while left:
                    chunk = os.urandom(min(left, 1 << 20))
                    out.write(chunk)
                    left -= len(chunk)
            with open(scratch, "rb") as stream:
                content = ctx.add_content(stream, name=f"part-{n:03d}.bin")
            objects.add_bitstream(ctx, bundle, content, name=f"part-{n:03d}.bin")
        scratch.unlink()
        objects.install(ctx, item)
        ids = {"item": str(item.handle), "collection": str(target.handle)}
    repo.dispose()
    return ids


def serve(work: Path, threads: int) -> None:
    """Child process: serve the prepared repository and the filesystem share."""
    from wsgidav.fs_dav_provider import FilesystemProvider

    from server.cli.serve import make_server
    from server.config import load_config
    from server.context import Repository
    from server.http.app import make_app

    repo = Repository(load_config(environ={}, overrides=_config(work)))
    share = work / "fs"
    share.mkdir(exist_ok=True)
    app = make_app(repo, extra_shares={FS_SHARE: FilesystemProvider(str(share),
                                                                    fs_opts={})})
    server = make_server(repo, "127.0.0.1", 0, threads, app=app)
    server.prepare()
    print(json.dumps({"port": server.bind_addr[1], "pid": os.getpid(),
                      "block_size": repo.config.get("server.block_size")}), flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        server.stop()


# ---------------------------------------------------------------------------------------
# The client side


class PeakRSS:
    """Samples a process's resident set size while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


@dataclass
class Result:
    label: str
    seconds: list[float]
    nbytes: int
    peak_rss: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.nbytes / self.median / 1e6


def _auth_header() -> str:
    return "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()


def transfer(port: int, method: str, path: str, upload: Path | None,
             download: Path | None) -> tuple[int, int]:
    """One request; returns (status, bytes moved)."""
    url = f"http://127.0.0.1:{port}{path}"
    if shutil.which("curl"):
        args = ["curl", "-s", "-S", "-u", f"{ADMIN[0]}:{ADMIN[1]}", "-X", method,
                "-o", str(download) if download else "/dev/null",
                "-w", "%{http_code} %{size_download} %{size_upload}"]
        if upload is not None:
            args += ["-T", str(upload), "-H", "Content-Type: application/zip",
                     "-H", "Expect:"]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
        code, down, up = out.split()
        return int(code), int(float(down)) + int(float(up))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": _auth_header()}
    moved = 0
    if upload is not None:
        headers["Content-Length"] = str(upload.stat().st_size)
        headers["Content-Type"] = "application/zip"
        with open(upload, "rb") as body:
            conn.request(method, path, body=body, headers=headers)
        moved = upload.stat().st_size
    else:
        conn.request(method, path, headers=headers)
    response = conn.getresponse()
    sink = open(download, "wb") if download else None  # noqa: SIM115
    try:
        while chunk := response.read(1 << 20):
            if sink:
                sink.write(chunk)
            if upload is None:
                moved += len(chunk)
    finally:
        if sink:
            sink.close()
        conn.close()
    return response.status, moved


def measure(label: str, runs: int, pid: int, step: object) -> Result:
    seconds: list[float] = []
    peak = 0
    nbytes = 0
    for run in range(runs):
        with PeakRSS(pid) as rss:
            started = time.perf_counter()
            code, moved = step(run)  # type: ignore[operator]
            seconds.append(time.perf_counter() - started)
        if code not in (200, 201, 204):
            raise SystemExit(f"{label}: HTTP {code}")
        nbytes = moved
        peak = max(peak, rss.peak)
    return Result(label, seconds, nbytes, peak)


def breakdown(work: Path, ids: dict[str, str], aip_file: Path) -> dict[str, float]:
    """In-process, with the server idle: the packager's own share of each transfer."""
    from packagers.base import IngestRequest, Operation, PackageSource
    from packagers.params import PackageParameters
    from packagers.registry import default_registry
    from server.config import load_config
    from server.context import Repository
    from server.services import handles
    from server.store import copy_hashed

    repo = Repository(load_config(environ={}, overrides=_config(work)))
    registry = default_registry()
    with repo.context(system=True) as ctx:
        item = handles.resolve(ctx, ids["item"])
        target = handles.resolve(ctx, ids["collection"])
        assert item is not None and target is not None
        item_id, target_id = item.id, target.id
    out: dict[str, float] = {}
    started = time.perf_counter()
    package = registry.disseminator("AIP")().disseminate(Operation(repo, system=True), item_id,
                                                          PackageParameters())
    out["AIP set-up before the first byte (disseminate)"] = time.perf_counter() - started
    package.close()
    started = time.perf_counter()
    with open(aip_file, "rb") as source, open(os.devnull, "wb") as sink:
        copy_hashed(source, sink)
    out["receiving: copy_hashed of the body (md5+sha256+crc32)"] = time.perf_counter() - started
    started = time.perf_counter()
    registry.ingester("AIP")().ingest(Operation(repo, system=True), PackageSource(aip_file),
                                      IngestRequest(parent=target_id))
    out["AIP ingest from the staged file"] = time.perf_counter() - started
    repo.dispose()
    return out


def parse_size(text: str) -> int:
    from server.config import parse_size as parse

    return parse(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="bytes in the item (default 1GiB)")
    parser.add_argument("--quick", action="store_true", help="64 MiB instead")
    parser.add_argument("--files", type=int, default=100, help="bitstreams in the item")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads")
    parser.add_argument("--workdir", help="where to work (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve), args.threads)
        return 0
    size = 64 * 1024 * 1024 if args.quick else parse_size(args.size)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="davpack-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    server: subprocess.Popen[str] | None = None
    try:
        t0 = time.perf_counter()
        ids = prepare(work, size, args.files)
        print(f"prepared {size} bytes in {args.files} files ({time.perf_counter() - t0:.1f}s)",
              file=sys.stderr)
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(work),
                                   "--threads", str(args.threads)],
                                  stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        port, pid = info["port"], info["pid"]
        idle = PeakRSS(pid).rss()
        aip_file = work / "fs" / "item.zip"
        code, _ = transfer(port, "GET", f"/handle/{ids['item']}", None, aip_file)
        assert code == 200, code
        aip_size = aip_file.stat().st_size

        results = [
            measure("GET AIP (generated)", args.runs, pid, lambda _run: transfer(
                port, "GET", f"/handle/{ids['item']}", None, None)),
            measure("GET file (FilesystemProvider)", args.runs, pid, lambda _run: transfer(
                port, "GET", f"{FS_SHARE}/item.zip", None, None)),
            measure("POST ingest AIP", args.runs, pid, lambda _run: transfer(
                port, "POST", f"/handle/{ids['collection']}", aip_file, None)),
        ]

        def fs_put(run: int) -> tuple[int, int]:
            result = transfer(port, "PUT", f"{FS_SHARE}/up-{run}.zip", aip_file, None)
            (work / "fs" / f"up-{run}.zip").unlink(missing_ok=True)
            return result

        results.append(measure("PUT file (FilesystemProvider)", args.runs, pid, fs_put))
        server.terminate()
        server.wait(timeout=60)
        server = None
        parts = breakdown(work, ids, aip_file)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    by = {r.label: r for r in results}
    print(f"\nhttp_transfer: AIP of {aip_size} bytes ({args.files} files), block size "
          f"{info['block_size']}, {args.runs} run(s) each, median; server idle RSS "
          f"{idle / 2**20:.0f} MiB\n")
    print(f"{'operation':34} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13}")
    for r in results:
        print(f"{r.label:34} {r.median:8.2f} {r.rate:8.0f} {r.peak_rss / 2**20:13.0f}")
    get_ratio = by["GET AIP (generated)"].rate / by["GET file (FilesystemProvider)"].rate
    put_ratio = by["POST ingest AIP"].rate / by["PUT file (FilesystemProvider)"].rate
    print(f"\n{'GET  AIP / FilesystemProvider GET':40} {get_ratio:5.2f}  (target >= 0.90)")
    print(f"{'POST ingest / FilesystemProvider PUT':40} {put_ratio:5.2f}  (target >= 0.40)")
    print("\nwhere the time goes (in-process, one run):")
    for label, seconds in parts.items():
        print(f"  {label:58} {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
