"""The one safe archive reader of davpack: zip and tar (plain, gzip, bzip2, xz).

Deposited packages are untrusted, so this module follows one policy:

* **Validate everything before reading anything.**  :meth:`SafeArchive.open` looks at
  every member's name, type and declared sizes first and refuses the whole archive with
  one :class:`~server.errors.UnsafeInput` listing one :class:`~server.errors.Detail` per
  offending member: absolute paths, ``..`` components, backslashes (reported, never
  converted), NUL and control characters, empty components, duplicates, links, devices,
  encrypted members, too many members, too much declared data, suspicious compression
  ratios and overlapping zip entries.
* **Never trust a header while reading.**  Member streams deliver exactly the declared
  number of bytes: a member that would produce more raises
  :class:`~server.errors.SizeLimitExceeded`, fewer raises
  :class:`~server.errors.InvalidInput`, a wrong CRC-32 raises
  :class:`~server.errors.ChecksumMismatch`.  Zip members are decompressed here, not by
  :mod:`zipfile` (which silently truncates a member that is longer than declared).
* **Constant memory.**  Data moves in chunks of at most 1 MiB; no member is ever held
  in memory unless the caller asks for it with :meth:`SafeArchive.read_bytes`.
* **Extraction writes only regular files and directories**, strictly inside the
  destination, never following or replacing anything that already exists there.
* **Copies made on the way in are used only when they are exactly the member.**  A zip
  being received can be followed by its local headers (:class:`StoredMemberSplitter`) and
  its STORED members copied as they go by; reading the archive afterwards hands such a
  copy over only when the central directory proves it holds the very bytes reading the
  member would deliver (:class:`MemberCopies`).

The format is recognised from the content, not the file name.  Member names are
normalised only by dropping ``.`` components (``./data/x`` is ``data/x``) and a directory's
trailing ``/``; anything else unusual is refused.  Objects are not thread-safe.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import re
import stat
import struct
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, TypeAlias, overload

from server.errors import (
    ChecksumMismatch,
    Conflict,
    Detail,
    InvalidInput,
    SizeLimitExceeded,
    UnsafeInput,
)

__all__ = ["ArchiveLimits", "ArchiveSource", "Member", "MemberCopies", "MemberCopy",
           "SafeArchive", "StoredMemberSplitter", "StoredPiece", "junk_name"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CHUNK = MiB
"""Largest piece of data moved at once."""

ArchiveSource: TypeAlias = str | os.PathLike[str] | IO[bytes]
"""A path, or a seekable binary file object positioned anywhere (the archive starts at 0)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may declare before it is refused.

    ``max_ratio`` applies to each zip member, and to a compressed tar as a whole, once the
    declared size exceeds ``ratio_min_size`` (small, very compressible files are normal).
    """

    max_members: int = 100_000
    max_total_size: int = 64 * GiB
    max_member_size: int = 64 * GiB
    max_ratio: float = 200.0
    ratio_min_size: int = MiB
    max_name_length: int = 1024  # bytes of UTF-8


@dataclass(frozen=True, slots=True)
class Member:
    """One member as the archive declares it.  ``name`` is normalised (no ``./``, no
    trailing ``/``); ``mtime`` is UTC (zip DOS times carry no zone and are read as UTC)."""

    name: str
    size: int
    is_dir: bool
    crc32: int | None
    mtime: datetime | None


_JUNK_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


def junk_name(name: str) -> bool:
    """True for operating-system clutter packagers should ignore: ``__MACOSX/...``,
    ``.DS_Store``, ``Thumbs.db``, ``desktop.ini`` and ``._*`` AppleDouble files."""
    parts = [p for p in name.rstrip("/").split("/") if p]
    if not parts:
        return False
    base = parts[-1]
    return "__MACOSX" in parts or base.lower() in _JUNK_FILES or base.startswith("._")


# --- name checks -------------------------------------------------------------------------

_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x01-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _name_problems(raw: str, is_dir: bool, max_length: int) -> list[str]:
    """Why a member name is unacceptable (empty list if it is fine)."""
    if not raw:
        return ["empty name"]
    problems: list[str] = []
    length = len(raw.encode("utf-8", "surrogatepass"))
    if length > max_length:
        problems.append(f"name is {length} bytes long; the limit is {max_length}")
    if "\x00" in raw:
        problems.append("name contains a NUL byte")
    if _CONTROL.search(raw):
        problems.append("name contains a control character")
    if _SURROGATE.search(raw):
        problems.append("name is not valid UTF-8")
    if "\\" in raw:
        problems.append("name contains a backslash; Windows-style paths are refused, "
                        "not converted")
    absolute = raw.startswith(("/", "\\"))
    if absolute:
        problems.append("absolute path")
    elif _DRIVE.match(raw):
        problems.append("name starts with a drive letter")
    body = raw[:-1] if is_dir and raw.endswith("/") else raw
    parts = re.split(r"[/\\]", body)
    if ".." in parts:
        problems.append("'..' component would escape the extraction directory")
    if "" in (parts[1:] if absolute else parts):
        problems.append("empty path component ('//' or a trailing '/' on a file)")
    return problems


def _shown(raw: str) -> str:
    """A name fit for error details: undecodable bytes (surrogates) become U+FFFD, so
    rendering the error as UTF-8 cannot fail."""
    return _SURROGATE.sub("\ufffd", raw)


def _normalise(raw: str) -> str:
    """Drop ``.`` components and a trailing ``/`` from an already validated name."""
    return "/".join(p for p in raw.rstrip("/").split("/") if p != ".")


# --- reading helpers ---------------------------------------------------------------------


class _ByteSource(Protocol):
    def read(self, size: int, /) -> bytes: ...
    def close(self) -> None: ...


def _corrupt(name: str, exc: BaseException) -> InvalidInput:
    return InvalidInput("archive member is corrupt",
                        [Detail(f"cannot read member data: {exc}", file=name)])


class _CheckedStream(io.RawIOBase):
    """Delivers exactly ``declared`` bytes from ``source`` or fails.

    After the last declared byte it asks the source for one more: if there is one, the
    header lied (:class:`SizeLimitExceeded`); then the CRC-32 is compared, if known.  Both
    checks run in the read that returns the final bytes, so a caller that stops reading
    after ``declared`` bytes is protected too.
    """

    def __init__(self, source: _ByteSource, declared: int, crc: int | None, name: str) -> None:
        super().__init__()
        self._source = source
        self._declared = declared
        self._left = declared
        self._expected_crc = crc
        self._crc = 0
        self._name = name
        self._verified = False

    def readable(self) -> bool:
        return True

    @property
    def untouched(self) -> bool:
        """Nothing was read yet."""
        return self._left == self._declared and not self._verified

    def _pull(self, size: int) -> bytes:
        try:
            return self._source.read(size)
        except (zlib.error, lzma.LZMAError, EOFError, OSError, tarfile.TarError) as exc:
            raise _corrupt(self._name, exc) from exc

    def readinto(self, buffer: Any) -> int:
        if self._left == 0:
            self._verify()
            return 0
        want = min(len(buffer), self._left, CHUNK)
        if want == 0:
            return 0
        data = self._pull(want)
        if not data:
            got = self._declared - self._left
            raise InvalidInput("archive member is shorter than declared", [Detail(
                f"member data ends after {got} bytes", file=self._name,
                expected=f"{self._declared} bytes", found=f"{got} bytes")])
        if len(data) > want:
            raise self._too_long()
        self._crc = zlib.crc32(data, self._crc)
        self._left -= len(data)
        if self._left == 0:
            self._verify()
        buffer[:len(data)] = data
        return len(data)

    def _too_long(self) -> SizeLimitExceeded:
        return SizeLimitExceeded("archive member is longer than declared", [Detail(
            f"member produces more than the {self._declared} bytes its header declares",
            file=self._name, expected=f"{self._declared} bytes",
            found=f"more than {self._declared} bytes")])

    def _verify(self) -> None:
        if self._verified:
            return
        if self._pull(1):
            raise self._too_long()
        if self._expected_crc is not None and self._crc != self._expected_crc:
            raise ChecksumMismatch("archive member fails its CRC-32 check", [Detail(
                "content does not match the CRC-32 in the archive", file=self._name,
                expected=f"{self._expected_crc:08x}", found=f"{self._crc:08x}")])
        self._verified = True

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()


# --- zip ---------------------------------------------------------------------------------

_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END = b"PK\x06\x06"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_ZIP_FLAG_ENCRYPTED = 0x1
_ZIP_FLAG_DATA_DESCRIPTOR = 0x8
_ZIP_FLAG_STRONG_ENCRYPTION = 0x40
_ZIP_FLAG_UTF8 = 0x800
_ZIP_AES = 99
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_CD_ENTRY_ALLOWANCE = 46 + 512  # fixed part plus extra fields/comment, beyond the name


def _zip_name_bytes(info: zipfile.ZipInfo) -> bytes:
    """The name as stored in the central directory (zipfile decodes UTF-8 or cp437)."""
    encoding = "utf-8" if info.flag_bits & _ZIP_FLAG_UTF8 else "cp437"
    return info.orig_filename.encode(encoding)


def _zip_mtime(info: zipfile.ZipInfo) -> datetime | None:
    """UTC mtime from the extended-timestamp extra field, else the DOS time read as UTC."""
    extra = info.extra
    pos = 0
    while pos + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, pos)
        data = extra[pos + 4:pos + 4 + size]
        if kind == 0x5455 and len(data) >= 5 and data[0] & 1:
            try:
                return datetime.fromtimestamp(struct.unpack_from("<i", data, 1)[0], UTC)
            except (OverflowError, OSError, ValueError):
                break
        pos += 4 + size
    try:
        return datetime(*info.date_time, tzinfo=UTC)
    except ValueError:
        return None


def _zip_directory_precheck(fp: IO[bytes], archive: str, limits: ArchiveLimits) -> None:
    """Refuse absurd central directories before :mod:`zipfile` reads one into memory."""
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    tail_len = min(size, 22 + 0xFFFF)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    at = tail.rfind(_ZIP_END)
    if at < 0 or at + 22 > len(tail):
        return  # zipfile will say what is wrong
    count, cd_size, cd_offset = struct.unpack_from("<10xHLL", tail, at)
    if (0xFFFF in (count,) or 0xFFFFFFFF in (cd_size, cd_offset)) and at >= 20 \
            and tail[at - 20:at - 16] == _ZIP64_LOCATOR:
        (z64_offset,) = struct.unpack_from("<8xQ", tail, at - 20)
        fp.seek(z64_offset)
        record = fp.read(56)
        if len(record) == 56 and record[:4] == _ZIP64_END:
            count, cd_size = struct.unpack_from("<32xQQ", record)
    findings = []
    if count > limits.max_members:
        findings.append(Detail(f"archive declares {count} members; the limit is "
                               f"{limits.max_members}", file=archive))
    bound = limits.max_members * (_CD_ENTRY_ALLOWANCE + limits.max_name_length)
    if cd_size > bound:
        findings.append(Detail(f"central directory of {cd_size} bytes is larger than "
                               f"{limits.max_members} members need", file=archive))
    if findings:
        raise UnsafeInput(f"{archive}: archive refused", findings)


class _RawRange:
    """``length`` bytes of the shared archive file from ``offset``; seeks before each read
    so that several member streams may be open at once."""

    def __init__(self, fp: IO[bytes], offset: int, length: int, name: str) -> None:
        self._fp = fp
        self._pos = offset
        self.left = length
        self._name = name

    def read(self, size: int) -> bytes:
        size = min(size, self.left)
        if size <= 0:
            return b""
        self._fp.seek(self._pos)
        data = self._fp.read(size)
        if not data:
            raise InvalidInput("archive is truncated", [Detail(
                f"compressed data stops {self.left} bytes short", file=self._name)])
        self._pos += len(data)
        self.left -= len(data)
        return data


class _ZipData:
    """The decompressed bytes of one zip member, produced in bounded pieces."""

    def __init__(self, raw: _RawRange, method: int, name: str) -> None:
        self._raw = raw
        self._method = method
        self._name = name
        self._pending = b""
        self._eof = False
        self._inflate: Any = None
        if method == zipfile.ZIP_DEFLATED:
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        elif method == zipfile.ZIP_BZIP2:
            self._inflate = bz2.BZ2Decompressor()
        elif method == zipfile.ZIP_LZMA:
            self._inflate = self._lzma_decompressor()

    def _lzma_decompressor(self) -> lzma.LZMADecompressor:
        # zip's LZMA: 2 bytes version, 2 bytes properties size, LZMA1 properties, raw stream
        header = self._read_exactly(4)
        (props_size,) = struct.unpack_from("<H", header, 2)
        props = self._read_exactly(props_size)
        if props_size < 5 or props[0] >= 9 * 5 * 5:
            raise InvalidInput("archive member is corrupt",
                               [Detail("bad LZMA properties", file=self._name)])
        pb, rest = divmod(props[0], 45)
        lp, lc = divmod(rest, 9)
        dict_size = int.from_bytes(props[1:5], "little")
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{
            "id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}])

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            piece = self._raw.read(size - len(data))
            if not piece:
                raise InvalidInput("archive member is corrupt",
                                   [Detail("compressed data is truncated", file=self._name)])
            data += piece
        return data

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` only at the end of the member's data."""
        while not self._eof:
            data = self._step(size)
            if data:
                return data
        return b""

    def _step(self, size: int) -> bytes:
        if self._method == zipfile.ZIP_STORED:
            if not self._pending:
                self._pending = self._raw.read(CHUNK)
                if not self._pending:
                    self._eof = True
                    return b""
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        if self._method == zipfile.ZIP_DEFLATED:
            if not self._pending:
                self._pending = self._raw.read(CHUNK)
            data = self._inflate.decompress(self._pending, size)
            self._pending = self._inflate.unconsumed_tail
            if self._inflate.eof:
                self._eof = True
            elif not data and not self._pending and self._raw.left == 0:
                self._truncated()
            return bytes(data)
        # bzip2 and LZMA keep unconsumed input inside the decompressor
        chunk = b""
        if self._inflate.needs_input:
            chunk = self._raw.read(CHUNK)
            if not chunk:
                if self._method == zipfile.ZIP_LZMA:
                    self._eof = True  # LZMA without end marker: the data simply stops
                    return b""
                self._truncated()
        data = self._inflate.decompress(chunk, size)
        if self._inflate.eof:
            self._eof = True
        return bytes(data)

    def _truncated(self) -> None:
        raise InvalidInput("archive member is corrupt",
                           [Detail("compressed data is truncated", file=self._name)])

    def close(self) -> None:
        self._eof = True
        self._pending = b""


