"""The ``SAF`` packager: DSpace's Simple Archive Format, in and out.

Ingest: a zip (or tar; or, on the command line, a directory) of item folders, imported
a group of items per unit of work (see :mod:`packagers.saf.importer`).  The target
collection is the ingest parent; without one, each folder's ``collections`` file says
where the item goes.  Replace: one item from a single-item SAF package.  Disseminate: an
item, or a collection's archived items, as one SAF zip (see :mod:`packagers.saf.writer`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import ClassVar

from packagers.base import (
    DISSEMINATE,
    INGEST,
    Disseminator,
    IngestedObject,
    Ingester,
    IngestRequest,
    IngestResult,
    Mode,
    Operation,
    Option,
    Outcome,
    Package,
    PackageSource,
)
from packagers.errors import PackageValidationError, UnsupportedOperation
from packagers.params import PackageParameters
from packagers.saf import importer, reader, writer
from server import models as m
from server.archive import SafeArchive
from server.context import Context
from server.errors import Detail, NotFound, PermissionDenied
from server.services import objects


class SAFPackager(Ingester, Disseminator):
    name: ClassVar[str] = "SAF"
    aliases: ClassVar[tuple[str, ...]] = ("SimpleArchiveFormat", "Simple Archive Format",
                                          "DSpaceSAF")
    description: ClassVar[str] = (
        "DSpace Simple Archive Format: a zip of item folders (dublin_core.xml, "
        "metadata_<schema>.xml, contents, collections, handle, relationships and the files); "
        "imported a group of items per transaction, exported from an item or a collection.")
    mime_types: ClassVar[tuple[str, ...]] = ("application/zip",)
    extension: ClassVar[str] = "zip"
    roundtrip_exact: ClassVar[bool | None] = False
    roundtrip_note: ClassVar[str] = (
        "A SAF folder names its item (the handle file) and carries the dates the repository "
        "sets when it archives an item: a copy submitted into the same repository gets a new "
        "handle, accession dates and provenance, and its export differs in those files and "
        "in the zip times. Metadata values, bundles, file names, descriptions and bytes come "
        "back unchanged (tests/test_saf_roundtrip.py compares them).")
    ingest_parent_types: ClassVar[frozenset[m.ObjectType]] = frozenset(
        {m.ObjectType.COLLECTION})
    replace_types: ClassVar[frozenset[m.ObjectType]] = frozenset({m.ObjectType.ITEM})
    disseminate_types: ClassVar[frozenset[m.ObjectType]] = frozenset(
        {m.ObjectType.ITEM, m.ObjectType.COLLECTION})
    options: ClassVar[tuple[Option, ...]] = (
        Option("validate", "Dry run: check every item folder (files, XML, contents lines, "
               "metadata registry, collections, groups, handles, relationship targets) and "
               "report every problem at once; nothing is written.", default="false",
               applies_to=INGEST),
        Option("workflow", "true: items go through the collection's workflow when it has "
               "one; false: they are archived at once (DSpace's import without -w). "
               "Default: the request's choice (workflow unless it is skipped).",
               applies_to=INGEST),
        Option("template", "Apply the owning collection's template item to each item.",
               default="false", applies_to=INGEST),
        Option("collection", "Collections (handle or UUID) each item is also mapped into; "
               "with no target collection the first one owns the items. Given, they "
               "override the folders' collections files.", multiple=True,
               applies_to=INGEST),
        Option("mapfile", "Command line only: file receiving '<folder> <handle>' for each "
               "item, appended and fsynced as soon as the item's group is committed.",
               applies_to=INGEST),
        Option("resume", "Command line only: continue the batch the mapfile records, "
               "skipping the folders it lists.", default="false", applies_to=INGEST),
        Option("ignoreHandles", "Mint new handles instead of the ones in the folders' "
               "handle files (handle files are only honoured for administrators).",
               default="false", applies_to=INGEST),
        Option("createMetadataFields", "Create metadata schemas and fields missing from the "
               "registry instead of refusing the items that use them.", default="false",
               applies_to=INGEST),
        Option("number", "Folder name (a number) of the first exported item; the next ones "
               "count up.", default="1", applies_to=DISSEMINATE),
        Option("migrate", "Export for another repository: no handle file, and without "
               "dc.date.accessioned, dc.date.available, dc.description.provenance and the "
               "dc.identifier.uri of the item's own handle (the target makes them again).",
               default="false", applies_to=DISSEMINATE),
        Option("excludeBitstreams", "Write the contents files but leave the files out.",
               default="false", applies_to=DISSEMINATE),
    )

    # -- ingest -------------------------------------------------------------------------

    @classmethod
    def sniff(cls, source: PackageSource) -> bool:
        """A zip whose root, or whose item folders (at the root or one wrapper folder
        deep), hold ``dublin_core.xml``; a directory laid out the same way."""
        try:
            if source.is_directory:
                with reader.DirectorySource(source.path) as batch:
                    folders = batch.folders()
                    return any(batch.item(f).is_file(reader.DUBLIN_CORE) for f in folders)
            if source.head(4) != b"PK\x03\x04":
                return False
            with SafeArchive.open(source.path, name=source.label) as archive:
                return reader.sniff_names(archive.names())
        except Exception:  # a damaged or hostile package is simply not claimed
            return False

    def settings(self, op: Operation, request: IngestRequest) -> importer.ImportSettings:
        params = request.params
        mapfile = params.get_str("mapfile")
        resume = params.get_bool("resume")
        if (mapfile or resume) and not op.system:
            raise PermissionDenied(
                "mapfile and resume name files on the server: command line only",
                [Detail("not allowed here", field="mapfile" if mapfile else "resume")])
        workflow_default = not request.skip_workflow
        return importer.ImportSettings(
            parent=request.parent,
            collections=params.get_list("collection"),
            mode=request.mode,
            keep_existing=request.keep_existing,
            workflow=params.get_bool("workflow", workflow_default),
            template=params.get_bool("template"),
            validate_only=params.get_bool("validate"),
            mapfile=Path(mapfile) if mapfile else None,
            resume=resume,
            ignore_handles=params.get_bool("ignoreHandles"),
            create_fields=params.get_bool("createMetadataFields"),
            license=request.license,
        )

    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        settings = self.settings(op, request)
        with reader.open_source(source.path, source.label) as batch:
            if not batch.folders():
                raise PackageValidationError(
                    f"{source.label} holds no item folders",
                    [Detail("expected folders holding dublin_core.xml", file=source.label)])
            return importer.BatchImporter(op, batch, settings).run()

    def replace(self, op: Operation, target: uuid.UUID, source: PackageSource,
                request: IngestRequest) -> IngestResult:
        """Replace item ``target`` (keeping its UUID, handle and collections) with the one
        item a SAF package holds."""
        settings = self.settings(op, request)
        settings.mode = Mode.REPLACE
        with reader.open_source(source.path, source.label) as batch:
            folders = batch.folders()
            if len(folders) != 1:
                raise PackageValidationError(
                    "replacing an item needs a package with exactly one item folder",
                    [Detail("wrong number of item folders", file=source.label,
                            expected="1", found=str(len(folders)))])
            folder = batch.item(folders[0])
            plan, found = reader.read_item(folder)
            with op.context(write=False) as ctx:
                item = ctx.session.get(m.Item, target)
                if item is None:
                    raise NotFound(f"no item {target}",
                                   [Detail("unknown item", found=str(target))])
                checker = importer.Checker(ctx, settings, check_collections=False)
                checker.honor_handles = False
                checker.check(folder, plan, found)
                for spec in plan.relations:
                    checker.check_relation(spec, set(), found)
            if found:
                raise importer.problem_error(f"{source.label}: replace refused", found)
            if settings.validate_only:
                return IngestResult([IngestedObject(m.ObjectType.ITEM, Outcome.SKIPPED,
                                                    uuid=target, package=folders[0],
                                                    reason="validated (dry run)")])
            staged = importer.stage_files(op, folder, plan)
            try:
                with op.context() as ctx:
                    item = ctx.session.get(m.Item, target)
                    assert item is not None
                    importer.replace_item(ctx, item, plan, staged, settings)
                    for spec in plan.relations:
                        importer.relate(ctx, item, spec, {})
                    obj = IngestedObject(m.ObjectType.ITEM, Outcome.REPLACED,
                                         handle=item.handle, uuid=item.id, package=folders[0],
                                         warnings=list(plan.warnings))
            finally:
                for piece in staged:
                    piece.discard()
        op.report(obj)
        return IngestResult([obj], warnings=list(batch.layout_warnings))

    # -- disseminate --------------------------------------------------------------------

    @staticmethod
    def export_settings(params: PackageParameters) -> writer.ExportSettings:
        number = params.get_int("number", 1)
        if number is None or number < 0:
            raise PackageValidationError("number must be 0 or more",
                                         [Detail("negative number", field="number",
                                                 found=str(number))])
        return writer.ExportSettings(number=number, migrate=params.get_bool("migrate"),
                                     exclude_bitstreams=params.get_bool("excludeBitstreams"))

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        settings = self.export_settings(params)
        spool_dir = _spool_dir(op)
        with op.context(write=False) as ctx:
            return writer.build_package(ctx, target, settings, spool_dir)

    def disseminate_all(self, op: Operation, target: uuid.UUID, params: PackageParameters,
                        dest: Path) -> list[Path]:
        """An item or a collection: its one package.  A community (or the site): one
        package per collection below it, ``COLLECTION@<handle>.zip`` each."""
        with op.context(write=False) as ctx:
            obj = ctx.session.get(m.DSpaceObject, target)
            if obj is None:
                raise NotFound(f"no object {target}", [Detail("unknown object",
                                                              found=str(target))])
            if isinstance(obj, (m.Item, m.Collection)):
                targets = [obj.id]
            elif isinstance(obj, (m.Community, m.Site)):
                targets = _collections_below(ctx, obj)
            else:
                raise UnsupportedOperation(
                    f"SAF cannot export a {obj.type.value}",
                    [Detail("cannot export this type", field="type", found=obj.type.value)])
        written: list[Path] = []
        for collection_id in targets:
            with self.disseminate(op, collection_id, params) as package:
                assert isinstance(package, writer.SafPackage)
                path = dest / package.file_name
                writer.write_zip(package, path)
                written.append(path)
        return written


def _collections_below(ctx: Context, obj: m.Community | m.Site) -> list[uuid.UUID]:
    tops = objects.top_communities(ctx) if isinstance(obj, m.Site) else [obj]
    out: list[uuid.UUID] = []
    stack = list(reversed(tops))
    while stack:
        community = stack.pop()
        out.extend(c.id for c in community.collections)
        stack.extend(reversed(community.subcommunities))
    return out


def _spool_dir(op: Operation) -> Path | None:
    try:
        path = op.repo.config.path("server.staging_dir")
    except (KeyError, TypeError):
        return None
    return path if os.access(path.parent, os.W_OK) or path.exists() else None
