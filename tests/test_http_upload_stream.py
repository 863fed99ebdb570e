"""Receiving a package in one pass (:func:`server.http.uploads.receive_package`): the STORED
members of a zip are copied into the store's staging area while the body arrives, and a
reader of the received archive takes such a copy instead of copying the member again --
only when the copy is exactly the member.

Whatever the zip, reading it must give exactly what reading it without copies gives (the
same bytes and digests, or the same refusal), and no copy may stay behind after success,
refusal, a short body or a dropped connection.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
from http_support import ADMIN, Tree, call, make_tree

from server import models as m
from server.archive import MemberCopies, SafeArchive, StoredMemberSplitter
from server.context import Repository
from server.errors import DavpackError, SizeLimitExceeded
from server.http.errors import IncompleteBody
from server.http.uploads import StagedPackage, receive_package
from server.services import fixity, objects
from server.store import Digests, FilesystemStore

MIN = 16 * 1024  # the block size used here: members this large are copied
A = os.urandom(40_000)
B = os.urandom(48_000)
TEXT = b"words and more words " * 2_000
SMALL = b"tiny"


def _zip(members: list[tuple[str, bytes, int]], *, stream: bool = False) -> bytes:
    """A zip of ``(name, data, compression)``; ``stream`` writes it to an unseekable
    output, as a zip streamed by a client is (data descriptors)."""
    out = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            return out.write(data)

    target: Any = Unseekable() if stream else out
    with warnings.catch_warnings(), zipfile.ZipFile(target, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names are wanted here
        for name, data, compression in members:
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 6)), data,
                        compress_type=compression)
    return out.getvalue()


PLAIN = [("meta.txt", SMALL, zipfile.ZIP_STORED), ("a.bin", A, zipfile.ZIP_STORED),
         ("text.txt", TEXT, zipfile.ZIP_DEFLATED), ("b.bin", B, zipfile.ZIP_STORED)]
DATA = {name: data for name, data, _ in PLAIN}


def _local(data: bytes, name: str) -> int:
    return zipfile.ZipFile(io.BytesIO(data)).getinfo(name).header_offset


def _central(data: bytes, name: str) -> int:
    """Offset of ``name``'s central directory record."""
    pos = data.rindex(b"PK\x05\x06")
    (pos,) = struct.unpack_from("<L", data, pos + 16)
    while data[pos:pos + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46:pos + 46 + name_len] == name.encode():
            return pos
        pos += 46 + name_len + extra_len + comment_len
    raise KeyError(name)


