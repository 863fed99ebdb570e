"""Tests for server.zipstream: exact sizes, determinism, ranges, ZIP64, and three readers.

Readers: Python's zipfile always; Info-ZIP ``unzip`` and Java's ``java.util.zip`` (what
DSpace uses) when installed -- those tests skip cleanly otherwise.  Archives larger than
4 GiB are built without disk cost: zero-filled members come from sparse files and the
archive itself is "materialized" by writing every byte range except those members' data
into a sparse file, which leaves holes that read back as exactly their zeros.
"""

from __future__ import annotations

import gc
import hashlib
import io
import itertools
import random
import shutil
import struct
import subprocess
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import pytest

from server.errors import ChecksumMismatch, ContentMissing, InvalidInput, UnsafeInput
from server.zipstream import ZipEntry, ZipLayout, spool_member

T0 = datetime(2024, 2, 29, 13, 37, 42)  # even seconds: DOS time has 2-second resolution
GiB = 1 << 30
U32 = 0xFFFFFFFF


# -- helpers ---------------------------------------------------------------------------


def crc32_of_zeros(n: int) -> int:
    """CRC-32 of n zero bytes in O(log n), as zlib's crc32_combine does (GF(2) matrices)."""

    def times(mat: list[int], vec: int) -> int:
        out, i = 0, 0
        while vec:
            if vec & 1:
                out ^= mat[i]
            vec >>= 1
            i += 1
        return out

    op = [0xEDB88320] + [1 << i for i in range(31)]  # the register update for one 0 bit
    reg, bits = U32, 8 * n
    while bits:
        if bits & 1:
            reg = times(op, reg)
        op = [times(op, op[i]) for i in range(32)]
        bits >>= 1
    return reg ^ U32


def full(layout: ZipLayout, **kw: object) -> bytes:
    return b"".join(layout.iter_bytes(**kw))  # type: ignore[arg-type]


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def zero_entry(name: str, size: int, source: Path | None = None) -> ZipEntry:
    """A member of ``size`` zero bytes, read from a sparse file when it is streamed."""

    def opener() -> BinaryIO:
        if source is None:
            raise AssertionError(f"{name} should not have been opened")
        return open(source, "rb")

    return ZipEntry(name, size, crc32_of_zeros(size), T0, opener)


def materialize(layout: ZipLayout, path: Path, zero_members: Iterable[str]) -> Path:
    """Write the archive to a sparse file, leaving the given all-zero members as holes."""
    spans = {s.name: s for s in layout.member_spans()}
    holes = sorted((spans[n].data_start, spans[n].data_end) for n in zero_members)
    total = layout.total_size
    with open(path, "wb") as f:
        pos = 0
        for hole_start, hole_end in [*holes, (total, total)]:
            f.seek(pos)
            for chunk in layout.iter_bytes(pos, hole_start):
                f.write(chunk)
            pos = hole_end
        f.truncate(total)
    return path


def parse_central(blob: bytes) -> list[dict[str, object]]:
    """Independent minimal parser of central directory records (APPNOTE 4.3.12)."""
    records = []
    pos = 0
    while blob[pos:pos + 4] == b"PK\x01\x02":
        (_, made_by, needed, flags, method, _t, _d, crc, csize, usize, nlen, elen, clen,
         _disk, _iattr, eattr, offset) = struct.unpack_from("<IHHHHHHIIIHHHHHII", blob, pos)
        name = blob[pos + 46:pos + 46 + nlen]
        extra = blob[pos + 46 + nlen:pos + 46 + nlen + elen]
        records.append(dict(name=name, needed=needed, flags=flags, method=method, crc=crc,
                            csize=csize, usize=usize, extra=extra, offset=offset,
                            made_by=made_by, eattr=eattr))
        pos += 46 + nlen + elen + clen
    return records


def local_header(layout: ZipLayout, offset: int = 0) -> dict[str, object]:
    head = full(layout, start=offset, end=offset + 30)
    (sig, needed, flags, method, _t, _d, crc, csize, usize, nlen,
     elen) = struct.unpack("<IHHHHHIIIHH", head)
    assert sig == 0x04034B50
    rest = full(layout, start=offset + 30, end=offset + 30 + nlen + elen)
    return dict(needed=needed, flags=flags, method=method, crc=crc, csize=csize,
                usize=usize, name=rest[:nlen], extra=rest[nlen:])


