"""PREMIS (1.0 style, as DSpace writes it) for one bitstream: identity, fixity, size, format.

The object identifier is the bitstream's UUID (``objectIdentifierType`` ``UUID``) rather than
a deployment-specific download URL, which would change the AIP's bytes whenever the server
moves (DSpace's A11).  On ingest the size is read as an arbitrary-precision integer, so
bitstreams of 2 GiB and more restore (DSpace's C2), and both the size and the MD5 digest
are checked against the bytes in the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packagers.aip.mets import PREMIS_NS, PREMIS_SCHEMA_LOCATION, XSI_NS, child, element, sub

P = f"{{{PREMIS_NS}}}"


def premis_document(*, uuid: str, md5: str | None, size: int, mime_type: str,
                    name: str) -> Any:
    root = element(f"{P}premis", {f"{{{XSI_NS}}}schemaLocation": PREMIS_SCHEMA_LOCATION},
                   nsmap={"premis": PREMIS_NS, "xsi": XSI_NS})
    obj = sub(root, f"{P}object")
    ident = sub(obj, f"{P}objectIdentifier")
    sub(ident, f"{P}objectIdentifierType", None, "UUID")
    sub(ident, f"{P}objectIdentifierValue", None, uuid)
    sub(obj, f"{P}objectCategory", None, "File")
    chars = sub(obj, f"{P}objectCharacteristics")
    if md5 is not None:
        fixity = sub(chars, f"{P}fixity")
        sub(fixity, f"{P}messageDigestAlgorithm", None, "MD5")
        sub(fixity, f"{P}messageDigest", None, md5)
    sub(chars, f"{P}size", None, str(size))
    fmt = sub(chars, f"{P}format")
    sub(sub(fmt, f"{P}formatDesignation"), f"{P}formatName", None, mime_type)
    sub(obj, f"{P}originalName", None, name)
    return root


@dataclass
class PremisFacts:
    original_name: str | None = None
    size: int | None = None
    size_text: str | None = None
    algorithm: str | None = None
    digest: str | None = None
    format_name: str | None = None


def read_premis(root: Any | None) -> PremisFacts:
    facts = PremisFacts()
    if root is None:
        return facts
    obj = child(root, "object") if _local(root) == "premis" else root
    if obj is None:
        return facts
    name = child(obj, "originalName")
    if name is not None:
        facts.original_name = "".join(name.itertext())
    chars = child(obj, "objectCharacteristics")
    if chars is None:
        return facts
    size = child(chars, "size")
    if size is not None:
        facts.size_text = "".join(size.itertext()).strip()
        try:
            facts.size = int(facts.size_text)
        except ValueError:
            facts.size = None
    fixity = child(chars, "fixity")
    if fixity is not None:
        algo = child(fixity, "messageDigestAlgorithm")
        digest = child(fixity, "messageDigest")
        facts.algorithm = "".join(algo.itertext()).strip() if algo is not None else None
        facts.digest = "".join(digest.itertext()).strip() if digest is not None else None
    fmt = child(chars, "format")
    if fmt is not None:
        designation = child(fmt, "formatDesignation")
        if designation is not None:
            fname = child(designation, "formatName")
            if fname is not None:
                facts.format_name = "".join(fname.itertext()).strip() or None
    return facts


def _local(el: Any) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
