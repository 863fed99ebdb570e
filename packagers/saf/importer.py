"""Importing a SAF batch item by item: validate all, then one transaction per item.

The run has three passes:

1. **Validation** (read-only): every folder is parsed and checked against the database
   (metadata registry, collections and the right to add to them, groups named by
   ``permissions:``, handles already taken, relationship targets).  Every problem of every
   item is collected; if there is any, the batch is refused with one error listing them
   all and nothing is written.  ``validate=true`` stops here (a dry run).
2. **Items**, in groups (:data:`GROUP_ITEMS` items, or fewer when their files reach
   :data:`GROUP_BYTES`): each folder is read again and its files are staged (hashed,
   fsynced) *before* the group's transaction starts, so the database is locked only for
   the rows, which :func:`objects.create_items` writes in bulk.  After the commit the
   group's mapfile lines are appended and fsynced (see :mod:`packagers.saf.mapfile`) and
   the caller is told of each item (``Operation.report``).  When a group fails it is
   rolled back and imported again item by item, each in its own transaction, so the
   failure stops the batch at the item at fault: the items before it stay, are listed in
   the mapfile, and ``resume`` continues after them.
3. **Relationships**, once every item exists (``folderName:`` targets need them): one
   unit of work per item that has any.  A relationship that already links the same two
   items with the same type is not made twice, so a resumed run may redo this pass.

Memory does not grow with the batch: a group's plans are dropped once it committed; only
folder -> handle references (for relationships) and the receipt are kept.
"""

from __future__ import annotations

import io
import mimetypes
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from sqlalchemy import select

from packagers.base import IngestedObject, IngestResult, Mode, Operation, Outcome
from packagers.errors import ObjectExists, PackageError, PackageValidationError
from packagers.saf.mapfile import Mapfile
from packagers.saf.reader import (
    DEFAULT_BUNDLES,
    Findings,
    ItemFolder,
    ItemPlan,
    RelationSpec,
    SafSource,
    read_item,
    read_relations_only,
    target_kind,
)
from server import models as m
from server.context import Context
from server.errors import (
    DavpackError,
    Detail,
    InvalidInput,
    NotFound,
    UnknownMetadataField,
    UnsafeInput,
)
from server.services import authz, handles, metadata, objects
from server.store import StagedContent

# Fields that a replace keeps from the existing item when the package does not carry them:
# the repository made them, and a package exported with ``migrate`` leaves them out.
PRESERVED_ON_REPLACE = ("dc.date.accessioned", "dc.date.available", "dc.identifier.uri",
                        "dc.description.provenance")
MAX_REPORTED = 10_000
# A group of items is one transaction: large enough that commits, journal writes and bulk
# inserts are paid per group, small enough that the database is locked briefly and staged
# files (waiting for the commit) stay few.
GROUP_ITEMS = 100
GROUP_BYTES = 64 * 1024 * 1024

_MIME = mimetypes.MimeTypes()  # Python's built-in table only: the same result everywhere


def guess_mime_type(name: str) -> str:
    guessed, _encoding = _MIME.guess_type(name.rsplit("/", 1)[-1], strict=False)
    return guessed or "application/octet-stream"


@dataclass
class ImportSettings:
    """What a batch import is asked to do (from packager options or CLI flags)."""

    parent: uuid.UUID | None = None  # owning collection for every item
    collections: list[str] = field(default_factory=list)  # further (or, without parent, all)
    mode: Mode = Mode.SUBMIT
    keep_existing: bool = False
    workflow: bool = False
    template: bool = False
    validate_only: bool = False
    mapfile: Path | None = None
    resume: bool = False
    ignore_handles: bool = False
    create_fields: bool = False
    license: str | None = None


def problem_error(message: str, found: Findings) -> DavpackError:
    details = found.details
    if len(details) > MAX_REPORTED:
        extra = len(details) - MAX_REPORTED
        details = [*details[:MAX_REPORTED], Detail(f"... and {extra} more problems")]
    count = len(found.details)
    text = f"{message}: {count} problem{'s' if count != 1 else ''}"
    if found.unsafe:
        return UnsafeInput(text, details)
    return PackageValidationError(text, details)


