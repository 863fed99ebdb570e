"""Writing AIPs: one object, a directory of AIPs for a hierarchy, or one zip of AIP zips.

Layout of an AIP (dspace-aip.md §2-§4): a STORED zip (:mod:`server.zipstream`) holding
``metadata_<n>`` licence streams (only when their bundle was filtered out), ``mets.xml``
and the bitstreams as ``bitstream_<uuid>.<ext>``, all at the root.  The zip's length is
known before the first byte, any byte range can be produced, and memory stays constant:
bitstreams stream from the content store when (and if) their bytes are read, and the
manifest is written into a spooled member.

Determinism: the same content gives the same bytes.  No export time is written anywhere;
identifiers (``dmdSec_1`` ...) are counted from 1 in each package; children, groups,
people, policies, bundles and files are written in a stable order; zip entries of an item
AIP carry the item's last-modified time, those of site, community and collection AIPs
DSpace's constant 2002-11-04T00:00:00 (containers have no change time in the profile), all
as UTC so the machine's time zone plays no part; METSRights' ``in-effect`` is written only
against an explicit as-of time.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select, union
from sqlalchemy.orm import aliased, joinedload, selectinload

from packagers.aip import validation
from packagers.aip.crosswalks import dim, extension, premis, rights, roles
from packagers.aip.crosswalks.mods import mods_document
from packagers.aip.manifest import read_manifest
from packagers.aip.mets import (
    CONTAINER_ZIP_TIME,
    DIV_BITSTREAM,
    DIV_CONTENTS,
    DIV_PARENT,
    DIV_TEMPLATE,
    MANIFEST,
    MD_CC_RDF,
    MD_CC_TEXT,
    MD_DEPOSIT_LICENSE,
    MD_OBJECT,
    MD_PREMIS,
    MD_RELATIONSHIPS,
    MD_RIGHTS,
    MD_ROLES,
    MD_TECHMD,
    METS_NS,
    METS_SCHEMA_LOCATION,
    PROFILE,
    STRUCT_OBJECT,
    STRUCT_PARENT,
    XLINK_NS,
    XSI_NS,
    IdGen,
    Node,
    XmlWriter,
    mdtype_attrs,
)
from packagers.aip.options import ExportOptions
from packagers.aip.zipcrc import LayoutStream, RangeReader, layout_crc32
from packagers.base import (
    IngestedObject,
    Operation,
    Outcome,
    Package,
    manifest_package,
    package_file_name,
)
from packagers.errors import PackageValidationError, UnsupportedOperation
from server import __version__
from server import models as m
from server import passwords as pw
from server.context import Context
from server.errors import Detail, NotFound, PermissionDenied
from server.services import authz, objects
from server.zipstream import ZipEntry, ZipLayout, spool_member

ZIP_COMMENT = f"METS archive created by davpack {__version__}"
HIERARCHY_COMMENT = f"AIP hierarchy written by davpack {__version__}"
_EXT = re.compile(r"\.([A-Za-z0-9]{1,8})$")
CC_STREAMS = {"license_rdf": (MD_CC_RDF, "text/xml"), "license_text": (MD_CC_TEXT, "text/plain")}
RIGHTS_CACHE_SIZE = 256  # distinct policy sets whose METSRights document is kept

MetsSink = Callable[[Callable[[BinaryIO], object], datetime], ZipEntry]


# ---------------------------------------------------------------------------------------
# Packages


class AipZipPackage(Package):
    """One AIP (or the zip of a hierarchy's AIPs): exact size, ranges, stable ETag."""

    def __init__(self, layout: ZipLayout, *, file_name: str, last_modified: datetime,
                 cleanup: Callable[[], None] | None = None) -> None:
        self.layout = layout
        self.mime_type = "application/zip"
        self.file_name = file_name
        self.last_modified = last_modified
        self.size = layout.total_size
        self.etag = layout.fingerprint()
        self._cleanup = cleanup

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.layout.iter_bytes(start, end)

    def close(self) -> None:
        self.layout.close()
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None


# ---------------------------------------------------------------------------------------
# Building one AIP


@dataclass
class FilePlan:
    bitstream: m.Bitstream
    file_id: str
    href: str
    placeholder: bool = False
    amd_id: str = ""


@dataclass
class BundlePlan:
    bundle: m.Bundle
    files: list[FilePlan] = field(default_factory=list)
    amd_id: str = ""


@dataclass
class LicenceRef:
    mdtype: str
    mimetype: str
    bitstream: m.Bitstream
    href: str | None  # zip member (or URL); None: embedded as base64 (manifestOnly)


@dataclass
class BuiltAip:
    type: m.ObjectType
    id: uuid.UUID
    handle: str | None
    last_modified: datetime
    name: str
    mtime: datetime
    mets: ZipEntry
    entries: list[ZipEntry]
    known_crcs: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.mets.close()


def bitstream_href(bitstream: m.Bitstream) -> str:
    found = _EXT.search(bitstream.name or "")
    return f"bitstream_{bitstream.id}" + (f".{found.group(1)}" if found else "")


def dspace_type(obj: m.DSpaceObject) -> str:
    return obj.type.value


class AipBuilder:
    """Builds AIPs of objects of one read-only unit of work."""

    def __init__(self, ctx: Context, options: ExportOptions, *, tmpdir: str | os.PathLike[str]
                 | None = None, mets_sink: MetsSink | None = None) -> None:
        self.ctx = ctx
        self.opts = options
        self.tmpdir = tmpdir
        self.store = ctx.store
        self.site_handle = ctx.repo.site_handle
        self.base_url = str(ctx.config.get("site.base_url")).rstrip("/")
        self.extension = "xml" if options.manifest_only else "zip"
        self.schemas_dir = ctx.config.get("packagers.schemas_dir")
        self.mets_sink: MetsSink = mets_sink or self._spool
        self._handles: dict[uuid.UUID, str | None] = {}
        # Asked once per export, not once per bundle and file (each asking costs a query).
        self._reads_everything = ctx.system or authz.is_admin(ctx)
        self._batch_relationships: dict[uuid.UUID, list[extension.RelationshipSpec]] = {}
        self._policies: dict[uuid.UUID, list[rights.PolicySpec]] = {}
        self._rights_documents: dict[tuple[rights.PolicySpec, ...], str] = {}

    # -- helpers --

    def _spool(self, write_fn: Callable[[BinaryIO], object], mtime: datetime) -> ZipEntry:
        return spool_member(MANIFEST, write_fn, mtime, self.tmpdir)

    def handle_of(self, object_id: uuid.UUID) -> str | None:
        if object_id not in self._handles:
            found = self.ctx.session.get(m.DSpaceObject, object_id)
            self._handles[object_id] = found.handle if found is not None else None
        return self._handles[object_id]

    def group_name(self, name: str) -> str:
        return roles.export_group_name(name, self.handle_of)

    def readable(self, obj: m.DSpaceObject) -> bool:
        return self._reads_everything or authz.allowed(self.ctx, obj, m.Action.READ)

    def check_object(self, obj: m.DSpaceObject) -> None:
        """The exporting person may export this object (site AIPs: administrators only,
        since they list every person and group)."""
        if isinstance(obj, m.Site):
            authz.require_admin(self.ctx)
        elif isinstance(obj, m.Item) and (obj.is_template
                                          or obj.workflow_state != m.WorkflowState.ARCHIVED):
            raise UnsupportedOperation(
                f"item {obj.id} is not archived (workspace, workflow or template items have "
                "no AIP)", [Detail("item not archived", field="uuid", found=str(obj.id))])
        elif not isinstance(obj, (m.Community, m.Collection, m.Item)):
            raise UnsupportedOperation(
                f"the AIP packager does not disseminate a {obj.type.value.lower()}",
                [Detail("unsupported object type", field="type", found=obj.type.value,
                        expected="SITE, COMMUNITY, COLLECTION, ITEM")])
        elif not self.readable(obj):
            authz.authorize(self.ctx, obj, m.Action.READ)

    def policies(self, obj: m.DSpaceObject) -> list[rights.PolicySpec]:
        """The object's policies as the package states them; asked for twice per object
        (METSRights and DAVPACK-OBJECT), made once per :meth:`build`."""
        found = self._policies.get(obj.id)
        if found is not None:
            return found
        out = []
        for p in obj.policies:
            out.append(rights.PolicySpec(
                action=p.action, group=self.group_name(p.group.name) if p.group else None,
                person=p.eperson.email if p.eperson else None, start=p.start_date,
                end=p.end_date, name=p.name, description=p.description, rptype=p.rptype,
                group_id=str(p.group_id) if p.group_id else None,
                person_id=str(p.eperson_id) if p.eperson_id else None))
        self._policies[obj.id] = out
        return out

    def parent_handle(self, obj: m.DSpaceObject) -> str | None:
        if isinstance(obj, m.Community):
            return obj.parent.handle if obj.parent is not None else self.site_handle
        if isinstance(obj, m.Collection):
            return obj.community.handle
        if isinstance(obj, m.Item):
            owner = obj.owning_collection
            return owner.handle if owner is not None else None
        return None

    # -- the object --

    def build(self, obj: m.DSpaceObject) -> BuiltAip:
        self.check_object(obj)
        self._policies.clear()
        is_item = isinstance(obj, m.Item)
        mtime = obj.last_modified if is_item else CONTAINER_ZIP_TIME
        name = package_file_name(obj, self.extension)
        bundles: list[BundlePlan] = []
        licences: list[LicenceRef] = []
        extras: list[tuple[str, m.Bitstream]] = []
        logo: FilePlan | None = None
        if isinstance(obj, m.Item):
            bundles = self._bundles(obj)
            licences, extras = self._licences(obj, bundles)
        elif isinstance(obj, (m.Community, m.Collection)) and obj.logo is not None:
            logo = FilePlan(obj.logo, "", self._href(obj.logo))
        warnings: list[str] = []
        mets = self.mets_sink(partial(self._write, obj=obj, bundles=bundles,
                                      licences=licences, logo=logo), mtime)
        try:
            if self.opts.validate:
                warnings = self._validate(mets, f"{name}!/{MANIFEST}")
            entries: list[ZipEntry] = []
            known: dict[str, int] = {}
            for entry_name, bitstream in extras:
                entries.append(self._stored(entry_name, bitstream, mtime))
                known[entry_name] = bitstream.crc32
            entries.append(mets)
            files = [f for plan in bundles for f in plan.files]
            if logo is not None:
                files.append(logo)
            for f in files:
                if f.placeholder:
                    entries.append(ZipEntry.from_bytes(f.href, b"", mtime))
                else:
                    entries.append(self._stored(f.href, f.bitstream, mtime))
                    known[f.href] = f.bitstream.crc32
        except BaseException:
            mets.close()
            raise
        return BuiltAip(obj.type, obj.id, obj.handle, obj.last_modified, name, mtime, mets,
                        entries, known, warnings)

    def _href(self, bitstream: m.Bitstream) -> str:
        if self.opts.manifest_only:
            return f"{self.base_url}/bitstreams/{bitstream.id}/download"
        return bitstream_href(bitstream)

    def _stored(self, name: str, bitstream: m.Bitstream, mtime: datetime) -> ZipEntry:
        store, sha = self.store, bitstream.sha256
        return ZipEntry(name, bitstream.size, bitstream.crc32, mtime, lambda: store.open(sha))

    def _bundles(self, item: m.Item) -> list[BundlePlan]:
        plans = []
        for bundle in item.bundles:
            if not self.opts.include_bundle(bundle.name):
                continue
            if not self.readable(bundle):
                if self.opts.unauthorized == "skip":
                    continue
                raise PermissionDenied(
                    f"bundle {bundle.name} of item {item.handle} may not be read (use "
                    "-o unauthorized=skip to leave it out)",
                    [Detail("unreadable bundle", field="unauthorized", found=bundle.name)])
            plan = BundlePlan(bundle)
            for bitstream in bundle.bitstreams:
                placeholder = False
                if not self.readable(bitstream):
                    if self.opts.unauthorized == "skip":
                        continue
                    if self.opts.unauthorized != "zero":
                        raise PermissionDenied(
                            f"bitstream {bitstream.name} of item {item.handle} may not be "
                            "read (use -o unauthorized=skip or zero)",
                            [Detail("unreadable bitstream", file=bitstream.name,
                                    field="unauthorized")])
                    placeholder = True
                plan.files.append(FilePlan(bitstream, f"bitstream_{bitstream.id}",
                                           self._href(bitstream), placeholder))
            plans.append(plan)
        return plans

    def _licences(self, item: m.Item, plans: list[BundlePlan]
                  ) -> tuple[list[LicenceRef], list[tuple[str, m.Bitstream]]]:
        """rightsMD references to the deposit and Creative Commons licences; licences whose
        bundle is not in the package travel as extra ``metadata_<n>`` members."""
        included = {f.bitstream.id: f for plan in plans for f in plan.files if not f.placeholder}
        wanted: list[tuple[str, str, m.Bitstream]] = []
        for bundle in item.bundles:
            if bundle.name == "LICENSE" and bundle.bitstreams:
                chosen = next((b for b in bundle.bitstreams if b.format_name == "License"),
                              bundle.bitstreams[0])
                wanted.append((MD_DEPOSIT_LICENSE, "text/plain", chosen))
            elif bundle.name == "CC-LICENSE":
                for b in bundle.bitstreams:
                    if b.name in CC_STREAMS:
                        mdtype, mimetype = CC_STREAMS[b.name]
                        wanted.append((mdtype, mimetype, b))
        refs: list[LicenceRef] = []
        extras: list[tuple[str, m.Bitstream]] = []
        for mdtype, mimetype, bitstream in wanted:
            if bitstream.id in included:
                refs.append(LicenceRef(mdtype, mimetype, bitstream,
                                       None if self.opts.manifest_only
                                       else included[bitstream.id].href))
            elif self.readable(bitstream):
                if self.opts.manifest_only:
                    refs.append(LicenceRef(mdtype, mimetype, bitstream, None))
                else:
                    entry_name = f"metadata_{len(extras) + 1}"
                    extras.append((entry_name, bitstream))
                    refs.append(LicenceRef(mdtype, mimetype, bitstream, entry_name))
        return refs, extras

    def _validate(self, mets: ZipEntry, name: str) -> list[str]:
        with mets.opener() as fh:
            read_manifest(fh, name)
        if self.schemas_dir:
            with mets.opener() as fh:
                warnings = validation.validate(fh, name, self.schemas_dir)
            for warning in warnings:
                self.ctx.warn(warning)
            return warnings
        if self.opts.validate_explicit:
            raise PackageValidationError(
                "validate=true needs local XML schemas: set packagers.schemas_dir (or "
                "DAVPACK_SCHEMAS_DIR) and run 'davpack schemas fetch'",
                [Detail("no schema directory configured", field="packagers.schemas_dir")])
        return []

    # -- the manifest --

    def _write(self, out: BinaryIO, *, obj: m.DSpaceObject, bundles: list[BundlePlan],
               licences: list[LicenceRef], logo: FilePlan | None) -> None:
        w = XmlWriter(out)
        ids = IdGen()
        kind = dspace_type(obj)
        w.declaration()
        objid = f"hdl:{obj.handle}" if obj.handle else f"DSpace_DB_{kind}_{obj.id}"
        w.start("mets", [("ID", f"DSpace_{kind}_DB-ID-{obj.id}"), ("OBJID", objid),
                         ("TYPE", f"DSpace {kind}"), ("PROFILE", PROFILE),
                         ("xmlns", METS_NS), ("xmlns:xlink", XLINK_NS), ("xmlns:xsi", XSI_NS),
                         ("xsi:schemaLocation", METS_SCHEMA_LOCATION)])
        self._header(w, obj)
        values = dim.export_values(obj)
        dmd_ids = self._dmd(w, ids, values, kind)
        template_ids: list[str] = []
        template = obj.template_item if isinstance(obj, m.Collection) else None
        if template is not None:
            template_ids = self._dmd(w, ids, dim.export_values(template), "ITEM")
        object_amd = self._object_amd(w, ids, obj, licences)
        for plan in bundles:
            plan.amd_id = ids("amd")
            with w.element("amdSec", [("ID", plan.amd_id)]):
                self._rights_md(w, ids, plan.bundle)
            for f in plan.files:
                f.amd_id = ids("amd")
                self._bitstream_amd(w, ids, f)
        self._extension_amd(w, ids, obj, bundles, template)
        if logo is not None:
            logo.file_id = ids("logo")
        self._file_sec(w, bundles, logo)
        self._struct_maps(w, ids, obj, dmd_ids, object_amd, bundles, logo, template_ids)
        w.close()

    def _header(self, w: XmlWriter, obj: m.DSpaceObject) -> None:
        attrs: list[tuple[str, str | None]] = []
        if isinstance(obj, m.Item):
            attrs.append(("LASTMODDATE", obj.last_modified.strftime("%Y-%m-%dT%H:%M:%SZ")))
        with w.element("metsHdr", attrs):
            with w.element("agent", [("ROLE", "CUSTODIAN"), ("TYPE", "OTHER"),
                                     ("OTHERTYPE", "DSpace Archive")]):
                w.leaf("name", self.site_handle)
            with w.element("agent", [("ROLE", "CREATOR"), ("TYPE", "OTHER"),
                                     ("OTHERTYPE", "DSpace Software")]):
                w.leaf("name", f"davpack {__version__}")

    def _md(self, w: XmlWriter, kind: str, section_id: str, label: str,
            document: Node | str) -> None:
        with w.element(kind, [("ID", section_id)]), w.element("mdWrap", mdtype_attrs(label)):
            w.xml_data(document)

    def _rights_md(self, w: XmlWriter, ids: IdGen, obj: m.DSpaceObject) -> None:
        """The object's METSRights section.  Most objects of an export share one of a few
        policy sets, so each set's document is built once (in a bounded cache)."""
        policies = self.policies(obj)
        key = tuple(policies)
        document = self._rights_documents.get(key)
        if document is None:
            if len(self._rights_documents) >= RIGHTS_CACHE_SIZE:
                self._rights_documents.clear()
            document = rights.rights_document(policies, now=self.opts.now).serialise()
            self._rights_documents[key] = document
        self._md(w, "rightsMD", ids("rightsMD"), MD_RIGHTS, document)

    def _dmd(self, w: XmlWriter, ids: IdGen, values: list[Any], kind: str) -> list[str]:
        out = []
        for label in self.opts.dmd:
            section_id = ids("dmdSec")
            out.append(section_id)
            document = mods_document(values) if label == "MODS" \
                else dim.dim_document(values, kind)
            self._md(w, "dmdSec", section_id, label, document)
        return out

    def _object_amd(self, w: XmlWriter, ids: IdGen, obj: m.DSpaceObject,
                    licences: list[LicenceRef]) -> str:
        amd_id = ids("amd")
        kind = dspace_type(obj)
        with w.element("amdSec", [("ID", amd_id)]):
            if isinstance(obj, (m.Site, m.Community, m.Collection)):
                document = self._roles(obj)
                if document is not None:
                    self._md(w, "techMD", ids("techMD"), MD_ROLES, document)
            for licence in licences:
                self._licence(w, ids, licence)
            if not isinstance(obj, m.Site):
                self._rights_md(w, ids, obj)
            self._md(w, "sourceMD", ids("sourceMD"), MD_TECHMD,
                     dim.techmd_document(kind, self._techmd(obj)))
        return amd_id

    def _techmd(self, obj: m.DSpaceObject) -> list[tuple[str, str | None]]:
        pairs: list[tuple[str, str | None]] = []
        if isinstance(obj, m.Item):
            pairs.append(("dc.creator", obj.submitter.email if obj.submitter else None))
        pairs.append(("dc.identifier.uri", dim.hdl(obj.handle)))
        if not isinstance(obj, m.Site):
            pairs.append(("dc.relation.isPartOf", dim.hdl(self.parent_handle(obj))))
        if isinstance(obj, m.Item):
            for collection in obj.mapped_collections:
                pairs.append(("dc.relation.isReferencedBy", dim.hdl(collection.handle)))
            if obj.withdrawn:
                pairs.append(("dc.rights.accessRights", "WITHDRAWN"))
        return pairs

    def _licence(self, w: XmlWriter, ids: IdGen, licence: LicenceRef) -> None:
        with w.element("rightsMD", [("ID", ids("rightsMD"))]):
            if licence.href is not None:
                w.empty("mdRef", [("LOCTYPE", "URL"), ("xlink:type", "simple"),
                                  ("xlink:href", licence.href),
                                  *mdtype_attrs(licence.mdtype),
                                  ("MIMETYPE", licence.mimetype)])
                return
            with w.element("mdWrap", [("MIMETYPE", licence.mimetype),
                                      *mdtype_attrs(licence.mdtype)]):
                w.raw_line(f"{' ' * w.depth}<binData>")
                with self.store.open(licence.bitstream.sha256) as fh:
                    while chunk := fh.read(57 * 1024):
                        w.raw_line(base64.b64encode(chunk).decode("ascii"))
                w.raw_line("</binData>\n")

    def _bitstream_amd(self, w: XmlWriter, ids: IdGen, f: FilePlan) -> None:
        b = f.bitstream
        with w.element("amdSec", [("ID", f.amd_id)]):
            if not f.placeholder:
                self._md(w, "techMD", ids("techMD"), MD_PREMIS, premis.premis_document(
                    uuid=str(b.id), md5=b.md5, size=b.size, mime_type=b.mime_type,
                    name=b.name))
            self._rights_md(w, ids, b)
            self._md(w, "sourceMD", ids("sourceMD"), MD_TECHMD,
                     dim.techmd_document("BITSTREAM", self._bitstream_techmd(b)))

    @staticmethod
    def _bitstream_techmd(b: m.Bitstream) -> list[tuple[str, str | None]]:
        return [("dc.title", b.name), ("dc.title.alternative", b.source),
                ("dc.description", b.description), ("dc.format", b.user_format),
                ("dc.format.medium", b.format_name), ("dc.format.mimetype", b.mime_type),
                ("dc.format.supportlevel", b.format_support),
                ("dc.format.internal", "true" if b.format_internal else "false")]

    def _roles(self, obj: m.Site | m.Community | m.Collection) -> Any | None:
        session = self.ctx.session
        if isinstance(obj, m.Site):
            groups = list(session.scalars(select(m.Group).order_by(m.Group.name)))
        else:
            prefix = roles.internal_group_prefix(obj.type.value, obj.id)
            groups = list(session.scalars(select(m.Group).where(
                m.Group.name.startswith(prefix, autoescape=True)).order_by(m.Group.name)))
        specs = []
        for group in groups:
            exported = self.group_name(group.name)
            specs.append(roles.GroupSpec(
                name=exported, id=str(group.id),
                type=None if isinstance(obj, m.Site)
                else roles.role_type(exported, obj.type.value, obj.handle),
                members=[(str(p.id), p.email) for p in group.people],
                member_groups=sorted(((str(g.id), self.group_name(g.name))
                                      for g in group.subgroups), key=lambda x: x[1])))
        specs.sort(key=lambda g: g.name)
        people: list[roles.PersonSpec] = []
        if isinstance(obj, m.Site):
            for person in session.scalars(select(m.EPerson).order_by(m.EPerson.email)):
                spec = roles.PersonSpec(
                    email=person.email, id=str(person.id), netid=person.netid,
                    first_name=person.first_name, last_name=person.last_name,
                    language=person.language, can_log_in=person.can_log_in,
                    require_certificate=person.require_certificate,
                    self_registered=person.self_registered)
                if self.opts.passwords and person.password_hash:
                    algorithm, salt, digest = pw.split(person.password_hash)
                    spec.password_algorithm, spec.password_salt = algorithm, salt
                    spec.password_digest = digest
                people.append(spec)
        document = roles.Roles(specs, people)
        return roles.roles_document(document) if document else None

    def _extension_amd(self, w: XmlWriter, ids: IdGen, obj: m.DSpaceObject,
                       bundles: list[BundlePlan], template: m.Item | None) -> None:
        kind = dspace_type(obj)
        flags: dict[str, bool | None] = {}
        if isinstance(obj, m.Item):
            flags = {"in_archive": obj.in_archive, "withdrawn": obj.withdrawn,
                     "discoverable": obj.discoverable}
        elif isinstance(obj, m.Collection):
            flags = {"workflow_enabled": obj.workflow_enabled}
        root = extension.new_object(kind, obj.id, obj.last_modified, **flags)
        extension.add_policies(root, self.policies(obj))
        for plan in bundles:
            bundle = plan.bundle
            el = extension.add_bundle(
                root, bundle_id=bundle.id, name=bundle.name, position=bundle.position,
                primary=bundle.primary_bitstream_id, last_modified=bundle.last_modified,
                values=dim.export_values(bundle), policies=self.policies(bundle))
            for f in plan.files:
                b = f.bitstream
                extension.add_bitstream(el, bitstream_id=b.id, position=b.position,
                                        last_modified=b.last_modified,
                                        values=dim.export_values(b),
                                        policies=self.policies(b), placeholder=f.placeholder)
        if isinstance(obj, (m.Community, m.Collection)) and obj.logo is not None:
            b = obj.logo
            extension.add_bitstream(root, bitstream_id=b.id, position=b.position,
                                    last_modified=b.last_modified, values=dim.export_values(b),
                                    policies=self.policies(b), tag="logo", extra={
                                        "name": b.name, "mimeType": b.mime_type,
                                        "source": b.source, "description": b.description,
                                        "formatName": b.format_name,
                                        "formatSupport": b.format_support,
                                        "formatInternal": "true" if b.format_internal
                                        else "false", "userFormat": b.user_format})
        if isinstance(obj, (m.Community, m.Collection)):
            extension.add_member_of(root, self._member_of(obj))
        if template is not None:
            extension.add_template(root, template_id=template.id,
                                   last_modified=template.last_modified,
                                   policies=self.policies(template))
        relationships = self._relationships(obj) if isinstance(obj, m.Item) else []
        with w.element("amdSec", [("ID", ids("amd"))]):
            self._md(w, "techMD", ids("techMD"), MD_OBJECT, root)
            if relationships:
                self._md(w, "techMD", ids("techMD"), MD_RELATIONSHIPS,
                         extension.relationships_document(relationships))

    def _member_of(self, obj: m.Community | m.Collection) -> list[tuple[str, str]]:
        """(own group, group containing it) for the container's groups."""
        prefix = roles.internal_group_prefix(obj.type.value, obj.id)
        child = aliased(m.Group)
        parent = aliased(m.Group)
        rows = self.ctx.session.execute(
            select(child.name, parent.name)
            .join(m.group_groups, m.group_groups.c.child_id == child.id)
            .join(parent, m.group_groups.c.parent_id == parent.id)
            .where(child.name.startswith(prefix, autoescape=True)))
        return sorted((self.group_name(a), self.group_name(b)) for a, b in rows)

    def load_relationships(self, item_ids: list[uuid.UUID]) -> None:
        """The relationships of a batch of items in one query (replacing the previous
        batch's, so memory stays flat), instead of one query per item."""
        rel = m.Relationship
        left = m.DSpaceObject.__table__.alias("left_dso")
        right = m.DSpaceObject.__table__.alias("right_dso")
        rows = self.ctx.session.execute(
            select(rel.left_type, rel.right_type, rel.left_item_id, left.c.handle,
                   rel.right_item_id, right.c.handle, rel.left_place, rel.right_place,
                   rel.left_label, rel.right_label)
            .join(left, left.c.id == rel.left_item_id)
            .join(right, right.c.id == rel.right_item_id)
            .where(rel.left_item_id.in_(item_ids) | rel.right_item_id.in_(item_ids))
            .order_by(rel.left_type, rel.left_place, rel.id))
        found: dict[uuid.UUID, list[extension.RelationshipSpec]] = {i: [] for i in item_ids}
        for row in rows:
            spec = extension.RelationshipSpec(*row)
            for side in {spec.left_id, spec.right_id}:
                if side in found:
                    found[side].append(spec)
        for specs in found.values():
            specs.sort(key=lambda s: (s.left_type, s.right_type, str(s.left_id),
                                      str(s.right_id), s.left_place, s.right_place))
        self._batch_relationships = found

    def _relationships(self, item: m.Item) -> list[extension.RelationshipSpec]:
        if item.id not in self._batch_relationships:
            self.load_relationships([item.id])
        return self._batch_relationships[item.id]

    def _file_sec(self, w: XmlWriter, bundles: list[BundlePlan], logo: FilePlan | None) -> None:
        if not bundles and logo is None:
            return
        with w.element("fileSec"):
            originals = {f.bitstream.name: f.bitstream.id for plan in bundles
                         if plan.bundle.name == "ORIGINAL" for f in plan.files}
            for plan in bundles:
                with w.element("fileGrp", [("ADMID", plan.amd_id), ("USE", plan.bundle.name)]):
                    for f in plan.files:
                        self._file(w, f, plan.bundle.name, originals)
            if logo is not None:
                b = logo.bitstream
                attrs = [("ID", logo.file_id), ("MIMETYPE", b.mime_type),
                         ("SIZE", str(b.size)), ("CHECKSUM", b.md5), ("CHECKSUMTYPE", "MD5")]
                with w.element("fileGrp", [("USE", "LOGO")]), w.element("file", attrs):
                    self._flocat(w, logo.href)

    def _file(self, w: XmlWriter, f: FilePlan, bundle: str,
              originals: dict[str, uuid.UUID]) -> None:
        b = f.bitstream
        group = b.id
        if bundle == "THUMBNAIL" or bundle.startswith("TEXT"):
            group = originals.get((b.name or "")[:-4], b.id)
        attrs: list[tuple[str, str | None]] = [
            ("ID", f.file_id), ("MIMETYPE", b.mime_type),
            ("SEQ", str(b.sequence_id) if b.sequence_id is not None else None),
            ("SIZE", "0" if f.placeholder else str(b.size)),
            ("CHECKSUM", None if f.placeholder else b.md5),
            ("CHECKSUMTYPE", None if f.placeholder else "MD5"),
            ("ADMID", f.amd_id), ("GROUPID", f"GROUP_bitstream_{group}")]
        with w.element("file", attrs):
            self._flocat(w, f.href)

    @staticmethod
    def _flocat(w: XmlWriter, href: str) -> None:
        w.empty("FLocat", [("LOCTYPE", "URL"), ("xlink:type", "simple"), ("xlink:href", href)])

    def _struct_maps(self, w: XmlWriter, ids: IdGen, obj: m.DSpaceObject, dmd_ids: list[str],
                     object_amd: str, bundles: list[BundlePlan], logo: FilePlan | None,
                     template_ids: list[str]) -> None:
        struct = [("ID", ids("struct")), ("LABEL", STRUCT_OBJECT), ("TYPE", "LOGICAL")]
        top = [("ID", ids("div")), ("DMDID", " ".join(dmd_ids)), ("ADMID", object_amd),
               ("TYPE", DIV_CONTENTS)]
        with w.element("structMap", struct), w.element("div", top):
            if isinstance(obj, m.Item):
                originals = [p for p in bundles if p.bundle.name == "ORIGINAL"]
                files = originals[0].files if originals else []
                primary = originals[0].bundle.primary_bitstream_id if originals else None
                if primary is not None and any(f.bitstream.id == primary for f in files):
                    w.empty("fptr", [("FILEID", f"bitstream_{primary}")])
                for f in files:
                    with w.element("div", [("ID", ids("div")), ("TYPE", DIV_BITSTREAM)]):
                        w.empty("fptr", [("FILEID", f.file_id)])
            else:
                if logo is not None:
                    w.empty("fptr", [("FILEID", logo.file_id)])
                if template_ids:
                    w.empty("div", [("ID", ids("div")), ("DMDID", " ".join(template_ids)),
                                    ("TYPE", DIV_TEMPLATE)])
                for kind, handle, name in self._children(obj):
                    with w.element("div", [("ID", ids("div")), ("TYPE", f"DSpace {kind}")]):
                        if handle:
                            w.empty("mptr", [("ID", ids("mptr")), ("LOCTYPE", "HANDLE"),
                                             ("xlink:type", "simple"), ("xlink:href", handle)])
                        w.empty("mptr", [("ID", ids("mptr")), ("LOCTYPE", "URL"),
                                         ("xlink:type", "simple"), ("xlink:href", name)])
        parent = self.parent_handle(obj)
        if isinstance(obj, m.Site) or parent is None:
            return
        struct = [("ID", ids("struct")), ("LABEL", STRUCT_PARENT), ("TYPE", "LOGICAL")]
        link = [("ID", ids("div")), ("LABEL", "Parent of this DSpace Object"),
                ("TYPE", DIV_PARENT)]
        with w.element("structMap", struct), w.element("div", link):
            w.empty("mptr", [("ID", ids("mptr")), ("LOCTYPE", "HANDLE"),
                             ("xlink:type", "simple"), ("xlink:href", parent)])

    def _children(self, obj: m.DSpaceObject) -> Iterator[tuple[str, str | None, str]]:
        """(type, handle, package file name) of each child, streamed from the database."""
        for kind, object_id, handle in child_rows(self.ctx, obj):
            if handle:
                name = f"{kind}@{handle.replace('/', '-')}.{self.extension}"
            else:
                name = f"{kind}@internal-id-{object_id}.{self.extension}"
            yield kind, handle, name


def child_rows(ctx: Context, obj: m.DSpaceObject) -> Iterator[tuple[str, uuid.UUID, str | None]]:
    """Children in package order: top communities of the site; sub-communities then
    collections of a community; archived items (owned and mapped, withdrawn included) of a
    collection, in UUID order."""
    session = ctx.session
    if isinstance(obj, m.Site):
        queries = [("COMMUNITY", select(m.Community.id, m.Community.handle)
                    .where(m.Community.parent_id.is_(None)).order_by(m.Community.id))]
    elif isinstance(obj, m.Community):
        queries = [("COMMUNITY", select(m.Community.id, m.Community.handle)
                    .where(m.Community.parent_id == obj.id).order_by(m.Community.id)),
                   ("COLLECTION", select(m.Collection.id, m.Collection.handle)
                    .where(m.Collection.community_id == obj.id).order_by(m.Collection.id))]
    elif isinstance(obj, m.Collection):
        owned = select(m.Item.id).where(m.Item.owning_collection_id == obj.id)
        mapped = select(m.item_mapping.c.item_id).where(
            m.item_mapping.c.collection_id == obj.id)
        members = union(owned, mapped).subquery()
        queries = [("ITEM", select(m.Item.id, m.Item.handle)
                    .where(m.Item.id.in_(select(members.c[0])),
                           m.Item.workflow_state == m.WorkflowState.ARCHIVED,
                           m.Item.is_template.is_(False))
                    .order_by(m.Item.id))]
    else:
        return
    for kind, query in queries:
        for object_id, handle in session.execute(query.execution_options(yield_per=1000)):
            yield kind, object_id, handle


# ---------------------------------------------------------------------------------------
# Hierarchies


def walk(ctx: Context, top: m.DSpaceObject) -> Iterator[tuple[str, uuid.UUID]]:
    """Every object of the hierarchy under ``top`` (itself first), parents before children;
    an item mapped into several collections comes once."""
    seen_items: set[uuid.UUID] = set()
    stack: list[tuple[str, uuid.UUID]] = [(top.type.value, top.id)]
    while stack:
        kind, object_id = stack.pop()
        yield kind, object_id
        if kind == "ITEM":
            continue
        obj = ctx.session.get(m.DSpaceObject, object_id)
        if obj is None:
            continue
        found = []
        for child_kind, child_id, _handle in child_rows(ctx, obj):
            if child_kind == "ITEM":
                if child_id in seen_items:
                    continue
                seen_items.add(child_id)
            found.append((child_kind, child_id))
        stack.extend(reversed(found))


@dataclass
class Selected:
    obj: m.DSpaceObject | None
    skipped: IngestedObject | None = None


def _policy_loads(relationship: Any) -> Any:
    return selectinload(relationship).options(joinedload(m.ResourcePolicy.group),
                                              joinedload(m.ResourcePolicy.eperson))


ITEM_LOADS = (
    selectinload(m.Item.metadata_values),
    _policy_loads(m.Item.policies),
    selectinload(m.Item.mapped_collections),
    joinedload(m.Item.owning_collection),
    joinedload(m.Item.submitter),
    selectinload(m.Item.bundles).options(
        selectinload(m.Bundle.metadata_values), _policy_loads(m.Bundle.policies),
        selectinload(m.Bundle.bitstreams).options(
            selectinload(m.Bitstream.metadata_values), _policy_loads(m.Bitstream.policies))),
)
BATCH = 200


def hierarchy_objects(builder: AipBuilder, top: m.DSpaceObject) -> Iterator[m.DSpaceObject]:
    """The objects :func:`walk` names, loaded; items a batch at a time with everything an
    AIP needs, and the session emptied after each batch so memory stays flat."""
    ctx = builder.ctx
    pending: list[uuid.UUID] = []

    def flush() -> Iterator[m.DSpaceObject]:
        if not pending:
            return
        loaded = {item.id: item for item in ctx.session.scalars(
            select(m.Item).where(m.Item.id.in_(pending)).options(*ITEM_LOADS))}
        builder.load_relationships(pending)
        for object_id in pending:
            if object_id in loaded:
                yield loaded[object_id]
        pending.clear()
        loaded.clear()
        ctx.session.expunge_all()

    for kind, object_id in walk(ctx, top):
        if kind == "ITEM":
            pending.append(object_id)
            if len(pending) >= BATCH:
                yield from flush()
            continue
        yield from flush()
        obj = ctx.session.get(m.DSpaceObject, object_id)
        if obj is not None:
            yield obj
    yield from flush()


def select_for_hierarchy(builder: AipBuilder, obj: m.DSpaceObject) -> Selected:
    """The object to export, or why it is skipped (updatedAfter, unauthorized)."""
    opts = builder.opts
    if (isinstance(obj, m.Item) and opts.updated_after is not None
            and obj.last_modified <= opts.updated_after):
        return Selected(None, IngestedObject(obj.type, Outcome.SKIPPED, obj.handle, obj.id,
                                             reason="not modified after updatedAfter"))
    if not isinstance(obj, m.Site) and not builder.readable(obj) \
            and opts.unauthorized in ("skip", "zero"):
        return Selected(None, IngestedObject(obj.type, Outcome.SKIPPED, obj.handle, obj.id,
                                             reason="not readable (unauthorized=skip)"))
    return Selected(obj)


def load_target(ctx: Context, target: uuid.UUID) -> m.DSpaceObject:
    """The object to export; an item with its whole subtree, in a handful of queries
    rather than one per bundle, file, value and policy."""
    obj = objects.get(ctx, target)
    if obj is None:
        raise NotFound(f"no object with UUID {target}",
                       [Detail("unknown object", field="uuid", found=str(target))])
    if isinstance(obj, m.Item):
        return ctx.session.scalars(
            select(m.Item).where(m.Item.id == obj.id).options(*ITEM_LOADS)
            .execution_options(populate_existing=True)).one()
    return obj


def disseminate_one(op: Operation, target: uuid.UUID, opts: ExportOptions,
                    tmpdir: Path) -> Package:
    with op.context(write=False) as ctx:
        obj = load_target(ctx, target)
        if opts.all:
            return _hierarchy_package(op, ctx, obj, opts, tmpdir)
        builder = AipBuilder(ctx, opts, tmpdir=tmpdir)
        built = builder.build(obj)
        if opts.manifest_only:
            return manifest_package(built.mets, file_name=built.name,
                               last_modified=built.last_modified)
        try:
            layout = ZipLayout(built.entries, ZIP_COMMENT)
            return AipZipPackage(layout, file_name=built.name,
                                 last_modified=built.last_modified)
        except BaseException:
            built.close()
            raise


def disseminate_tree(op: Operation, target: uuid.UUID, opts: ExportOptions,
                     dest: Path) -> list[Path]:
    """Write the AIP of ``target`` and of every descendant into directory ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with op.context(write=False) as ctx:
        top = load_target(ctx, target)
        builder = AipBuilder(ctx, opts, tmpdir=dest)
        for obj in hierarchy_objects(builder, top):
            chosen = select_for_hierarchy(builder, obj)
            if chosen.skipped is not None:
                op.report(chosen.skipped)
            if chosen.obj is None:
                continue
            built = builder.build(chosen.obj)
            try:
                path = dest / built.name
                fd, partial_name = tempfile.mkstemp(prefix=".aip-", suffix=".part", dir=dest)
                try:
                    with os.fdopen(fd, "wb") as out:
                        if opts.manifest_only:
                            with built.mets.opener() as src:
                                while chunk := src.read(1 << 20):
                                    out.write(chunk)
                        else:
                            ZipLayout(built.entries, ZIP_COMMENT).write_to(out)
                    os.replace(partial_name, path)
                except BaseException:
                    Path(partial_name).unlink(missing_ok=True)
                    raise
            finally:
                built.close()
            written.append(path)
            receipt = IngestedObject(built.type, Outcome.EXPORTED, built.handle, built.id,
                                     package=built.name, warnings=built.warnings)
            op.progress(receipt)
            op.report(receipt)
    return written


class SharedSpool:
    """Every manifest of a hierarchy download, one after the other in one temp file."""

    def __init__(self, tmpdir: Path) -> None:
        fd, name = tempfile.mkstemp(prefix="davpack-aips-", suffix=".mets", dir=tmpdir)
        self.path = Path(name)
        self._out = os.fdopen(fd, "wb")
        self._offset = 0

    def add(self, write_fn: Callable[[BinaryIO], object], mtime: datetime) -> ZipEntry:
        counter = _Counting(self._out)
        write_fn(counter)  # type: ignore[arg-type]
        self._out.flush()
        offset, size, crc = self._offset, counter.size, counter.crc
        self._offset += size
        path = self.path
        return ZipEntry(MANIFEST, size, crc, mtime, lambda: RangeReader(path, offset, size))  # type: ignore[arg-type,return-value]

    def finish(self) -> None:
        if not self._out.closed:
            self._out.close()

    def remove(self) -> None:
        self.finish()
        self.path.unlink(missing_ok=True)


class _Counting:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.size = 0
        self.crc = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _open_inner(entries: tuple[ZipEntry, ...]) -> BinaryIO:
    return LayoutStream(ZipLayout(entries, ZIP_COMMENT))  # type: ignore[return-value]


def _hierarchy_package(op: Operation, ctx: Context, top: m.DSpaceObject, opts: ExportOptions,
                       tmpdir: Path) -> Package:
    if opts.manifest_only:
        raise UnsupportedOperation("all=true and manifestOnly=true cannot be combined",
                                   [Detail("conflicting options", field="all")])
    spool = SharedSpool(tmpdir)
    try:
        builder = AipBuilder(ctx, opts, tmpdir=tmpdir, mets_sink=spool.add)
        outer: list[ZipEntry] = []
        for obj in hierarchy_objects(builder, top):
            chosen = select_for_hierarchy(builder, obj)
            if chosen.obj is None:
                continue
            built = builder.build(chosen.obj)
            entries = tuple(built.entries)
            inner = ZipLayout(entries, ZIP_COMMENT)
            crc = layout_crc32(inner, built.known_crcs)
            outer.append(ZipEntry(built.name, inner.total_size, crc, built.mtime,
                                  partial(_open_inner, entries)))
            op.progress(IngestedObject(built.type, Outcome.EXPORTED, built.handle, built.id,
                                       package=built.name))
        spool.finish()
        layout = ZipLayout(outer, HIERARCHY_COMMENT)
        name = package_file_name(top, "zip").removesuffix(".zip") + "-all.zip"
        return AipZipPackage(layout, file_name=name, last_modified=top.last_modified,
                             cleanup=spool.remove)
    except BaseException:
        spool.remove()
        raise
