"""METS vocabulary of DSpace's AIP profile, and a small streaming writer for it.

The writer produces the METS skeleton element by element straight into a binary stream
(a spooled zip member), so a collection AIP listing a million items is written in
constant memory; the small metadata documents embedded in it (DIM, MODS, PREMIS, rights,
roles) are built as :class:`Node` trees and serialised in place, exactly as lxml would.
Output is deterministic: attributes are written in the order given, indentation is fixed,
and nothing depends on the clock, the locale or the machine's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, BinaryIO

from packagers.errors import PackageError
from server.errors import Detail

# Namespaces
METS_NS = "http://www.loc.gov/METS/"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
DIM_NS = "http://www.dspace.org/xmlns/dspace/dim"
MODS_NS = "http://www.loc.gov/mods/v3"
PREMIS_NS = "http://www.loc.gov/standards/premis"
RIGHTS_NS = "http://cosimo.stanford.edu/sdr/metsrights/"
ROLES_NS = "http://www.dspace.org/xmlns/dspace/dspace-roles"
XML_NS = "http://www.w3.org/XML/1998/namespace"
DAVPACK_NS = "urn:davpack:xmlns:aip:1"

METS_SCHEMA_LOCATION = f"{METS_NS} http://www.loc.gov/standards/mets/mets.xsd"
MODS_SCHEMA_LOCATION = f"{MODS_NS} http://www.loc.gov/standards/mods/v3/mods-3-1.xsd"
PREMIS_SCHEMA_LOCATION = f"{PREMIS_NS} http://www.loc.gov/standards/premis/PREMIS-v1-0.xsd"
RIGHTS_SCHEMA_LOCATION = f"{RIGHTS_NS} http://cosimo.stanford.edu/sdr/metsrights.xsd"

PROFILE = "http://www.dspace.org/schema/aip/mets_aip_1_0.xsd"
MANIFEST = "mets.xml"

# MDTYPE / OTHERMDTYPE values, spelled exactly as DSpace registers its crosswalks (plugin
# names are matched case-sensitively there); readers compare case-insensitively.
MD_MODS = "MODS"
MD_DIM = "DIM"
MD_PREMIS = "PREMIS"
MD_TECHMD = "AIP-TECHMD"
MD_RIGHTS = "METSRIGHTS"
MD_ROLES = "DSPACE-ROLES"
MD_DEPOSIT_LICENSE = "DSpaceDepositLicense"
MD_CC_RDF = "CreativeCommonsRDF"
MD_CC_TEXT = "CreativeCommonsText"
MD_OBJECT = "DAVPACK-OBJECT"
MD_RELATIONSHIPS = "DAVPACK-RELATIONSHIPS"
# Types written as MDTYPE itself: the vocabulary of the METS toolkit DSpace uses, so that
# ours read exactly like DSpace's (which writes METSRIGHTS as OTHER/OTHERMDTYPE).
METS_MDTYPES = frozenset({"MARC", "MODS", "EAD", "DC", "NISOIMG", "LC-AV", "VRA", "TEIHDR",
                          "DDI", "FGDC", "PREMIS"})

DIV_CONTENTS = "DSpace Object Contents"
DIV_TEMPLATE = "DSpace ITEM Template"
DIV_BITSTREAM = "DSpace BITSTREAM"
DIV_PARENT = "AIP Parent Link"
STRUCT_OBJECT = "DSpace Object"
STRUCT_PARENT = "Parent"

# Containers carry no change time in DSpace's profile; their zip entries get the constant
# DSpace itself uses (the day DSpace 1.0 was released), so identical content gives
# identical bytes.  Item entries get the item's last-modified time, in UTC.
CONTAINER_ZIP_TIME = datetime(2002, 11, 4, 0, 0, 0)

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# Anything an attribute value cannot carry as is: illegal or to be escaped.  Most values
# have none, and one search is cheaper than checking and escaping each of them.
_ATTR_SPECIAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff"
                           "&<\"\n\r\t]")
# What lxml escapes in an attribute value of an embedded document (``>`` as well).
_EMBEDDED_ATTR_SPECIAL = re.compile("[&<>\"\n\r\t]")


def mdtype_attrs(label: str) -> list[tuple[str, str]]:
    """``MDTYPE`` (and ``OTHERMDTYPE``) attributes for a metadata label."""
    if label in METS_MDTYPES:
        return [("MDTYPE", label)]
    return [("MDTYPE", "OTHER"), ("OTHERMDTYPE", label)]


def utc_naive(when: datetime) -> datetime:
    """The model's clock: naive UTC."""
    if when.tzinfo is not None:
        return when.astimezone(UTC).replace(tzinfo=None)
    return when