def _annotate(exc: DavpackError, folder: str, note: str) -> DavpackError:
    """Name the item folder in an error raised while importing it (class unchanged)."""
    exc.message = f"{folder}: {exc.message}"
    exc.details.insert(0, Detail(note, file=folder))
    return exc


class Checker:
    """Database-side checks of the validation pass, cached across the batch."""

    def __init__(self, ctx: Context, settings: ImportSettings, *,
                 check_collections: bool = True) -> None:
        self.ctx = ctx
        self.settings = settings
        self.fields: dict[str, bool] = {}
        self.collections: dict[str, m.Collection | str] = {}
        self.groups: dict[str, bool] = {}
        self.honor_handles = not settings.ignore_handles and authz.is_admin(ctx)
        self.batch_handles: dict[str, str] = {}
        self.check_collections = check_collections
        self.explicit: list[m.Collection] = []
        self.explicit_problems: list[Detail] = []
        idents = list(settings.collections)
        if settings.parent is not None:
            idents.insert(0, str(settings.parent))
        for ident in idents if check_collections else []:
            coll = self.collection(ident)
            if isinstance(coll, str):
                self.explicit_problems.append(Detail(coll, field="collection", found=ident))
            else:
                self.explicit.append(coll)

    def collection(self, ident: str) -> m.Collection | str:
        """The collection, or why it cannot take items."""
        if ident not in self.collections:
            try:
                obj: m.DSpaceObject | None = objects.find(self.ctx, ident)
            except NotFound:
                obj = None
            if not isinstance(obj, m.Collection):
                result: m.Collection | str = ("no such collection" if obj is None else
                                              f"is a {obj.type.value}, not a collection")
            elif not authz.allowed(self.ctx, obj, m.Action.ADD):
                result = "you may not add items to this collection"
            else:
                result = obj
            self.collections[ident] = result
        return self.collections[ident]

    def check(self, item: ItemFolder, plan: ItemPlan, found: Findings) -> None:
        if not self.settings.create_fields:
            for value, (file, line) in zip(plan.values, plan.origins, strict=True):
                if value.field not in self.fields:
                    try:
                        metadata.get_field(self.ctx, value.field)
                        self.fields[value.field] = True
                    except UnknownMetadataField:
                        self.fields[value.field] = False
                if not self.fields[value.field]:
                    found.add("metadata field is not in the registry (register it, or use "
                              "the createMetadataFields option)", file=file, line=line,
                              field=value.field)
        if self.check_collections and not self.explicit and not self.explicit_problems:
            found.details.extend(plan.collection_problems)
            if not plan.collections and not plan.collection_problems:
                found.add("no collection for this item: give one (--collection) or a "
                          "collections file", file=item.label("collections"))
            for ident in plan.collections:
                coll = self.collection(ident)
                if isinstance(coll, str):
                    found.add(coll, file=item.label("collections"), found=ident)
        for spec in plan.bitstreams:
            if spec.permission is not None:
                name = spec.permission.group
                if name not in self.groups:
                    self.groups[name] = authz.group_by_name(self.ctx, name) is not None
                if not self.groups[name]:
                    found.add("no such group", file=item.label("contents"), line=spec.line,
                              field="permissions", found=name)
        if plan.handle is not None:
            if not self.honor_handles:
                return
            other = self.batch_handles.get(plan.handle)
            if other is not None:
                found.add(f"handle also claimed by folder {other}", file=item.label("handle"),
                          field="handle", found=plan.handle)
            self.batch_handles[plan.handle] = item.folder
            owner = handles.resolve(self.ctx, plan.handle)
            if owner is not None and not self.settings.keep_existing and not (
                    self.settings.mode is Mode.REPLACE and isinstance(owner, m.Item)):
                found.add(f"handle already belongs to {owner.type.value} {owner.id}",
                          file=item.label("handle"), field="handle", found=plan.handle)

    def check_relation(self, spec: RelationSpec, folders: set[str], found: Findings) -> None:
        kind, value = target_kind(spec.target)
        if kind == "folder":
            if value not in folders:
                found.add("folderName: names no item folder of this batch", file=spec.file,
                          line=spec.line, found=value)
        elif kind == "metadata":
            fname, _, text = value.partition(":")
            try:
                count = len(metadata_matches(self.ctx, fname, text, limit=2))
            except (UnknownMetadataField, InvalidInput):
                found.add("relationship target names an unknown metadata field",
                          file=spec.file, line=spec.line, field=fname)
                return
            if count > 1:
                found.add("relationship target matches more than one item", file=spec.file,
                          line=spec.line, found=spec.target)
        elif kind == "handle" and spec.target in self.batch_handles:
            return
        else:
            obj = _find_quietly(self.ctx, value)
            if not isinstance(obj, m.Item):
                found.add("relationship target is not an existing item", file=spec.file,
                          line=spec.line, found=spec.target)


