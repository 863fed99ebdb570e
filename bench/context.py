"""The state one ``make bench`` run shares between workloads, so they chain.

* the **HTTP repository** (W1, W2, W3 over HTTP, W5, M) is served by one server;
* the **imported repository**: W3's command-line import of ``items`` SAF items (three
  bitstreams each) is what W4 exports and W6 lists; a smaller import of
  ``small_items`` gives W4 its growth point;
* the generated packages (an item's AIP saved once) are reused.

Anything a workload needs that an earlier one did not make is made on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench import data
from bench.harness import BenchRepo, Databases, Server, add_admin, count_rows, transfer

HTTP_COLLECTIONS = ["Big items", "Ingested", "SAF over HTTP", "Concurrent", "Deposits"]


@dataclass
class Settings:
    size: int
    big_size: int
    files: int
    items: int
    small_items: int
    duration: float
    clients: int
    runs: int


@dataclass
class Imported:
    """A repository filled by ``davpack import``: where, into which collection, and the
    import's own figures (W3 reports them)."""

    repo: BenchRepo
    collection: str
    items: int
    seconds: float
    peak_rss: int
    rows_before: int  # rows in every table before the import


@dataclass
class BenchRun:
    settings: Settings
    work: Path
    databases: Databases
    _http: BenchRepo | None = None
    _handles: dict[str, str] = field(default_factory=dict)
    _packages: dict[int, Path] = field(default_factory=dict)
    _imported: dict[int, Imported] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)

    # -- the HTTP repository -----------------------------------------------------------

    def http_repo(self) -> BenchRepo:
        if self._http is None:
            repo = BenchRepo.create(self.work, "http", self.databases)
            with repo.open() as opened:
                add_admin(opened)
                self._handles = data.structure(opened, HTTP_COLLECTIONS)
            self._http = repo
        return self._http

    def collection(self, name: str) -> str:
        self.http_repo()
        return self._handles[name]

    def server(self) -> Server:
        """A server over the HTTP repository (start it with ``with``)."""
        return Server(self.http_repo(), self.work / "fs")

    def package(self, size: int, files: int) -> Path:
        """The AIP of an item of ``files`` random bitstreams totalling ``size`` bytes, as
        the server disseminates it (the file is also in the filesystem share)."""
        if size not in self._packages:
            repo = self.http_repo()
            with repo.open() as opened:
                handle = data.item_of_random_files(
                    opened, self.collection("Big items"), f"{size} bytes", size, files,
                    self.work / "scratch.bin")
            target = self.work / "fs" / f"item-{size}.zip"
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.server() as server:
                code, _ = transfer(server.port, "GET", f"/handle/{handle}", download=target)
            if code != 200:
                raise RuntimeError(f"GET of the generated item's AIP: HTTP {code}")
            self._handles[f"item-{size}"] = handle
            self._packages[size] = target
        return self._packages[size]

    def item_handle(self, size: int) -> str:
        return self._handles[f"item-{size}"]

    # -- imported repositories ---------------------------------------------------------

    def imported(self, items: int) -> Imported:
        """A repository into which ``davpack import`` brought ``items`` SAF items."""
        if items not in self._imported:
            repo = BenchRepo.create(self.work, f"imported-{items}", self.databases)
            with repo.open() as opened:
                add_admin(opened)
                collection = data.structure(opened, ["Imported"])["Imported"]
            batch = self.saf_batch(items)
            before = count_rows(repo)
            seconds, peak = repo.cli("import", "-a", "-c", collection, "-s", str(batch),
                                     "-m", str(repo.directory / "mapfile"), "-q")
            lines = len((repo.directory / "mapfile").read_text().splitlines())
            if lines != items:
                raise RuntimeError(f"the mapfile lists {lines} items, not {items}")
            self._imported[items] = Imported(repo, collection, items, seconds, peak,
                                             before)
        return self._imported[items]

    def saf_batch(self, items: int) -> Path:
        batch = self.work / f"saf-{items}"
        if not batch.exists():
            data.saf_batch(batch, items)
        return batch
