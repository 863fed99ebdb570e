"""Atom and RDF documents of SWORD v2: entries in; service document, receipts, statements,
feeds and error documents out.

Entries are untrusted: they are parsed by :mod:`server.xmlsafe` (no DTD, bounded size).
An entry without an encoding declaration that is not UTF-8 is read in the ``charset`` of
its Content-Type, else as Latin-1 (the ``sword2`` client sends Latin-1 without saying so).

Metadata mapping (entry -> item): DCMI terms (``http://purl.org/dc/terms/``) and the 15 DC
elements (``http://purl.org/dc/elements/1.1/``) become DSpace's qualified Dublin Core
(:data:`DCTERMS_TO_FIELD`; e.g. ``dcterms:creator`` -> ``dc.contributor.author``,
``dcterms:issued`` -> ``dc.date.issued``), other DCMI terms go to the ``dcterms`` schema
under their own name.  ``atom:title``, ``atom:summary`` and ``atom:author/atom:name`` fill
``dc.title``, ``dc.description.abstract`` and ``dc.contributor.author`` when the entry
gives no DC value for them.  Other markup is ignored (and reported in the receipt's
verbose description), never refused.  Receipts show the item's values the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from server import __version__, xmlsafe
from server.errors import Detail
from server.services.metadata import Value
from server.sword import views as v
from server.sword.errors import Answer, BadRequest, verbose_text
from server.sword.iris import Iris

ATOM = "http://www.w3.org/2005/Atom"
APP = "http://www.w3.org/2007/app"
SWORD = "http://purl.org/net/sword/terms/"
DCTERMS = "http://purl.org/dc/terms/"
DC = "http://purl.org/dc/elements/1.1/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
ORE = "http://www.openarchives.org/ore/terms/"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

ENTRY_TYPE = "application/atom+xml;type=entry;charset=utf-8"
FEED_TYPE = "application/atom+xml;type=feed;charset=utf-8"
RDF_TYPE = "application/rdf+xml;charset=utf-8"
SERVICE_TYPE = "application/atomsvc+xml;charset=utf-8"
ERROR_TYPE = "text/xml;charset=utf-8"
FEED_LINK_TYPE = "application/atom+xml;type=feed"
RDF_LINK_TYPE = "application/rdf+xml"
TERMS_ORIGINAL = SWORD + "originalDeposit"

MAX_ENTRY_BYTES = 16 * 1024 * 1024

DCTERMS_TO_FIELD: dict[str, str] = {
    "title": "dc.title", "alternative": "dc.title.alternative",
    "creator": "dc.contributor.author", "contributor": "dc.contributor",
    "subject": "dc.subject", "description": "dc.description",
    "abstract": "dc.description.abstract", "tableOfContents": "dc.description.tableofcontents",
    "publisher": "dc.publisher", "date": "dc.date", "created": "dc.date.created",
    "issued": "dc.date.issued", "dateSubmitted": "dc.date.submitted",
    "dateCopyrighted": "dc.date.copyright", "modified": "dc.date.updated", "type": "dc.type",
    "format": "dc.format", "extent": "dc.format.extent", "medium": "dc.format.medium",
    "identifier": "dc.identifier", "bibliographicCitation": "dc.identifier.citation",
    "source": "dc.source", "language": "dc.language.iso", "relation": "dc.relation",
    "isPartOf": "dc.relation.ispartof", "hasPart": "dc.relation.haspart",
    "isVersionOf": "dc.relation.isversionof", "hasVersion": "dc.relation.hasversion",
    "isFormatOf": "dc.relation.isformatof", "isReferencedBy": "dc.relation.isreferencedby",
    "replaces": "dc.relation.replaces", "isReplacedBy": "dc.relation.isreplacedby",
    "requires": "dc.relation.requires", "coverage": "dc.coverage",
    "spatial": "dc.coverage.spatial", "temporal": "dc.coverage.temporal",
    "rights": "dc.rights", "rightsHolder": "dc.rights.holder", "license": "dc.rights.license",
    "accessRights": "dc.rights.accessRights",
}
# Names sword2's own examples use although they are no DCMI terms.
DCTERMS_ALIASES = {"author": "dc.contributor.author"}
DCMI_TERMS = frozenset("""
abstract accessRights accrualMethod accrualPeriodicity accrualPolicy alternative audience
available bibliographicCitation conformsTo contributor coverage created creator date
dateAccepted dateCopyrighted dateSubmitted description educationLevel extent format
hasFormat hasPart hasVersion identifier instructionalMethod isFormatOf isPartOf
isReferencedBy isReplacedBy isRequiredBy issued isVersionOf language license mediator
medium modified provenance publisher references relation replaces requires rights
rightsHolder source spatial subject tableOfContents temporal title type valid
""".split())  # noqa: SIM905 - a word list reads better
DC_ELEMENTS = frozenset("""
contributor coverage creator date description format identifier language publisher
relation rights source subject title type
""".split())  # noqa: SIM905 - a word list reads better
# Fields a receipt never shows (system bookkeeping).
HIDDEN_FIELDS = frozenset({"dc.description.provenance"})

_FIELD_TO_DCTERMS = {fieldname: term for term, fieldname in DCTERMS_TO_FIELD.items()}
_ENCODING_DECL = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=", re.IGNORECASE)


# ---------------------------------------------------------------------------------------
# Entries in


@dataclass
class EntryData:
    """What an Atom entry says about an item, as metadata values."""

    values: list[Value] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def has_title(self) -> bool:
        return any(value.field == "dc.title" for value in self.values)

    def notes(self) -> list[str]:
        if not self.ignored:
            return []
        shown = ", ".join(sorted(set(self.ignored))[:20])
        return [f"entry elements not recorded (no Dublin Core mapping): {shown}"]


def _text(element: Any) -> str:
    return " ".join("".join(element.itertext()).split()) if len(element) else \
        (element.text or "").strip()


def _decode(raw: bytes, charset: str | None) -> bytes | str:
    """The entry as the parser should see it (bytes when it can tell its own encoding)."""
    if _ENCODING_DECL.match(raw[:200]) or raw.startswith((b"\xef\xbb\xbf", b"\xff\xfe",
                                                           b"\xfe\xff")):
        return raw
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError:
        pass
    for name in (charset, "latin-1"):
        if not name:
            continue
        try:
            return raw.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw  # pragma: no cover - latin-1 decodes anything


def parse_entry(path: Path, content_type: str | None = None) -> EntryData:
    """Read an Atom entry (file staged from a request or a multipart part)."""
    from server.sword.headers import media_type

    if path.stat().st_size > MAX_ENTRY_BYTES:
        raise BadRequest("the Atom entry is too large",
                         [Detail("entry too large", field="body",
                                 expected=f"at most {MAX_ENTRY_BYTES} bytes")])
    raw = path.read_bytes()
    if not raw.strip():
        raise BadRequest("the Atom entry is empty", [Detail("empty entry", field="body")],
                         hint="Send an atom:entry document, or use an empty POST to the "
                         "SE-IRI to complete a deposit.")
    charset = media_type(content_type)[1].get("charset")
    root = xmlsafe.fromstring(_decode(raw, charset), name="Atom entry",
                              max_bytes=MAX_ENTRY_BYTES)
    if root.tag != f"{{{ATOM}}}entry":
        raise BadRequest("the body is not an Atom entry",
                         [Detail("root element is not atom:entry", field="body",
                                 found=str(root.tag)[:120], expected=f"{{{ATOM}}}entry")],
                         hint="Send <entry xmlns=\"http://www.w3.org/2005/Atom\"> with "
                         "dcterms: elements for the metadata.")
    return entry_values(root)


_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8}){0,3}")


def _language(value: str | None) -> str | None:
    """An ``xml:lang`` worth keeping (a plausible language tag), else None."""
    if value and len(value) <= 32 and _LANGUAGE.fullmatch(value.strip()):
        return value.strip()
    return None


def entry_values(root: Any) -> EntryData:
    data = EntryData()
    atom_title: list[Value] = []
    atom_summary: list[Value] = []
    atom_authors: list[Value] = []
    for child in root:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        ns, local = qname.namespace, qname.localname
        lang = _language(child.get(XML_LANG))
        text = _text(child)
        if ns == DCTERMS:
            target = DCTERMS_TO_FIELD.get(local) or DCTERMS_ALIASES.get(local) or (
                f"dcterms.{local}" if local in DCMI_TERMS else None)
        elif ns == DC:
            target = "dc.contributor.author" if local == "creator" else (
                f"dc.{local}" if local in DC_ELEMENTS else None)
        elif ns == ATOM:
            if local == "title" and text:
                atom_title.append(Value("dc.title", text, lang))
            elif local == "summary" and text:
                atom_summary.append(Value("dc.description.abstract", text, lang))
            elif local == "author":
                name = child.find(f"{{{ATOM}}}name")
                if name is not None and _text(name):
                    atom_authors.append(Value("dc.contributor.author", _text(name), lang))
            continue
        else:
            data.ignored.append(f"{{{ns}}}{local}" if ns else local)
            continue
        if target is None:
            data.ignored.append(f"{'dcterms' if ns == DCTERMS else 'dc'}:{local}")
        elif text:
            data.values.append(Value(target, text, lang))
    present = {value.field for value in data.values}
    for fallback in (atom_title, atom_summary, atom_authors):
        if fallback and fallback[0].field not in present:
            data.values.extend(fallback)
    return data


# ---------------------------------------------------------------------------------------
# Documents out


def _el(parent: Any, ns: str, name: str, text: str | None = None, **attrs: str) -> Any:
    node = etree.SubElement(parent, f"{{{ns}}}{name}")
    for key, value in attrs.items():
        node.set(key, value)
    if text is not None:
        node.text = _xml_safe(text)
    return node


_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)


def _serialise(root: Any) -> bytes:
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                 pretty_print=True)
    return data


def stamp(when: datetime | None = None) -> str:
    """``YYYY-MM-DDThh:mm:ssZ`` (naive datetimes are UTC, the model's clock)."""
    moment = when or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _generator(parent: Any, iris: Iris) -> None:
    _el(parent, ATOM, "generator", "davpack", uri=iris.service(), version=__version__)


def dcterms_of(values: Iterable[Value]) -> list[tuple[str, Value]]:
    """The DCMI term each value is shown under (values without one are left out)."""
    out: list[tuple[str, Value]] = []
    for value in values:
        if value.field in HIDDEN_FIELDS:
            continue
        parts = value.field.split(".")
        term: str | None = None
        if value.field in _FIELD_TO_DCTERMS:
            term = _FIELD_TO_DCTERMS[value.field]
        elif parts[0] == "dcterms" and len(parts) == 2:
            term = parts[1]
        elif parts[0] == "dc":
            if len(parts) == 3 and parts[2] in DCMI_TERMS:
                term = parts[2]
            elif parts[1] in DCMI_TERMS:
                term = parts[1]
        if term is not None:
            out.append((term, value))
    return out


def service_document(iris: Iris, *, title: str, max_upload_size: int,
                     collections: list[v.CollectionView], packaging: list[str],
                     mediation: bool) -> bytes:
    root = etree.Element(f"{{{APP}}}service",
                         nsmap={None: APP, "atom": ATOM, "sword": SWORD, "dcterms": DCTERMS})
    _el(root, SWORD, "version", "2.0")
    _el(root, SWORD, "maxUploadSize", str(max_upload_size))
    workspace = _el(root, APP, "workspace")
    _el(workspace, ATOM, "title", title)
    for col in collections:
        node = _el(workspace, APP, "collection", href=iris.collection(col.id))
        _el(node, ATOM, "title", col.title or str(col.handle or col.id))
        _el(node, APP, "accept", "*/*")
        _el(node, APP, "accept", "*/*", alternate="multipart-related")
        if col.abstract:
            _el(node, DCTERMS, "abstract", col.abstract)
        _el(node, SWORD, "collectionPolicy",
            "Deposits become items of this collection under the repository's policies.")
        then = ("go to the collection's review workflow" if col.workflow_enabled
                else "are archived at once, with a handle")
        _el(node, SWORD, "treatment",
            "Each deposit becomes one item. Packages are unpacked by the packager their "
            "Packaging names (no Packaging: the file is kept as it is, Binary). Deposits "
            f"sent with In-Progress: true stay in the workspace; completed deposits {then}.")
        _el(node, SWORD, "mediation", "true" if mediation else "false")
        for uri in packaging:
            _el(node, SWORD, "acceptPackaging", uri)
    return _serialise(root)


@dataclass
class ReceiptExtras:
    """What only the answer to one deposit request shows."""

    treatment: str
    verbose: list[str] = field(default_factory=list)
    original: v.FileView | None = None
    derived: list[v.FileView] = field(default_factory=list)


def _item_links(parent: Any, iris: Iris, view: v.ItemView) -> None:
    _el(parent, ATOM, "link", rel="edit", href=iris.edit(view.id))
    _el(parent, ATOM, "link", rel="edit-media", href=iris.edit_media(view.id))
    _el(parent, ATOM, "link", rel="edit-media", type=FEED_LINK_TYPE,
        href=iris.media_feed(view.id))
    _el(parent, ATOM, "link", rel=SWORD + "add", href=iris.edit(view.id))
    _el(parent, ATOM, "link", rel=SWORD + "statement", type=FEED_LINK_TYPE,
        href=iris.statement_atom(view.id))
    _el(parent, ATOM, "link", rel=SWORD + "statement", type=RDF_LINK_TYPE,
        href=iris.statement_ore(view.id))


def receipt(iris: Iris, view: v.ItemView, *, packaging: list[str],
            extras: ReceiptExtras) -> bytes:
    root = etree.Element(f"{{{ATOM}}}entry",
                         nsmap={None: ATOM, "sword": SWORD, "dcterms": DCTERMS})
    _el(root, ATOM, "id", f"urn:uuid:{view.id}")
    _el(root, ATOM, "title", view.title or "Untitled deposit", type="text")
    _el(root, ATOM, "updated", stamp(view.last_modified))
    author = _el(root, ATOM, "author")
    _el(author, ATOM, "name", view.submitter or "unknown")
    _generator(root, iris)
    _el(root, ATOM, "summary", state_summary(view), type="text")
    for term, value in dcterms_of(view.values):
        node = _el(root, DCTERMS, term, value.value)
        if value.language:
            node.set(XML_LANG, value.language)
    _el(root, SWORD, "treatment", extras.treatment)
    if extras.verbose:
        _el(root, SWORD, "verboseDescription", "\n".join(extras.verbose))
    _el(root, ATOM, "content", type="application/zip", src=iris.edit_media(view.id))
    _item_links(root, iris, view)
    if view.handle_url:
        _el(root, ATOM, "link", rel="alternate", href=view.handle_url)
    if extras.original is not None:
        _el(root, ATOM, "link", rel=SWORD + "originalDeposit", type=extras.original.mime_type,
            href=iris.file(extras.original.id, extras.original.name))
    for derived in extras.derived:
        _el(root, ATOM, "link", rel=SWORD + "derivedResource", type=derived.mime_type,
            href=iris.file(derived.id, derived.name))
    for uri in packaging:
        _el(root, SWORD, "packaging", uri)
    _el(root, ATOM, "category", view.state_iri, scheme=SWORD + "state", term=view.state_iri,
        label="State")
    return _serialise(root)


def state_summary(view: v.ItemView) -> str:
    return v.state_of(view)[1]


def statement_atom(iris: Iris, view: v.ItemView) -> bytes:
    root = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM, "sword": SWORD})
    _el(root, ATOM, "id", iris.statement_atom(view.id))
    _el(root, ATOM, "title", f"Statement of {view.title or view.id}", type="text")
    _el(root, ATOM, "updated", stamp(view.last_modified))
    author = _el(root, ATOM, "author")
    _el(author, ATOM, "name", view.submitter or "unknown")
    _generator(root, iris)
    _el(root, ATOM, "link", rel="self", href=iris.statement_atom(view.id))
    _el(root, ATOM, "link", rel="edit", href=iris.edit(view.id))
    state, description = v.state_of(view)
    _el(root, ATOM, "category", description, scheme=SWORD + "state", term=state,
        label="State")
    for file in view.files:
        entry = _el(root, ATOM, "entry")
        href = iris.file(file.id, file.name)
        _el(entry, ATOM, "id", f"urn:uuid:{file.id}")
        _el(entry, ATOM, "title", file.name, type="text")
        _el(entry, ATOM, "updated", stamp(file.last_modified))
        _el(entry, ATOM, "summary", f"{file.bundle}: {file.name} ({file.size} bytes, "
            f"MD5 {file.md5})", type="text")
        _el(entry, ATOM, "content", type=file.mime_type, src=href)
        _el(entry, ATOM, "link", rel="edit-media", href=href)
        if file.original:
            _el(entry, ATOM, "category", scheme=SWORD, term=TERMS_ORIGINAL,
                label="Original Deposit")
            _el(entry, SWORD, "packaging", file.packaging or v.BINARY_PACKAGING)
        deposited_on = file.deposited_on or stamp(file.last_modified)
        _el(entry, SWORD, "depositedOn", deposited_on)
        by = file.deposited_by or view.submitter
        if by:
            _el(entry, SWORD, "depositedBy", by)
        if file.on_behalf_of:
            _el(entry, SWORD, "depositedOnBehalfOf", file.on_behalf_of)
    return _serialise(root)