def add_notes(item: ItemFolder, plan: ItemPlan, honor_handles: bool,
              ignore_handles: bool) -> None:
    """Warnings (not errors) about what a folder asks for."""
    if not any(v.field == "dc.title" for v in plan.values):
        plan.warnings.append(f"{item.folder}: no dc.title")
    if plan.handle is not None and not honor_handles:
        plan.warnings.append(f"{item.label('handle')}: ignored, a new handle is minted"
                             + ("" if ignore_handles else " (only administrators keep "
                                                         "handles)"))


def _find_quietly(ctx: Context, ident: str) -> m.DSpaceObject | None:
    try:
        return objects.find(ctx, ident)
    except NotFound:
        return None


def metadata_matches(ctx: Context, field_name: str, value: str, *,
                     limit: int | None = None) -> list[uuid.UUID]:
    """Items holding exactly ``value`` in ``field_name``."""
    fld = metadata.get_field(ctx, field_name)
    query = (select(m.MetadataValue.dso_id)
             .join(m.Item, m.Item.id == m.MetadataValue.dso_id)
             .where(m.MetadataValue.field_id == fld.id, m.MetadataValue.value == value)
             .distinct().order_by(m.MetadataValue.dso_id))
    if limit is not None:
        query = query.limit(limit)
    return list(ctx.session.scalars(query))