class _ZipBackend:
    kind = "zip"

    def __init__(self, fp: IO[bytes], archive: str, limits: ArchiveLimits) -> None:
        self._fp = fp
        self._archive = archive
        _zip_directory_precheck(fp, archive, limits)
        fp.seek(0)
        try:
            with zipfile.ZipFile(fp) as zf:
                self.infos = zf.infolist()
                self._start_dir: int = getattr(zf, "start_dir", 0)
        except (zipfile.BadZipFile, NotImplementedError, UnicodeDecodeError, ValueError,
                EOFError, struct.error) as exc:
            raise InvalidInput("not a readable zip archive",
                               [Detail(str(exc) or type(exc).__name__, file=archive)]) from exc

    def entries(self, limits: ArchiveLimits) -> Iterator[_RawEntry]:
        overlapping = self._overlapping()
        for info in self.infos:
            is_dir = info.orig_filename.endswith("/")
            problems: list[str] = []
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                problems.append("symbolic link")
            elif kind in (stat.S_IFCHR, stat.S_IFBLK):
                problems.append("device file")
            elif kind == stat.S_IFIFO:
                problems.append("named pipe (FIFO)")
            elif kind == stat.S_IFSOCK:
                problems.append("socket")
            if (info.flag_bits & (_ZIP_FLAG_ENCRYPTED | _ZIP_FLAG_STRONG_ENCRYPTION)
                    or info.compress_type == _ZIP_AES):
                problems.append("encrypted member")
            elif info.compress_type not in _ZIP_METHODS:
                problems.append(f"compression method {info.compress_type} is not supported")
            if is_dir and info.file_size:
                problems.append(f"directory entry carries {info.file_size} bytes of data")
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                problems.append("stored member declares different sizes "
                                f"({info.compress_size} stored, {info.file_size} unpacked)")
            elif info.file_size > limits.ratio_min_size:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > limits.max_ratio:
                    problems.append(f"compression ratio {ratio:.0f}:1 exceeds the limit of "
                                    f"{limits.max_ratio:g}:1 (zip bomb?)")
            if id(info) in overlapping:
                problems.append("member data overlaps another member or the central "
                                "directory (overlapping-entry zip bomb?)")
            yield _RawEntry(raw_name=info.orig_filename, is_dir=is_dir, size=info.file_size,
                            crc=None if is_dir else info.CRC, mtime=_zip_mtime(info),
                            problems=problems, ref=info)

    def _overlapping(self) -> set[int]:
        """Members whose data, at the very least, runs into the next local header."""
        ordered = sorted(self.infos, key=lambda i: i.header_offset)
        bad: set[int] = set()
        for index, info in enumerate(ordered):
            end = (info.header_offset + _LOCAL_HEADER.size + len(_zip_name_bytes(info))
                   + info.compress_size)
            limit = (ordered[index + 1].header_offset if index + 1 < len(ordered)
                     else self._start_dir)
            if end > limit or info.header_offset < 0:
                bad.add(id(info))
        return bad

    def open(self, entry: _Entry) -> _ByteSource:
        info: zipfile.ZipInfo = entry.ref
        name = entry.member.name
        self._fp.seek(info.header_offset)
        header = self._fp.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != _ZIP_LOCAL:
            raise InvalidInput("archive member is corrupt",
                               [Detail("local file header is missing", file=name)])
        fields = _LOCAL_HEADER.unpack(header)
        flags, name_len, extra_len = fields[2], fields[9], fields[10]
        local_name = self._fp.read(name_len)
        if local_name != _zip_name_bytes(info):
            raise UnsafeInput("archive member is inconsistent", [Detail(
                "local header names a different file than the central directory",
                file=name, expected=info.orig_filename,
                found=local_name.decode("utf-8", "replace"))])
        if flags & (_ZIP_FLAG_ENCRYPTED | _ZIP_FLAG_STRONG_ENCRYPTION):
            raise UnsafeInput("archive member is encrypted",
                              [Detail("encrypted member", file=name)])
        offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        raw = _RawRange(self._fp, offset, info.compress_size, name)
        return _ZipData(raw, info.compress_type, name)

    def close(self) -> None:
        self.infos = []


