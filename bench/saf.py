"""W3: Simple Archive Format import of ``items`` small items, on the command line and
over HTTP, in items/s.

* CLI: ``davpack import -a -c <collection> -s <batch> -m <mapfile> -q`` into a fresh
  repository (this import is the repository W4 exports and W6 lists);
* HTTP: POST of the same batch as a zip to a collection URL with ``?package=SAF``;
* the ceiling: the rows that import wrote (every table, counted) inserted again with
  ``sqlite3`` ``executemany`` in one transaction into an empty copy of the schema: the
  raw SQLite insert rate of the same rows, as items/s.

Target: >= 200 items/s on SQLite.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time
import uuid
from datetime import date, datetime
from typing import Any

from bench import data
from bench.context import BenchRun
from bench.harness import BenchRepo, PeakRSS, Row, transfer

TARGET = 200.0


def w3(run: BenchRun) -> list[Row]:
    s = run.settings
    imported = run.imported(s.items)
    cli_rate = s.items / imported.seconds
    rows, seconds = _raw_insert(run, imported.repo)
    per_item = (rows - imported.rows_before) / s.items
    ceiling = rows / seconds / per_item
    common = {"items": s.items, "bitstreams_per_item": data.SAF_FILES + 1,
              "rows_per_item": round(per_item, 1), "raw_insert_seconds": seconds,
              "raw_rows": rows}
    result = [Row("W3", f"SAF import of {s.items} items, CLI", cli_rate, "items/s",
                  ">= 200 items/s", cli_rate >= TARGET, ceiling,
                  "raw SQLite insert of the same rows", imported.peak_rss,
                  details={**common, "seconds": imported.seconds})]
    batch_zip = data.zip_folder(run.saf_batch(s.items), run.work / f"saf-{s.items}.zip")
    collection = run.collection("SAF over HTTP")
    with run.server() as server, PeakRSS(server.pid) as rss:
        started = time.perf_counter()
        code, _ = transfer(server.port, "POST", f"/handle/{collection}?package=SAF",
                           upload=batch_zip)
        seconds = time.perf_counter() - started
    if code != 201:
        raise RuntimeError(f"POST of the SAF zip: HTTP {code}")
    http_rate = s.items / seconds
    result.append(Row("W3", f"SAF import of {s.items} items, HTTP POST", http_rate,
                      "items/s", ">= 200 items/s", http_rate >= TARGET, ceiling,
                      "raw SQLite insert of the same rows", rss.peak,
                      details={**common, "seconds": seconds,
                               "zip_bytes": batch_zip.stat().st_size}))
    return result


def _raw_insert(run: BenchRun, source: BenchRepo) -> tuple[int, float]:
    """Every row of ``source`` inserted into an empty SQLite copy of the schema with
    ``executemany``, one transaction: (rows, seconds)."""
    from sqlalchemy import create_engine, select

    from server.models import Base

    target = run.work / "raw-insert.db"
    target.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{target}")
    Base.metadata.create_all(engine)
    engine.dispose()
    with source.open() as repo, repo.engine.connect() as conn:
        tables = [(t.name, len(t.columns),
                   [tuple(_plain(v) for v in row) for row in conn.execute(select(t))])
                  for t in Base.metadata.sorted_tables]
    db = sqlite3.connect(target, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        started = time.perf_counter()
        db.execute("BEGIN")
        for name, width, rows in tables:
            if rows:
                marks = ", ".join("?" * width)
                db.executemany(f'INSERT INTO "{name}" VALUES ({marks})', rows)
        db.execute("COMMIT")
        seconds = time.perf_counter() - started
    finally:
        db.close()
    return sum(len(rows) for _, _, rows in tables), seconds


def _plain(value: Any) -> Any:
    """A value as sqlite3 binds it (the shapes SQLAlchemy stores on SQLite)."""
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value
