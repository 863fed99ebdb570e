"""Content is durable in batches, before the unit that references it commits; small files
are copied without big buffers; a restore's unit of work does not keep what it created."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import weakref
from collections.abc import Collection
from pathlib import Path

import pytest
from core_support import content_path, get, make_structure

from server import models as m
from server.context import Repository
from server.errors import Conflict
from server.services import handles, objects
from server.store import FilesystemStore, copy_hashed


class RecordingStore(FilesystemStore):
    """A store that notes each batch it is asked to make durable (and what exists then)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=True)
        self.batches: list[list[str]] = []

    def sync(self, keys: Collection[str]) -> None:
        assert all(self.exists(key) for key in keys)
        self.batches.append(sorted(keys))
        super().sync(keys)


@pytest.fixture
def recording(repo: Repository, tmp_path: Path) -> Repository:
    return Repository(repo.config, engine=repo.engine,
                      store=RecordingStore(tmp_path / "durable-store"))


def test_content_is_synced_in_one_batch_before_commit(recording: Repository) -> None:
    store = recording.store
    assert isinstance(store, RecordingStore)
    blobs = [f"file {n}\n".encode() * (n + 1) for n in range(12)]
    with recording.context(system=True) as ctx:
        for blob in [*blobs, blobs[0]]:  # a duplicate is stored (and synced) once
            ctx.add_content(io.BytesIO(blob))
        assert store.batches == []  # nothing synced file by file
    assert store.batches == [sorted(hashlib.sha256(b).hexdigest() for b in blobs)]
    for blob in blobs:
        with store.open(hashlib.sha256(blob).hexdigest()) as fh:
            assert fh.read() == blob


def test_a_failed_unit_syncs_nothing_and_leaves_no_file(recording: Repository) -> None:
    store = recording.store
    assert isinstance(store, RecordingStore)
    with pytest.raises(RuntimeError), recording.context(system=True) as ctx:
        key = ctx.add_content(io.BytesIO(b"never committed")).sha256
        assert store.exists(key)
        raise RuntimeError("boom")
    assert store.batches == []
    assert not store.exists(key)


def test_copy_hashed_small_files_and_reused_buffers(tmp_path: Path) -> None:
    sizes = [0, 1, 2047, 2048, 5000, (1 << 20) - 1, 1 << 20, 3 * (1 << 20) + 7]
    for size in [*sizes, *reversed(sizes)]:
        data = os.urandom(size)
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        out = io.BytesIO()
        with open(path, "rb") as source:
            digests = copy_hashed(source, out)
        assert out.getvalue() == data
        assert (digests.size, digests.md5, digests.sha256) == (
            size, hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    # a source that grew after its size was looked at is still copied whole
    path = tmp_path / "growing"
    path.write_bytes(b"a" * 10)
    with open(path, "rb") as source, open(path, "ab") as more:
        more.write(b"b" * 5000)
        more.flush()
        assert copy_hashed(source, None).size == 5010


def test_a_collection_does_not_keep_the_items_created_in_it(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        collection = get(ctx, m.Collection, s.collection)
        assert collection.items == []  # loaded: appending would keep every new item
        item = objects.create_item(ctx, collection)
        bundle = objects.create_bundle(ctx, item, "ORIGINAL")
        assert item.owning_collection is collection and bundle.item_id == item.id
        ctx.session.flush()
        item_id, alive = item.id, weakref.ref(item)
        del item, bundle
        gc.collect()
        assert alive() is None
        assert [i.id for i in collection.items] == [item_id]


def test_a_handle_pending_in_the_unit_is_refused(repo: Repository) -> None:
    s = make_structure(repo)
    with pytest.raises(Conflict), repo.context(system=True) as ctx:
        collection = get(ctx, m.Collection, s.collection)
        first, second = (objects.create_item(ctx, collection) for _ in range(2))
        handles.assign(ctx, first, "123456789/777")
        handles.assign(ctx, second, "hdl:123456789/777")


def test_kept_content_is_in_place_at_once(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        row = ctx.add_content(io.BytesIO(b"readable before commit"))
        assert content_path(repo, row.sha256).read_bytes() == b"readable before commit"
