"""Writing an item as a BagIt 1.0 bag, serialised as a deterministic STORED zip.

Layout (below one top-level directory named like the package, ``ITEM@123456789-8/``)::

    bagit.txt                 BagIt-Version: 1.0, UTF-8
    bag-info.txt              Bag-Software-Agent, Bagging-Date (the item's last-modified
                              date), External-Identifier (hdl:...), Payload-Oxum, then the
                              item's local.bagit.* values under their own labels
    manifest-md5.txt          payload checksums, from the repository's records
    manifest-sha256.txt
    dublin_core.xml           the item's dc metadata (Simple Archive Format)
    metadata_<schema>.xml     every other schema's values (local.bagit.* included)
    tagmanifest-md5.txt       checksums of every tag file above
    tagmanifest-sha256.txt
    data/<name>               the ORIGINAL bitstreams the caller may read

Nothing is written to disk: tag files are small and built in memory, payload bytes are
streamed from the store when (and only when) the zip is read.  Equal item state gives equal
bytes: entries are sorted, every timestamp is the item's last-modified time.
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import datetime

from lxml import etree

from packagers import itemkit
from packagers.bagit.describe import COMPUTED_LABELS, LOCAL_PREFIX
from server import __version__
from server.services.metadata import Value
from server.store import ContentStore
from server.zipstream import ZipEntry, ZipLayout

ALGORITHMS = ("md5", "sha256")


_ENCODED = re.compile(r"%0[aAdD]|%25")


def needs_other_name(path: str) -> bool:
    """RFC 8493 §2.1.3 wants CR, LF and ``%`` percent-encoded in manifests, but readers
    (bagit-python 1.9, and the conformance suite's ``bag-with-encoded-names``) decode only
    ``%0A``/``%0D`` and take any other ``%`` literally.  Names are therefore written as
    they are; the few that readers would decode differently (CR/LF are already refused as
    control characters; a literal ``%0A``, ``%0D`` or ``%25``) get a ``bitstream_<n>`` name."""
    return bool(_ENCODED.search(path))


def saf_document(schema: str, values: list[Value]) -> bytes:
    root = etree.Element("dublin_core", schema=schema)
    for value in values:
        _, element, qualifier = [*value.field.split(".", 2), ""][:3]
        node = etree.SubElement(root, "dcvalue", element=element,
                                qualifier=qualifier or "none")
        if value.language:
            node.set("language", value.language)
        node.text = value.value
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                 pretty_print=True)
    return data


def bag_info(snapshot: itemkit.ItemSnapshot, oxum: str) -> bytes:
    lines = [f"Bag-Software-Agent: davpack {__version__}",
             f"Bagging-Date: {snapshot.last_modified:%Y-%m-%d}"]
    if snapshot.handle:
        lines.append(f"External-Identifier: hdl:{snapshot.handle}")
    lines.append(f"Payload-Oxum: {oxum}")
    for value in snapshot.values:
        if value.field.startswith(LOCAL_PREFIX):
            label = value.field[len(LOCAL_PREFIX):]
            if label.lower() in COMPUTED_LABELS:
                continue
            text = " ".join(value.value.split())
            if text:
                lines.append(f"{label}: {text}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_layout(store: ContentStore, snapshot: itemkit.ItemSnapshot, top: str,
                 mtime: datetime) -> ZipLayout:
    payload = itemkit.unique_paths(snapshot.bundle("ORIGINAL"), needs_other_name)
    payload.sort(key=lambda pair: pair[1])
    manifests = {alg: io.StringIO() for alg in ALGORITHMS}
    total = 0
    for facts, path in payload:
        total += facts.size
        manifests["md5"].write(f"{facts.md5}  data/{path}\n")
        manifests["sha256"].write(f"{facts.sha256}  data/{path}\n")
    tags: dict[str, bytes] = {
        "bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        "bag-info.txt": bag_info(snapshot, f"{total}.{len(payload)}"),
    }
    for alg in ALGORITHMS:
        tags[f"manifest-{alg}.txt"] = manifests[alg].getvalue().encode("utf-8")
    by_schema: dict[str, list[Value]] = {}
    for value in snapshot.values:
        by_schema.setdefault(value.schema, []).append(value)
    tags["dublin_core.xml"] = saf_document("dc", by_schema.pop("dc", []))
    for schema in sorted(by_schema):
        tags[f"metadata_{schema}.xml"] = saf_document(schema, by_schema[schema])
    for alg in ALGORITHMS:
        lines = [f"{hashlib.new(alg, data).hexdigest()}  {name}\n"
                 for name, data in sorted(tags.items()) if not name.startswith("tagmanifest")]
        tags[f"tagmanifest-{alg}.txt"] = "".join(lines).encode("utf-8")
    entries: list[ZipEntry] = [ZipEntry.from_bytes(f"{top}/{name}", data, mtime)
                               for name, data in sorted(tags.items())]
    entries.extend(itemkit.stored_entry(store, facts, f"{top}/data/{path}", mtime)
                   for facts, path in payload)
    return ZipLayout(entries)
