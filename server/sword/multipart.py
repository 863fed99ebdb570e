"""A streaming reader of ``multipart/related`` (and ``multipart/form-data``) bodies.

SWORD's multipart deposits put an Atom entry and a file in one body.  Each part is written
to a staging file as it arrives, through :func:`server.store.copy_hashed` (size limit and
MD5 in the same pass), so memory stays at one block plus the boundary whatever the size;
nothing is ever held whole, and :mod:`email` (which would) is not used.

What clients really send (design note §4.4) is tolerated:

* ``Content-Transfer-Encoding: base64`` on a part is decoded as the part streams by
  (``7bit``, ``8bit`` and ``binary`` are taken as they are; anything else is refused);
* parts that are base64 *without* saying so -- the ``sword2`` client's Atom part, the Java
  client's payload -- are recognised: an entry part that is pure base64 text is decoded;
  a media part that is pure base64 text is decoded when its ``Content-MD5`` matches the
  decoded bytes rather than the raw ones;
* parts are found by their ``Content-Disposition`` ``name`` (``atom``, ``payload``), else by
  type and order (the entry first).

Limits: at most :data:`MAX_PARTS` parts, headers of at most :data:`MAX_HEADER_BYTES` per
part, a preamble of at most :data:`MAX_PREAMBLE` bytes; the decoded media part at most the
upload limit, the entry at most :data:`MAX_ENTRY_BYTES`.  A body that ends before its
closing boundary is a 400; nothing staged survives a failure.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from server.errors import ChecksumMismatch, Detail
from server.store import Digests, copy_hashed
from server.sword import headers as h
from server.sword.errors import BadRequest

MAX_PARTS = 4
MAX_HEADER_BYTES = 16 * 1024
MAX_PREAMBLE = 64 * 1024
MAX_ENTRY_BYTES = 16 * 1024 * 1024
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_WHITESPACE = b" \t\r\n"


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass
class Part:
    """One part, staged to ``path`` (decoded), with its headers (lower-case names)."""

    headers: dict[str, str]
    path: Path
    digests: Digests
    decoded_from_base64: bool = False

    @property
    def name(self) -> str | None:
        return h.disposition(self.headers.get("content-disposition"))[1].get("name")

    @property
    def filename(self) -> str | None:
        return h.filename(self.headers.get("content-disposition"))

    @property
    def content_type(self) -> str:
        return h.media_type(self.headers.get("content-type"))[0]

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower())
        return value.strip() if value is not None else None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Multipart:
    """The parts of one body; :meth:`discard` removes every staged file."""

    parts: list[Part] = field(default_factory=list)

    def discard(self) -> None:
        for part in self.parts:
            part.discard()

    def entry_and_media(self) -> tuple[Part | None, Part | None]:
        """The Atom entry part and the media part (by name, else by type and order)."""
        entry = next((p for p in self.parts if (p.name or "").lower() == "atom"), None)
        media = next((p for p in self.parts if (p.name or "").lower() == "payload"), None)
        rest = [p for p in self.parts if p is not entry and p is not media]
        if entry is None:
            entry = next((p for p in rest if "atom" in p.content_type
                          or p.content_type.endswith("xml")), None)
            if entry is None and rest and (media is not None or len(rest) >= 2):
                entry = rest[0]
            if entry is not None:
                rest.remove(entry)
        if media is None and rest:
            media = rest[0]
        return entry, media


class _Scanner:
    """The raw body with a small look-ahead buffer; finds boundaries across reads."""

    def __init__(self, source: Readable, block_size: int) -> None:
        self.source = source
        self.block = block_size
        self.buf = bytearray(b"\r\n")  # so the first boundary looks like every other one
        self.eof = False

    def fill(self, want: int) -> None:
        while len(self.buf) < want and not self.eof:
            data = self.source.read(self.block)
            if not data:
                self.eof = True
            else:
                self.buf += data

    def skip_to(self, delimiter: bytes, budget: int) -> None:
        """Discard everything before ``delimiter`` (and the delimiter itself)."""
        skipped = 0
        while True:
            self.fill(len(delimiter) + self.block)
            at = self.buf.find(delimiter)
            if at >= 0:
                skipped += at
                del self.buf[:at + len(delimiter)]
                break
            if self.eof:
                raise _truncated("the body holds no part (its boundary never occurs)")
            keep = len(delimiter) - 1
            skipped += len(self.buf) - keep
            del self.buf[:len(self.buf) - keep]
            if skipped > budget:
                break
        if skipped > budget:
            raise BadRequest("the multipart body starts with too much text before its "
                             "first part", [Detail("preamble too long", field="body",
                                                   expected=f"at most {budget} bytes")])

    def line(self, limit: int) -> bytes:
        """One line without its CRLF (or LF)."""
        while True:
            at = self.buf.find(b"\n")
            if at >= 0:
                line = bytes(self.buf[:at])
                del self.buf[:at + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buf) > limit:
                raise BadRequest("a multipart header line is too long",
                                 [Detail("header line too long", field="body",
                                         expected=f"at most {limit} bytes")])
            if self.eof:
                raise _truncated("the body ended inside a part's headers")
            self.fill(len(self.buf) + self.block)


class _PartBody:
    """The content of the current part: ``read`` stops at the next boundary."""

    def __init__(self, scanner: _Scanner, delimiter: bytes) -> None:
        self.scanner = scanner
        self.delimiter = delimiter
        self.done = False

    def read(self, size: int) -> bytes:
        if self.done:
            return b""
        scanner = self.scanner
        scanner.fill(size + len(self.delimiter))
        at = scanner.buf.find(self.delimiter)
        if at >= 0:
            if at <= size:
                data = bytes(scanner.buf[:at])
                del scanner.buf[:at + len(self.delimiter)]
                self.done = True
                return data
            data = bytes(scanner.buf[:size])
            del scanner.buf[:size]
            return data
        if scanner.eof:
            raise _truncated("the body ended inside a part (no closing boundary)")
        take = min(size, len(scanner.buf) - (len(self.delimiter) - 1))
        if take <= 0:  # pragma: no cover - fill() guarantees more than the delimiter
            scanner.fill(len(scanner.buf) + scanner.block)
            return self.read(size)
        data = bytes(scanner.buf[:take])
        del scanner.buf[:take]
        return data


class _Base64Reader:
    """Decodes a base64 stream (line breaks and spaces allowed) as it is read."""

    def __init__(self, raw: Readable, label: str) -> None:
        self.raw = raw
        self.label = label
        self.pending = b""

    def read(self, size: int) -> bytes:
        while True:
            chunk = self.raw.read(max(size, 4))
            if not chunk:
                if self.pending.strip(b"="):
                    return self._decode(self.pending + b"=" * (-len(self.pending) % 4))
                self.pending = b""
                return b""
            data = self.pending + chunk.translate(None, _WHITESPACE)
            cut = len(data) - len(data) % 4
            self.pending = data[cut:]
            if cut:
                return self._decode(data[:cut])

    def _decode(self, data: bytes) -> bytes:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"the {self.label} part is not valid base64",
                             [Detail("invalid base64", field="Content-Transfer-Encoding",
                                     file=self.label)]) from None


class _Base64Watch:
    """Passes bytes through, noting whether they are all base64 text."""

    def __init__(self, raw: Readable) -> None:
        self.raw = raw
        self.pure = True
        self.seen = False

    def read(self, size: int) -> bytes:
        data = self.raw.read(size)
        if data:
            self.seen = True
            if self.pure and data.translate(None, _B64_ALPHABET + _WHITESPACE):
                self.pure = False
        return data


def _truncated(what: str) -> BadRequest:
    return BadRequest(f"the multipart body is incomplete: {what}",
                      [Detail(what, field="body")],
                      hint="Send the whole body, ending with the closing boundary "
                      "(--BOUNDARY--), and a Content-Type whose boundary matches it.")


def _parse_headers(scanner: _Scanner) -> dict[str, str]:
    headers: dict[str, str] = {}
    total = 0
    last: str | None = None
    while True:
        line = scanner.line(MAX_HEADER_BYTES)
        total += len(line) + 2
        if total > MAX_HEADER_BYTES:
            raise BadRequest("a multipart part has too many headers",
                             [Detail("part headers too long", field="body",
                                     expected=f"at most {MAX_HEADER_BYTES} bytes")])
        if not line:
            return headers
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t") and last is not None:
            headers[last] += " " + text.strip()
            continue
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            raise BadRequest("a multipart part has a malformed header line",
                             [Detail("expected Name: value", field="body",
                                     found=text[:100])])
        last = name.strip().lower()
        headers[last] = value.strip() if last not in headers else headers[last]


@contextmanager
def _staging_file(staging: Path) -> Iterator[tuple[BinaryIO, Path]]:
    fd, name = tempfile.mkstemp(dir=staging, prefix="part-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out, path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _stage(source: Readable, staging: Path, *, limit: int, block_size: int,
           label: str) -> tuple[Path, Digests]:
    with _staging_file(staging) as (out, path):
        digests = copy_hashed(cast(BinaryIO, source), out, limit=limit, block_size=block_size,
                              name=label)
    return path, digests


def read(source: Readable, boundary: str, *, staging: Path, limit: int,
         block_size: int) -> Multipart:
    """Stage every part of the body; the caller discards the result when done."""
    if not boundary or len(boundary) > 200:
        raise BadRequest("the multipart Content-Type has no usable boundary",
                         [Detail("missing or overlong boundary parameter",
                                 field="Content-Type")])
    token = boundary.encode("latin-1", "replace")
    delimiter = b"\r\n--" + token
    scanner = _Scanner(source, block_size)
    result = Multipart()
    try:
        scanner.skip_to(delimiter, MAX_PREAMBLE)
        while True:
            scanner.fill(2)
            if scanner.buf[:2] == b"--":
                break  # the closing delimiter
            padding = scanner.line(1024)  # rest of the boundary line (transport padding)
            if padding.strip(b" \t"):
                raise BadRequest("a multipart boundary line carries unexpected text",
                                 [Detail("text after the boundary", field="body",
                                         found=padding[:60].decode("latin-1"))])
            if len(result.parts) >= MAX_PARTS:
                raise BadRequest(f"the multipart body has more than {MAX_PARTS} parts",
                                 [Detail("too many parts", field="body",
                                         expected="an Atom entry part and a media part")])
            result.parts.append(_read_part(scanner, delimiter, staging, limit, block_size,
                                           len(result.parts)))
        scanner.buf.clear()
        while scanner.source.read(block_size):  # epilogue: ignored, but consumed
            pass
        return result
    except BaseException:
        result.discard()
        raise


def _read_part(scanner: _Scanner, delimiter: bytes, staging: Path, limit: int,
               block_size: int, index: int) -> Part:
    headers = _parse_headers(scanner)
    body = _PartBody(scanner, delimiter)
    label = h.disposition(headers.get("content-disposition"))[1].get("name") \
        or f"part {index + 1}"
    encoding = (headers.get("content-transfer-encoding") or "").strip().lower()
    if label.lower() == "atom" or "atom" in h.media_type(headers.get("content-type"))[0]:
        limit = min(limit, MAX_ENTRY_BYTES)
    if encoding == "base64":
        path, digests = _stage(_Base64Reader(body, label), staging, limit=limit,
                               block_size=block_size, label=label)
        return Part(headers, path, digests, decoded_from_base64=True)
    if encoding not in ("", "7bit", "8bit", "binary"):
        _drain(body, block_size)
        raise BadRequest(f"the {label} part uses an unsupported transfer encoding",
                         [Detail("unsupported Content-Transfer-Encoding", file=label,
                                 field="Content-Transfer-Encoding", found=encoding[:40],
                                 expected="base64, binary, 8bit or 7bit")])
    watch = _Base64Watch(body)
    # The raw form of a base64 body is up to 4/3 of the decoded size (plus line breaks).
    path, digests = _stage(watch, staging, limit=limit * 4 // 3 + 4096, block_size=block_size,
                           label=label)
    part = Part(headers, path, digests)
    try:
        return _undeclared_base64(part, watch.pure and watch.seen, staging, limit, block_size,
                                  label)
    except BaseException:
        part.discard()
        raise


def _drain(body: _PartBody, block_size: int) -> None:
    while body.read(block_size):
        pass


def _decode_file(part: Part, staging: Path, limit: int, block_size: int,
                 label: str) -> Part:
    """The part's content base64-decoded into a new staging file (the raw one stays)."""
    with open(part.path, "rb") as raw:
        path, digests = _stage(_Base64Reader(raw, label), staging, limit=limit,
                               block_size=block_size, label=label)
    return Part(part.headers, path, digests, decoded_from_base64=True)


