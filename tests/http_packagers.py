"""Small packagers for the HTTP tests (independent of the real format packagers).

``TESTZIP``: a STORED zip holding ``manifest.json`` (type, title, files) and the files
under ``files/<BUNDLE>/<name>``.  It ingests an item into a collection, a collection into
a community, a community into the site or a community; it replaces items, collections and
communities; it disseminates all four object types with an exact size (a
:class:`server.zipstream.ZipLayout`), so ranges and ETags are real.

``TESTSTREAM``: disseminates items as a text listing of unknown length (``size`` None),
which the server must spool to give an exact ``Content-Length``.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from packagers.base import (
    BOTH,
    DISSEMINATE,
    Disseminator,
    IngestedObject,
    Ingester,
    IngestRequest,
    IngestResult,
    Operation,
    Option,
    Outcome,
    Package,
    PackageSource,
)
from packagers.errors import PackageValidationError
from packagers.params import PackageParameters
from server import models as m
from server.errors import Detail, NotFound
from server.services import metadata, objects
from server.store import StagedContent
from server.zipstream import ZipEntry, ZipLayout

MARKER = "davpack-testzip"


def build_zip(title: str, files: dict[str, bytes], *, type_name: str = "ITEM",
              bundle: str = "ORIGINAL") -> bytes:
    """A TESTZIP package in memory (tests only; packages here are small)."""
    manifest = {"format": MARKER, "type": type_name, "title": title,
                "files": [{"bundle": bundle, "name": name, "path": f"files/{bundle}/{name}"}
                          for name in files]}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            zf.writestr(f"files/{bundle}/{name}", data)
    return out.getvalue()


class ZipPackage(Package):
    def __init__(self, layout: ZipLayout, *, file_name: str, last_modified: datetime) -> None:
        self.layout = layout
        self.mime_type = "application/zip"
        self.file_name = file_name
        self.last_modified = last_modified
        self.size = layout.total_size
        self.etag = layout.fingerprint()

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.layout.iter_bytes(start, end)

    def close(self) -> None:
        self.layout.close()


_PARENTS = {"ITEM": m.ObjectType.COLLECTION, "COLLECTION": m.ObjectType.COMMUNITY}


class ZipPackagerForTests(Ingester, Disseminator):
    name = "TESTZIP"
    aliases = ("TZ",)
    description = "Test package: manifest.json plus files"
    mime_types = ("application/zip", "application/x-testzip")
    extension = "zip"
    sword_packaging = ("http://example.org/testzip",)
    options = (Option("title", "Title to use instead of the manifest's", applies_to=BOTH),
               Option("includeBundles", "Bundles to include", applies_to=DISSEMINATE,
                      multiple=True))
    ingest_parent_types = frozenset({m.ObjectType.SITE, m.ObjectType.COMMUNITY,
                                     m.ObjectType.COLLECTION})
    replace_types = frozenset({m.ObjectType.COMMUNITY, m.ObjectType.COLLECTION,
                               m.ObjectType.ITEM})
    disseminate_types = frozenset({m.ObjectType.SITE, m.ObjectType.COMMUNITY,
                                   m.ObjectType.COLLECTION, m.ObjectType.ITEM})

    @classmethod
    def sniff(cls, source: PackageSource) -> bool:
        try:
            with zipfile.ZipFile(source.path) as zf:
                return MARKER in zf.read("manifest.json").decode("utf-8", "replace")
        except (zipfile.BadZipFile, KeyError, OSError):
            return False

    # -- ingest ------------------------------------------------------------------------

    def _read(self, op: Operation, source: PackageSource) -> tuple[dict[str, Any],
                                                                   list[tuple[dict[str, Any],
                                                                              StagedContent]]]:
        staged: list[tuple[dict[str, Any], StagedContent]] = []
        try:
            with zipfile.ZipFile(source.path) as zf:
                manifest = json.loads(zf.read("manifest.json"))
                if manifest.get("format") != MARKER:
                    raise PackageValidationError("not a TESTZIP package",
                                                 [Detail("wrong marker", file="manifest.json")])
                for entry in manifest.get("files", []):
                    with zf.open(entry["path"]) as stream:
                        staged.append((entry, op.repo.store.stage(stream, name=entry["name"])))
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            for _, item in staged:
                item.discard()
            raise PackageValidationError(f"{source.label} is not a valid TESTZIP package",
                                         [Detail(str(exc), file=source.label)]) from None
        except BaseException:
            for _, item in staged:
                item.discard()
            raise
        return manifest, staged

    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        manifest, staged = self._read(op, source)
        kind = str(manifest.get("type", "ITEM"))
        title = request.params.get_str("title") or str(manifest.get("title", ""))
        try:
            with op.context() as ctx:
                parent = ctx.session.get(m.DSpaceObject, request.parent) \
                    if request.parent else None
                if parent is None:
                    raise NotFound("the parent does not exist")
                if kind == "ITEM":
                    if not isinstance(parent, m.Collection):
                        raise PackageValidationError("an item goes into a collection")
                    item = objects.create_item(ctx, parent)
                    metadata.add(ctx, item, "dc.title", title)
                    self._add_files(ctx, item, staged)
                    objects.submit(ctx, item, skip_workflow=request.skip_workflow)
                    created: m.DSpaceObject = item
                elif kind == "COLLECTION":
                    if not isinstance(parent, m.Community):
                        raise PackageValidationError("a collection goes into a community")
                    created = objects.create_collection(ctx, parent, title)
                elif kind == "COMMUNITY":
                    created = objects.create_community(
                        ctx, parent if isinstance(parent, m.Community) else None, title)
                else:
                    raise PackageValidationError(f"unknown type {kind}")
                result = IngestedObject(created.type, Outcome.CREATED, handle=created.handle,
                                        uuid=created.id, package=source.label)
        finally:
            for _, item in staged:
                item.discard()
        return IngestResult(objects=[result])

    def replace(self, op: Operation, target: uuid.UUID, source: PackageSource,
                request: IngestRequest) -> IngestResult:
        manifest, staged = self._read(op, source)
        title = request.params.get_str("title") or str(manifest.get("title", ""))
        try:
            with op.context() as ctx:
                obj = ctx.session.get(m.DSpaceObject, target)
                if obj is None:
                    raise NotFound("the target does not exist")
                objects.set_metadata(ctx, obj, [metadata.Value("dc.title", title)])
                if isinstance(obj, m.Item):
                    for bundle in list(obj.bundles):
                        objects.remove_bundle(ctx, bundle)
                    self._add_files(ctx, obj, staged)
                result = IngestedObject(obj.type, Outcome.REPLACED, handle=obj.handle,
                                        uuid=obj.id, package=source.label)
        finally:
            for _, item in staged:
                item.discard()
        return IngestResult(objects=[result])

    @staticmethod
    def _add_files(ctx: Any, item: m.Item,
                   staged: list[tuple[dict[str, Any], StagedContent]]) -> None:
        for entry, content in staged:
            kept = ctx.keep(content)
            bundle = objects.bundle_named(ctx, item, entry.get("bundle", "ORIGINAL"))
            objects.add_bitstream(ctx, bundle, kept, name=entry["name"],
                                  mime_type=entry.get("mime", "application/octet-stream"))

    # -- disseminate -------------------------------------------------------------------

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        wanted = set(params.get_list("includeBundles"))
        store = op.repo.store
        with op.context(write=False) as ctx:
            obj = ctx.session.get(m.DSpaceObject, target)
            if obj is None:
                raise NotFound("no such object")
            title = params.get_str("title") or objects.name_of(obj)
            mtime = obj.last_modified
            files = []
            entries: list[ZipEntry] = []
            if isinstance(obj, m.Item):
                for bundle in obj.bundles:
                    if wanted and bundle.name not in wanted:
                        continue
                    for bs in bundle.bitstreams:
                        path = f"files/{bundle.name}/{bs.name}"
                        files.append({"bundle": bundle.name, "name": bs.name, "path": path})
                        entries.append(ZipEntry(path, bs.size, bs.crc32, mtime,
                                                lambda key=bs.sha256: store.open(key)))
            manifest = json.dumps({"format": MARKER, "type": obj.type.value, "title": title,
                                   "handle": obj.handle, "files": files}, sort_keys=True)
            file_name = self.file_name(obj, params)
        layout = ZipLayout([ZipEntry.from_bytes("manifest.json", manifest.encode(), mtime),
                            *entries])
        return ZipPackage(layout, file_name=file_name, last_modified=mtime)


class StreamPackage(Package):
    def __init__(self, lines: list[bytes], file_name: str, last_modified: datetime) -> None:
        self._lines = lines
        self.mime_type = "text/plain"
        self.file_name = file_name
        self.last_modified = last_modified
        self.size = None
        self.etag = None

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if start or end is not None:
            raise ValueError("no ranges on a streamed package")
        yield from self._lines


class StreamPackagerForTests(Disseminator):
    name = "TESTSTREAM"
    mime_types = ("text/plain",)
    extension = "txt"
    disseminate_types = frozenset({m.ObjectType.ITEM})

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        with op.context(write=False) as ctx:
            obj = ctx.session.get(m.DSpaceObject, target)
            if not isinstance(obj, m.Item):
                raise NotFound("no such item")
            lines = [f"{objects.name_of(obj)}\n".encode()]
            for bs in objects.item_bitstreams(obj):
                lines.append(f"{bs.name} {bs.size} {zlib.crc32(bs.name.encode())}\n".encode())
            return StreamPackage(lines, self.file_name(obj, params), obj.last_modified)
