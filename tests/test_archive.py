"""Hostile and ordinary archives through the one safe archive reader (server.archive)."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.archive import ArchiveLimits, Member, SafeArchive, junk_name
from server.errors import (
    ChecksumMismatch,
    Conflict,
    InvalidInput,
    SizeLimitExceeded,
    UnsafeInput,
)

MiB = 1024 * 1024


# --- helpers -----------------------------------------------------------------------------


def make_zip(path: Path, entries: Sequence[tuple[str | zipfile.ZipInfo, bytes]],
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def tar_member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
               linkname: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mtime = 1_700_000_000
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
             mode: str = "w", fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, mode, format=fmt) as tf:  # type: ignore[call-overload]
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def refusal(exc: pytest.ExceptionInfo[UnsafeInput]) -> dict[str | None, str]:
    """Details of a refusal as {file: message}; fails on two details for one file."""
    found: dict[str | None, str] = {}
    for detail in exc.value.details:
        assert detail.file not in found, f"two details for {detail.file!r}"
        found[detail.file] = detail.message
    return found


def refuse(path: Path, limits: ArchiveLimits | None = None) -> dict[str | None, str]:
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive.open(path, limits=limits)
    return refusal(exc)


def central_headers(data: bytes) -> list[int]:
    """Offsets of the central directory file headers, in order."""
    offsets = []
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        offsets.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    return offsets


def patch_central(path: Path, index: int, offset: int, fmt: str, value: int) -> None:
    """Overwrite one field of the index-th central directory header."""
    data = bytearray(path.read_bytes())
    header = central_headers(bytes(data))[index]
    struct.pack_into(fmt, data, header + offset, value)
    path.write_bytes(bytes(data))


CD_FLAGS, CD_METHOD, CD_CRC, CD_USIZE, CD_OFFSET = 8, 10, 16, 24, 42


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "why"), [
    ("../evil", "'..' component"),
    ("a/../../evil", "'..' component"),
    ("/etc/x", "absolute path"),
    ("C:\\x", "backslash"),
    ("C:/x", "drive letter"),
    ("dir\\file.txt", "backslash"),
    ("..\\evil", "'..' component"),
    ("\\\\server\\share\\x", "absolute path"),
    ("a//b", "empty path component"),
    ("a\nb", "control character"),
])
def test_zip_bad_names_refused(tmp_path: Path, bad: str, why: str) -> None:
    path = make_zip(tmp_path / "p.zip", [("ok.txt", b"fine"), (bad, b"payload")])
    found = refuse(path)
    assert list(found) == [bad]
    assert why in found[bad]


def test_backslash_reported_not_normalised(tmp_path: Path) -> None:
    found = refuse(make_zip(tmp_path / "p.zip", [("C:\\x", b"x")]))
    assert "refused, not converted" in found["C:\\x"]
    assert "drive letter" in found["C:\\x"]


def test_all_findings_collected_one_detail_per_member(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [
        ("good/a.txt", b"a"), ("../evil", b"x"), ("/abs", b"x"), ("good/b.txt", b"b"),
        ("win\\path", b"x"),
    ])
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive.open(path, name="deposit.zip")
    found = refusal(exc)
    assert set(found) == {"../evil", "/abs", "win\\path"}
    assert "deposit.zip" in exc.value.message
    assert "3 problems" in exc.value.message


def test_nul_byte_in_zip_name(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("evil.txt#.pdf", b"x")])
    path.write_bytes(path.read_bytes().replace(b"evil.txt#.pdf", b"evil.txt\x00.pdf"))
    found = refuse(path)
    assert "NUL byte" in found["evil.txt\x00.pdf"]


def test_tar_name_not_utf8_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        info = tarfile.TarInfo("café.txt")  # stored as the single byte 0xE9
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    assert refuse(path) == {"caf\ufffd.txt": "name is not valid UTF-8"}


def test_name_length_limit(tmp_path: Path) -> None:
    long = "d/" + "x" * 60
    found = refuse(make_zip(tmp_path / "p.zip", [(long, b"x")]),
                   ArchiveLimits(max_name_length=50))
    assert "62 bytes long; the limit is 50" in found[long]


def test_duplicates_refused(tmp_path: Path) -> None:
    found = refuse(make_zip(tmp_path / "p.zip", [("a.txt", b"1"), ("a.txt", b"2")]))
    assert found == {"a.txt": "duplicate name"}
    tar = make_tar(tmp_path / "p.tar", [tar_member("./a.txt", b"1"), tar_member("a.txt", b"2")])
    found = refuse(tar)
    assert found == {"a.txt": "duplicate of './a.txt' once normalised"}


def test_file_that_is_also_a_directory_refused(tmp_path: Path) -> None:
    found = refuse(make_zip(tmp_path / "p.zip", [("a", b"file"), ("a/b.txt", b"x")]))
    assert found == {"a": "is a file, but other members are inside it"}


# --- member types -------------------------------------------------------------------------


def test_zip_symlink_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    found = refuse(make_zip(tmp_path / "p.zip", [("a.txt", b"x"), (link, b"/etc/passwd")]))
    assert found == {"link": "symbolic link"}


def test_zip_device_refused(tmp_path: Path) -> None:
    dev = zipfile.ZipInfo("dev")
    dev.create_system = 3
    dev.external_attr = (stat.S_IFCHR | 0o600) << 16
    assert refuse(make_zip(tmp_path / "p.zip", [(dev, b"")])) == {"dev": "device file"}


@pytest.mark.parametrize(("kind", "why"), [
    (tarfile.SYMTYPE, "symbolic link (to '/etc/passwd')"),
    (tarfile.LNKTYPE, "hard link (to '/etc/passwd')"),
    (tarfile.CHRTYPE, "device file"),
    (tarfile.BLKTYPE, "device file"),
    (tarfile.FIFOTYPE, "named pipe (FIFO)"),
])
def test_tar_links_and_devices_refused(tmp_path: Path, kind: bytes, why: str) -> None:
    path = make_tar(tmp_path / "p.tar", [
        tar_member("ok.txt", b"fine"), tar_member("bad", kind=kind, linkname="/etc/passwd"),
    ])
    assert refuse(path) == {"bad": why}


def test_encrypted_zip_member_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("a.txt", b"x"), ("secret.txt", b"y")])
    patch_central(path, 1, CD_FLAGS, "<H", 0x1)
    assert refuse(path) == {"secret.txt": "encrypted member"}


def test_unsupported_zip_method_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("a.txt", b"x")])
    patch_central(path, 0, CD_METHOD, "<H", 9)  # deflate64
    assert refuse(path) == {"a.txt": "compression method 9 is not supported"}


# --- bombs and lying headers -------------------------------------------------------------


def test_zip_bomb_ratio_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("small.txt", b"0" * 1000),
                                         ("bomb.bin", bytes(10 * MiB))])
    found = refuse(path)
    assert list(found) == ["bomb.bin"]
    assert "compression ratio" in found["bomb.bin"]
    assert "limit of 200:1" in found["bomb.bin"]


def test_overlapping_zip_entries_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("a.bin", b"a" * 5000), ("b.bin", b"b" * 5000)],
                    compression=zipfile.ZIP_STORED)
    patch_central(path, 1, CD_OFFSET, "<L", 0)  # b.bin now points at a.bin's data
    found = refuse(path)
    assert "overlaps another member" in found["a.bin"]


def lying_zip(tmp_path: Path, declared: int) -> tuple[Path, bytes]:
    data = b"".join(b"line %06d of the manifest\n" % i for i in range(8000))  # ~200 KB
    path = make_zip(tmp_path / "p.zip", [("data.bin", data)])
    patch_central(path, 0, CD_USIZE, "<L", declared)
    return path, data


def test_central_directory_understating_size_cannot_overflow(tmp_path: Path) -> None:
    path, _ = lying_zip(tmp_path, 1000)
    with SafeArchive.open(path) as archive:
        assert archive.member("data.bin").size == 1000
        received = bytearray()
        with pytest.raises(SizeLimitExceeded) as exc, archive.open("data.bin") as stream:
            while chunk := stream.read(100):
                received += chunk
        assert len(received) <= 1000
        [detail] = exc.value.details
        assert detail.file == "data.bin"
        assert "more than the 1000 bytes its header declares" in detail.message
        # read_bytes and extract_all go through the same check
        with pytest.raises(SizeLimitExceeded):
            archive.read_bytes("data.bin", 10 * MiB)
        with pytest.raises(SizeLimitExceeded):
            archive.extract_all(tmp_path / "out")


def test_caller_reading_exactly_declared_size_still_gets_refusal(tmp_path: Path) -> None:
    path, _ = lying_zip(tmp_path, 1000)
    with SafeArchive.open(path) as archive, archive.open("data.bin") as stream, \
            pytest.raises(SizeLimitExceeded):
        stream.read(1000)


def test_central_directory_overstating_size_refused(tmp_path: Path) -> None:
    path, data = lying_zip(tmp_path, 300_000)
    with SafeArchive.open(path) as archive, pytest.raises(InvalidInput) as exc:
        archive.read_bytes("data.bin", MiB)
    [detail] = exc.value.details
    assert detail.file == "data.bin"
    assert detail.message == f"member data ends after {len(data)} bytes"
    assert detail.expected == "300000 bytes"


def test_crc_mismatch_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("a.txt", b"hello")])
    patch_central(path, 0, CD_CRC, "<L", 0xDEADBEEF)
    with SafeArchive.open(path) as archive, pytest.raises(ChecksumMismatch) as exc:
        archive.read_bytes("a.txt", 100)
    [detail] = exc.value.details
    assert (detail.file, detail.expected) == ("a.txt", "deadbeef")
    assert detail.found == f"{zipfile.crc32(b'hello'):08x}"  # type: ignore[attr-defined]


def test_too_many_members(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_members=10)
    files = [(f"f{i}.txt", b"x") for i in range(11)]
    zip_path = make_zip(tmp_path / "p.zip", files)
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive.open(zip_path, limits=limits, name="many.zip")
    assert refusal(exc) == {"many.zip": "archive declares 11 members; the limit is 10"}
    tar_path = make_tar(tmp_path / "p.tar", [tar_member(n, d) for n, d in files])
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive.open(tar_path, limits=limits, name="many.tar")
    assert refusal(exc) == {"many.tar": "more than 10 members"}
    with SafeArchive.open(tar_path, limits=ArchiveLimits(max_members=11)) as archive:
        assert len(archive.names()) == 11


def test_declared_sizes_over_limits(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("a.bin", b"a" * 600), ("b.bin", b"b" * 600)])
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive.open(path, limits=ArchiveLimits(max_total_size=1000), name="p.zip")
    [detail] = exc.value.details
    assert detail.file == "p.zip"
    assert "exceeds the limit of 1000 bytes" in detail.message
    assert detail.found == "1200 bytes"
    found = refuse(path, ArchiveLimits(max_member_size=500))
    assert found["a.bin"] == "declares 600 bytes; the limit per member is 500"
    assert set(found) == {"a.bin", "b.bin"}


def test_tar_total_size_stops_listing(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "p.tar", [tar_member(f"f{i}", b"x" * 600) for i in range(5)])
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive.open(path, limits=ArchiveLimits(max_total_size=1000), name="p.tar")
    [detail] = exc.value.details
    assert (detail.file, detail.found) == ("p.tar", "more than 1000 bytes")


def test_compressed_tar_bomb_refused(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "p.tgz", [tar_member("zeros.bin", bytes(8 * MiB))], "w:gz")
    found = refuse(path)
    assert list(found) == [str(path)]
    assert "times its compressed size" in found[str(path)]


def test_huge_tar_extended_header_refused(tmp_path: Path) -> None:
    info, data = tar_member("a.txt", b"x")
    info.pax_headers = {"comment": "x" * (5 * MiB)}
    path = make_tar(tmp_path / "p.tar.gz", [(info, data)], "w:gz")
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive.open(path, name="p.tar.gz")
    [detail] = exc.value.details
    assert detail.file == "p.tar.gz"
    assert "tar header block" in detail.message


def test_pax_header_with_long_digit_run_refused_quickly(tmp_path: Path) -> None:
    # CVE-2024-6232: tarfile's pax regexes are quadratic on digit runs (Python < 3.11.10);
    # a 60 KB run would take about ten seconds to parse there.
    info, data = tar_member("a.txt", b"x")
    info.pax_headers = {"comment": "7" * 60_000}
    path = make_tar(tmp_path / "p.tar", [tar_member("ok.txt", b"fine"), (info, data)])
    started = time.monotonic()
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive.open(path, name="p.tar")
    assert time.monotonic() - started < 2
    [detail] = exc.value.details
    assert detail.file == "p.tar"
    assert "run of more than 32 digits" in detail.message


def test_ordinary_pax_headers_accepted(tmp_path: Path) -> None:
    info, data = tar_member("dir/" + "n" * 150 + "/résumé.txt", b"x")
    info.pax_headers = {"comment": "scan 000123 of 2024-01-01", "mtime": "1700000000.123456789"}
    path = make_tar(tmp_path / "p.tar.xz", [(info, data)], "w:xz")
    with SafeArchive.open(path) as archive:
        assert archive.names() == [info.name]
        assert archive.read_bytes(info.name, 10) == b"x"


# --- format detection -----------------------------------------------------------------------


def test_neither_zip_nor_tar(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    path.write_bytes(b"%PDF-1.7 this is not an archive" * 40)
    with pytest.raises(InvalidInput) as exc:
        SafeArchive.open(path, name="p.zip")
    assert not isinstance(exc.value, UnsafeInput)
    [detail] = exc.value.details
    assert detail.file == "p.zip"
    assert "neither zip nor tar" in detail.message


def test_gzip_that_is_not_a_tar(tmp_path: Path) -> None:
    import gzip
    path = tmp_path / "p.tar.gz"
    path.write_bytes(gzip.compress(b"just some text, no tar headers" * 100))
    with pytest.raises(InvalidInput) as exc:
        SafeArchive.open(path, name="p.tar.gz")
    assert "not a readable tar archive" in exc.value.message


def test_format_detected_by_content_not_extension(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "looks-like.zip", [tar_member("a.txt", b"a")], "w:bz2")
    with SafeArchive.open(path) as archive:
        assert archive.kind == "tar.bz2"
        assert archive.read_bytes("a.txt", 10) == b"a"


# --- happy paths -------------------------------------------------------------------------

CONTENT = {
    "data/contents": b"bitstream.pdf\tbundle:ORIGINAL\n",
    "data/sub/deeper/bitstream.pdf": b"%PDF-1.4\n" + b"x" * 5000,
    "données/résumé · 東京.txt": "non-ASCII ✓".encode(),
    "empty.txt": b"",
}


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                                    zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_happy_path(tmp_path: Path, method: int) -> None:
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [("data/", b""), ("data/sub/", b"")]
    entries += list(CONTENT.items())
    path = make_zip(tmp_path / "p.zip", entries, compression=method)
    with SafeArchive.open(path) as archive:
        assert archive.kind == "zip"
        assert archive.names() == list(CONTENT)
        members = list(archive.members())
        assert [m.name for m in members] == ["data", "data/sub", *CONTENT]
        assert members[0].is_dir and members[0].crc32 is None
        for name, data in CONTENT.items():
            member = archive.member(name)
            assert (member.size, member.crc32) == (len(data), zipfile.crc32(data))  # type: ignore[attr-defined]
            with archive.open(name) as stream:
                assert stream.read() == data
        assert archive.has("data/") and archive.has("./data/contents")
        assert not archive.has("nope")
        written = archive.extract_all(tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == list(CONTENT)
    for name, data in CONTENT.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_zip_cp437_name_kept_as_zipfile_decodes(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("caf#.txt", b"x")])
    path.write_bytes(path.read_bytes().replace(b"caf#.txt", b"caf\x82.txt"))  # no UTF-8 flag
    with SafeArchive.open(path) as archive:
        assert archive.names() == ["café.txt"]
        assert archive.read_bytes("café.txt", 10) == b"x"


@pytest.mark.parametrize(("mode", "kind"), [
    ("w", "tar"), ("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"), ("w:xz", "tar.xz")])
@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_happy_path(tmp_path: Path, mode: str, kind: str, fmt: int) -> None:
    members = [tar_member("./", kind=tarfile.DIRTYPE), tar_member("./data", kind=tarfile.DIRTYPE)]
    members += [tar_member(f"./{name}", data) for name, data in CONTENT.items()]
    path = make_tar(tmp_path / "p.archive", members, mode, fmt)
    with open(path, "rb") as fp:
        archive = SafeArchive.open(fp)
        assert archive.kind == kind
        assert archive.names() == list(CONTENT)
        assert next(archive.members()).name == "data"
        member = archive.member("data/contents")
        assert member == Member("data/contents", len(CONTENT["data/contents"]), False, None,
                                datetime.fromtimestamp(1_700_000_000, UTC))
        # random access in any order
        for name in reversed(CONTENT):
            assert archive.read_bytes(name, MiB) == CONTENT[name]
        archive.extract_all(tmp_path / "out")
        archive.close()
        assert not fp.closed  # the caller's file stays open
    for name, data in CONTENT.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert os.stat(tmp_path / "out" / "empty.txt").st_mtime == 1_700_000_000


class NonSeekable(io.RawIOBase):
    """A write-only stream: zipfile then uses data descriptors and zero local sizes."""

    def __init__(self, sink: io.BytesIO) -> None:
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self.sink.write(data)


def test_zip_with_data_descriptors(tmp_path: Path) -> None:
    sink = io.BytesIO()
    with zipfile.ZipFile(NonSeekable(sink), "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in CONTENT.items():
            with zf.open(name, "w") as out:
                out.write(data)
    path = tmp_path / "streamed.zip"
    path.write_bytes(sink.getvalue())
    with SafeArchive.open(path) as archive:
        for name, data in CONTENT.items():
            assert archive.read_bytes(name, MiB) == data


def test_empty_archives(tmp_path: Path) -> None:
    with SafeArchive.open(make_zip(tmp_path / "e.zip", [])) as archive:
        assert archive.names() == []
    with SafeArchive.open(make_tar(tmp_path / "e.tar", [])) as archive:
        assert archive.names() == []


def test_zip_extended_timestamp_used(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("a.txt", date_time=(2001, 1, 1, 0, 0, 0))
    info.extra = struct.pack("<HHBi", 0x5455, 5, 1, 1_600_000_000)
    path = make_zip(tmp_path / "p.zip", [(info, b"x"), ("b.txt", b"y")])
    with SafeArchive.open(path) as archive:
        assert archive.member("a.txt").mtime == datetime.fromtimestamp(1_600_000_000, UTC)
        assert archive.member("b.txt").mtime is not None


def test_read_errors(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [("dir/", b""), ("big.txt", b"x" * 2000)])
    with SafeArchive.open(path) as archive:
        with pytest.raises(SizeLimitExceeded) as too_big:
            archive.read_bytes("big.txt", 1000)
        assert too_big.value.details[0].found == "2000 bytes"
        with pytest.raises(InvalidInput) as missing:
            archive.open("nope.txt")
        assert missing.value.details[0].file == "nope.txt"
        with pytest.raises(InvalidInput, match="not a regular file"):
            archive.open("dir")


def test_path_opened_file_is_closed(tmp_path: Path) -> None:
    archive = SafeArchive.open(make_zip(tmp_path / "p.zip", [("a", b"a")]))
    fp = archive._fp
    with archive:
        pass
    assert fp.closed


# --- extraction -----------------------------------------------------------------------------


def test_extract_refuses_symlink_planted_in_destination(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "data").symlink_to(outside)
    path = make_zip(tmp_path / "p.zip", [("data/x.txt", b"x")])
    with SafeArchive.open(path) as archive, pytest.raises(UnsafeInput) as exc:
        archive.extract_all(dest)
    assert exc.value.details[0].file == "data/x.txt"
    assert "symbolic link" in exc.value.details[0].message
    assert list(outside.iterdir()) == []


def test_extract_refuses_symlink_leaf_and_existing_file(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    (dest / "x.txt").symlink_to(target)
    (dest / "y.txt").write_text("earlier")
    with SafeArchive.open(make_zip(tmp_path / "p.zip", [("x.txt", b"overwritten!")])) as archive, \
            pytest.raises(UnsafeInput) as unsafe:
        archive.extract_all(dest)
    assert unsafe.value.details[0].message == "'x.txt' in the destination is a symbolic link"
    assert target.read_text() == "precious"
    with SafeArchive.open(make_zip(tmp_path / "q.zip", [("y.txt", b"overwritten!")])) as archive, \
            pytest.raises(Conflict) as conflict:
        archive.extract_all(dest)
    assert conflict.value.details[0].file == "y.txt"
    assert (dest / "y.txt").read_text() == "earlier"


def test_extract_skips_junk(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [
        ("item/a.pdf", b"a"), ("__MACOSX/item/._a.pdf", b"j"), ("item/.DS_Store", b"j"),
    ])
    with SafeArchive.open(path) as archive:
        written = archive.extract_all(tmp_path / "out", skip=junk_name)
    assert [p.name for p in written] == ["a.pdf"]
    assert not (tmp_path / "out" / "__MACOSX").exists()


@pytest.mark.parametrize(("name", "junk"), [
    ("__MACOSX/x/._a.pdf", True), ("__MACOSX/", True), ("a/.DS_Store", True),
    ("Thumbs.db", True), ("sub/THUMBS.DB", True), ("._resource", True),
    ("a/b.pdf", False), ("MACOSX/a", False), ("a.DS_Store", False), ("x._y", False),
])
def test_junk_name(name: str, junk: bool) -> None:
    assert junk_name(name) is junk


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_members_are_streamed_not_held_in_memory(tmp_path: Path, kind: str) -> None:
    size = 48 * MiB
    if kind == "zip":
        path = make_zip(tmp_path / "p.zip", [("zeros.bin", bytes(size))])
    else:
        path = make_tar(tmp_path / "p.tgz", [tar_member("zeros.bin", bytes(size))], "w:gz")
    limits = ArchiveLimits(max_ratio=10_000)
    with SafeArchive.open(path, limits=limits) as archive:
        tracemalloc.start()
        try:
            total = 0
            with archive.open("zeros.bin") as stream:
                while chunk := stream.read(MiB):
                    total += len(chunk)
            archive.extract_all(tmp_path / "out")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == size
    assert (tmp_path / "out" / "zeros.bin").stat().st_size == size
    assert peak < 8 * MiB
