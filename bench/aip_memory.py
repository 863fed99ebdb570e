"""Peak memory of AIP export and restore: one very large item, and a large hierarchy.

Each phase runs in its own process (so each peak is its own) and reports the process's peak
resident set size (``VmHWM`` from /proc/self/status, else ``ru_maxrss``).  The AIP
packager promises constant memory: a 2 GiB bitstream is streamed, never held; a collection
of 20 000 items is written and read as a stream of child references.  The table shows each
phase against a 200 MB budget.

Run the full sizes (about 15 minutes and 8 GB of disk on a small machine)::

    .venv/bin/python bench/aip_memory.py --big-size 2GiB+4099 --items 20000

Defaults are smaller for a quick look (256 MiB, 2 000 items).  ``--work DIR`` keeps the
repositories and packages somewhere else than a temporary directory (removed at the end
unless ``--keep``).  Repositories are SQLite databases with a filesystem store.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB = 200
PHASES = ("setup-big", "export-big", "restore-big", "setup-tree", "export-tree",
          "export-tree-zip", "restore-tree")


def parse_size(text: str) -> int:
    total = 0
    for part in text.split("+"):
        part = part.strip()
        units = {"GiB": 1024**3, "MiB": 1024**2, "KiB": 1024}
        for unit, factor in units.items():
            if part.endswith(unit):
                total += int(float(part[: -len(unit)]) * factor)
                break
        else:
            total += int(part)
    return total


def peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------
# Phases (each in a child process)


class Pattern(io.RawIOBase):
    def __init__(self, size: int, seed: int = 0) -> None:
        super().__init__()
        self._left = size
        self._block = bytes((i * 7919 + seed) % 251 for i in range(1 << 20))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left, len(self._block))
        buffer[:n] = self._block[:n]
        self._left -= n
        return n


def repository(directory: Path) -> Any:
    from server.config import load_config
    from server.context import Repository

    directory.mkdir(parents=True, exist_ok=True)
    config = load_config(environ={}, overrides={
        "database.url": f"sqlite:///{directory / 'davpack.db'}",
        "store.path": str(directory / "store"), "server.staging_dir": str(directory / "tmp"),
        "store.fsync": False})
    repo = Repository(config)
    repo.initialise()
    return repo


def setup_big(work: Path, size: int) -> dict[str, Any]:
    from server.services import metadata, objects

    repo = repository(work / "big-source")
    with repo.context(system=True) as ctx:
        collection = objects.create_collection(
            ctx, objects.create_community(ctx, None, "Big"), "Big", handle="123456789/9001")
        item = objects.create_item(ctx, collection)
        metadata.add(ctx, item, "dc.title", "One large bitstream")
        content = ctx.add_content(Pattern(size), name="big.bin")  # type: ignore[arg-type]
        objects.add_bitstream(ctx, objects.create_bundle(ctx, item, "ORIGINAL"), content,
                              name="big.bin")
        objects.install(ctx, item)
        (work / "big-item").write_text(str(item.id))
    return {"objects": 1, "bytes": size}


def export_big(work: Path) -> dict[str, Any]:
    import uuid

    from packagers.aip import AIPPackager
    from packagers.base import Operation
    from packagers.params import PackageParameters

    repo = repository(work / "big-source")
    item = uuid.UUID((work / "big-item").read_text())
    with AIPPackager().disseminate(Operation(repo, system=True), item,
                                   PackageParameters()) as package, \
            open(work / "big.zip", "wb") as out:
        written = package.write_to(out)
    return {"objects": 1, "bytes": written}


def restore_big(work: Path) -> dict[str, Any]:
    from packagers.aip import AIPPackager
    from packagers.base import IngestRequest, Mode, Operation, PackageSource
    from server.services import objects

    repo = repository(work / "big-target")
    with repo.context(system=True) as ctx:
        objects.create_collection(ctx, objects.create_community(ctx, None, "Big"), "Big",
                                  handle="123456789/9001")
    result = AIPPackager().ingest(Operation(repo, system=True),
                                  PackageSource(work / "big.zip"),
                                  IngestRequest(mode=Mode.RESTORE))
    return {"objects": len(result.objects), "bytes": (work / "big.zip").stat().st_size}


def setup_tree(work: Path, items: int) -> dict[str, Any]:
    from server import models as m
    from server.services import metadata, objects
    from server.services.metadata import Value

    repo = repository(work / "tree-source")
    with repo.context(system=True) as ctx:
        community = objects.create_community(ctx, None, "Large community")
        big = objects.create_collection(ctx, community, "Most items").id
        small = objects.create_collection(ctx, community, "Some items").id
    done = 0
    while done < items:
        with repo.context(system=True) as ctx:
            for _ in range(min(500, items - done)):
                target = big if done % 4 else small
                collection = ctx.session.get(m.Collection, target)
                item = objects.create_item(ctx, collection)
                metadata.add_values(ctx, item, [
                    Value("dc.title", f"Item number {done}", "en"),
                    Value("dc.contributor.author", f"Author {done % 97}, A."),
                    Value("dc.subject", "benchmark"),
                    Value("dc.date.issued", f"{1900 + done % 120}")])
                content = ctx.add_content(io.BytesIO(f"item {done}\n".encode() * 64),
                                          name="file.txt")
                objects.add_bitstream(ctx, objects.create_bundle(ctx, item, "ORIGINAL"),
                                      content, name="file.txt", mime_type="text/plain")
                objects.install(ctx, item)
                done += 1
            ctx.session.flush()
            ctx.session.expunge_all()
    return {"objects": items + 4, "bytes": 0}


def export_tree(work: Path) -> dict[str, Any]:
    from packagers.aip import AIPPackager
    from packagers.base import Operation
    from packagers.params import PackageParameters
    from server.services import objects

    repo = repository(work / "tree-source")
    with repo.context(write=False) as ctx:
        site = objects.site(ctx).id
    dest = work / "tree"
    shutil.rmtree(dest, ignore_errors=True)
    written = AIPPackager().disseminate_all(Operation(repo, system=True), site,
                                            PackageParameters(), dest)
    return {"objects": len(written), "bytes": sum(p.stat().st_size for p in written)}


def export_tree_zip(work: Path) -> dict[str, Any]:
    from packagers.aip import AIPPackager
    from packagers.base import Operation
    from packagers.params import PackageParameters
    from server.services import objects

    repo = repository(work / "tree-source")
    with repo.context(write=False) as ctx:
        site = objects.site(ctx).id
    with AIPPackager().disseminate(Operation(repo, system=True), site,
                                   PackageParameters([("all", "true")])) as package, \
            open(os.devnull, "wb") as out:
        written = package.write_to(out)
        assert written == package.size
    return {"objects": 0, "bytes": written}


def restore_tree(work: Path) -> dict[str, Any]:
    from packagers.aip import AIPPackager
    from packagers.base import IngestRequest, Mode, Operation, PackageSource

    repo = repository(work / "tree-target")
    result = AIPPackager().ingest(Operation(repo, system=True),
                                  PackageSource(work / "tree" / "SITE@123456789-0.zip"),
                                  IngestRequest(mode=Mode.REPLACE, recursive=True))
    return {"objects": len(result.objects), "bytes": 0}


def run_phase(name: str, work: Path, args: argparse.Namespace) -> None:
    started = time.monotonic()
    if name == "setup-big":
        facts = setup_big(work, args.big_size)
    elif name == "export-big":
        facts = export_big(work)
    elif name == "restore-big":
        facts = restore_big(work)
    elif name == "setup-tree":
        facts = setup_tree(work, args.items)
    elif name == "export-tree":
        facts = export_tree(work)
    elif name == "export-tree-zip":
        facts = export_tree_zip(work)
    else:
        facts = restore_tree(work)
    facts.update(phase=name, seconds=round(time.monotonic() - started, 1), peak_mb=peak_mb())
    print(json.dumps(facts))


# ---------------------------------------------------------------------------------------
# The parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-size", type=parse_size, default=parse_size("256MiB"),
                        help="size of the large bitstream, e.g. 2GiB+4099 (default 256MiB)")
    parser.add_argument("--items", type=int, default=2000,
                        help="items in the hierarchy (default 2000; the full run: 20000)")
    parser.add_argument("--work", type=Path, help="working directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args.phase, args.work, args)
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="aip-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"AIP memory benchmark: bitstream {args.big_size} bytes, {args.items} items, "
          f"work in {work}")
    print(f"{'phase':<16} {'objects':>8} {'bytes':>14} {'seconds':>8} {'peak RSS':>10}  "
          f"budget {BUDGET_MB} MB")
    failed = False
    try:
        for phase in PHASES:
            command = [sys.executable, __file__, "--phase", phase, "--work", str(work),
                       "--big-size", str(args.big_size), "--items", str(args.items)]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode != 0:
                print(f"{phase:<16} FAILED\n{done.stderr[-3000:]}")
                return 1
            facts = json.loads(done.stdout.strip().splitlines()[-1])
            verdict = "ok" if facts["peak_mb"] < BUDGET_MB else "OVER"
            failed |= verdict != "ok"
            print(f"{phase:<16} {facts['objects']:>8} {facts['bytes']:>14} "
                  f"{facts['seconds']:>8} {facts['peak_mb']:>7.1f} MB  {verdict}")
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
