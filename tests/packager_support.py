"""Helpers for the single-item packager tests (tests/test_bagit.py, test_imscp.py,
test_pdf.py): run an ingest or a dissemination, and prove that a refused package left
nothing behind."""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from core_support import count, make_structure

from packagers.base import (
    Disseminator,
    Ingester,
    IngestRequest,
    IngestResult,
    Mode,
    Operation,
    PackageSource,
)
from packagers.errors import PackageError
from packagers.params import PackageParameters
from server import models as m
from server.context import Repository
from server.errors import DavpackError
from server.services import metadata


@dataclass
class Setup:
    repo: Repository
    op: Operation
    collection: uuid.UUID
    collection_handle: str


def setup(repo: Repository, admin: Any) -> Setup:
    structure = make_structure(repo)
    return Setup(repo, Operation(repo, actor=admin.id), structure.collection,
                 structure.collection_handle)


def request(parent: uuid.UUID | None, *, mode: Mode = Mode.SUBMIT,
            **options: str) -> IngestRequest:
    return IngestRequest(mode=mode, parent=parent, skip_workflow=True,
                         params=PackageParameters(options.items()))


def ingest(packager: Ingester, env: Setup, path: Path, *, name: str | None = None,
           content_type: str | None = None, **options: str) -> IngestResult:
    params = PackageParameters(options.items())
    params.check_known(packager.option_names("ingest"), packager.name)
    source = PackageSource(path, name=name, content_type=content_type)
    return packager.ingest(env.op, source, request(env.collection, **options))


def package_bytes(packager: Disseminator, env: Setup, item_id: uuid.UUID,
                  **options: str) -> bytes:
    params = PackageParameters(options.items())
    params.check_known(packager.option_names("disseminate"), packager.name)
    with packager.disseminate(env.op, item_id, params) as package:
        out = io.BytesIO()
        written = package.write_to(out)
        data = out.getvalue()
        assert written == len(data)
        if package.size is not None:
            assert package.size == len(data)
            # ranges agree with the whole
            middle = len(data) // 3
            assert b"".join(package.iter_bytes(middle, middle + 777)) == \
                data[middle:middle + 777]
            assert b"".join(package.iter_bytes(len(data) - 5)) == data[-5:]
    return data


def item_values(repo: Repository, item_id: uuid.UUID) -> dict[str, list[str]]:
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None
        out: dict[str, list[str]] = {}
        for value in metadata.ordered_values(item):
            out.setdefault(value.field, []).append(value.value)
        return out


def item_files(repo: Repository, item_id: uuid.UUID) -> dict[str, list[tuple[str, int, str]]]:
    """bundle -> [(name, size, md5)] in bundle order."""
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None
        return {b.name: [(f.name, f.size, f.md5) for f in b.bitstreams] for b in item.bundles}


@dataclass
class Residue:
    items: int
    keys: list[str]
    staging: list[str]


def residue(repo: Repository) -> Residue:
    staging = repo.config.path("store.path") / ".staging"
    leftovers = []
    for dirpath, dirs, names in os.walk(staging):
        leftovers.extend(os.path.join(dirpath, n) for n in names + dirs)
    return Residue(count(repo, m.Item), sorted(repo.store.iter_keys()), sorted(leftovers))


def refused(packager: Ingester, env: Setup, path: Path, *, expect: type[DavpackError]
            = PackageError, name: str | None = None, **options: str) -> DavpackError:
    """Ingest must fail with ``expect`` (structured details) and change nothing."""
    before = residue(env.repo)
    with pytest.raises(DavpackError) as info:
        ingest(packager, env, path, name=name, **options)
    error = info.value
    assert isinstance(error, expect), f"{type(error).__name__}: {error}"
    assert error.details, f"no structured details in {error!r}"
    after = residue(env.repo)
    assert after == before, "a refused package left something behind"
    return error


def details_text(error: DavpackError) -> str:
    return str(error) + "\n" + "\n".join(repr(d.as_dict()) for d in error.details)


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 6))
            zf.writestr(info, data)
    return path


def zip_dir(source: Path, target: Path, *, prefix: str = "") -> Path:
    """Zip a directory tree (files only, sorted), optionally below ``prefix/``."""
    with zipfile.ZipFile(target, "w") as zf:
        for dirpath, _dirs, names in sorted(os.walk(source)):
            for name in sorted(names):
                full = Path(dirpath, name)
                rel = full.relative_to(source).as_posix()
                zf.write(full, prefix + rel)
    return target
