"""Submitting a METS SIP as a new item (DSpace METS SIP profile, dspace-aip.md §6.5).

Order of work, so that nothing is left behind when anything fails:

1. the parent collection and the ADD permission are checked;
2. ``mets.xml`` is parsed (:mod:`server.xmlsafe`) and checked (:mod:`.manifest`), the
   descriptive metadata crosswalked (:mod:`.crosswalks`), every file reference resolved
   (missing, unsafe and foreign references are refused, each named) and the metadata
   fields checked against the registry -- all before a byte is copied;
3. every file is streamed into the store's staging area and checked against its
   ``SIZE``, ``CHECKSUM``/``CHECKSUMTYPE`` and PREMIS fixity (one pass; MD5 and SHA-256
   come from the store's own hashing);
4. one unit of work creates the item, its bundles and bitstreams (in fileSec order,
   ``SEQ`` kept), the primary bitstream (the ``fptr`` directly in the item's div), the
   deposit and Creative Commons licences, embargoes, and finishes the submission.

A failure in 3 discards the staged files; a failure in 4 rolls the unit back (and removes
content it placed).  Nothing is ever fetched from the network (:mod:`.sip`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, BinaryIO, cast

from lxml import etree
from sqlalchemy import select

from packagers import itemkit
from packagers.aip.crosswalks.dim import read_techmd
from packagers.aip.crosswalks.premis import PremisFacts, read_premis
from packagers.aip.crosswalks.rights import read_rights
from packagers.aip.mets import (
    MD_CC_RDF,
    MD_CC_TEXT,
    MD_DEPOSIT_LICENSE,
    MD_PREMIS,
    MD_RIGHTS,
    MD_TECHMD,
)
from packagers.bagit.describe import drop_install_fields
from packagers.base import IngestRequest, IngestResult, Operation, PackageSource
from packagers.errors import PackageValidationError
from packagers.mets import crosswalks
from packagers.mets.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MdSection,
    MetsFile,
    SipManifest,
    read_manifest,
)
from packagers.mets.sip import PackageFiles, href_problem, is_url, local_bitstream
from server import models as m
from server import xmlsafe
from server.context import Context
from server.errors import Conflict, Detail, InvalidInput, UnknownMetadataField, UnsafeInput
from server.services import authz, metadata, objects
from server.services.metadata import Value
from server.store import StagedContent

NAME = "METS"
MAX_SECTION_BYTES = 16 * 1024 * 1024  # a dmdSec or licence kept in a separate member

# CHECKSUMTYPE (METS vocabulary) -> hashlib name; CRC32 and Adler-32 are handled apart
ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384",
              "SHA-512": "sha512", "CRC32": "crc32", "ADLER-32": "adler32"}
_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 96: "sha384", 128: "sha512"}


@dataclass(frozen=True)
class IngestOptions:
    dmd: str | None
    create_fields: bool
    ignore_missing: bool
    manifest_only: bool

    @classmethod
    def from_request(cls, request: IngestRequest) -> IngestOptions:
        params = request.params
        dmd = params.get_list("dmd")
        return cls(dmd=dmd[0].upper() if dmd else None,
                   create_fields=params.get_bool("createMetadataFields", False),
                   ignore_missing=params.get_bool("ignoreMissingFiles", False),
                   manifest_only=params.get_bool("manifestOnly", False))


@dataclass
class FilePlan:
    """One fileSec file on its way into a bundle."""

    file: MetsFile
    bundle: str
    name: str
    mime_type: str
    member: str | None = None  # the package member holding the bytes
    local_sha256: str | None = None  # or: content this repository already has
    description: str | None = None
    source: str | None = None
    premis: PremisFacts = field(default_factory=PremisFacts)
    rights: list[MdSection] = field(default_factory=list)
    staged: StagedContent | None = None
    bitstream_id: uuid.UUID | None = None


@dataclass
class StreamPlan:
    """A licence stream (rightsMD): its bytes, or the member that holds them."""

    bundle: str
    name: str
    mime_type: str
    format_name: str | None
    data: bytes | None = None
    member: str | None = None
    staged: StagedContent | None = None


def run_ingest(op: Operation, source: PackageSource, request: IngestRequest) -> IngestResult:
    opts = IngestOptions.from_request(request)
    label = source.label
    with op.context(write=False) as ctx:  # fail early, before reading anything
        collection = itemkit.parent_collection(ctx, request, NAME)
        authz.authorize(ctx, collection, m.Action.ADD)
        base_url = str(ctx.config.get("site.base_url"))
    with PackageFiles(source, manifest_only=opts.manifest_only) as package:
        mf = _manifest(package, label)
        warnings: list[str] = []
        values = _descriptive(mf, package, opts, warnings, label)
        plans = _plan_files(mf, package, opts, warnings, label)
        streams = _plan_streams(mf, package, plans, opts, warnings, label)
        with op.context(write=False) as ctx:
            _resolve_local(ctx, plans, base_url, label)
            _check_fields(ctx, values, opts, label)
        with itemkit.StagedFiles(op.repo) as files:
            _stage(files, package, plans, streams, warnings, label)
            with op.context() as ctx:
                collection = itemkit.parent_collection(ctx, request, NAME)
                item = itemkit.new_item(ctx, collection)
                metadata.add_values(ctx, item, values, create=opts.create_fields)
                _add_files(ctx, item, files, plans, mf, warnings)
                _add_streams(ctx, item, files, streams, request)
                _embargoes(ctx, collection, item, plans, warnings)
                itemkit.finish_item(ctx, item, request)
                record = itemkit.created(item, source, warnings)
    op.report(record)
    return IngestResult(objects=[record], warnings=list(warnings))


# ---------------------------------------------------------------------------------------
# Reading the manifest and the metadata


def _manifest(package: PackageFiles, label: str) -> SipManifest:
    data = package.manifest()
    try:
        root = xmlsafe.fromstring(data, name=MANIFEST, max_bytes=MAX_MANIFEST_BYTES)
    except UnsafeInput:
        raise
    except InvalidInput as exc:
        if type(exc) is not InvalidInput:
            raise
        raise PackageValidationError(f"{label}: mets.xml is not well-formed XML",
                                     exc.details) from None
    return read_manifest(root, MANIFEST)


def _descriptive(mf: SipManifest, package: PackageFiles, opts: IngestOptions,
                 warnings: list[str], label: str) -> list[Value]:
    sections = mf.item_dmd
    readable = [s for s in sections if crosswalks.kind_of(s) is not None]
    if not readable:
        found = ", ".join(sorted({s.mdtype or "?" for s in sections}))
        raise PackageValidationError(
            f"{label}: no descriptive metadata this packager can read",
            [Detail("no dmdSec of a readable type among the item's DMDID", file=MANIFEST,
                    field="dmdSec/mdWrap/@MDTYPE", expected=crosswalks.READABLE, found=found)])
    if opts.dmd and not any(s.mdtype.upper() == opts.dmd for s in readable):
        warnings.append(f"no dmdSec of type {opts.dmd}; read the best available instead")
    chosen = crosswalks.choose(readable, opts.dmd)
    unread = [s for s in sections if s not in readable]
    if unread:  # alternatives of a readable type are the same description: not worth a word
        warnings.append("dmdSec(s) of a type without a crosswalk here were not read: "
                        + ", ".join(f"{s.id} ({s.mdtype or '?'})" for s in unread))
    values: list[Value] = []
    for section in chosen:
        kind = crosswalks.kind_of(section)
        assert kind is not None
        elements = _section_xml(section, package, label)
        read, notes = crosswalks.read(kind, elements)
        values.extend(read)
        warnings.extend(notes)
    bad = crosswalks.bad_field_names(values)
    if bad:
        raise PackageValidationError(f"{label}: metadata field names are malformed", [
            Detail("expected schema.element[.qualifier]", file=MANIFEST, field=name)
            for name in bad])
    values = drop_install_fields(values)
    if not any(v.field == "dc.title" for v in values):
        raise PackageValidationError(
            f'{label}: Item cannot be created without the required "title" DC metadata.',
            [Detail("the descriptive metadata gives no title", file=MANIFEST,
                    field="dc.title", expected="a title",
                    found=", ".join(sorted({v.field for v in values})) or "no metadata")])
    return values


def _section_xml(section: MdSection, package: PackageFiles, label: str) -> list[Any]:
    """The XML of a section: wrapped, base64-wrapped, or in a member of the package."""
    if section.elements:
        return section.elements
    data: bytes | None = None
    name = f"{MANIFEST}#{section.id}"
    if section.bindata is not None:
        data = _b64(section.bindata, section, label)
    elif section.href is not None:
        member = _member_for(section.href, package, label, f"{section.where}/mdRef")
        name = member
        with package.open(member) as fh:
            data = fh.read(MAX_SECTION_BYTES + 1)
        if len(data) > MAX_SECTION_BYTES:
            raise PackageValidationError(f"{label}: {member} is too large for metadata", [
                Detail("metadata file larger than allowed", file=member,
                       expected=f"at most {MAX_SECTION_BYTES} bytes")])
    if not data:
        return []
    try:
        return [xmlsafe.fromstring(data, name=name, max_bytes=MAX_SECTION_BYTES)]
    except UnsafeInput:
        raise
    except InvalidInput as exc:
        if type(exc) is not InvalidInput:
            raise
        raise PackageValidationError(f"{label}: the metadata in {name} is not well-formed "
                                     "XML", exc.details) from None


def _b64(text: str, section: MdSection, label: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise PackageValidationError(f"{label}: binData of {section.where} is not base64", [
            Detail("binData is not valid base64", file=MANIFEST,
                   field=f"{section.where}/mdWrap/binData")]) from None


def _member_for(href: str, package: PackageFiles, label: str, where: str) -> str:
    """The member a relative href names; unsafe and missing ones are refused."""
    if is_url(href):
        raise PackageValidationError(
            f"{label}: {href} is not in the package; davpack never fetches content",
            [Detail("referenced by URL: only files inside the package are read", file=href,
                    field=where)])
    problem = href_problem(href)
    if problem is not None:
        raise UnsafeInput(f"{label}: {where} points outside the package", [
            Detail(f"unsafe reference ({problem})", file=href, field=where, found=href)])
    member = package.find(href)
    if member is None:
        raise PackageValidationError(
            f"{label}: the manifest lists {href}, which is not in the package",
            [Detail("file listed in mets.xml is missing from the package", file=href,
                    field=where)])
    return member


# ---------------------------------------------------------------------------------------
# Files


def _plan_files(mf: SipManifest, package: PackageFiles, opts: IngestOptions,
                warnings: list[str], label: str) -> list[FilePlan]:
    plans: list[FilePlan] = []
    unsafe: list[Detail] = []
    missing: list[Detail] = []
    for f in mf.files:
        where = f"file[@ID={f.id}]/FLocat/@xlink:href"
        plan = FilePlan(file=f, bundle=f.bundle, name=f.href, mime_type="")
        techmd = read_techmd(_xml_root(mf.section(f.admids, "sourceMD", MD_TECHMD)))
        premis_section = mf.section(f.admids, "techMD", MD_PREMIS)
        plan.premis = read_premis(_xml_root(premis_section))
        plan.rights = [s for s in mf.sections(f.admids, "rightsMD") if s.is_type(MD_RIGHTS)]
        if is_url(f.href):
            pass  # a bitstream of this repository: resolved in _resolve_local
        elif package.bare:
            missing.append(Detail("a bare mets.xml can only refer to files by the URL of a "
                                  "bitstream of this repository", file=f.href, field=where))
            continue
        else:
            problem = href_problem(f.href)
            if problem is not None:
                unsafe.append(Detail(f"unsafe reference ({problem})", file=f.href, field=where,
                                     found=f.href))
                continue
            plan.member = package.find(f.href)
            if plan.member is None:
                missing.append(Detail("file listed in mets.xml is missing from the package",
                                      file=f.href, field=where))
                continue
            plan.name = plan.member
        plan.name = (techmd.first("dc.title") or plan.premis.original_name or plan.name).strip() \
            or plan.name
        plan.description = techmd.first("dc.description")
        plan.source = techmd.first("dc.title.alternative")
        premis_mime = plan.premis.format_name if plan.premis.format_name and \
            "/" in plan.premis.format_name else None
        plan.mime_type = (f.mimetype or premis_mime or techmd.first("dc.format.mimetype")
                          or itemkit.guess_mime(plan.name))
        plans.append(plan)
    if unsafe:
        raise UnsafeInput(f"{label}: the manifest points outside the package", unsafe)
    if missing:
        if not opts.ignore_missing or package.bare:
            raise PackageValidationError(
                f"{label}: files the manifest lists are missing from the package", missing)
        warnings.append("file(s) listed in mets.xml but missing from the package were left "
                        "out (ignoreMissingFiles): " + ", ".join(d.file or "" for d in missing))
    if not package.bare:
        used = {p.member for p in plans}
        used.update(package.find(s.href) for s in _all_sections(mf) if s.href)
        extra = sorted(n for n in package.names() if n not in used)
        if extra:
            warnings.append(f"{len(extra)} file(s) in the package are not listed in mets.xml "
                            "and were left out: " + ", ".join(extra[:10])
                            + (" ..." if len(extra) > 10 else ""))
    return plans


def _all_sections(mf: SipManifest) -> list[MdSection]:
    out = list(mf.dmd.values())
    for sections in mf.adm.values():
        out.extend(s for s in sections if s not in out)
    return out


def _xml_root(section: MdSection | None) -> Any | None:
    if section is None or not section.elements:
        return None
    return section.elements[0]


def _resolve_local(ctx: Context, plans: list[FilePlan], base_url: str, label: str) -> None:
    """Absolute URLs must name readable bitstreams of this repository."""
    foreign: list[Detail] = []
    for plan in plans:
        href = plan.file.href
        if plan.member is not None or not is_url(href):
            continue
        bitstream = local_bitstream(ctx, href, base_url)
        if bitstream is None:
            foreign.append(Detail("not a bitstream of this repository that you may read; "
                                  "davpack never fetches content from the network",
                                  file=href, field=f"file[@ID={plan.file.id}]/FLocat"))
            continue
        plan.local_sha256 = bitstream.sha256
        if plan.name == href:
            plan.name = bitstream.name
        if not plan.file.mimetype:
            plan.mime_type = bitstream.mime_type
        plan.description = plan.description or bitstream.description
    if foreign:
        raise PackageValidationError(
            f"{label}: files referenced by URL are not in this repository (send a zip with "
            "mets.xml and the files instead)", foreign)


def _check_fields(ctx: Context, values: list[Value], opts: IngestOptions, label: str) -> None:
    """Unknown schemas always fail (they are never created); unknown fields fail unless
    createMetadataFields is set.  Checked before anything is staged."""
    problems: list[Detail] = []
    seen: set[str] = set()
    for value in values:
        if value.field in seen:
            continue
        seen.add(value.field)
        if metadata.get_schema(ctx, value.schema) is None:
            problems.append(Detail("unknown metadata schema (create it first)", file=MANIFEST,
                                   field=value.field))
            continue
        if opts.create_fields:
            continue
        try:
            metadata.get_field(ctx, value.field)
        except UnknownMetadataField:
            problems.append(Detail("unknown metadata field (or use createMetadataFields)",
                                   file=MANIFEST, field=value.field))
    if problems:
        raise UnknownMetadataField(
            f"{label}: metadata fields not in the registry: "
            + ", ".join(sorted(d.field or "" for d in problems)), problems)


# ---------------------------------------------------------------------------------------
# Licences (rightsMD)


def _plan_streams(mf: SipManifest, package: PackageFiles, plans: list[FilePlan],
                  opts: IngestOptions, warnings: list[str], label: str) -> list[StreamPlan]:
    bundles = {p.bundle for p in plans}
    out: list[StreamPlan] = []
    wanted = [(MD_DEPOSIT_LICENSE, "LICENSE", "license.txt", "text/plain; charset=utf-8",
               "License"),
              (MD_CC_RDF, "CC-LICENSE", "license_rdf", "application/rdf+xml; charset=utf-8",
               "RDF XML"),
              (MD_CC_TEXT, "CC-LICENSE", "license_text", "text/plain; charset=utf-8",
               "CC License")]
    for mdtype, bundle, name, mime, fmt in wanted:
        section = mf.section(mf.item.admids, "rightsMD", mdtype)
        if section is None:
            continue
        if bundle in bundles:  # the fileSec already brought that bundle
            continue
        stream = StreamPlan(bundle, name, mime, fmt)
        if section.elements:
            stream.data = etree.tostring(section.elements[0], encoding="utf-8",
                                         xml_declaration=True)
        elif section.bindata is not None:
            stream.data = _b64(section.bindata, section, label)
        elif section.href is not None:
            if is_url(section.href):
                warnings.append(f"the {mdtype} licence at {section.href} is not fetched; left "
                                "out")
                continue
            try:
                stream.member = _member_for(section.href, package, label,
                                            f"{section.where}/mdRef")
            except PackageValidationError:
                if not opts.ignore_missing:
                    raise
                warnings.append(f"the {mdtype} licence {section.href} is missing from the "
                                "package; left out (ignoreMissingFiles)")
                continue
        else:
            continue
        out.append(stream)
    return out


# ---------------------------------------------------------------------------------------
# Staging and checking content


class _Digesting:
    """Feeds every byte read to the hasher of a declared checksum the store does not
    compute itself (SHA-1, SHA-384, SHA-512, Adler-32)."""

    def __init__(self, raw: IO[bytes], algorithm: str | None) -> None:
        self._raw = raw
        self.algorithm = algorithm
        self._hasher: Any = None
        self._adler = 1
        if algorithm in ("sha1", "sha384", "sha512"):
            self._hasher = hashlib.new(algorithm)

    def _feed(self, data: Any) -> None:
        if self._hasher is not None:
            self._hasher.update(data)
        elif self.algorithm == "adler32":
            self._adler = zlib.adler32(data, self._adler)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._feed(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer) or 0  # type: ignore[attr-defined]
        self._feed(memoryview(buffer)[:n])
        return n

    def hexdigest(self) -> str | None:
        if self._hasher is not None:
            return str(self._hasher.hexdigest())
        if self.algorithm == "adler32":
            return f"{self._adler:08x}"
        return None


def _algorithm(f: MetsFile) -> tuple[str | None, str | None]:
    """(algorithm, warning) for a file's declared checksum."""
    if f.checksum is None:
        return None, None
    if f.checksum_type is None:
        guessed = _BY_LENGTH.get(len(f.checksum))
        if guessed is None:
            return None, f"{f.href}: CHECKSUM without CHECKSUMTYPE not verified"
        return guessed, None
    found = ALGORITHMS.get(f.checksum_type.upper())
    if found is None:
        return None, f"{f.href}: checksum type {f.checksum_type} not supported; not verified"
    return found, None


