"""IMSCP: IMS Content Packages (and their SCORM / Common Cartridge profiles) as items.

Ingest (parent: a collection): ``imsmanifest.xml`` must be at the root of the zip (or of
the directory, on the command line).  Every file of the package except the manifest and
operating-system clutter goes into ORIGINAL under its path in the package (the launch file
of the default organization becomes the primary bitstream); every file a resource
references must exist; files no resource references are kept and reported.  The manifest
itself is kept, byte for byte, as ``imsmanifest.xml`` in the METADATA bundle.

Disseminate: a zip of the ORIGINAL files plus a manifest - the stored original (option
``manifest=original``, the default, when the item has one) or one generated from the
item's metadata (``manifest=generate``).  IMS CP carries no dates, so members are dated
1980-01-01: equal content gives equal bytes.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, ClassVar

from packagers import itemkit
from packagers.bagit.bag import check_directory
from packagers.base import (
    DISSEMINATE,
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
from packagers.imscp.manifest import (
    MANIFEST,
    ManifestFacts,
    lom_values,
    read_manifest,
    write_manifest,
)
from packagers.params import PackageParameters
from server import models as m
from server import xmlsafe
from server.archive import SafeArchive, junk_name
from server.errors import DavpackError, Detail, InvalidInput, UnsafeInput
from server.services import authz
from server.services.metadata import Value
from server.zipstream import ZipEntry, ZipLayout

MAX_MANIFEST = 16 * 1024 * 1024
FIXED_TIME = datetime(1980, 1, 1)


def repaired_name(name: str) -> str:
    """Zips made without the UTF-8 flag (macOS Archive Utility, old Info-ZIP) store UTF-8
    names that readers decode as CP437 (a Chinese name arrives as box-drawing and Greek
    letters); undo that when the CP437 bytes are valid UTF-8."""
    if name.isascii():
        return name
    try:
        return name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


class _PackageFiles:
    """The files of a package, from a zip or a directory, by package path."""

    def __init__(self, source: PackageSource) -> None:
        self.label = source.label
        self._archive: SafeArchive | None = None
        self._dir: Path | None = None
        self._raw: dict[str, str] = {}
        if source.is_directory:
            check_directory(source.path, self.label)
            self._dir = source.path.resolve()
            for dirpath, _dirs, names in os.walk(self._dir):
                for name in names:
                    rel = Path(dirpath, name).relative_to(self._dir).as_posix()
                    self._raw[rel] = rel
        else:
            self._archive = SafeArchive.open(source.path, name=self.label)
            for raw in self._archive.names():
                self._raw.setdefault(repaired_name(raw), raw)

    def names(self) -> list[str]:
        return [n for n in self._raw if not junk_name(n)]

    def has(self, name: str) -> bool:
        return name in self._raw

    def open(self, name: str) -> IO[bytes]:
        raw = self._raw[name]
        if self._archive is not None:
            return self._archive.open(raw)
        assert self._dir is not None
        return open(self._dir / raw, "rb")

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()


@contextmanager
def _package_files(source: PackageSource) -> Iterator[_PackageFiles]:
    files = _PackageFiles(source)
    try:
        yield files
    finally:
        files.close()


class IMSCPPackager(Ingester, Disseminator):
    name = "IMSCP"
    aliases = ("IMS CP", "IMS-CP", "SCORM")
    description = ("IMS Content Packages (IMS CP 1.1.x/1.2, SCORM, Common Cartridge): files "
                   "into ORIGINAL, the manifest into METADATA; items disseminated as IMS CP "
                   "zips.")
    mime_types = ("application/zip", "application/x-zip-compressed")
    extension = "zip"
    sword_packaging = ("http://purl.org/net/sword/package/IMSCP",)
    ingest_parent_types = frozenset({m.ObjectType.COLLECTION})
    disseminate_types = frozenset({m.ObjectType.ITEM})
    options: ClassVar[tuple[Option, ...]] = (
        Option("manifest", "original: the manifest the package came with (when the item "
               "has one); generate: a manifest made from the item's current metadata.",
               default="original", applies_to=DISSEMINATE),
        Option("keepUnreferenced", "Keep files no resource references (true), or leave them "
               "out with a warning (false).", default="true", applies_to=INGEST),
    )

    @classmethod
    def sniff(cls, source: PackageSource) -> bool:
        if source.is_directory:
            return (source.path / MANIFEST).is_file()
        if source.head(4) != b"PK\x03\x04":
            return False
        try:
            with SafeArchive.open(source.path, name=source.label) as archive:
                return archive.has(MANIFEST)
        except (DavpackError, OSError):
            return False

    # -- ingest --------------------------------------------------------------------------

    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        label = source.label
        keep_unreferenced = request.params.get_bool("keepUnreferenced", True)
        with op.context(write=False) as ctx:
            collection = itemkit.parent_collection(ctx, request, self.name)
            authz.authorize(ctx, collection, m.Action.ADD)
        with _package_files(source) as package:
            facts, manifest_bytes = self._manifest(package)
            warnings = list(facts.warnings)
            names = [n for n in package.names() if n != MANIFEST]
            missing = [p for p in facts.referenced if not package.has(p)]
            if missing:
                raise PackageValidationError(
                    f"{label}: files the manifest references are missing",
                    [Detail("referenced by imsmanifest.xml but not in the package", file=p)
                     for p in missing])
            referenced = set(facts.referenced)
            unreferenced = sorted(n for n in names if n not in referenced)
            if unreferenced:
                action = "kept" if keep_unreferenced else "left out"
                warnings.append(f"{len(unreferenced)} file(s) no resource references were "
                                f"{action}: " + ", ".join(unreferenced[:10])
                                + (" ..." if len(unreferenced) > 10 else ""))
                if not keep_unreferenced:
                    names = [n for n in names if n in referenced]
            values = list(facts.values)
            if facts.lom_location and package.has(facts.lom_location):
                with package.open(facts.lom_location) as fh:
                    lom = xmlsafe.parse(fh, name=facts.lom_location,
                                        max_bytes=MAX_MANIFEST).getroot()
                values.extend(lom_values(lom))
            if not any(v.field == "dc.title" for v in values):
                title = facts.title or _stem(label)
                values.insert(0, Value("dc.title", title))
                if not facts.title:
                    warnings.append(f"the package gives no title; dc.title is {title!r}")
            with itemkit.StagedFiles(op.repo) as files:
                staged = []
                for name in sorted(names):
                    with package.open(name) as fh:
                        staged.append((name, files.stage(fh, name=name)))
                manifest_staged = files.stage(io.BytesIO(manifest_bytes), name=MANIFEST)
                with op.context() as ctx:
                    collection = itemkit.parent_collection(ctx, request, self.name)
                    item = itemkit.new_item(ctx, collection)
                    itemkit.add_metadata(ctx, item, values)
                    for name, content in staged:
                        stored = files.keep(ctx, content)
                        itemkit.add_file(ctx, item, "ORIGINAL", stored, name=name,
                                         primary=name == facts.launch)
                    stored = files.keep(ctx, manifest_staged)
                    itemkit.add_file(ctx, item, "METADATA", stored, name=MANIFEST,
                                     mime_type="text/xml")
                    itemkit.add_license(ctx, item, files, request)
                    itemkit.finish_item(ctx, item, request)
                    record = itemkit.created(item, source, warnings)
        op.report(record)
        return IngestResult(objects=[record], warnings=warnings)

    def _manifest(self, package: _PackageFiles) -> tuple[ManifestFacts, bytes]:
        label = package.label
        if not package.has(MANIFEST):
            nested = sorted(n for n in package.names() if n.endswith("/" + MANIFEST))
            if nested:
                raise PackageValidationError(
                    f"{label}: imsmanifest.xml is not at the root of the package",
                    [Detail("the manifest must be at the root, not in a folder", file=nested[0],
                            expected=MANIFEST, found=nested[0])])
            raise PackageValidationError(f"{label}: not an IMS content package", [Detail(
                "no imsmanifest.xml in the package", file=label, expected=MANIFEST)])
        with package.open(MANIFEST) as fh:
            data = fh.read(MAX_MANIFEST + 1)
        if len(data) > MAX_MANIFEST:
            raise PackageValidationError(f"{label}: imsmanifest.xml is too large", [Detail(
                "manifest larger than allowed", file=MANIFEST,
                expected=f"at most {MAX_MANIFEST} bytes")])
        try:
            root = xmlsafe.fromstring(data, name=MANIFEST)
        except UnsafeInput:
            raise
        except InvalidInput as exc:
            raise PackageValidationError(f"{label}: imsmanifest.xml is not well-formed XML",
                                         exc.details) from None
        return read_manifest(root, label), data

    # -- disseminate ---------------------------------------------------------------------

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        mode = (params.get_str("manifest", "original") or "original").lower()
        if mode not in ("original", "generate"):
            raise PackageValidationError("option manifest must be original or generate", [
                Detail("unknown value", field="manifest", found=mode,
                       expected="original|generate")])
        with op.context(write=False) as ctx:
            item = itemkit.load_item(ctx, target, self.name)
            snapshot = itemkit.snapshot_item(ctx, item)
            file_name = self.file_name(item, params)
        store = op.repo.store
        payload = itemkit.unique_paths(snapshot.bundle("ORIGINAL"),
                                       lambda name: name == MANIFEST)
        stored_manifest = next((f for f in snapshot.bundle("METADATA") if f.name == MANIFEST),
                               None)
        entries: list[ZipEntry]
        if mode == "original" and stored_manifest is not None:
            entries = [itemkit.stored_entry(store, stored_manifest, MANIFEST, FIXED_TIME)]
        else:
            launch = next((path for facts, path in payload if facts.primary), None)
            title = snapshot.first("dc.title") or file_name
            identifier = f"hdl-{snapshot.handle.replace('/', '-')}" if snapshot.handle \
                else f"ID-{snapshot.id}"
            document = write_manifest(identifier, title, snapshot.values,
                                      sorted(path for _, path in payload), launch)
            entries = [ZipEntry.from_bytes(MANIFEST, document, FIXED_TIME)]
        entries.extend(itemkit.stored_entry(store, facts, path, FIXED_TIME)
                       for facts, path in sorted(payload, key=lambda pair: pair[1]))
        return itemkit.ZipPackage(ZipLayout(entries), file_name=file_name,
                                  last_modified=snapshot.last_modified)


def _stem(label: str) -> str:
    name = label.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.lower().endswith(".zip") else name
