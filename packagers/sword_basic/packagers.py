"""``Binary`` and ``SimpleZip``: the two packagings every SWORD v2 server is expected to know.

Binary (``http://purl.org/net/sword/package/Binary``)
    The body is one opaque file: it becomes one bitstream of the ORIGINAL bundle, named
    after the file name the client gave, typed by the client's content type (or guessed
    from the name when the type says only "some bytes").  Nothing is unpacked.

SimpleZip (``http://purl.org/net/sword/package/SimpleZip``)
    A plain zip: every file in it becomes one bitstream of ORIGINAL, named by its path in
    the zip (operating-system clutter such as ``__MACOSX/`` and ``.DS_Store`` is skipped).
    The zip is read through :mod:`server.archive` (names, sizes, bombs and CRCs checked
    before and while reading).  Disseminating an item as SimpleZip gives a zip of the
    ORIGINAL files the caller may read -- what a SWORD client gets from the EM-IRI.

Both make the item's ``dc.title`` from the file name (without extension) unless the option
``titleFromFilename`` is false -- SWORD turns it off when the deposit's Atom entry carries
a title.  Neither sniffs: a zip or a file is taken as one of these only when asked by name
or by SWORD packaging URI.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import ClassVar

from packagers import itemkit
from packagers.base import (
    INGEST,
    Disseminator,
    Ingester,
    IngestRequest,
    IngestResult,
    Operation,
    Option,
    Package,
    PackageSource,
)
from packagers.errors import PackageValidationError
from packagers.params import PackageParameters
from server import models as m
from server.archive import SafeArchive, junk_name
from server.context import Context, Repository
from server.errors import Detail
from server.services import authz, metadata
from server.store import StagedContent
from server.zipstream import ZipLayout

BINARY_URI = "http://purl.org/net/sword/package/Binary"
SIMPLEZIP_URI = "http://purl.org/net/sword/package/SimpleZip"

_GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream",
                      "application/x-download", "application/download"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_NAME = 1024
_MIME = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")

_BUNDLE_OPTION = Option("bundle", "Bundle the files go into.", default="ORIGINAL",
                        applies_to=INGEST)
_TITLE_OPTION = Option("titleFromFilename",
                       "Set dc.title of the new item from the file name (without extension).",
                       default="true", applies_to=INGEST)


@dataclass
class StagedFile:
    """One file staged ahead of the unit of work, with the name and type it will get."""

    name: str
    staged: StagedContent
    mime_type: str


def clean_name(raw: str | None, label: str) -> str:
    """A bitstream name from a client's file name: its last path component, no control
    characters; refused when nothing usable is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", "..") or _CONTROL.search(name) or len(name) > _MAX_NAME:
        raise PackageValidationError(
            f"{label}: no usable file name was given",
            [Detail("file name missing or unusable", file=label, field="filename",
                    found=repr(raw)[:200], expected="a plain file name, e.g. thesis.pdf")])
    return name


def title_from(name: str) -> str:
    stem = PurePosixPath(name).name
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz"):
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)] or stem
    return stem.rsplit(".", 1)[0] if "." in stem.strip(".") else stem