# --- zip members copied while the archive arrives -----------------------------------------


@dataclass(frozen=True)
class StoredPiece:
    """Part of the data of the STORED member whose local header is at ``offset``, met
    while a zip went by; ``last`` marks the member's final piece."""

    offset: int
    raw_name: bytes
    data: memoryview
    last: bool


class StoredMemberSplitter:
    """Follows a zip as it arrives, by its local headers, and hands out the data of its
    STORED members of at least ``min_size`` bytes, so that they can be copied while the
    bytes go by (the archive is read afterwards as usual; see :class:`MemberCopies`).

    Local headers are only what the archive says on the way: nothing here is trusted or
    checked, it only decides what is worth copying.  Following stops at the first thing it
    cannot step over by a size given up front: anything but a local header (the central
    directory, or junk), a member whose sizes come after its data (data descriptor) or
    zip64 sizes.  Compressed, encrypted and small members are stepped over.  Memory: one
    local header at most (< 128 KiB) besides the piece being fed.
    """

    def __init__(self, min_size: int) -> None:
        self.min_size = max(1, min_size)
        self._position = 0  # archive offset of the next byte fed
        self._header = bytearray()
        self._header_at = 0
        self._member: tuple[int, bytes] | None = None  # offset and name of the copied one
        self._left = 0  # data bytes of the current member still to come
        self.following = True

    def feed(self, data: bytes) -> Iterator[StoredPiece]:
        """The pieces of copied members in ``data``, the next bytes of the archive.  The
        pieces are views of ``data``."""
        view = memoryview(data)
        pos = 0
        while pos < len(view) and self.following:
            if self._left:
                take = min(self._left, len(view) - pos)
                self._left -= take
                if self._member is not None:
                    offset, name = self._member
                    yield StoredPiece(offset, name, view[pos:pos + take], last=self._left == 0)
                    if self._left == 0:
                        self._member = None
            else:
                take = self._read_header(view[pos:])
            pos += take
            self._position += take

    def _read_header(self, view: memoryview) -> int:
        if not self._header:
            self._header_at = self._position
        need = self._header_size()
        take = min(need - len(self._header), len(view))
        self._header += view[:take]
        if len(self._header) == _LOCAL_HEADER.size and self._header[:4] != _ZIP_LOCAL:
            self.following = False
        elif len(self._header) == self._header_size():
            self._start_member()
        return take

    def _header_size(self) -> int:
        if len(self._header) < _LOCAL_HEADER.size:
            return _LOCAL_HEADER.size
        name_len, extra_len = struct.unpack_from("<HH", self._header, 26)
        return _LOCAL_HEADER.size + name_len + extra_len

    def _start_member(self) -> None:
        fields = _LOCAL_HEADER.unpack_from(self._header)
        flags, method, stored, size, name_len = fields[2], fields[3], fields[7], fields[8], \
            fields[9]
        if flags & _ZIP_FLAG_DATA_DESCRIPTOR or 0xFFFFFFFF in (stored, size):
            self.following = False
            return
        name = bytes(self._header[_LOCAL_HEADER.size:_LOCAL_HEADER.size + name_len])
        self._header.clear()
        self._left = stored
        copied = (method == zipfile.ZIP_STORED and stored == size and size >= self.min_size
                  and not flags & (_ZIP_FLAG_ENCRYPTED | _ZIP_FLAG_STRONG_ENCRYPTION))
        self._member = (self._header_at, name) if copied else None


