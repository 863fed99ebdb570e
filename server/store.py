"""The content store: every byte davpack keeps goes through :func:`copy_hashed`.

Content is addressed by SHA-256, so identical bitstreams are stored once.  Writing is
two-phase so that nothing half-written is ever visible:

1. :meth:`ContentStore.stage` streams the bytes into a private staging file, enforcing the
   size limit and computing MD5, SHA-256 and CRC-32 in the same pass.
   Bytes that arrive by pieces (an upload being received) go through
   :meth:`ContentStore.open_staging` instead, with the same hashing; and a
   stream that already has its bytes staged (a zip member copied while the zip arrived,
   see :class:`server.archive.MemberCopies`) hands that staged file over instead of being
   copied again.
2. :meth:`ContentStore.place` renames the staged file to its final, content-addressed name
   (atomic on POSIX).
3. :meth:`ContentStore.sync` makes placed content durable -- its bytes and its directory
   entry -- for a whole batch at once; the unit of work calls it before the transaction
   that references the content commits (see ``server.context``).  Staged files that are
   discarded never need to be durable, so nothing is synced before this step.

Which staged files get placed, and when stored files may be removed, is decided by the
database (``StoredContent`` rows act as locks; see ``server.context``), never by the store
alone: the store knows files, not references.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from server.errors import ChecksumMismatch, ContentMissing, Detail, SizeLimitExceeded

BLOCK_SIZE = 1024 * 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Digests:
    """What one pass over a stream tells: its size and three checksums."""

    size: int
    md5: str
    sha256: str
    crc32: int

    @property
    def checksum(self) -> str:
        return f"sha256:{self.sha256}"


PARALLEL_MIN = 256 * 1024
"""Pieces at least this large have their MD5 computed on a worker thread: MD5 is the slowest
hash here (~490 MB/s against ~1.2 GB/s for SHA-256 with SHA-NI) and hashlib releases the
GIL, so the two run on two cores.  Smaller pieces are not worth the hand-over."""


def _new_md5_workers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                              thread_name_prefix="davpack-md5")


_MD5_WORKERS = _new_md5_workers()


def _md5_workers_after_fork() -> None:
    """A forked child has none of its parent's threads: the inherited pool would take work
    and never do it."""
    global _MD5_WORKERS
    _MD5_WORKERS = _new_md5_workers()


os.register_at_fork(after_in_child=_md5_workers_after_fork)


def size_limit_exceeded(name: str | None, limit: int) -> SizeLimitExceeded:
    """The error for content found larger than ``limit`` bytes."""
    return SizeLimitExceeded(
        f"{name or 'content'} is larger than the limit of {limit} bytes",
        [Detail("size limit exceeded", file=name, expected=f"<= {limit}", found=f"> {limit}")],
    )


class Hasher:
    """Size, MD5, SHA-256 and CRC-32 of bytes fed in order, with the size limit enforced.

    MD5 of a large piece runs on a worker thread while the caller goes on (SHA-256, CRC-32,
    writing, reading the next piece), so a piece passed to :meth:`update` must stay
    unchanged until the next :meth:`update` or :meth:`digests` call returns: alternate two
    buffers, or pass ``bytes``.  Each call waits for the previous MD5 piece first, so the
    pieces are hashed in order.
    """

    def __init__(self, *, limit: int | None = None, name: str | None = None) -> None:
        self.limit = limit
        self.name = name
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha = hashlib.sha256()
        self._crc = 0
        self._md5_pending: Future[None] | None = None

    def update(self, chunk: bytes | memoryview) -> None:
        self._wait_md5()
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise size_limit_exceeded(self.name, self.limit)
        if len(chunk) >= PARALLEL_MIN:
            self._md5_pending = _MD5_WORKERS.submit(self._md5.update, chunk)
        else:
            self._md5.update(chunk)
        self._sha.update(chunk)
        self._crc = zlib.crc32(chunk, self._crc)

    def _wait_md5(self) -> None:
        if self._md5_pending is not None:
            pending, self._md5_pending = self._md5_pending, None
            pending.result()

    def digests(self) -> Digests:
        self._wait_md5()
        return Digests(size=self.size, md5=self._md5.hexdigest(),
                       sha256=self._sha.hexdigest(), crc32=self._crc)


def copy_hashed(
    source: BinaryIO,
    target: BinaryIO | None,
    *,
    limit: int | None = None,
    block_size: int = BLOCK_SIZE,
    name: str | None = None,
) -> Digests:
    """Copy ``source`` to ``target`` (or just read it) in blocks, hashing as it goes.

    Raises :class:`SizeLimitExceeded` as soon as more than ``limit`` bytes arrive, without
    reading the rest.  Memory stays at two blocks whatever the size (one is being read
    while the worker hashing MD5 still reads the other; see :class:`Hasher`).
    """
    readinto = getattr(source, "readinto", None)
    if readinto is None:
        return _copy_reads(source, target, limit=limit, block_size=block_size, name=name)
    hasher = Hasher(limit=limit, name=name)
    turn = 0
    with _buffers(source, block_size) as buffers:
        while True:
            view = buffers[turn]
            turn ^= 1
            n = readinto(view)
            if not n:
                break
            hasher.update(view[:n])
            if target is not None:
                target.write(view[:n])
        return hasher.digests()


def _copy_reads(source: BinaryIO, target: BinaryIO | None, *, limit: int | None,
                block_size: int, name: str | None) -> Digests:
    """:func:`copy_hashed` for a source that can only ``read`` (each block a new bytes)."""
    hasher = Hasher(limit=limit, name=name)
    while True:
        data = source.read(block_size)
        if not data:
            break
        hasher.update(data)
        if target is not None:
            target.write(data)
    return hasher.digests()


_BUFFERS = threading.local()


@contextmanager
def _buffers(source: BinaryIO, block_size: int) -> Iterator[tuple[memoryview, memoryview]]:
    """Two buffers to read ``source`` into: sized to a small regular file (one read takes it
    all), else this thread's two ``block_size`` buffers, reused from call to call --
    allocating and zeroing 2 MiB costs more than copying a small file.  A call gives them
    back only once its MD5 worker is done with them (:meth:`Hasher.digests`)."""
    try:
        facts = os.fstat(source.fileno())
        size = facts.st_size if stat.S_ISREG(facts.st_mode) else block_size
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        size = block_size
    if size < block_size:
        small = size + 1  # the one more byte a read finds missing ends the copy
        yield memoryview(bytearray(small)), memoryview(bytearray(small))
        return
    pairs: dict[int, tuple[memoryview, memoryview]] = _BUFFERS.__dict__.setdefault("free", {})
    pair = pairs.pop(block_size, None)  # absent while a copy on this thread holds it
    if pair is None:
        pair = (memoryview(bytearray(block_size)), memoryview(bytearray(block_size)))
    yield pair
    pairs[block_size] = pair


def verify_expected(digests: Digests, *, name: str | None, md5: str | None = None,
                    sha256: str | None = None, size: int | None = None) -> None:
    """Compare declared facts with measured ones; raise one error listing every mismatch."""
    problems = []
    if size is not None and size != digests.size:
        problems.append(Detail("size does not match", file=name, field="size",
                               expected=str(size), found=str(digests.size)))
    if md5 is not None and md5.lower() != digests.md5:
        problems.append(Detail("MD5 checksum does not match", file=name, field="md5",
                               expected=md5.lower(), found=digests.md5))
    if sha256 is not None and sha256.lower() != digests.sha256:
        problems.append(Detail("SHA-256 checksum does not match", file=name, field="sha256",
                               expected=sha256.lower(), found=digests.sha256))
    if problems:
        raise ChecksumMismatch(f"{name or 'content'} does not match its declared checksum",
                               problems)


@dataclass
class StagedContent:
    """A fully written file in the staging area, not yet visible in the store."""

    path: Path
    digests: Digests
    name: str | None = None

    def discard(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class StagingFile:
    """Content written into the staging area piece by piece, hashed as it goes: what
    :meth:`ContentStore.stage` does for a stream it reads, for a caller that pushes bytes
    (see :class:`Hasher` for how long a piece must stay unchanged).  :meth:`finish` (which
    may run on another thread) hands over the :class:`StagedContent`; :meth:`discard`
    removes the file."""

    def __init__(self, path: Path, fd: int, *, limit: int | None, name: str | None) -> None:
        self.path = path
        self.name = name
        self._out = os.fdopen(fd, "wb", buffering=0)
        self._hasher = Hasher(limit=limit, name=name)

    def write(self, chunk: bytes | memoryview) -> None:
        self._hasher.update(chunk)
        self._out.write(chunk)

    def finish(self) -> StagedContent:
        try:
            digests = self._hasher.digests()
            self._out.close()
        except BaseException:
            self.discard()
            raise
        return StagedContent(path=self.path, digests=digests, name=self.name)

    def discard(self) -> None:
        self._out.close()
        self.path.unlink(missing_ok=True)


class ContentStore(ABC):
    """Where bitstream bytes live.  Implementations must make :meth:`place` atomic."""

    @abstractmethod
    def stage(self, source: BinaryIO, *, limit: int | None = None,
              name: str | None = None) -> StagedContent:
        """Stream ``source`` into the staging area; the caller places or discards it."""

    @abstractmethod
    def open_staging(self, *, limit: int | None = None,
                     name: str | None = None) -> StagingFile:
        """A staging file to push bytes into (the caller finishes or discards it)."""

    @abstractmethod
    def place(self, staged: StagedContent) -> None:
        """Make staged content visible under its SHA-256 (replacing a damaged copy); it is
        durable only once :meth:`sync` has run for it."""

    @abstractmethod
    def sync(self, keys: Collection[str]) -> None:
        """Make placed content durable, bytes and directory entries, for many keys at once
        (before the transaction that references them commits)."""

    @abstractmethod
    def open(self, sha256: str) -> BinaryIO:
        """Open stored content for streamed reading; :class:`ContentMissing` if absent."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove stored content; only the garbage collector calls this, under its lock."""

    @abstractmethod
    def iter_keys(self) -> Iterator[str]:
        """Every SHA-256 present in the store (for fixity and orphan reports)."""

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path to the content when there is one (for zero-copy sends)."""
        return None

    @abstractmethod
    def check_writable(self) -> None:
        """Raise OSError when the store cannot take new content (readiness probe)."""


class FilesystemStore(ContentStore):
    """Content under ``root/ab/cd/<sha256>``, staging under ``root/.staging`` (same device)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True,
                 block_size: int = BLOCK_SIZE) -> None:
        self.root = Path(root)
        self.staging = self.root / ".staging"
        self.fsync = fsync
        self.block_size = block_size
        self.staging.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if not _SHA256_RE.match(sha256):
            raise ValueError(f"not a SHA-256 key: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def stage(self, source: BinaryIO, *, limit: int | None = None,
              name: str | None = None) -> StagedContent:
        copy = _staged_copy(source, self.staging)
        if copy is not None:
            if limit is not None and copy.digests.size > limit:
                copy.discard()
                raise size_limit_exceeded(name, limit)
            return StagedContent(path=copy.path, digests=copy.digests, name=name)
        fd, path = self._new_staging_file()
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                digests = copy_hashed(source, out, limit=limit, block_size=self.block_size,
                                      name=name)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedContent(path=path, digests=digests, name=name)

    def open_staging(self, *, limit: int | None = None,
                     name: str | None = None) -> StagingFile:
        fd, path = self._new_staging_file()
        return StagingFile(path, fd, limit=limit, name=name)

    def _new_staging_file(self) -> tuple[int, Path]:
        fd, tmp = tempfile.mkstemp(dir=self.staging, prefix="stage-")
        return fd, Path(tmp)

    def place(self, staged: StagedContent) -> None:
        final = self._path(staged.digests.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, final)

    def sync(self, keys: Collection[str]) -> None:
        """One ``syncfs`` of the store's file system for a batch (where there is one: a
        file's fsync costs a journal commit, some milliseconds, even back to back), else an
        fsync of each file and then of each directory holding one."""
        if not self.fsync or not keys:
            return
        if len(keys) >= SYNCFS_MIN and _syncfs(self.root):
            return
        paths = [self._path(key) for key in keys]
        for path in paths:
            _fsync_path(path)
        for directory in {path.parent for path in paths}:
            _fsync_path(directory)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self._path(sha256), "rb")
        except FileNotFoundError as exc:
            raise ContentMissing(
                f"stored content {sha256} is missing from the store",
                [Detail("content missing", field="sha256", expected=sha256)],
            ) from exc

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        path = self._path(sha256)
        path.unlink(missing_ok=True)
        if self.fsync and path.parent.exists():
            _fsync_path(path.parent)

    def iter_keys(self) -> Iterator[str]:
        for first in sorted(self.root.iterdir()):
            if first.name.startswith(".") or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for entry in sorted(second.iterdir()):
                    if _SHA256_RE.match(entry.name):
                        yield entry.name

    def local_path(self, sha256: str) -> Path | None:
        return self._path(sha256)

    def check_writable(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.staging, prefix="probe-")
        os.close(fd)
        os.unlink(tmp)

    def clear_staging(self, older_than_seconds: float = 0) -> int:
        """Remove staging files left by crashed writers; returns how many went."""
        import time

        removed = 0
        now = time.time()
        for entry in self.staging.iterdir():
            if now - entry.stat().st_mtime >= older_than_seconds:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
        return removed


def _staged_copy(source: BinaryIO, staging: Path) -> StagedContent | None:
    """The staged copy a stream hands over instead of its bytes, if it has one.

    A member stream of an archive whose members were copied into staging while it arrived
    offers its copy through ``take_copy()`` -- only when nothing has been read from the
    stream yet and the copy matches the member exactly (see
    :class:`server.archive.MemberCopies`); the copy is then this caller's.
    """
    take_copy = getattr(source, "take_copy", None)
    if take_copy is None:
        return None
    copy = take_copy()
    if copy is None:
        return None
    if not (isinstance(copy, StagedContent) and copy.path.parent == staging):
        raise TypeError(f"a member copy must be staged in {staging}: {copy!r}")
    return copy


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


SYNCFS_MIN = 8
"""Batches of at least this many files are synced with one ``syncfs`` (Linux)."""

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _syncfs(root: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``root``: every dirty file and directory
    there is written and flushed (and, since Linux 5.8, a write-back error is reported);
    False where the call is not available."""
    call = getattr(_LIBC, "syncfs", None)
    if call is None:
        return False
    fd = os.open(root, os.O_RDONLY)
    try:
        if call(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs of {root} failed: {os.strerror(code)}")
    finally:
        os.close(fd)
    return True
