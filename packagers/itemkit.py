"""What the single-item packagers (BAGIT, IMSCP, PDF) share.

* :class:`ZipPackage`: a disseminated zip built with :mod:`server.zipstream` (exact size,
  ranges, deterministic bytes); members are read from the content store when streamed.
* :class:`StagedFiles`: content streamed into the store's staging area *before* the write
  unit of work opens (so no database lock is held while bytes move), kept inside it, and
  discarded whatever happens if the unit of work never keeps them.
* :func:`scratch_dir`: a private temporary directory beside the store's staging files,
  removed on exit (extracted archives live there).
* :func:`new_item` / :func:`finish_item`: create a workspace item in the parent collection
  and finish it like any submission (workflow unless skipped, or installed).
* :func:`snapshot_item`: everything a disseminator needs from the database, copied into
  plain objects so the package no longer needs a session.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, BinaryIO, cast

from packagers.base import (
    IngestedObject,
    IngestRequest,
    Mode,
    Outcome,
    Package,
    PackageSource,
)
from packagers.errors import ParentMissing, UnsupportedOperation
from server import models as m
from server.context import Context, Repository
from server.errors import Detail, NotFound
from server.services import authz, metadata, objects
from server.services.metadata import Value
from server.store import ContentStore, StagedContent
from server.zipstream import ZipEntry, ZipLayout

# Fields that installing an item (re)creates; a submitted package's copies are dropped so
# the new item does not carry two accession dates or someone else's handle URI.
INSTALL_FIELDS = frozenset({"dc.date.accessioned", "dc.date.available", "dc.identifier.uri"})


# ---------------------------------------------------------------------------------------
# Scratch space and staging


def staging_root(repo: Repository) -> Path:
    """The store's staging directory (same device as the store), else the configured one."""
    staging = getattr(repo.store, "staging", None)
    if isinstance(staging, Path):
        return staging
    root = repo.config.path("server.staging_dir")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def scratch_dir(repo: Repository, prefix: str) -> Iterator[Path]:
    """A fresh private directory under the staging area, removed (with all it holds) on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=staging_root(repo)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class StagedFiles:
    """Content staged ahead of the unit of work; whatever is not kept is discarded on exit.

    Use as a context manager around both the staging and the write unit of work::

        with StagedFiles(op.repo) as files:
            key = files.stage(fh, name="a.txt")          # no database lock held
            with op.context() as ctx:
                content = files.keep(ctx, key)           # placed (or deduplicated)
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._staged: dict[str, StagedContent] = {}

    @property
    def store(self) -> ContentStore:
        return self.repo.store

    def stage(self, source: BinaryIO | IO[bytes], *, name: str) -> StagedContent:
        staged = self.store.stage(cast(BinaryIO, source),
                                  limit=self.repo.config.max_upload_size, name=name)
        key = f"{len(self._staged)}:{name}"
        self._staged[key] = staged
        return staged

    def keep(self, ctx: Context, staged: StagedContent) -> m.StoredContent:
        """Make staged content part of ``ctx`` (the staged file is consumed either way)."""
        for key, value in list(self._staged.items()):
            if value is staged:
                del self._staged[key]
                break
        return ctx.keep(staged)

    def discard(self) -> None:
        for staged in self._staged.values():
            staged.discard()
        self._staged.clear()

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


# ---------------------------------------------------------------------------------------
# Items


