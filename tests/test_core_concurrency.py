"""The store under concurrent writers and a running garbage collector: nothing is lost."""

from __future__ import annotations

import hashlib
import io
import threading
import uuid

from core_support import add_file, content_path, files_under, get, make_structure, new_item
from sqlalchemy import select

from server import models as m
from server.context import Repository
from server.services import objects

CONTENT = b"the same bytes, again and again\n" * 2048
ROUNDS = 20


def test_writers_and_collector_never_lose_committed_content(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        items = [new_item(ctx, s.collection, title=f"writer {n}").id for n in range(2)]
    expected = hashlib.sha256(CONTENT).hexdigest()
    kept: list[uuid.UUID] = []
    problems: list[str] = []
    stop = threading.Event()
    collections = 0

    def check(bitstream_id: uuid.UUID, when: str) -> None:
        with repo.context(write=False) as ctx, \
                ctx.open_content(get(ctx, m.Bitstream, bitstream_id)) as stream:
            if hashlib.sha256(stream.read()).hexdigest() != expected:
                problems.append(f"{when}: content of {bitstream_id} is damaged")

    def writer(n: int) -> None:
        try:
            for i in range(ROUNDS):
                with repo.context(system=True) as ctx:
                    bitstream_id = add_file(ctx, get(ctx, m.Item, items[n]), CONTENT,
                                            f"w{n}-{i}.txt").id
                # committed and referenced: its file must be there, whatever the collector does
                check(bitstream_id, f"writer {n} round {i}")
                if i == ROUNDS - 1:
                    kept.append(bitstream_id)
                    break
                # release it again, so that the content keeps becoming collectable
                with repo.context(system=True) as ctx:
                    objects.remove_bitstream(ctx, get(ctx, m.Bitstream, bitstream_id))
        except Exception as exc:  # reported below, with the thread that raised it
            problems.append(f"writer {n}: {type(exc).__name__}: {exc}")

    def collector() -> None:
        nonlocal collections
        try:
            while not stop.is_set():
                repo.collect()
                collections += 1
        except Exception as exc:
            problems.append(f"collector: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    gc = threading.Thread(target=collector)
    gc.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    stop.set()
    gc.join(timeout=60)
    assert not any(t.is_alive() for t in [*threads, gc]), "a thread hung"
    assert problems == []
    assert collections > 0

    repo.collect()
    with repo.context(write=False) as ctx:
        committed = list(ctx.session.scalars(select(m.Bitstream)))
        assert sorted(b.id for b in committed) == sorted(kept)
        for bitstream in committed:
            assert bitstream.sha256 == expected
            assert content_path(repo, bitstream.sha256).read_bytes() == CONTENT
        assert list(ctx.session.scalars(select(m.StoredContent.sha256))) == [expected]
    assert files_under(content_path(repo, expected).parents[2]) == [
        f"{expected[:2]}/{expected[2:4]}/{expected}"]


def test_concurrent_first_writers_of_new_content(repo: Repository) -> None:
    """Many units storing the same, never-seen content at once: one row, one file, all kept."""
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        bundle_id = objects.create_bundle(ctx, new_item(ctx, s.collection), "ORIGINAL").id
    data = b"brand new content\n" * 4096
    barrier = threading.Barrier(6)
    problems: list[str] = []

    def writer(n: int) -> None:
        try:
            with repo.context(system=True) as ctx:
                staged = ctx.stage(io.BytesIO(data), name=f"{n}")
                barrier.wait(timeout=30)
                content = ctx.keep(staged)
                objects.add_bitstream(ctx, get(ctx, m.Bundle, bundle_id), content,
                                      name=f"{n}.txt")
        except Exception as exc:
            problems.append(f"writer {n}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert problems == []
    key = hashlib.sha256(data).hexdigest()
    with repo.context(write=False) as ctx:
        names = sorted(b.name for b in ctx.session.scalars(select(m.Bitstream)))
        assert names == [f"{n}.txt" for n in range(6)]
        assert list(ctx.session.scalars(select(m.StoredContent.sha256))) == [key]
    assert content_path(repo, key).read_bytes() == data
    assert list(repo.store.staging.iterdir()) == []  # type: ignore[attr-defined]
