"""Reading and writing ``imsmanifest.xml`` (IMS Content Packaging 1.1.x and 1.2).

Reading keeps what a repository needs: the files the resources reference (``href`` of each
``resource`` and ``file``, resolved against ``xml:base``, percent-decoded; absolute URLs are
left alone), the launch file of the default organization, and descriptive metadata from
IEEE LOM / IMS Metadata (inline, or in a file named by ``adlcp:location``) or from Dublin
Core elements placed in ``<metadata>``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from lxml import etree

from packagers.bagit.describe import DC_FIELDS
from packagers.errors import PackageValidationError
from server.errors import Detail
from server.services.metadata import Value

MANIFEST = "imsmanifest.xml"
CP_NAMESPACE = "http://www.imsglobal.org/xsd/imscp_v1p1"
LOM_NAMESPACE = "http://ltsc.ieee.org/xsd/LOM"
XML_NS = "http://www.w3.org/XML/1998/namespace"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass
class ManifestFacts:
    identifier: str | None
    schema: str | None
    referenced: list[str] = field(default_factory=list)  # package paths, in manifest order
    launch: str | None = None
    title: str | None = None  # the default organization's title
    values: list[Value] = field(default_factory=list)
    lom_location: str | None = None
    warnings: list[str] = field(default_factory=list)


def _local(element: Any) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _children(element: Any, name: str) -> list[Any]:
    return [c for c in element if _local(c) == name]


def _child(element: Any, name: str) -> Any | None:
    found = _children(element, name)
    return found[0] if found else None


def _text(element: Any) -> str:
    return " ".join("".join(element.itertext()).split())


def is_cp_namespace(namespace: str | None) -> bool:
    return bool(namespace) and "imscp" in str(namespace).lower()


def resolve_href(base: str, href: str) -> str | None:
    """The package path an href names, or None for an absolute URL; raises ValueError for
    a path that leaves the package."""
    href = href.strip().split("#", 1)[0].split("?", 1)[0]
    if not href or _SCHEME.match(href) or href.startswith("//"):
        return None
    if href.startswith("/"):
        raise ValueError("absolute path")
    joined = posixpath.normpath(posixpath.join(base, unquote(href)))
    if joined.startswith("../") or joined == ".." or joined.startswith("/"):
        raise ValueError("path leaves the package")
    return joined


def read_manifest(root: Any, label: str) -> ManifestFacts:
    """Check the manifest's structure and collect what the ingester needs."""
    if _local(root) != "manifest" or not is_cp_namespace(etree.QName(root).namespace):
        raise PackageValidationError(f"{label}: {MANIFEST} is not an IMS CP manifest", [Detail(
            "root element must be an IMS CP <manifest>", file=MANIFEST,
            expected=f"{{{CP_NAMESPACE}}}manifest", found=str(root.tag))])
    metadata = _child(root, "metadata")
    schema = None
    if metadata is not None:
        schema_el = _child(metadata, "schema")
        schema = _text(schema_el) if schema_el is not None else None
    facts = ManifestFacts(identifier=root.get("identifier"), schema=schema)
    organizations = _child(root, "organizations")
    resources = _child(root, "resources")
    for name, element in (("organizations", organizations), ("resources", resources)):
        if element is None:
            facts.warnings.append(f"{MANIFEST} has no <{name}> element (IMS CP requires one)")
    organizations = organizations if organizations is not None else etree.Element("o")
    resources = resources if resources is not None else etree.Element("r")
    orgs = _children(organizations, "organization")
    if schema and "scorm" in schema.lower() and not orgs:
        raise PackageValidationError(f"{label}: SCORM package without an organization", [Detail(
            "a SCORM package must have an <organization>: its SCOs are launched through one",
            file=MANIFEST, field="organizations", expected="at least one organization",
            found="none")])
    default_id = organizations.get("default")
    default = next((o for o in orgs if o.get("identifier") == default_id), None)
    if default_id and default is None:
        raise PackageValidationError(f"{label}: the default organization does not exist", [
            Detail("organizations/@default names no organization", file=MANIFEST,
                   field="default", found=default_id)])
    default = default if default is not None else (orgs[0] if orgs else None)

    base_root = (root.get(f"{{{XML_NS}}}base") or "")
    base_res = posixpath.join(base_root, resources.get(f"{{{XML_NS}}}base") or "")
    hrefs: dict[str, str] = {}  # resource identifier -> launch path
    bad: list[Detail] = []
    seen: set[str] = set()

    def note(base: str, href: str | None, where: str) -> str | None:
        if not href:
            return None
        try:
            path = resolve_href(base, href)
        except ValueError as exc:
            bad.append(Detail(f"href {exc}", file=MANIFEST, field=where, found=href))
            return None
        if path is not None and path not in seen:
            seen.add(path)
            facts.referenced.append(path)
        return path

    for resource in _children(resources, "resource"):
        base = posixpath.join(base_res, resource.get(f"{{{XML_NS}}}base") or "")
        launch = note(base, resource.get("href"), "resource/@href")
        if launch and resource.get("identifier"):
            hrefs[resource.get("identifier")] = launch
        for file_el in _children(resource, "file"):
            note(base, file_el.get("href"), "file/@href")
    if bad:
        raise PackageValidationError(f"{label}: {MANIFEST} points outside the package", bad)
    if default is not None:
        title = _child(default, "title")
        facts.title = _text(title) if title is not None else None
        for item in default.iter():
            ref = item.get("identifierref") if _local(item) == "item" else None
            if ref and ref in hrefs:
                facts.launch = hrefs[ref]
                break
    if facts.launch is None and hrefs:
        facts.launch = next(iter(hrefs.values()))
    if _children(root, "manifest"):
        facts.warnings.append("sub-manifests are not interpreted; their files are kept")
    if metadata is not None:
        for child in metadata:
            name = _local(child)
            if name == "lom":
                facts.values.extend(lom_values(child))
            elif name == "location":
                facts.lom_location = _text(child)
            elif etree.QName(child).namespace in ("http://purl.org/dc/elements/1.1/",
                                                  "http://purl.org/dc/terms/"):
                target = DC_FIELDS.get(name)
                if target and _text(child):
                    facts.values.append(Value(target, _text(child),
                                              child.get(f"{{{XML_NS}}}lang")))
    return facts