def statement_ore(iris: Iris, view: v.ItemView) -> bytes:
    rem = iris.statement_ore(view.id)
    aggregation = rem + "#aggregation"

    def res(parent: Any, ns: str, name: str, target: str) -> Any:
        node = etree.SubElement(parent, f"{{{ns}}}{name}")
        node.set(f"{{{RDF}}}resource", target)
        return node

    def desc(about: str) -> Any:
        node = etree.SubElement(root, f"{{{RDF}}}Description")
        node.set(f"{{{RDF}}}about", about)
        return node

    root = etree.Element(f"{{{RDF}}}RDF", nsmap={"rdf": RDF, "ore": ORE, "sword": SWORD,
                                                  "dcterms": DCTERMS})
    rem_node = desc(rem)
    res(rem_node, ORE, "describes", aggregation)
    _el(rem_node, DCTERMS, "modified", stamp(view.last_modified))
    agg = desc(aggregation)
    res(agg, ORE, "isDescribedBy", rem)
    res(agg, ORE, "similarTo", iris.edit(view.id))
    if view.title:
        _el(agg, DCTERMS, "title", view.title)
    files = [(file, iris.file(file.id, file.name)) for file in view.files]
    for _file, href in files:
        res(agg, ORE, "aggregates", href)
    for file, href in files:
        if file.original:
            res(agg, SWORD, "originalDeposit", href)
    state, description = v.state_of(view)
    res(agg, SWORD, "state", state)
    for file, href in files:
        node = desc(href)
        if file.original:
            res(node, SWORD, "packaging", file.packaging or v.BINARY_PACKAGING)
        on = _el(node, SWORD, "depositedOn", file.deposited_on or stamp(file.last_modified))
        on.set(f"{{{RDF}}}datatype", "http://www.w3.org/2001/XMLSchema#dateTime")
        by = file.deposited_by or view.submitter
        if by:
            _el(node, SWORD, "depositedBy", by)
        if file.on_behalf_of:
            _el(node, SWORD, "depositedOnBehalfOf", file.on_behalf_of)
        _el(node, DCTERMS, "format", file.mime_type)
        _el(node, DCTERMS, "extent", str(file.size))
    _el(desc(state), SWORD, "stateDescription", description)
    return _serialise(root)