class BatchImporter:
    """One run over a :class:`SafSource`; see the module documentation."""

    def __init__(self, op: Operation, source: SafSource, settings: ImportSettings) -> None:
        self.op = op
        self.source = source
        self.settings = settings
        self.mapfile = Mapfile(settings.mapfile) if settings.mapfile else None
        self.result = IngestResult(warnings=list(source.layout_warnings))
        self.refs: dict[str, str] = {}  # folder -> handle or UUID of its item
        self.committed = 0
        self._honor_handles = False
        self._notes: dict[str, list[str]] = {}  # warnings per folder, for a dry run

    # -- the run ----------------------------------------------------------------------

    def run(self) -> IngestResult:
        folders = self.source.folders()
        done = self._start()
        todo = [f for f in folders if f not in done]
        found = self._validate(todo, folders)
        if found:
            raise problem_error(f"{self.source.label}: the batch is refused", found)
        if self.settings.validate_only:
            for folder in todo:
                self.result.objects.append(IngestedObject(
                    m.ObjectType.ITEM, Outcome.SKIPPED, package=folder,
                    reason="validated (dry run): nothing was written",
                    warnings=self._notes.get(folder, [])))
            return self.result
        if self.mapfile is not None and not self.mapfile.exists():
            self.mapfile.create()
        relations = self._import_all(todo)
        self._relate_all(folders, done, relations)
        if self.mapfile is not None:
            self.mapfile.finish()
        return self.result

    def _start(self) -> dict[str, str]:
        """Read (and settle) the mapfile; the folders it lists are done."""
        if self.mapfile is None:
            if self.settings.resume:
                raise PackageError("resume needs the mapfile of the interrupted run",
                                   [Detail("no mapfile given", field="mapfile")])
            return {}
        if self.settings.validate_only and not self.settings.resume:
            return {}
        if self.mapfile.exists() and not self.settings.resume:
            raise ObjectExists(f"mapfile {self.mapfile.path} already exists", [Detail(
                "an earlier run wrote this mapfile: continue it with resume (--resume/-R), "
                "or choose a new mapfile", file=str(self.mapfile.path))])
        if self.settings.resume and not self.mapfile.exists():
            raise PackageError(f"mapfile {self.mapfile.path} does not exist", [Detail(
                "resume continues the run that wrote this mapfile", file=str(
                    self.mapfile.path))])
        if not self.settings.validate_only:
            self.result.warnings.extend(self.mapfile.recover(self._ref_of_committed))
        done = self.mapfile.read()
        self.refs.update(done)
        return done

    def _ref_of_committed(self, item_id: uuid.UUID) -> str | None:
        with self.op.context(write=False) as ctx:
            item = ctx.session.get(m.Item, item_id)
            if item is None:
                return None
            return item.handle or str(item.id)

    # -- pass 1 -----------------------------------------------------------------------

    def _validate(self, todo: Sequence[str], folders: Sequence[str]) -> Findings:
        found = Findings()
        relations: list[RelationSpec] = []
        all_folders = set(folders)
        todo_set = set(todo)
        with self.op.context(write=False) as ctx:
            checker = Checker(ctx, self.settings)
            self._honor_handles = checker.honor_handles
            for detail in checker.explicit_problems:
                found.details.append(detail)
            for folder in todo:
                item = self.source.item(folder)
                try:
                    plan, item_found = read_item(item)
                    found.merge(item_found)
                    checker.check(item, plan, found)
                except DavpackError as exc:
                    found.absorb(exc)
                    continue
                if self.settings.validate_only:
                    add_notes(item, plan, checker.honor_handles, self.settings.ignore_handles)
                    self._notes[folder] = plan.warnings
                relations.extend(plan.relations)
                if len(found.details) > MAX_REPORTED:
                    break
            for folder in folders:
                if folder in todo_set:
                    continue
                specs, item_found = read_relations_only(self.source.item(folder))
                found.merge(item_found)
                relations.extend(specs)
            for spec in relations:
                checker.check_relation(spec, all_folders, found)
        return found

    # -- pass 2 -----------------------------------------------------------------------

    def _import_all(self, todo: Sequence[str]) -> list[tuple[str, list[RelationSpec]]]:
        """Import the folders a group at a time; the relationships still to make."""
        relations: list[tuple[str, list[RelationSpec]]] = []
        group: list[_Staged] = []
        size = 0
        try:
            for folder in todo:
                try:
                    ready = self._stage(folder)
                except (DavpackError, OSError) as exc:
                    relations += self._import_group(group)  # the items before it stay
                    group = []
                    raise self._stopped(folder, exc) from None
                group.append(ready)
                size += sum(piece.digests.size for piece in ready.staged)
                if len(group) >= GROUP_ITEMS or size >= GROUP_BYTES:
                    relations += self._import_group(group)
                    group, size = [], 0
            relations += self._import_group(group)
        finally:
            for ready in group:
                ready.discard()
        return relations

    def _stage(self, folder: str) -> _Staged:
        """Read a folder again and stage its files (no database lock held)."""
        item = self.source.item(folder)
        plan, found = read_item(item)
        if found:
            raise problem_error(f"{folder} changed since it was validated", found)
        add_notes(item, plan, self._honor_handles, self.settings.ignore_handles)
        return _Staged(folder, plan, stage_files(self.op, item, plan))

    def _stopped(self, folder: str, exc: DavpackError | OSError) -> DavpackError:
        """The error that stops the batch at ``folder``, saying what was kept."""
        if self.mapfile is not None:
            self.mapfile.abort()
        note = (f"the batch stopped at this item; the {self.committed} item(s) before it "
                "were committed" + (" and are in the mapfile: fix the problem and continue "
                                   "with resume (--resume/-R)" if self.mapfile else ""))
        if isinstance(exc, DavpackError):
            return _annotate(exc, folder, note)
        return PackageError(f"{folder}: cannot read the item: {exc}",
                            [Detail(note, file=folder),
                             Detail(str(exc), file=getattr(exc, "filename", None))])

    def _import_group(self, group: list[_Staged]) -> list[tuple[str, list[RelationSpec]]]:
        """One transaction for the group; if it fails, one per item to find the culprit."""
        if not group:
            return []
        ids = [uuid.uuid4() for _ready in group]
        if self.mapfile is not None:
            self.mapfile.begin([(ready.folder, i) for ready, i in zip(group, ids, strict=True)])
        try:
            with self.op.context() as ctx:
                made = self._create(ctx, group, ids)
        except Exception as exc:
            if len(group) > 1:
                if self.mapfile is not None:
                    self.mapfile.abort()
                return self._one_by_one(group)
            if isinstance(exc, (DavpackError, OSError)):
                raise self._stopped(group[0].folder, exc) from None
            raise
        finally:
            for ready in group:
                ready.discard()
        self.committed += len(made)
        for ready, obj in zip(group, made, strict=True):
            self.refs[ready.folder] = obj.handle or str(obj.uuid)
        if self.mapfile is not None:
            self.mapfile.commit([(ready.folder, self.refs[ready.folder]) for ready in group])
        relations = []
        for ready, obj in zip(group, made, strict=True):
            obj.warnings.extend(ready.plan.warnings)
            self.result.objects.append(obj)
            self.op.report(obj)
            if ready.plan.relations:
                relations.append((ready.folder, ready.plan.relations))
        return relations

    def _one_by_one(self, group: list[_Staged]) -> list[tuple[str, list[RelationSpec]]]:
        """Import a failed group's items again, each in its own transaction (their staged
        files were consumed: each folder is staged again)."""
        relations = []
        for ready in group:
            ready.discard()
            try:
                fresh = self._stage(ready.folder)
            except (DavpackError, OSError) as exc:
                raise self._stopped(ready.folder, exc) from None
            relations += self._import_group([fresh])
        return relations

    def _create(self, ctx: Context, group: list[_Staged],
                ids: list[uuid.UUID]) -> list[IngestedObject]:
        """The group's items: existing handles are skipped or replaced as asked, every
        other item is created in bulk."""
        lookups = _GroupLookups(ctx, self.settings)
        out: list[IngestedObject | None] = []
        new: list[objects.NewItem] = []
        for ready, object_id in zip(group, ids, strict=True):
            plan = ready.plan
            handle = plan.handle if self._honor_handles else None
            existing = handles.resolve(ctx, handle) if handle is not None else None
            if existing is None:
                new.append(lookups.new_item(plan, ready.staged, object_id, handle))
                out.append(None)
            elif self.settings.keep_existing:
                out.append(IngestedObject(existing.type, Outcome.SKIPPED, handle=handle,
                                          uuid=existing.id, package=ready.folder,
                                          reason="an object with this handle exists"))
            elif self.settings.mode is Mode.REPLACE and isinstance(existing, m.Item):
                replace_item(ctx, existing, plan, ready.staged, self.settings)
                out.append(IngestedObject(m.ObjectType.ITEM, Outcome.REPLACED,
                                          handle=existing.handle, uuid=existing.id,
                                          package=ready.folder))
            else:
                raise ObjectExists(
                    f"handle {handle} already belongs to {existing.type.value} {existing.id}",
                    [Detail("handle in use", file=f"{ready.folder}/handle", field="handle",
                            found=handle)])
        made = iter(objects.create_items(ctx, new, skip_workflow=not self.settings.workflow,
                                         create_fields=self.settings.create_fields))
        results = []
        for ready, obj in zip(group, out, strict=True):
            if obj is None:
                created = next(made)
                if ready.plan.handle is not None and self._honor_handles \
                        and created.handle is None:
                    ready.plan.warnings.append(f"{ready.folder}: handle {ready.plan.handle} "
                                               "not assigned: the item went into workflow")
                obj = IngestedObject(m.ObjectType.ITEM, Outcome.CREATED,
                                     handle=created.handle, uuid=created.id,
                                     package=ready.folder)
            results.append(obj)
        return results

    # -- pass 3 -----------------------------------------------------------------------

    def _relate_all(self, folders: Sequence[str], done: dict[str, str],
                    relations: list[tuple[str, list[RelationSpec]]]) -> None:
        fresh = dict(relations)
        for folder in folders:
            if folder in fresh:
                specs = fresh[folder]
            elif folder in done:
                specs, found = read_relations_only(self.source.item(folder))
                if found:
                    raise problem_error(f"{folder}: relationships unreadable", found)
            else:
                continue
            if not specs or folder not in self.refs:
                continue
            try:
                with self.op.context() as ctx:
                    source_item = objects.find(ctx, self.refs[folder])
                    if not isinstance(source_item, m.Item):
                        raise NotFound(f"{self.refs[folder]} is not an item")
                    for spec in specs:
                        note = relate(ctx, source_item, spec, self.refs)
                        if note:
                            self.result.warnings.append(note)
            except DavpackError as exc:
                raise _annotate(exc, folder, "relationships of this item were not made; "
                                "every item of the batch is imported (resume redoes this "
                                "step)") from None


