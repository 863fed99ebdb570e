"""A bitstream of more than 2 GiB goes out in an AIP and comes back (DSpace cannot: it reads
PREMIS sizes as 32-bit integers, dspace-aip.md §9 C2).  Content is generated on the fly, so
the test needs disk (about 3 x 2 GiB) but little time and constant memory."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aip_support import ingest, make_repo

from packagers.aip import AIPPackager
from packagers.aip.disseminate import AipZipPackage
from packagers.base import Mode, Operation
from packagers.params import PackageParameters
from server import models as m
from server.context import Repository
from server.services import metadata, objects

SIZE = 2 * 1024**3 + 4099  # past 2**31: a signed 32-bit size would overflow


class Pattern(io.RawIOBase):
    """``size`` bytes of a repeating pseudo-random block, produced without storing them."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._left = size
        self._block = bytes((i * 7919 + 13) % 251 for i in range(1 << 20))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left, len(self._block))
        buffer[:n] = self._block[:n]
        self._left -= n
        return n


@pytest.mark.slow
def test_a_bitstream_over_two_gib_round_trips(repo: Repository, tmp_path: Path) -> None:
    with repo.context(system=True) as ctx:
        collection = objects.create_collection(
            ctx, objects.create_community(ctx, None, "Big"), "Big files")
        item = objects.create_item(ctx, collection)
        metadata.add(ctx, item, "dc.title", "A very large dataset")
        content = ctx.add_content(Pattern(SIZE), name="big.bin")  # type: ignore[arg-type]
        big = objects.add_bitstream(ctx, objects.create_bundle(ctx, item, "ORIGINAL"),
                                    content, name="big.bin",
                                    mime_type="application/octet-stream")
        objects.install(ctx, item)
        item_id, big_id = item.id, big.id
        facts = (big.size, big.md5, big.sha256, big.crc32)
    assert facts[0] == SIZE

    aip = tmp_path / "big.zip"
    packager = AIPPackager()
    with packager.disseminate(Operation(repo, system=True), item_id,
                              PackageParameters()) as package, open(aip, "wb") as out:
        assert package.size is not None and package.size > SIZE
        assert package.write_to(out) == package.size
    with zipfile.ZipFile(aip) as archive:
        mets = archive.read("mets.xml").decode()
        assert f"<premis:size>{SIZE}</premis:size>" in mets
        assert f'SIZE="{SIZE}"' in mets
        assert archive.getinfo(f"bitstream_{big_id}.bin").file_size == SIZE

    target = make_repo(tmp_path / "target")
    with target.context(system=True) as ctx:
        objects.create_collection(ctx, objects.create_community(ctx, None, "Big"), "Big files",
                                  handle=_handle(repo, collection_id=None, item_id=item_id))
    ingest(target, aip, mode=Mode.RESTORE)
    os.unlink(aip)
    with target.context(write=False) as ctx:
        restored = ctx.session.get(m.Bitstream, big_id)
        assert restored is not None
        assert (restored.size, restored.md5, restored.sha256, restored.crc32) == facts
        assert isinstance(restored.size, int) and restored.size > 2**31
    # and it goes out again as it went out the first time (the content is the same by its
    # SHA-256 above; the zip's structure and manifest are compared here)
    assert _digest(target, item_id) == _digest(repo, item_id)
    target.dispose()


def _handle(repo: Repository, *, collection_id: object, item_id: object) -> str:
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None and item.owning_collection is not None
        handle = item.owning_collection.handle
        assert handle is not None
        return handle


def _digest(repo: Repository, item_id: object) -> tuple[int, str | None, bytes]:
    """Size, ETag (the zip's central directory: every name, size, CRC and offset) and the
    manifest's bytes - read by range, so the 2 GiB member is never streamed here."""
    with AIPPackager().disseminate(Operation(repo, system=True), item_id,  # type: ignore[arg-type]
                                   PackageParameters()) as package:
        assert isinstance(package, AipZipPackage) and package.size is not None
        span = next(s for s in package.layout.member_spans() if s.name == "mets.xml")
        mets = b"".join(package.iter_bytes(span.data_start, span.data_end))
        return package.size, package.etag, mets