class NonSeekable(io.BytesIO):
    def seekable(self) -> bool:
        return False

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("seek")


class Counting(io.BytesIO):
    def __init__(self, data: bytes, source: Source) -> None:
        super().__init__(data)
        self.source = source

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.source.bytes_read += len(data)
        return data


class Source:
    """An opener that counts opens and bytes read, optionally non-seekable or lying."""

    def __init__(self, data: bytes, *, seekable: bool = True) -> None:
        self.data = data
        self.seekable = seekable
        self.opens = 0
        self.bytes_read = 0

    def __call__(self) -> BinaryIO:
        self.opens += 1
        return Counting(self.data, self) if self.seekable else NonSeekable(self.data)

    def entry(self, name: str, declared: bytes | None = None) -> ZipEntry:
        ref = self.data if declared is None else declared
        return ZipEntry(name, len(ref), zlib.crc32(ref), T0, self)


def sample_entries() -> list[ZipEntry]:
    rng = random.Random(1)
    big = rng.randbytes(300_000)
    return [
        ZipEntry.from_bytes("mets.xml", b"<mets>" + b"<div/>" * 500 + b"</mets>", T0),
        ZipEntry.from_bytes("bitstream_1.pdf", big, T0 + timedelta(days=1)),
        ZipEntry.from_bytes("empty.txt", b"", T0),
        ZipEntry.from_bytes("data/", b"", T0),
        ZipEntry.from_bytes("data/Zürich résumé 日本.txt", "ü".encode() * 3000, T0),
        Source(rng.randbytes(70_001), seekable=False).entry("data/stream.bin"),
        ZipEntry.from_bytes("one", b"1", datetime(1999, 12, 31, 23, 59, 58)),
    ]


def layouts() -> dict[str, ZipLayout]:
    t = T0
    return {
        "empty": ZipLayout([]),
        "empty-with-comment": ZipLayout([], comment="nothing here"),
        "one-zero-length": ZipLayout([ZipEntry.from_bytes("z", b"", t)]),
        "non-ascii": ZipLayout([ZipEntry.from_bytes("ünï/cödé.txt", b"abc", t),
                                ZipEntry.from_bytes("ascii.txt", b"def", t)]),
        "sample": ZipLayout(sample_entries(), comment="DSpace AIP — test"),
        "sample-zip64": ZipLayout(sample_entries(), comment="forced", force_zip64=True),
    }


# -- determinism and size --------------------------------------------------------------


def test_same_entries_give_identical_bytes() -> None:
    first = full(ZipLayout(sample_entries(), comment="c"))
    second = full(ZipLayout(sample_entries(), comment="c"))
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    moved = sample_entries()
    moved[0] = ZipEntry.from_bytes("mets.xml", b"<mets>" + b"<div/>" * 500 + b"</mets>",
                                   T0 + timedelta(seconds=2))
    assert full(ZipLayout(moved, comment="c")) != first


def test_fingerprint_tracks_metadata() -> None:
    a = ZipLayout(sample_entries())
    assert a.fingerprint() == ZipLayout(sample_entries()).fingerprint()
    assert a.fingerprint() != ZipLayout(sample_entries(), comment="x").fingerprint()
    assert a.fingerprint() != ZipLayout(sample_entries()[:-1]).fingerprint()


@pytest.mark.parametrize("name", list(layouts()))
def test_total_size_is_exact(name: str) -> None:
    layout = layouts()[name]
    assert len(full(layout)) == layout.total_size


def test_empty_archive_is_just_the_end_record() -> None:
    data = full(ZipLayout([]))
    assert data == b"PK\x05\x06" + bytes(18)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == []


# -- zipfile ---------------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_zipfile_reads_members_dates_and_comment(force: bool) -> None:
    entries = sample_entries()
    layout = ZipLayout(entries, comment="DSpace AIP — test", force_zip64=force)
    zf = zipfile.ZipFile(io.BytesIO(full(layout)))
    assert zf.testzip() is None
    assert zf.comment == "DSpace AIP — test".encode()
    assert zf.namelist() == [e.name for e in entries]
    for entry, info in zip(entries, zf.infolist(), strict=True):
        with entry.opener() as stream:
            assert zf.read(info) == stream.read()
        assert info.date_time == entry.mtime.timetuple()[:6]
        assert info.compress_type == zipfile.ZIP_STORED
        assert entry.crc32 == info.CRC
        assert bool(info.flag_bits & 0x800) == (not entry.name.isascii())
        assert info.is_dir() == entry.name.endswith("/")
    spans = layout.member_spans()
    assert [i.header_offset for i in zf.infolist()] == [s.header_offset for s in spans]


