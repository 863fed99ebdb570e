"""State shared by the HTTP layer: per application (:class:`Runtime`) and per request
(:class:`RequestState`).

cheroot serves requests from a pool of threads; everything in :class:`Runtime` is
either immutable or guarded by a lock.  A request's database access goes through one
lazily opened *read* unit of work (:meth:`RequestState.read`), released before long
transfers and before any write unit of work opens, and closed when the response ends.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from packagers.registry import Registry
from server.context import Context, Repository
from server.http.wsgi import Environ

STATE_KEY = "davpack.request"


@dataclass
class Pending:
    """A name a client created (LOCK or empty PUT) before sending the real upload; once
    the upload was ingested, ``deposit`` is the object it made (the name then stays
    visible for a while as that object's package)."""

    container: uuid.UUID
    name: str
    created: float
    owner: uuid.UUID | None
    deposit: uuid.UUID | None = None
    deposited_at: float | None = None
    kept: Kept | None = None


@dataclass(frozen=True)
class Kept:
    """The bytes of an upload, kept as received for a while under the upload's name."""

    path: Path
    size: int
    sha256: str
    content_type: str | None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class PendingUploads:
    """Lock-null placeholders: visible in listings, found by path, expiring.

    davfs2, Finder and Windows create a file by LOCKing its URL or PUTting zero bytes
    before the real PUT; the name must exist in between, or the client gives up.  After
    the upload the name is kept ``deposit_ttl`` seconds more, so the UNLOCK and the
    client's check of what it uploaded find it.
    """

    def __init__(self, ttl: float = 3600.0, deposit_ttl: float = 900.0) -> None:
        self.ttl = ttl
        self.deposit_ttl = deposit_ttl
        self._lock = threading.Lock()
        self._items: dict[tuple[uuid.UUID, str], Pending] = {}

    def _expired(self, entry: Pending, now: float) -> bool:
        if entry.deposited_at is not None:
            return now - entry.deposited_at > self.deposit_ttl
        return now - entry.created > self.ttl

    def _expire(self, now: float) -> None:
        for key in [k for k, v in self._items.items() if self._expired(v, now)]:
            self._drop(key)

    def _drop(self, key: tuple[uuid.UUID, str]) -> None:
        entry = self._items.pop(key, None)
        if entry is not None and entry.kept is not None:
            entry.kept.discard()

    def add(self, container: uuid.UUID, name: str, owner: uuid.UUID | None) -> Pending:
        now = time.time()
        with self._lock:
            self._expire(now)
            existing = self._items.get((container, name))
            if existing is not None and existing.deposit is None:
                return existing
            pending = Pending(container, name, now, owner)
            self._items[(container, name)] = pending
            return pending

    def get(self, container: uuid.UUID, name: str) -> Pending | None:
        with self._lock:
            self._expire(time.time())
            return self._items.get((container, name))

    def entries(self, container: uuid.UUID) -> list[Pending]:
        with self._lock:
            self._expire(time.time())
            return sorted((v for (c, _), v in self._items.items() if c == container),
                          key=lambda p: p.name)

    def mark_deposited(self, container: uuid.UUID, name: str, created: uuid.UUID,
                       when: float, kept: Kept | None) -> None:
        with self._lock:
            old = self._items.get((container, name))
            if old is not None and old.kept is not None:
                old.kept.discard()
            entry = Pending(container, name, when, old.owner if old else None,
                            deposit=created, deposited_at=when, kept=kept)
            self._items[(container, name)] = entry

    def remove(self, container: uuid.UUID, name: str) -> None:
        with self._lock:
            self._drop((container, name))

    def clear(self) -> None:
        with self._lock:
            for key in list(self._items):
                self._drop(key)


@dataclass(frozen=True, slots=True)
class PackageInfo:
    size: int
    etag: str
    mime_type: str
    file_name: str = ""
    last_modified: datetime | None = None


class PackageInfoCache:
    """Sizes and ETags of generated packages, so a listing does not rebuild them.

    Keys include the object's ``last_modified`` (any change to an item, its bundles,
    files, metadata or policies touches it), the packager, its options and the person
    asking (a packager may leave out what they cannot read).  Entries also expire.
    """

    def __init__(self, capacity: int = 50_000, ttl: float = 3600.0) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[Any, ...], tuple[float, PackageInfo]] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> PackageInfo | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            stamp, info = found
            if time.time() - stamp > self.ttl:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return info

    def put(self, key: tuple[Any, ...], info: PackageInfo) -> None:
        with self._lock:
            self._items[key] = (time.time(), info)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


@dataclass
class Runtime:
    """What every request of one application instance shares."""

    repo: Repository
    registry: Registry
    default_package: str
    block_size: int
    staging_dir: Path
    max_upload_size: int
    deposit_ttl: float = 900.0
    pending: PendingUploads = field(default_factory=PendingUploads)
    package_info: PackageInfoCache = field(default_factory=PackageInfoCache)
    fast_listings: bool = True
    """PROPFIND Depth 1 on folders answered by :mod:`server.http.propfind`; when off,
    WsgiDAV's own handler answers (the tests compare the two)."""

    @classmethod
    def from_repository(cls, repo: Repository, registry: Registry) -> Runtime:
        config = repo.config
        staging = config.path("server.staging_dir")
        staging.mkdir(parents=True, exist_ok=True)
        deposit_ttl = float(config.get("server.deposit_ttl"))
        runtime = cls(repo=repo, registry=registry,
                      default_package=str(config.get("server.default_package")),
                      block_size=int(config.get("server.block_size")),
                      staging_dir=staging, max_upload_size=config.max_upload_size,
                      deposit_ttl=deposit_ttl,
                      pending=PendingUploads(deposit_ttl=deposit_ttl),
                      package_info=PackageInfoCache(
                          int(config.get("server.package_info_cache"))))
        runtime.clear_leftovers()
        return runtime

    def clear_leftovers(self) -> None:
        """Remove staged uploads, kept deposits and spooled packages that a stopped
        process left behind (they belong to no request any more)."""
        cutoff = time.time() - 60
        for pattern in ("upload-*", "deposit-*", "package-*"):
            for path in self.staging_dir.glob(pattern):
                try:
                    if path.stat().st_mtime >= cutoff:
                        continue
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink()
                except OSError:
                    pass


class RequestState:
    """Per request: who is asking, and a lazily opened read unit of work."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.actor: uuid.UUID | None = None
        self.login: str | None = None
        self._stack: ExitStack | None = None
        self._ctx: Context | None = None
        self.cache: dict[Any, Any] = {}

    @classmethod
    def of(cls, environ: Environ) -> RequestState:
        state = environ.get(STATE_KEY)
        if not isinstance(state, RequestState):
            raise RuntimeError("no davpack request state in the WSGI environ")
        return state

    @property
    def repo(self) -> Repository:
        return self.runtime.repo

    def read(self) -> Context:
        """The request's read-only unit of work (opened on first use)."""
        if self._ctx is None:
            stack = ExitStack()
            self._ctx = stack.enter_context(self.repo.context(self.actor, write=False))
            self._stack = stack
        return self._ctx

    def release(self) -> None:
        """End the read unit of work (before streaming, writing, or at the end)."""
        stack, self._stack, self._ctx = self._stack, None, None
        self.cache.clear()
        if stack is not None:
            stack.close()

    @contextmanager
    def write(self) -> Iterator[Context]:
        """A write unit of work for this person; the read unit is released first so a
        SQLite snapshot never hides what the write did."""
        self.release()
        with self.repo.context(self.actor, write=True) as ctx:
            yield ctx

    def close(self) -> None:
        self.release()