def iso_utc(when: datetime, *, micro: bool = True) -> str:
    """``2024-05-01T12:00:00.123456Z`` (the exact time) or ``...T12:00:00Z``."""
    when = utc_naive(when)
    if micro and when.microsecond:
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> datetime | None:
    """An ISO-8601 date or date-time as naive UTC; None when absent or unreadable."""
    if not text:
        return None
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return utc_naive(parsed)


class IdGen:
    """The ``prefix_N`` counter DSpace uses for every ``@ID``, restarted per package."""

    def __init__(self) -> None:
        self._n = 0

    def __call__(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"


def escape_text(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def escape_attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            .replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;"))


def check_xml_chars(text: str, what: str) -> str:
    if _XML_ILLEGAL.search(text):
        raise PackageError(f"{what} contains characters XML cannot carry",
                           [Detail("control character in value", field=what,
                                   found=repr(text[:80]))])
    return text


Attrs = Iterable[tuple[str, str | None]]


class XmlWriter:
    """Indented XML written as it is produced (UTF-8), buffered in 64 KiB pieces."""

    def __init__(self, out: BinaryIO, *, indent: str = " ") -> None:
        self._out = out
        self._indent = indent
        self._stack: list[str] = []
        self._buf: list[str] = []
        self._pending = 0

    # -- plumbing --

    def _write(self, text: str) -> None:
        self._buf.append(text)
        self._pending += len(text)
        if self._pending >= 65536:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._out.write("".join(self._buf).encode("utf-8"))
            self._buf.clear()
            self._pending = 0

    @staticmethod
    def _attrs(attrs: Attrs) -> str:
        parts = []
        for name, value in attrs:
            if value is None:
                continue
            if _ATTR_SPECIAL.search(value):
                value = escape_attr(check_xml_chars(value, name))
            parts.append(f' {name}="{value}"')
        return "".join(parts)

    @property
    def depth(self) -> int:
        return len(self._stack)

    # -- content --

    def declaration(self) -> None:
        self._write('<?xml version="1.0" encoding="utf-8" standalone="no"?>\n')

    def start(self, tag: str, attrs: Attrs = ()) -> None:
        self._write(f"{self._indent * len(self._stack)}<{tag}{self._attrs(attrs)}>\n")
        self._stack.append(tag)

    def end(self) -> None:
        tag = self._stack.pop()
        self._write(f"{self._indent * len(self._stack)}</{tag}>\n")

    def element(self, tag: str, attrs: Attrs = ()) -> _Open:
        """``with w.element(...):`` - the element's content is what the block writes."""
        self.start(tag, attrs)
        return _Open(self)

    def empty(self, tag: str, attrs: Attrs = ()) -> None:
        self._write(f"{self._indent * self.depth}<{tag}{self._attrs(attrs)}/>\n")

    def leaf(self, tag: str, text: str, attrs: Attrs = ()) -> None:
        check_xml_chars(text, tag)
        self._write(f"{self._indent * self.depth}<{tag}{self._attrs(attrs)}>"
                    f"{escape_text(text)}</{tag}>\n")

    def raw_line(self, text: str) -> None:
        """A line of already escaped character data (base64 chunks)."""
        self._write(text)

    def xml_data(self, document: Node | str) -> None:
        """``<xmlData>`` holding an embedded document (with its own namespace
        declarations), pretty-printed in place; ``str``: one :meth:`Node.serialise` gave
        (a document written many times)."""
        text = document if isinstance(document, str) else document.serialise()
        self._write(f"{self._indent * len(self._stack)}<xmlData>{text}</xmlData>\n")

    def close(self) -> None:
        while self._stack:
            self.end()
        self.flush()


class _Open:
    """An element :meth:`XmlWriter.element` started; ends it when the block completes
    (a plain class: a generator-based context manager costs three times as much)."""

    __slots__ = ("_writer",)

    def __init__(self, writer: XmlWriter) -> None:
        self._writer = writer

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self._writer.end()


# Qualified names ("prefix:local") of the "{namespace}local" names of embedded documents,
# per namespace map.  Tags, attribute names and maps are the crosswalks' constants, so
# this stays small.
_QUALIFIED: dict[tuple[tuple[str | None, str], ...], dict[str, str]] = {}


class Node:
    """An element of an embedded metadata document (DIM, MODS, PREMIS, rights, roles...).

    Built with :func:`element` and :func:`sub`, written by :meth:`XmlWriter.xml_data`
    byte for byte as lxml writes the same element after ``etree.indent(space="  ")``
    (so AIPs did not change when these replaced lxml elements, which cost several times
    as much to build and serialise).  Every namespace used must be declared on the root.
    """

    __slots__ = ("attrs", "children", "nsmap", "tag", "text")

    def __init__(self, tag: str, attrs: dict[str, str], text: str | None,
                 nsmap: dict[str | None, str] | None = None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.text = text
        self.children: list[Node] = []
        self.nsmap = nsmap

    def serialise(self) -> str:
        nsmap = self.nsmap or {}
        names = _QUALIFIED.setdefault(tuple(nsmap.items()), {})
        out: list[str] = []
        write = out.append

        def qualified(name: str) -> str:
            uri, _, local_name = name[1:].partition("}")
            prefix = next(p for p, u in nsmap.items() if u == uri)
            names[name] = found = f"{prefix}:{local_name}" if prefix else local_name
            return found

        def start(node: Node, declarations: str) -> str:
            tag = node.tag
            if tag[0] == "{":
                tag = names.get(tag) or qualified(tag)
            write(f"<{tag}{declarations}")
            for name, value in node.attrs.items():
                if name[0] == "{":
                    name = names.get(name) or qualified(name)
                if _EMBEDDED_ATTR_SPECIAL.search(value):
                    value = escape_attr(value).replace(">", "&gt;")
                write(f' {name}="{value}"')
            return tag

        def element(node: Node, depth: int, declarations: str = "") -> None:
            tag = start(node, declarations)
            text = node.text
            if node.children:
                # etree.indent: blank text and every tail become a line break + indentation
                pad = "\n" + "  " * (depth + 1)
                write(f">{escape_text(text)}" if text and text.strip() else f">{pad}")
                last = node.children[-1]
                for child in node.children:
                    element(child, depth + 1)
                    write(pad if child is not last else "\n" + "  " * depth)
                write(f"</{tag}>")
            elif text is not None:
                write(f">{escape_text(text)}</{tag}>")
            else:
                write("/>")

        element(self, 0, "".join(f' xmlns:{prefix}="{uri}"' if prefix else f' xmlns="{uri}"'
                                 for prefix, uri in nsmap.items()))
        return "".join(out)


def element(tag: str, attrs: dict[str, str] | None = None, *, nsmap: dict[str | None, str]
            | None = None, text: str | None = None) -> Node:
    """The root of an embedded document, declaring the namespaces in ``nsmap``."""
    return Node(tag, _checked(attrs or {}), None if text is None else check_xml_chars(text, tag),
                nsmap or {})


def sub(parent: Node, tag: str, attrs: dict[str, str | None] | None = None,
        text: str | None = None) -> Node:
    """A child element; attributes whose value is None are left out."""
    node = Node(tag, _checked(attrs) if attrs else {},
                None if text is None else check_xml_chars(text, tag))
    parent.children.append(node)
    return node


def _checked(attrs: dict[str, str | None] | dict[str, str]) -> dict[str, str]:
    """The attributes that have a value, in order, each checked for characters XML cannot
    carry."""
    return {key: check_xml_chars(value, key) for key, value in attrs.items()
            if value is not None}


def local(tag: object) -> str:
    """The local part of a tag (``{ns}name`` or ``name``); '' for comments and PIs."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def children(el: Any, name: str) -> list[Any]:
    """Child elements by local name, whatever their namespace (DSPACE-ROLES is written
    with and without one)."""
    return [c for c in el if local(c.tag) == name]


def child(el: Any, name: str) -> Any | None:
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def child_text(el: Any, name: str) -> str | None:
    found = child(el, name)
    if found is None:
        return None
    return found.text or ""