def _strings(element: Any) -> list[tuple[str, str | None]]:
    """The texts of a LOM LangString (``string`` in LOM, ``langstring`` in IMS MD 1.2)."""
    out: list[tuple[str, str | None]] = []
    parts = [c for c in element if _local(c) in ("string", "langstring")]
    if not parts:
        text = _text(element)
        return [(text, None)] if text else []
    for part in parts:
        text = _text(part)
        if text:
            out.append((text, part.get("language") or part.get(f"{{{XML_NS}}}lang")))
    return out


def lom_values(lom: Any) -> list[Value]:
    """LOM general.title/description/keyword/language and rights.description."""
    values: list[Value] = []
    general = _child(lom, "general")
    if general is not None:
        for name, target in (("title", "dc.title"), ("description", "dc.description"),
                             ("keyword", "dc.subject")):
            for element in _children(general, name):
                values.extend(Value(target, text, lang) for text, lang in _strings(element))
        for element in _children(general, "language"):
            if _text(element):
                values.append(Value("dc.language.iso", _text(element)))
    rights = _child(lom, "rights")
    if rights is not None:
        for element in _children(rights, "description"):
            values.extend(Value("dc.rights", text, lang) for text, lang in _strings(element))
    return values


def write_manifest(identifier: str, title: str, values: list[Value], files: list[str],
                   launch: str | None) -> bytes:
    """An IMS CP 1.1.4 manifest: LOM metadata, one organization, one resource."""
    cp = CP_NAMESPACE
    root = etree.Element(f"{{{cp}}}manifest", nsmap={None: cp, "lom": LOM_NAMESPACE},
                         identifier=identifier)
    metadata = etree.SubElement(root, f"{{{cp}}}metadata")
    etree.SubElement(metadata, f"{{{cp}}}schema").text = "IMS Content"
    etree.SubElement(metadata, f"{{{cp}}}schemaversion").text = "1.1.4"
    lom = etree.SubElement(metadata, f"{{{LOM_NAMESPACE}}}lom")
    general = etree.SubElement(lom, f"{{{LOM_NAMESPACE}}}general")

    def lang_string(parent: Any, name: str, value: Value) -> None:
        holder = etree.SubElement(parent, f"{{{LOM_NAMESPACE}}}{name}")
        string = etree.SubElement(holder, f"{{{LOM_NAMESPACE}}}string")
        if value.language:
            string.set("language", value.language)
        string.text = value.value

    def by_field(name: str) -> list[Value]:
        return [v for v in values if v.field == name]

    for value in by_field("dc.title"):
        lang_string(general, "title", value)
    for value in by_field("dc.language.iso"):
        etree.SubElement(general, f"{{{LOM_NAMESPACE}}}language").text = value.value
    for value in by_field("dc.description"):
        lang_string(general, "description", value)
    for value in by_field("dc.subject"):
        lang_string(general, "keyword", value)
    rights = by_field("dc.rights")
    if rights:
        rights_el = etree.SubElement(lom, f"{{{LOM_NAMESPACE}}}rights")
        for value in rights:
            lang_string(rights_el, "description", value)
    organizations = etree.SubElement(root, f"{{{cp}}}organizations", default="ORG-1")
    organization = etree.SubElement(organizations, f"{{{cp}}}organization", identifier="ORG-1")
    etree.SubElement(organization, f"{{{cp}}}title").text = title
    resources = etree.SubElement(root, f"{{{cp}}}resources")
    if files:
        item = etree.SubElement(organization, f"{{{cp}}}item", identifier="ITEM-1",
                                identifierref="RES-1")
        etree.SubElement(item, f"{{{cp}}}title").text = title
        resource = etree.SubElement(resources, f"{{{cp}}}resource", identifier="RES-1",
                                    type="webcontent", href=_href(launch or files[0]))
        for path in files:
            etree.SubElement(resource, f"{{{cp}}}file", href=_href(path))
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                 pretty_print=True)
    return data


def _href(path: str) -> str:
    return quote(path, safe="/!$&'()*+,;=:@-._~")
