"""The content store: every byte davpack keeps goes through :func:`copy_hashed`.

Content is addressed by SHA-256, so identical bitstreams are stored once.  Writing is
two-phase so that nothing half-written is ever visible:

1. :meth:`ContentStore.stage` streams the bytes into a private staging file, enforcing the
   size limit and computing MD5, SHA-256 and CRC-32 in the same pass (fsync at the end).
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
    reading the rest.  Memory stays at one block whatever the size.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    crc = 0
    size = 0
    buf = bytearray(block_size)
    view = memoryview(buf)
    readinto = getattr(source, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(view)
            if not n:
                break
            chunk = view[:n]
        else:
            data = source.read(block_size)
            if not data:
                break
            chunk = memoryview(data)
            n = len(data)
        size += n
        if limit is not None and size > limit:
            raise SizeLimitExceeded(
                f"{name or 'content'} is larger than the limit of {limit} bytes",
                [Detail("size limit exceeded", file=name, expected=f"<= {limit}",
                        found=f"> {limit}")],
            )
        md5.update(chunk)
        sha.update(chunk)
        crc = zlib.crc32(chunk, crc)
        if target is not None:
            target.write(chunk)
    return Digests(size=size, md5=md5.hexdigest(), sha256=sha.hexdigest(), crc32=crc)


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


class ContentStore(ABC):
    """Where bitstream bytes live.  Implementations must make :meth:`place` atomic."""

    @abstractmethod
    def stage(self, source: BinaryIO, *, limit: int | None = None,
              name: str | None = None) -> StagedContent:
        """Stream ``source`` into the staging area; the caller places or discards it."""

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
        fd, tmp = tempfile.mkstemp(dir=self.staging, prefix="stage-")
        path = Path(tmp)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