@dataclass(frozen=True)
class MemberCopy:
    """The data of one STORED member copied while its zip arrived (from the pieces of a
    :class:`StoredMemberSplitter`), with the CRC-32 measured over the copy; ``content``
    is what holds it (to this module, opaque: the store's staged file)."""

    offset: int
    raw_name: bytes
    size: int
    crc32: int
    content: Any


_COPIES_IN_USE: ContextVar[MemberCopies | None] = ContextVar("davpack_member_copies",
                                                             default=None)


class MemberCopies:
    """Copies of one zip file's STORED members, made while the file arrived, handed to
    whoever reads those members instead of the bytes.

    While :meth:`in_use`, a :class:`SafeArchive` opened on that very file (same device and
    inode) gives each member stream a ``take_copy()`` that hands over the member's copy --
    once, only if nothing was read from the stream yet, and only if the central directory
    says the member is exactly the copy: its local header is at the copy's offset with the
    copy's name, it is STORED and not encrypted, and its sizes and CRC-32 equal the copy's.
    The copy was cut from the same bytes of the same file behind that same local header,
    so it then holds exactly what the stream would deliver, and passes the checks reading
    would make.  Every other member, and every archive check, is as without copies.
    """

    def __init__(self, archive: Path, copies: Iterable[MemberCopy]) -> None:
        found = os.stat(archive)
        self._identity = (found.st_dev, found.st_ino)
        self._copies = {copy.offset: copy for copy in copies}
        self._lock = threading.Lock()

    def describes(self, fp: IO[bytes]) -> bool:
        """Whether ``fp`` is the file these copies were made from."""
        try:
            found = os.fstat(fp.fileno())
        except (AttributeError, OSError, ValueError):
            return False
        return (found.st_dev, found.st_ino) == self._identity

    def take(self, offset: int, raw_name: bytes, size: int, crc32: int) -> Any | None:
        """The content of the copy matching a central directory entry, handed over once."""
        with self._lock:
            copy = self._copies.get(offset)
            if copy is None or (copy.raw_name, copy.size, copy.crc32) != (raw_name, size,
                                                                          crc32):
                return None
            del self._copies[offset]
        return copy.content

    def take_rest(self) -> list[Any]:
        """The content of every copy not handed over (for the owner to discard)."""
        with self._lock:
            rest = [copy.content for copy in self._copies.values()]
            self._copies.clear()
        return rest

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Archives opened on the copied file in this context may hand the copies over."""
        token = _COPIES_IN_USE.set(self)
        try:
            yield
        finally:
            _COPIES_IN_USE.reset(token)


def _copy_key(info: zipfile.ZipInfo) -> tuple[int, bytes, int, int] | None:
    """What a copy of this member must match, when reading it is a plain copy of bytes."""
    if (info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size
            or info.flag_bits & (_ZIP_FLAG_ENCRYPTED | _ZIP_FLAG_STRONG_ENCRYPTION)):
        return None
    return info.header_offset, _zip_name_bytes(info), info.file_size, info.CRC


class _MemberStream(io.BufferedReader):
    """A member's stream, which may hand over a copy of the member instead of its bytes
    (see :class:`MemberCopies`)."""

    def __init__(self, raw: _CheckedStream, take: Callable[[], Any] | None) -> None:
        super().__init__(raw, buffer_size=64 * KiB)
        self._checked = raw
        self._take = take

    def take_copy(self) -> Any | None:
        """The member's copy, if it has one and nothing was read from this stream yet."""
        take, self._take = self._take, None
        if take is None or self.closed or not self._checked.untouched:
            return None
        return take()


