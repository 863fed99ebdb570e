"""PDF: one PDF file in, one item out; an item's PDF out (DSpace's ``PDFPackager``).

Ingest (parent: a collection) creates an item whose ORIGINAL bundle holds the file (its
primary bitstream, format "Adobe PDF") and whose metadata comes from the PDF's document
information dictionary, mapped as DSpace does (design notes §6.4):

====================  ==================================================================
Info entry            DSpace field
====================  ==================================================================
Title                 ``dc.title`` (required; see option ``titleFromFilename``)
Author                ``dc.contributor.author``
Subject               ``dc.description.abstract``
Keywords              ``dc.subject.other`` (one value, not split)
Creator               ``dc.description.provenance`` "Application that created ..."
Producer              ``dc.description.provenance`` "Original document converted ..."
CreationDate/ModDate  ``dc.date.created`` (the first readable one, in UTC)
====================  ==================================================================

Disseminate: the item's primary bitstream when it is a PDF, else the first PDF of
ORIGINAL, served straight from the store (exact size, byte ranges).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from packagers import itemkit
from packagers.base import (
    INGEST,
    Disseminator,
    FilePackage,
    Ingester,
    IngestRequest,
    IngestResult,
    Operation,
    Option,
    Package,
    PackageSource,
    StreamPackage,
)
from packagers.errors import PackageValidationError, UnsupportedOperation
from packagers.params import PackageParameters
from packagers.pdf.info import HEADER_WINDOW, PdfInfo, find_header, read_info
from server import models as m
from server.errors import Detail
from server.services import authz
from server.services.metadata import Value
from server.store import ContentStore

PDF_MIME = "application/pdf"
PDF_FORMAT = "Adobe PDF"


class PDFPackager(Ingester, Disseminator):
    name = "PDF"
    aliases = ("Adobe PDF",)
    description = ("A single PDF: ingested as a new item described by the PDF's info "
                   "dictionary; an item disseminated as its primary PDF.")
    mime_types = (PDF_MIME, "application/x-pdf")
    extension = "pdf"
    ingest_parent_types = frozenset({m.ObjectType.COLLECTION})
    disseminate_types = frozenset({m.ObjectType.ITEM})
    options: ClassVar[tuple[Option, ...]] = (
        Option("titleFromFilename",
               "When the PDF has no Title (or it cannot be read), use the file name as "
               "dc.title, with a warning; false refuses such PDFs, as DSpace does.",
               default="true", applies_to=INGEST),
        Option("allowEncrypted",
               "Accept a PDF that cannot be opened without a password (its metadata then "
               "comes from the file name); by default such PDFs are refused.",
               default="false", applies_to=INGEST),
        Option("bundle", "Bundle searched on dissemination.", default="ORIGINAL",
               applies_to=frozenset({"disseminate"})),
    )

    @classmethod
    def sniff(cls, source: PackageSource) -> bool:
        """``%PDF-`` in the first 1024 bytes -- unless those bytes start a zip or a tar,
        whose first (stored) member may well be a PDF: that is a package, not a PDF."""
        if source.is_directory:
            return False
        head = source.head(HEADER_WINDOW)
        if head.startswith(b"PK\x03\x04") or head[257:262] == b"ustar":
            return False
        return find_header(head) >= 0

    # -- ingest --------------------------------------------------------------------------

    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        label = source.label
        if source.is_directory:
            raise PackageValidationError(f"{label} is a directory; the PDF packager reads "
                                         "one PDF file", [Detail("not a file", file=label)])
        title_from_name = request.params.get_bool("titleFromFilename", True)
        allow_encrypted = request.params.get_bool("allowEncrypted", False)
        with op.context(write=False) as ctx:  # fail early, before copying the bytes
            collection = itemkit.parent_collection(ctx, request, self.name)
            authz.authorize(ctx, collection, m.Action.ADD)
        info = read_info(source.path, label)
        file_name = bitstream_name(source)
        values, warnings = self.describe_pdf(info, file_name, label, title_from_name,
                                             allow_encrypted)
        with itemkit.StagedFiles(op.repo) as files:
            with source.open() as fh:
                staged = files.stage(fh, name=file_name)
            with op.context() as ctx:
                collection = itemkit.parent_collection(ctx, request, self.name)
                item = itemkit.new_item(ctx, collection)
                itemkit.add_metadata(ctx, item, values)
                content = files.keep(ctx, staged)
                itemkit.add_file(ctx, item, "ORIGINAL", content, name=file_name,
                                 mime_type=PDF_MIME, primary=True, format_name=PDF_FORMAT,
                                 format_support="KNOWN")
                itemkit.add_license(ctx, item, files, request)
                itemkit.finish_item(ctx, item, request)
                record = itemkit.created(item, source, warnings)
        op.report(record)
        return IngestResult(objects=[record], warnings=list(warnings))

    def describe_pdf(self, info: PdfInfo, file_name: str, label: str, title_from_name: bool,
                     allow_encrypted: bool) -> tuple[list[Value], list[str]]:
        """The item's metadata and the warnings, or a refusal."""
        warnings = list(info.warnings)
        if info.needs_password and not allow_encrypted:
            raise PackageValidationError(
                f"{label} is encrypted and needs a password to open",
                [Detail("password-protected PDFs are refused (option allowEncrypted=true "
                        "accepts them)", file=label, field="/Encrypt")])
        if info.needs_password:
            warnings.append(f"{label} needs a password to open; its metadata could not be "
                            "read")
        if info.problem:
            warnings.append(f"{label}: {info.problem}; metadata comes from the file name")
        values: list[Value] = []
        title = info.title
        if title is None:
            if not title_from_name:
                raise PackageValidationError(
                    f"{label} has no title in its document information",
                    [Detail("the PDF info dictionary has no Title (option "
                            "titleFromFilename=true uses the file name)", file=label,
                            field="/Title")])
            title = _title_from(file_name)
            warnings.append(f"{label} has no readable Title; dc.title is the file name "
                            f"{title!r}")
        values.append(Value("dc.title", title))
        if info.author:
            values.append(Value("dc.contributor.author", info.author))
        if info.creator:
            values.append(Value("dc.description.provenance", "Application that created the "
                                f"original document: {info.creator}", "en"))
        if info.producer:
            values.append(Value("dc.description.provenance", "Original document converted "
                                f"to PDF by: {info.producer}", "en"))
        if info.subject:
            values.append(Value("dc.description.abstract", info.subject))
        if info.keywords:
            values.append(Value("dc.subject.other", info.keywords))
        if info.created:
            values.append(Value("dc.date.created", info.created))
        return values, warnings

    # -- disseminate ---------------------------------------------------------------------

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        bundle_name = params.get_str("bundle", "ORIGINAL") or "ORIGINAL"
        with op.context(write=False) as ctx:
            item = itemkit.load_item(ctx, target, self.name)
            snapshot = itemkit.snapshot_item(ctx, item)
        candidates = [f for f in snapshot.bundle(bundle_name) if _is_pdf(f)]
        if not candidates:
            raise UnsupportedOperation(
                f"item {snapshot.handle or snapshot.id} has no PDF in {bundle_name} that you "
                "may read", [Detail("no PDF bitstream", field="bundle", found=bundle_name,
                                    expected=PDF_MIME)])
        chosen = next((f for f in candidates if f.primary), candidates[0])
        return stored_file_package(op.repo.store, chosen, last_modified=snapshot.last_modified)


