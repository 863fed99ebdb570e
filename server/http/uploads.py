"""Request bodies into the staging area: size limit, framing and checksums.

Every upload (POST, a PUT that replaces, a file dropped into a folder) is streamed with
:func:`server.store.copy_hashed` into a private file under ``server.staging_dir`` -- one
block in memory whatever the size.  The rules:

* a declared ``Content-Length`` over the limit is refused (413) before a byte is read;
  an undeclared (chunked) body is cut off as soon as it passes the limit;
* a body shorter than its ``Content-Length``, a broken chunked encoding or a dropped
  connection is 400 and nothing is kept;
* ``Content-MD5`` (base64 or SWORD's hex), ``Digest`` (RFC 3230: ``md5``, ``sha-256``)
  and ``Content-Digest``/``Repr-Digest`` (RFC 9530) are checked against what arrived:
  a mismatch is 412;
* the staged file is removed by whoever received it, when the request ends.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from packagers.base import PackageSource
from server.errors import Detail, InvalidInput, SizeLimitExceeded
from server.http.errors import BadRequest, IncompleteBody
from server.http.wsgi import Environ, content_length, header_text
from server.store import Digests, copy_hashed, verify_expected

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


def _finish(path: Path, digests: Digests, environ: Environ, declared: int | None,
            name: str | None, content_type: str | None) -> StagedUpload:
    if declared is not None and digests.size != declared:
        raise IncompleteBody(
            f"the request body ended after {digests.size} of {declared} bytes",
            [Detail("body shorter than Content-Length", field="Content-Length",
                    expected=str(declared), found=str(digests.size))])
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
