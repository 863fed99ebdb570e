"""Request bodies and credentials: the thin adapters between SWORD and the HTTP layer.

The WebDAV layer's staging (:func:`server.http.uploads.receive`: size limit before and
while reading, framing checks, ``Content-MD5`` in hex or base64, ``Digest``) and Basic
parsing (:func:`server.http.auth.parse_basic`) are reused through this one module, so a
change of their API touches SWORD here only.

Uploads are staged straight into the content store's staging directory: a file that is
kept as received (the original deposit) is then *renamed* into the store, never copied.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.context import Repository
from server.errors import InvalidInput
from server.http import uploads
from server.http.auth import parse_basic
from server.http.wsgi import Environ, content_length
from server.store import Digests, StagedContent
from server.sword.errors import BadRequest

DRAIN_BLOCK = 64 * 1024
MAX_AUTHORIZATION = 4096

__all__ = ["RequestBody", "Upload", "credentials", "receive", "staging_dir"]


def credentials(environ: Environ) -> tuple[str, str] | None:
    """``(login, password)`` from HTTP Basic; None when absent or not Basic/malformed."""
    value = environ.get("HTTP_AUTHORIZATION")
    if not value or len(value) > MAX_AUTHORIZATION:
        return None
    return parse_basic(str(value))


class RequestBody:
    """``wsgi.input`` that knows how much of the body is left, so that a request answered
    without reading its body (401, most errors) can be drained in small blocks -- cheroot
    would otherwise read the rest in one piece, or leave it on a kept-alive connection."""

    def __init__(self, environ: Environ) -> None:
        try:
            self.declared = content_length(environ)
        except InvalidInput as exc:
            raise BadRequest(exc.message, exc.details,
                             hint="Send a Content-Length that is the byte length of the "
                             "body, or use chunked transfer encoding.") from None
        self.chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
        self._stream: Any = environ.get("wsgi.input")
        self._left = self.declared
        self.read_bytes = 0
        self._eof = self._stream is None or (self.declared is None and not self.chunked) \
            or self.declared == 0

    @property
    def empty(self) -> bool:
        return self.declared == 0 or (self.declared is None and not self.chunked)

    def read(self, size: int = -1) -> bytes:
        if self._eof:
            return b""
        if size is None or size < 0:
            size = DRAIN_BLOCK
        if self._left is not None:
            size = min(size, self._left)
            if size <= 0:
                self._eof = True
                return b""
        data: bytes = self._stream.read(size)
        if not data:
            self._eof = True
            return b""
        self.read_bytes += len(data)
        if self._left is not None:
            self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read and forget what is left of the body (constant memory)."""
        try:
            while self.read(DRAIN_BLOCK):
                pass
        except (OSError, ValueError):
            self._eof = True


@dataclass
class Upload:
    """A received file on disk (staged, not yet in the store) and what SWORD knows of it.

    ``cleanup`` removes the file and whatever its stager made around it; it is safe to
    call after the file was moved into the store."""

    path: Path
    digests: Digests
    filename: str
    content_type: str | None
    packaging: str
    md5_declared: str | None = None
    cleanup: Callable[[], None] | None = None

    def discard(self) -> None:
        if self.cleanup is not None:
            self.cleanup()
        self.path.unlink(missing_ok=True)

    def staged(self) -> StagedContent:
        return StagedContent(path=self.path, digests=self.digests, name=self.filename)


def staging_dir(repo: Repository) -> Path:
    """The store's staging directory when it has one (same device: keeping is a rename)."""
    staging = getattr(repo.store, "staging", None)
    if isinstance(staging, Path):
        staging.mkdir(parents=True, exist_ok=True)
        return staging
    path = repo.config.path("server.staging_dir")
    path.mkdir(parents=True, exist_ok=True)
    return path


def receive(environ: Environ, repo: Repository, *, limit: int, block_size: int,
            filename: str, packaging: str) -> Upload:
    """Stream the request body into staging: size limit, framing and declared checksums
    checked (413, 400, 412); the caller discards or keeps the file."""
    staged = uploads.receive(environ, staging_dir=staging_dir(repo), limit=limit,
                             block_size=block_size, name=_disk_name(filename))
    md5, _sha = uploads.expected_checksums(environ)
    return Upload(staged.path, staged.digests, filename, environ.get("CONTENT_TYPE"),
                  packaging, md5, cleanup=staged.discard)


def _disk_name(filename: str) -> str:
    """The name the staged file may carry on disk (the real one travels beside it)."""
    if (0 < len(filename.encode("utf-8", "replace")) <= 120 and filename.isprintable()
            and "/" not in filename and "\\" not in filename
            and filename not in (".", "..")):
        return filename
    return "package"


def in_staging(repo: Repository, path: Path) -> bool:
    """Whether ``path`` lies in the store's staging area (keeping it is then a rename)."""
    try:
        return path.resolve().is_relative_to(staging_dir(repo).resolve())
    except OSError:
        return False


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