def _patch(data: bytes, at: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def _without_central(data: bytes, name: str) -> bytes:
    """The zip with ``name`` left out of the central directory (its local copy stays)."""
    at = _central(data, name)
    name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
    length = 46 + name_len + extra_len + comment_len
    out = data[:at] + data[at + length:]
    end = out.rindex(b"PK\x05\x06")
    count, size = struct.unpack_from("<HL", out, end + 10)
    return _patch(_patch(out, end + 8, "<HH", count - 1, count - 1), end + 12, "<L",
                  size - length)


def _plain() -> bytes:
    return _zip(PLAIN)


def _case(transform: Callable[[bytes], bytes]) -> bytes:
    return transform(_plain())


# (id, the zip, how many copies reading it takes, whether reading it is refused)
CASES: list[tuple[str, Callable[[], bytes], int, bool]] = [
    ("plain", _plain, 2, False),
    ("local name differs", lambda: _case(lambda d: d[:_local(d, "a.bin") + 30] + b"x"
                                         + d[_local(d, "a.bin") + 31:]), 1, True),
    ("data corrupted", lambda: _case(lambda d: _flip(d, _local(d, "a.bin") + 30 + 5 + 999)),
     1, True),
    ("central CRC wrong", lambda: _case(lambda d: _patch(d, _central(d, "a.bin") + 16, "<L",
                                                         zlib.crc32(A) ^ 1)), 1, True),
    ("local CRC wrong", lambda: _case(lambda d: _patch(d, _local(d, "a.bin") + 14, "<L",
                                                       zlib.crc32(A) ^ 1)), 2, False),
    ("local sizes smaller", lambda: _case(lambda d: _patch(
        d, _local(d, "a.bin") + 18, "<LL", len(A) - 100, len(A) - 100)), 0, False),
    ("local sizes larger", lambda: _case(lambda d: _patch(
        d, _local(d, "a.bin") + 18, "<LL", len(A) + 100, len(A) + 100)), 0, False),
    ("local sizes zip64", lambda: _case(lambda d: _patch(d, _local(d, "a.bin") + 18, "<LL",
                                                         0xFFFFFFFF, 0xFFFFFFFF)), 0, False),
    ("central sizes smaller", lambda: _case(lambda d: _patch(
        d, _central(d, "a.bin") + 20, "<LL", len(A) - 100, len(A) - 100)), 1, True),
    ("local says deflated", lambda: _case(lambda d: _patch(d, _local(d, "a.bin") + 8, "<H",
                                                           8)), 1, False),
    ("central says deflated", lambda: _case(lambda d: _patch(d, _central(d, "a.bin") + 10,
                                                             "<H", 8)), 1, True),
    ("local says encrypted", lambda: _case(lambda d: _patch(d, _local(d, "a.bin") + 6, "<H",
                                                            1)), 1, True),
    ("data descriptors", lambda: _zip(PLAIN, stream=True), 0, False),
    ("all deflated", lambda: _zip([(n, d, zipfile.ZIP_DEFLATED) for n, d, _ in PLAIN]), 0,
     False),
    ("duplicate names", lambda: _zip([*PLAIN, ("a.bin", B, zipfile.ZIP_STORED)]), 0, True),
    ("hidden member", lambda: _without_central(
        _zip([("hidden.bin", B[::-1], zipfile.ZIP_STORED), *PLAIN]), "hidden.bin"), 2, False),
    ("two entries, one member", lambda: _case(lambda d: _patch(
        d, _central(d, "b.bin") + 42, "<L", _local(d, "a.bin"))), 0, True),
    ("junk before the zip", lambda: b"\0" * 100 + _plain(), 0, True),
    ("cut short", lambda: _plain()[:_local(_plain(), "b.bin") + 1000], 0, True),
]


def _environ(body: Any, length: int | None, **headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {"wsgi.input": body, "CONTENT_TYPE": "application/zip"}
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    environ.update(headers)
    return environ


def _receive(repo: Repository, body: bytes, tmp_path: Path, **headers: str) -> StagedPackage:
    return receive_package(_environ(io.BytesIO(body), len(body), **headers),
                           staging_dir=tmp_path / "uploads", store=repo.store,
                           limit=10 * 1024 * 1024, block_size=MIN, name="p.zip")


def _read_every_member(store: FilesystemStore, path: Path,
                       copies: MemberCopies | None) -> list[tuple[Any, ...]]:
    """What a packager reading the archive member by member into the store ends up with."""
    found: list[tuple[Any, ...]] = []
    with copies.in_use() if copies is not None else nullcontext():
        try:
            archive = SafeArchive.open(path)
        except DavpackError as exc:
            return [("refused", type(exc).__name__, exc.message)]
        with archive:
            for name in archive.names():
                try:
                    staged = store.stage(archive.open(name), name=name, limit=1 << 30)
                except DavpackError as exc:
                    found.append((name, type(exc).__name__, exc.message))
                    continue
                assert staged.path.read_bytes() == DATA.get(name, staged.path.read_bytes())
                found.append((name, staged.digests))
                staged.discard()
    return found


def _digests(data: bytes) -> Digests:
    return Digests(len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(),
                   zlib.crc32(data))


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Offsets of the copies handed over."""
    handed: list[int] = []
    original = MemberCopies.take

    def take(self: MemberCopies, offset: int, *args: Any) -> Any:
        content = original(self, offset, *args)
        if content is not None:
            handed.append(offset)
        return content

    monkeypatch.setattr(MemberCopies, "take", take)
    return handed


def _leftovers(repo: Repository, tmp_path: Path) -> list[Path]:
    staging = Path(repo.config.get("store.path")) / ".staging"
    uploads = tmp_path / "uploads"
    return [*staging.iterdir(), *(uploads.iterdir() if uploads.exists() else [])]


# ---------------------------------------------------------------------------------------
# Following a zip as it arrives


@pytest.mark.parametrize("piece", [1, 7, 4096, MIN + 3, 1 << 20])
def test_splitter_hands_out_stored_members_whatever_the_pieces(piece: int) -> None:
    data = _plain()
    splitter = StoredMemberSplitter(MIN)
    copied: dict[int, bytearray] = {}
    ends: list[int] = []
    for start in range(0, len(data), piece):
        for found in splitter.feed(data[start:start + piece]):
            copied.setdefault(found.offset, bytearray()).extend(found.data)
            if found.last:
                ends.append(found.offset)
    expected = {_local(data, "a.bin"): A, _local(data, "b.bin"): B}
    assert {offset: bytes(got) for offset, got in copied.items()} == expected
    assert ends == sorted(expected)
    assert not splitter.following  # stopped at the central directory


def test_splitter_stops_where_it_cannot_follow() -> None:
    for data in (_zip(PLAIN, stream=True), b"junk" + _plain()):
        splitter = StoredMemberSplitter(1)
        assert list(splitter.feed(data)) == []
        assert not splitter.following


# ---------------------------------------------------------------------------------------
# Reading with copies is reading without them


@pytest.mark.parametrize("build, expected_taken, refused", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_copies_change_nothing_but_the_work(repo: Repository, tmp_path: Path,
                                           taken: list[int], build: Callable[[], bytes],
                                           expected_taken: int, refused: bool) -> None:
    body = build()
    staged = _receive(repo, body, tmp_path)
    try:
        assert isinstance(repo.store, FilesystemStore)
        with_copies = _read_every_member(repo.store, staged.path, staged.copies)
        assert len(taken) == expected_taken
        without = _read_every_member(repo.store, staged.path, None)
        assert with_copies == without
        assert any(isinstance(found[1], str) for found in without) == refused, without
    finally:
        staged.discard()
    assert _leftovers(repo, tmp_path) == []


def test_plain_zip_gives_exact_bytes_and_digests(repo: Repository, tmp_path: Path,
                                                 taken: list[int]) -> None:
    staged = _receive(repo, _plain(), tmp_path)
    try:
        assert isinstance(repo.store, FilesystemStore)
        found = dict(_read_every_member(repo.store, staged.path, staged.copies))  # type: ignore[arg-type]
    finally:
        staged.discard()
    assert found == {name: _digests(data) for name, data in DATA.items()}
    assert len(taken) == 2


def test_a_copy_is_taken_once_and_only_before_reading(repo: Repository, tmp_path: Path,
                                                      taken: list[int]) -> None:
    staged = _receive(repo, _plain(), tmp_path)
    assert staged.copies is not None
    try:
        with staged.copies.in_use(), SafeArchive.open(staged.path) as archive:
            with archive.open("a.bin") as stream:
                assert stream.read(10) == A[:10]
                rest = repo.store.stage(stream, name="a.bin")
            assert rest.path.read_bytes() == A[10:] and not taken
            rest.discard()
            first = repo.store.stage(archive.open("a.bin"), name="a.bin")
            second = repo.store.stage(archive.open("a.bin"), name="again")
            assert len(taken) == 1
            assert first.path.read_bytes() == second.path.read_bytes() == A
            assert first.digests == second.digests == _digests(A)
            assert (first.name, second.name) == ("a.bin", "again")
            first.discard()
            second.discard()
    finally:
        staged.discard()
    assert _leftovers(repo, tmp_path) == []


def test_a_copy_over_the_readers_limit_is_refused_and_removed(repo: Repository,
                                                              tmp_path: Path,
                                                              taken: list[int]) -> None:
    staged = _receive(repo, _plain(), tmp_path)
    assert staged.copies is not None
    try:
        with staged.copies.in_use(), SafeArchive.open(staged.path) as archive, \
                pytest.raises(SizeLimitExceeded):
            repo.store.stage(archive.open("a.bin"), name="a.bin", limit=len(A) - 1)
        assert len(taken) == 1
    finally:
        staged.discard()
    assert _leftovers(repo, tmp_path) == []


def test_copies_are_only_for_the_file_they_were_made_from(repo: Repository, tmp_path: Path,
                                                         taken: list[int]) -> None:
    staged = _receive(repo, _plain(), tmp_path)
    assert staged.copies is not None
    twin = tmp_path / "twin.zip"
    twin.write_bytes(staged.path.read_bytes())
    try:
        with staged.copies.in_use(), SafeArchive.open(twin) as archive:
            content = repo.store.stage(archive.open("a.bin"), name="a.bin")
            content.discard()
        with SafeArchive.open(staged.path) as archive:  # copies not in use
            content = repo.store.stage(archive.open("a.bin"), name="a.bin")
            content.discard()
        assert taken == []
    finally:
        staged.discard()
    assert _leftovers(repo, tmp_path) == []


# ---------------------------------------------------------------------------------------
# Receiving: framing, limits and checksums as before, and nothing left on failure


_BytesIO = io.BytesIO  # the end-to-end test swaps io.BytesIO to send a _Dropping body


class _Dropping(io.RawIOBase):
    """A request body that delivers ``good`` bytes of ``data`` then fails."""

    def __init__(self, data: bytes, good: int) -> None:
        self._data = _BytesIO(data[:good])

    def read(self, size: int = -1) -> bytes:
        piece = self._data.read(size)
        if not piece:
            raise ConnectionResetError("client went away")
        return piece


@pytest.mark.parametrize("share", [0.001, 0.3, 0.6, 0.999])
def test_dropped_connection_leaves_nothing(repo: Repository, tmp_path: Path,
                                           share: float) -> None:
    body = _plain()
    with pytest.raises(IncompleteBody):
        receive_package(_environ(_Dropping(body, int(len(body) * share)), len(body)),
                        staging_dir=tmp_path / "uploads", store=repo.store, limit=1 << 30,
                        block_size=MIN, name="p.zip")
    assert _leftovers(repo, tmp_path) == []


def test_short_body_and_oversized_body_leave_nothing(repo: Repository, tmp_path: Path) -> None:
    body = _plain()
    with pytest.raises(IncompleteBody):
        receive_package(_environ(io.BytesIO(body[:70_000]), len(body)),
                        staging_dir=tmp_path / "uploads", store=repo.store, limit=1 << 30,
                        block_size=MIN)
    with pytest.raises(SizeLimitExceeded):
        receive_package(_environ(io.BytesIO(body), None), staging_dir=tmp_path / "uploads",
                        store=repo.store, limit=len(body) - 1, block_size=MIN)
    assert _leftovers(repo, tmp_path) == []


def test_declared_checksums_are_checked_over_the_whole_body(repo: Repository,
                                                            tmp_path: Path) -> None:
    import base64

    from server.errors import ChecksumMismatch

    body = _plain()
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    staged = _receive(repo, body, tmp_path, HTTP_CONTENT_MD5=good)
    assert staged.size == len(body) and staged.path.read_bytes() == body
    staged.discard()
    with pytest.raises(ChecksumMismatch):
        _receive(repo, body, tmp_path,
                 HTTP_DIGEST="sha-256=" + base64.b64encode(b"1" * 32).decode())
    assert _leftovers(repo, tmp_path) == []


# ---------------------------------------------------------------------------------------
# End to end: POST an AIP


@pytest.fixture
def aip_app(repo: Repository) -> Iterator[tuple[Any, Tree, dict[str, bytes]]]:
    from packagers.registry import default_registry
    from server.http.app import make_app

    if "aip" not in {n.lower() for n in default_registry().names()}:
        pytest.skip("the AIP packager is not installed")
    repo.config.values["server"]["block_size"] = MIN
    tree = make_tree(repo)
    files = {"big.bin": A, "bigger.bin": B}
    with repo.context(system=True) as ctx:
        item = ctx.session.get(m.Item, tree.item)
        assert item is not None
        bundle = objects.bundle_named(ctx, item, "ORIGINAL")
        for name, data in files.items():
            objects.add_bitstream(ctx, bundle, ctx.add_content(io.BytesIO(data), name=name),
                                  name=name)
    yield make_app(repo), tree, files


def _stored(repo: Repository, handle: str) -> dict[str, bytes]:
    from server.services import handles

    with repo.context(write=False) as ctx:
        item = handles.resolve(ctx, handle)
        assert isinstance(item, m.Item)
        return {b.name: ctx.open_content(b).read() for bundle in item.bundles
                for b in bundle.bitstreams if bundle.name == "ORIGINAL"}


def _server_staging(repo: Repository) -> list[Path]:
    staging = repo.config.path("server.staging_dir")
    store_staging = Path(repo.config.get("store.path")) / ".staging"
    return [p for p in [*staging.iterdir(), *store_staging.iterdir()]
            if not p.name.startswith("deposit-")]


def test_post_an_aip_takes_the_copies(aip_app: tuple[Any, Tree, dict[str, bytes]],
                                      repo: Repository, taken: list[int]) -> None:
    app, tree, files = aip_app
    aip = call(app, "GET", tree.item_path, auth=ADMIN)
    assert aip.status == 200, aip.text
    posted = call(app, "POST", f"/handle/{tree.other_handle}", body=aip.body, auth=ADMIN)
    assert posted.status == 201, posted.text
    every = {**tree.files, **files}
    assert len(taken) == sum(len(data) >= MIN for data in every.values()) == 3
    assert _stored(repo, posted.json()["handle"]) == every
    assert _server_staging(repo) == []
    assert list(fixity.check(repo)) == []


def test_post_refused_or_cut_leaves_nothing(aip_app: tuple[Any, Tree, dict[str, bytes]],
                                            repo: Repository, taken: list[int]) -> None:
    app, tree, _files = aip_app
    aip = call(app, "GET", tree.item_path, auth=ADMIN).body
    items = len(_items(repo))
    # same length, valid CRC, but not the bytes whose MD5 the METS states
    names = [n for n in zipfile.ZipFile(io.BytesIO(aip)).namelist() if n.endswith("big.bin")
             or "bitstream" in n]
    assert names
    from aip_support import rewrite_member

    wrong = rewrite_member(aip, names[0], lambda data: bytes(len(data)))
    refused = call(app, "POST", f"/handle/{tree.other_handle}", body=wrong, auth=ADMIN)
    assert 400 <= refused.status < 500, refused.text
    for good in (len(aip) // 3, len(aip) - 10):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(io, "BytesIO", lambda data=b"", cut=good: _Dropping(aip, cut))
            dropped = call(app, "POST", f"/handle/{tree.other_handle}", body=aip, auth=ADMIN)
        assert dropped.status == 400, dropped.text
    assert len(_items(repo)) == items
    assert _server_staging(repo) == []
    assert list(fixity.check(repo)) == []


def _items(repo: Repository) -> list[Any]:
    from sqlalchemy import select

    with repo.context(write=False) as ctx:
        return list(ctx.session.scalars(select(m.Item.id)))