def _stage(files: itemkit.StagedFiles, package: PackageFiles, plans: list[FilePlan],
           streams: list[StreamPlan], warnings: list[str], label: str) -> None:
    problems: list[Detail] = []
    for plan in plans:
        f = plan.file
        algorithm, note = _algorithm(f)
        if plan.member is not None:
            with package.open(plan.member) as raw:
                reader = _Digesting(raw, algorithm)
                plan.staged = files.stage(cast(BinaryIO, reader), name=plan.member)
            digests = plan.staged.digests
            computed = {"md5": digests.md5, "sha256": digests.sha256,
                        "crc32": f"{digests.crc32:08x}"}
            extra = reader.hexdigest()
            if extra is not None and algorithm is not None:
                computed[algorithm] = extra
            size = digests.size
        else:
            continue  # local content: checked against its recorded facts below
        problems.extend(_mismatches(plan, computed, size))
        if note:
            warnings.append(note)
    for stream in streams:
        if stream.member is not None:
            with package.open(stream.member) as raw:
                stream.staged = files.stage(raw, name=stream.member)
        elif stream.data is not None:
            stream.staged = files.stage(io.BytesIO(stream.data), name=stream.name)
    if problems:
        raise PackageValidationError(
            f"{label}: files do not match their manifest (size or checksum)", problems)


