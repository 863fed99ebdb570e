"""W1, W2 and M: large transfers against WsgiDAV's FilesystemProvider on the same server.

* W1: GET of a single-item AIP (built on the fly) against a FilesystemProvider GET of a
  file of the same bytes.  Target >= 0.9x.
* W2: POST ingest of that AIP into a collection (receive, hash, extract, store durably)
  against a FilesystemProvider PUT of the same bytes.  Target >= 0.4x (the machine's
  limit is about 0.43x: ingest writes every byte twice and hashes it).
* M: the server's peak RSS, sampled every 20 ms, during W1, W2, W4 and the ingest of a
  ``big_size`` package; "flat" compares that ingest's peak with W2's.
"""

from __future__ import annotations

from bench.context import BenchRun
from bench.harness import FS_SHARE, Row, median, timed_runs, transfer

RSS_BUDGET = 200 * 10**6
FLAT_SLACK = 16 * 2**20  # peak RSS may differ this much between package sizes


def w1(run: BenchRun) -> list[Row]:
    s = run.settings
    package = run.package(s.size, s.files)
    handle = run.item_handle(s.size)
    with run.server() as server:
        ours, moved, peak = timed_runs(s.runs, server.pid, lambda _run: transfer(
            server.port, "GET", f"/handle/{handle}"))
        base, _, base_peak = timed_runs(s.runs, server.pid, lambda _run: transfer(
            server.port, "GET", f"{FS_SHARE}/{package.name}"))
    rate, base_rate = moved / median(ours) / 1e6, moved / median(base) / 1e6
    run.peaks["W1"] = peak
    return [Row("W1", f"GET a {moved / 2**20:.0f} MiB single-item AIP", rate, "MB/s",
                ">= 0.9x", rate >= 0.9 * base_rate, base_rate, "FilesystemProvider GET",
                peak, details={"bytes": moved, "seconds": ours, "baseline_seconds": base,
                               "baseline_peak_rss": base_peak, "runs": s.runs})]


def _ingest(run: BenchRun, size: int, files: int, runs: int) -> tuple[
        int, list[float], int, list[float], int]:
    """POST the AIP of ``size`` bytes ``runs`` times, then PUT it to the filesystem
    share as often: (bytes, POST seconds, POST peak RSS, PUT seconds, PUT peak RSS)."""
    package = run.package(size, files)
    collection = run.collection("Ingested")
    with run.server() as server:
        ours, moved, peak = timed_runs(runs, server.pid, lambda _run: transfer(
            server.port, "POST", f"/handle/{collection}", upload=package))

        def fs_put(n: int) -> tuple[int, int]:
            done = transfer(server.port, "PUT", f"{FS_SHARE}/upload-{n}.zip", upload=package)
            (server.fs_dir / f"upload-{n}.zip").unlink(missing_ok=True)
            return done

        base, _, base_peak = timed_runs(runs, server.pid, fs_put)
    return moved, ours, peak, base, base_peak


def w2(run: BenchRun) -> list[Row]:
    s = run.settings
    moved, ours, peak, base, base_peak = _ingest(run, s.size, s.files, s.runs)
    rate, base_rate = moved / median(ours) / 1e6, moved / median(base) / 1e6
    run.peaks["W2"] = peak
    return [Row("W2", f"POST ingest of a {moved / 2**20:.0f} MiB item package", rate, "MB/s",
                ">= 0.4x", rate >= 0.4 * base_rate, base_rate, "FilesystemProvider PUT",
                peak, details={"bytes": moved, "seconds": ours, "baseline_seconds": base,
                               "baseline_peak_rss": base_peak, "runs": s.runs})]


def memory(run: BenchRun) -> list[Row]:
    s = run.settings
    moved, seconds, peak, _, _ = _ingest(run, s.big_size, s.files * max(1, s.big_size // s.size),
                                         1)
    peaks = {**run.peaks, "ingest-big": peak}
    small = run.peaks.get("W2")
    flat = small is None or peak <= small + FLAT_SLACK
    worst = max(peaks.values())
    return [Row("M", f"peak RSS of a {moved / 2**20:.0f} MiB ingest (and of W1, W2, W4)",
                peak / 1e6, "MB", "< 200 MB, flat", worst < RSS_BUDGET and flat,
                small / 1e6 if small else None, "peak of the W2 ingest", worst,
                details={"peaks": peaks, "big_bytes": moved, "big_seconds": seconds,
                         "flat": flat, "flat_slack": FLAT_SLACK}, lower_is_better=True)]
