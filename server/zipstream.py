"""Deterministic, range-addressable ZIP writer for packages served over HTTP.

Why not :mod:`zipfile`: it writes forward into a file, so it cannot tell the archive's
length before writing, nor produce bytes ``[a, b)`` without producing ``[0, a)`` first.
Here every member is STORED with its size and CRC-32 known in advance (the repository
records them at ingest), so the whole layout -- every header, offset and the central
directory -- is a pure function of the entry metadata.  That gives:

* ``ZipLayout.total_size`` before any byte is produced (an exact ``Content-Length``);
* ``ZipLayout.iter_bytes(start, end)``, which opens only the members overlapping the
  range and seeks inside them (HTTP ``Range`` resumes of multi-GB AIPs, no temp files);
* byte-for-byte determinism (same entries -> same bytes -> stable ETag/``If-Range``).

Format choices (PKWARE APPNOTE 6.3.x), chosen so Python's zipfile, Info-ZIP UnZip 6 and
``java.util.zip`` (DSpace) all read the result:

* method 0 (STORED), no data descriptors (bit 3 clear): sizes and CRC are in the headers;
* flag bit 11 (UTF-8) only when the name is not pure ASCII;
* "version needed" 1.0, 2.0 for directories, 4.5 when the entry uses ZIP64.  We never
  claim 6.3 for UTF-8 names: UnZip 6.0 refuses entries that need more than 4.5;
* ZIP64 extra fields hold only the values whose 32-bit field is 0xFFFFFFFF, in APPNOTE
  order; the local ZIP64 extra always holds both sizes (APPNOTE 4.5.3);
* the ZIP64 end record and locator are written only when the entry count, or the central
  directory's offset or size, does not fit (or when ``force_zip64`` is set for tests);
* host "Unix" with mode 0644 files / 0755 directories, so extraction gets sane modes.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import weakref
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol, cast

from server.errors import (
    ChecksumMismatch,
    ContentMissing,
    DavpackError,
    Detail,
    InvalidInput,
    UnsafeInput,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MemberSpan",
    "ZipEntry",
    "ZipLayout",
    "spool_member",
]

DEFAULT_CHUNK_SIZE = 1 << 20
"""Size of the chunks ``iter_bytes`` yields (all but the last are exactly this long)."""

_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF

_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_EOCD_SIG = 0x06054B50
_EOCD64_SIG = 0x06064B50
_LOCATOR_SIG = 0x07064B50
_ZIP64_TAG = 0x0001

# sig, version needed, flags, method, time, date, crc, csize, usize, name len, extra len
_LOCAL = struct.Struct("<IHHHHHIIIHH")
# sig, made by, needed, flags, method, time, date, crc, csize, usize, name len, extra len,
# comment len, disk start, internal attrs, external attrs, local header offset
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
# sig, disk, cd disk, entries on disk, entries, cd size, cd offset, comment len
_EOCD = struct.Struct("<IHHHHIIH")
# sig, record size, made by, needed, disk, cd disk, entries on disk, entries, cd size, cd off
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
# sig, disk holding the ZIP64 end record, its offset, total disks
_LOCATOR = struct.Struct("<IIQI")
_LOCAL_ZIP64_EXTRA_LEN = 20  # tag, size, uncompressed size, compressed size

_VERSION_STORED = 10
_VERSION_DIRECTORY = 20
_VERSION_ZIP64 = 45
_MADE_BY = (3 << 8) | _VERSION_ZIP64  # host Unix; we implement APPNOTE 4.5 features
_FLAG_UTF8 = 0x800
_FILE_ATTRS = 0o100644 << 16
_DIR_ATTRS = (0o040755 << 16) | 0x10  # Unix mode + MS-DOS directory bit

_DOS_MIN = datetime(1980, 1, 1)
_DOS_MAX = datetime(2107, 12, 31, 23, 59, 58)

# A comment holding this would make readers that scan backwards for the end record
# (zipfile, UnZip) find it inside the comment and misparse the archive.
_EOCD_MAGIC = struct.pack("<I", _EOCD_SIG)


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _dos_datetime(when: datetime) -> tuple[int, int]:
    """(time, date) DOS fields.  Aware datetimes go to UTC; naive ones are taken as-is."""
    if when.tzinfo is not None:
        try:
            when = when.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # within a day of year 1 or 9999: clamped below anyway
            when = when.replace(tzinfo=None)
    when = min(max(when, _DOS_MIN), _DOS_MAX)
    dos_time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
    dos_date = ((when.year - 1980) << 9) | (when.month << 5) | when.day
    return dos_time, dos_date


@dataclass(frozen=True)
class ZipEntry:
    """One STORED member whose size and CRC-32 are known before it is streamed.

    ``opener`` must return a *new*, independent binary stream on every call (ranges may
    be served concurrently); a seekable stream makes ranged reads cheap.  The caller
    guarantees that the stream's bytes match ``size`` and ``crc32``: the size is checked
    while streaming, the CRC only with ``iter_bytes(verify=True)``.

    ``cleanup``, when set, releases what backs the entry (e.g. a spooled temp file); the
    code that created the entry owns it and calls :meth:`close` (or ``ZipLayout.close``)
    once no more bytes will be read.
    """

    name: str
    size: int
    crc32: int
    mtime: datetime
    opener: Callable[[], BinaryIO] = field(repr=False, compare=False)
    cleanup: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems: list[Detail] = []
        if not isinstance(self.name, str):
            problems.append(Detail("member name must be a str", field="name",
                                   found=type(self.name).__name__))
        name = self.name if isinstance(self.name, str) else repr(self.name)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not (
            0 <= self.size <= _U64_MAX
        ):
            problems.append(Detail("size must be an int in [0, 2**64)", file=name,
                                   field="size", found=repr(self.size)))
        if isinstance(self.crc32, bool) or not isinstance(self.crc32, int) or not (
            0 <= self.crc32 <= _U32_MAX
        ):
            problems.append(Detail("crc32 must be an unsigned 32-bit int", file=name,
                                   field="crc32", found=repr(self.crc32)))
        if not isinstance(self.mtime, datetime):
            problems.append(Detail("mtime must be a datetime", file=name, field="mtime",
                                   found=type(self.mtime).__name__))
        if not callable(self.opener):
            problems.append(Detail("opener must be callable", file=name, field="opener"))
        if not problems and self.size == 0 and self.crc32 != 0:
            problems.append(Detail("an empty member's CRC-32 is 0", file=name, field="crc32",
                                   expected="00000000", found=f"{self.crc32:08x}"))
        if not problems and name.endswith("/") and self.size != 0:
            problems.append(Detail("a directory entry (name ending in '/') must be empty",
                                   file=name, field="size", expected="0",
                                   found=str(self.size)))
        if problems:
            raise InvalidInput("invalid zip entry", problems)

    @classmethod
    def from_bytes(cls, name: str, data: bytes, mtime: datetime) -> ZipEntry:
        """Entry for a small generated member (mets.xml) held in memory."""
        data = bytes(data)
        return cls(name, len(data), zlib.crc32(data), mtime, lambda: io.BytesIO(data))

    @classmethod
    def from_file(
        cls, name: str, path: str | os.PathLike[str], mtime: datetime
    ) -> ZipEntry:
        """Entry for a file whose CRC is not recorded: reads it once to get size and CRC."""
        fspath = os.fspath(path)
        crc = 0
        size = 0
        try:
            with open(fspath, "rb", buffering=0) as stream:
                buf = bytearray(DEFAULT_CHUNK_SIZE)
                view = memoryview(buf)
                while n := stream.readinto(buf):
                    crc = zlib.crc32(view[:n], crc)
                    size += n
        except OSError as exc:
            raise ContentMissing(
                f"cannot read {fspath} for zip member {name}",
                [Detail("cannot read member source", file=name, found=str(exc))],
            ) from exc

        def opener() -> BinaryIO:
            return open(fspath, "rb")

        return cls(name, size, crc, mtime, opener)

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    def close(self) -> None:
        """Release what backs this entry (no-op for entries without ``cleanup``)."""
        if self.cleanup is not None:
            self.cleanup()

    def __enter__(self) -> ZipEntry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemberSpan(NamedTuple):
    """Where one member sits in the archive: [header_offset, data_start) is its local
    header, [data_start, data_end) its bytes."""

    name: str
    header_offset: int
    data_start: int
    data_end: int


@dataclass(slots=True)
class _Member:
    entry: ZipEntry
    name: bytes
    flags: int
    dos_time: int
    dos_date: int
    version: int
    offset: int
    local_zip64: bool
    central_zip64: tuple[int, ...]

    @property
    def local_len(self) -> int:
        return _LOCAL.size + len(self.name) + (_LOCAL_ZIP64_EXTRA_LEN if self.local_zip64 else 0)

    @property
    def central_len(self) -> int:
        extra = 4 + 8 * len(self.central_zip64) if self.central_zip64 else 0
        return _CENTRAL.size + len(self.name) + extra

    def local_header(self) -> bytes:
        size = self.entry.size
        if self.local_zip64:
            size32 = _U32_MAX
            extra = struct.pack("<HHQQ", _ZIP64_TAG, 16, size, size)
        else:
            size32 = size
            extra = b""
        head = _LOCAL.pack(
            _LOCAL_SIG, self.version, self.flags, 0, self.dos_time, self.dos_date,
            self.entry.crc32, size32, size32, len(self.name), len(extra),
        )
        return head + self.name + extra

    def central_header(self, force_zip64: bool) -> bytes:
        fields = self.central_zip64
        size_in_extra = force_zip64 or self.entry.size >= _U32_MAX
        size32 = _U32_MAX if size_in_extra else self.entry.size
        offset32 = _U32_MAX if force_zip64 or self.offset >= _U32_MAX else self.offset
        extra = (
            struct.pack(f"<HH{len(fields)}Q", _ZIP64_TAG, 8 * len(fields), *fields)
            if fields else b""
        )
        head = _CENTRAL.pack(
            _CENTRAL_SIG, _MADE_BY, self.version, self.flags, 0, self.dos_time,
            self.dos_date, self.entry.crc32, size32, size32, len(self.name), len(extra),
            0, 0, 0, _DIR_ATTRS if self.entry.is_dir else _FILE_ATTRS, offset32,
        )
        return head + self.name + extra


def _check_name(name: str, unsafe: list[Detail], invalid: list[Detail]) -> bytes | None:
    """Encoded name, or None after recording why it cannot be an archive path."""
    if name == "":
        invalid.append(Detail("member name is empty", field="name"))
        return None
    if "\x00" in name or "\\" in name:
        unsafe.append(Detail("member name contains a NUL or a backslash", file=name,
                             field="name"))
        return None
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isascii()
                                and name[0].isalpha()):
        unsafe.append(Detail("member name is absolute", file=name, field="name"))
        return None
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if any(part in ("", ".", "..") for part in parts):
        unsafe.append(Detail("member name has an empty, '.' or '..' component", file=name,
                             field="name"))
        return None
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        invalid.append(Detail("member name is not encodable as UTF-8", file=repr(name),
                              field="name", found=str(exc)))
        return None
    if len(encoded) > _U16_MAX:
        invalid.append(Detail("member name is longer than 65535 bytes", file=name[:80],
                              field="name", found=str(len(encoded))))
        return None
    return encoded


class ZipLayout:
    """The complete, immutable byte layout of one STORED zip archive.

    Building a layout reads no member content.  ``iter_bytes`` may run many times, also
    concurrently, as long as each ``opener`` returns an independent stream.

    Cleanup ownership: the layout only *borrows* its entries.  Entries that own
    resources (from :func:`spool_member`) must be closed by whoever created them, after
    the last ``iter_bytes`` finished -- either one by one or all at once with
    :meth:`close` / ``with ZipLayout(...)``, which closes every entry.
    """

    def __init__(
        self, entries: Iterable[ZipEntry], comment: str = "", *, force_zip64: bool = False
    ) -> None:
        self._entries: tuple[ZipEntry, ...] = tuple(entries)
        self._force_zip64 = force_zip64
        try:
            self._comment = comment.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput("zip comment is not encodable as UTF-8",
                               [Detail(str(exc), field="comment")]) from exc
        if len(self._comment) > _U16_MAX:
            raise InvalidInput("zip comment is longer than 65535 bytes",
                               [Detail("comment too long", field="comment",
                                       found=str(len(self._comment)))])
        if _EOCD_MAGIC in self._comment:
            raise InvalidInput("zip comment contains the end-of-central-directory signature",
                               [Detail("comment must not contain 'PK\\x05\\x06'",
                                       field="comment")])

        self._members = self._plan_members()
        # Segment k: 2i = local header i, 2i+1 = data i, 2n+i = central header i,
        # 3n = ZIP64 end record, 3n+1 = locator, 3n+2 = end record; _starts[3n+3] = total.
        starts = array("Q")
        pos = 0
        for m in self._members:
            starts.append(pos)
            pos += m.local_len
            starts.append(pos)
            pos += m.entry.size
        self._cd_offset = pos
        for m in self._members:
            starts.append(pos)
            pos += m.central_len
        self._cd_size = pos - self._cd_offset
        count = len(self._members)
        self._zip64_end = (
            force_zip64
            or count >= _U16_MAX
            or self._cd_offset >= _U32_MAX
            or self._cd_size >= _U32_MAX
        )
        starts.append(pos)
        pos += _EOCD64.size if self._zip64_end else 0
        starts.append(pos)
        pos += _LOCATOR.size if self._zip64_end else 0
        starts.append(pos)
        pos += _EOCD.size + len(self._comment)
        starts.append(pos)
        if pos > _U64_MAX:
            raise InvalidInput("zip archive would exceed 2**64 bytes")
        self._starts = starts
        self._total = pos

    def _plan_members(self) -> list[_Member]:
        unsafe: list[Detail] = []
        invalid: list[Detail] = []
        members: list[_Member] = []
        seen: set[str] = set()
        files: set[str] = set()
        dirs: set[str] = set()
        offset = 0
        force = self._force_zip64
        for entry in self._entries:
            encoded = _check_name(entry.name, unsafe, invalid)
            if encoded is None:
                continue
            if entry.name in seen:
                invalid.append(Detail("duplicate member name", file=entry.name, field="name"))
                continue
            seen.add(entry.name)
            bare = entry.name.rstrip("/")
            (dirs if entry.is_dir else files).add(bare)
            parts = bare.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))

            big = entry.size >= _U32_MAX
            far = offset >= _U32_MAX
            central: list[int] = []
            if force or big:
                central += [entry.size, entry.size]
            if force or far:
                central.append(offset)
            version = _VERSION_STORED
            if entry.is_dir:
                version = _VERSION_DIRECTORY
            if central:
                version = _VERSION_ZIP64
            dos_time, dos_date = _dos_datetime(entry.mtime)
            member = _Member(
                entry=entry,
                name=encoded,
                flags=0 if entry.name.isascii() else _FLAG_UTF8,
                dos_time=dos_time,
                dos_date=dos_date,
                version=version,
                offset=offset,
                local_zip64=force or big,
                central_zip64=tuple(central),
            )
            members.append(member)
            offset += member.local_len + entry.size
        for clash in sorted(files & dirs):
            invalid.append(Detail("name is used both as a file and as a directory",
                                  file=clash, field="name"))
        if unsafe:
            raise UnsafeInput("unsafe zip member names", unsafe + invalid)
        if invalid:
            raise InvalidInput("invalid zip member names", invalid)
        return members

    # -- sizes and positions -------------------------------------------------------

    @property
    def total_size(self) -> int:
        """Exact length of the archive in bytes."""
        return self._total

    @property
    def entries(self) -> tuple[ZipEntry, ...]:
        return self._entries

    @property
    def uses_zip64(self) -> bool:
        """True when the archive needs (or was forced to use) any ZIP64 record."""
        return self._zip64_end or any(m.central_zip64 for m in self._members)

    def member_spans(self) -> list[MemberSpan]:
        """Offsets of every member's header and data, in archive order."""
        return [
            MemberSpan(m.entry.name, m.offset, m.offset + m.local_len,
                       m.offset + m.local_len + m.entry.size)
            for m in self._members
        ]

    def fingerprint(self) -> str:
        """SHA-256 hex of the central directory and end records.

        They hold every name, size, CRC, date and offset, so -- given the callers'
        guarantee that content matches its size and CRC -- equal fingerprints mean equal
        archives.  Suitable as a strong ETag without reading any member.
        """
        digest = sha256()
        for chunk in self.iter_bytes(self._cd_offset, self._total):
            digest.update(chunk)
        return digest.hexdigest()

    # -- producing bytes -----------------------------------------------------------

    def _tail_bytes(self, k: int) -> bytes:
        """Bytes of one of the three end segments (3n, 3n+1, 3n+2)."""
        n = len(self._members)
        which = k - 3 * n
        eocd64_offset = self._cd_offset + self._cd_size
        if which == 0:
            return _EOCD64.pack(
                _EOCD64_SIG, _EOCD64.size - 12, _MADE_BY, _VERSION_ZIP64, 0, 0,
                n, n, self._cd_size, self._cd_offset,
            ) if self._zip64_end else b""
        if which == 1:
            return _LOCATOR.pack(_LOCATOR_SIG, 0, eocd64_offset, 1) if self._zip64_end else b""
        force = self._force_zip64
        count = _U16_MAX if force or n >= _U16_MAX else n
        cd_size = _U32_MAX if force or self._cd_size >= _U32_MAX else self._cd_size
        cd_offset = _U32_MAX if force or self._cd_offset >= _U32_MAX else self._cd_offset
        return _EOCD.pack(
            _EOCD_SIG, 0, 0, count, count, cd_size, cd_offset, len(self._comment)
        ) + self._comment

    def _meta_bytes(self, k: int) -> bytes:
        n = len(self._members)
        if k < 2 * n:
            return self._members[k // 2].local_header()
        if k < 3 * n:
            return self._members[k - 2 * n].central_header(self._force_zip64)
        return self._tail_bytes(k)

    def iter_bytes(
        self,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        verify: bool = False,
    ) -> Iterator[bytes]:
        """Yield archive bytes ``[start, end)`` in chunks of exactly ``chunk_size`` bytes
        (the last one may be shorter).

        Arguments are checked now, not at the first ``next()``, so an HTTP layer learns
        about a bad range before it sends headers.  Only members overlapping the range
        are opened.  A member whose stream is shorter (or, when its end is in range,
        longer) than declared raises :class:`ContentMissing`.  With ``verify=True`` the
        CRC of every member streamed *in full* is recomputed and a mismatch raises
        :class:`ChecksumMismatch` -- after that member's bytes may already have been
        yielded, so the consumer must treat any exception as a failed transfer.
        """
        if end is None:
            end = self._total
        if not (0 <= start <= end <= self._total):
            raise InvalidInput(
                "byte range outside the archive",
                [Detail("need 0 <= start <= end <= total size", field="range",
                        expected=f"[0, {self._total}]", found=f"[{start}, {end})")],
            )
        if chunk_size < 1:
            raise InvalidInput("chunk_size must be positive",
                               [Detail("bad chunk size", field="chunk_size",
                                       found=str(chunk_size))])
        return self._generate(start, end, chunk_size, verify)

    def _generate(self, start: int, end: int, chunk_size: int, verify: bool) -> Iterator[bytes]:
        n = len(self._members)
        starts = self._starts
        pending = bytearray()  # bytes not yet yielded; always shorter than chunk_size
        pos = start
        k = bisect_right(starts, pos) - 1
        while pos < end:
            seg_start = starts[k]
            seg_end = starts[k + 1]
            if seg_end <= pos:  # empty segment (e.g. no ZIP64 records)
                k += 1
                continue
            lo = pos - seg_start
            hi = min(end, seg_end) - seg_start
            if k < 2 * n and k % 2 == 1:
                yield from self._stream_member(
                    self._members[k // 2].entry, lo, hi, pending, chunk_size, verify
                )
            else:
                pending += self._meta_bytes(k)[lo:hi]
                while len(pending) >= chunk_size:
                    yield bytes(pending[:chunk_size])
                    del pending[:chunk_size]
            pos = seg_start + hi
            k += 1
        if pending:
            yield bytes(pending)

    @staticmethod
    def _stream_member(
        entry: ZipEntry, lo: int, hi: int, pending: bytearray, chunk_size: int, verify: bool
    ) -> Iterator[bytes]:
        """Yield member bytes [lo, hi), topping up ``pending`` first, so chunks stay
        exactly ``chunk_size`` long while large members are passed through uncopied."""
        whole = lo == 0 and hi == entry.size
        check_crc = verify and whole
        crc = 0
        try:
            stream = entry.opener()
        except DavpackError:
            raise
        except OSError as exc:
            raise ContentMissing(
                f"cannot open zip member {entry.name}",
                [Detail("cannot open member content", file=entry.name, found=str(exc))],
            ) from exc
        try:
            with stream:
                if lo:
                    _skip(stream, lo, entry)
                remaining = hi - lo
                while remaining:
                    want = min(remaining, chunk_size - len(pending))
                    data = _read_exact(stream, want)
                    if len(data) != want:
                        raise _short(entry, lo + (hi - lo - remaining) + len(data))
                    remaining -= want
                    if check_crc:
                        crc = zlib.crc32(data, crc)
                    if pending:
                        pending += data
                        if len(pending) == chunk_size:
                            yield bytes(pending)
                            pending.clear()
                    elif want == chunk_size:
                        yield data
                    else:
                        pending += data
                if hi == entry.size and stream.read(1):
                    raise ContentMissing(
                        f"zip member {entry.name} is longer than declared",
                        [Detail("member content is longer than its declared size",
                                file=entry.name, field="size", expected=str(entry.size),
                                found=f"> {entry.size}")],
                    )
        except OSError as exc:
            raise ContentMissing(
                f"cannot read zip member {entry.name}",
                [Detail("error while reading member content", file=entry.name,
                        found=str(exc))],
            ) from exc
        if check_crc and crc != entry.crc32:
            raise ChecksumMismatch(
                f"zip member {entry.name} does not match its declared CRC-32",
                [Detail("CRC-32 mismatch", file=entry.name, field="crc32",
                        expected=f"{entry.crc32:08x}", found=f"{crc:08x}")],
            )

    def write_to(self, fileobj: _Sink, *, verify: bool = False) -> int:
        """Write the whole archive to ``fileobj``; returns the number of bytes written."""
        written = 0
        for chunk in self.iter_bytes(verify=verify):
            fileobj.write(chunk)
            written += len(chunk)
        return written

    # -- cleanup -------------------------------------------------------------------

    def close(self) -> None:
        """Close every entry (releases spooled temp files).  Call after the last read."""
        for entry in self._entries:
            entry.close()

    def __enter__(self) -> ZipLayout:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _short(entry: ZipEntry, got: int) -> ContentMissing:
    return ContentMissing(
        f"zip member {entry.name} is shorter than declared",
        [Detail("member content ended early", file=entry.name, field="size",
                expected=str(entry.size), found=str(got))],
    )


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read n bytes, or fewer only at end of stream (read() may return short counts)."""
    data = stream.read(n)
    if data is None:  # non-blocking raw stream with nothing available
        raise OSError("stream returned no data (non-blocking?)")
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _skip(stream: BinaryIO, count: int, entry: ZipEntry) -> None:
    """Position the stream ``count`` bytes in: seek if possible, else read and discard."""
    seekable = getattr(stream, "seekable", None)
    if seekable is not None and seekable():
        stream.seek(count, io.SEEK_CUR)
        return
    done = 0
    while done < count:
        data = stream.read(min(count - done, DEFAULT_CHUNK_SIZE))
        if not data:
            raise _short(entry, done)
        done += len(data)


# -- spooled members -----------------------------------------------------------------


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _SpoolWriter(io.RawIOBase):
    """Write target for a producer: tracks size and CRC, spills to disk past a limit."""

    def __init__(self, max_memory: int, tmpdir: str | os.PathLike[str] | None) -> None:
        super().__init__()
        self.size = 0
        self.crc = 0
        self.path: str | None = None
        self._max_memory = max_memory
        self._tmpdir = tmpdir
        self._memory: io.BytesIO | None = io.BytesIO()
        self._file: BinaryIO | None = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, b: ReadableBuffer) -> int:
        if self.closed:
            raise ValueError("write to closed file")
        view = memoryview(b).cast("B")
        n = view.nbytes
        if self._memory is not None and self._memory.tell() + n > self._max_memory:
            fd, self.path = tempfile.mkstemp(prefix="davpack-zip-", suffix=".part",
                                             dir=self._tmpdir)
            self._file = os.fdopen(fd, "wb")
            self._file.write(self._memory.getbuffer())
            self._memory = None
        target = self._file if self._file is not None else self._memory
        assert target is not None
        target.write(view)
        self.crc = zlib.crc32(view, self.crc)
        self.size += n
        return n

    def finish(self) -> bytes | None:
        """Close the disk file (if any); the in-memory content when it never spilled."""
        if self._file is not None:
            self._file.close()
            return None
        assert self._memory is not None
        return self._memory.getvalue()

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.path is not None:
            _unlink(self.path)


class _Spool:
    """Owns one spooled member's content; its temp file goes on close() or at GC."""

    def __init__(self, data: bytes | None, path: str | None, name: str) -> None:
        self._data = data
        self._path = path
        self._name = name
        self._closed = False
        self._finalizer = weakref.finalize(self, _unlink, path) if path is not None else None

    def open(self) -> BinaryIO:
        if self._closed:
            raise ContentMissing(
                f"spooled zip member {self._name} was already closed",
                [Detail("member content released before streaming", file=self._name)],
            )
        if self._data is not None:
            return io.BytesIO(self._data)
        assert self._path is not None
        return open(self._path, "rb")

    def close(self) -> None:
        self._closed = True
        self._data = None
        if self._finalizer is not None:
            self._finalizer()


def spool_member(
    name: str,
    write_fn: Callable[[BinaryIO], object],
    mtime: datetime,
    tmpdir: str | os.PathLike[str] | None = None,
    *,
    max_memory: int = DEFAULT_CHUNK_SIZE,
) -> ZipEntry:
    """Run ``write_fn(out)`` and return an entry holding what it wrote.

    For generated members too large to build as one ``bytes`` (a collection METS with
    10 000 children): size and CRC are computed while writing; content stays in memory
    up to ``max_memory`` bytes, beyond that in a private temp file in ``tmpdir``.
    ``out`` supports ``write``/``flush``/``tell``.

    Cleanup: the caller owns the returned entry and must ``close()`` it (or use it as a
    context manager, or close the ``ZipLayout`` holding it) once the archive is no
    longer read; that deletes the temp file.  An entry that is garbage-collected
    unclosed deletes it too, as a backstop.  If ``write_fn`` raises, nothing is left.
    """
    writer = _SpoolWriter(max_memory, tmpdir)
    try:
        write_fn(cast(BinaryIO, writer))
        data = writer.finish()
    except BaseException:
        writer.discard()
        raise
    spool = _Spool(data, writer.path, name)
    try:
        return ZipEntry(name, writer.size, writer.crc, mtime, spool.open, spool.close)
    except BaseException:
        spool.close()
        raise

