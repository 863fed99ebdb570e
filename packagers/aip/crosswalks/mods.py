"""MODS from Dublin Core: DSpace's table-driven dissemination crosswalk, and a reader.

One table (``MAPPING``) gives, for each ``dc`` field, where its value goes in MODS; every
value becomes its own top-level MODS element, in metadata order, as DSpace writes them.
Fields of other schemas and unmapped ``dc`` fields are left out (DIM carries everything).
Unlike DSpace's table, relation values are written as ``relatedItem/titleInfo/title`` (or
``relatedItem/location/url``), which MODS schemas accept; the reader accepts both forms.

The reader (``dmd=MODS`` on ingest, or an AIP without DIM) maps MODS back to ``dc`` with
the same table, so a value written from ``dc.X`` is read back as ``dc.X``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from packagers.aip.mets import MODS_NS, MODS_SCHEMA_LOCATION, XSI_NS, element, local, sub
from server.services.metadata import Value

M = f"{{{MODS_NS}}}"
ISO = {"encoding": "iso8601"}

# field -> (path of elements from the top, attributes per step)
Step = tuple[str, dict[str, str]]
MAPPING: dict[str, list[Step]] = {
    "dc.title": [("titleInfo", {}), ("title", {})],
    "dc.title.alternative": [("titleInfo", {"type": "alternative"}), ("title", {})],
    "dc.contributor": [("name", {}), ("namePart", {})],
    "dc.creator": [("name", {}), ("namePart", {})],
    "dc.date.issued": [("originInfo", {}), ("dateIssued", ISO)],
    "dc.date.created": [("originInfo", {}), ("dateCreated", ISO)],
    "dc.date.copyright": [("originInfo", {}), ("copyrightDate", ISO)],
    "dc.date": [("originInfo", {}), ("dateOther", ISO)],
    "dc.date.accessioned": [("extension", {}), ("dateAccessioned", ISO)],
    "dc.date.available": [("extension", {}), ("dateAvailable", ISO)],
    "dc.date.submitted": [("extension", {}), ("dateSubmitted", ISO)],
    "dc.description": [("note", {})],
    "dc.description.abstract": [("abstract", {})],
    "dc.description.provenance": [("note", {"type": "provenance"})],
    "dc.description.sponsorship": [("note", {"type": "sponsorship"})],
    "dc.description.statementofresponsibility":
        [("note", {"type": "statement of responsibility"})],
    "dc.description.tableofcontents": [("tableOfContents", {})],
    "dc.format.extent": [("physicalDescription", {}), ("extent", {})],
    "dc.format.mimetype": [("physicalDescription", {}), ("internetMediaType", {})],
    "dc.format": [("physicalDescription", {}), ("form", {})],
    "dc.format.medium": [("physicalDescription", {}), ("form", {"type": "medium"})],
    "dc.identifier": [("identifier", {})],
    "dc.identifier.uri": [("identifier", {"type": "uri"})],
    "dc.identifier.isbn": [("identifier", {"type": "isbn"})],
    "dc.identifier.issn": [("identifier", {"type": "issn"})],
    "dc.identifier.ismn": [("identifier", {"type": "ismn"})],
    "dc.identifier.sici": [("identifier", {"type": "sici"})],
    "dc.identifier.govdoc": [("identifier", {"type": "govdoc"})],
    "dc.identifier.doi": [("identifier", {"type": "doi"})],
    "dc.identifier.other": [("identifier", {"type": "local"})],
    "dc.identifier.citation": [("relatedItem", {"type": "host"}), ("part", {}), ("text", {})],
    "dc.language": [("language", {}), ("languageTerm", {})],
    "dc.language.iso": [("language", {}), ("languageTerm", {"authority": "rfc3066"})],
    "dc.publisher": [("originInfo", {}), ("publisher", {})],
    "dc.rights": [("accessCondition", {"type": "useAndReproduction"})],
    "dc.subject": [("subject", {}), ("topic", {})],
    "dc.subject.lcsh": [("subject", {"authority": "lcsh"}), ("topic", {})],
    "dc.subject.mesh": [("subject", {"authority": "mesh"}), ("topic", {})],
    "dc.subject.other": [("subject", {"authority": "local"}), ("topic", {})],
    "dc.subject.ddc": [("classification", {"authority": "ddc"})],
    "dc.subject.lcc": [("classification", {"authority": "lcc"})],
    "dc.subject.classification": [("classification", {})],
    "dc.coverage.spatial": [("subject", {}), ("geographic", {})],
    "dc.coverage.temporal": [("subject", {}), ("temporal", {})],
    "dc.type": [("genre", {})],
    "dc.relation.uri": [("relatedItem", {}), ("location", {}), ("url", {})],
}
CONTRIBUTOR_ROLES = ("author", "advisor", "editor", "illustrator", "other")
RELATION_TYPES = {
    "dc.relation": None, "dc.relation.ispartof": "host", "dc.relation.isPartOf": "host",
    "dc.relation.ispartofseries": "series", "dc.relation.haspart": "constituent",
    "dc.relation.hasversion": "otherVersion", "dc.relation.isversionof": "otherVersion",
    "dc.relation.isbasedon": "original", "dc.relation.isformatof": "otherFormat",
    "dc.relation.isreferencedby": "isReferencedBy", "dc.relation.isReferencedBy":
    "isReferencedBy", "dc.relation.isreplacedby": "succeeding",
    "dc.relation.replaces": "preceding",
}


def _path_for(name: str) -> list[Step] | None:
    if name in MAPPING:
        return MAPPING[name]
    if name in RELATION_TYPES:
        kind = RELATION_TYPES[name]
        attrs = {"type": kind} if kind else {}
        return [("relatedItem", attrs), ("titleInfo", {}), ("title", {})]
    return None


def mods_document(values: Iterable[Value]) -> Any:
    root = element(f"{M}mods", {f"{{{XSI_NS}}}schemaLocation": MODS_SCHEMA_LOCATION},
                   nsmap={"mods": MODS_NS, "xsi": XSI_NS})
    for value in values:
        role = value.field[len("dc.contributor."):] \
            if value.field.startswith("dc.contributor.") else None
        if role in CONTRIBUTOR_ROLES:
            name = sub(root, f"{M}name")
            sub(sub(name, f"{M}role"), f"{M}roleTerm", {"type": "text"}, role)
            sub(name, f"{M}namePart", None, value.value)
            continue
        path = _path_for(value.field)
        if path is None:
            continue
        node = root
        for index, (tag, attrs) in enumerate(path):
            last = index == len(path) - 1
            node = sub(node, f"{M}{tag}", dict(attrs), value.value if last else None)
    return root


# ---------------------------------------------------------------------------------------
# Reading


def _text(el: Any) -> str:
    return "".join(el.itertext()).strip()


def _kids(el: Any, name: str) -> list[Any]:
    return [c for c in el if local(c.tag) == name]


def read_mods(root: Any) -> list[Value]:
    """``dc`` values from a ``mods:mods`` element (best effort; unknown parts are skipped)."""
    out: list[Value] = []
    for el in root:
        reader = _READERS.get(local(el.tag))
        if reader is not None:
            out.extend(reader(el))
    return out


def _title_info(el: Any) -> list[Value]:
    name = "dc.title.alternative" if el.get("type") == "alternative" else "dc.title"
    return [Value(name, _text(t)) for t in _kids(el, "title")]


def _name(el: Any) -> list[Value]:
    role = None
    for r in _kids(el, "role"):
        for term in _kids(r, "roleTerm"):
            role = _text(term)
    field = f"dc.contributor.{role}" if role in CONTRIBUTOR_ROLES else "dc.contributor"
    return [Value(field, _text(p)) for p in _kids(el, "namePart")]


def _origin(el: Any) -> list[Value]:
    names = {"dateIssued": "dc.date.issued", "dateCreated": "dc.date.created",
             "copyrightDate": "dc.date.copyright", "dateOther": "dc.date",
             "publisher": "dc.publisher"}
    return [Value(names[local(c.tag)], _text(c)) for c in el if local(c.tag) in names]


def _extension(el: Any) -> list[Value]:
    names = {"dateAccessioned": "dc.date.accessioned", "dateAvailable": "dc.date.available",
             "dateSubmitted": "dc.date.submitted"}
    return [Value(names[local(c.tag)], _text(c)) for c in el if local(c.tag) in names]


def _note(el: Any) -> list[Value]:
    kinds = {"provenance": "dc.description.provenance",
             "sponsorship": "dc.description.sponsorship",
             "statement of responsibility": "dc.description.statementofresponsibility"}
    return [Value(kinds.get(el.get("type") or "", "dc.description"), _text(el))]


def _physical(el: Any) -> list[Value]:
    out = []
    for c in el:
        tag = local(c.tag)
        if tag == "extent":
            out.append(Value("dc.format.extent", _text(c)))
        elif tag == "internetMediaType":
            out.append(Value("dc.format.mimetype", _text(c)))
        elif tag == "form":
            out.append(Value("dc.format.medium" if c.get("type") == "medium" else "dc.format",
                             _text(c)))
    return out


def _identifier(el: Any) -> list[Value]:
    kind = el.get("type")
    if kind == "local":
        return [Value("dc.identifier.other", _text(el))]
    if kind:
        return [Value(f"dc.identifier.{kind}", _text(el))]
    return [Value("dc.identifier", _text(el))]


def _related(el: Any) -> list[Value]:
    kind = el.get("type")
    if kind == "host":
        for part in _kids(el, "part"):
            for text in _kids(part, "text"):
                return [Value("dc.identifier.citation", _text(text))]
    for location in _kids(el, "location"):
        for url in _kids(location, "url"):
            return [Value("dc.relation.uri", _text(url))]
    reverse = {v: k for k, v in RELATION_TYPES.items() if v and k.islower()}
    field = reverse.get(kind or "", "dc.relation") if kind else "dc.relation"
    return [Value(field, _text(el))]


def _language(el: Any) -> list[Value]:
    out = []
    for term in _kids(el, "languageTerm"):
        field = "dc.language.iso" if term.get("authority") == "rfc3066" else "dc.language"
        out.append(Value(field, _text(term)))
    return out


def _subject(el: Any) -> list[Value]:
    authority = {"lcsh": "dc.subject.lcsh", "mesh": "dc.subject.mesh",
                 "local": "dc.subject.other"}.get(el.get("authority") or "", "dc.subject")
    out = []
    for c in el:
        tag = local(c.tag)
        if tag == "topic":
            out.append(Value(authority, _text(c)))
        elif tag == "geographic":
            out.append(Value("dc.coverage.spatial", _text(c)))
        elif tag == "temporal":
            out.append(Value("dc.coverage.temporal", _text(c)))
    return out


def _classification(el: Any) -> list[Value]:
    field = {"ddc": "dc.subject.ddc", "lcc": "dc.subject.lcc"}.get(
        el.get("authority") or "", "dc.subject.classification")
    return [Value(field, _text(el))]


_READERS: dict[str, Callable[[Any], list[Value]]] = {
    "titleInfo": _title_info, "name": _name, "originInfo": _origin,
    "extension": _extension, "note": _note,
    "abstract": lambda el: [Value("dc.description.abstract", _text(el))],
    "tableOfContents": lambda el: [Value("dc.description.tableofcontents", _text(el))],
    "physicalDescription": _physical, "identifier": _identifier, "relatedItem": _related,
    "language": _language,
    "accessCondition": lambda el: [Value("dc.rights", _text(el))],
    "subject": _subject, "classification": _classification,
    "genre": lambda el: [Value("dc.type", _text(el))],
}
