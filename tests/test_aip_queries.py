"""The number of SQL statements an AIP export costs does not grow with the number of files
in an item, nor with the number of items in a hierarchy: everything is loaded up front in
a few queries, never one query per bundle, file, value, policy or item (the N+1 pattern
that made a 100-file item cost 320 statements)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aip_support import add_admin, export_one, export_tree, make_repo

from server import models as m
from server.context import Repository
from server.services import authz, metadata, objects


@contextmanager
def counted(repo: Repository) -> Iterator[list[str]]:
    """Every statement sent to the database while the block runs."""
    from sqlalchemy import event

    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(repo.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(repo.engine, "before_cursor_execute", record)


def add_item(repo: Repository, collection_id: uuid.UUID, files: int, label: str) -> uuid.UUID:
    """An archived item whose every file has a metadata value and a policy of its own."""
    with repo.context(system=True) as ctx:
        collection = ctx.session.get(m.Collection, collection_id)
        readers = authz.anonymous_group(ctx)
        item = objects.create_item(ctx, collection)
        metadata.add(ctx, item, "dc.title", f"{label}: {files} files")
        bundle = objects.create_bundle(ctx, item, "ORIGINAL")
        for n in range(files):
            content = ctx.add_content(io.BytesIO(f"{label} {n}".encode()), name=f"{n}.txt")
            bitstream = objects.add_bitstream(ctx, bundle, content, name=f"{n}.txt",
                                              mime_type="text/plain")
            metadata.add(ctx, bitstream, "dc.description", f"file {n}")
            authz.add_policy(ctx, bitstream, m.Action.READ, group=readers)
        objects.install(ctx, item)
        return item.id


@pytest.fixture
def collection(repo: Repository) -> uuid.UUID:
    with repo.context(system=True) as ctx:
        community = objects.create_community(ctx, None, "Queries")
        return objects.create_collection(ctx, community, "Counted").id


def export_as(repo: Repository, item: uuid.UUID, who: str, admin: uuid.UUID) -> bytes:
    """The item's AIP exported by the system, an administrator or an anonymous reader."""
    from packagers.aip import AIPPackager
    from packagers.base import Operation
    from packagers.params import PackageParameters

    if who == "system":
        return export_one(repo, item)
    if who == "administrator":
        return export_one(repo, item, actor=admin)
    with AIPPackager().disseminate(Operation(repo), item, PackageParameters()) as package:
        return b"".join(package.iter_bytes())


@pytest.mark.parametrize("who", ["system", "administrator", "anonymous"])
def test_item_aip_statements_do_not_grow_with_its_files(repo: Repository,
                                                        collection: uuid.UUID,
                                                        who: str) -> None:
    admin = add_admin(repo)
    counts = []
    for files in (5, 50):
        item = add_item(repo, collection, files, who)
        with counted(repo) as statements:
            assert export_as(repo, item, who, admin).startswith(b"PK")
        counts.append(len(statements))
    assert counts[0] == counts[1], counts
    assert counts[1] < 40, counts


def test_hierarchy_export_statements_do_not_grow_with_its_items(repo: Repository,
                                                               collection: uuid.UUID,
                                                               tmp_path: Path) -> None:
    for n in range(3):
        add_item(repo, collection, 2, f"small {n}")
    bigger = make_repo(tmp_path / "bigger", suffix="bigger")
    with bigger.context(system=True) as ctx:
        other = objects.create_collection(
            ctx, objects.create_community(ctx, None, "Queries"), "Counted").id
    for n in range(30):
        add_item(bigger, other, 2, f"small {n}")
    counts = []
    for source, dest in ((repo, tmp_path / "three"), (bigger, tmp_path / "thirty")):
        with source.context(write=False) as ctx:
            site = objects.site(ctx).id
        with counted(source) as statements:
            written = export_tree(source, site, dest)
        counts.append((len(written), len(statements)))
    bigger.dispose()
    assert [n for n, _ in counts] == [3 + 3, 30 + 3]  # items + site, community, collection
    assert counts[0][1] == counts[1][1], counts