def parent_collection(ctx: Context, request: IngestRequest, packager: str) -> m.Collection:
    """The collection a single-item package goes into (``-p`` / the URL's object)."""
    if request.mode is not Mode.SUBMIT:
        raise UnsupportedOperation(
            f"packager {packager} only submits new items; its packages carry no identity "
            "to restore (use AIP for restores)",
            [Detail("restore not supported", field="mode", found=request.mode.value,
                    expected=Mode.SUBMIT.value)])
    if request.parent is None:
        raise ParentMissing(f"packager {packager} needs a parent collection",
                            [Detail("no parent given", field="parent", expected="a collection")])
    parent = objects.get(ctx, request.parent)
    if parent is None:
        raise ParentMissing(f"the parent {request.parent} does not exist",
                            [Detail("unknown parent", field="parent", found=str(request.parent))])
    if not isinstance(parent, m.Collection):
        raise UnsupportedOperation(
            f"packager {packager} puts items into collections, not into a "
            f"{parent.type.value.lower()}",
            [Detail("parent is not a collection", field="parent", found=parent.type.value,
                    expected=m.ObjectType.COLLECTION.value)])
    return parent


def new_item(ctx: Context, collection: m.Collection) -> m.Item:
    return objects.create_item(ctx, collection)


def add_file(ctx: Context, item: m.Item, bundle_name: str, content: m.StoredContent, *,
             name: str, mime_type: str | None = None, description: str | None = None,
             source: str | None = None, primary: bool = False,
             format_name: str | None = None, format_support: str = "UNKNOWN") -> m.Bitstream:
    bundle = objects.bundle_named(ctx, item, bundle_name)
    return objects.add_bitstream(ctx, bundle, content, name=name,
                                 mime_type=mime_type or guess_mime(name),
                                 description=description, source=source, primary=primary,
                                 format_name=format_name, format_support=format_support)


def add_license(ctx: Context, item: m.Item, files: StagedFiles, request: IngestRequest) -> None:
    """The deposit licence text the caller passed (SWORD/CLI), as DSpace's LICENSE bundle."""
    if not request.license:
        return
    staged = files.stage(io.BytesIO(request.license.encode("utf-8")), name="license.txt")
    content = files.keep(ctx, staged)
    add_file(ctx, item, "LICENSE", content, name="license.txt",
             mime_type="text/plain; charset=utf-8")


def finish_item(ctx: Context, item: m.Item, request: IngestRequest) -> None:
    """Finish the submission: workflow when the collection has one (unless skipped), else
    installed with a handle and DSpace's accession metadata.  A caller-supplied
    ``request.finish`` (SWORD) takes over instead."""
    if request.finish is not None:
        request.finish(ctx, item)
        return
    objects.submit(ctx, item, skip_workflow=request.skip_workflow)


def created(item: m.Item, source: PackageSource, warnings: list[str]) -> IngestedObject:
    return IngestedObject(type=m.ObjectType.ITEM, outcome=Outcome.CREATED, handle=item.handle,
                          uuid=item.id, package=source.label, warnings=list(warnings))


def add_metadata(ctx: Context, item: m.Item, values: list[Value], *,
                 create_prefixes: tuple[str, ...] = ()) -> None:
    """Add values; fields under ``create_prefixes`` (e.g. ``local.bagit.``) are created on
    purpose when missing, every other field must already be in the registry."""
    plain = [v for v in values if not v.field.startswith(create_prefixes)] \
        if create_prefixes else list(values)
    if plain:
        metadata.add_values(ctx, item, plain)
    if create_prefixes:
        special = [v for v in values if v.field.startswith(create_prefixes)]
        if special:
            metadata.add_values(ctx, item, special, create=True)


