"""From a validated bag to an item plan: metadata values and the files of each bundle.

Three kinds of bag are recognised:

``davpack``
    A bag this packager wrote: tag files ``dublin_core.xml`` and ``metadata_<schema>.xml``
    (DSpace's Simple Archive Format) hold the item's metadata; ``bag-info.txt`` is derived
    from them and is not read back.  Payload ``data/<name>`` -> ORIGINAL ``<name>``.
``replication``
    A DSpace Replication Task Suite AIP bag ("beyond the repository" profile):
    ``data/object.properties`` (``objectType item``), ``data/metadata.xml``
    (``<value schema= element= qualifier= language=>``) and ``data/<BUNDLE>/<file>`` with
    ``<file>-metadata.xml`` giving the bitstream's name, source and description.  Only item
    bags are ingested; policies (``*policy.xml``) are not applied (the collection's defaults
    are), and that is reported as a warning.
``plain``
    Any other bag (Archivematica, bagit-python, BagIt Library...).  Metadata from a METS
    document at the top of the payload (``METS.<uuid>.xml``, ``mets.xml``, ``*_mets.xml``;
    its first DC or MODS dmdSec) and from ``bag-info.txt`` (:data:`BAG_INFO_FIELDS`; a
    mapped bag-info field only fills a field METS left empty).  Every other bag-info label
    is kept as ``local.bagit.<Label>`` (created on purpose), except the two that merely
    describe the payload (``Payload-Oxum``, ``Bag-Size``).  Payload ``data/<path>`` ->
    ORIGINAL ``<path>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from packagers import itemkit
from packagers.bagit.bag import OpenedBag, PayloadFile, refusal
from packagers.errors import UnsupportedOperation
from server import xmlsafe
from server.errors import Detail
from server.services.metadata import Value

MAX_XML = 64 * 1024 * 1024

# bag-info label -> DSpace field, for bags that are not ours (RFC 8493 §2.2.2 labels,
# plus "Title", which Archivematica, SLUB and others write).
BAG_INFO_FIELDS: dict[str, str] = {
    "title": "dc.title",
    "external-description": "dc.description",
    "external-identifier": "dc.identifier.other",
}
# bag-info labels that only describe the payload as bagged: recomputed, never stored.
DERIVED_LABELS = frozenset({"payload-oxum", "bag-size"})
# bag-info labels a disseminated bag computes itself (local.bagit.* copies are not echoed).
COMPUTED_LABELS = frozenset({"payload-oxum", "bag-size", "bagging-date", "bag-software-agent",
                             "external-identifier"})
LOCAL_PREFIX = "local.bagit."
_LABEL_OK = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

METS_NS = "http://www.loc.gov/METS/"
MODS_NS = "http://www.loc.gov/mods/v3"
DC_NS = ("http://purl.org/dc/elements/1.1/", "http://purl.org/dc/terms/")
_METS_NAME = re.compile(r"(?i)^(?:mets\..+\.xml|mets\.xml|.+[_\-]mets\.xml)$")

# DC / DCTERMS element -> DSpace field (DSpace's own DC crosswalk choices).
DC_FIELDS: dict[str, str] = {
    "title": "dc.title", "alternative": "dc.title.alternative",
    "creator": "dc.contributor.author", "contributor": "dc.contributor",
    "subject": "dc.subject", "description": "dc.description",
    "abstract": "dc.description.abstract", "tableOfContents": "dc.description.tableofcontents",
    "publisher": "dc.publisher", "date": "dc.date.issued", "issued": "dc.date.issued",
    "created": "dc.date.created", "type": "dc.type", "format": "dc.format",
    "extent": "dc.format.extent", "medium": "dc.format.medium",
    "identifier": "dc.identifier", "source": "dc.source", "language": "dc.language.iso",
    "relation": "dc.relation", "isPartOf": "dc.relation.ispartof",
    "hasPart": "dc.relation.haspart", "spatial": "dc.coverage.spatial",
    "temporal": "dc.coverage.temporal", "rights": "dc.rights", "license": "dc.rights.license",
    "accessRights": "dc.rights.accessRights", "rightsHolder": "dc.rights.holder",
    "bibliographicCitation": "dc.identifier.citation",
}
MODS_IDENTIFIERS = {"uri": "dc.identifier.uri", "purl": "dc.identifier.uri",
                    "doi": "dc.identifier.doi", "isbn": "dc.identifier.isbn",
                    "issn": "dc.identifier.issn", "urn": "dc.identifier.uri"}


@dataclass
class PlannedFile:
    bundle: str
    name: str
    payload: PayloadFile
    description: str | None = None
    source: str | None = None
    primary: bool = False


@dataclass
class ItemPlan:
    kind: str
    values: list[Value] = field(default_factory=list)
    files: list[PlannedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    handle: str | None = None  # the identity the package names (not used on submit)


def bag_kind(bag: OpenedBag) -> str:
    if bag.tag_path("dublin_core.xml") is not None:
        return "davpack"
    if any(p.manifest_path == "data/object.properties" for p in bag.payload):
        return "replication"
    return "plain"


def metadata_inputs(bag: OpenedBag) -> list[PayloadFile]:
    """The payload files :func:`plan_item` reads, so they can be verified against the
    manifests before anything is parsed from them."""
    kind = bag_kind(bag)
    if kind == "replication":
        return [p for p in bag.payload
                if p.relative in ("object.properties", "metadata.xml")
                or p.relative.endswith("-metadata.xml")]
    if kind == "plain":
        mets = _mets_candidates(bag)
        return mets[:1]
    return []


def plan_item(bag: OpenedBag, *, title_fallback: str) -> ItemPlan:
    kind = bag_kind(bag)
    if kind == "davpack":
        plan = _plan_davpack(bag)
    elif kind == "replication":
        plan = _plan_replication(bag)
    else:
        plan = _plan_plain(bag)
    plan.warnings[:0] = bag.warnings
    if not any(v.field == "dc.title" for v in plan.values):
        plan.values.insert(0, Value("dc.title", title_fallback))
        plan.warnings.append(f"the bag gives no title; dc.title is {title_fallback!r}")
    return plan


# ---------------------------------------------------------------------------------------
# Our own bags


def _plan_davpack(bag: OpenedBag) -> ItemPlan:
    plan = ItemPlan("davpack")
    schemas = sorted(n for n in bag.tag_files
                     if re.fullmatch(r"metadata_[A-Za-z0-9_\-]+\.xml", n))
    names = ["dublin_core.xml", *schemas]
    for name in names:
        path = bag.tag_path(name)
        if path is not None:
            plan.values.extend(read_saf_metadata(path, name, bag.label))
    plan.files = [PlannedFile("ORIGINAL", p.relative, p) for p in bag.payload]
    for value in plan.values:
        if value.field == "dc.identifier.uri" and "/handle/" in value.value:
            plan.handle = value.value.split("/handle/", 1)[1]
    return plan


def read_saf_metadata(path: Path, name: str, label: str) -> list[Value]:
    """``<dublin_core schema="dc"><dcvalue element= qualifier= language=>`` (SAF)."""
    root = xmlsafe.parse(path, name=name, max_bytes=MAX_XML).getroot()
    if etree.QName(root).localname != "dublin_core":
        raise refusal(label, f"{name} is not a dublin_core document", [Detail(
            "unexpected root element", file=name, expected="dublin_core",
            found=etree.QName(root).localname)])
    schema = (root.get("schema") or "dc").strip()
    values: list[Value] = []
    for element in root:
        if not isinstance(element.tag, str) or etree.QName(element).localname != "dcvalue":
            continue
        el = (element.get("element") or "").strip()
        qualifier = (element.get("qualifier") or "").strip()
        if not el:
            raise refusal(label, f"{name}: a dcvalue has no element", [Detail(
                "dcvalue without element attribute", file=name, line=element.sourceline)])
        fname = ".".join(p for p in (schema, el, "" if qualifier in ("", "none") else qualifier)
                         if p)
        values.append(Value(fname, element.text or "", (element.get("language") or None)))
    return values


# ---------------------------------------------------------------------------------------
# DSpace replication AIP bags


def _properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh.read(64 * 1024).splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and not parts[0].startswith("#"):
                props[parts[0]] = parts[1].strip()
    return props


def _plan_replication(bag: OpenedBag) -> ItemPlan:
    plan = ItemPlan("replication")
    data = bag.root / "data"
    props = _properties(data / "object.properties")
    object_type = props.get("objectType", "").lower()
    if object_type != "item":
        raise UnsupportedOperation(
            f"{bag.label} is a DSpace replication AIP of a {object_type or 'unknown object'}; "
            "the BAGIT packager ingests item bags only",
            [Detail("not an item bag", file="data/object.properties", field="objectType",
                    expected="item", found=props.get("objectType"))])
    plan.handle = props.get("objectId")
    meta = data / "metadata.xml"
    if meta.is_file():
        root = xmlsafe.parse(meta, name="data/metadata.xml", max_bytes=MAX_XML).getroot()
        for element in root:
            if not isinstance(element.tag, str) or etree.QName(element).localname != "value":
                continue
            fname = ".".join(p for p in (element.get("schema"), element.get("element"),
                                         element.get("qualifier")) if p)
            if fname.count(".") < 1:
                continue
            plan.values.append(Value(fname, element.text or "",
                                     element.get("language") or None))
    by_rel = {p.relative: p for p in bag.payload}
    policies = 0
    for rel in sorted(by_rel):
        parts = rel.split("/")
        if len(parts) == 1:
            if rel in ("object.properties", "metadata.xml", "policy.xml"):
                policies += rel == "policy.xml"
                continue
            plan.warnings.append(f"ignored data/{rel}: not part of the replication AIP layout")
            continue
        if rel.endswith("-metadata.xml"):
            continue
        if rel.endswith("-policy.xml"):
            policies += 1
            continue
        bundle = parts[0]
        facts = _bitstream_facts(by_rel.get(rel + "-metadata.xml"))
        name = facts.get("name") or parts[-1]
        plan.files.append(PlannedFile(bundle, name, by_rel[rel],
                                      description=facts.get("description") or None,
                                      source=facts.get("source") or None,
                                      primary=facts.get("bundle_primary") == "true"))
    if policies:
        plan.warnings.append(f"{policies} policy file(s) not applied: the item gets the "
                             "collection's default policies")
    return plan


def _bitstream_facts(payload: PayloadFile | None) -> dict[str, str]:
    if payload is None:
        return {}
    root = xmlsafe.parse(payload.path, name=payload.manifest_path, max_bytes=MAX_XML).getroot()
    return {str(v.get("name")): (v.text or "").strip() for v in root
            if isinstance(v.tag, str) and v.get("name")}


# ---------------------------------------------------------------------------------------
# Other bags


def _plan_plain(bag: OpenedBag) -> ItemPlan:
    plan = ItemPlan("plain")
    mets = _mets_candidates(bag)
    if mets:
        plan.values.extend(mets_values(mets[0], plan.warnings))
    present = {v.field for v in plan.values}
    local: list[Value] = []
    for label, value in bag.info:
        key = label.lower()
        if not value or key in DERIVED_LABELS:
            continue
        mapped = BAG_INFO_FIELDS.get(key)
        if mapped is not None:
            if mapped not in present:
                plan.values.append(Value(mapped, value))
            continue
        qualifier = label if _LABEL_OK.match(label) else \
            re.sub(r"[^A-Za-z0-9_\-]", "-", label)[:64]
        local.append(Value(LOCAL_PREFIX + qualifier, value))
    plan.values.extend(local)
    plan.files = [PlannedFile("ORIGINAL", p.relative, p) for p in bag.payload]
    return plan


def _mets_candidates(bag: OpenedBag) -> list[PayloadFile]:
    return sorted((p for p in bag.payload if "/" not in p.relative
                   and _METS_NAME.match(p.relative)), key=lambda p: p.relative)


def mets_values(payload: PayloadFile, warnings: list[str]) -> list[Value]:
    """Descriptive metadata of the object a METS document describes: the dmdSec its
    outermost structMap div points to, else the first DC or MODS dmdSec."""
    root = xmlsafe.parse(payload.path, name=payload.manifest_path, max_bytes=MAX_XML).getroot()
    if root.tag != f"{{{METS_NS}}}mets":
        return []
    sections = {d.get("ID"): d for d in root.iter(f"{{{METS_NS}}}dmdSec")}
    ordered = list(sections.values())
    for div in root.iter(f"{{{METS_NS}}}div"):
        ids = (div.get("DMDID") or "").split()
        ordered = [sections[i] for i in ids if i in sections] + ordered
        break
    for section in ordered:
        wrap = section.find(f"{{{METS_NS}}}mdWrap")
        if wrap is None:
            continue
        data = wrap.find(f"{{{METS_NS}}}xmlData")
        if data is None:
            continue
        mdtype = (wrap.get("MDTYPE") or "").upper()
        if mdtype == "DC":
            return _dc_values(data)
        if mdtype == "MODS":
            mods = data.find(f"{{{MODS_NS}}}mods")
            if mods is not None:
                return _mods_values(mods)
    warnings.append(f"{payload.manifest_path} has no DC or MODS dmdSec; metadata comes "
                    "from bag-info.txt")
    return []


def _text(element: Any) -> str:
    return re.sub(r"\s+", " ", "".join(element.itertext())).strip()


def _dc_values(container: Any) -> list[Value]:
    values: list[Value] = []
    for element in container.iter():
        if not isinstance(element.tag, str):
            continue
        qname = etree.QName(element)
        if qname.namespace not in DC_NS:
            continue
        target = DC_FIELDS.get(qname.localname)
        text = _text(element)
        if target and text:
            language = element.get("{http://www.w3.org/XML/1998/namespace}lang")
            values.append(Value(target, text, language))
    return values


def _mods_values(mods: Any) -> list[Value]:
    ns = f"{{{MODS_NS}}}"
    values: list[Value] = []

    def add(name: str, text: str, language: str | None = None) -> None:
        if text:
            values.append(Value(name, text, language))

    for info in mods.findall(f"{ns}titleInfo"):
        title = " : ".join(t for t in (_text(e) for e in info.findall(f"{ns}title")) if t)
        sub = " ".join(_text(e) for e in info.findall(f"{ns}subTitle"))
        field_name = "dc.title.alternative" if info.get("type") else "dc.title"
        add(field_name, f"{title}: {sub}" if sub else title, info.get("lang"))
    for name in mods.findall(f"{ns}name"):
        display = name.find(f"{ns}displayForm")
        text = _text(display) if display is not None else ", ".join(
            _text(p) for p in name.findall(f"{ns}namePart") if _text(p))
        roles = {_text(r).lower() for r in name.iter(f"{ns}roleTerm")}
        add("dc.contributor.author" if roles & {"aut", "author", "cre", "creator"}
            else "dc.contributor", text)
    for origin in mods.findall(f"{ns}originInfo"):
        for date in origin.findall(f"{ns}dateIssued"):
            add("dc.date.issued", _text(date))
        for publisher in origin.findall(f"{ns}publisher"):
            add("dc.publisher", _text(publisher))
    for language in mods.findall(f"{ns}language"):
        for term in language.findall(f"{ns}languageTerm"):
            add("dc.language.iso" if term.get("type") == "code" else "dc.language",
                _text(term))
    for abstract in mods.findall(f"{ns}abstract"):
        add("dc.description.abstract", _text(abstract), abstract.get("lang"))
    for note in mods.findall(f"{ns}note"):
        add("dc.description", _text(note))
    for subject in mods.findall(f"{ns}subject"):
        for topic in subject.findall(f"{ns}topic"):
            add("dc.subject", _text(topic))
    for genre in mods.findall(f"{ns}genre"):
        add("dc.type", _text(genre))
    for identifier in mods.findall(f"{ns}identifier"):
        kind = (identifier.get("type") or "").lower()
        add(MODS_IDENTIFIERS.get(kind, "dc.identifier.other"), _text(identifier))
    for condition in mods.findall(f"{ns}accessCondition"):
        add("dc.rights", _text(condition))
    return values


def drop_install_fields(values: list[Value]) -> list[Value]:
    """On submit, installing re-creates the accession dates and the handle URI: the
    package's copies (an earlier repository's) are dropped; other URIs are kept."""
    def recreated(value: Value) -> bool:
        if value.field == "dc.identifier.uri":
            return "/handle/" in value.value or "hdl.handle.net/" in value.value
        return value.field in itemkit.INSTALL_FIELDS
    return [v for v in values if not recreated(v)]
