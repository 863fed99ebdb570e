"""Helpers shared by the repository-core tests (tests/test_core_*.py): structure and store."""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from server import models as m
from server.context import Context, Repository
from server.services import objects


@dataclass(frozen=True)
class Structure:
    """IDs of a small tree: one community holding two collections."""

    community: uuid.UUID
    collection: uuid.UUID
    other_collection: uuid.UUID
    community_handle: str
    collection_handle: str


def make_structure(repo: Repository) -> Structure:
    with repo.context(system=True) as ctx:
        community = objects.create_community(ctx, None, "Community")
        collection = objects.create_collection(ctx, community, "Collection")
        other = objects.create_collection(ctx, community, "Other collection")
        assert community.handle and collection.handle
        return Structure(community.id, collection.id, other.id, community.handle,
                         collection.handle)


def get(ctx: Context, cls: type[Any], object_id: uuid.UUID) -> Any:
    obj = ctx.session.get(cls, object_id)
    assert obj is not None, f"{cls.__name__} {object_id} not found"
    return obj


def add_file(ctx: Context, item: m.Item, data: bytes, name: str,
             bundle: str = "ORIGINAL") -> m.Bitstream:
    """Store ``data`` and attach it to ``item`` as a bitstream of ``bundle``."""
    content = ctx.add_content(io.BytesIO(data), name=name)
    return objects.add_bitstream(ctx, objects.bundle_named(ctx, item, bundle), content,
                                 name=name)


def new_item(ctx: Context, collection_id: uuid.UUID, *, install: bool = True,
             title: str = "An item") -> m.Item:
    from server.services import metadata

    item = objects.create_item(ctx, get(ctx, m.Collection, collection_id))
    metadata.add(ctx, item, "dc.title", title)
    if install:
        objects.install(ctx, item)
    return item


def count(repo: Repository, cls: type[Any]) -> int:
    with repo.context(write=False) as ctx:
        return int(ctx.session.scalar(select(func.count()).select_from(cls)) or 0)


def store_root(repo: Repository) -> Path:
    return repo.config.path("store.path")


def content_path(repo: Repository, sha256: str) -> Path:
    return store_root(repo) / sha256[:2] / sha256[2:4] / sha256


def files_under(root: Path) -> list[str]:
    """Every regular file below ``root`` (staging included), as sorted relative paths."""
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            out.append(str(Path(dirpath, name).relative_to(root)))
    return sorted(out)


def write_cli_config(tmp_path: Path, repo: Repository, **sections: dict[str, Any]) -> Path:
    """A configuration file for the CLI naming the same database and store as ``repo``."""
    values: dict[str, Any] = {
        "database": {"url": repo.config.database_url},
        "store": {"path": str(store_root(repo)), "fsync": False},
        "server": {"staging_dir": str(tmp_path / "staging")},
    }
    for section, keys in sections.items():
        values.setdefault(section, {}).update(keys)
    path = tmp_path / "davpack.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def clean_environ() -> dict[str, str]:
    """The current environment without any DAVPACK_* variable (they override the file)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DAVPACK_")}