def collection_feed(iris: Iris, collection: v.CollectionView,
                    items: list[v.ItemView]) -> bytes:
    root = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM, "sword": SWORD,
                                                   "dcterms": DCTERMS})
    _el(root, ATOM, "id", iris.collection(collection.id))
    _el(root, ATOM, "title", collection.title or str(collection.id), type="text")
    _el(root, ATOM, "updated", stamp(max((i.last_modified for i in items), default=None)))
    _generator(root, iris)
    _el(root, ATOM, "link", rel="self", href=iris.collection(collection.id))
    for view in items:
        entry = _el(root, ATOM, "entry")
        _el(entry, ATOM, "id", f"urn:uuid:{view.id}")
        _el(entry, ATOM, "title", view.title or "Untitled deposit", type="text")
        _el(entry, ATOM, "updated", stamp(view.last_modified))
        author = _el(entry, ATOM, "author")
        _el(author, ATOM, "name", view.submitter or "unknown")
        _el(entry, ATOM, "content", type="application/zip", src=iris.edit_media(view.id))
        _item_links(entry, iris, view)
        _el(entry, ATOM, "category", v.state_of(view)[1], scheme=SWORD + "state",
            term=view.state_iri, label="State")
    return _serialise(root)


def media_feed(iris: Iris, view: v.ItemView) -> bytes:
    root = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM, "sword": SWORD})
    _el(root, ATOM, "id", iris.media_feed(view.id))
    _el(root, ATOM, "title", f"Files of {view.title or view.id}", type="text")
    _el(root, ATOM, "updated", stamp(view.last_modified))
    _generator(root, iris)
    _el(root, ATOM, "link", rel="self", href=iris.media_feed(view.id))
    _el(root, ATOM, "link", rel="edit-media", href=iris.edit_media(view.id))
    for file in view.content_files():
        href = iris.file(file.id, file.name)
        entry = _el(root, ATOM, "entry")
        _el(entry, ATOM, "id", f"urn:uuid:{file.id}")
        _el(entry, ATOM, "title", file.name, type="text")
        _el(entry, ATOM, "updated", stamp(file.last_modified))
        _el(entry, ATOM, "content", type=file.mime_type, src=href)
        _el(entry, ATOM, "link", rel="edit-media", href=href)
    return _serialise(root)


def error_document(iris: Iris | None, answer: Answer) -> bytes:
    root = etree.Element(f"{{{SWORD}}}error", nsmap={None: ATOM, "sword": SWORD})
    root.set("href", answer.iri)
    _el(root, ATOM, "title", "ERROR")
    _el(root, ATOM, "updated", stamp())
    if iris is not None:
        _generator(root, iris)
    _el(root, ATOM, "summary", answer.summary)
    _el(root, SWORD, "treatment", "processing failed")
    _el(root, SWORD, "verboseDescription", verbose_text(answer))
    return _serialise(root)