def guess_mime(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


# ---------------------------------------------------------------------------------------
# Dissemination


@dataclass(frozen=True)
class FileFacts:
    """A bitstream as a disseminator needs it, detached from the session."""

    bundle: str
    name: str
    sha256: str
    md5: str
    size: int
    crc32: int
    mime_type: str
    description: str | None
    primary: bool
    id: uuid.UUID


@dataclass
class ItemSnapshot:
    id: uuid.UUID
    handle: str | None
    last_modified: datetime
    values: list[Value] = field(default_factory=list)
    files: list[FileFacts] = field(default_factory=list)

    def first(self, name: str) -> str | None:
        for value in self.values:
            if value.field == name:
                return value.value
        return None

    def all(self, name: str) -> list[Value]:
        return [v for v in self.values if v.field == name]

    def bundle(self, name: str) -> list[FileFacts]:
        return [f for f in self.files if f.bundle == name]


def load_item(ctx: Context, target: uuid.UUID, packager: str) -> m.Item:
    obj = objects.get(ctx, target)
    if obj is None:
        raise NotFound(f"no object with UUID {target}",
                       [Detail("unknown object", field="uuid", found=str(target))])
    if not isinstance(obj, m.Item):
        raise UnsupportedOperation(
            f"packager {packager} disseminates items, not a {obj.type.value.lower()}",
            [Detail("not an item", field="type", found=obj.type.value,
                    expected=m.ObjectType.ITEM.value)])
    authz.authorize(ctx, obj, m.Action.READ)
    return obj


def snapshot_item(ctx: Context, item: m.Item, *, readable_only: bool = True) -> ItemSnapshot:
    """The item's metadata (in package order) and files; bitstreams the actor may not read
    are left out when ``readable_only``."""
    snap = ItemSnapshot(id=item.id, handle=item.handle, last_modified=item.last_modified,
                        values=metadata.ordered_values(item))
    for bundle in item.bundles:
        for bitstream in bundle.bitstreams:
            if readable_only and not authz.allowed(ctx, bitstream, m.Action.READ):
                continue
            snap.files.append(FileFacts(
                bundle=bundle.name, name=bitstream.name, sha256=bitstream.sha256,
                md5=bitstream.md5, size=bitstream.size, crc32=bitstream.crc32,
                mime_type=bitstream.mime_type, description=bitstream.description,
                primary=bundle.primary_bitstream_id == bitstream.id, id=bitstream.id))
    return snap


def stored_entry(store: ContentStore, facts: FileFacts, name: str, mtime: datetime) -> ZipEntry:
    """A zip member streamed from the content store when (and only when) it is read."""
    sha = facts.sha256

    def opener() -> BinaryIO:
        return store.open(sha)

    return ZipEntry(name, facts.size, facts.crc32, mtime, opener)


class ZipPackage(Package):
    """A STORED zip laid out in advance: exact size, any byte range, identical on repeat."""

    mime_type = "application/zip"

    def __init__(self, layout: ZipLayout, *, file_name: str, last_modified: datetime,
                 mime_type: str = "application/zip") -> None:
        self.layout = layout
        self.file_name = file_name
        self.last_modified = last_modified
        self.mime_type = mime_type
        self.size = layout.total_size
        self.etag = layout.fingerprint()

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.layout.iter_bytes(start, end)

    def close(self) -> None:
        self.layout.close()


_BAD_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def archive_path_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a relative path inside a package (None: it can)."""
    if not name:
        return "empty name"
    if _BAD_PATH_CHARS.search(name):
        return "control character or backslash"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "empty, '.' or '..' component"
    return None


def unique_paths(files: list[FileFacts], reject: Callable[[str], bool] | None = None
                 ) -> list[tuple[FileFacts, str]]:
    """A package path for each file: its name when that is a safe relative path, not yet
    taken and not ``reject``-ed by the format, else ``bitstream_<n>`` keeping the extension
    (deterministic for equal input)."""
    taken: set[str] = set()
    dirs: set[str] = set()
    out: list[tuple[FileFacts, str]] = []
    for index, facts in enumerate(files, start=1):
        name = facts.name
        parents = {"/".join(name.split("/")[:i]) for i in range(1, name.count("/") + 1)}
        if (archive_path_problem(name) is not None or name in taken or name in dirs
                or parents & taken or (reject is not None and reject(name))):
            _, ext = os.path.splitext(name.replace("/", "_"))
            ext = ext if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", ext) else ""
            name = f"bitstream_{index}{ext}"
            while name in taken or name in dirs:
                name = f"bitstream_{index}_{len(taken)}{ext}"
            parents = set()
        taken.add(name)
        dirs |= parents
        out.append((facts, name))
    return out