def _mismatches(plan: FilePlan, computed: dict[str, str], size: int) -> list[Detail]:
    f = plan.file
    out: list[Detail] = []
    if f.size is not None and f.size != size:
        out.append(Detail("size does not match the manifest", file=f.href, field="SIZE",
                          expected=str(f.size), found=str(size)))
    algorithm, _ = _algorithm(f)
    if algorithm is not None and f.checksum is not None:
        got = computed.get(algorithm)
        if got is not None and got.lower() != f.checksum.strip().lower():
            out.append(Detail(f"{f.checksum_type or algorithm.upper()} checksum does not "
                              "match the manifest", file=f.href, field="CHECKSUM",
                              expected=f.checksum.lower(), found=got))
    premis = plan.premis
    if premis.size_text is not None and premis.size != size:
        out.append(Detail("size does not match the PREMIS size", file=f.href,
                          field="premis:size", expected=premis.size_text, found=str(size)))
    if premis.digest and premis.algorithm:
        key = ALGORITHMS.get(premis.algorithm.strip().upper().replace("SHA1", "SHA-1"))
        got = computed.get(key) if key else None
        if got is not None and got.lower() != premis.digest.lower():
            out.append(Detail("checksum does not match the PREMIS fixity", file=f.href,
                              field="premis:messageDigest", expected=premis.digest.lower(),
                              found=got))
    return out


