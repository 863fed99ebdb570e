"""``python -m bench``: run the workloads, print one table, write JSON.

See ``bench/README.md`` for what each workload measures and how to read the results.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import aip_tree, concurrent, listing, saf, transfer
from bench.context import BenchRun, Settings
from bench.harness import PG_ADMIN_URL, ROOT, Databases, Row, parse_size

# In the order they run: W4 and W6 use W3's import; M compares with W2's peak.
WORKLOADS: dict[str, Callable[[BenchRun], list[Row]]] = {
    "W1": transfer.w1, "W2": transfer.w2, "W3": saf.w3, "W4": aip_tree.w4,
    "W5": concurrent.w5, "W6": listing.w6, "M": transfer.memory,
}

PROFILES = {
    "full": Settings(size=parse_size("1GiB"), big_size=parse_size("4GiB"), files=100,
                     items=10_000, small_items=1_000, duration=60, clients=32, runs=3),
    "quick": Settings(size=parse_size("64MiB"), big_size=parse_size("256MiB"), files=10,
                      items=1_000, small_items=100, duration=10, clients=32, runs=1),
    "tiny": Settings(size=parse_size("1MiB"), big_size=parse_size("2MiB"), files=2,
                     items=20, small_items=5, duration=2, clients=4, runs=1),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="smaller sizes (64 MiB, 1 000 items, 10 s): a few minutes")
    size.add_argument("--tiny", action="store_true",
                      help="smallest sizes (1 MiB, 20 items, 2 s): checks the suite runs")
    parser.add_argument("--only", help="comma-separated workloads, e.g. W1,W6 "
                        f"(default: all of {','.join(WORKLOADS)})")
    parser.add_argument("--postgres", nargs="?", const=PG_ADMIN_URL, metavar="ADMIN_URL",
                        help="run on PostgreSQL: a database per repository is made and "
                        f"dropped through ADMIN_URL (default {PG_ADMIN_URL})")
    parser.add_argument("--size", type=parse_size, help="W1/W2 package bytes (1GiB)")
    parser.add_argument("--big-size", type=parse_size, help="M's ingest bytes (4GiB)")
    parser.add_argument("--files", type=int, help="bitstreams in the W1/W2 item (100)")
    parser.add_argument("--items", type=int, help="W3 import, W4 and W6 items (10000)")
    parser.add_argument("--small-items", type=int, help="W4's growth point (1000)")
    parser.add_argument("--duration", type=float, help="W5 seconds per share (60)")
    parser.add_argument("--clients", type=int, help="W5 clients (32)")
    parser.add_argument("--runs", type=int, help="runs per W1/W2 measurement, median (3)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench",
                        help="results go to OUT/<timestamp>/ (default var/bench)")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new "
                        "temporary one, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    args.only = [w.strip().upper() for w in args.only.split(",")] if args.only else \
        list(WORKLOADS)
    unknown = [w for w in args.only if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    base = PROFILES["quick" if args.quick else "tiny" if args.tiny else "full"]
    given = {name: getattr(args, name) for name in asdict(base)
             if getattr(args, name) is not None}
    return replace(base, **given)


def format_table(rows: list[Row], database: str) -> str:
    """The one table: figure, baseline, ratio (above 1 is better), target and status."""
    head = f"{'id':3} {'workload':52} {'figure':>16} {'baseline':>11} {'ratio':>6}  " \
           f"{'target':22} {'status':6} {'peak RSS':>9}"
    lines = [f"davpack bench on {database}", head, "-" * len(head)]
    for row in rows:
        figure = "ERROR" if row.error else f"{_num(row.figure)} {row.unit}"
        baseline = _num(row.baseline) if row.baseline is not None else "-"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        status = "ERROR" if row.error else "✓" if row.met else "✗"
        peak = f"{row.peak_rss / 1e6:.0f} MB" if row.peak_rss else "-"
        lines.append(f"{row.id:3} {row.workload[:52]:52} {figure:>16} {baseline:>11} "
                     f"{ratio:>6}  {row.target:22} {status:6} {peak:>9}")
        if row.baseline_label:
            lines.append(f"{'':4}{'baseline: ' + row.baseline_label:52}")
        if row.error:
            lines.append(f"{'':4}{row.error.splitlines()[0][:150]}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_of(args)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / stamp
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="davpack-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    databases = Databases(args.postgres)
    run = BenchRun(settings, work, databases)
    rows: list[Row] = []
    started = time.perf_counter()
    try:
        for name in args.only:
            began = time.perf_counter()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            try:
                produced = WORKLOADS[name](run)
            except Exception as exc:  # a workload that breaks is reported, the rest run
                produced = [Row(name, "failed", None, "", "", error=f"{exc}",
                                details={"traceback": traceback.format_exc()})]
            spent = time.perf_counter() - began
            for row in produced:
                row.details.setdefault("workload_seconds", spent)
            rows.extend(produced)
            _write(out / f"{name}.json", {"id": name, "seconds": spent,
                                           "rows": [r.as_json() for r in produced]})
            print(f"[bench] {name} done in {spent:.0f} s", file=sys.stderr, flush=True)
    finally:
        databases.drop_all()
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    summary = {"timestamp": stamp, "database": databases.kind, "seconds": total,
               "settings": asdict(settings), "workloads": args.only,
               "machine": {"python": platform.python_version(), "node": platform.node(),
                           "processor": platform.processor() or platform.machine()},
               "rows": [r.as_json() for r in rows]}
    _write(out / "summary.json", summary)
    table = format_table(rows, databases.kind)
    (out / "table.txt").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"\n{total:.0f} s in all; results in {out}")
    return 1 if any(r.error for r in rows) else 0


def _write(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2, default=str) + "\n", encoding="utf-8")
