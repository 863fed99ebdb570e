"""Descriptive metadata of METS SIPs: which dmdSec to read, and how, by its MDTYPE.

Readers (section type -> ``dc`` values):

* ``DIM`` (``MDTYPE="OTHER" OTHERMDTYPE="DIM"``): every field as written, any schema
  (:mod:`packagers.aip.crosswalks.dim`);
* ``MODS``: DSpace's table, read back (:mod:`packagers.aip.crosswalks.mods`);
* ``DC`` / ``QDC`` (also ``OTHERMDTYPE`` ``DCTERMS``, ``OAI_DC``): Dublin Core elements
  (``http://purl.org/dc/elements/1.1/``) and DCMI terms (``http://purl.org/dc/terms/``)
  anywhere in the section, mapped with :data:`DC_TERMS`; a DCMI term the table does not
  name goes to the registry's ``dcterms`` schema;
* ``EPDCX`` (the SWORD/SWAP "eprints DC XML" of DSpace's example SIPs): the statements of
  every description, by property URI.

Which section: the ``dmd`` option's type when given, else DIM (it carries every field
exactly), else MODS, DC, QDC, EPDCX; among the item's DMDIDs.  Sections of another
``GROUPID`` (a different description of the same item) are read too, each by the same
preference.  Values are trimmed; EPDCX values (pretty-printed in practice) have their
white space collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from lxml import etree

from packagers.aip.crosswalks.dim import read_fields
from packagers.aip.crosswalks.mods import read_mods
from packagers.aip.mets import local
from packagers.mets.manifest import MdSection
from server.services.metadata import Value

DC_NS = "http://purl.org/dc/elements/1.1/"
DCTERMS_NS = "http://purl.org/dc/terms/"
EPDCX_NS = "http://purl.org/eprint/epdcx/2006-11-16/"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{XSI_NS}}}type"

# Crosswalk keys by MDTYPE/OTHERMDTYPE (upper case)
KINDS = {"DIM": "DIM", "MODS": "MODS", "DC": "DC", "QDC": "DC", "DCTERMS": "DC",
         "OAI_DC": "DC", "EPDCX": "EPDCX"}
PREFERENCE = ("DIM", "MODS", "DC", "QDC", "DCTERMS", "OAI_DC", "EPDCX")
READABLE = ", ".join(("DIM", "MODS", "DC", "QDC", "EPDCX"))

# DSpace field <-> Dublin Core element or DCMI term, both ways.  Written: a field's first
# entry; read: an element's first field.  (namespace key, element name)
DC_TERMS: list[tuple[str, tuple[str, str]]] = [
    ("dc.title", ("dc", "title")),
    ("dc.title.alternative", ("dcterms", "alternative")),
    ("dc.contributor.author", ("dc", "creator")),
    ("dc.creator", ("dc", "creator")),
    ("dc.contributor", ("dc", "contributor")),
    ("dc.contributor.advisor", ("dc", "contributor")),
    ("dc.contributor.editor", ("dc", "contributor")),
    ("dc.contributor.illustrator", ("dc", "contributor")),
    ("dc.contributor.other", ("dc", "contributor")),
    ("dc.subject", ("dc", "subject")),
    ("dc.subject.other", ("dc", "subject")),
    ("dc.subject.lcsh", ("dc", "subject")),
    ("dc.subject.mesh", ("dc", "subject")),
    ("dc.subject.ddc", ("dc", "subject")),
    ("dc.subject.lcc", ("dc", "subject")),
    ("dc.subject.classification", ("dc", "subject")),
    ("dc.description", ("dc", "description")),
    ("dc.description.abstract", ("dcterms", "abstract")),
    ("dc.description.tableofcontents", ("dcterms", "tableOfContents")),
    ("dc.description.provenance", ("dcterms", "provenance")),
    ("dc.description.sponsorship", ("dc", "description")),
    ("dc.description.statementofresponsibility", ("dc", "description")),
    ("dc.description.version", ("dc", "description")),
    ("dc.publisher", ("dc", "publisher")),
    ("dc.date", ("dc", "date")),
    ("dc.date.issued", ("dcterms", "issued")),
    ("dc.date.created", ("dcterms", "created")),
    ("dc.date.available", ("dcterms", "available")),
    ("dc.date.accessioned", ("dcterms", "dateAccepted")),
    ("dc.date.submitted", ("dcterms", "dateSubmitted")),
    ("dc.date.copyright", ("dcterms", "dateCopyrighted")),
    ("dc.date.updated", ("dcterms", "modified")),
    ("dc.type", ("dc", "type")),
    ("dc.format", ("dc", "format")),
    ("dc.format.mimetype", ("dc", "format")),
    ("dc.format.extent", ("dcterms", "extent")),
    ("dc.format.medium", ("dcterms", "medium")),
    ("dc.identifier", ("dc", "identifier")),
    ("dc.identifier.uri", ("dc", "identifier")),
    ("dc.identifier.other", ("dc", "identifier")),
    ("dc.identifier.isbn", ("dc", "identifier")),
    ("dc.identifier.issn", ("dc", "identifier")),
    ("dc.identifier.doi", ("dc", "identifier")),
    ("dc.identifier.citation", ("dcterms", "bibliographicCitation")),
    ("dc.source", ("dc", "source")),
    ("dc.language.iso", ("dc", "language")),
    ("dc.language", ("dc", "language")),
    ("dc.relation", ("dc", "relation")),
    ("dc.relation.uri", ("dc", "relation")),
    ("dc.relation.ispartof", ("dcterms", "isPartOf")),
    ("dc.relation.ispartofseries", ("dcterms", "isPartOf")),
    ("dc.relation.haspart", ("dcterms", "hasPart")),
    ("dc.relation.isversionof", ("dcterms", "isVersionOf")),
    ("dc.relation.hasversion", ("dcterms", "hasVersion")),
    ("dc.relation.isreplacedby", ("dcterms", "isReplacedBy")),
    ("dc.relation.replaces", ("dcterms", "replaces")),
    ("dc.relation.isreferencedby", ("dcterms", "isReferencedBy")),
    ("dc.relation.requires", ("dcterms", "requires")),
    ("dc.relation.isformatof", ("dcterms", "isFormatOf")),
    ("dc.coverage.spatial", ("dcterms", "spatial")),
    ("dc.coverage.temporal", ("dcterms", "temporal")),
    ("dc.rights", ("dc", "rights")),
    ("dc.rights.license", ("dcterms", "license")),
    ("dc.rights.uri", ("dcterms", "license")),
    ("dc.rights.holder", ("dcterms", "rightsHolder")),
    ("dc.rights.accessRights", ("dcterms", "accessRights")),
]
NAMESPACES = {"dc": DC_NS, "dcterms": DCTERMS_NS}
_WRITE = {fld: term for fld, term in reversed(DC_TERMS)}
_READ: dict[tuple[str, str], str] = {}
for _field, _term in DC_TERMS:
    _READ.setdefault((NAMESPACES[_term[0]], _term[1]), _field)
_READ.setdefault((DC_NS, "coverage"), "dc.coverage.spatial")
# the 15 elements' remaining DCMI-term twins (dcterms:title is dc:title)
for _element in ("title", "creator", "subject", "description", "publisher", "contributor",
                 "date", "type", "format", "identifier", "source", "language", "relation",
                 "coverage", "rights"):
    _READ.setdefault((DCTERMS_NS, _element), _READ.get((DC_NS, _element), f"dc.{_element}"))

_FIELD_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+){1,2}$")


def kind_of(section: MdSection) -> str | None:
    return KINDS.get(section.mdtype.upper())


def choose(sections: list[MdSection], preferred: str | None) -> list[MdSection]:
    """The sections to read: the best one, plus the best of every other GROUPID."""
    if not sections:
        return []
    order = ([preferred.upper()] if preferred else []) + list(PREFERENCE)

    def best(candidates: list[MdSection]) -> MdSection:
        for wanted in order:
            for section in candidates:
                if section.mdtype.upper() == wanted:
                    return section
        return candidates[0]

    first = best(sections)
    chosen = [first]
    groups: dict[str, list[MdSection]] = {}
    for section in sections:
        if section.groupid and section.groupid != first.groupid:
            groups.setdefault(section.groupid, []).append(section)
    for members in groups.values():
        chosen.append(best(members))
    return chosen


def read(kind: str, elements: list[Any]) -> tuple[list[Value], list[str]]:
    """Values (trimmed, empty ones dropped) and warnings from a section's XML."""
    warnings: list[str] = []
    values: list[Value]
    if kind == "DIM":
        values = []
        for el in elements:
            if local(el.tag) == "dim":
                values.extend(read_fields(el))
            elif local(el.tag) == "field":
                values.extend(read_fields([el]))
    elif kind == "MODS":
        values = []
        for el in elements:
            if local(el.tag) == "mods":
                values.extend(read_mods(el))
            elif local(el.tag) == "modsCollection":
                for mods in el:
                    if isinstance(mods.tag, str) and local(mods.tag) == "mods":
                        values.extend(read_mods(mods))
                        break
    elif kind == "DC":
        values = read_dc(elements)
    elif kind == "EPDCX":
        values, warnings = read_epdcx(elements)
    else:  # pragma: no cover - callers pass kinds from KINDS
        raise ValueError(kind)
    out = []
    for value in values:
        text = value.value.strip()
        if text:
            out.append(Value(value.field, text, value.language, value.authority,
                             value.confidence))
    return out, warnings