# --- tar ---------------------------------------------------------------------------------

_TAR_BLOCK = 512
_TAR_EXTENDED_CAP = MiB
"""Largest pax extended header or GNU long name/link we accept (tarfile reads each whole)."""
_TAR_EXTENDED_BUDGET = 64 * MiB
"""Largest total of extended headers in one archive: tarfile keeps each member's pax
header in memory, so this bounds what listing a hostile archive can cost."""
_TAR_EXTENDED_TYPES = frozenset(b"xgLK")
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{33}")


class _TarGuard:
    """File-like view through which :mod:`tarfile` reads, limiting what headers can cost.

    While the archive is being listed every read is a header: a 512-byte block, or the
    data of a pax (``x``/``g``) or GNU long-name (``L``/``K``) header, which tarfile reads
    into memory in one call.  Those are capped in size and in total.  Pax data is also
    refused if it holds a run of more than 32 digits: Python before 3.11.10/3.12.6 parses
    pax headers with regular expressions that take quadratic time on long digit runs
    (CVE-2024-6232), and no honest header needs one.  Once listing is done only member
    data is read, in pieces of at most :data:`CHUNK`.
    """

    def __init__(self, stream: Any, archive: str) -> None:
        self._stream = stream
        self._archive = archive
        self.listing = True
        self._pending_type = 0  # typeflag of an extended header whose data comes next
        self._extended_total = 0

    def _refuse(self, message: str) -> UnsafeInput:
        return UnsafeInput("tar archive refused", [Detail(message, file=self._archive)])

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise self._refuse("unbounded read of tar data")
        if not self.listing:
            if size > CHUNK:
                raise self._refuse(f"a read of {size} bytes exceeds {CHUNK}")
            data: bytes = self._stream.read(size)
            return data
        if self._pending_type:
            return self._read_extended(size)
        if size > _TAR_EXTENDED_CAP:
            raise self._refuse(f"a tar header block of {size} bytes exceeds the limit of "
                               f"{_TAR_EXTENDED_CAP} bytes")
        data = self._stream.read(size)
        if size == _TAR_BLOCK and len(data) == _TAR_BLOCK \
                and data[156] in _TAR_EXTENDED_TYPES:
            self._pending_type = data[156]
        return data

    def _read_extended(self, size: int) -> bytes:
        kind = chr(self._pending_type)
        self._pending_type = 0
        self._extended_total += size
        if size > _TAR_EXTENDED_CAP:
            raise self._refuse(f"a tar header block of {size} bytes (type {kind!r}) exceeds "
                               f"the limit of {_TAR_EXTENDED_CAP} bytes")
        if self._extended_total > _TAR_EXTENDED_BUDGET:
            raise self._refuse(f"extended tar headers exceed {_TAR_EXTENDED_BUDGET} bytes "
                               "in total")
        data: bytes = self._stream.read(size)
        if kind in "xg" and _LONG_DIGIT_RUN.search(data):
            raise self._refuse("pax extended header holds a run of more than 32 digits "
                               "(refused: it would make the tar parser take quadratic time)")
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position: int = self._stream.seek(offset, whence)
        return position

    def tell(self) -> int:
        position: int = self._stream.tell()
        return position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        raise io.UnsupportedOperation("read-only")

    def close(self) -> None:
        """The stream underneath is closed by its owner."""


