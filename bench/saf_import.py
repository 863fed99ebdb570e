"""Benchmark: ``davpack import`` of a generated Simple Archive Format batch.

Generates N small items (a dublin_core.xml with a handful of values, a contents file and
K files of B random bytes each), sets up a fresh repository (SQLite by default) with one
collection, then times the real command line::

    davpack import -a -c <collection> -s <batch> -m <mapfile> -q

and prints items/s and the import process's peak RSS.  Generation and set-up are not
timed.  Everything lives in a temporary directory, removed at the end (``--keep`` keeps
it).  Example::

    .venv/bin/python bench/saf_import.py --items 10000
    .venv/bin/python bench/saf_import.py --items 2000 --files 3 --file-size 65536 --zip
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

_DC = """<?xml version="1.0" encoding="utf-8"?>
<dublin_core schema="dc">
  <dcvalue element="title" qualifier="none" language="en">Generated item {i}</dcvalue>
  <dcvalue element="contributor" qualifier="author">Author, Number {i}</dcvalue>
  <dcvalue element="contributor" qualifier="author">Second, Author</dcvalue>
  <dcvalue element="date" qualifier="issued">2024-01-{day:02d}</dcvalue>
  <dcvalue element="subject" qualifier="none" language="en">benchmarks</dcvalue>
  <dcvalue element="subject" qualifier="none" language="en">subject {mod}</dcvalue>
  <dcvalue element="description" qualifier="abstract" language="en">An abstract for item {i}, long enough to look like one; it says nothing at all.</dcvalue>
  <dcvalue element="type" qualifier="none">Article</dcvalue>
</dublin_core>
"""  # noqa: E501


def generate(batch: Path, items: int, files: int, size: int) -> None:
    for i in range(items):
        folder = batch / f"item_{i:05d}"
        folder.mkdir(parents=True)
        (folder / "dublin_core.xml").write_text(
            _DC.format(i=i, day=i % 28 + 1, mod=i % 17), encoding="utf-8")
        lines = []
        for k in range(files):
            name = f"file_{k}.bin"
            (folder / name).write_bytes(os.urandom(size))
            lines.append(f"{name}\tbundle:ORIGINAL\tdescription:part {k}"
                         + ("\tprimary:true" if k == 0 else ""))
        (folder / "contents").write_text("\n".join(lines) + "\n", encoding="utf-8")


def zip_batch(batch: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(batch.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(batch).as_posix())


def davpack_command() -> list[str]:
    script = Path(sys.executable).with_name("davpack")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())"]


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run to completion; (seconds, peak RSS in KiB of the child)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000, help="items (default 10000)")
    parser.add_argument("--files", type=int, default=1, help="files per item (default 1)")
    parser.add_argument("--file-size", type=int, default=2048, help="bytes per file")
    parser.add_argument("--zip", action="store_true", help="import a zip, not a directory")
    parser.add_argument("--no-fsync", action="store_true",
                        help="store.fsync: false (default: the production setting, true)")
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in the workdir)")
    parser.add_argument("--workdir", help="directory to work in (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="davpack-saf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        batch = work / "batch"
        t0 = time.perf_counter()
        generate(batch, args.items, args.files, args.file_size)
        source = ["-s", str(batch)]
        if args.zip:
            zip_batch(batch, work / "batch.zip")
            shutil.rmtree(batch)
            source = ["-s", str(work), "-z", "batch.zip"]
        print(f"generated {args.items} items x {args.files} file(s) of {args.file_size} B "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)
        config = {
            "database": {"url": args.database or f"sqlite:///{work / 'davpack.db'}"},
            "store": {"path": str(work / "store"), "fsync": not args.no_fsync},
            "server": {"staging_dir": str(work / "staging")},
        }
        config_path = work / "davpack.yaml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAVPACK_")}
        base = [*davpack_command(), "--config", str(config_path)]
        for setup in (["db", "upgrade"], ["community", "create", "Bench"],
                      ["collection", "create", "Bench items", "--community", "123456789/1"]):
            subprocess.run([*base, *setup], env=env, check=True, stdout=subprocess.DEVNULL)
        cmd = [*base, "import", "-a", "-c", "123456789/2", *source,
               "-m", str(work / "mapfile"), "-q"]
        seconds, rss_kib = run(cmd, env)
        lines = len((work / "mapfile").read_text(encoding="utf-8").splitlines())
        print(f"imported {lines} items in {seconds:.1f} s: {lines / seconds:.0f} items/s; "
              f"peak RSS {rss_kib / 1024:.0f} MiB "
              f"({'zip' if args.zip else 'directory'}, fsync {'off' if args.no_fsync else 'on'}, "
              f"{config['database']['url'].split(':')[0]})")
        if lines != args.items:
            print(f"MISMATCH: mapfile has {lines} lines for {args.items} items", file=sys.stderr)
            return 1
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
