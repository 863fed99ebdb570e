"""The Binary and SimpleZip packagers on their own (as the CLI and WebDAV use them)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from core_support import make_structure
from packager_support import (
    ingest,
    item_files,
    item_values,
    make_zip,
    package_bytes,
    refused,
    setup,
)

from packagers.base import IngestRequest, PackageSource
from packagers.errors import PackageValidationError
from packagers.registry import default_registry
from packagers.sword_basic import BINARY_URI, SIMPLEZIP_URI, BinaryPackager, SimpleZipPackager
from server import models as m
from server.context import Repository
from server.errors import InvalidInput, PermissionDenied, UnsafeInput
from server.services import authz, objects, people


def test_registered_with_their_sword_uris() -> None:
    registry = default_registry()
    assert registry.by_sword_packaging(BINARY_URI) is BinaryPackager
    assert registry.by_sword_packaging(SIMPLEZIP_URI) is SimpleZipPackager
    assert registry.get("simplezip") is SimpleZipPackager


def test_binary_ingest(repo: Repository, admin: Any, tmp_path: Path) -> None:
    env = setup(repo, admin)
    path = tmp_path / "upload"
    path.write_bytes(b"%PDF-1.7 body")
    result = ingest(BinaryPackager(), env, path, name="Thèse finale.v2.pdf",
                    content_type="application/octet-stream")
    item = result.objects[0].uuid
    assert item is not None
    assert item_values(repo, item)["dc.title"] == ["Thèse finale.v2"]
    (name, size, _md5), = item_files(repo, item)["ORIGINAL"]
    assert (name, size) == ("Thèse finale.v2.pdf", 13)
    with repo.context(write=False) as ctx:
        found = ctx.session.get(m.Item, item)
        assert found is not None and found.workflow_state == m.WorkflowState.ARCHIVED
        assert found.bundles[0].bitstreams[0].mime_type == "application/pdf"
    untitled = ingest(BinaryPackager(), env, path, name="data.bin",
                      titleFromFilename="false")
    assert "dc.title" not in item_values(repo, untitled.objects[0].uuid)  # type: ignore[arg-type]
    refused(BinaryPackager(), env, path, name="\x00bad", expect=PackageValidationError)


def test_simplezip_ingest_and_dissemination(repo: Repository, admin: Any,
                                            tmp_path: Path) -> None:
    env = setup(repo, admin)
    big = bytes(range(256)) * 8  # package_bytes reads a range past the first 777 bytes
    path = make_zip(tmp_path / "p.zip", {"a.txt": big, "sub/b.csv": b"1,2",
                                         "__MACOSX/._a.txt": b"junk", ".DS_Store": b"junk"})
    result = ingest(SimpleZipPackager(), env, path, name="paper.zip")
    item = result.objects[0].uuid
    assert item is not None
    assert item_values(repo, item)["dc.title"] == ["paper"]
    assert [f[0] for f in item_files(repo, item)["ORIGINAL"]] == ["a.txt", "sub/b.csv"]
    data = package_bytes(SimpleZipPackager(), env, item)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("a.txt") == big and zf.read("sub/b.csv") == b"1,2"
    assert package_bytes(SimpleZipPackager(), env, item) == data  # deterministic


def test_simplezip_refusals_leave_nothing(repo: Repository, admin: Any,
                                          tmp_path: Path) -> None:
    env = setup(repo, admin)
    empty = make_zip(tmp_path / "empty.zip", {"__MACOSX/._x": b"junk"})
    refused(SimpleZipPackager(), env, empty, expect=PackageValidationError)
    evil = make_zip(tmp_path / "evil.zip", {"../escape.txt": b"x"})
    refused(SimpleZipPackager(), env, evil, expect=UnsafeInput)
    not_zip = tmp_path / "plain.txt"
    not_zip.write_bytes(b"just text")
    refused(SimpleZipPackager(), env, not_zip, expect=InvalidInput)


def test_a_submitter_owns_their_workspace_item_until_it_is_completed(
        repo: Repository, admin: Any, tmp_path: Path) -> None:
    """The core rule SWORD relies on for depositors who are not administrators."""
    structure = make_structure(repo)
    with repo.context(system=True) as ctx:
        depositor = people.create_person(ctx, "d@example.org", password="pw")
        other = people.create_person(ctx, "o@example.org", password="pw")
        collection = ctx.session.get(m.Collection, structure.collection)
        assert collection is not None
        for person in (depositor, other):
            authz.add_policy(ctx, collection, m.Action.ADD, eperson=person)
    env = setup(repo, admin)
    env.op.actor = depositor.id
    path = tmp_path / "f.txt"
    path.write_bytes(b"mine")
    kept: list[Any] = []
    request = IngestRequest(parent=structure.collection, finish=lambda ctx, i: kept.append(i.id))
    BinaryPackager().ingest(env.op, PackageSource(path, name="f.txt"), request)
    item_id = kept[0]
    with repo.context(other.id) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None and not authz.allowed(ctx, item, m.Action.READ)
    with repo.context(depositor.id) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None and item.workflow_state == m.WorkflowState.WORKSPACE
        bitstream = item.bundles[0].bitstreams[0]
        for action in (m.Action.READ, m.Action.WRITE, m.Action.ADD, m.Action.REMOVE):
            assert authz.allowed(ctx, item, action)
            assert authz.allowed(ctx, bitstream, action)
        assert not authz.allowed(ctx, item, m.Action.ADMIN)
        objects.install(ctx, item)
    with repo.context(depositor.id) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None and not authz.allowed(ctx, item, m.Action.WRITE)
        with pytest.raises(PermissionDenied):  # an archived item is the collection's
            objects.delete_item(ctx, item)
