"""An item as a METS DIP in DSpace's METS SIP profile: ``mets.xml`` plus the item's files.

The manifest follows DSpace's METS disseminator (dspace-aip.md §3, §6.5): profile
``DSpace METS SIP Profile 1.0``; one dmdSec per ``dmd`` type (MODS and DIM by default;
DC on request); a rightsMD for the deposit licence and the Creative Commons licence
(``DSpaceDepositLicense``, ``CreativeCommonsRDF``/``Text``); per file an amdSec with PREMIS
(size, MD5, original name, format) and AIP-TECHMD (name, source, description); files in
``fileGrp``s named after their bundle (ORIGINAL as ``CONTENT``), each with ``SIZE``,
``CHECKSUM``/``CHECKSUMTYPE="MD5"`` and ``SEQ``; one structMap whose div lists the
dmdSecs, the primary bitstream and one div per ORIGINAL file.  The LICENSE, CC-LICENSE
and METADATA bundles are left out of the fileSec unless asked for (``includeBundles``).

Deterministic: every ``@ID`` comes from one counter restarted per package, the header's
``CREATEDATE`` and every zip member's time are the item's last modification (not the
clock), so an unchanged item gives the same bytes.  The zip is laid out in advance
(:mod:`server.zipstream`): exact size, byte ranges; the content streams from the store.
``mets.xml`` is spooled (memory, then a temporary file) while it is written.

With ``manifestOnly=true`` the package is ``mets.xml`` alone: each FLocat holds the file's
URL on this server (``<site.base_url>/handle/<prefix>/<suffix>/<bundle>/<name>``, the
names the WebDAV tree gives, see :mod:`server.http.urls`), licences are embedded as
base64.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from lxml import etree

from packagers import itemkit
from packagers.aip.crosswalks.dim import VIRTUAL_AUTHORITY, dim_document, techmd_document
from packagers.aip.crosswalks.mods import mods_document
from packagers.aip.crosswalks.premis import premis_document
from packagers.aip.mets import (
    MD_CC_RDF,
    MD_CC_TEXT,
    MD_DEPOSIT_LICENSE,
    MD_TECHMD,
    METS_NS,
    METS_SCHEMA_LOCATION,
    XLINK_NS,
    XSI_NS,
    IdGen,
    XmlWriter,
    iso_utc,
    mdtype_attrs,
    utc_naive,
)
from packagers.base import Operation, Package, manifest_package
from packagers.errors import PackageError
from packagers.mets.crosswalks import dc_elements
from packagers.mets.manifest import MANIFEST, PROFILE
from packagers.params import PackageParameters
from server import models as m
from server.context import Context
from server.errors import Detail
from server.http import urls
from server.services import authz, metadata
from server.services.metadata import Value
from server.store import ContentStore
from server.zipstream import ZipEntry, ZipLayout, spool_member

NAME = "METS"
DMD_TYPES = ("MODS", "DIM", "DC")
DEFAULT_DMD = ("MODS", "DIM")
META_BUNDLES = frozenset({"LICENSE", "CC-LICENSE", "METADATA"})
MAX_EMBEDDED = 1024 * 1024  # licences larger than this are referenced by URL (manifestOnly)
LICENCE_STREAMS = {"license_rdf": (MD_CC_RDF, "text/xml"),
                   "license_text": (MD_CC_TEXT, "text/plain")}


@dataclass(frozen=True)
class DipOptions:
    dmd: tuple[str, ...]
    include_bundle: Callable[[str], bool]
    manifest_only: bool

    @classmethod
    def from_params(cls, params: PackageParameters) -> DipOptions:
        dmd = tuple(v.strip().upper() for v in params.get_list("dmd")) or DEFAULT_DMD
        unknown = [v for v in dmd if v not in DMD_TYPES]
        if unknown:
            raise PackageError(f"option dmd: unknown metadata type {', '.join(unknown)}", [
                Detail("unknown dmd type", field="dmd", expected=", ".join(DMD_TYPES),
                       found=v) for v in unknown])
        dmd = tuple(dict.fromkeys(dmd))
        wanted = [v.strip() for v in params.get_list("includeBundles")]
        include: Callable[[str], bool]
        if not wanted:
            def include(name: str) -> bool:
                return name.upper() not in META_BUNDLES
        elif any(w.lower() in ("all", "+all") for w in wanted):
            def include(name: str) -> bool:
                return True
        else:
            chosen = {w.lstrip("+").upper() for w in wanted}

            def include(name: str) -> bool:
                return name.upper() in chosen
        return cls(dmd=dmd, include_bundle=include,
                   manifest_only=params.get_bool("manifestOnly", False))


@dataclass
class DipFile:
    id: uuid.UUID
    bundle: str
    name: str
    size: int
    md5: str
    sha256: str
    crc32: int
    mime_type: str
    description: str | None
    source: str | None
    seq: int | None
    primary: bool
    format_name: str | None
    url: str  # on this server, as the WebDAV tree names it
    path: str = ""  # member name in the zip (or the URL, manifestOnly)
    amd_id: str = ""

    @property
    def file_id(self) -> str:
        return f"bitstream_{self.id}"


@dataclass
class Licence:
    mdtype: str
    mime_type: str
    file: DipFile
    href: str | None = None  # member, or URL; None: embedded


@dataclass
class Snapshot:
    id: uuid.UUID
    handle: str | None
    last_modified: datetime
    values: list[Value]
    files: list[DipFile] = field(default_factory=list)  # every readable file


def snapshot(ctx: Context, item: m.Item, base_url: str) -> Snapshot:
    """What the package needs, detached from the session; names and URLs as the WebDAV tree
    shows them to this reader."""
    values = [v for v in metadata.ordered_values(item)
              if not (v.authority or "").startswith(VIRTUAL_AUTHORITY)]
    snap = Snapshot(item.id, item.handle, utc_naive(item.last_modified), values)
    admin = authz.is_admin(ctx)
    bundles = [b for b in item.bundles if admin or authz.allowed(ctx, b, m.Action.READ)]
    root = urls.object_path(item.handle, item.id)
    for bundle, bundle_name in zip(bundles, urls.unique_names(b.name for b in bundles),
                                   strict=True):
        files = [b for b in bundle.bitstreams
                 if admin or authz.allowed(ctx, b, m.Action.READ)]
        for bitstream, file_name in zip(files, urls.unique_names(b.name for b in files),
                                        strict=True):
            snap.files.append(DipFile(
                id=bitstream.id, bundle=bundle.name, name=bitstream.name,
                size=bitstream.size, md5=bitstream.md5, sha256=bitstream.sha256,
                crc32=bitstream.crc32, mime_type=bitstream.mime_type,
                description=bitstream.description, source=bitstream.source,
                seq=bitstream.sequence_id, primary=bundle.primary_bitstream_id == bitstream.id,
                format_name=bitstream.format_name,
                url=urls.absolute(base_url, f"{root}/{bundle_name}/{file_name}")))
    return snap


def disseminate(op: Operation, target: uuid.UUID, params: PackageParameters,
                file_name: Callable[[m.Item], str]) -> Package:
    opts = DipOptions.from_params(params)
    with op.context(write=False) as ctx:
        item = itemkit.load_item(ctx, target, NAME)
        base_url = str(ctx.config.get("site.base_url"))
        site_name = str(ctx.config.get("site.name"))
        snap = snapshot(ctx, item, base_url)
        name = file_name(item)
    store = op.repo.store
    files = [f for f in snap.files if opts.include_bundle(f.bundle)]
    if opts.manifest_only:
        for f in files:
            f.path = f.url
    else:
        facts = [_facts(f) for f in files]
        for f, (_, path) in zip(files, itemkit.unique_paths(facts, _reserved), strict=True):
            f.path = path
    licences, extras = _licences(snap, files, opts)
    mtime = snap.last_modified

    def write(out: BinaryIO) -> None:
        write_manifest(out, snap, files, licences, opts, site_name, store)

    manifest = spool_member(MANIFEST, write, mtime, itemkit.staging_root(op.repo))
    if opts.manifest_only:
        return manifest_package(manifest, file_name=name, last_modified=snap.last_modified)
    entries = [manifest]
    entries.extend(_entry(store, f, f.path, mtime) for f in files)
    entries.extend(_entry(store, f, path, mtime) for path, f in extras)
    return itemkit.ZipPackage(ZipLayout(entries), file_name=name,
                              last_modified=snap.last_modified)


def _reserved(name: str) -> bool:
    return name == MANIFEST


def _facts(f: DipFile) -> itemkit.FileFacts:
    return itemkit.FileFacts(bundle=f.bundle, name=f.name, sha256=f.sha256, md5=f.md5,
                             size=f.size, crc32=f.crc32, mime_type=f.mime_type,
                             description=f.description, primary=f.primary, id=f.id)


def _entry(store: ContentStore, f: DipFile, path: str, mtime: datetime) -> ZipEntry:
    return itemkit.stored_entry(store, _facts(f), path, mtime)


def _licences(snap: Snapshot, files: list[DipFile], opts: DipOptions
              ) -> tuple[list[Licence], list[tuple[str, DipFile]]]:
    """rightsMD licences; those whose bundle is not in the fileSec travel as extra
    members (``license.txt``, ``license_rdf``, ``license_text``) or, manifest-only,
    embedded."""
    wanted: list[tuple[str, str, DipFile]] = []
    deposit = [f for f in snap.files if f.bundle == "LICENSE"]
    if deposit:
        chosen = next((f for f in deposit if f.format_name == "License"), deposit[0])
        wanted.append((MD_DEPOSIT_LICENSE, "text/plain", chosen))
    for f in snap.files:
        if f.bundle == "CC-LICENSE" and f.name in LICENCE_STREAMS:
            mdtype, mime = LICENCE_STREAMS[f.name]
            wanted.append((mdtype, mime, f))
    taken = {MANIFEST, *(f.path for f in files)}
    included = {f.id: f for f in files}
    licences: list[Licence] = []
    extras: list[tuple[str, DipFile]] = []
    for mdtype, mime, f in wanted:
        if f.id in included:
            licences.append(Licence(mdtype, mime, f, included[f.id].path))
        elif opts.manifest_only:
            licences.append(Licence(mdtype, mime, f, f.url if f.size > MAX_EMBEDDED else None))
        else:
            base = "license.txt" if mdtype == MD_DEPOSIT_LICENSE else f.name
            path = base
            while path in taken:
                path = f"metadata_{path}"
            taken.add(path)
            extras.append((path, f))
            licences.append(Licence(mdtype, mime, f, path))
    return licences, extras


# ---------------------------------------------------------------------------------------
# The manifest


def write_manifest(out: BinaryIO, snap: Snapshot, files: list[DipFile],
                   licences: list[Licence], opts: DipOptions, site_name: str,
                   store: ContentStore) -> None:
    w = XmlWriter(out)
    ids = IdGen()
    w.declaration()
    if snap.handle:
        mets_id = f"DSpace_ITEM_{urls.handle_token(snap.handle)}"
        objid = f"hdl:{snap.handle}"
    else:
        mets_id = objid = f"DSpace_ITEM_{snap.id}"
    w.start("mets", [("ID", mets_id), ("OBJID", objid), ("TYPE", "DSpace ITEM"),
                     ("PROFILE", PROFILE), ("xmlns", METS_NS), ("xmlns:xlink", XLINK_NS),
                     ("xmlns:xsi", XSI_NS), ("xsi:schemaLocation", METS_SCHEMA_LOCATION)])
    with w.element("metsHdr", [("CREATEDATE", iso_utc(snap.last_modified, micro=False))]), \
            w.element("agent", [("ROLE", "CUSTODIAN"), ("TYPE", "ORGANIZATION")]):
        w.leaf("name", site_name)
    dmd_ids = []
    for kind in opts.dmd:
        dmd_id = ids("dmdSec")
        dmd_ids.append(dmd_id)
        with w.element("dmdSec", [("ID", dmd_id)]), w.element("mdWrap", mdtype_attrs(kind)):
            if kind == "MODS":
                w.xml_data(mods_document(snap.values))
            elif kind == "DIM":
                w.xml_data(dim_document(snap.values, "ITEM"))
            else:
                with w.element("xmlData"):
                    for el in dc_elements(snap.values):
                        w.raw_line(" " * w.depth + _serialise(el) + "\n")
    item_amd = None
    if licences:
        item_amd = ids("amd")
        with w.element("amdSec", [("ID", item_amd)]):
            for licence in licences:
                _licence(w, ids, licence, store)
    for f in files:
        f.amd_id = ids("amd")
        with w.element("amdSec", [("ID", f.amd_id)]):
            with w.element("techMD", [("ID", ids("techMD"))]), \
                    w.element("mdWrap", mdtype_attrs("PREMIS")):
                w.xml_data(premis_document(uuid=str(f.id), md5=f.md5, size=f.size,
                                           mime_type=f.mime_type, name=f.name))
            with w.element("sourceMD", [("ID", ids("sourceMD"))]), \
                    w.element("mdWrap", mdtype_attrs(MD_TECHMD)):
                w.xml_data(techmd_document("BITSTREAM", [
                    ("dc.title", f.name), ("dc.title.alternative", f.source),
                    ("dc.description", f.description), ("dc.format.mimetype", f.mime_type)]))
    if files:
        with w.element("fileSec"):
            for bundle in dict.fromkeys(f.bundle for f in files):
                use = "CONTENT" if bundle == "ORIGINAL" else bundle
                with w.element("fileGrp", [("USE", use)]):
                    for f in files:
                        if f.bundle != bundle:
                            continue
                        with w.element("file", [
                                ("ID", f.file_id), ("MIMETYPE", f.mime_type),
                                ("SEQ", str(f.seq) if f.seq is not None else None),
                                ("SIZE", str(f.size)), ("CHECKSUM", f.md5),
                                ("CHECKSUMTYPE", "MD5"), ("ADMID", f.amd_id),
                                ("GROUPID", f"GROUP_{f.file_id}")]):
                            w.empty("FLocat", [("LOCTYPE", "URL"), ("xlink:type", "simple"),
                                               ("xlink:href", f.path)])
    with w.element("structMap", [("ID", ids("struct")), ("LABEL", "DSpace Object"),
                                 ("TYPE", "LOGICAL")]), \
            w.element("div", [("ID", ids("div")), ("DMDID", " ".join(dmd_ids)),
                              ("ADMID", item_amd), ("TYPE", "DSpace Object Contents")]):
        content = [f for f in files if f.bundle == "ORIGINAL"]
        primary = next((f for f in content if f.primary), None)
        if primary is not None:
            w.empty("fptr", [("FILEID", primary.file_id)])
        for f in content:
            with w.element("div", [("ID", ids("div")), ("TYPE", "DSpace BITSTREAM")]):
                w.empty("fptr", [("FILEID", f.file_id)])
    w.close()


def _serialise(el: object) -> str:
    return str(etree.tostring(el, encoding="unicode"))


def _licence(w: XmlWriter, ids: IdGen, licence: Licence, store: ContentStore) -> None:
    with w.element("rightsMD", [("ID", ids("rightsMD"))]):
        attrs = [*mdtype_attrs(licence.mdtype), ("MIMETYPE", licence.mime_type)]
        if licence.href is not None:
            w.empty("mdRef", [("LOCTYPE", "URL"), *attrs, ("xlink:type", "simple"),
                              ("xlink:href", licence.href)])
            return
        with w.element("mdWrap", attrs), w.element("binData"):
            with store.open(licence.file.sha256) as fh:
                data = fh.read(MAX_EMBEDDED + 1)
            encoded = base64.b64encode(data[:MAX_EMBEDDED]).decode("ascii")
            for start in range(0, len(encoded), 76):
                w.raw_line(encoded[start:start + 76] + "\n")
