"""Request bodies into the staging area: size limit, framing and checksums.

Every upload (POST, a PUT that replaces, a file dropped into a folder) is streamed into a
private file under ``server.staging_dir`` -- a block or two in memory whatever the size.
The rules:

* a declared ``Content-Length`` over the limit is refused (413) before a byte is read;
  an undeclared (chunked) body is cut off as soon as it passes the limit;
* a body shorter than its ``Content-Length``, a broken chunked encoding or a dropped
  connection is 400 and nothing is kept;
* ``Content-MD5`` (base64 or SWORD's hex), ``Digest`` (RFC 3230: ``md5``, ``sha-256``)
  and ``Content-Digest``/``Repr-Digest`` (RFC 9530) are checked against what arrived:
  a mismatch is 412;
* the staged file is removed by whoever received it, when the request ends.

A package (POST, a PUT that replaces) is received by :func:`receive_package` under the
same rules, in one pass that also does what the ingest would otherwise redo: the body is
hashed only when the client declared a checksum (nothing else needs its digests), and
the STORED members of a zip (of at least one block) are copied into the store's staging
area as they go by and hashed (see :class:`server.archive.MemberCopies`); they become
durable with the rest of the unit's content, before its commit.  The packager's reads of
those members then take the copies instead of copying and hashing the bytes again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from packagers.base import PackageSource
from server.archive import MemberCopies, MemberCopy, StoredMemberSplitter
from server.errors import Detail, InvalidInput, SizeLimitExceeded
from server.http.errors import BadRequest, IncompleteBody
from server.http.wsgi import Environ, content_length, header_text
from server.store import (
    ContentStore,
    Digests,
    Hasher,
    StagedContent,
    StagingFile,
    copy_hashed,
    size_limit_exceeded,
    verify_expected,
)

log = logging.getLogger(__name__)

_HEX_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_DIGEST_ALGORITHMS = {"md5": "md5", "sha-256": "sha256", "sha256": "sha256"}


@dataclass
class StagedUpload:
    """A received body on disk, with what one pass over it measured.  The file sits
    alone in a private directory and carries the client's file name (packagers that
    report or inspect the name see the real one)."""

    path: Path
    digests: Digests
    name: str | None = None
    content_type: str | None = None

    def source(self) -> PackageSource:
        return PackageSource(self.path, name=self.name, content_type=self.content_type)

    def discard(self) -> None:
        _remove_staging(self.path)


def check_declared_size(environ: Environ, limit: int) -> int | None:
    """Refuse a body whose declared length is over ``limit``, before reading it."""
    declared = content_length(environ)
    if declared is not None and declared > limit:
        raise SizeLimitExceeded(
            f"the request body ({declared} bytes) is larger than the limit of {limit} bytes",
            [Detail("size limit exceeded", field="Content-Length", expected=f"<= {limit}",
                    found=str(declared))])
    return declared


def _decode_b64_or_hex(value: str, size: int, field: str) -> str:
    text = value.strip().strip(":")
    if len(text) == size * 2 and re.fullmatch(r"[0-9a-fA-F]+", text):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise BadRequest(f"{field} is not a valid checksum",
                         [Detail("expected base64 (or hex) of the digest", field=field,
                                 found=value[:100])])
    return raw.hex()


def expected_checksums(environ: Environ) -> tuple[str | None, str | None]:
    """``(md5, sha256)`` hex digests the client declared, if any."""
    md5: str | None = None
    sha256: str | None = None
    declared = header_text(environ, "HTTP_CONTENT_MD5", 256)
    if declared is not None:
        value = declared.strip()
        md5 = value.lower() if _HEX_MD5.match(value) else _decode_b64_or_hex(
            value, 16, "Content-MD5")
    for key, label in (("HTTP_DIGEST", "Digest"), ("HTTP_CONTENT_DIGEST", "Content-Digest"),
                       ("HTTP_REPR_DIGEST", "Repr-Digest")):
        header = header_text(environ, key, 2048)
        if header is None:
            continue
        for part in header.split(","):
            algorithm, sep, value = part.strip().partition("=")
            if not sep:
                raise BadRequest(f"{label} is malformed",
                                 [Detail("expected algorithm=value", field=label,
                                         found=part.strip()[:100])])
            name = _DIGEST_ALGORITHMS.get(algorithm.strip().lower())
            if name == "md5":
                md5 = _decode_b64_or_hex(value, 16, label)
            elif name == "sha256":
                sha256 = _decode_b64_or_hex(value, 32, label)
    return md5, sha256


def _new_staging_file(staging_dir: Path, name: str | None) -> tuple[int, Path]:
    """A new file in a new private directory ``upload-*/<name>`` (mode 0700/0600)."""
    staging_dir.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(dir=staging_dir, prefix="upload-"))
    file_name = name if name and "/" not in name and name not in (".", "..") else "package"
    path = private / file_name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        private.rmdir()
        raise
    return fd, path


def _remove_staging(path: Path) -> None:
    path.unlink(missing_ok=True)
    parent = path.parent
    if parent.name.startswith("upload-"):
        try:
            parent.rmdir()
        except OSError:
            pass


def _check_complete(size: int, declared: int | None) -> None:
    if declared is not None and size != declared:
        raise IncompleteBody(
            f"the request body ended after {size} of {declared} bytes",
            [Detail("body shorter than Content-Length", field="Content-Length",
                    expected=str(declared), found=str(size))])


def _finish(path: Path, digests: Digests, environ: Environ, declared: int | None,
            name: str | None, content_type: str | None) -> StagedUpload:
    _check_complete(digests.size, declared)
    md5, sha256 = expected_checksums(environ)
    verify_expected(digests, name=name or "request body", md5=md5, sha256=sha256)
    return StagedUpload(path, digests, name, content_type)


class _InputReader:
    """``wsgi.input`` as a source for copy_hashed that turns transport failures into
    400s (the client hung up, or sent broken chunked encoding)."""

    def __init__(self, stream: object, declared: int | None) -> None:
        self._stream = stream
        self._left = declared

    def read(self, size: int) -> bytes:
        if self._left is not None:
            if self._left <= 0:
                return b""
            size = min(size, self._left)
        try:
            data: bytes = self._stream.read(size)  # type: ignore[attr-defined]
        except (OSError, ValueError) as exc:
            raise IncompleteBody("the request body could not be read completely",
                                 [Detail(f"{type(exc).__name__}: {exc}"[:200],
                                         field="body")]) from None
        if self._left is not None:
            self._left -= len(data)
        return data


def receive(environ: Environ, *, staging_dir: Path, limit: int, block_size: int,
            name: str | None = None) -> StagedUpload:
    """Stream the request body into a staged file (see the module rules)."""
    declared = check_declared_size(environ, limit)
    fd, path = _new_staging_file(staging_dir, name)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            reader = cast(BinaryIO, _InputReader(environ["wsgi.input"], declared))
            digests = copy_hashed(reader, out, limit=limit, block_size=block_size,
                                  name=name or "request body")
        environ["wsgidav.all_input_read"] = 1
        return _finish(path, digests, environ, declared, name, environ.get("CONTENT_TYPE"))
    except BaseException:
        _remove_staging(path)
        raise


@dataclass
class StagedPackage:
    """A received package on disk (alone in a private directory, under the client's file
    name), its size, and the copies of its STORED zip members made as it arrived."""

    path: Path
    size: int
    copies: MemberCopies | None
    name: str | None = None
    content_type: str | None = None

    def source(self) -> PackageSource:
        return PackageSource(self.path, name=self.name, content_type=self.content_type)

    def copies_in_use(self) -> contextlib.AbstractContextManager[None]:
        """Around the ingest: reads of copied members take the copies."""
        return self.copies.in_use() if self.copies is not None else contextlib.nullcontext()

    def discard(self) -> None:
        """Remove the package and every copy the ingest did not take."""
        if self.copies is not None:
            for copy in self.copies.take_rest():
                copy.discard()
        _remove_staging(self.path)


def receive_package(environ: Environ, *, staging_dir: Path, store: ContentStore,
                    limit: int, block_size: int, name: str | None = None) -> StagedPackage:
    """Stream a package body into a staged file in one pass (see the module notes):
    framing, size limit and declared checksums are checked as by :func:`receive`."""
    declared = check_declared_size(environ, limit)
    md5, sha256 = expected_checksums(environ)
    label = name or "request body"
    hasher = Hasher(name=label) if md5 or sha256 else None
    copier = _MemberCopier(store, min_size=block_size)
    fd, path = _new_staging_file(staging_dir, name)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            reader = _InputReader(environ["wsgi.input"], declared)
            size = 0
            while data := reader.read(block_size):
                size += len(data)
                if size > limit:
                    raise size_limit_exceeded(label, limit)
                if hasher is not None:
                    hasher.update(data)
                out.write(data)
                copier.feed(data)
        environ["wsgidav.all_input_read"] = 1
        _check_complete(size, declared)
        if hasher is not None:
            verify_expected(hasher.digests(), name=label, md5=md5, sha256=sha256)
        copies = copier.finish(path)
    except BaseException:
        copier.discard()
        _remove_staging(path)
        raise
    return StagedPackage(path, size, copies, name, environ.get("CONTENT_TYPE"))


class _MemberCopier:
    """Copies the STORED members (of at least ``min_size`` bytes) of a zip being received
    into the store's staging area; each copy is finished (its MD5 awaited, the file closed) on
    a background thread as soon as it is complete, at most :attr:`MAX_FINISHING` at a time."""

    MAX_FINISHING = 8

    def __init__(self, store: ContentStore, *, min_size: int) -> None:
        self._store = store
        self._splitter = StoredMemberSplitter(min_size)
        self._current: StagingFile | None = None
        self._finishing: list[tuple[int, bytes, Future[StagedContent]]] = []
        self._flusher: ThreadPoolExecutor | None = None

    def feed(self, data: bytes) -> None:
        for piece in self._splitter.feed(data):
            if self._current is None:
                self._current = self._store.open_staging()
            self._current.write(piece.data)
            if piece.last:
                staging, self._current = self._current, None
                if self._flusher is None:
                    self._flusher = ThreadPoolExecutor(max_workers=1,
                                                       thread_name_prefix="davpack-copy")
                self._finishing.append((piece.offset, piece.raw_name,
                                        self._flusher.submit(staging.finish)))
                if len(self._finishing) > self.MAX_FINISHING:
                    self._finishing[-self.MAX_FINISHING - 1][2].exception()

    def finish(self, archive: Path) -> MemberCopies | None:
        """The complete copies (a copy whose finishing failed is left out: reading the
        member will copy it again, and report the failure if it recurs)."""
        if self._current is not None:  # the body ended inside a member
            self._current.discard()
            self._current = None
        copies: list[MemberCopy] = []
        for offset, raw_name, finishing in self._finishing:
            try:
                staged = finishing.result()
            except OSError as exc:
                log.warning("a member copy could not be finished: %s", exc)
                continue
            copies.append(MemberCopy(offset, raw_name, staged.digests.size,
                                     staged.digests.crc32, staged))
        found = MemberCopies(archive, copies) if copies else None
        self._finishing.clear()  # the copies are the caller's now
        self._stop()
        return found

    def discard(self) -> None:
        if self._current is not None:
            self._current.discard()
            self._current = None
        for _offset, _name, finishing in self._finishing:
            try:
                finishing.result().discard()
            except Exception:  # a copy that failed to finish removed itself
                pass
        self._finishing.clear()
        self._stop()

    def _stop(self) -> None:
        if self._flusher is not None:
            self._flusher.shutdown()
            self._flusher = None


class _ChunkSource:
    """An iterable of byte chunks (what WsgiDAV hands to ``writelines``) as a
    ``read()`` source for copy_hashed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)

    def read(self, _size: int) -> bytes:
        try:
            return next(self._chunks, b"")
        except (OSError, ValueError) as exc:
            raise IncompleteBody("the request body could not be read completely",
                                 [Detail(f"{type(exc).__name__}: {exc}"[:200],
                                         field="body")]) from None


