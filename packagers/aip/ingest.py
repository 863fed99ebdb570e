"""Reading AIPs into the repository, in DSpace's modes, all or nothing.

Modes (seeds/001 "Ingestion Modes & Options"):

* **submit** (``Mode.SUBMIT``): new objects with new UUIDs and new handles (the package's
  handle with ``ignoreHandle=false``) under the parent given (``-p``; the package's own with
  ``ignoreParent=false``); items go through the collection's workflow unless
  ``skip_workflow``, get a new deposit licence and DSpace's accession metadata (replacing
  the package's ``dc.date.accessioned``/``available`` and ``dc.identifier.uri``, which
  describe the original).
* **restore** (``Mode.RESTORE``): the package's UUIDs, handles, parent, metadata, policies,
  flags and times, exactly; an object that already exists rolls everything back and is
  named in the error - unless ``keep_existing``, which skips it and its children and
  reports them.
* **force replace** (``Mode.REPLACE``): as restore, but existing objects are emptied and
  refilled from their package (their parent and UUID stay).  In a full-site replace the
  site, the groups and the people every repository has get the package's UUIDs, so the
  restored site is the one that was backed up.

One unit of work holds the whole run: any error - a checksum, a missing member, a
missing person, an existing object - rolls back every row and removes every stored file.
Restore and replace are for administrators (they recreate people, groups and policies) and
run with system rights once that is checked.

Hierarchies (``recursive``): children are found through the URL ``mptr`` of each
container, relative to the package's directory and never outside it; a directory, or an
uploaded zip whose members are AIP zips (extracted under the staging area), is read from
its root packages.  A package whose parent is not there yet is retried after the others
(so listing order does not matter, e.g. for items mapped into collections restored later);
what still has no parent then fails, or is skipped with ``skipIfParentMissing``.  Group
memberships, policies and relationships naming objects restored later in the run are
completed at the end.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from sqlalchemy import select

from packagers.aip import validation
from packagers.aip.crosswalks import dim, extension, premis, rights, roles
from packagers.aip.crosswalks.mods import read_mods
from packagers.aip.manifest import Manifest, MetsFile, read_manifest
from packagers.aip.mets import (
    MANIFEST,
    MD_DEPOSIT_LICENSE,
    MD_DIM,
    MD_MODS,
    MD_OBJECT,
    MD_PREMIS,
    MD_RELATIONSHIPS,
    MD_RIGHTS,
    MD_ROLES,
    MD_TECHMD,
)
from packagers.aip.options import IngestOptions
from packagers.base import (
    IngestedObject,
    IngestRequest,
    IngestResult,
    Mode,
    Operation,
    Outcome,
    PackageSource,
)
from packagers.errors import (
    ObjectExists,
    PackageError,
    PackageValidationError,
    ParentMissing,
    UnsupportedOperation,
)
from server import models as m
from server import passwords as pw
from server.archive import SafeArchive, junk_name
from server.context import Context, Repository
from server.errors import DavpackError, Detail, InvalidInput, UnknownMetadataField
from server.services import authz, handles, metadata, objects, people
from server.services.metadata import Value
from server.store import StagedContent

log = logging.getLogger(__name__)

TYPE_ORDER = {m.ObjectType.SITE: 0, m.ObjectType.COMMUNITY: 1, m.ObjectType.COLLECTION: 2,
              m.ObjectType.ITEM: 3}
DEFAULT_LICENSE = ("The depositor grants the repository the non-exclusive right to "
                   "preserve and distribute this item in any format or medium.\n")
LICENSE_MIME = "text/plain; charset=utf-8"
INSTALL_FIELDS = frozenset({"dc.date.accessioned", "dc.date.available", "dc.identifier.uri"})
FLUSH_EVERY = 50
"""Packages ingested between two writes of the unit of work (see flush_now_and_then)."""


def scratch_root(repo: Repository) -> Path:
    """Private working space beside the store's staging files (same file system)."""
    staging = getattr(repo.store, "staging", None)
    root = staging if isinstance(staging, Path) else repo.config.path("server.staging_dir")
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------------------------------
# Packages on disk


class OpenPackage:
    """A package being read: its manifest, and its members (zip) or the repository's own
    content (manifestOnly)."""

    def __init__(self, path: Path, label: str, manifest: Manifest,
                 archive: SafeArchive | None) -> None:
        self.path = path
        self.label = label
        self.manifest = manifest
        self.archive = archive

    def member(self, href: str) -> IO[bytes]:
        if self.archive is None:
            raise PackageValidationError("a manifest-only package has no members",
                                         [Detail("not in a zip", file=href)])
        if not self.archive.has(href):
            raise PackageValidationError(
                f"{self.label}: the manifest lists {href}, which is not in the package",
                [Detail("file listed in mets.xml is missing from the zip", file=href)])
        return self.archive.open(href)

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


@contextmanager
def open_package(path: Path, label: str, opts: IngestOptions,
                 schemas_dir: str | None) -> Iterator[OpenPackage]:
    archive: SafeArchive | None = None
    try:
        if opts.manifest_only:
            with open(path, "rb") as fh:
                manifest = read_manifest(fh, label)
            if opts.validate:
                _validate(path.read_bytes, label, schemas_dir)
        else:
            try:
                archive = SafeArchive.open(path, name=label)
            except InvalidInput as exc:
                if type(exc) is not InvalidInput:
                    raise
                raise PackageValidationError(
                    "No METS Manifest found (filename=mets.xml). Package is unacceptable!",
                    [Detail("not a zip archive (a bare mets.xml needs manifestOnly=true)",
                            file=label)]) from exc
            if not archive.has(MANIFEST):
                raise PackageValidationError(
                    "No METS Manifest found (filename=mets.xml). Package is unacceptable!",
                    [Detail("no mets.xml at the root of the zip", file=label)])
            with archive.open(MANIFEST) as member:
                manifest = read_manifest(member, f"{label}!/{MANIFEST}")
            if opts.validate:
                zipped = archive

                def read_all() -> bytes:
                    with zipped.open(MANIFEST) as stream:
                        return stream.read()

                _validate(read_all, f"{label}!/{MANIFEST}", schemas_dir)
        package = OpenPackage(path, label, manifest, archive)
    except BaseException:
        if archive is not None:
            archive.close()
        raise
    try:
        yield package
    finally:
        package.close()


def _validate(read: Any, label: str, schemas_dir: str | None) -> None:
    if not schemas_dir:
        raise PackageValidationError(
            "validate=true needs local XML schemas: set packagers.schemas_dir (or "
            "DAVPACK_SCHEMAS_DIR) and run 'davpack schemas fetch'",
            [Detail("no schema directory configured", field="packagers.schemas_dir")])
    for warning in validation.validate(io.BytesIO(read()), label, schemas_dir):
        log.warning(warning)