def _looks_like_xml(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip(b" \t\r\n")
    return head.startswith((b"<", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))


def _undeclared_base64(part: Part, pure: bool, staging: Path, limit: int, block_size: int,
                       label: str) -> Part:
    """Decode a part that is base64 without a Content-Transfer-Encoding saying so."""
    if not pure:
        return part
    declared = part.header("content-md5")
    is_entry = (part.name or "").lower() == "atom" or "atom" in part.content_type
    if is_entry:
        if part.digests.size > MAX_ENTRY_BYTES * 4 // 3 + 4096 or _looks_like_xml(part.path):
            return part
        try:
            decoded = _decode_file(part, staging, MAX_ENTRY_BYTES, block_size, label)
        except BadRequest:
            return part
        part.discard()
        return decoded
    if declared is None:
        return part
    wanted = _md5_hex(declared)
    if wanted is None or wanted == part.digests.md5:
        return part
    try:
        decoded = _decode_file(part, staging, limit, block_size, label)
    except BadRequest:
        return part
    if decoded.digests.md5 != wanted:  # neither form matches: the raw part is reported
        decoded.discard()
        return part
    part.discard()
    return decoded


def _md5_hex(value: str) -> str | None:
    text = value.strip()
    if len(text) == 32:
        try:
            int(text, 16)
            return text.lower()
        except ValueError:
            return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def md5_of(value: str | None) -> str | None:
    """A declared Content-MD5 (hex, or RFC 1864 base64) as lower-case hex; a 400 when it
    is neither."""
    if value is None or not value.strip():
        return None
    found = _md5_hex(value)
    if found is None:
        raise BadRequest("Content-MD5 is not an MD5 checksum",
                         [Detail("expected 32 hex digits (or base64 of 16 bytes)",
                                 field="Content-MD5", found=value[:80])])
    return found


def verify_md5(part: Part, label: str) -> None:
    """412 when the part's declared Content-MD5 differs from what arrived (decoded)."""
    wanted = md5_of(part.header("content-md5"))
    if wanted is not None and wanted != part.digests.md5:
        raise ChecksumMismatch(
            f"the {label} does not match its Content-MD5",
            [Detail("MD5 checksum does not match", file=part.filename or label,
                    field="Content-MD5", expected=wanted, found=part.digests.md5)])

