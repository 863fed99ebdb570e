"""AIP: DSpace's METS Archival Information Packages, read and written so that nothing is lost.

Profile ``http://www.dspace.org/schema/aip/mets_aip_1_0.xsd`` (dspace-aip.md §2-§7): a zip
holding ``mets.xml`` and the object's files; one AIP per site, community, collection or
item, containers pointing to their children by handle and file name.  What DSpace's profile
cannot carry (bundle and bitstream metadata, exact policies, discoverable, times,
relationships) travels in davpack's own sections, which DSpace skips
(:mod:`packagers.aip.crosswalks.extension`).

* :mod:`packagers.aip.disseminate` writes AIPs: one object (exact size, byte ranges), a
  directory of AIPs for a hierarchy (``-a``), or one zip of all of them (``all=true``).
* :mod:`packagers.aip.ingest` reads them in DSpace's modes: submit, restore, restore
  keeping existing objects, force replace; one package or a hierarchy (a directory, or an
  uploaded zip of AIPs); all or nothing.
* :mod:`packagers.aip.validation` checks manifests against local XML schemas.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, ClassVar

from packagers.aip.disseminate import disseminate_one, disseminate_tree
from packagers.aip.ingest import run_ingest, scratch_root
from packagers.aip.mets import MANIFEST, PROFILE
from packagers.aip.options import OPTIONS, ExportOptions
from packagers.base import (
    Disseminator,
    Ingester,
    IngestRequest,
    IngestResult,
    Operation,
    Option,
    Package,
    PackageSource,
    package_file_name,
)
from packagers.params import PackageParameters
from server import models as m
from server.archive import SafeArchive, junk_name
from server.errors import DavpackError

_PROFILE = re.compile(rb'PROFILE\s*=\s*["\']' + re.escape(PROFILE.encode()) + rb'["\']')


class AIPPackager(Ingester, Disseminator):
    name = "AIP"
    aliases = ("DSpace AIP",)
    description = ("DSpace METS AIP (mets_aip_1_0): backup, restore and migration of sites, "
                   "communities, collections and items with everything they hold.")
    mime_types = ("application/zip",)
    extension = "zip"
    options: ClassVar[tuple[Option, ...]] = OPTIONS
    ingest_parent_types = frozenset({m.ObjectType.SITE, m.ObjectType.COMMUNITY,
                                     m.ObjectType.COLLECTION})
    replace_types = frozenset({m.ObjectType.SITE, m.ObjectType.COMMUNITY,
                               m.ObjectType.COLLECTION, m.ObjectType.ITEM})
    disseminate_types = frozenset({m.ObjectType.SITE, m.ObjectType.COMMUNITY,
                                   m.ObjectType.COLLECTION, m.ObjectType.ITEM})
    roundtrip_exact = False
    roundtrip_note = ("An AIP names its object: submitting one (the default mode) makes a new "
                      "object, so the new AIP carries a new UUID, handle and parent and the "
                      "accession dates and provenance of the submit. Files, metadata values "
                      "and structure come back unchanged; a restore (-r) round trip is "
                      "byte-identical, and a whole site restored with -r -a -f exports to the "
                      "same AIPs (tests/test_aip_roundtrip.py).")

    @classmethod
    def sniff(cls, source: PackageSource) -> bool:
        """A zip whose ``mets.xml`` declares the AIP profile, or a zip of ``*.zip`` AIPs."""
        if source.is_directory or source.head(4) != b"PK\x03\x04":
            return False
        try:
            with SafeArchive.open(source.path) as archive:
                if archive.has(MANIFEST):
                    with archive.open(MANIFEST) as fh:
                        return bool(_PROFILE.search(fh.read(65536)))
                names = [n for n in archive.names() if not junk_name(n)]
                return bool(names) and all(n.lower().endswith(".zip") for n in names)
        except (DavpackError, OSError):
            return False

    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        return run_ingest(op, source, request)

    def replace(self, op: Operation, target: uuid.UUID, source: PackageSource,
                request: IngestRequest) -> IngestResult:
        return run_ingest(op, source, request, target=target)

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        options = ExportOptions.from_params(params, op.now)
        return disseminate_one(op, target, options, scratch_root(op.repo))

    def disseminate_all(self, op: Operation, target: uuid.UUID, params: PackageParameters,
                        dest: Path) -> list[Path]:
        options = ExportOptions.from_params(params, op.now)
        return disseminate_tree(op, target, options, dest)

    def file_name(self, obj: Any, params: PackageParameters) -> str:
        options = ExportOptions.from_params(params, None)
        if options.manifest_only:
            return package_file_name(obj, "xml")
        name = package_file_name(obj, "zip")
        return name.removesuffix(".zip") + "-all.zip" if options.all else name


__all__ = ["AIPPackager"]
