"""W4: full-site AIP export, then restore into an empty repository, in items/s each way.

The repository is W3's command-line import (``items`` items, three bitstreams each); the
same is done for the ``small_items`` import to show the growth: "linear" means the rate
at ``items`` is at least 0.8x the rate at ``small_items``.  Both directions run the real
command line (``davpack packager -d -a`` / ``-r -a -f``) with its RSS sampled from /proc.

Targets: export >= 300 items/s, restore >= 100 items/s, linear.
"""

from __future__ import annotations

from typing import Any

from bench.context import BenchRun
from bench.harness import BenchRepo, Row

SITE = "123456789/0"
LINEAR = 0.8
TARGETS = {"export": 300.0, "restore": 100.0}


def _round_trip(run: BenchRun, items: int) -> dict[str, Any]:
    imported = run.imported(items)
    out = run.work / f"aip-{items}"
    out.mkdir(exist_ok=True)
    site_zip = out / "sitewide-aip.zip"
    export_s, export_rss = imported.repo.cli("packager", "-d", "-a", "-t", "AIP", "-i", SITE,
                                             str(site_zip))
    target = BenchRepo.create(run.work, f"restored-{items}", run.databases)
    restore_s, restore_rss = target.cli("packager", "-r", "-a", "-f", "-t", "AIP", "-i", SITE,
                                        str(site_zip))
    return {"items": items, "export_seconds": export_s, "export_peak_rss": export_rss,
            "restore_seconds": restore_s, "restore_peak_rss": restore_rss,
            "export_files": sum(1 for _ in out.iterdir()),
            "export_bytes": sum(p.stat().st_size for p in out.iterdir())}


def w4(run: BenchRun) -> list[Row]:
    s = run.settings
    small = _round_trip(run, s.small_items)
    large = _round_trip(run, s.items)
    rows = []
    for way in ("export", "restore"):
        rate = s.items / large[f"{way}_seconds"]
        small_rate = s.small_items / small[f"{way}_seconds"]
        linear = rate >= LINEAR * small_rate
        peak = large[f"{way}_peak_rss"]
        run.peaks[f"W4 {way}"] = peak
        rows.append(Row("W4", f"full-site AIP {way}, {s.items} items", rate, "items/s",
                        f">= {TARGETS[way]:.0f} items/s, linear",
                        rate >= TARGETS[way] and linear, small_rate,
                        f"same at {s.small_items} items", peak,
                        details={"linear": linear, "large": large, "small": small}))
    return rows