class StagingWriter:
    """The file object WsgiDAV's PUT writes into (``begin_write`` returns it).

    WsgiDAV calls ``writelines(chunks)`` then ``close()``; :meth:`finish` then checks
    framing and checksums.  The staged file is the caller's to discard.
    """

    def __init__(self, environ: Environ, *, staging_dir: Path, limit: int,
                 block_size: int, name: str | None, content_type: str | None) -> None:
        self.environ = environ
        self.limit = limit
        self.block_size = block_size
        self.name = name
        self.content_type = content_type
        self.declared = check_declared_size(environ, limit)
        fd, self.path = _new_staging_file(staging_dir, name)
        self._out = os.fdopen(fd, "wb", buffering=0)
        self.digests: Digests | None = None

    def writelines(self, chunks: Iterable[bytes]) -> None:
        source = cast(BinaryIO, _ChunkSource(chunks))
        self.digests = copy_hashed(source, self._out, limit=self.limit,
                                   block_size=self.block_size, name=self.name)

    def write(self, data: bytes) -> int:  # pragma: no cover - WsgiDAV uses writelines
        raise InvalidInput("StagingWriter takes the whole body through writelines()")

    def close(self) -> None:
        self._out.close()

    def finish(self) -> StagedUpload:
        if self.digests is None:
            raise IncompleteBody("no request body was received")
        return _finish(self.path, self.digests, self.environ, self.declared, self.name,
                       self.content_type)

    def discard(self) -> None:
        if not self._out.closed:
            self._out.close()
        _remove_staging(self.path)
