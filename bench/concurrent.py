"""W5: ``clients`` concurrent clients for ``duration`` seconds, a fixed mix of requests.

Each client repeats the same cycle of ten requests (starting at its own offset):

==========  ====  ==================================  =====================================
operation   per   davpack share                       FilesystemProvider share (baseline)
==========  ====  ==================================  =====================================
GET         4     the client's item's package (AIP)   a file of the same bytes
PROPFIND    3     Depth 1 on the collection of the    Depth 1 on a folder of as many files
                  clients' items                      as that listing has members
PUT         2     the client's item's AIP, replacing  the client's file, replaced
POST / PUT  1     POST of a one-item SAF zip to a     PUT of the same bytes under a new name
                  collection (a new item)
==========  ====  ==================================  =====================================

The clients are threads (8 per process) in client processes on the same two cores as
the server, one keep-alive connection each.  Reported: requests/s, errors (any 5xx,
connection error or timeout), p50/p99 latency, per operation too.  Target: 0 errors and
>= 0.8x the baseline's requests/s.
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import data
from bench.context import BenchRun
from bench.harness import FS_SHARE, PeakRSS, Row, auth_header, percentile, transfer

MIX = ("GET", "PROPFIND", "GET", "PUT", "GET", "PROPFIND", "NEW", "GET", "PROPFIND", "PUT")
THREADS_PER_PROCESS = 8
TIMEOUT = 120.0


@dataclass(frozen=True)
class Plan:
    """What one client does: a path per operation and the bodies it sends."""

    get: str
    propfind: str
    put: str
    new: str  # a path, or a prefix ending in "/" for a new name each time
    new_method: str
    put_body: bytes
    new_body: bytes


def _request(conn: http.client.HTTPConnection, method: str, path: str,
             body: bytes | None, extra: dict[str, str]) -> int:
    headers = {"Authorization": auth_header(), **extra}
    if body is not None:
        headers["Content-Type"] = "application/zip"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    while response.read(1 << 20):
        pass
    return response.status


def _client(port: int, plan: Plan, offset: int, until: float,
            out: list[tuple[str, int, float]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    step = offset
    while time.time() < until:
        op = MIX[step % len(MIX)]
        step += 1
        if op == "GET":
            args: tuple[str, str, bytes | None, dict[str, str]] = ("GET", plan.get, None, {})
        elif op == "PROPFIND":
            args = ("PROPFIND", plan.propfind, None, {"Depth": "1"})
        elif op == "PUT":
            args = ("PUT", plan.put, plan.put_body, {})
        else:
            path = plan.new + f"{uuid.uuid4().hex}.zip" if plan.new.endswith("/") else plan.new
            args = (plan.new_method, path, plan.new_body, {})
        started = time.perf_counter()
        try:
            status = _request(conn, *args)
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        out.append((op, status, time.perf_counter() - started))
    conn.close()


def _process(port: int, plans: list[tuple[int, Plan]], until: float) -> list[
        tuple[str, int, float]]:
    """One client process: a thread per plan."""
    results: list[tuple[str, int, float]] = []
    threads = [threading.Thread(target=_client, args=(port, plan, offset, until, results))
               for offset, plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _drive(port: int, pid: int, plans: list[Plan], duration: float) -> tuple[
        list[tuple[str, int, float]], float, int]:
    groups = [list(enumerate(plans))[i:i + THREADS_PER_PROCESS]
              for i in range(0, len(plans), THREADS_PER_PROCESS)]
    until = time.time() + duration
    with PeakRSS(pid) as rss, multiprocessing.get_context("fork").Pool(len(groups)) as pool:
        started = time.perf_counter()
        parts = pool.starmap(_process, [(port, group, until) for group in groups])
        seconds = time.perf_counter() - started
    return [r for part in parts for r in part], seconds, rss.peak


def _summary(results: list[tuple[str, int, float]], seconds: float) -> dict[str, Any]:
    def stats(rows: list[tuple[str, int, float]]) -> dict[str, Any]:
        latencies = [r[2] for r in rows]
        return {"requests": len(rows), "errors": sum(1 for r in rows if r[1] == 0 or r[1] >= 500),
                "statuses": dict(Counter(str(r[1]) for r in rows)),
                "p50_ms": percentile(latencies, 0.5) * 1000,
                "p99_ms": percentile(latencies, 0.99) * 1000}

    return {**stats(results), "seconds": seconds, "per_second": len(results) / seconds,
            "per_operation": {op: stats([r for r in results if r[0] == op])
                              for op in dict.fromkeys(MIX)}}


def _fs_plans(run: BenchRun, clients: int, get_size: int, new_body: bytes) -> list[Plan]:
    folder, fresh = run.work / "fs" / "w5", run.work / "fs" / "w5-new"
    folder.mkdir(parents=True, exist_ok=True)
    fresh.mkdir(parents=True, exist_ok=True)
    for n in range(2 * clients):  # as many members as the collection listing has
        data.random_file(folder / f"member-{n}.zip", get_size)
    return [Plan(get=f"{FS_SHARE}/w5/member-{n}.zip", propfind=f"{FS_SHARE}/w5/",
                 put=f"{FS_SHARE}/w5/member-{n}.zip", new=f"{FS_SHARE}/w5-new/",
                 new_method="PUT", put_body=(folder / f"member-{n}.zip").read_bytes(),
                 new_body=new_body) for n in range(clients)]


def w5(run: BenchRun) -> list[Row]:
    s = run.settings
    repo = run.http_repo()
    collection, deposits = run.collection("Concurrent"), run.collection("Deposits")
    with repo.open() as opened:
        items = data.small_items(opened, collection, s.clients)
    deposit = data.zip_folder(data.saf_batch(run.work / "w5-saf", 1),
                              run.work / "w5-saf.zip").read_bytes()
    with run.server() as server:
        bodies = []
        for handle in items:
            target = run.work / "w5-aip.zip"
            code, _ = transfer(server.port, "GET", f"/handle/{handle}", download=target)
            if code != 200:
                raise RuntimeError(f"GET of a W5 item: HTTP {code}")
            bodies.append(target.read_bytes())
        ours = [Plan(get=f"/handle/{handle}", propfind=f"/handle/{collection}/",
                     put=f"/handle/{handle}", new=f"/handle/{deposits}?package=SAF",
                     new_method="POST", put_body=body, new_body=deposit)
                for handle, body in zip(items, bodies, strict=True)]
        results, seconds, peak = _drive(server.port, server.pid, ours, s.duration)
        mine = _summary(results, seconds)
        base_plans = _fs_plans(run, s.clients, len(bodies[0]), deposit)
        base_results, base_seconds, base_peak = _drive(server.port, server.pid, base_plans,
                                                       s.duration)
        base = _summary(base_results, base_seconds)
        failures = _failures(server.log_tail(20000)) if mine["errors"] else []
    rate, base_rate = mine["per_second"], base["per_second"]
    met = mine["errors"] == 0 and rate >= 0.8 * base_rate
    return [Row("W5", f"{s.clients} clients, mixed GET/PROPFIND/PUT/POST, {s.duration:.0f} s",
                rate, "req/s", "0 errors, >= 0.8x", met, base_rate,
                "FilesystemProvider, same mix", peak,
                details={"clients": f"{s.clients} threads in "
                                    f"{-(-s.clients // THREADS_PER_PROCESS)} processes on "
                                    "the server's cores",
                         "server_threads": server.threads, "mix": list(MIX),
                         "davpack": mine, "baseline": base, "baseline_peak_rss": base_peak,
                         "server_errors": failures, "server_log": str(server.log)})]


def _failures(log: str) -> list[str]:
    """The server log's lines about failed requests (5xx and tracebacks)."""
    keep = [line for line in log.splitlines()
            if " 50" in line or "Traceback" in line or "Error" in line]
    return keep[-40:]