def _is_pdf(facts: itemkit.FileFacts) -> bool:
    return (facts.mime_type.split(";")[0].strip().lower() in PDFPackager.mime_types
            or facts.name.lower().endswith(".pdf"))


def bitstream_name(source: PackageSource) -> str:
    """The stored name: the client's file name (last path component, made safe), else
    ``package.pdf`` as DSpace names it."""
    raw = (source.name or "").replace("\\", "/").rsplit("/", 1)[-1]
    raw = re.sub(r"[\x00-\x1f\x7f]", "", raw).strip()
    if not raw or raw in (".", ".."):
        return "package.pdf"
    if not raw.lower().endswith(".pdf"):
        raw += ".pdf"
    return raw


def _title_from(file_name: str) -> str:
    stem = file_name[:-4] if file_name.lower().endswith(".pdf") else file_name
    return stem or file_name


def stored_file_package(store: ContentStore, facts: itemkit.FileFacts, *,
                        last_modified: datetime) -> Package:
    name = facts.name.rsplit("/", 1)[-1] or "document.pdf"
    path: Path | None = store.local_path(facts.sha256)
    if path is not None:
        return FilePackage(path, mime_type=PDF_MIME, file_name=name,
                           last_modified=last_modified, etag=facts.sha256)
    return StreamPackage(lambda: store.open(facts.sha256), facts.size, mime_type=PDF_MIME,
                         file_name=name, last_modified=last_modified, etag=facts.sha256)