def prepare_sources(source: PackageSource, opts: IngestOptions, work: Path) -> list[Path]:
    """The root package(s) of what was handed in (a file, a directory, a zip of AIPs)."""
    path = source.path
    if source.is_directory:
        return find_roots(path, opts)
    if opts.manifest_only:
        return [path]
    try:
        with SafeArchive.open(path, name=source.label) as archive:
            if archive.has(MANIFEST):
                return [path]
            names = [n for n in archive.names() if not junk_name(n)]
            if names and all(n.lower().endswith(".zip") for n in names):
                target = work / "aips"
                archive.extract_all(target, skip=junk_name)
                return find_roots(_descend(target), opts)
    except InvalidInput as exc:
        if type(exc) is not InvalidInput:
            raise
        raise PackageValidationError(
            "No METS Manifest found (filename=mets.xml). Package is unacceptable!",
            [Detail("not a zip archive (a bare mets.xml needs manifestOnly=true)",
                    file=source.label)]) from exc
    raise PackageValidationError(
        "No METS Manifest found (filename=mets.xml). Package is unacceptable!",
        [Detail("the zip holds neither mets.xml nor AIP zips", file=source.label)])


def _descend(directory: Path) -> Path:
    """A zip of AIPs may hold them in one folder: use that folder."""
    entries = [e for e in directory.iterdir() if not junk_name(e.name)]
    if len(entries) == 1 and entries[0].is_dir():
        return _descend(entries[0])
    return directory


def find_roots(directory: Path, opts: IngestOptions) -> list[Path]:
    """Packages of a directory that no other package there lists as a child."""
    suffix = ".xml" if opts.manifest_only else ".zip"
    packages = sorted(p for p in directory.iterdir()
                      if p.is_file() and p.suffix.lower() == suffix and not junk_name(p.name))
    if not packages:
        raise PackageValidationError(f"no AIP ({suffix}) in {directory}",
                                     [Detail("empty directory", file=str(directory))])
    if len(packages) == 1:
        return packages
    scan = dataclasses.replace(opts, validate=False)
    referenced: set[Path] = set()
    kinds: dict[Path, m.ObjectType] = {}
    for package in packages:
        if package.name.upper().startswith("ITEM@"):
            kinds[package] = m.ObjectType.ITEM
            continue
        with open_package(package, package.name, scan, None) as pkg:
            kinds[package] = pkg.manifest.type
            for child in pkg.manifest.children:
                if child.url:
                    target = child_path(directory, child.url, package.name, strict=False)
                    if target is not None:
                        referenced.add(target)
    roots = [p for p in packages if p.resolve() not in referenced]
    return sorted(roots, key=lambda p: (TYPE_ORDER[kinds[p]], p.name))


def child_path(directory: Path, url: str, referrer: str, *, strict: bool = True
               ) -> Path | None:
    """Where a child package is: ``url`` relative to ``directory``, never outside it."""
    problem = None
    if "://" in url or url.startswith(("/", "\\")) or ":" in url.split("/")[0]:
        problem = "not a relative path"
    base = directory.resolve()
    candidate = (base / url).resolve()
    if problem is None and base not in candidate.parents:
        problem = "points outside the package's directory"
    if problem is not None:
        if not strict:
            return None
        raise PackageValidationError(
            f"{referrer}: child package reference {url!r} is {problem}",
            [Detail(f"child reference {problem}", file=referrer, field="mptr/@xlink:href",
                    found=url)])
    return candidate


# ---------------------------------------------------------------------------------------
# The run