def test_forced_zip64_writes_zip64_records() -> None:
    entries = [ZipEntry.from_bytes("a.txt", b"hello", T0), ZipEntry.from_bytes("b", b"", T0)]
    plain, forced = ZipLayout(entries), ZipLayout(entries, force_zip64=True)
    assert not plain.uses_zip64 and forced.uses_zip64
    head = local_header(forced)
    assert head["csize"] == head["usize"] == U32
    assert head["extra"] == struct.pack("<HHQQ", 1, 16, 5, 5)
    assert head["needed"] == 45
    tail = full(forced, start=forced.total_size - 22 - 20 - 56)
    assert tail[:4] == b"PK\x06\x06" and tail[56:60] == b"PK\x06\x07"
    assert b"PK\x06\x06" not in full(plain)
    assert local_header(plain)["extra"] == b"" and local_header(plain)["needed"] == 10


def test_central_directory_fields() -> None:
    layout = ZipLayout([ZipEntry.from_bytes("d/", b"", T0), ZipEntry.from_bytes("d/f", b"x", T0)])
    cd_offset = layout.member_spans()[-1].data_end
    directory, file = parse_central(full(layout, start=cd_offset))
    assert directory["made_by"] == file["made_by"] == (3 << 8) | 45  # Unix, APPNOTE 4.5
    assert (directory["needed"], file["needed"]) == (20, 10)
    assert directory["eattr"] == (0o040755 << 16) | 0x10
    assert file["eattr"] == 0o100644 << 16
    assert directory["method"] == file["method"] == 0
    assert directory["flags"] == file["flags"] == 0  # no data descriptor, ASCII names


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (datetime(2024, 5, 6, 7, 8, 9), (2024, 5, 6, 7, 8, 8)),  # odd second floored
        (datetime(1970, 1, 1), (1980, 1, 1, 0, 0, 0)),  # clamped up
        (datetime(2200, 6, 1, 12, 0, 0), (2107, 12, 31, 23, 59, 58)),  # clamped down
        (datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2))),
         (2024, 1, 1, 10, 0, 0)),  # aware -> UTC
        (datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC), (2024, 1, 1, 12, 0, 0)),
        (datetime.min.replace(tzinfo=timezone(timedelta(hours=5))), (1980, 1, 1, 0, 0, 0)),
    ],
)
def test_dos_timestamps(given: datetime, expected: tuple[int, ...]) -> None:
    data = full(ZipLayout([ZipEntry.from_bytes("f", b"x", given)]))
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[0].date_time == expected


# -- Info-ZIP unzip ----------------------------------------------------------------------