def bad_field_names(values: Iterable[Value]) -> list[str]:
    return sorted({v.field for v in values if not _FIELD_NAME.match(v.field)})


# ---------------------------------------------------------------------------------------
# Dublin Core / DCMI terms


def read_dc(elements: list[Any]) -> list[Value]:
    out: list[Value] = []
    for el in elements:
        _collect_dc(el, out)
    return out


def _collect_dc(el: Any, out: list[Value]) -> None:
    if not isinstance(el.tag, str):
        return
    qname = etree.QName(el)
    if qname.namespace in (DC_NS, DCTERMS_NS):
        name = _READ.get((qname.namespace, qname.localname))
        if name is None and qname.namespace == DCTERMS_NS:
            name = f"dcterms.{qname.localname}"
        if name is not None:
            xsi_type = (el.get(XSI_TYPE) or "").split(":")[-1]
            if name == "dc.identifier" and xsi_type == "URI":
                name = "dc.identifier.uri"
            out.append(Value(name, "".join(el.itertext()), el.get(XML_LANG) or None))
        return
    for c in el:
        _collect_dc(c, out)


def dc_elements(values: Iterable[Value]) -> list[Any]:
    """One ``dc:``/``dcterms:`` element per value that has a Dublin Core home (a URI
    identifier is typed ``dcterms:URI``, so it reads back as ``dc.identifier.uri``)."""
    out = []
    for value in values:
        term = _WRITE.get(value.field)
        if term is None and value.schema == "dcterms" and value.qualifier is None:
            term = ("dcterms", value.element)
        if term is None:
            continue
        prefix, name = term
        nsmap = {prefix: NAMESPACES[prefix]}
        if value.field == "dc.identifier.uri":
            nsmap.update(dcterms=DCTERMS_NS, xsi=XSI_NS)
        el = etree.Element(f"{{{NAMESPACES[prefix]}}}{name}", nsmap=nsmap)
        if value.field == "dc.identifier.uri":
            el.set(XSI_TYPE, "dcterms:URI")
        if value.language:
            el.set(XML_LANG, value.language)
        el.text = value.value
        out.append(el)
    return out