# ---------------------------------------------------------------------------------------
# Writing the item


def _add_files(ctx: Context, item: m.Item, files: itemkit.StagedFiles,
               plans: list[FilePlan], mf: SipManifest, warnings: list[str]) -> None:
    seqs = [p.file.seq for p in plans if p.file.seq is not None]
    used: set[int] = set()
    for plan in plans:
        if plan.staged is not None:
            content = files.keep(ctx, plan.staged)
        else:
            assert plan.local_sha256 is not None
            found = ctx.session.scalars(
                select(m.StoredContent).where(m.StoredContent.sha256 == plan.local_sha256)
                .with_for_update(read=True)).first()
            if found is None:
                raise Conflict(f"the content of {plan.file.href} was removed meanwhile",
                               [Detail("content no longer stored", file=plan.file.href)])
            content = found
            problems = _mismatches(plan, {"md5": content.md5, "sha256": content.sha256,
                                          "crc32": f"{content.crc32:08x}"}, content.size)
            if problems:
                raise PackageValidationError(
                    f"{plan.file.href} does not match its manifest (size or checksum)",
                    problems)
        seq = plan.file.seq
        if seq is not None and (seq in used or seq == 0):
            warnings.append(f"{plan.file.href}: SEQ {seq} is used twice; a new one was given")
            seq = None
        if seq is None:
            seq = max([*seqs, *used, 0]) + 1
        used.add(seq)
        bundle = objects.bundle_named(ctx, item, plan.bundle)
        bitstream = objects.add_bitstream(ctx, bundle, content, name=plan.name,
                                          mime_type=plan.mime_type,
                                          description=plan.description, source=plan.source,
                                          sequence_id=seq,
                                          primary=plan.file.id == mf.item.fptr)
        plan.bitstream_id = bitstream.id