def unzip_test(path: Path, *members: str) -> str:
    if shutil.which("unzip") is None:
        pytest.skip("Info-ZIP unzip is not installed")
    proc = subprocess.run(["unzip", "-t", str(path), *members], capture_output=True,
                          text=True, errors="replace", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No errors detected" in proc.stdout
    return proc.stdout


@pytest.mark.parametrize("force", [False, True])
def test_unzip_t_accepts_archive(tmp_path: Path, force: bool) -> None:
    layout = ZipLayout(sample_entries(), comment="AIP", force_zip64=force)
    path = tmp_path / "aip.zip"
    with open(path, "wb") as f:
        assert layout.write_to(f) == layout.total_size
    out = unzip_test(path)
    assert out.count("OK") == len(layout.entries)


# -- Java java.util.zip (DSpace) -------------------------------------------------------------

JAVA_SOURCE = r"""
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.time.format.DateTimeFormatter;
import java.util.Enumeration;
import java.util.zip.*;

public class ZipCheck {
    public static void main(String[] args) throws Exception {
        String path = args[0];
        long maxRead = args.length > 1 ? Long.parseLong(args[1]) : Long.MAX_VALUE;
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
        DateTimeFormatter fmt = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss");
        byte[] buf = new byte[1 << 16];
        try (ZipFile zf = new ZipFile(new File(path), StandardCharsets.UTF_8)) {
            out.println("comment\t" + zf.getComment());
            Enumeration<? extends ZipEntry> en = zf.entries();
            while (en.hasMoreElements()) {
                ZipEntry e = en.nextElement();
                String got = "-";
                if (e.getSize() <= maxRead) {
                    CRC32 crc = new CRC32();
                    long n = 0;
                    int r;
                    try (InputStream in = zf.getInputStream(e)) {
                        while ((r = in.read(buf)) > 0) { crc.update(buf, 0, r); n += r; }
                    }
                    got = n + ":" + String.format("%08x", crc.getValue());
                }
                out.println("zipfile\t" + e.getName() + "\t" + e.getSize() + "\t"
                    + e.getCompressedSize() + "\t" + String.format("%08x", e.getCrc()) + "\t"
                    + e.getMethod() + "\t" + e.getTimeLocal().format(fmt) + "\t" + got);
            }
        }
        if (maxRead != Long.MAX_VALUE) return;
        // ZipInputStream reads local headers only and verifies sizes and CRCs itself.
        try (ZipInputStream zin = new ZipInputStream(
                new BufferedInputStream(new FileInputStream(path), 1 << 16),
                StandardCharsets.UTF_8)) {
            ZipEntry e;
            while ((e = zin.getNextEntry()) != null) {
                CRC32 crc = new CRC32();
                long n = 0;
                int r;
                while ((r = zin.read(buf)) > 0) { crc.update(buf, 0, r); n += r; }
                out.println("stream\t" + e.getName() + "\t" + n + "\t"
                    + String.format("%08x", crc.getValue()));
            }
        }
    }
}
"""


@pytest.fixture(scope="session")
def java_checker(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[list[str]]]:
    java, javac = shutil.which("java"), shutil.which("javac")
    if java is None or javac is None:
        pytest.skip("java/javac not installed")
    src_dir = tmp_path_factory.mktemp("java")
    (src_dir / "ZipCheck.java").write_text(JAVA_SOURCE)
    subprocess.run([javac, "ZipCheck.java"], cwd=src_dir, check=True, capture_output=True)

    def run(path: Path, max_read: int | None = None) -> list[list[str]]:
        cmd = [java, "-cp", str(src_dir), "ZipCheck", str(path)]
        if max_read is not None:
            cmd.append(str(max_read))
        proc = subprocess.run(cmd, capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return [line.split("\t") for line in proc.stdout.decode("utf-8").splitlines()]

    return run


def expected_java_rows(entries: list[ZipEntry], max_read: int | None = None) -> list[list[str]]:
    rows = []
    for e in entries:
        readable = max_read is None or e.size <= max_read
        got = f"{e.size}:{e.crc32:08x}" if readable else "-"
        rows.append(["zipfile", e.name, str(e.size), str(e.size), f"{e.crc32:08x}", "0",
                     e.mtime.strftime("%Y-%m-%dT%H:%M:%S"), got])
    if max_read is None:
        rows += [["stream", e.name, str(e.size), f"{e.crc32:08x}"] for e in entries]
    return rows


@pytest.mark.parametrize("force", [False, True])
def test_java_util_zip_reads_archive(
    tmp_path: Path, java_checker: Callable[..., list[list[str]]], force: bool
) -> None:
    entries = sample_entries()
    layout = ZipLayout(entries, comment="AIP", force_zip64=force)
    path = tmp_path / "aip.zip"
    with open(path, "wb") as f:
        layout.write_to(f)
    rows = java_checker(path)
    assert rows[0] == ["comment", "AIP"]
    assert rows[1:] == expected_java_rows(entries)


# -- byte ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_random_ranges_equal_slices(force: bool) -> None:
    layout = ZipLayout(sample_entries(), comment="ranges", force_zip64=force)
    whole = full(layout)
    total = layout.total_size
    rng = random.Random(20240229)
    for _ in range(200):
        a, b = sorted(rng.randrange(total + 1) for _ in range(2))
        chunk = rng.choice([7, 100, 4096, 65536, 1 << 20])
        assert b"".join(layout.iter_bytes(a, b, chunk_size=chunk)) == whole[a:b], (a, b, chunk)
    cuts = sorted({0, total, *(rng.randrange(total) for _ in range(40))})
    parts = [full(layout, start=a, end=b) for a, b in itertools.pairwise(cuts)]
    assert b"".join(parts) == whole


def test_chunks_are_exactly_chunk_size_except_last() -> None:
    layout = ZipLayout(sample_entries())
    for chunk_size in (1, 1000, 65536):
        sizes = [len(c) for c in layout.iter_bytes(13, layout.total_size - 5,
                                                   chunk_size=chunk_size)]
        assert all(s == chunk_size for s in sizes[:-1])
        assert 0 < sizes[-1] <= chunk_size


def test_only_overlapping_members_are_opened() -> None:
    sources = [Source(bytes([i]) * 10_000) for i in range(5)]
    layout = ZipLayout([s.entry(f"m{i}") for i, s in enumerate(sources)])
    span = layout.member_spans()[2]
    data = full(layout, start=span.data_start + 10, end=span.data_end - 10)
    assert data == bytes([2]) * 9_980
    assert [s.opens for s in sources] == [0, 0, 1, 0, 0]
    assert sources[2].bytes_read == 9_980  # seeked past the first 10 bytes, not read
    headers_only = full(layout, start=span.header_offset, end=span.data_start)
    assert headers_only.startswith(b"PK\x03\x04")
    assert [s.opens for s in sources] == [0, 0, 1, 0, 0]


def test_non_seekable_member_is_skipped_by_reading() -> None:
    data = random.Random(3).randbytes(50_000)
    source = Source(data, seekable=False)
    layout = ZipLayout([source.entry("s.bin")])
    span = layout.member_spans()[0]
    assert full(layout, start=span.data_start + 12_345, end=span.data_start + 40_000,
                chunk_size=4096) == data[12_345:40_000]
    assert source.opens == 1


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 5), (0, 10**9)])
def test_bad_range_is_rejected_before_iteration(start: int, end: int) -> None:
    layout = ZipLayout(sample_entries())
    with pytest.raises(InvalidInput):
        layout.iter_bytes(start, end)  # no next(): the check must be eager