def mime_for(name: str, content_type: str | None) -> str:
    """The client's content type when it says something specific, else a guess from the
    name."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base and len(base) <= 127 and base not in _GENERIC and _MIME.fullmatch(base):
        return base
    return itemkit.guess_mime(name)


def stage_binary(files: itemkit.StagedFiles, source: PackageSource) -> list[StagedFile]:
    """The whole source as one file, staged (no database lock held)."""
    name = clean_name(source.name or source.path.name, source.label)
    with source.open() as fh:
        staged = files.stage(fh, name=name)
    return [StagedFile(name, staged, mime_for(name, source.content_type))]


def stage_zip(files: itemkit.StagedFiles, source: PackageSource) -> list[StagedFile]:
    """Every regular file of a zip, staged in archive order (no database lock held)."""
    label = source.label
    with SafeArchive.open(source.path, name=label) as archive:
        if archive.kind != "zip":
            raise PackageValidationError(
                f"{label} is a {archive.kind} archive, not a zip",
                [Detail("not a zip", file=label, expected="zip", found=archive.kind)])
        out: list[StagedFile] = []
        for name in archive.names():
            if junk_name(name):
                continue
            with archive.open(name) as member:
                staged = files.stage(member, name=name)
            out.append(StagedFile(name, staged, itemkit.guess_mime(name)))
    if not out:
        raise PackageValidationError(f"{label} holds no files",
                                     [Detail("empty zip", file=label)])
    return out


def attach(ctx: Context, item: m.Item, files: itemkit.StagedFiles, staged: list[StagedFile],
           *, bundle: str = "ORIGINAL") -> list[m.Bitstream]:
    """Add staged files to ``item`` (inside ``ctx``), after its existing files."""
    added = []
    for entry in staged:
        content = files.keep(ctx, entry.staged)
        added.append(itemkit.add_file(ctx, item, bundle, content, name=entry.name,
                                      mime_type=entry.mime_type))
    return added


class _OneItemIngester(Ingester):
    """What Binary and SimpleZip share: a new item in a collection from staged files."""

    ingest_parent_types = frozenset({m.ObjectType.COLLECTION})
    options: ClassVar[tuple[Option, ...]] = (_BUNDLE_OPTION, _TITLE_OPTION)

    def stage(self, files: itemkit.StagedFiles, source: PackageSource) -> list[StagedFile]:
        raise NotImplementedError

    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        label = source.label
        if source.is_directory:
            raise PackageValidationError(f"{label} is a directory; packager {self.name} reads "
                                         "one file", [Detail("not a file", file=label)])
        bundle = request.params.get_str("bundle", "ORIGINAL") or "ORIGINAL"
        title = request.params.get_bool("titleFromFilename", True)
        with op.context(write=False) as ctx:  # fail early, before copying any bytes
            collection = itemkit.parent_collection(ctx, request, self.name)
            authz.authorize(ctx, collection, m.Action.ADD)
        with itemkit.StagedFiles(op.repo) as files:
            staged = self.stage(files, source)
            with op.context() as ctx:
                collection = itemkit.parent_collection(ctx, request, self.name)
                item = itemkit.new_item(ctx, collection)
                if title:
                    metadata.add(ctx, item, "dc.title",
                                 title_from(source.name or source.path.name))
                attach(ctx, item, files, staged, bundle=bundle)
                itemkit.add_license(ctx, item, files, request)
                itemkit.finish_item(ctx, item, request)
                record = itemkit.created(item, source, [])
        op.report(record)
        return IngestResult(objects=[record])


class BinaryPackager(_OneItemIngester):
    name = "Binary"
    description = ("One opaque file (SWORD's Binary packaging): ingested as a new item "
                   "holding that file, unpacked never.")
    mime_types = ("application/octet-stream",)
    extension = "bin"
    sword_packaging = (BINARY_URI,)

    def stage(self, files: itemkit.StagedFiles, source: PackageSource) -> list[StagedFile]:
        return stage_binary(files, source)


class SimpleZipPackager(_OneItemIngester, Disseminator):
    name = "SimpleZip"
    description = ("A plain zip (SWORD's SimpleZip packaging): every file becomes a "
                   "bitstream of a new item; an item disseminates as a zip of its ORIGINAL "
                   "files.")
    mime_types = ("application/zip",)
    extension = "zip"
    sword_packaging = (SIMPLEZIP_URI,)
    disseminate_types = frozenset({m.ObjectType.ITEM})
    roundtrip_exact = False
    roundtrip_note = ("Every zip entry carries the item's last-modified time, and a new item "
                      "made from the zip gets a time of its own; the names and bytes of all "
                      "ORIGINAL files come back unchanged.")
    options: ClassVar[tuple[Option, ...]] = (
        Option("bundle", "Bundle the files go into (ingest) or come from (disseminate).",
               default="ORIGINAL"),
        _TITLE_OPTION,
    )

    def stage(self, files: itemkit.StagedFiles, source: PackageSource) -> list[StagedFile]:
        return stage_zip(files, source)

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        bundle = params.get_str("bundle", "ORIGINAL") or "ORIGINAL"
        with op.context(write=False) as ctx:
            item = itemkit.load_item(ctx, target, self.name)
            snapshot = itemkit.snapshot_item(ctx, item)
            file_name = self.file_name(item, params)
        return zip_package(op.repo, snapshot, bundle, file_name)


def zip_package(repo: Repository, snapshot: itemkit.ItemSnapshot, bundle: str,
                file_name: str) -> itemkit.ZipPackage:
    """A STORED zip of one bundle's files (read from the store only while streamed)."""
    mtime = snapshot.last_modified
    paths = itemkit.unique_paths(snapshot.bundle(bundle))
    paths.sort(key=lambda pair: pair[1])
    entries = [itemkit.stored_entry(repo.store, facts, path, mtime) for facts, path in paths]
    return itemkit.ZipPackage(ZipLayout(entries), file_name=file_name, last_modified=mtime)
