"""Generated data: Simple Archive Format batches and items of random bytes.

Nothing here is timed.  Random bytes, so no layer can profit from compression or dedup.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

from bench.harness import MiB

_DC = """<?xml version="1.0" encoding="utf-8"?>
<dublin_core schema="dc">
  <dcvalue element="title" qualifier="none" language="en">Generated item {i}</dcvalue>
  <dcvalue element="contributor" qualifier="author">Author, Number {i}</dcvalue>
  <dcvalue element="contributor" qualifier="author">Second, Author</dcvalue>
  <dcvalue element="date" qualifier="issued">2024-01-{day:02d}</dcvalue>
  <dcvalue element="subject" qualifier="none" language="en">benchmarks</dcvalue>
  <dcvalue element="subject" qualifier="none" language="en">subject {mod}</dcvalue>
  <dcvalue element="description" qualifier="abstract" language="en">An abstract for item {i}, long enough to look like one; it says nothing at all.</dcvalue>
  <dcvalue element="type" qualifier="none">Article</dcvalue>
</dublin_core>
"""  # noqa: E501

_LICENSE = "Generated for the benchmark: may be copied freely.\n" * 40

SAF_FILES = 2  # plus license.txt: three bitstreams per item
SAF_FILE_SIZE = 4096


def saf_batch(batch: Path, items: int, *, start: int = 0) -> Path:
    """``items`` item folders (a dublin_core.xml of eight values, two small files and a
    license: three bitstreams each) under ``batch``."""
    for i in range(start, start + items):
        folder = batch / f"item_{i:06d}"
        folder.mkdir(parents=True)
        (folder / "dublin_core.xml").write_text(
            _DC.format(i=i, day=i % 28 + 1, mod=i % 17), encoding="utf-8")
        lines = []
        for k in range(SAF_FILES):
            name = f"file_{k}.bin"
            (folder / name).write_bytes(os.urandom(SAF_FILE_SIZE))
            lines.append(f"{name}\tbundle:ORIGINAL\tdescription:part {k}"
                         + ("\tprimary:true" if k == 0 else ""))
        (folder / "license.txt").write_text(_LICENSE, encoding="utf-8")
        lines.append("license.txt\tbundle:LICENSE")
        (folder / "contents").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return batch


def zip_folder(folder: Path, target: Path) -> Path:
    """``folder``'s files as a STORED zip (paths relative to it)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return target


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            out.write(chunk)
            left -= len(chunk)
    return path


def structure(repo: Any, collections: list[str]) -> dict[str, str]:
    """A community ``Bench`` holding the named collections: their handles by name."""
    from server.services import objects

    with repo.context(system=True) as ctx:
        community = objects.create_community(ctx, None, "Bench")
        handles = {name: objects.create_collection(ctx, community, name).handle
                   for name in collections}
    return {name: str(handle) for name, handle in handles.items()}


def _collection(ctx: Any, handle: str) -> Any:
    from server import models as m
    from server.services import handles

    found = handles.resolve(ctx, handle)
    assert isinstance(found, m.Collection), handle
    return found


def item_of_random_files(repo: Any, collection: str, title: str, size: int,
                         files: int, scratch: Path) -> str:
    """An installed item in ``collection`` (a handle) holding ``files`` bitstreams of
    random bytes, ``size`` bytes in all: its handle."""
    from server.services import metadata, objects

    per_file = max(1, size // files)
    with repo.context(system=True) as ctx:
        item = objects.create_item(ctx, _collection(ctx, collection))
        metadata.add(ctx, item, "dc.title", title)
        bundle = objects.bundle_named(ctx, item, "ORIGINAL")
        for n in range(files):
            length = per_file if n < files - 1 else size - per_file * (files - 1)
            random_file(scratch, length)
            with open(scratch, "rb") as stream:
                content = ctx.add_content(stream, name=f"part-{n:03d}.bin")
            objects.add_bitstream(ctx, bundle, content, name=f"part-{n:03d}.bin")
        scratch.unlink()
        objects.install(ctx, item)
        return str(item.handle)


def small_items(repo: Any, collection: str, count: int) -> list[str]:
    """``count`` installed items with one 4 KiB file each: their handles."""
    from server.services import metadata, objects

    made: list[str] = []
    with repo.context(system=True) as ctx:
        owner = _collection(ctx, collection)
        for n in range(count):
            item = objects.create_item(ctx, owner)
            metadata.add(ctx, item, "dc.title", f"Small item {n}")
            content = ctx.add_content(io.BytesIO(os.urandom(4096)), name="data.bin")
            objects.add_bitstream(ctx, objects.bundle_named(ctx, item, "ORIGINAL"), content,
                                  name="data.bin")
            objects.install(ctx, item)
            made.append(str(item.handle))
    return made