def _add_streams(ctx: Context, item: m.Item, files: itemkit.StagedFiles,
                 streams: list[StreamPlan], request: IngestRequest) -> None:
    for stream in streams:
        assert stream.staged is not None
        content = files.keep(ctx, stream.staged)
        itemkit.add_file(ctx, item, stream.bundle, content, name=stream.name,
                         mime_type=stream.mime_type, format_name=stream.format_name,
                         source=stream.name)
    if objects.get_bundle(item, "LICENSE") is None:
        itemkit.add_license(ctx, item, files, request)


def _embargoes(ctx: Context, collection: m.Collection, item: m.Item, plans: list[FilePlan],
               warnings: list[str]) -> None:
    """METSRights READ policies of a file delay its access (an embargo) for the groups
    that would read it by the collection's defaults; they never widen access, and no
    other action is taken from a package."""
    defaults = {p.group.name: p for p in collection.policies
                if p.action is m.Action.DEFAULT_BITSTREAM_READ and p.group is not None}
    by_id = {b.id: b for bundle in item.bundles for b in bundle.bitstreams}
    for plan in plans:
        if not plan.rights:
            continue
        bitstream = by_id.get(plan.bitstream_id) if plan.bitstream_id else None
        if bitstream is None:
            continue
        kept = 0
        for section in plan.rights:
            root = _xml_root(section)
            if root is None:
                continue
            read = read_rights(root)
            warnings.extend(f"{plan.file.href}: {w}" for w in read.warnings)
            for spec in read.policies:
                default = defaults.get(spec.group or "")
                if spec.action is not m.Action.READ or default is None:
                    warnings.append(f"{plan.file.href}: METSRights {spec.action.value} for "
                                    f"{spec.subject} ignored (a package may only delay the "
                                    "collection's default read access)")
                    continue
                start = _later(spec.start, default.start_date)
                authz.add_policy(ctx, bitstream, m.Action.READ, group=default.group,
                                 start_date=start, end_date=spec.end,
                                 name=spec.name or "embargo", rptype="TYPE_CUSTOM")
                kept += 1
        if kept:
            # the other default readers keep their access
            granted = {p.group_id for p in bitstream.policies}
            for default in defaults.values():
                if default.group is not None and default.group.id not in granted:
                    authz.add_policy(ctx, bitstream, m.Action.READ, group=default.group,
                                     start_date=default.start_date, end_date=default.end_date)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)

