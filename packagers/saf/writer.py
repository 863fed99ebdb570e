"""Writing items as a Simple Archive Format zip that :mod:`packagers.saf.importer` reads back.

Each item becomes a folder ``<n>/`` (``n`` counting from the ``number`` option) holding:

* ``dublin_core.xml`` (schema ``dc``) and one ``metadata_<schema>.xml`` per other schema,
  values in the order they were added, ``qualifier="none"`` when unqualified, ``language``
  (and ``authority``/``confidence``) when set;
* ``contents``: ``<file>\\tbundle:<B>[\\tprimary:true][\\tdescription:<d>]
  [\\tpermissions:-r|-w '<group>'][\\tiiif-...]``, one line per bitstream in bundle order;
* ``handle`` (not with ``migrate``), ``collections`` (owning first, then mapped) and
  ``relationships`` (``relation.<type> folderName:<n>`` for items in the same package, the
  other item's handle otherwise; a link between two exported items is written once, by its
  left item);
* the files, under their bitstream names (a ``/`` in a name makes a subfolder, as DSpace
  does).  A name that cannot be a path, or clashes with another file or with the SAF files
  themselves, is written as ``1_<name>``, ``2_<name>``...; the contents line uses the name
  written.

The zip is laid out by :class:`server.zipstream.ZipLayout`: STORED, every entry dated with its
item's last modification, so exporting the same items twice gives the same bytes and the
exact size is known before the first byte.  Generated files go to one spool file; the
bitstreams are read from the store while streaming.  The package no longer needs the
database once built.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from packagers.base import Package, package_file_name
from packagers.errors import UnsupportedOperation
from packagers.saf.reader import CONTROL_FILES, DUBLIN_CORE, is_metadata_file
from server import models as m
from server.archive import junk_name
from server.context import Context
from server.errors import Conflict, ContentMissing, Detail, NotFound
from server.services import authz, metadata, objects
from server.services.metadata import Value
from server.zipstream import ZipEntry, ZipLayout

# What ``migrate`` removes: the target repository makes these again when it installs the item.
MIGRATE_DROPPED = ("dc.date.accessioned", "dc.date.available", "dc.description.provenance")
_IIIF_OPTIONS = {"iiif.label": "iiif-label", "iiif.toc": "iiif-toc",
                 "iiif.image.width": "iiif-width", "iiif.image.height": "iiif-height"}
_LINE_BREAKS = re.compile(r"[\t\r\n]+")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_REL_TYPE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


@dataclass(frozen=True)
class ExportSettings:
    number: int = 1
    migrate: bool = False
    exclude_bitstreams: bool = False


class _Spool:
    """Generated members (XML, contents...) appended to one private temporary file."""

    def __init__(self, directory: Path | None) -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="davpack-saf-", suffix=".spool",
                                    dir=str(directory) if directory else None)
        self.path = path
        self._out: BinaryIO | None = os.fdopen(fd, "wb")
        self._size = 0

    def add(self, name: str, data: bytes, mtime: datetime) -> ZipEntry:
        assert self._out is not None, "spool already sealed"
        offset = self._size
        self._out.write(data)
        self._size += len(data)
        path = self.path
        length = len(data)

        def opener() -> BinaryIO:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return io.BytesIO(fh.read(length))

        return ZipEntry(name, length, zlib.crc32(data), mtime, opener)

    def seal(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def close(self) -> None:
        self.seal()
        Path(self.path).unlink(missing_ok=True)


class SafPackage(Package):
    """The SAF zip of one item or collection; exact size, byte ranges, deterministic."""

    mime_type = "application/zip"

    def __init__(self, layout: ZipLayout, spool: _Spool, file_name: str,
                 last_modified: datetime, folders: list[str]) -> None:
        self.layout = layout
        self._spool = spool
        self.file_name = file_name
        self.last_modified = last_modified
        self.size = layout.total_size
        self.etag = layout.fingerprint()
        self.folders = folders

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.layout.iter_bytes(start, end)

    def close(self) -> None:
        self.layout.close()
        self._spool.close()


# ---------------------------------------------------------------------------------------
# Building


def build_package(ctx: Context, target: uuid.UUID, settings: ExportSettings,
                  spool_dir: Path | None) -> SafPackage:
    """The SAF package of an item or of a collection's archived items (UUID order;
    withdrawn items left out, as DSpace does).  Objects the context's person may not
    read are left out; the target itself must be readable."""
    obj = ctx.session.get(m.DSpaceObject, target)
    if obj is None:
        raise NotFound(f"no object {target}", [Detail("unknown object", found=str(target))])
    if not isinstance(obj, (m.Item, m.Collection)):
        raise UnsupportedOperation(
            f"SAF exports items and collections, not a {obj.type.value}",
            [Detail("cannot export this type", field="type", found=obj.type.value,
                    expected="ITEM, COLLECTION")])
    authz.authorize(ctx, obj, m.Action.READ)
    file_name = package_file_name(obj, "zip")
    if isinstance(obj, m.Item):
        ids = [obj.id]
    else:
        ids = [item.id for item in objects.archived_items(ctx, obj, include_withdrawn=False)
               if authz.allowed(ctx, item, m.Action.READ)]
    newest = obj.last_modified
    ctx.session.expunge_all()
    folder_of = {item_id: str(settings.number + k) for k, item_id in enumerate(ids)}
    spool = _Spool(spool_dir)
    entries: list[ZipEntry] = []
    try:
        for item_id in ids:
            item = ctx.session.get(m.Item, item_id)
            assert item is not None
            newest = max(newest, item.last_modified)
            entries.extend(item_entries(ctx, item, folder_of, spool, settings))
            ctx.session.expunge_all()  # keep the session (and memory) small
        spool.seal()
        layout = ZipLayout(entries)
    except BaseException:
        spool.close()
        raise
    return SafPackage(layout, spool, file_name, newest, [folder_of[i] for i in ids])


def item_entries(ctx: Context, item: m.Item, folder_of: dict[uuid.UUID, str], spool: _Spool,
                 settings: ExportSettings) -> list[ZipEntry]:
    folder = folder_of[item.id]
    when = item.last_modified
    values = metadata.ordered_values(item)
    if settings.migrate:
        values = migrate_values(values, item.handle)
    by_schema: dict[str, list[Value]] = {"dc": []}
    for value in values:
        by_schema.setdefault(value.schema, []).append(value)
    out: list[ZipEntry] = [spool.add(f"{folder}/{DUBLIN_CORE}",
                                     metadata_xml("dc", by_schema.pop("dc")), when)]
    for schema in sorted(by_schema):
        out.append(spool.add(f"{folder}/metadata_{schema}.xml",
                             metadata_xml(schema, by_schema[schema]), when))

    bitstreams = [b for bundle in item.bundles for b in bundle.bitstreams
                  if authz.allowed(ctx, b, m.Action.READ)]
    names = file_names([b.name for b in bitstreams])
    lines = [contents_line(ctx, b, name) for b, name in zip(bitstreams, names, strict=True)]
    out.append(spool.add(f"{folder}/contents", _text(lines), when))
    if item.handle and not settings.migrate:
        out.append(spool.add(f"{folder}/handle", _text([item.handle]), when))
    collections = [c.handle for c in ([item.owning_collection] if item.owning_collection
                                      else []) + list(item.mapped_collections) if c.handle]
    if collections:
        out.append(spool.add(f"{folder}/collections", _text(collections), when))
    relations = relationship_lines(ctx, item, folder_of)
    if relations:
        out.append(spool.add(f"{folder}/relationships", _text(relations), when))
    if not settings.exclude_bitstreams:
        store = ctx.store
        for bitstream, name in zip(bitstreams, names, strict=True):
            if not store.exists(bitstream.sha256):
                raise ContentMissing(
                    f"the content of bitstream {bitstream.name!r} of item {item.handle} is "
                    "missing from the store",
                    [Detail("content missing", file=bitstream.name, field="sha256",
                            expected=bitstream.sha256)])
            out.append(ZipEntry(f"{folder}/{name}", bitstream.size, bitstream.crc32, when,
                                _opener(ctx, bitstream.sha256)))
    return out


def _opener(ctx: Context, sha256: str) -> Callable[[], BinaryIO]:
    store = ctx.store

    def opener() -> BinaryIO:
        return store.open(sha256)

    return opener


def _text(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def migrate_values(values: list[Value], handle: str | None) -> list[Value]:
    """Leave out what the target repository re-creates on install."""
    out = []
    for value in values:
        if value.field in MIGRATE_DROPPED:
            continue
        if value.field == "dc.identifier.uri" and handle and _points_at(value.value, handle):
            continue
        out.append(value)
    return out


def _points_at(uri: str, handle: str) -> bool:
    text = uri.strip().rstrip("/")
    return text in (handle, f"hdl:{handle}") or text.endswith(f"/{handle}")


def _attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")
            .replace("\r", "&#13;"))


def _content(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def metadata_xml(schema: str, values: list[Value]) -> bytes:
    lines = ['<?xml version="1.0" encoding="utf-8" standalone="no"?>',
             f'<dublin_core schema="{_attr(schema)}">']
    for value in values:
        attrs = (f'element="{_attr(value.element)}" '
                 f'qualifier="{_attr(value.qualifier or "none")}"')
        if value.language:
            attrs += f' language="{_attr(value.language)}"'
        if value.authority:
            attrs += f' authority="{_attr(value.authority)}" confidence="{value.confidence}"'
        lines.append(f"  <dcvalue {attrs}>{_content(value.value)}</dcvalue>")
    lines.append("</dublin_core>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text).strip()


def contents_line(ctx: Context, bitstream: m.Bitstream, name: str) -> str:
    bundle = bitstream.bundle
    assert bundle is not None
    parts = [name, f"bundle:{_one_line(bundle.name)}"]
    if bundle.primary_bitstream_id == bitstream.id:
        parts.append("primary:true")
    if bitstream.description and _one_line(bitstream.description):
        parts.append(f"description:{_one_line(bitstream.description)}")
    permission = permission_of(bitstream)
    if permission:
        parts.append(f"permissions:{permission}")
    for value in metadata.ordered_values(bitstream):
        option = _IIIF_OPTIONS.get(value.field)
        if option and _one_line(value.value):
            parts.append(f"{option}:{_one_line(value.value)}")
    return "\t".join(parts)


def permission_of(bitstream: m.Bitstream) -> str | None:
    """``-r 'group'``/``-w 'group'`` when the file's access is one group policy other than
    the usual Anonymous read (that is what import gives files without permissions)."""
    policies = list(bitstream.policies)
    if len(policies) != 1:
        return None
    policy = policies[0]
    if (policy.group is None or policy.eperson_id is not None or policy.start_date
            or policy.end_date or policy.action not in (m.Action.READ, m.Action.WRITE)):
        return None
    if policy.action is m.Action.READ and policy.group.name == m.ANONYMOUS:
        return None
    if "\t" in policy.group.name or "\n" in policy.group.name:
        return None
    flag = "-r" if policy.action is m.Action.READ else "-w"
    return f"{flag} '{policy.group.name}'"


def _safe_name(name: str) -> str:
    cleaned = _BAD_CHARS.sub("_", name)
    parts = ["_" if part in ("", ".", "..") else part for part in cleaned.split("/")]
    return "/".join(parts)


def file_names(names: list[str]) -> list[str]:
    """Paths (inside the item folder) for bitstream names: unique, safe, not clashing with
    each other (file vs. folder) nor with the SAF files; ``k_<name>`` when needed."""
    files: set[str] = set(CONTROL_FILES) | {DUBLIN_CORE}
    dirs: set[str] = set()
    out: list[str] = []

    def clashes(path: str) -> bool:
        parts = path.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        return (path in files or path in dirs or any(p in files for p in parents)
                or ("/" not in path and is_metadata_file(path)) or junk_name(path))

    for name in names:
        base = _safe_name(name)
        candidate, k = base, 0
        while clashes(candidate):
            k += 1
            candidate = f"{k}_{base}"
        files.add(candidate)
        parts = candidate.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        out.append(candidate)
    return out


def relationship_lines(ctx: Context, item: m.Item, folder_of: dict[uuid.UUID, str]) -> list[str]:
    lines: list[str] = []
    for rel in objects.relationships_of(ctx, item):
        if rel.left_item_id == item.id:
            other, rel_type = rel.right_item_id, rel.left_type
        else:
            other, rel_type = rel.left_item_id, rel.right_type
            if other in folder_of:
                continue  # the left item's folder carries it
        if not _REL_TYPE.match(rel_type):
            continue
        if other in folder_of:
            ref = f"folderName:{folder_of[other]}"
        else:
            other_item = ctx.session.get(m.Item, other)
            ref = (other_item.handle if other_item is not None and other_item.handle
                   else str(other))
        lines.append(f"relation.{rel_type} {ref}")
    return lines


# ---------------------------------------------------------------------------------------
# Writing to disk (command line)


def write_zip(package: SafPackage, path: Path) -> None:
    """The zip at ``path`` (written beside it, then renamed; never over an existing file)."""
    if path.exists():
        raise Conflict(f"{path} already exists", [Detail("refusing to overwrite",
                                                         file=str(path))])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as out:
            package.write_to(out)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            raise Conflict(f"{path} already exists", [Detail("refusing to overwrite",
                                                             file=str(path))])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_directory(package: SafPackage, dest: Path) -> list[Path]:
    """Unpack the package below ``dest``: one folder per item; existing folders refused."""
    dest.mkdir(parents=True, exist_ok=True)
    clashes = [f for f in package.folders if (dest / f).exists()]
    if clashes:
        raise Conflict(f"{dest} already holds item folders", [
            Detail("folder exists; choose another --dest or --number", file=str(dest / f))
            for f in clashes])
    created: list[Path] = []
    try:
        for entry in package.layout.entries:
            target = dest.joinpath(*entry.name.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            with entry.opener() as source, open(target, "xb") as out:
                while chunk := source.read(1024 * 1024):
                    out.write(chunk)
            created.append(target)
    except BaseException:
        for f in package.folders:
            shutil.rmtree(dest / f, ignore_errors=True)
        raise
    return created
