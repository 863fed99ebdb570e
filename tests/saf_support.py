"""Helpers for the SAF tests (tests/test_saf_*.py): build batches, import, look at items."""

from __future__ import annotations

import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core_support import files_under, store_root
from sqlalchemy import func, select

from packagers.base import IngestRequest, IngestResult, Mode, Operation, PackageSource
from packagers.params import PackageParameters
from packagers.saf import SAFPackager
from server import models as m
from server.context import Repository
from server.services import metadata, objects

# Fields the repository writes itself on install; left out when comparing round trips.
SYSTEM_FIELDS = {"dc.date.accessioned", "dc.date.available", "dc.identifier.uri",
                 "dc.description.provenance"}


def dc_xml(values: Iterable[tuple[str, str] | tuple[str, str, str | None]],
           schema: str = "dc") -> bytes:
    """A dublin_core.xml / metadata_<schema>.xml: values as (element[.qualifier], text[,
    language])."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<dublin_core schema="{schema}">']
    for value in values:
        name, text = value[0], value[1]
        language = value[2] if len(value) > 2 else None
        element, _, qualifier = name.partition(".")
        lang = f' language="{language}"' if language else ""
        escaped = text.replace("&", "&amp;").replace("<", "&lt;")
        lines.append(f'  <dcvalue element="{element}" qualifier="{qualifier or "none"}"'
                     f"{lang}>{escaped}</dcvalue>")
    lines.append("</dublin_core>")
    return ("\n".join(lines) + "\n").encode()


def write_item(root: Path, folder: str, *, title: str | None = None,
               dc: Iterable[tuple[str, ...]] | None = None, files: dict[str, bytes] | None = None,
               contents: list[str] | None = None, other: dict[str, bytes] | None = None) -> Path:
    """One item folder; ``contents`` defaults to one line per file (names as given)."""
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    values = list(dc) if dc is not None else [("title", title or folder)]
    (path / "dublin_core.xml").write_bytes(dc_xml(values))  # type: ignore[arg-type]
    for name, data in (files or {}).items():
        target = path.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    lines = contents if contents is not None else list(files or {})
    if lines:
        (path / "contents").write_text("".join(f"{line}\n" for line in lines),
                                       encoding="utf-8")
    for name, data in (other or {}).items():
        (path / name).write_bytes(data)
    return path


def zip_dir(root: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(root).as_posix())
    return target


def raw_zip(target: Path, entries: dict[str, bytes]) -> Path:
    """A zip with exactly these member names (hostile names included)."""
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data)
    return target


def ingest(repo: Repository, path: Path, parent: uuid.UUID | None = None, *,
           actor: uuid.UUID | None = None, system: bool = True, mode: Mode = Mode.SUBMIT,
           on_object: Any = None, **options: str) -> IngestResult:
    op = Operation(repo, actor=actor, system=system, on_object=on_object)
    params = PackageParameters(options.items())
    params.check_known(SAFPackager.option_names("ingest"), "SAF")
    request = IngestRequest(mode=mode, params=params, parent=parent)
    return SAFPackager().ingest(op, PackageSource(path, name=path.name), request)


def export(repo: Repository, target: uuid.UUID, **options: str) -> bytes:
    op = Operation(repo, system=True)
    with SAFPackager().disseminate(op, target, PackageParameters(options.items())) as pkg:
        data = b"".join(pkg.iter_bytes())
        assert len(data) == pkg.size
        return data


def count(repo: Repository, cls: type[Any]) -> int:
    with repo.context(write=False) as ctx:
        return int(ctx.session.scalar(select(func.count()).select_from(cls)) or 0)


def nothing_stored(repo: Repository) -> bool:
    """No item, bundle, bitstream or content row, and no file in the store or staging."""
    return (count(repo, m.Item) == 0 and count(repo, m.Bitstream) == 0
            and count(repo, m.StoredContent) == 0 and files_under(store_root(repo)) == [])


@dataclass(frozen=True)
class FileFacts:
    bundle: str
    name: str
    description: str | None
    primary: bool
    sha256: str
    size: int
    policies: tuple[tuple[str, str], ...]
    extra: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ItemFacts:
    uuid: uuid.UUID
    handle: str | None
    values: tuple[tuple[str, str, str | None], ...]  # field, value, language (no system ones)
    files: tuple[FileFacts, ...]
    relations: tuple[tuple[str, str], ...]  # (type, other item's dc.title)
    collections: tuple[str, ...]

    def all(self, field: str) -> list[str]:
        return [v for f, v, _lang in self.values if f == field]

    def first(self, field: str) -> str:
        return self.all(field)[0]

    def file(self, name: str) -> FileFacts:
        found = [f for f in self.files if f.name == name]
        assert found, f"no file {name!r} in {[f.name for f in self.files]}"
        return found[0]


def facts(repo: Repository, item_id: uuid.UUID) -> ItemFacts:
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None
        values = tuple((v.field, v.value, v.language) for v in metadata.ordered_values(item)
                       if v.field not in SYSTEM_FIELDS)
        files = []
        for bundle in item.bundles:
            for b in bundle.bitstreams:
                files.append(FileFacts(
                    bundle.name, b.name, b.description, bundle.primary_bitstream_id == b.id,
                    b.sha256, b.size,
                    tuple(sorted((p.action.value, p.group.name if p.group else "")
                                 for p in b.policies)),
                    tuple((v.field, v.value) for v in metadata.ordered_values(b))))
        relations = []
        for rel in objects.relationships_of(ctx, item):
            other = rel.right_item if rel.left_item_id == item.id else rel.left_item
            kind = rel.left_type if rel.left_item_id == item.id else rel.right_type
            relations.append((kind, metadata.first(other, "dc.title") or ""))
        collections = tuple(c.handle or "" for c in
                            ([item.owning_collection] if item.owning_collection else [])
                            + list(item.mapped_collections))
        return ItemFacts(item.id, item.handle, values, tuple(files), tuple(sorted(relations)),
                         collections)


def items_in(repo: Repository, collection: uuid.UUID) -> dict[str, ItemFacts]:
    """The collection's items by title."""
    with repo.context(write=False) as ctx:
        ids = list(ctx.session.scalars(select(m.Item.id).where(
            m.Item.owning_collection_id == collection)))
    out = {}
    for item_id in ids:
        item = facts(repo, item_id)
        out[(item.all("dc.title") or [str(item_id)])[0]] = item
    return out


def comparable(item: ItemFacts) -> tuple[Any, ...]:
    """What a round trip must keep: values (in order per field), files, relationships."""
    per_field: dict[str, list[tuple[str, str | None]]] = {}
    for f, v, lang in item.values:
        per_field.setdefault(f, []).append((v, lang))
    files = tuple(sorted((f.bundle, f.name, f.description, f.primary, f.sha256, f.policies,
                          f.extra) for f in item.files))
    return (sorted(per_field.items()), files, item.relations)