@dataclass
class _Staged:
    """A folder read and its files staged, waiting for its group's transaction."""

    folder: str
    plan: ItemPlan
    staged: list[StagedContent]

    def discard(self) -> None:
        for piece in self.staged:
            piece.discard()


class _GroupLookups:
    """What a group's items share, looked up once per transaction: collections, groups,
    templates, the deposit licence."""

    def __init__(self, ctx: Context, settings: ImportSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self._collections: dict[str, m.Collection] = {}
        self._groups: dict[str, m.Group] = {}
        self._templates: dict[uuid.UUID, list[metadata.Value]] = {}
        self._license: m.StoredContent | None = None

    def new_item(self, plan: ItemPlan, staged: list[StagedContent], object_id: uuid.UUID,
                 handle: str | None) -> objects.NewItem:
        collections = self.collections(plan)
        values = list(plan.values)
        if self.settings.template:
            values[:0] = self.template_values(collections[0])
        files = []
        for spec, piece in zip(plan.bitstreams, staged, strict=True):
            permission = spec.permission
            files.append(objects.NewFile(
                spec.bundle, self.ctx.keep(piece), spec.name,
                mime_type=guess_mime_type(spec.name), description=spec.description,
                primary=spec.primary, values=spec.extra,
                policies=None if permission is None else [
                    (permission.action, self.group(permission.group))]))
        if self.settings.license is not None and not any(
                spec.bundle == "LICENSE" for spec in plan.bitstreams):
            files.append(objects.NewFile(DEFAULT_BUNDLES["license.txt"], self.license(),
                                         "license.txt", mime_type="text/plain; charset=utf-8"))
        return objects.NewItem(collections[0], values, files, mapped=collections[1:],
                               object_id=object_id, handle=handle)

    def collections(self, plan: ItemPlan) -> list[m.Collection]:
        """The owning collection first, then those the item is mapped into."""
        settings = self.settings
        out: list[m.Collection] = []
        if settings.parent is not None:
            parent = self.ctx.session.get(m.Collection, settings.parent)
            if parent is None:
                raise NotFound("the target collection does not exist",
                               [Detail("no such collection", found=str(settings.parent))])
            out.append(parent)
            idents = list(settings.collections)
        else:
            idents = list(settings.collections) or plan.collections
        for ident in idents:
            if ident not in self._collections:
                obj = objects.find(self.ctx, ident)
                if not isinstance(obj, m.Collection):
                    raise InvalidInput(f"{ident} is not a collection",
                                       [Detail("not a collection", field="collection",
                                               found=ident)])
                self._collections[ident] = obj
            if self._collections[ident] not in out:
                out.append(self._collections[ident])
        if not out:
            raise InvalidInput("no collection for the item",
                               [Detail("no collection", file=f"{plan.folder}/collections")])
        return out

    def group(self, name: str) -> m.Group:
        if name not in self._groups:
            self._groups[name] = authz.require_group(self.ctx, name)
        return self._groups[name]

    def template_values(self, collection: m.Collection) -> list[metadata.Value]:
        if collection.id not in self._templates:
            self._templates[collection.id] = objects.template_values(collection)
        return self._templates[collection.id]

    def license(self) -> m.StoredContent:
        """The deposit licence the request carries, stored once per group."""
        if self._license is None:
            assert self.settings.license is not None
            self._license = self.ctx.add_content(
                io.BytesIO(self.settings.license.encode("utf-8")), name="license.txt")
        return self._license


# ---------------------------------------------------------------------------------------
# Shared by import and replace


def stage_files(op: Operation, item: ItemFolder, plan: ItemPlan) -> list[StagedContent]:
    """Stream every listed file into staging (hashing it) before any database work."""
    store = op.repo.store
    limit = op.repo.config.max_upload_size
    staged: list[StagedContent] = []
    try:
        for spec in plan.bitstreams:
            with item.open(spec.name) as stream:
                staged.append(store.stage(cast(BinaryIO, stream), limit=limit,
                                          name=item.label(spec.name)))
    except BaseException:
        for piece in staged:
            piece.discard()
        raise
    return staged


def add_bitstreams(ctx: Context, item: m.Item, plan: ItemPlan,
                   staged: list[StagedContent]) -> None:
    for spec, piece in zip(plan.bitstreams, staged, strict=True):
        content = ctx.keep(piece)
        bundle = objects.bundle_named(ctx, item, spec.bundle)
        bitstream = objects.add_bitstream(ctx, bundle, content, name=spec.name,
                                          mime_type=guess_mime_type(spec.name),
                                          description=spec.description,
                                          primary=spec.primary)
        if spec.extra:
            metadata.add_values(ctx, bitstream, list(spec.extra), create=True)
        if spec.permission is not None:
            group = authz.require_group(ctx, spec.permission.group)
            authz.clear_policies(ctx, bitstream)
            authz.add_policy(ctx, bitstream, spec.permission.action, group=group)


def replace_item(ctx: Context, item: m.Item, plan: ItemPlan, staged: list[StagedContent],
                 settings: ImportSettings) -> None:
    """Give ``item`` (same UUID and handle) the folder's metadata and files.

    Metadata and bundles are replaced wholesale; the repository's own fields
    (:data:`PRESERVED_ON_REPLACE`) are kept when the package leaves them out; files the
    package does not restrict get the owning collection's default read policy.
    """
    given = {v.field for v in plan.values}
    kept = [v for v in metadata.ordered_values(item)
            if v.field in PRESERVED_ON_REPLACE and v.field not in given]
    objects.set_metadata(ctx, item, [*plan.values, *kept], create=settings.create_fields)
    for bundle in list(item.bundles):
        objects.remove_bundle(ctx, bundle)
    add_bitstreams(ctx, item, plan, staged)
    collection = item.owning_collection
    if collection is not None and item.in_archive:
        default = [(m.Action.DEFAULT_BITSTREAM_READ, m.Action.READ)]
        for bundle in item.bundles:
            if not bundle.policies:
                authz.inherit_policies(ctx, collection, bundle, default)
            for bitstream in bundle.bitstreams:
                if not bitstream.policies:
                    authz.inherit_policies(ctx, collection, bitstream, default)
    who = ctx.actor.email if ctx.actor else "the system"
    metadata.add(ctx, item, "dc.description.provenance",
                 f"Item replaced from a Simple Archive Format package by {who} on "
                 f"{m.utcnow():%Y-%m-%dT%H:%M:%SZ} (GMT).", language="en")


def resolve_target(ctx: Context, spec: RelationSpec, refs: dict[str, str]) -> m.Item:
    kind, value = target_kind(spec.target)
    where = [Detail("relationship target not found", file=spec.file, line=spec.line,
                    found=spec.target)]
    if kind == "folder":
        if value not in refs:
            raise NotFound(f"no item was imported from folder {value}", where)
        value = refs[value]
    if kind == "metadata":
        fname, _, text = value.partition(":")
        found = metadata_matches(ctx, fname, text, limit=2)
        if len(found) != 1:
            where[0] = Detail(f"relationship target matches {len(found) or 'no'} item"
                              f"{'s' if len(found) != 1 else ''}; it must match one",
                              file=spec.file, line=spec.line, found=spec.target)
            raise PackageValidationError("relationship target is ambiguous", where)
        value = str(found[0])
    obj = _find_quietly(ctx, value)
    if not isinstance(obj, m.Item):
        raise NotFound(f"relationship target {spec.target} is not an item", where)
    return obj


def relate(ctx: Context, item: m.Item, spec: RelationSpec,
           refs: dict[str, str]) -> str | None:
    """Make one relationship (``item`` on the left); a note if it already existed."""
    target = resolve_target(ctx, spec, refs)
    if target.id == item.id:
        raise InvalidInput("an item cannot be related to itself",
                           [Detail("self relationship", file=spec.file, line=spec.line,
                                   found=spec.target)])
    for rel in objects.relationships_of(ctx, item):
        other = rel.right_item_id if rel.left_item_id == item.id else rel.left_item_id
        if other == target.id and spec.type in (rel.left_type, rel.right_type):
            return None
    objects.add_relationship(ctx, item, target, spec.type, spec.type)
    return None


# ---------------------------------------------------------------------------------------
# Mapfile-driven replace and delete (the command line's --replace and --delete)


def replace_from_mapfile(op: Operation, source: SafSource, mapfile: Path,
                         settings: ImportSettings,
                         progress: Callable[[IngestedObject], None] | None = None
                         ) -> IngestResult:
    """Replace every item the mapfile lists with its folder's new content (validated
    first; one unit of work per item)."""
    entries = Mapfile(mapfile).read()
    if not entries:
        raise PackageError(f"mapfile {mapfile} lists no items",
                           [Detail("empty mapfile", file=str(mapfile))])
    folders = set(source.folders())
    found = Findings()
    with op.context(write=False) as ctx:
        checker = Checker(ctx, ImportSettings(create_fields=settings.create_fields,
                                               ignore_handles=True, mode=Mode.REPLACE),
                           check_collections=False)  # replaced items keep their collections
        for folder, ref in entries.items():
            if folder not in folders:
                found.add("folder listed in the mapfile is not in the source",
                          file=str(mapfile), found=folder)
                continue
            if not isinstance(_find_quietly(ctx, ref), m.Item):
                found.add("mapfile names no existing item", file=str(mapfile),
                          field=folder, found=ref)
            item = source.item(folder)
            plan, item_found = read_item(item)
            found.merge(item_found)
            checker.check(item, plan, found)
    if found:
        raise problem_error(f"{source.label}: replace refused", found)
    result = IngestResult(warnings=list(source.layout_warnings))
    if settings.validate_only:
        return result
    for folder, ref in entries.items():
        item_folder = source.item(folder)
        plan, _found = read_item(item_folder)
        staged = stage_files(op, item_folder, plan)
        try:
            with op.context() as ctx:
                target = objects.find(ctx, ref)
                assert isinstance(target, m.Item)
                replace_item(ctx, target, plan, staged, settings)
                obj = IngestedObject(m.ObjectType.ITEM, Outcome.REPLACED, handle=target.handle,
                                     uuid=target.id, package=folder, warnings=plan.warnings)
                for spec in plan.relations:
                    relate(ctx, target, spec, entries)
        except DavpackError as exc:
            raise _annotate(exc, folder, f"replace stopped at this item; {len(result.objects)} "
                            "item(s) before it were replaced") from None
        finally:
            for piece in staged:
                piece.discard()
        result.objects.append(obj)
        (progress or op.report)(obj)
    return result


@dataclass(frozen=True)
class Deletion:
    folder: str
    ref: str
    deleted: bool  # False: the mapfile's item no longer exists


def delete_from_mapfile(op: Operation, mapfile: Path,
                        progress: Callable[[Deletion], None] | None = None) -> list[Deletion]:
    """Delete every item the mapfile lists (one unit of work each; items already gone are
    reported, so an interrupted delete can simply be run again)."""
    out: list[Deletion] = []
    for folder, ref in Mapfile(mapfile).read().items():
        with op.context() as ctx:
            target = _find_quietly(ctx, ref)
            if isinstance(target, m.Item):
                objects.delete_item(ctx, target)
        record = Deletion(folder, ref, isinstance(target, m.Item))
        out.append(record)
        if progress is not None:
            progress(record)
    return out