# -- lying members ---------------------------------------------------------------------------


def test_short_member_raises_content_missing() -> None:
    data = b"0123456789" * 100
    layout = ZipLayout([ZipEntry.from_bytes("ok", b"fine", T0),
                        Source(data[:-1]).entry("short.bin", declared=data)])
    with pytest.raises(ContentMissing) as info:
        full(layout)
    assert info.value.details[0].file == "short.bin"
    assert info.value.details[0].expected == "1000"
    span = layout.member_spans()[1]
    with pytest.raises(ContentMissing):  # also when only the missing tail is requested
        full(layout, start=span.data_end - 1, end=span.data_end)
    # a range that ends before the missing byte is still served
    assert full(layout, start=span.data_start, end=span.data_end - 1) == data[:-1]


def test_long_member_raises_content_missing() -> None:
    data = b"x" * 1000
    layout = ZipLayout([Source(data + b"extra").entry("long.bin", declared=data)])
    with pytest.raises(ContentMissing) as info:
        full(layout)
    assert info.value.details[0].file == "long.bin"


def test_unopenable_member_raises_content_missing(tmp_path: Path) -> None:
    path = tmp_path / "gone.bin"
    path.write_bytes(b"abc")
    entry = ZipEntry.from_file("gone.bin", path, T0)
    path.unlink()
    with pytest.raises(ContentMissing) as info:
        full(ZipLayout([entry]))
    assert info.value.details[0].file == "gone.bin"