class _TarBackend:
    def __init__(self, fp: IO[bytes], kind: str, archive: str) -> None:
        self.kind = kind
        self._archive = archive
        fp.seek(0, os.SEEK_END)
        self.stored_size = fp.tell()
        fp.seek(0)
        self._stream: Any = fp
        if kind == "tar.gz":
            self._stream = gzip.GzipFile(fileobj=fp, mode="rb")
        elif kind == "tar.bz2":
            self._stream = bz2.BZ2File(fp)
        elif kind == "tar.xz":
            self._stream = lzma.LZMAFile(fp)  # noqa: SIM115 - closed in close()
        try:
            self._guard = _TarGuard(self._stream, archive)
            self._tar = tarfile.TarFile(fileobj=self._guard, mode="r", encoding="utf-8",
                                        errors="surrogateescape")
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            self._close_stream()
            raise InvalidInput("not a readable tar archive",
                               [Detail(f"{kind}: {exc}", file=archive)]) from exc

    def entries(self, limits: ArchiveLimits) -> Iterator[_RawEntry]:
        """Stream member headers; stops (and reports) past the member or size limits,
        so a hostile archive cannot make us decompress more than it may declare."""
        count = 0
        total = 0
        while True:
            try:
                info = self._tar.next()
            except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                raise InvalidInput("tar archive is corrupt",
                                   [Detail(str(exc), file=self._archive)]) from exc
            if info is None:
                self._guard.listing = False
                return
            count += 1
            total += info.size
            if count > limits.max_members:
                yield _RawEntry.overflow("members")
                return
            if total > limits.max_total_size:
                yield _RawEntry.overflow("size")
                return
            yield self._entry(info)

    def _entry(self, info: tarfile.TarInfo) -> _RawEntry:
        problems: list[str] = []
        if info.issym():
            problems.append(f"symbolic link (to {info.linkname!r})")
        elif info.islnk():
            problems.append(f"hard link (to {info.linkname!r})")
        elif info.ischr() or info.isblk():
            problems.append("device file")
        elif info.isfifo():
            problems.append("named pipe (FIFO)")
        elif info.issparse():
            problems.append("sparse file (not supported)")
        elif not (info.isreg() or info.isdir()):
            problems.append(f"unsupported tar member type {info.type!r}")
        try:
            mtime: datetime | None = datetime.fromtimestamp(info.mtime, UTC)
        except (OverflowError, OSError, ValueError):
            mtime = None
        return _RawEntry(raw_name=info.name, is_dir=info.isdir(),
                         size=0 if info.isdir() else info.size, crc=None, mtime=mtime,
                         problems=problems, ref=info)

    def open(self, entry: _Entry) -> _ByteSource:
        try:
            stream = self._tar.extractfile(entry.ref)
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise _corrupt(entry.member.name, exc) from exc
        if stream is None:  # cannot happen: only regular files get here
            raise InvalidInput("not a regular file", [Detail("not a regular file",
                                                             file=entry.member.name)])
        return stream

    def _close_stream(self) -> None:
        if self.kind != "tar":
            self._stream.close()  # closes the decompressor, not the caller's file

    def close(self) -> None:
        self._tar.close()
        self._close_stream()


# --- the archive -------------------------------------------------------------------------


@dataclass
class _RawEntry:
    """A member as the backend found it, before the common checks."""

    raw_name: str
    is_dir: bool
    size: int
    crc: int | None
    mtime: datetime | None
    problems: list[str]
    ref: Any
    is_overflow: bool = False

    @classmethod
    def overflow(cls, limit: str) -> _RawEntry:
        """Marker: the backend stopped listing because ``limit`` ("members" or "size")
        was passed; nothing after it is looked at."""
        return cls("", False, 0, None, None, [limit], None, is_overflow=True)


@dataclass
class _Entry:
    member: Member
    raw_name: str
    ref: Any


def _sniff(head: bytes) -> str | None:
    """The archive kind from its first bytes: zip, tar, tar.gz, tar.bz2, tar.xz."""
    if head[:4] in (_ZIP_LOCAL, _ZIP_END):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:3] == b"BZh":
        return "tar.bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "tar.xz"
    if len(head) >= 512 and (head[257:262] == b"ustar" or _v7_tar_header(head[:512])):
        return "tar"
    return None


def _v7_tar_header(block: bytes) -> bool:
    """An old-style tar header (no magic) is recognised by its checksum; all zeros is an
    empty archive."""
    if block == bytes(512):
        return True
    try:
        stored = int(block[148:156].replace(b"\x00", b" ").strip() or b"x", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:512])


