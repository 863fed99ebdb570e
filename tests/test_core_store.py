"""The content store: deduplication, garbage collection, nothing partial, limits, fixity."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from conftest import make_config
from core_support import (
    add_file,
    clean_environ,
    content_path,
    count,
    files_under,
    get,
    make_structure,
    new_item,
    store_root,
    write_cli_config,
)
from sqlalchemy import select

from server import models as m
from server.cli import main
from server.context import Repository
from server.errors import ChecksumMismatch, SizeLimitExceeded
from server.services import objects
from server.store import copy_hashed

DATA = "Grüße aus dem Archiv\n".encode() * 5000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FailingStream:
    """Gives ``good`` bytes in small reads, then fails like a dropped connection.

    It has ``read`` only (no ``readinto``), like many socket-backed request bodies.
    """

    def __init__(self, good: int, chunk: int = 4096) -> None:
        self.left = good
        self.chunk = chunk
        self.delivered = 0

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("client went away")
        n = min(self.chunk, self.left, size if size > 0 else self.chunk)
        self.left -= n
        self.delivered += n
        return b"x" * n


# -- digests ----------------------------------------------------------------------------


def test_copy_hashed_computes_size_and_three_checksums() -> None:
    import zlib

    out = io.BytesIO()
    digests = copy_hashed(io.BytesIO(DATA), out, block_size=1000)
    assert out.getvalue() == DATA
    assert digests.size == len(DATA)
    assert digests.sha256 == sha(DATA)
    assert digests.md5 == hashlib.md5(DATA).hexdigest()
    assert digests.crc32 == zlib.crc32(DATA)
    assert digests.checksum == f"sha256:{sha(DATA)}"


def test_copy_hashed_stops_reading_once_over_the_limit() -> None:
    stream = FailingStream(good=10**9, chunk=1000)
    with pytest.raises(SizeLimitExceeded) as info:
        copy_hashed(cast(BinaryIO, stream), None, limit=2500, block_size=1000, name="big.bin")
    assert stream.delivered == 3000  # read 3 blocks, never the rest
    assert info.value.details[0].file == "big.bin"
    assert info.value.details[0].expected == "<= 2500"


class NoReadinto:
    """A source with ``read`` only, whose pieces differ in size."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)
        self.turn = 0

    def read(self, size: int) -> bytes:
        self.turn += 1
        return self.stream.read(size if self.turn % 3 else size // 3 + 1)


def test_md5_on_the_worker_thread_sees_every_piece_in_order() -> None:
    import os
    import zlib

    from server.store import PARALLEL_MIN

    data = os.urandom(6 * PARALLEL_MIN + 12345)
    expected = (len(data), hashlib.md5(data).hexdigest(), sha(data), zlib.crc32(data))
    for source in (io.BytesIO(data), NoReadinto(data)):
        out = io.BytesIO()
        d = copy_hashed(cast(BinaryIO, source), out, block_size=PARALLEL_MIN + 7)
        assert (d.size, d.md5, d.sha256, d.crc32) == expected
        assert out.getvalue() == data


def test_pushed_staging_file_is_hashed_fsynced_and_removable(repo: Repository) -> None:
    import os
    import zlib

    from server.store import PARALLEL_MIN

    data = os.urandom(3 * PARALLEL_MIN + 999)
    staging = repo.store.open_staging(name="pushed.bin")
    for start, end in ((0, 10), (10, PARALLEL_MIN + 10), (PARALLEL_MIN + 10, len(data))):
        staging.write(data[start:end])
    staged = staging.finish()
    assert staged.path.read_bytes() == data and staged.name == "pushed.bin"
    assert (staged.digests.size, staged.digests.md5, staged.digests.sha256,
            staged.digests.crc32) == (len(data), hashlib.md5(data).hexdigest(), sha(data),
                                      zlib.crc32(data))
    staged.discard()
    over = repo.store.open_staging(limit=5, name="small.bin")
    with pytest.raises(SizeLimitExceeded):
        over.write(b"123456")
    over.discard()
    assert list((store_root(repo) / ".staging").iterdir()) == []


# -- deduplication and collection ----------------------------------------------------------


def test_same_bytes_in_two_contexts_are_stored_once(repo: Repository) -> None:
    s = make_structure(repo)
    ids = []
    for name in ("first.txt", "second.txt"):
        with repo.context(system=True) as ctx:
            item = new_item(ctx, s.collection)
            ids.append(add_file(ctx, item, DATA, name).id)
    key = sha(DATA)
    assert count(repo, m.StoredContent) == 1
    assert count(repo, m.Bitstream) == 2
    assert files_under(store_root(repo)) == [f"{key[:2]}/{key[2:4]}/{key}"]
    assert content_path(repo, key).read_bytes() == DATA

    with repo.context(system=True) as ctx:
        objects.remove_bitstream(ctx, get(ctx, m.Bitstream, ids[0]))
    # the other bitstream still needs the file: the collector must keep it
    assert content_path(repo, key).read_bytes() == DATA
    assert count(repo, m.StoredContent) == 1

    with repo.context(system=True) as ctx:
        objects.remove_bitstream(ctx, get(ctx, m.Bitstream, ids[1]))
    # released content is collected right after the commit that released it
    assert not content_path(repo, key).exists()
    assert count(repo, m.StoredContent) == 0
    assert files_under(store_root(repo)) == []
    assert repo.collect() == []


def test_same_bytes_twice_in_one_context_place_one_file(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        a = add_file(ctx, item, DATA, "a.txt")
        b = add_file(ctx, item, DATA, "b.txt")
        assert a.sha256 == b.sha256 == sha(DATA)
    assert count(repo, m.StoredContent) == 1
    assert files_under(store_root(repo)) == [f"{sha(DATA)[:2]}/{sha(DATA)[2:4]}/{sha(DATA)}"]


def test_collect_removes_unreferenced_content_only(repo: Repository) -> None:
    s = make_structure(repo)
    orphan, used = b"nobody refers to me", b"an item refers to me"
    with repo.context(system=True) as ctx:
        ctx.add_content(io.BytesIO(orphan), name="orphan")  # kept, but no bitstream
        add_file(ctx, new_item(ctx, s.collection), used, "used.txt")
    assert content_path(repo, sha(orphan)).exists()
    assert count(repo, m.StoredContent) == 2

    assert repo.collect() == [sha(orphan)]
    assert not content_path(repo, sha(orphan)).exists()
    assert content_path(repo, sha(used)).read_bytes() == used
    with repo.context(write=False) as ctx:
        keys = list(ctx.session.scalars(select(m.StoredContent.sha256)))
    assert keys == [sha(used)]
    assert repo.collect() == []


def test_deleting_an_item_releases_its_content(repo: Repository) -> None:
    s = make_structure(repo)
    shared, own = b"shared by two items", b"only in the deleted item"
    with repo.context(system=True) as ctx:
        doomed = new_item(ctx, s.collection)
        add_file(ctx, doomed, shared, "shared.txt")
        add_file(ctx, doomed, own, "own.txt")
        keeper = new_item(ctx, s.collection)
        add_file(ctx, keeper, shared, "shared.txt")
        doomed_id = doomed.id
    with repo.context(system=True) as ctx:
        objects.delete_item(ctx, get(ctx, m.Item, doomed_id))
    assert not content_path(repo, sha(own)).exists()
    assert content_path(repo, sha(shared)).read_bytes() == shared
    assert count(repo, m.StoredContent) == 1
    assert count(repo, m.Bitstream) == 1
    with repo.context(write=False) as ctx:
        assert ctx.session.get(m.Item, doomed_id) is None


def test_missing_file_is_healed_by_adding_the_same_content(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        add_file(ctx, new_item(ctx, s.collection), DATA, "a.txt")
    content_path(repo, sha(DATA)).unlink()
    with repo.context(system=True) as ctx:
        add_file(ctx, new_item(ctx, s.collection), DATA, "again.txt")
    assert content_path(repo, sha(DATA)).read_bytes() == DATA
    assert count(repo, m.StoredContent) == 1


# -- nothing partial ------------------------------------------------------------------------


def test_stream_failing_mid_write_leaves_nothing(repo: Repository) -> None:
    root = store_root(repo)
    stream = FailingStream(good=3 * 4096 + 100)
    with pytest.raises(ConnectionResetError), repo.context(system=True) as ctx:
        ctx.add_content(cast(BinaryIO, stream), name="upload.bin")
    assert stream.delivered == 3 * 4096 + 100  # the failure really was mid-write
    assert sorted(p.name for p in root.iterdir()) == [".staging"]
    assert list((root / ".staging").iterdir()) == []
    assert count(repo, m.StoredContent) == 0


def test_store_stage_failing_mid_write_leaves_nothing(repo: Repository) -> None:
    root = store_root(repo)
    with pytest.raises(ConnectionResetError):
        repo.store.stage(cast(BinaryIO, FailingStream(good=50_000)), name="x")
    assert sorted(p.name for p in root.iterdir()) == [".staging"]
    assert list((root / ".staging").iterdir()) == []


def test_failed_unit_of_work_removes_what_it_placed_and_leaves_no_rows(
        repo: Repository) -> None:
    s = make_structure(repo)
    before = {cls: count(repo, cls) for cls in (m.Item, m.Bundle, m.Bitstream,
                                                m.StoredContent, m.MetadataValue)}
    new = b"content first seen in the failing unit"
    with pytest.raises(RuntimeError, match="boom"), repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        staged = ctx.stage(io.BytesIO(new), name="new.bin")
        content = ctx.keep(staged)
        objects.add_bitstream(ctx, objects.bundle_named(ctx, item, "ORIGINAL"), content,
                              name="new.bin")
        assert content_path(repo, sha(new)).read_bytes() == new  # placed before commit
        raise RuntimeError("boom")
    assert not content_path(repo, sha(new)).exists()
    assert files_under(store_root(repo)) == []
    after = {cls: count(repo, cls) for cls in before}
    assert after == before
    assert before[m.StoredContent] == 0


def test_failed_unit_keeps_content_that_was_already_committed(repo: Repository) -> None:
    s = make_structure(repo)
    old, new = b"committed earlier", b"only in the failed unit"
    with repo.context(system=True) as ctx:
        add_file(ctx, new_item(ctx, s.collection), old, "old.txt")
    with pytest.raises(RuntimeError), repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        add_file(ctx, item, old, "old-again.txt")
        add_file(ctx, item, new, "new.txt")
        raise RuntimeError("boom")
    assert content_path(repo, sha(old)).read_bytes() == old
    assert not content_path(repo, sha(new)).exists()
    assert count(repo, m.StoredContent) == 1
    assert count(repo, m.Bitstream) == 1


def test_over_the_size_limit_raises_and_leaves_nothing(repo: Repository) -> None:
    with pytest.raises(SizeLimitExceeded) as info, repo.context(system=True) as ctx:
        ctx.add_content(io.BytesIO(b"y" * 1001), name="big.bin", limit=1000)
    assert info.value.details[0].expected == "<= 1000"
    assert files_under(store_root(repo)) == []
    assert count(repo, m.StoredContent) == 0


def test_configured_size_limit_applies_by_default(repo: Repository, tmp_path: Path) -> None:
    limited = Repository(make_config(tmp_path, **{"store.max_upload_size": "1 KiB"}),
                         engine=repo.engine, store=repo.store)
    with limited.context(system=True) as ctx:
        ctx.add_content(io.BytesIO(b"z" * 1024), name="exactly-1KiB")
    with pytest.raises(SizeLimitExceeded), limited.context(system=True) as ctx:
        ctx.add_content(io.BytesIO(b"z" * 1025), name="one-too-many")
    assert count(repo, m.StoredContent) == 1
    assert files_under(store_root(repo)) == [
        f"{sha(b'z' * 1024)[:2]}/{sha(b'z' * 1024)[2:4]}/{sha(b'z' * 1024)}"]


def test_declared_md5_mismatch_raises_and_leaves_nothing(repo: Repository) -> None:
    wrong = hashlib.md5(b"something else").hexdigest()
    with pytest.raises(ChecksumMismatch) as info, repo.context(system=True) as ctx:
        ctx.add_content(io.BytesIO(DATA), name="file.txt", md5=wrong.upper())
    (detail,) = info.value.details
    assert (detail.field, detail.file) == ("md5", "file.txt")
    assert (detail.expected, detail.found) == (wrong, hashlib.md5(DATA).hexdigest())
    assert files_under(store_root(repo)) == []
    assert count(repo, m.StoredContent) == 0


def test_declared_checksums_that_match_are_accepted(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        row = ctx.add_content(io.BytesIO(DATA), md5=hashlib.md5(DATA).hexdigest().upper(),
                              sha256=sha(DATA), size=len(DATA))
        assert (row.sha256, row.size) == (sha(DATA), len(DATA))


def test_every_mismatch_is_listed(repo: Repository) -> None:
    with pytest.raises(ChecksumMismatch) as info, repo.context(system=True) as ctx:
        ctx.add_content(io.BytesIO(b"abc"), name="f", md5="0" * 32, sha256="1" * 64, size=4)
    assert [d.field for d in info.value.details] == ["size", "md5", "sha256"]
    assert files_under(store_root(repo)) == []


# -- fixity ---------------------------------------------------------------------------------


def _flip_one_bit(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_fixity_cli_reports_a_flipped_bit_and_a_missing_file(
        repo: Repository, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = make_structure(repo)
    flipped, missing, fine = b"A" * 5000, b"B" * 5000, b"C" * 5000
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        for name, data in (("flipped.bin", flipped), ("missing.bin", missing),
                           ("fine.bin", fine)):
            add_file(ctx, item, data, name)
        handle = item.handle
    conf = write_cli_config(tmp_path, repo)

    assert main(["--config", str(conf), "fixity"]) == 0
    assert capsys.readouterr().out.splitlines() == ["fixity: 0 missing or altered, 0 orphaned"]

    _flip_one_bit(content_path(repo, sha(flipped)))
    content_path(repo, sha(missing)).unlink()
    assert main(["--config", str(conf), "fixity"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "fixity: 2 missing or altered, 0 orphaned"
    by_key = {line.split()[1].rstrip(":"): line for line in lines[:-1]}
    assert set(by_key) == {sha(flipped), sha(missing)}
    assert by_key[sha(flipped)].startswith("ALTERED ")
    assert handle is not None
    assert "flipped.bin" in by_key[sha(flipped)] and handle in by_key[sha(flipped)]
    assert by_key[sha(missing)].startswith("MISSING ")
    assert "missing.bin" in by_key[sha(missing)]


def test_fixity_orphans_are_reported_but_do_not_fail(
        repo: Repository, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stray = b"a file nobody recorded"
    path = content_path(repo, sha(stray))
    path.parent.mkdir(parents=True)
    path.write_bytes(stray)
    conf = write_cli_config(tmp_path, repo)
    assert main(["--config", str(conf), "fixity", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"ORPHANED {sha(stray)}: file in the store that no bitstream records"]


def test_fixity_exit_codes_through_the_installed_command(repo: Repository,
                                                         tmp_path: Path) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        add_file(ctx, new_item(ctx, s.collection), DATA, "data.txt")
    conf = write_cli_config(tmp_path, repo)
    davpack = Path(sys.executable).with_name("davpack")
    command = [str(davpack), "--config", str(conf), "fixity"]
    clean = subprocess.run(command, capture_output=True, text=True, env=clean_environ(),
                           timeout=120)
    assert (clean.returncode, clean.stderr) == (0, "")
    _flip_one_bit(content_path(repo, sha(DATA)), offset=len(DATA) - 1)
    damaged = subprocess.run(command, capture_output=True, text=True, env=clean_environ(),
                             timeout=120)
    assert damaged.returncode == 1
    assert f"ALTERED {sha(DATA)}" in damaged.stdout
