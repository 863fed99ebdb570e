"""The content store: every byte davpack keeps goes through :func:`copy_hashed`.

Content is addressed by SHA-256, so identical bitstreams are stored once.  Writing is
two-phase so that nothing half-written is ever visible:

1. :meth:`ContentStore.stage` streams the bytes into a private staging file, enforcing the
   size limit and computing MD5, SHA-256 and CRC-32 in the same pass (fsync at the end).
   Bytes that arrive by pieces (an upload being received) go through
   :meth:`ContentStore.open_staging` instead, with the same hashing and fsync; and a
   stream that already has its bytes staged (a zip member copied while the zip arrived,
   see :class:`server.archive.MemberCopies`) hands that staged file over instead of being
   copied again.
2. :meth:`ContentStore.place` renames the staged file to its final, content-addressed name
   (atomic on POSIX) and fsyncs the directory.

Which staged files get placed, and when stored files may be removed, is decided by the
database (``StoredContent`` rows act as locks; see ``server.context``), never by the store
alone: the store knows files, not references.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
    hasher = Hasher(limit=limit, name=name)
    buffers = (memoryview(bytearray(block_size)), memoryview(bytearray(block_size)))
    turn = 0
    readinto = getattr(source, "readinto", None)
    while True:
        if readinto is not None:
            view = buffers[turn]
            turn ^= 1
            n = readinto(view)
            if not n:
                break
            chunk = view[:n]
        else:
            data = source.read(block_size)
            if not data:
                break
            chunk = memoryview(data)
        hasher.update(chunk)
        if target is not None:
            target.write(chunk)
    return hasher.digests()


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
    """A fully written, fsynced file in the staging area, not yet visible in the store."""

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
    may run on another thread) fsyncs and hands over the :class:`StagedContent`;
    :meth:`discard` removes the file."""

    def __init__(self, path: Path, fd: int, *, fsync: bool, limit: int | None,
                 name: str | None) -> None:
        self.path = path
        self.name = name
        self._out = os.fdopen(fd, "wb", buffering=0)
        self._fsync = fsync
        self._hasher = Hasher(limit=limit, name=name)

    def write(self, chunk: bytes | memoryview) -> None:
        self._hasher.update(chunk)
        self._out.write(chunk)

    def finish(self) -> StagedContent:
        try:
            digests = self._hasher.digests()
            if self._fsync:
                os.fsync(self._out.fileno())
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
        """Make staged content visible under its SHA-256 (replacing a damaged copy)."""

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
                if self.fsync:
                    os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedContent(path=path, digests=digests, name=name)

    def open_staging(self, *, limit: int | None = None,
                     name: str | None = None) -> StagingFile:
        fd, path = self._new_staging_file()
        return StagingFile(path, fd, fsync=self.fsync, limit=limit, name=name)

    def _new_staging_file(self) -> tuple[int, Path]:
        fd, tmp = tempfile.mkstemp(dir=self.staging, prefix="stage-")
        return fd, Path(tmp)

    def place(self, staged: StagedContent) -> None:
        final = self._path(staged.digests.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, final)
        if self.fsync:
            _fsync_dir(final.parent)

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
            _fsync_dir(path.parent)

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
