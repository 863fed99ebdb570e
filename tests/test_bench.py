"""The bench suite's runner (``python -m bench``) on its smallest sizes: it runs the
chosen workloads, prints the one table and writes the documented JSON.  No timing is
asserted here; figures belong to ``make bench``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {"id", "workload", "figure", "unit", "target", "met", "baseline",
            "baseline_label", "ratio", "peak_rss", "error", "details", "lower_is_better"}


def _postgres_args() -> list[str]:
    """On the PostgreSQL leg the suite makes its own databases on the same server."""
    url = os.environ.get("DAVPACK_TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        return []
    server = url.split("://", 1)[1].rsplit("/", 1)[0]
    return ["--postgres", f"postgresql://{server}/postgres"]


def test_tiny_run_writes_the_table_and_the_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAVPACK_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--only", "W3,W6", "--items", "12",
         "--out", str(out), *_postgres_args()],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = list(out.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["workloads"] == ["W3", "W6"]
    assert summary["settings"]["items"] == 12
    assert summary["database"] == ("postgresql" if _postgres_args() else "sqlite")
    rows = summary["rows"]
    assert [r["id"] for r in rows] == ["W3", "W3", "W6"]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["error"] is None and row["figure"] > 0 and row["baseline"] > 0
        assert isinstance(row["met"], bool)
    assert rows[0]["details"]["rows_per_item"] > 0
    assert rows[2]["details"]["members"] == 24
    for name in ("W3", "W6"):
        per_workload = json.loads((run / f"{name}.json").read_text())
        assert per_workload["id"] == name and per_workload["rows"]
    table = done.stdout
    assert (run / "table.txt").read_text().strip() == table.split("\n\n")[0].strip()
    for heading in ("figure", "baseline", "ratio", "target", "status", "peak RSS"):
        assert heading in table
    assert "SAF import of 12 items, CLI" in table and "HTTP POST" in table
    assert "PROPFIND Depth 1, collection of 12 items" in table


def test_unknown_workload_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "W9"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown workload" in done.stderr
