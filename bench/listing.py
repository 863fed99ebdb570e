"""W6: PROPFIND Depth 1 on a collection of ``items`` items (W3's import), against a
FilesystemProvider PROPFIND on a folder of as many files, on the same server.

The first request reaches a freshly started server (nothing cached: every package's size
and ETag is computed); then ``runs`` more, whose median is the warm figure.  The figure
is the first (what a file manager opening the folder waits for); every listing must hold
one response per member.  Target: < 1 s and faster than the baseline.
"""

from __future__ import annotations

import time

from lxml import etree

from bench import data
from bench.context import BenchRun
from bench.harness import FS_SHARE, PeakRSS, Row, Server, median, transfer

LIMIT_SECONDS = 1.0


def _listing(server: Server, path: str, runs: int, expected: int, target: str) -> tuple[
        float, list[float], int]:
    """(first seconds, later seconds, peak RSS) of PROPFIND Depth 1 on ``path``."""
    seconds: list[float] = []
    body = server.repo.directory / "propfind.xml"
    with PeakRSS(server.pid) as rss:
        for _ in range(1 + runs):
            started = time.perf_counter()
            code, _ = transfer(server.port, "PROPFIND", path, download=body,
                               headers={"Depth": "1"})
            seconds.append(time.perf_counter() - started)
            if code != 207:
                raise RuntimeError(f"PROPFIND {target}: HTTP {code}")
    found = sum(1 for _ in etree.iterparse(str(body), tag="{DAV:}response"))
    if found != expected:
        raise RuntimeError(f"PROPFIND {target}: {found} responses, not {expected}")
    return seconds[0], seconds[1:], rss.peak


def w6(run: BenchRun) -> list[Row]:
    s = run.settings
    imported = run.imported(s.items)
    fs = run.work / "fs-listing"
    folder = fs / "folder"
    if not folder.exists():
        folder.mkdir(parents=True)
        for n in range(s.items):
            (folder / f"file-{n:06d}.bin").write_bytes(b"x" * data.SAF_FILE_SIZE)
    runs = max(2, s.runs)
    with Server(imported.repo, fs) as server:
        # the collection itself, then a folder and a package file per item
        first, warm, peak = _listing(server, f"/handle/{imported.collection}/", runs,
                                     1 + 2 * s.items, "collection")
        base_first, base_warm, _ = _listing(server, f"{FS_SHARE}/folder/", runs,
                                            1 + s.items, "folder")
    met = first < LIMIT_SECONDS and first < base_first
    return [Row("W6", f"PROPFIND Depth 1, collection of {s.items} items", first, "s",
                "< 1 s, < baseline", met, base_first, "FilesystemProvider folder", peak,
                details={"first_seconds": first, "warm_seconds": warm,
                         "warm_median": median(warm), "baseline_first_seconds": base_first,
                         "baseline_warm_seconds": base_warm,
                         "baseline_warm_median": median(base_warm), "members": 2 * s.items},
                lower_is_better=True)]