# ---------------------------------------------------------------------------------------
# EPDCX (eprints DC XML, the SWORD "SWAP" profile)

_EPRINT = "http://purl.org/eprint/"
_EPDCX_SPECIAL = {
    f"{DCTERMS_NS}available": "dc.date.issued",  # SWAP: when the expression became public
    f"{DC_NS}creator": "dc.contributor.author",
    f"{_EPRINT}terms/copyrightHolder": "dc.rights.holder",
    f"{_EPRINT}terms/bibliographicCitation": "dc.identifier.citation",
    f"{_EPRINT}terms/grantNumber": "dc.description.sponsorship",
    f"{_EPRINT}terms/status": "dc.description",
    f"{_EPRINT}terms/affiliatedInstitution": "dc.contributor",
}
_EPDCX_SPECIAL_LOWER = {k.lower(): v for k, v in _EPDCX_SPECIAL.items()}
_EPDCX_STRUCTURAL = {f"{_EPRINT}terms/{name}" for name in (
    "isExpressedAs", "hasExpression", "isManifestedAs", "hasManifestation", "isAvailableAs",
    "hasAvailableAs", "hasAdaptation", "hasTranslation", "isAdaptationOf",
    "isTranslationOf")}
_ENTITY_TYPES = f"{_EPRINT}entityType/"


def _words(uri: str) -> str:
    """``http://purl.org/eprint/type/JournalArticle`` -> ``Journal Article``."""
    last = uri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", last)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def read_epdcx(elements: list[Any]) -> tuple[list[Value], list[str]]:
    out: list[Value] = []
    warnings: list[str] = []
    statements = []
    for el in elements:
        statements.extend(el.iter(f"{{{EPDCX_NS}}}statement"))
    for statement in statements:
        prop = statement.get(f"{{{EPDCX_NS}}}propertyURI") or ""
        value_uri = statement.get(f"{{{EPDCX_NS}}}valueURI")
        if prop in _EPDCX_STRUCTURAL:
            continue
        if prop == f"{DC_NS}type" and value_uri and value_uri.startswith(_ENTITY_TYPES):
            continue  # the entity an eprints description is about, not a resource type
        name = _EPDCX_SPECIAL.get(prop) or _EPDCX_SPECIAL_LOWER.get(prop.lower())
        if name is None:
            for namespace in (DC_NS, DCTERMS_NS):
                if prop.startswith(namespace):
                    name = _READ.get((namespace, prop[len(namespace):]))
                    if name is None and namespace == DCTERMS_NS:
                        name = f"dcterms.{prop[len(namespace):]}"
        if name is None:
            warnings.append(f"EPDCX statement {prop} has no metadata field here; skipped")
            continue
        strings = [s for s in statement if isinstance(s.tag, str)
                   and local(s.tag) == "valueString"]
        if strings:
            for s in strings:
                field_name = name
                if (name == "dc.identifier"
                        and (s.get(f"{{{EPDCX_NS}}}sesURI") or "").endswith("/URI")):
                    field_name = "dc.identifier.uri"
                out.append(Value(field_name, _collapse("".join(s.itertext())),
                                 s.get(XML_LANG) or None))
        elif value_uri:
            if name in ("dc.type", "dc.description"):
                out.append(Value(name, _words(value_uri)))
            else:
                out.append(Value(name, value_uri))
    return out, warnings
