"""METS: DSpace's METS SIP profile (SWORD ``METSDSpaceSIP``) in, METS DIPs out.

Ingest (parent: a collection; submit mode only): a zip (or tar; a directory on the command
line) with ``mets.xml`` at its root whose ``PROFILE`` starts with ``DSpace METS SIP
Profile``, or a bare ``mets.xml`` whose files are URLs of bitstreams this repository
already has (nothing is ever downloaded).  See :mod:`packagers.mets.ingest`.

Disseminate (items): a zip of ``mets.xml`` and the item's files, or ``mets.xml`` alone
with ``manifestOnly=true``.  See :mod:`packagers.mets.disseminate`.

Sniffing claims a zip, directory or bare XML document whose ``mets.xml`` root has a
``PROFILE`` starting with ``DSpace METS SIP Profile`` -- nothing else: the AIP packager
claims the AIP profile, and METS of other profiles (Archivematica, E-ARK, Dissemin, or
no profile at all) are not claimed, because they would be refused anyway; choosing METS
explicitly gets the reason.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from packagers.base import (
    BOTH,
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
    package_file_name,
)
from packagers.mets.disseminate import disseminate
from packagers.mets.ingest import run_ingest
from packagers.mets.manifest import MANIFEST, PROFILE_PREFIX
from packagers.mets.sip import looks_like_xml
from packagers.params import PackageParameters
from server import models as m
from server import xmlsafe
from server.archive import SafeArchive
from server.errors import DavpackError

SWORD_URI = "http://purl.org/net/sword/package/METSDSpaceSIP"
SWORD_LEGACY_URI = "http://purl.org/net/sword-types/METSDSpaceSIP"
SNIFF_BYTES = 1024 * 1024


def _is_sip_profile(stream: Any, name: str) -> bool:
    """Whether the document's root is ``mets`` with a DSpace METS SIP profile (reads only
    up to the root element's start tag)."""
    for _event, root in xmlsafe.iterparse(stream, events=("start",), name=name,
                                          max_bytes=SNIFF_BYTES):
        tag = root.tag if isinstance(root.tag, str) else ""
        return (tag == "{http://www.loc.gov/METS/}mets"
                and (root.get("PROFILE") or "").startswith(PROFILE_PREFIX))
    return False


class METSPackager(Ingester, Disseminator):
    name = "METS"
    aliases = ("METSDSpaceSIP", "DSpace METS SIP", "METS SIP")
    description = ("DSpace METS SIP profile (SWORD METSDSpaceSIP): mets.xml with MODS, DIM, "
                   "DC/QDC or EPDCX metadata and files in bundles; items disseminated as "
                   "METS DIPs.")
    mime_types = ("application/zip",)
    extension = "zip"
    sword_packaging = (SWORD_URI, SWORD_LEGACY_URI)
    ingest_parent_types = frozenset({m.ObjectType.COLLECTION})
    disseminate_types = frozenset({m.ObjectType.ITEM})
    roundtrip_exact = False
    roundtrip_note = (
        "A METS DIP names its item: mets/@ID and @OBJID carry the handle, the dmdSecs the "
        "handle URI, accession dates and provenance, PREMIS the bitstream UUIDs and file "
        "IDs the bitstream UUIDs.  A submit gives the copy a new handle, new UUIDs, new "
        "accession dates and one more provenance line, so the second package differs "
        "there; files, their names, sizes, checksums and order, and all other metadata "
        "come back identical.")
    options: ClassVar[tuple[Option, ...]] = (
        Option("dmd", "Disseminate: descriptive metadata sections, in order (repeatable or "
               "comma-separated: MODS, DIM, DC; default MODS, DIM). Ingest: the dmdSec type "
               "to read first (default DIM, else MODS, DC, QDC, EPDCX).", default=None,
               applies_to=BOTH, multiple=True),
        Option("includeBundles", "Bundles written to the fileSec, comma-separated, or "
               "'all'. Default: every bundle but LICENSE, CC-LICENSE and METADATA (the "
               "licences travel as rightsMD).", default=None, applies_to=DISSEMINATE,
               multiple=True),
        Option("manifestOnly", "Disseminate: mets.xml alone, files referenced by their URL "
               "on this server. Ingest: the package is a bare mets.xml whose files are "
               "bitstreams of this repository (nothing is downloaded; also recognised "
               "without the option).", default="false", applies_to=BOTH),
        Option("createMetadataFields", "Create metadata fields the registry lacks (their "
               "schema must exist; schemas are never created).", default="false",
               applies_to=INGEST),
        Option("ignoreMissingFiles", "Leave out, with a warning, files mets.xml lists but "
               "the package lacks, instead of refusing the package.", default="false",
               applies_to=INGEST),
    )

    @classmethod
    def sniff(cls, source: PackageSource) -> bool:
        try:
            if source.is_directory:
                path = source.path / MANIFEST
                if not path.is_file() or path.is_symlink():
                    return False
                with open(path, "rb") as fh:
                    return _is_sip_profile(fh, MANIFEST)
            head = source.head(64)
            if head[:4] == b"PK\x03\x04":
                with SafeArchive.open(source.path, name=source.label) as archive:
                    if not archive.has(MANIFEST):
                        return False
                    with archive.open(MANIFEST) as fh:
                        return _is_sip_profile(fh, MANIFEST)
            if looks_like_xml(head):
                with source.open() as fh:
                    return _is_sip_profile(fh, source.label)
            return False
        except (DavpackError, OSError):
            return False

    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        return run_ingest(op, source, request)

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        return disseminate(op, target, params, lambda item: self.file_name(item, params))

    def file_name(self, obj: Any, params: PackageParameters) -> str:
        extension = "xml" if params.get_bool("manifestOnly", False) else "zip"
        return package_file_name(obj, extension)