def test_verify_detects_wrong_crc() -> None:
    good = b"the real content"
    entry = ZipEntry("bad.txt", len(good), zlib.crc32(b"something else!!"), T0,
                     lambda: io.BytesIO(good))
    layout = ZipLayout([entry])
    with pytest.raises(ChecksumMismatch) as info:
        full(layout, verify=True)
    assert info.value.details[0].file == "bad.txt"
    # without verify the caller's CRC is trusted -- and readers then reject the member
    assert zipfile.ZipFile(io.BytesIO(full(layout))).testzip() == "bad.txt"
    assert full(ZipLayout(sample_entries()), verify=True)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", InvalidInput),
        ("/etc/passwd", UnsafeInput),
        ("../up.txt", UnsafeInput),
        ("a/../../b", UnsafeInput),
        ("a//b", UnsafeInput),
        ("./a", UnsafeInput),
        ("C:/windows.txt", UnsafeInput),
        ("a\\b", UnsafeInput),
        ("nul\x00byte", UnsafeInput),
        ("bad\udcffsurrogate", InvalidInput),
        ("x" * 70_000, InvalidInput),
    ],
)
def test_bad_names_are_rejected(name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        ZipLayout([ZipEntry.from_bytes(name, b"x", T0)])


def test_duplicates_and_file_directory_clashes_are_rejected() -> None:
    with pytest.raises(InvalidInput) as info:
        ZipLayout([ZipEntry.from_bytes("a.txt", b"1", T0), ZipEntry.from_bytes("a.txt", b"2", T0)])
    assert info.value.details[0].file == "a.txt"
    with pytest.raises(InvalidInput):
        ZipLayout([ZipEntry.from_bytes("a", b"1", T0), ZipEntry.from_bytes("a/b", b"2", T0)])
    with pytest.raises(InvalidInput):
        ZipLayout([ZipEntry.from_bytes("a/", b"", T0), ZipEntry.from_bytes("a", b"2", T0)])
    ZipLayout([ZipEntry.from_bytes("a/", b"", T0), ZipEntry.from_bytes("a/b", b"2", T0)])


def test_bad_entries_and_comments_are_rejected() -> None:
    with pytest.raises(InvalidInput):
        ZipEntry("x", -1, 0, T0, io.BytesIO)
    with pytest.raises(InvalidInput):
        ZipEntry("x", 1, 1 << 32, T0, io.BytesIO)
    with pytest.raises(InvalidInput):
        ZipEntry("dir/", 1, 0, T0, io.BytesIO)
    with pytest.raises(InvalidInput):
        ZipEntry("empty", 0, 1, T0, io.BytesIO)
    with pytest.raises(InvalidInput):
        ZipEntry("x", 1, 0, T0, b"not callable")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ZipLayout([], comment="see PK\x05\x06 here")
    with pytest.raises(InvalidInput):
        ZipLayout([], comment="x" * 70_000)


# -- spooled members ---------------------------------------------------------------------------


def test_small_spooled_member_stays_in_memory(tmp_path: Path) -> None:
    entry = spool_member("mets.xml", lambda out: out.write(b"<mets/>"), T0, tmpdir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert (entry.size, entry.crc32) == (7, zlib.crc32(b"<mets/>"))
    assert zipfile.ZipFile(io.BytesIO(full(ZipLayout([entry])))).read("mets.xml") == b"<mets/>"
    entry.close()
    with pytest.raises(ContentMissing):
        entry.opener()


def test_large_spooled_member_uses_temp_file_until_closed(tmp_path: Path) -> None:
    from lxml import etree

    def write_mets(out: BinaryIO) -> None:
        with etree.xmlfile(out, encoding="utf-8") as xf, xf.element("mets"):
            for i in range(10_000):
                xf.write(etree.Element("div", ID=f"div_{i}", LABEL="Zürich"))

    entry = spool_member("mets.xml", write_mets, T0, tmpdir=tmp_path, max_memory=64 * 1024)
    spooled = list(tmp_path.iterdir())
    assert len(spooled) == 1
    content = spooled[0].read_bytes()
    assert (entry.size, entry.crc32) == (len(content), zlib.crc32(content))
    with ZipLayout([entry]) as layout:
        zf = zipfile.ZipFile(io.BytesIO(full(layout, verify=True)))
        assert zf.read("mets.xml") == content
        assert etree.fromstring(content)[9_999].get("ID") == "div_9999"
    assert list(tmp_path.iterdir()) == []  # layout.close() closed the entry


def test_spooled_member_with_elementtree_and_failure(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    root = ET.Element("mets")
    for i in range(2000):
        ET.SubElement(root, "file", ID=f"f{i}")
    with spool_member("m.xml", lambda out: ET.ElementTree(root).write(out, encoding="utf-8"),
                      T0, tmpdir=tmp_path, max_memory=1000) as entry:
        assert ET.fromstring(entry.opener().read()).find("file[@ID='f1999']") is not None
    assert list(tmp_path.iterdir()) == []

    def broken(out: BinaryIO) -> None:
        out.write(b"x" * 5000)
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        spool_member("m.xml", broken, T0, tmpdir=tmp_path, max_memory=1000)
    assert list(tmp_path.iterdir()) == []


def test_unclosed_spooled_member_is_removed_when_collected(tmp_path: Path) -> None:
    entry = spool_member("m", lambda out: out.write(b"y" * 5000), T0, tmpdir=tmp_path,
                         max_memory=100)
    assert len(list(tmp_path.iterdir())) == 1
    del entry
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_from_file_computes_size_and_crc(tmp_path: Path) -> None:
    data = random.Random(9).randbytes(3 * (1 << 20) + 17)
    (tmp_path / "f.bin").write_bytes(data)
    entry = ZipEntry.from_file("f.bin", tmp_path / "f.bin", T0)
    assert (entry.size, entry.crc32) == (len(data), zlib.crc32(data))
    assert zipfile.ZipFile(io.BytesIO(full(ZipLayout([entry])))).read("f.bin") == data


# -- ZIP64 thresholds --------------------------------------------------------------------------


def test_crc32_of_zeros_helper() -> None:
    for n in (0, 1, 2, 3, 1000, 65537):
        assert crc32_of_zeros(n) == zlib.crc32(bytes(n))


@pytest.mark.parametrize(("size", "zip64"), [(U32 - 1, False), (U32, True)])
def test_size_threshold(tmp_path: Path, size: int, zip64: bool) -> None:
    layout = ZipLayout([zero_entry("big", size), ZipEntry.from_bytes("tail.txt", b"t", T0)])
    head = local_header(layout)
    assert (head["usize"] == U32) == zip64
    assert head["extra"] == (struct.pack("<HHQQ", 1, 16, size, size) if zip64 else b"")
    assert layout.total_size == (30 + 3 + (20 if zip64 else 0) + size) + (30 + 8 + 1) + (
        46 + 3 + (20 if zip64 else 0)) + (46 + 8 + 12) + 56 + 20 + 22
    zf = zipfile.ZipFile(materialize(layout, tmp_path / "a.zip", ["big"]))
    assert zf.getinfo("big").file_size == size
    assert zf.read("tail.txt") == b"t"


@pytest.mark.parametrize(("offset", "zip64"), [(U32 - 1, False), (U32, True)])
def test_offset_threshold(tmp_path: Path, offset: int, zip64: bool) -> None:
    first = zero_entry("a", offset - 31)  # local header 30 + 1 name byte
    layout = ZipLayout([first, ZipEntry.from_bytes("b", b"bee", T0)])
    assert layout.member_spans()[1].header_offset == offset
    cd_offset = layout.member_spans()[1].data_end
    central = parse_central(full(layout, start=cd_offset))
    assert (central[1]["offset"] == U32) == zip64
    assert central[1]["extra"] == (struct.pack("<HHQ", 1, 8, offset) if zip64 else b"")
    assert central[1]["needed"] == (45 if zip64 else 10)
    zf = zipfile.ZipFile(materialize(layout, tmp_path / "o.zip", ["a"]))
    assert zf.getinfo("b").header_offset == offset
    assert zf.read("b") == b"bee"


@pytest.mark.parametrize(("count", "zip64"), [(0xFFFE, False), (0xFFFF, True)])
def test_entry_count_threshold(tmp_path: Path, count: int, zip64: bool) -> None:
    entries = [ZipEntry(f"d/{i:05d}", 0, 0, T0, io.BytesIO) for i in range(count)]
    layout = ZipLayout(entries)
    data = full(layout)
    assert len(data) == layout.total_size
    assert (data[-42:-38] == b"PK\x06\x07") == zip64
    assert struct.unpack_from("<H", data, len(data) - 12)[0] == (0xFFFF if zip64 else count)
    path = tmp_path / "many.zip"
    path.write_bytes(data)
    assert len(zipfile.ZipFile(path).namelist()) == count
    if shutil.which("unzip"):
        proc = subprocess.run(["unzip", "-qt", str(path)], capture_output=True, check=False)
        assert proc.returncode == 0, proc.stdout


# -- a real >4 GiB archive, sparse -------------------------------------------------------------

BIG = 5 * GiB


@pytest.fixture
def big_archive(tmp_path: Path) -> tuple[ZipLayout, Path, list[ZipEntry]]:
    source = sparse_file(tmp_path / "zeros.bin", BIG)
    entries = [
        ZipEntry.from_bytes("before.txt", b"before", T0),
        zero_entry("big.bin", BIG, source),
        ZipEntry.from_bytes("after.txt", b"after!", T0),
    ]
    layout = ZipLayout(entries)
    return layout, materialize(layout, tmp_path / "big.zip", ["big.bin"]), entries


def test_big_archive_layout_and_zipfile(big_archive: tuple[ZipLayout, Path, list[ZipEntry]],
                                        ) -> None:
    layout, path, _ = big_archive
    # local: header + name (+ ZIP64 sizes for big.bin) + data
    locals_ = (30 + 10 + 6) + (30 + 7 + 20 + BIG) + (30 + 9 + 6)
    # central: big.bin has sizes in ZIP64, after.txt its offset (> 4 GiB)
    central = (46 + 10) + (46 + 7 + 4 + 16) + (46 + 9 + 4 + 8)
    assert layout.total_size == locals_ + central + 56 + 20 + 22
    assert path.stat().st_size == layout.total_size
    assert path.stat().st_blocks * 512 < 1 << 20  # really sparse

    tail = full(layout, start=layout.total_size - 200)
    eocd = tail[-22:]
    assert eocd[:4] == b"PK\x05\x06"
    assert struct.unpack("<HHII", eocd[8:20]) == (3, 3, central, U32)
    locator = tail[-42:-22]
    assert struct.unpack("<IIQI", locator) == (0x07064B50, 0, locals_ + central, 1)
    eocd64 = tail[-98:-42]
    assert struct.unpack("<IQHHIIQQQQ", eocd64)[6:] == (3, 3, central, locals_)

    zf = zipfile.ZipFile(path)
    assert zf.namelist() == ["before.txt", "big.bin", "after.txt"]
    assert zf.getinfo("big.bin").file_size == BIG
    assert [i.header_offset for i in zf.infolist()] == [
        s.header_offset for s in layout.member_spans()]
    assert zf.read("before.txt") == b"before"
    assert zf.read("after.txt") == b"after!"
    with zf.open("big.bin") as member:
        assert member.read(1 << 16) == bytes(1 << 16)


def test_big_archive_range_seeks_into_member(
    big_archive: tuple[ZipLayout, Path, list[ZipEntry]],
) -> None:
    layout, path, _ = big_archive
    span = layout.member_spans()[1]
    start, end = span.data_end - 100_000, span.data_end + 300
    with open(path, "rb") as f:
        f.seek(start)
        expected = f.read(end - start)
    got = full(layout, start=start, end=end)  # would take seconds if it read 5 GiB
    assert got == expected
    assert got[100_000:100_004] == b"PK\x03\x04"


def test_big_archive_unzip_and_java(big_archive: tuple[ZipLayout, Path, list[ZipEntry]],
                                    java_checker: Callable[..., list[list[str]]]) -> None:
    _, path, entries = big_archive
    if shutil.which("unzip"):
        unzip_test(path, "before.txt", "after.txt")
    rows = java_checker(path, 1 << 20)
    assert rows[1:] == expected_java_rows(entries, 1 << 20)


@pytest.mark.slow
def test_big_archive_read_in_full_by_java(
    big_archive: tuple[ZipLayout, Path, list[ZipEntry]],
    java_checker: Callable[..., list[list[str]]],
) -> None:
    """Every byte of the 5 GiB archive through ZipFile and ZipInputStream (CRC-checked).

    (``unzip -t`` on the whole archive passes too, but takes ~40 s, so it is not run.)
    """
    _, path, entries = big_archive
    assert java_checker(path)[1:] == expected_java_rows(entries)


def test_streaming_memory_is_bounded(tmp_path: Path) -> None:
    size = 64 << 20
    source = sparse_file(tmp_path / "z.bin", size)
    layout = ZipLayout([zero_entry("z.bin", size, source)])
    tracemalloc.start()
    try:
        streamed = sum(len(c) for c in layout.iter_bytes(chunk_size=1 << 20, verify=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert streamed == layout.total_size
    assert peak < 4 << 20  # a few chunks, not the 64 MiB member