def run_ingest(op: Operation, source: PackageSource, request: IngestRequest, *,
               target: uuid.UUID | None = None) -> IngestResult:
    opts = IngestOptions.from_request(request)
    if target is not None and request.mode is not Mode.REPLACE:
        request = IngestRequest(mode=Mode.REPLACE, params=request.params,
                                parent=request.parent, keep_existing=False,
                                recursive=request.recursive,
                                skip_workflow=request.skip_workflow, license=request.license)
    if request.keep_existing and request.mode is Mode.REPLACE:
        raise PackageError("keep-existing (-k) and force-replace (-f) cannot be combined",
                           [Detail("conflicting modes", field="mode")])
    if request.mode is Mode.SUBMIT and opts.ignore_parent and request.parent is None:
        raise ParentMissing("submit mode needs a parent (-p), or -o ignoreParent=false to use "
                            "the parent the package names",
                            [Detail("no parent given", field="parent")])
    restore = request.is_restore
    if restore and not op.system:
        with op.context(write=False) as ctx:
            authz.require_admin(ctx)
    schemas_dir = op.repo.config.get("packagers.schemas_dir")
    work = Path(tempfile.mkdtemp(prefix="aip-", dir=scratch_root(op.repo)))
    try:
        roots = prepare_sources(source, opts, work)
        with op.repo.context(op.actor, system=op.system or restore) as ctx:
            run = IngestRun(op, ctx, request, opts, schemas_dir)
            run.execute(roots, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for obj in run.result.objects:
        op.report(obj)
    return run.result


_MISSING = object()


@dataclass
class Pending:
    path: Path
    listings: list[uuid.UUID | None] = field(default_factory=list)
    reason: str = ""
    detail: Detail | None = None


class IngestRun:
    """Everything one ingest does inside its unit of work."""

    def __init__(self, op: Operation, ctx: Context, request: IngestRequest,
                 opts: IngestOptions, schemas_dir: str | None) -> None:
        self.op = op
        self.ctx = ctx
        self.request = request
        self.opts = opts
        self.schemas_dir = schemas_dir
        self.restore = request.is_restore
        self.replace = request.mode is Mode.REPLACE
        self.result = IngestResult()
        self.done: dict[Path, uuid.UUID | None] = {}
        self.deferred: dict[Path, Pending] = {}
        self.skipped_children: dict[Path, IngestedObject] = {}
        self.handle_map: dict[str, uuid.UUID] = {}
        self.uuid_map: dict[uuid.UUID, uuid.UUID] = {}
        self.times: dict[uuid.UUID, datetime] = {}
        self.deferred_members: list[tuple[uuid.UUID, str, str]] = []
        self.deferred_member_of: list[tuple[uuid.UUID, str, str]] = []
        self.deferred_policies: list[tuple[uuid.UUID, rights.PolicySpec, str]] = []
        self.relationships: list[tuple[extension.RelationshipSpec, str]] = []
        self.missing: list[Detail] = []
        self.top_target: uuid.UUID | None = None
        # UUIDs of the package at hand that one query found unused and nothing has taken
        # yet (see free_uuid); people, groups and schemas found by name, since policies and
        # submitters name the same few thousands of times (apply_roles, the only step that
        # creates, renames or rekeys people and groups, forgets them).
        self.absent: set[uuid.UUID] = set()
        self.subjects: dict[tuple[type, str], m.DSpaceObject] = {}
        self.schemas: set[str] = set()
        self.unflushed = 0  # packages done since the last flush
        # The extension section of the package at hand, read once (see ext).
        self.ext_read: tuple[Manifest, extension.ExtObject | None] | None = None

    # -- helpers --

    def warn(self, message: str, receipt: IngestedObject | None = None) -> None:
        self.ctx.warn(message)
        self.result.warnings.append(message)
        if receipt is not None:
            receipt.warnings.append(message)

    def receipt(self, obj: IngestedObject) -> None:
        self.result.objects.append(obj)
        self.op.progress(obj)

    def get(self, object_id: uuid.UUID | None) -> m.DSpaceObject | None:
        if object_id is None:
            return None
        return self.ctx.session.get(m.DSpaceObject, object_id)

    def by_handle(self, handle: str | None, *, package: bool = True) -> m.DSpaceObject | None:
        if not handle:
            return None
        if package and handle in self.handle_map:
            return self.get(self.handle_map[handle])
        try:
            return handles.resolve(self.ctx, handle)
        except InvalidInput:
            return None

    def handle_uuid(self, handle: str) -> uuid.UUID | None:
        found = self.by_handle(handle)
        return found.id if found is not None else None

    def free_uuid(self, wanted: uuid.UUID | None) -> uuid.UUID | None:
        """The package's UUID for a new object, when restoring and when it is unused."""
        if not self.restore or wanted is None:
            return None
        if wanted in self.absent:
            self.absent.discard(wanted)
            return wanted
        return wanted if objects.free_uuids(self.ctx, [wanted]) else None

    def note_absent(self, wanted: list[uuid.UUID | None]) -> None:
        """Look up the UUIDs a package is about to create in one query, for
        :meth:`free_uuid` (rather than one query per object)."""
        self.absent = objects.free_uuids(self.ctx, wanted) if self.restore else set()

    def _remembered(self, kind: type, key: str,
                    lookup: Callable[[Context, str], Any]) -> Any:
        """``lookup(ctx, key)``, remembered for the run once found (see ``subjects``)."""
        found = self.subjects.get((kind, key))
        if found is None:
            found = lookup(self.ctx, key)
            if found is not None:
                self.subjects[(kind, key)] = found
        return found

    def group_named(self, internal: str) -> m.Group | None:
        return cast(m.Group | None, self._remembered(m.Group, internal, authz.group_by_name))

    def person_with_email(self, email: str) -> m.EPerson | None:
        return cast(m.EPerson | None, self._remembered(m.EPerson, email, people.by_email))

    def note_time(self, obj: m.DSpaceObject, when: datetime | None) -> None:
        if self.restore and when is not None:
            self.times[obj.id] = when

    def flush_now_and_then(self) -> None:
        """Write the objects made so far every :data:`FLUSH_EVERY` packages: one flush
        for many items costs less than one each, and what is flushed is no longer held."""
        self.unflushed += 1
        if self.unflushed >= FLUSH_EVERY:
            self.ctx.session.flush()
            self.unflushed = 0

    # -- driving --

    def execute(self, roots: list[Path], target: uuid.UUID | None) -> None:
        self.top_target = target
        for root in roots:
            self.process(root, None, top=True)
        self.retry_deferred()
        self.finish_memberships()
        self.finish_policies()
        self.finish_relationships()
        if self.missing:
            unique = list({(d.message, d.field): d for d in self.missing}.values())
            raise PackageValidationError(
                f"{len(unique)} group{'s' if len(unique) != 1 else ''} or "
                f"{'people' if len(unique) != 1 else 'person'} named in the package "
                "do not exist; restore the Site AIP first (it carries people and groups) "
                "or create them", unique)
        for path, receipt in self.skipped_children.items():
            if path not in self.done:
                self.receipt(receipt)
        objects.set_last_modified(self.ctx, self.times)

    def retry_deferred(self) -> None:
        while self.deferred:
            before = len(self.deferred)
            for key, pending in list(self.deferred.items()):
                del self.deferred[key]
                for listing in pending.listings or [None]:
                    self.process(pending.path, listing, top=False)
            if len(self.deferred) >= before:
                break
        for key, pending in list(self.deferred.items()):
            del self.deferred[key]
            self.process(pending.path, pending.listings[0] if pending.listings else None,
                         top=False, final=True)

    def process(self, path: Path, listing: uuid.UUID | None, *, top: bool,
                final: bool = False) -> None:
        key = path.resolve()
        if key in self.done:
            self.map_listed(self.get(self.done[key]) if listing else None, listing)
            return
        label = path.name
        with open_package(path, label, self.opts, self.schemas_dir) as pkg:
            mf = pkg.manifest
            try:
                obj = self.ingest_package(pkg, listing, top=top, final=final, key=key)
            except DavpackError as exc:
                if not getattr(exc, "_aip_context", False):
                    exc.details.insert(0, Detail(f"while ingesting {mf.label}", file=label))
                    exc._aip_context = True  # type: ignore[attr-defined]
                raise
            if obj is _MISSING:
                return
            assert obj is None or isinstance(obj, m.DSpaceObject)
            self.flush_now_and_then()
            self.done[key] = obj.id if obj is not None else None
            pending = self.deferred.pop(key, None)
            if obj is not None:
                for other in (pending.listings if pending else []):
                    self.map_listed(obj, other)
                self.map_listed(obj, listing)
            if obj is None or not self.request.recursive or isinstance(obj, m.Item):
                return
            children = list(mf.children)
            directory = path.parent
        for child in children:
            if not child.url:
                self.warn(f"{label}: child {child.type} {child.handle} has no URL reference; "
                          "not followed")
                continue
            target = child_path(directory, child.url, label)
            assert target is not None
            if not target.is_file():
                raise PackageValidationError(
                    f"{label}: child package {child.url} ({child.type or 'object'} "
                    f"{child.handle or ''}) is missing",
                    [Detail("child package not found", file=child.url, field="mptr",
                            found=str(target))])
            self.process(target, obj.id, top=False)

    def map_listed(self, obj: m.DSpaceObject | None, listing: uuid.UUID | None) -> None:
        """An item listed by a collection other than its owner is mapped into it."""
        if not isinstance(obj, m.Item) or obj.owning_collection_id in (None, listing) \
                or listing is None:
            return
        collection = self.get(listing)
        if isinstance(collection, m.Collection):
            objects.map_item(self.ctx, obj, collection)

    # -- one package --

    def ingest_package(self, pkg: OpenPackage, listing: uuid.UUID | None, *, top: bool,
                       final: bool, key: Path) -> Any:
        mf = pkg.manifest
        if mf.type is m.ObjectType.SITE:
            return self.ingest_site(pkg)
        target = self.top_target if top else None
        existing = self.find_existing(mf, target)
        if existing is not None:
            if self.replace:
                return self.replace_object(pkg, existing)
            if self.request.keep_existing:
                self.skip_existing(pkg, existing)
                return None
            raise ObjectExists(
                f"{mf.type.value} {existing.handle or existing.id} already exists (restore "
                "with -k to keep existing objects, or -f to replace them); nothing was "
                "restored",
                [Detail("object already exists", file=pkg.label, field="handle",
                        found=existing.handle or str(existing.id))])
        parent = self.resolve_parent(pkg, listing, top=top)
        if parent is _MISSING:
            return self.parent_missing(pkg, listing, final=final, key=key)
        assert isinstance(parent, m.DSpaceObject)
        return self.create_object(pkg, parent)

    def find_existing(self, mf: Manifest, target: uuid.UUID | None) -> m.DSpaceObject | None:
        if target is not None:
            found = self.get(target)
            if found is None:
                raise PackageError(f"the object {target} to replace does not exist",
                                   [Detail("unknown object", field="uuid", found=str(target))])
            self.check_type(mf, found)
            return found
        if self.request.mode is Mode.SUBMIT:
            return None
        self.note_absent(self.package_uuids(mf))
        by_id = None if mf.uuid in self.absent else self.get(mf.uuid)
        by_handle = None if self.opts.ignore_handle else self.by_handle(mf.handle,
                                                                        package=False)
        if by_id is not None and by_handle is not None and by_id.id != by_handle.id:
            raise PackageValidationError(
                f"{mf.label}: its UUID and its handle belong to two different objects",
                [Detail("identity clash", field="mets/@ID", found=str(mf.uuid)),
                 Detail("identity clash", field="mets/@OBJID", found=mf.handle)])
        found = by_id or by_handle
        if found is not None:
            self.check_type(mf, found)
        return found

    @staticmethod
    def check_type(mf: Manifest, found: m.DSpaceObject) -> None:
        if found.type is not mf.type:
            raise PackageValidationError(
                f"The object type of the METS manifest ({mf.type.value}) does not match up "
                f"with the object type ({found.type.value}) of the DSpaceObject to be "
                "replaced!", [Detail("type mismatch", field="mets/@TYPE",
                                     expected=found.type.value, found=mf.type.value)])

    def resolve_parent(self, pkg: OpenPackage, listing: uuid.UUID | None, *,
                       top: bool) -> Any:
        mf = pkg.manifest
        if top and self.request.parent is not None and self.opts.ignore_parent:
            parent = self.get(self.request.parent)
            if parent is None:
                raise ParentMissing(f"the parent {self.request.parent} does not exist",
                                    [Detail("unknown parent", field="parent",
                                            found=str(self.request.parent))])
            return parent
        ref = mf.parent_handle
        if ref and ref in self.handle_map:
            return self.get(self.handle_map[ref])
        if (not top and self.request.mode is Mode.SUBMIT and self.opts.ignore_parent
                and listing is not None):
            # submitted copies follow the new tree; restores follow the packages' parents
            return self.get(listing)
        if ref is None:
            raise PackageValidationError(
                "METS document is missing the required structMap[@LABEL='Parent'] element."
                if not mf.has_parent_map else
                "the Parent structMap of the METS document names no parent",
                [Detail("no parent in the package", file=pkg.label,
                        field="structMap[@LABEL='Parent']")])
        found = self.by_handle(ref)
        return found if found is not None else _MISSING

    def parent_missing(self, pkg: OpenPackage, listing: uuid.UUID | None, *, final: bool,
                       key: Path) -> Any:
        mf = pkg.manifest
        message = (f"Could not find a parent DSpaceObject referenced as "
                   f"'{mf.parent_handle}' in the METS Manifest for object {mf.label}")
        if self.request.recursive and not final:
            pending = self.deferred.setdefault(key, Pending(pkg.path))
            pending.listings.append(listing)
            return _MISSING
        if self.opts.skip_if_parent_missing:
            receipt = IngestedObject(mf.type, Outcome.SKIPPED, mf.handle, mf.uuid,
                                     package=pkg.label, reason=message)
            self.warn(message, receipt)
            self.receipt(receipt)
            return None
        raise ParentMissing(message + " (use -o skipIfParentMissing=true to skip it)",
                            [Detail("parent not found", file=pkg.label, field="Parent",
                                    found=mf.parent_handle)])

    def skip_existing(self, pkg: OpenPackage, existing: m.DSpaceObject) -> None:
        mf = pkg.manifest
        self.receipt(IngestedObject(mf.type, Outcome.SKIPPED, existing.handle, existing.id,
                                    package=pkg.label, reason="already exists (kept)"))
        if self.request.recursive:
            self.note_skipped_children(pkg.path, mf, existing.handle or str(existing.id))

    def note_skipped_children(self, path: Path, mf: Manifest, owner: str) -> None:
        for child in mf.children:
            if not child.url:
                continue
            target = child_path(path.parent, child.url, path.name, strict=False)
            if target is None or target in self.skipped_children or not target.is_file():
                continue
            kind = child.object_type or m.ObjectType.ITEM
            self.skipped_children[target] = IngestedObject(
                kind, Outcome.SKIPPED, child.handle, package=child.url,
                reason=f"its parent {owner} already exists (kept)")
            if kind is not m.ObjectType.ITEM:
                with open_package(target, target.name, self.opts, None) as sub:
                    self.note_skipped_children(target, sub.manifest, child.handle or owner)

    # -- sections --

    def ext(self, mf: Manifest) -> extension.ExtObject | None:
        if self.ext_read is not None and self.ext_read[0] is mf:
            return self.ext_read[1]
        found = None
        for section in mf.anywhere(MD_OBJECT):
            if section.xml is not None:
                found = extension.read_object(section.xml)
                break
        self.ext_read = (mf, found)
        return found

    def package_uuids(self, mf: Manifest) -> list[uuid.UUID | None]:
        """Every UUID a package may create: its object's, its files' and its bundles'."""
        wanted: list[uuid.UUID | None] = [mf.uuid]
        wanted += [f.uuid for g in mf.groups for f in g.files]
        ext = self.ext(mf)
        if ext is not None:
            wanted += [bundle.id for bundle in ext.bundles]
        return wanted

    def techmd(self, mf: Manifest, admids: list[str]) -> dim.TechMD:
        section = mf.section(admids, "sourceMD", MD_TECHMD)
        return dim.read_techmd(section.xml if section is not None else None)

    def descriptive(self, mf: Manifest, dmdids: list[str]) -> list[Value]:
        section = mf.choose_dmd(dmdids, self.opts.dmd)
        if section is None or section.xml is None:
            return []
        if section.is_type(MD_DIM):
            return dim.read_fields(section.xml)
        if section.is_type(MD_MODS):
            return read_mods(section.xml)
        self.warn(f"{mf.name}: descriptive metadata of type {section.mdtype} cannot be read "
                  "(DIM or MODS expected)")
        return []

    def package_policies(self, mf: Manifest, admids: list[str],
                         recorded: list[rights.PolicySpec] | None
                         ) -> list[rights.PolicySpec] | None:
        """davpack's exact policies when recorded, else DSpace's METSRights; None: none."""
        if recorded is not None:
            return recorded
        section = mf.section(admids, "rightsMD", MD_RIGHTS, "METSRights")
        if section is None or section.xml is None:
            return None
        parsed = rights.read_rights(section.xml)
        for warning in parsed.warnings:
            self.warn(f"{mf.name}: {warning}")
        return [rights.PolicySpec(**{**p.__dict__, "rptype": "TYPE_CUSTOM"})
                for p in parsed.policies]

    def apply_policies(self, obj: m.DSpaceObject, specs: list[rights.PolicySpec] | None,
                       package: str, *, defaults: bool = False) -> None:
        authz.clear_policies(self.ctx, obj)
        if specs is None:
            if defaults:
                self.default_policies(obj)
            return
        for spec in specs:
            if not self.add_policy(obj, spec):
                self.deferred_policies.append((obj.id, spec, package))

    def default_policies(self, obj: m.DSpaceObject) -> None:
        anonymous = authz.anonymous_group(self.ctx)
        if isinstance(obj, m.Collection):
            for action in (m.Action.READ, m.Action.DEFAULT_ITEM_READ,
                           m.Action.DEFAULT_BITSTREAM_READ):
                authz.add_policy(self.ctx, obj, action, group=anonymous)
        elif isinstance(obj, m.Community):
            authz.add_policy(self.ctx, obj, m.Action.READ, group=anonymous)

    def add_policy(self, obj: m.DSpaceObject, spec: rights.PolicySpec) -> bool:
        group = person = None
        if spec.group is not None:
            internal, _missing = roles.import_group_name(spec.group, self.handle_uuid)
            group = self.group_named(internal) if internal else None
            if group is None:
                return False
        else:
            person = self.person_with_email(spec.person or "")
            if person is None:
                return False
        authz.add_policy(self.ctx, obj, spec.action, group=group, eperson=person,
                         start_date=spec.start, end_date=spec.end, name=spec.name,
                         description=spec.description, rptype=spec.rptype)
        return True

    def add_values(self, obj: m.DSpaceObject, values: list[Value], package: str) -> None:
        if not values:
            return
        for schema in {v.schema for v in values} - self.schemas:
            if metadata.get_schema(self.ctx, schema) is not None:
                self.schemas.add(schema)  # an ingest never creates schemas
        unknown = sorted({v.schema for v in values} - self.schemas)
        if unknown:
            raise UnknownMetadataField(
                "Unknown Metadata Schema encountered (" + ", ".join(unknown) + "): create "
                "the schema first; fields are created automatically, schemas never are",
                [Detail("unknown metadata schema", file=package, field=s) for s in unknown])
        metadata.add_values(self.ctx, obj, values, create=self.opts.create_fields)

    # -- roles --

    def apply_roles(self, mf: Manifest, admids: list[str]) -> None:
        section = mf.section(admids, "techMD", MD_ROLES)
        if section is None or section.xml is None:
            return
        document = roles.read_roles(section.xml)
        ctx = self.ctx
        self.subjects.clear()
        self.absent = set()
        conflicts: list[Detail] = []
        keep = self.request.keep_existing
        for spec in document.people:
            wanted = _uuid(spec.id)
            person = people.by_email(ctx, spec.email)
            password = (pw.compose(spec.password_algorithm, spec.password_salt,
                                   spec.password_digest) if spec.password_digest else None)
            if person is not None:
                if keep:
                    continue
                if not self.replace:
                    conflicts.append(Detail(f"EPerson {spec.email} already exists",
                                            field="Person", found=spec.email))
                    continue
                people.update_person(ctx, person, first_name=spec.first_name,
                                     last_name=spec.last_name, netid=spec.netid,
                                     language=spec.language, can_log_in=spec.can_log_in,
                                     require_certificate=spec.require_certificate,
                                     self_registered=spec.self_registered,
                                     password_hash=password)
                if wanted is not None and wanted != person.id and self.get(wanted) is None:
                    objects.rekey(ctx, person, wanted)
                continue
            people.create_person(ctx, spec.email, password_hash=password,
                                 first_name=spec.first_name, last_name=spec.last_name,
                                 netid=spec.netid, language=spec.language,
                                 can_log_in=spec.can_log_in,
                                 require_certificate=spec.require_certificate,
                                 self_registered=spec.self_registered,
                                 object_id=self.free_uuid(wanted))
        touched: list[tuple[roles.GroupSpec, m.Group]] = []
        for spec_g in document.groups:
            internal, missing_handle = roles.import_group_name(spec_g.name, self.handle_uuid)
            if internal is None:
                # A container group listed by the site AIP before its container exists:
                # the container's own AIP carries (and creates) it.
                log.info("%s: group %s belongs to %s, not in the repository (yet); its own "
                         "AIP creates it", mf.name, spec_g.name, missing_handle)
                continue
            wanted = _uuid(spec_g.id)
            group = authz.group_by_name(ctx, internal)
            if group is not None:
                if keep:
                    continue
                if not self.replace:
                    conflicts.append(Detail(f"Group {spec_g.name} already exists",
                                            field="Group", found=spec_g.name))
                    continue
                keep_people: frozenset[uuid.UUID] = frozenset()
                if group.name == m.ADMINISTRATOR and ctx.actor is not None:
                    keep_people = frozenset({ctx.actor.id})
                people.clear_members(ctx, group, keep=keep_people)
                if wanted is not None and wanted != group.id and self.get(wanted) is None:
                    rekeyed = objects.rekey(ctx, group, wanted)
                    assert isinstance(rekeyed, m.Group)
                    group = rekeyed
            else:
                group = people.create_group(ctx, internal, object_id=self.free_uuid(wanted))
            touched.append((spec_g, group))
        if conflicts:
            raise ObjectExists(
                f"{mf.label}: {len(conflicts)} of its people and groups already exist "
                f"({', '.join(str(d.found) for d in conflicts[:5])}"
                f"{', ...' if len(conflicts) > 5 else ''}); restore with -k to keep them or "
                "-f to replace them", conflicts)
        for spec_g, group in touched:
            group = self.ctx.session.get(m.Group, group.id) or group
            for _member_id, email in spec_g.members:
                person = people.by_email(ctx, email)
                if person is None:
                    self.missing.append(Detail(
                        f"person {email} (a member of group {spec_g.name}) does not exist",
                        file=mf.name, field=email))
                    continue
                people.add_member(ctx, group, person)
            for _member_id, name in spec_g.member_groups:
                if not self.add_group_member(group.id, name):
                    self.deferred_members.append((group.id, name, mf.name))
        self.subjects.clear()

    def add_group_member_by_name(self, exported_parent: str, member: m.Group) -> bool:
        """Put ``member`` into the group exported as ``exported_parent`` (False: missing)."""
        internal, _missing = roles.import_group_name(exported_parent, self.handle_uuid)
        parent = authz.group_by_name(self.ctx, internal) if internal else None
        if parent is None:
            return False
        if member not in parent.subgroups:
            people.add_member(self.ctx, parent, member)
        return True

    def add_group_member(self, group_id: uuid.UUID, exported: str) -> bool:
        internal, _missing = roles.import_group_name(exported, self.handle_uuid)
        member = authz.group_by_name(self.ctx, internal) if internal else None
        group = self.ctx.session.get(m.Group, group_id)
        if member is None or group is None:
            return False
        people.add_member(self.ctx, group, member)
        return True

    # -- site --

    def ingest_site(self, pkg: OpenPackage) -> m.DSpaceObject:
        mf = pkg.manifest
        if self.request.mode is Mode.SUBMIT:
            raise UnsupportedOperation(
                "a Site AIP cannot be submitted: restore it (-r -k keeps what exists, -r -f "
                "replaces it)", [Detail("site AIP in submit mode", file=pkg.label,
                                        field="mode")])
        site: m.DSpaceObject = objects.site(self.ctx)
        ext = self.ext(mf)
        if self.replace and mf.uuid is not None and site.id != mf.uuid \
                and self.get(mf.uuid) is None:
            site = objects.rekey(self.ctx, site, mf.uuid)
        if mf.handle:
            self.handle_map[mf.handle] = site.id
        self.apply_roles(mf, mf.top_admids)
        outcome = Outcome.SKIPPED if self.request.keep_existing else Outcome.REPLACED
        if not self.request.keep_existing:
            values = self.descriptive(mf, mf.top_dmdids)
            if values:
                metadata.clear(self.ctx, site)
                self.add_values(site, values, pkg.label)
            if ext is not None and ext.policies is not None:
                self.apply_policies(site, ext.policies, pkg.label)
            self.note_time(site, ext.last_modified if ext else None)
        receipt = IngestedObject(m.ObjectType.SITE, outcome, site.handle, site.id,
                                 package=pkg.label,
                                 reason="site kept; people, groups and children restored"
                                 if outcome is Outcome.SKIPPED else None)
        self.receipt(receipt)
        return site

    # -- containers and items --

    def record(self, mf: Manifest, obj: m.DSpaceObject) -> None:
        if mf.handle:
            self.handle_map[mf.handle] = obj.id
        if mf.uuid is not None:
            self.uuid_map[mf.uuid] = obj.id

    def create_object(self, pkg: OpenPackage, parent: m.DSpaceObject) -> m.DSpaceObject:
        mf = pkg.manifest
        expected = {m.ObjectType.COMMUNITY: (m.Site, m.Community),
                    m.ObjectType.COLLECTION: (m.Community,),
                    m.ObjectType.ITEM: (m.Collection,)}[mf.type]
        if not isinstance(parent, expected):
            raise UnsupportedOperation(
                f"a {mf.type.value.lower()} cannot go into a {parent.type.value.lower()}",
                [Detail("wrong parent type", file=pkg.label, field="parent",
                        found=parent.type.value,
                        expected=", ".join(c.__name__.upper() for c in expected))])
        handle = None if self.opts.ignore_handle else mf.handle
        ext = self.ext(mf)
        object_id = self.free_uuid(mf.uuid)
        values = self.descriptive(mf, mf.top_dmdids)
        title = next((v.value for v in values if v.field == "dc.title"), "")
        obj: m.DSpaceObject
        if isinstance(parent, (m.Site, m.Community)) and mf.type is m.ObjectType.COMMUNITY:
            obj = objects.create_community(
                self.ctx, parent if isinstance(parent, m.Community) else None, title,
                handle=handle, object_id=object_id, default_policies=False)
        elif isinstance(parent, m.Community):
            obj = objects.create_collection(self.ctx, parent, title, handle=handle,
                                            object_id=object_id, default_policies=False)
        else:
            assert isinstance(parent, m.Collection)
            obj = self.create_item(pkg, parent, ext, values, handle, object_id)
        self.record(mf, obj)
        if not isinstance(obj, m.Item):
            self.fill_container(pkg, obj, ext, values, new=True)
        outcome = Outcome.CREATED
        receipt = IngestedObject(mf.type, outcome, obj.handle, obj.id, package=pkg.label)
        self.receipt(receipt)
        return obj

    def replace_object(self, pkg: OpenPackage, existing: m.DSpaceObject) -> m.DSpaceObject:
        mf = pkg.manifest
        ext = self.ext(mf)
        values = self.descriptive(mf, mf.top_dmdids)
        if mf.handle and existing.handle != mf.handle and not self.opts.ignore_handle:
            handles.assign(self.ctx, existing, mf.handle)
        if mf.uuid is not None and existing.id != mf.uuid:
            self.warn(f"{mf.label} replaces {existing.id}, which keeps its own UUID "
                      f"(the package's is {mf.uuid})")
        self.record(mf, existing)
        if isinstance(existing, m.Item):
            for bundle in list(existing.bundles):
                objects.remove_bundle(self.ctx, bundle)
            metadata.clear(self.ctx, existing)
            self.fill_item(pkg, existing, ext, values)
        else:
            assert isinstance(existing, (m.Community, m.Collection))
            metadata.clear(self.ctx, existing)
            objects.set_logo(self.ctx, existing, None)
            if isinstance(existing, m.Collection):
                objects.delete_template_item(self.ctx, existing)
            self.fill_container(pkg, existing, ext, values, new=False)
        self.receipt(IngestedObject(mf.type, Outcome.REPLACED, existing.handle, existing.id,
                                    package=pkg.label))
        return existing

    def fill_container(self, pkg: OpenPackage, obj: m.Community | m.Collection,
                       ext: extension.ExtObject | None, values: list[Value], *,
                       new: bool) -> None:
        mf = pkg.manifest
        self.apply_roles(mf, mf.top_admids)
        for group, container in (ext.member_of if ext else []):
            internal, _ = roles.import_group_name(group, self.handle_uuid)
            member = authz.group_by_name(self.ctx, internal) if internal else None
            if member is not None and not self.add_group_member_by_name(container, member):
                self.deferred_member_of.append((member.id, container, pkg.label))
        policies = self.package_policies(mf, mf.top_admids, ext.policies if ext else None)
        self.apply_policies(obj, policies, pkg.label,
                            defaults=not self.restore and new)
        metadata.clear(self.ctx, obj)
        self.add_values(obj, [v for v in values if v.value.strip()], pkg.label)
        self.restore_logo(pkg, obj, ext)
        if isinstance(obj, m.Collection):
            if ext is not None and ext.workflow_enabled is not None:
                objects.set_workflow_enabled(self.ctx, obj, ext.workflow_enabled)
            if mf.template_dmdids is not None:
                template_ext = ext.template if ext else None
                template = objects.create_template_item(
                    self.ctx, obj, object_id=self.free_uuid(
                        template_ext.id if template_ext else None))
                self.add_values(template, self.descriptive(mf, mf.template_dmdids),
                                pkg.label)
                if template_ext is not None:
                    self.apply_policies(template, template_ext.policies, pkg.label)
                    self.note_time(template, template_ext.last_modified)
        self.note_time(obj, ext.last_modified if ext else None)

    def restore_logo(self, pkg: OpenPackage, obj: m.Community | m.Collection,
                     ext: extension.ExtObject | None) -> None:
        logos = [f for g in pkg.manifest.groups if g.use == "LOGO" for f in g.files]
        if not logos:
            return
        f = logos[0]
        facts = ext.logo if ext is not None and ext.logo is not None else extension.ExtBitstream()
        content = self.content(pkg, f, premis.PremisFacts())
        if content is None:
            return
        logo = objects.set_logo(
            self.ctx, obj, content, name=facts.name or "logo",
            mime_type=facts.mime_type or f.mimetype or "application/octet-stream",
            object_id=self.free_uuid(facts.id), source=facts.source,
            description=facts.description, format_name=facts.format_name,
            format_support=facts.format_support or "UNKNOWN",
            format_internal=bool(facts.format_internal), user_format=facts.user_format)
        if logo is not None:
            self.add_values(logo, facts.metadata, pkg.label)
            self.apply_policies(logo, facts.policies, pkg.label)
            self.note_time(logo, facts.last_modified)

    def create_item(self, pkg: OpenPackage, collection: m.Collection,
                    ext: extension.ExtObject | None, values: list[Value], handle: str | None,
                    object_id: uuid.UUID | None) -> m.Item:
        mf = pkg.manifest
        techmd = self.techmd(mf, mf.top_admids)
        submitter = self.submitter(pkg, techmd)
        item = objects.create_item(self.ctx, collection, submitter=submitter,
                                   object_id=object_id)
        if self.request.mode is Mode.SUBMIT:
            if not any(v.field == "dc.title" and v.value.strip() for v in values):
                raise PackageValidationError(
                    'Item cannot be created without the required "title" DC metadata.',
                    [Detail("no dc.title", file=pkg.label, field="dc.title")])
            # installing (re)creates these; the package's copies would be a second accession
            # date and the original's handle URI
            values = [v for v in values if v.field not in INSTALL_FIELDS]
            self.fill_item(pkg, item, ext, values, techmd=techmd)
            self.add_deposit_licence(item, collection)
            objects.submit(self.ctx, item, skip_workflow=self.request.skip_workflow,
                           handle=handle)
            return item
        self.fill_item(pkg, item, ext, values, techmd=techmd, install_handle=handle,
                       install=True)
        return item

    def submitter(self, pkg: OpenPackage, techmd: dim.TechMD) -> m.EPerson | None:
        email = techmd.first("dc.creator")
        if not email:
            return None
        person = self.person_with_email(email)
        if person is None:
            self.warn(f"{pkg.label}: submitter {email} does not exist; the item is restored "
                      "without that submitter")
        return person

    def fill_item(self, pkg: OpenPackage, item: m.Item, ext: extension.ExtObject | None,
                  values: list[Value], *, techmd: dim.TechMD | None = None,
                  install_handle: str | None = None, install: bool = False) -> None:
        mf = pkg.manifest
        techmd = techmd or self.techmd(mf, mf.top_admids)
        if self.replace and not install:
            submitter = self.submitter(pkg, techmd)
            if submitter is not None:
                item.submitter = submitter
        self.add_values(item, values, pkg.label)
        self.restore_files(pkg, item, ext)
        if self.restore:
            self.restore_licence(pkg, item)
        policies = self.package_policies(mf, mf.top_admids, ext.policies if ext else None)
        self.apply_policies(item, policies, pkg.label)
        if install:
            objects.install(self.ctx, item, handle=install_handle, restore=True)
        if self.restore:
            withdrawn = ext.withdrawn if ext and ext.withdrawn is not None \
                else techmd.withdrawn
            in_archive = ext.in_archive if ext and ext.in_archive is not None \
                else not withdrawn
            discoverable = ext.discoverable if ext and ext.discoverable is not None else True
            objects.set_item_state(self.ctx, item, in_archive=in_archive, withdrawn=withdrawn,
                                   discoverable=discoverable)
        for ref in techmd.all("dc.relation.isReferencedBy"):
            handle = dim.strip_hdl(ref)
            collection = self.by_handle(handle, package=True) if handle else None
            if handle and handle not in self.handle_map and not self.restore:
                collection = None
            if isinstance(collection, m.Collection):
                objects.map_item(self.ctx, item, collection)
        for section in mf.anywhere(MD_RELATIONSHIPS):
            if section.xml is not None:
                for spec in extension.read_relationships(section.xml):
                    self.relationships.append((spec, pkg.label))
        self.note_time(item, ext.last_modified if ext else None)

    def restore_files(self, pkg: OpenPackage, item: m.Item,
                      ext: extension.ExtObject | None) -> None:
        mf = pkg.manifest
        used_seq: set[int] = set()
        groups = [g for g in mf.groups if g.use != "LOGO"]
        for group in groups:
            bundle_ext = ext.bundle(group.use) if ext is not None else None
            bundle = objects.create_bundle(
                self.ctx, item, group.use,
                object_id=self.free_uuid(bundle_ext.id if bundle_ext else None),
                position=bundle_ext.position if bundle_ext and self.restore else None)
            primary = bundle_ext.primary if bundle_ext is not None else None
            if primary is None and group.use == "ORIGINAL" and mf.top_fptr:
                top = mf.file(mf.top_fptr)
                primary = top.uuid if top is not None else None
                primary_file = mf.top_fptr
            else:
                primary_file = None
            for f in group.files:
                facts = bundle_ext.bitstreams.get(f.uuid) if bundle_ext and f.uuid else None
                self.restore_file(pkg, bundle, f, facts, used_seq,
                                  primary=(f.uuid is not None and f.uuid == primary)
                                  or f.id == primary_file)
            if bundle_ext is not None:
                self.add_values(bundle, bundle_ext.metadata, pkg.label)
            policies = self.package_policies(mf, group.admids,
                                             bundle_ext.policies if bundle_ext else None)
            self.apply_policies(bundle, policies, pkg.label)
            self.note_time(bundle, bundle_ext.last_modified if bundle_ext else None)

    def restore_file(self, pkg: OpenPackage, bundle: m.Bundle, f: MetsFile,
                     facts: extension.ExtBitstream | None, used_seq: set[int], *,
                     primary: bool) -> None:
        mf = pkg.manifest
        if facts is not None and facts.placeholder:
            self.warn(f"{pkg.label}: {f.href} is a placeholder for a bitstream the exporter "
                      "could not read; it is not restored")
            return
        premis_section = mf.section(f.admids, "techMD", MD_PREMIS)
        premis_facts = premis.read_premis(premis_section.xml if premis_section else None)
        techmd = self.techmd(mf, f.admids)
        content = self.content(pkg, f, premis_facts)
        if content is None:
            return
        seq = f.seq
        if seq is not None and seq in used_seq:
            self.warn(f"{pkg.label}: sequence id {seq} of {f.href} is used twice; a new one "
                      "is assigned")
            seq = None
        if seq is not None:
            used_seq.add(seq)
        name = premis_facts.original_name or techmd.first("dc.title") or f.href
        mime = (f.mimetype or premis_facts.format_name or techmd.first("dc.format.mimetype")
                or "application/octet-stream")
        support = (techmd.first("dc.format.supportlevel") or "UNKNOWN").upper()
        bitstream = objects.add_bitstream(
            self.ctx, bundle, content, name=name, mime_type=mime,
            source=techmd.first("dc.title.alternative"),
            description=techmd.first("dc.description"), sequence_id=seq,
            format_name=techmd.first("dc.format.medium"),
            format_support=support if support in ("UNKNOWN", "KNOWN", "SUPPORTED")
            else "UNKNOWN",
            format_internal=(techmd.first("dc.format.internal") or "").lower() == "true",
            user_format=techmd.first("dc.format"), object_id=self.free_uuid(f.uuid),
            primary=primary,
            position=facts.position if facts is not None and self.restore else None)
        if facts is not None:
            self.add_values(bitstream, facts.metadata, pkg.label)
        policies = self.package_policies(mf, f.admids, facts.policies if facts else None)
        self.apply_policies(bitstream, policies, pkg.label)
        self.note_time(bitstream, facts.last_modified if facts else None)

    def content(self, pkg: OpenPackage, f: MetsFile, premis_facts: premis.PremisFacts
                ) -> m.StoredContent | None:
        """The file's bytes in the store, checked against every size and MD5 the manifest
        states (fileSec and PREMIS); None for a zero-length placeholder."""
        expected_md5 = f.checksum if (f.checksum_type or "MD5").upper() == "MD5" else None
        premis_md5 = premis_facts.digest if (premis_facts.algorithm or "").upper() == "MD5" \
            else None
        if premis_facts.size_text is not None and premis_facts.size is None:
            raise PackageValidationError(
                f"{pkg.label}: PREMIS size of {f.href} is not a number",
                [Detail("bad PREMIS size", file=f.href, field="premis:size",
                        found=premis_facts.size_text)])
        if pkg.archive is None:
            return self.local_content(pkg, f, expected_md5 or premis_md5)
        stream = pkg.member(f.href)
        try:
            staged = self.ctx.stage(cast(BinaryIO, stream), name=f.href)
        except DavpackError as exc:
            raise PackageValidationError(
                f"{pkg.label}: {f.href} cannot be read from the package: {exc.message}",
                [Detail(exc.message, file=f.href), *exc.details]) from exc
        finally:
            stream.close()
        digests = staged.digests
        if digests.size == 0 and expected_md5 is None and premis_md5 is None:
            staged.discard()
            self.warn(f"{pkg.label}: {f.href} is empty and has no checksum (an unreadable "
                      "bitstream's placeholder); it is not restored")
            return None
        problems: list[Detail] = []
        for where, size in (("file/@SIZE", f.size), ("premis:size", premis_facts.size)):
            if size is not None and size != digests.size:
                problems.append(Detail("size does not match the manifest", file=f.href,
                                       field=where, expected=str(size),
                                       found=str(digests.size)))
        for where, md5 in (("file/@CHECKSUM", expected_md5),
                           ("premis:messageDigest", premis_md5)):
            if md5 and md5.strip().lower() != digests.md5:
                problems.append(Detail("MD5 checksum does not match the manifest",
                                       file=f.href, field=where, expected=md5.strip().lower(),
                                       found=digests.md5))
        if problems:
            staged.discard()
            raise PackageValidationError(
                f"{pkg.label}: {f.href} does not match its manifest (size or checksum)",
                problems)
        return self.ctx.keep(staged)

    def local_content(self, pkg: OpenPackage, f: MetsFile, md5: str | None
                      ) -> m.StoredContent:
        """manifestOnly: the file must already be in this repository (by its UUID)."""
        target = None
        parts = f.href.rstrip("/").split("/")
        for part in parts:
            found = _uuid(part)
            if found is not None:
                target = self.ctx.session.get(m.Bitstream, found)
        if target is None or (md5 and md5.lower() != target.md5):
            raise PackageValidationError(
                f"{pkg.label}: {f.href} is not a bitstream of this repository; a "
                "manifest-only package can only refer to content the repository has (davpack "
                "never downloads content)",
                [Detail("content not available locally", file=f.href)])
        content = self.ctx.session.get(m.StoredContent, target.sha256)
        assert content is not None
        return content

    def restore_licence(self, pkg: OpenPackage, item: m.Item) -> None:
        """A deposit licence carried only as a rightsMD stream (its LICENSE bundle was
        filtered out at export) becomes the LICENSE bundle again."""
        if objects.get_bundle(item, "LICENSE") is not None:
            return
        mf = pkg.manifest
        section = mf.section(mf.top_admids, "rightsMD", MD_DEPOSIT_LICENSE)
        if section is None:
            return
        staged: StagedContent | None = None
        if section.href and pkg.archive is not None and pkg.archive.has(section.href):
            with pkg.archive.open(section.href) as stream:
                staged = self.ctx.stage(cast(BinaryIO, stream), name=section.href)
        elif section.bindata:
            data = base64.b64decode("".join(section.bindata.split()))
            staged = self.ctx.stage(io.BytesIO(data), name="license.txt")
        if staged is None:
            return
        content = self.ctx.keep(staged)
        bundle = objects.bundle_named(self.ctx, item, "LICENSE")
        objects.add_bitstream(self.ctx, bundle, content, name="license.txt",
                              mime_type=LICENSE_MIME, source="license.txt",
                              format_name="License", format_support="KNOWN",
                              format_internal=True)

    def add_deposit_licence(self, item: m.Item, collection: m.Collection) -> None:
        text = (self.request.license or metadata.first(collection, "dc.rights.license")
                or DEFAULT_LICENSE)
        content = self.ctx.add_content(io.BytesIO(text.encode("utf-8")), name="license.txt")
        bundle = objects.bundle_named(self.ctx, item, "LICENSE")
        objects.add_bitstream(self.ctx, bundle, content, name="license.txt",
                              mime_type=LICENSE_MIME, source="license.txt",
                              format_name="License", format_support="KNOWN",
                              format_internal=True)

    # -- the end of the run --

    def finish_memberships(self) -> None:
        """Group-in-group links that named groups restored later in the run.

        A member group of a container that is not in the repository at all is not an
        error: that container's AIP re-creates the link (its ``memberOf`` list) when it is
        restored.  Any other missing group is.
        """
        for group_id, name, package in self.deferred_members:
            if self.add_group_member(group_id, name):
                continue
            group = self.ctx.session.get(m.Group, group_id)
            owner = group.name if group else str(group_id)
            internal, container = roles.import_group_name(name, self.handle_uuid)
            if internal is None:
                self.warn(f"{package}: group {name} (a member of {owner}) belongs to "
                          f"{container}, which is not in the repository; restoring that "
                          "object's AIP links it")
                continue
            self.missing.append(Detail(f"group {name} (a member of group {owner}) does not "
                                       "exist", file=package, field=name))
        for member_id, parent_name, package in self.deferred_member_of:
            member = self.ctx.session.get(m.Group, member_id)
            if member is None or self.add_group_member_by_name(parent_name, member):
                continue
            self.warn(f"{package}: group {member.name} was a member of {parent_name}, which "
                      "is not in the repository; restore the Site AIP (-r -k) to re-link it")

    def finish_policies(self) -> None:
        for object_id, spec, package in self.deferred_policies:
            obj = self.get(object_id)
            if obj is None:
                continue
            if not self.add_policy(obj, spec):
                self.missing.append(Detail(
                    f"{spec.subject}, named in a policy of {obj.type.value} "
                    f"{obj.handle or obj.id}, does not exist; please restore it using the "
                    "SITE AIP", file=package, field=spec.group or spec.person))

    def item_for(self, object_id: uuid.UUID | None, handle: str | None) -> m.Item | None:
        if object_id is not None and object_id in self.uuid_map:
            found = self.get(self.uuid_map[object_id])
        else:
            found = self.get(object_id) or self.by_handle(handle)
        return found if isinstance(found, m.Item) else None

    def finish_relationships(self) -> None:
        seen: set[tuple[Any, ...]] = set()
        for spec, package in self.relationships:
            left = self.item_for(spec.left_id, spec.left_handle)
            right = self.item_for(spec.right_id, spec.right_handle)
            if left is None or right is None:
                self.warn(f"{package}: relationship {spec.left_type} between "
                          f"{spec.left_handle or spec.left_id} and "
                          f"{spec.right_handle or spec.right_id} waits for the other item, "
                          "which is not in the repository; restoring it creates the link")
                continue
            key = (left.id, right.id, spec.left_type, spec.right_type)
            if key in seen:
                continue
            seen.add(key)
            exists = self.ctx.session.scalars(select(m.Relationship).where(
                m.Relationship.left_item_id == left.id,
                m.Relationship.right_item_id == right.id,
                m.Relationship.left_type == spec.left_type,
                m.Relationship.right_type == spec.right_type)).first()
            if exists is not None:
                continue
            objects.add_relationship(self.ctx, left, right, spec.left_type, spec.right_type,
                                     left_place=spec.left_place, right_place=spec.right_place,
                                     left_label=spec.left_label, right_label=spec.right_label)


def _uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


__all__ = ["IngestRun", "run_ingest", "scratch_root"]