class _ArchiveOpener(Protocol):
    def __call__(self, source: ArchiveSource, limits: ArchiveLimits | None = None,
                 name: str | None = None) -> SafeArchive: ...


class _OpenMethod:
    """``SafeArchive.open(source)`` opens an archive; ``archive.open(name)`` a member.

    Both spellings were asked for; a descriptor lets one name serve the class and its
    instances with precise types for each.
    """

    @overload
    def __get__(self, obj: None, owner: type[SafeArchive]) -> _ArchiveOpener: ...
    @overload
    def __get__(self, obj: SafeArchive, owner: type[SafeArchive]) -> Callable[[str], IO[bytes]]:
        ...
    def __get__(self, obj: SafeArchive | None, owner: type[SafeArchive]) -> Any:
        if obj is None:
            return owner.open_archive
        return obj.open_member


class SafeArchive:
    """A validated zip or tar archive.  Create with :meth:`SafeArchive.open`."""

    open = _OpenMethod()

    def __init__(self, fp: IO[bytes], owned: bool, name: str, limits: ArchiveLimits) -> None:
        """Private: use :meth:`SafeArchive.open`."""
        self.name = name
        self.limits = limits
        self.kind = ""
        """``zip``, ``tar``, ``tar.gz``, ``tar.bz2`` or ``tar.xz``."""
        self._fp = fp
        self._owned = owned
        self._backend: _ZipBackend | _TarBackend | None = None
        self._entries: list[_Entry] = []
        self._by_name: dict[str, _Entry] = {}
        self._copies: MemberCopies | None = None

    @classmethod
    def open_archive(cls, source: ArchiveSource, limits: ArchiveLimits | None = None,
                     name: str | None = None) -> SafeArchive:
        """Open and validate an archive; also spelled ``SafeArchive.open(source)``.

        ``name`` is used in error details (defaults to the path or the file's name).
        Raises :class:`UnsafeInput` listing every offending member, or
        :class:`InvalidInput` if the content is neither zip nor tar.
        """
        limits = limits or ArchiveLimits()
        if isinstance(source, (str, os.PathLike)):
            fp: IO[bytes] = open(source, "rb")  # noqa: SIM115 - owned by the archive
            owned = True
            name = name or os.fspath(source)
        else:
            fp, owned = source, False
            file_name = getattr(source, "name", None)
            name = name or (file_name if isinstance(file_name, str) else "archive")
        archive = cls(fp, owned, name, limits)
        try:
            archive._load()
        except BaseException:
            archive.close()
            raise
        copies = _COPIES_IN_USE.get()
        if copies is not None and archive.kind == "zip" and copies.describes(fp):
            archive._copies = copies
        return archive

    # -- loading and validation --

    def _load(self) -> None:
        self._fp.seek(0)
        head = self._fp.read(512)
        self._fp.seek(0)
        kind = _sniff(head)
        if kind is None:
            raise InvalidInput("not a zip or tar archive", [Detail(
                "content is neither zip nor tar (plain, gzip, bzip2 or xz compressed)",
                file=self.name)])
        self.kind = kind
        if kind == "zip":
            self._backend = _ZipBackend(self._fp, self.name, self.limits)
        else:
            self._backend = _TarBackend(self._fp, kind, self.name)
        self._validate(self._backend)

    def _validate(self, backend: _ZipBackend | _TarBackend) -> None:
        limits = self.limits
        findings: list[Detail] = []
        count = 0
        total = 0
        overflow = ""
        files: list[_Entry] = []
        parents: set[str] = set()
        for raw in backend.entries(limits):
            if raw.is_overflow:
                overflow = raw.problems[0]
                break
            count += 1
            total += raw.size
            problems = raw.problems + _name_problems(raw.raw_name, raw.is_dir,
                                                     limits.max_name_length)
            if raw.size > limits.max_member_size:
                problems.append(f"declares {raw.size} bytes; the limit per member is "
                                f"{limits.max_member_size}")
            if not problems:
                name = _normalise(raw.raw_name)
                if name == "" and raw.is_dir:
                    continue  # "./": the archive root itself
                if name in self._by_name:
                    earlier = self._by_name[name].raw_name
                    problems.append("duplicate name" if earlier == raw.raw_name else
                                    f"duplicate of {earlier!r} once normalised")
                else:
                    entry = _Entry(Member(name, raw.size, raw.is_dir, raw.crc, raw.mtime),
                                   raw.raw_name, raw.ref)
                    self._entries.append(entry)
                    self._by_name[name] = entry
                    parents.update(_parents(name))
                    if not raw.is_dir:
                        files.append(entry)
            if problems:
                findings.append(Detail("; ".join(problems), file=_shown(raw.raw_name)))
        for entry in files:
            if entry.member.name in parents:
                findings.append(Detail("is a file, but other members are inside it",
                                       file=entry.raw_name))
        if overflow == "members" or count > limits.max_members:
            findings.append(Detail(f"more than {limits.max_members} members", file=self.name))
        if overflow == "size" or total > limits.max_total_size:
            findings.append(Detail(
                f"declared content exceeds the limit of {limits.max_total_size} bytes",
                file=self.name, expected=f"at most {limits.max_total_size} bytes",
                found=f"more than {limits.max_total_size} bytes" if overflow else
                f"{total} bytes"))
        if isinstance(backend, _TarBackend) and backend.kind != "tar" \
                and total > limits.ratio_min_size:
            ratio = total / max(backend.stored_size, 1)
            if ratio > limits.max_ratio:
                findings.append(Detail(
                    f"declares {ratio:.0f} times its compressed size; the limit is "
                    f"{limits.max_ratio:g} (tar bomb?)", file=self.name))
        if findings:
            raise UnsafeInput(f"{self.name}: unsafe archive refused "
                              f"({len(findings)} problem{'s' if len(findings) > 1 else ''})",
                              findings)

    # -- queries --

    def names(self) -> list[str]:
        """Regular file names, normalised, in archive order."""
        return [e.member.name for e in self._entries if not e.member.is_dir]

    def members(self) -> Iterator[Member]:
        """Every file and explicit directory, in archive order."""
        return (e.member for e in self._entries)

    def has(self, name: str) -> bool:
        """Whether ``name`` is a member (file or explicit directory)."""
        return _normalise(name) in self._by_name

    def member(self, name: str) -> Member:
        """The member called ``name``; :class:`InvalidInput` if there is none."""
        return self._lookup(name).member

    def _lookup(self, name: str) -> _Entry:
        entry = self._by_name.get(_normalise(name))
        if entry is None:
            raise InvalidInput("no such file in the archive",
                               [Detail(f"not found in archive {self.name}", file=name)])
        return entry

    # -- reading --

    def open_member(self, name: str) -> IO[bytes]:
        """A buffered binary stream of a regular file; also spelled ``archive.open(name)``.

        The stream delivers exactly the declared size and checks the CRC-32 (zip) when it
        reaches the end; see :class:`_CheckedStream` for the errors.
        """
        entry = self._lookup(name)
        if entry.member.is_dir:
            raise InvalidInput("not a regular file",
                               [Detail("is a directory", file=entry.member.name)])
        if self._backend is None:
            raise ValueError("archive is closed")
        source = self._backend.open(entry)
        checked = _CheckedStream(source, entry.member.size, entry.member.crc32,
                                 entry.member.name)
        key = _copy_key(entry.ref) if self._copies is not None else None
        take = partial(self._copies.take, *key) if self._copies is not None and key else None
        return _MemberStream(checked, take)

    def read_bytes(self, name: str, max_bytes: int) -> bytes:
        """The whole content of a small member (a manifest), refused if it declares more
        than ``max_bytes``."""
        member = self.member(name)
        if member.size > max_bytes:
            raise SizeLimitExceeded("archive member is too large", [Detail(
                "member is larger than allowed here", file=member.name,
                expected=f"at most {max_bytes} bytes", found=f"{member.size} bytes")])
        with self.open_member(name) as stream:
            return stream.read()

    def extract_all(self, dest_dir: str | os.PathLike[str], *,
                    skip: Callable[[str], bool] | None = None) -> list[Path]:
        """Write every regular file and directory below ``dest_dir``; return the files.

        Each path component is opened relative to its parent with ``O_NOFOLLOW`` and files
        are created with ``O_EXCL``, so nothing already in ``dest_dir`` (a symlink planted
        by someone else, an earlier file) is followed or overwritten; the final path is
        checked again with ``realpath``.  Pass ``skip=junk_name`` to leave out clutter.
        On error, what was written so far stays: extract into a fresh directory and
        remove it if this raises.
        """
        os.makedirs(dest_dir, exist_ok=True)
        root = os.path.realpath(dest_dir)
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        written: list[Path] = []
        try:
            for entry in self._entries:
                name = entry.member.name
                if skip is not None and skip(name):
                    continue
                parts = name.split("/")
                if entry.member.is_dir:
                    os.close(_open_dirs(root_fd, parts, name))
                    continue
                parent_fd = _open_dirs(root_fd, parts[:-1], name)
                try:
                    self._write_file(entry, parent_fd, parts[-1])
                finally:
                    os.close(parent_fd)
                target = os.path.join(root, *parts)
                real = os.path.realpath(target)
                if real != target or os.path.commonpath([root, real]) != root:
                    raise UnsafeInput("extraction escaped the destination", [Detail(
                        f"written file resolves to {real}", file=name)])
                written.append(Path(target))
        finally:
            os.close(root_fd)
        return written

    def _write_file(self, entry: _Entry, parent_fd: int, leaf: str) -> None:
        name = entry.member.name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(leaf, flags, 0o644, dir_fd=parent_fd)
        except FileExistsError:
            raise _in_the_way(parent_fd, leaf, name) from None
        with os.fdopen(fd, "wb") as out, self.open_member(name) as source:
            while chunk := source.read(CHUNK):
                out.write(chunk)
            out.flush()
            if entry.member.mtime is not None:
                stamp = entry.member.mtime.timestamp()
                os.utime(out.fileno(), (stamp, stamp))

    # -- lifetime --

    def close(self) -> None:
        """Release the archive (and the file, if it was opened from a path)."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        if self._owned and not self._fp.closed:
            self._fp.close()

    def __enter__(self) -> SafeArchive:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _parents(name: str) -> Iterator[str]:
    """``a/b/c`` -> ``a``, ``a/b``."""
    parts = name.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


def _open_dirs(root_fd: int, parts: list[str], name: str) -> int:
    """Create/open ``parts`` below ``root_fd`` one component at a time, never following a
    symlink; return a descriptor of the innermost directory."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _in_the_way(fd, part, name) from None
                raise
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _in_the_way(dir_fd: int, part: str, name: str) -> UnsafeInput | Conflict:
    """Why ``part`` (already in the destination) blocks extracting ``name``."""
    if stat.S_ISLNK(os.lstat(part, dir_fd=dir_fd).st_mode):
        return UnsafeInput("extraction would follow a symbolic link", [Detail(
            f"{part!r} in the destination is a symbolic link", file=name)])
    return Conflict("extraction would overwrite what is in the destination", [Detail(
        f"{part!r} already exists in the destination", file=name)])
