"""Reading the ``mets.xml`` of a DSpace METS SIP into a small model, checking it as it goes.

What the DSpace METS SIP profile requires (dspace-aip.md §6.5), and what is checked here:

* the root is ``mets`` in the METS namespace, ``@PROFILE`` starts with
  ``DSpace METS SIP Profile`` and ``@ID`` is present (DSpace's own messages);
* the item's ``div`` is the first ``div`` carrying a ``DMDID``, searched in *every*
  structMap (DSpace only looks at the first div of the first structMap, issue #12452):
  a structMap labelled ``DSpace Object`` first, then ``LOGICAL`` ones, then the rest, each
  in document order; ``Parent`` structMaps are never searched.  Its primary file is the
  ``fptr`` directly inside it (DSpace's rule), else the first ``fptr`` below it;
* every ``DMDID``, ``ADMID`` and ``FILEID`` resolves, and no ``@ID`` is used twice;
* every ``fileGrp`` has a ``USE`` (``CONTENT`` is the ORIGINAL bundle, ``MANIFESTMD`` the
  METADATA bundle, anything else is the bundle's name); every ``file`` has an ``ID`` and
  one ``FLocat`` with ``LOCTYPE="URL"``; embedded ``FContent`` is refused.

Element names are matched by local name (producers vary in prefixes); ``MDTYPE`` and
``OTHERMDTYPE`` case-insensitively.  The manifest of one item is small, so it is parsed
as a tree (through :mod:`server.xmlsafe`, with a size limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from packagers.aip.mets import METS_NS, XLINK_NS, local
from packagers.aip.mets import PROFILE as AIP_PROFILE
from packagers.errors import PackageValidationError
from server.errors import Detail

MANIFEST = "mets.xml"
PROFILE = "DSpace METS SIP Profile 1.0"
PROFILE_PREFIX = "DSpace METS SIP Profile"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # parsed as a tree: one item, ~50 000 files
HREF = f"{{{XLINK_NS}}}href"
ADM_KINDS = ("techMD", "rightsMD", "sourceMD", "digiprovMD")
BUNDLE_FOR_USE = {"CONTENT": "ORIGINAL", "MANIFESTMD": "METADATA"}


@dataclass
class MdSection:
    """A ``dmdSec`` or an amdSec section: wrapped XML, wrapped base64, or a reference."""

    id: str | None
    kind: str  # dmdSec, techMD, rightsMD, sourceMD, digiprovMD
    mdtype: str  # MDTYPE, or OTHERMDTYPE when MDTYPE is OTHER
    groupid: str | None = None
    elements: list[Any] = field(default_factory=list)  # element children of xmlData
    href: str | None = None  # mdRef
    mimetype: str | None = None
    bindata: str | None = None  # base64 text of binData

    def is_type(self, *labels: str) -> bool:
        return self.mdtype.upper() in {label.upper() for label in labels}

    @property
    def where(self) -> str:
        return f"{self.kind}[@ID={self.id}]" if self.id else self.kind


@dataclass
class MetsFile:
    id: str
    href: str
    bundle: str
    mimetype: str | None = None
    seq: int | None = None
    size: int | None = None
    checksum: str | None = None
    checksum_type: str | None = None
    admids: list[str] = field(default_factory=list)
    groupid: str | None = None


@dataclass
class ItemDiv:
    dmdids: list[str]
    admids: list[str]
    fptr: str | None  # primary: the fptr directly in the item's div, else its first fptr
    where: str


@dataclass
class SipManifest:
    name: str
    mets_id: str
    objid: str | None
    profile: str
    item: ItemDiv
    dmd: dict[str, MdSection] = field(default_factory=dict)
    adm: dict[str, list[MdSection]] = field(default_factory=dict)
    files: list[MetsFile] = field(default_factory=list)

    def sections(self, admids: list[str], kind: str) -> list[MdSection]:
        out: list[MdSection] = []
        for admid in admids:
            out.extend(s for s in self.adm.get(admid, []) if s.kind == kind and s not in out)
        return out

    def section(self, admids: list[str], kind: str, *labels: str) -> MdSection | None:
        return next((s for s in self.sections(admids, kind) if s.is_type(*labels)), None)

    def file(self, file_id: str) -> MetsFile | None:
        return next((f for f in self.files if f.id == file_id), None)

    @property
    def item_dmd(self) -> list[MdSection]:
        return [self.dmd[i] for i in self.item.dmdids]


def _refuse(message: str, name: str, **detail: Any) -> PackageValidationError:
    what = detail.pop("what", message)
    return PackageValidationError(message, [Detail(what, file=name, **detail)])


def _ids(value: str | None) -> list[str]:
    return (value or "").split()


def read_manifest(root: Any, name: str) -> SipManifest:
    """Check the parsed ``mets`` element and build the model (see the module docstring)."""
    if not isinstance(root.tag, str) or local(root.tag) != "mets":
        raise _refuse("not a METS document: the root element of mets.xml is not <mets>",
                      name, expected="mets", found=str(root.tag))
    if root.tag != f"{{{METS_NS}}}mets":
        raise _refuse("not a METS document: <mets> is not in the METS namespace", name,
                      expected=METS_NS, found=str(root.tag))
    profile = root.get("PROFILE")
    if profile is None:
        raise _refuse("Cannot accept METS with no PROFILE attribute!", name,
                      field="mets/@PROFILE", expected=PROFILE)
    if not profile.startswith(PROFILE_PREFIX):
        hint = (" (this is a DSpace AIP: ingest it with package=AIP)"
                if profile == AIP_PROFILE else "")
        raise _refuse(f"METS has unacceptable PROFILE attribute, profile={profile}{hint}",
                      name, field="mets/@PROFILE", expected=f"{PROFILE_PREFIX} ...",
                      found=profile)
    mets_id = root.get("ID")
    if not mets_id:
        raise _refuse("Manifest is missing the required mets@ID attribute.", name,
                      field="mets/@ID")
    _check_unique_ids(root, name)
    item = _item_div(root, name)
    manifest = SipManifest(name=name, mets_id=mets_id, objid=root.get("OBJID"),
                           profile=profile, item=item)
    for el in root:
        kind = local(el.tag)
        if kind == "dmdSec":
            section = _md_section(el, "dmdSec", name)
            if section.id:
                manifest.dmd[section.id] = section
        elif kind == "amdSec":
            sections = [_md_section(part, local(part.tag), name) for part in el
                        if local(part.tag) in ADM_KINDS]
            if el.get("ID"):
                manifest.adm[el.get("ID")] = sections
            for section in sections:
                if section.id:
                    manifest.adm[section.id] = [section]
        elif kind == "fileSec":
            for group in el:
                if local(group.tag) == "fileGrp":
                    _file_group(group, None, manifest.files, name)
    _check_references(manifest, root, name)
    return manifest


def _check_unique_ids(root: Any, name: str) -> None:
    seen: set[str] = set()
    for el in root.iter(f"{{{METS_NS}}}*"):
        value = el.get("ID")
        if value is None:
            continue
        if value in seen:
            raise _refuse(f"Invalid METS: the ID {value} is used twice", name, field="@ID",
                          found=value)
        seen.add(value)


def _structmap_order(root: Any) -> list[tuple[int, Any]]:
    maps = [(n, sm) for n, sm in enumerate(
        (c for c in root if local(c.tag) == "structMap"), start=1)
        if (sm.get("LABEL") or "").strip().lower() != "parent"]

    def rank(pair: tuple[int, Any]) -> tuple[int, int]:
        n, sm = pair
        if (sm.get("LABEL") or "").strip() == "DSpace Object":
            return (0, n)
        if (sm.get("TYPE") or "").strip().upper() == "LOGICAL":
            return (1, n)
        return (2, n)

    return sorted(maps, key=rank)


def _item_div(root: Any, name: str) -> ItemDiv:
    maps = _structmap_order(root)
    if not maps:
        raise _refuse("Invalid METS: the manifest has no structMap", name, field="structMap")
    for number, structmap in maps:
        for div in structmap.iter(f"{{{METS_NS}}}div"):
            dmdids = _ids(div.get("DMDID"))
            if not dmdids:
                continue
            fptr = next((c.get("FILEID") for c in div if local(c.tag) == "fptr"), None)
            if fptr is None:  # no primary named: the first file the item's div lists
                fptr = next((c.get("FILEID") for c in div.iter(f"{{{METS_NS}}}fptr")), None)
            label = structmap.get("LABEL")
            where = f"structMap[{number}]" + (f" LABEL={label!r}" if label else "")
            return ItemDiv(dmdids=dmdids, admids=_ids(div.get("ADMID")), fptr=fptr,
                           where=where)
    raise _refuse("Invalid METS: no div in any structMap refers to the item's descriptive "
                  "metadata (DMDID)", name, field="structMap/div/@DMDID",
                  expected="a div with DMDID")


def _md_section(el: Any, kind: str, name: str) -> MdSection:
    wrap = next((c for c in el if local(c.tag) == "mdWrap"), None)
    ref = next((c for c in el if local(c.tag) == "mdRef"), None)
    source = wrap if wrap is not None else ref
    where = f"{kind}[@ID={el.get('ID')}]"
    if source is None:
        raise _refuse(f"Invalid METS Manifest: {where} has neither mdWrap nor mdRef", name,
                      field=where)
    mdtype = (source.get("MDTYPE") or "").strip()
    if mdtype.upper() == "OTHER":
        mdtype = (source.get("OTHERMDTYPE") or "OTHER").strip()
    section = MdSection(id=el.get("ID"), kind=kind, mdtype=mdtype,
                        groupid=el.get("GROUPID"), mimetype=source.get("MIMETYPE"))
    if wrap is not None:
        for c in wrap:
            if local(c.tag) == "xmlData":
                section.elements = [x for x in c if isinstance(x.tag, str)]
            elif local(c.tag) == "binData":
                section.bindata = "".join(c.itertext())
    elif ref is not None:
        if (ref.get("LOCTYPE") or "").upper() != "URL":
            raise _refuse('mdRef does not have LOCTYPE="URL" attribute.', name,
                          field=f"{where}/mdRef/@LOCTYPE", expected="URL",
                          found=ref.get("LOCTYPE"))
        section.href = ref.get(HREF)
        if not section.href:
            raise _refuse(f"Invalid METS Manifest: {where}/mdRef has no xlink:href", name,
                          field=f"{where}/mdRef/@xlink:href")
    return section


def _file_group(group: Any, inherited: str | None, out: list[MetsFile], name: str) -> None:
    use = (group.get("USE") or "").strip() or inherited
    if not use:
        raise _refuse("Invalid METS Manifest: every fileGrp element must have a USE "
                      "attribute.", name, field="fileGrp/@USE",
                      expected="CONTENT, or a bundle name")
    bundle = BUNDLE_FOR_USE.get(use.upper(), use)
    for el in group:
        kind = local(el.tag)
        if kind == "fileGrp":
            _file_group(el, use, out, name)
        elif kind == "file":
            out.append(_file(el, bundle, name))


def _file(el: Any, bundle: str, name: str) -> MetsFile:
    file_id = el.get("ID")
    if not file_id:
        raise _refuse("Invalid METS Manifest: every file element must have an ID.", name,
                      field="file/@ID")
    where = f"file[@ID={file_id}]"
    for c in el:
        if local(c.tag) == "FContent":
            raise _refuse(f"{where} embeds its content (FContent); only files referenced "
                          "with FLocat are accepted", name, field=f"{where}/FContent",
                          expected="FLocat")
        if local(c.tag) == "file":
            raise _refuse(f"{where} contains nested file elements, which are not supported",
                          name, field=f"{where}/file")
    flocats = [c for c in el if local(c.tag) == "FLocat"]
    if len(flocats) != 1:
        raise _refuse("Invalid METS Manifest: Every file element must have exactly one "
                      "FLocat child.", name, field=f"{where}/FLocat", expected="1",
                      found=str(len(flocats)))
    flocat = flocats[0]
    if (flocat.get("LOCTYPE") or "").upper() != "URL":
        raise _refuse('FLocat does not have LOCTYPE="URL" attribute.', name,
                      field=f"{where}/FLocat/@LOCTYPE", expected="URL",
                      found=flocat.get("LOCTYPE"))
    href = flocat.get(HREF)
    if not href:
        raise _refuse("Invalid METS Manifest: FLocat has no xlink:href", name,
                      field=f"{where}/FLocat/@xlink:href")
    size = _number(el.get("SIZE"), f"{where}/@SIZE", name)
    seq = _number(el.get("SEQ"), f"{where}/@SEQ", name)
    checksum = (el.get("CHECKSUM") or "").strip() or None
    return MetsFile(id=file_id, href=href, bundle=bundle, mimetype=el.get("MIMETYPE") or None,
                    seq=seq, size=size, checksum=checksum,
                    checksum_type=(el.get("CHECKSUMTYPE") or "").strip() or None,
                    admids=_ids(el.get("ADMID")), groupid=el.get("GROUPID"))


def _number(text: str | None, where: str, name: str) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise _refuse(f"Invalid METS Manifest: {where} is not a whole number", name,
                      field=where, found=text)
    return value


def _check_references(manifest: SipManifest, root: Any, name: str) -> None:
    for ref in manifest.item.dmdids:
        if ref not in manifest.dmd:
            raise _refuse(f"Invalid METS: DMDID {ref} refers to no dmdSec", name,
                          field="div/@DMDID", found=ref)
    refs = [(a, "div/@ADMID") for a in manifest.item.admids]
    for f in manifest.files:
        refs.extend((a, f"file[@ID={f.id}]/@ADMID") for a in f.admids)
    for ref, where in refs:
        if ref not in manifest.adm:
            raise _refuse(f"Invalid METS: ADMID {ref} refers to no amdSec", name, field=where,
                          found=ref)
    ids = {f.id for f in manifest.files}
    for fptr in root.iter(f"{{{METS_NS}}}fptr"):
        file_id = fptr.get("FILEID")
        if file_id is not None and file_id not in ids:
            raise _refuse(f"Invalid METS: FILEID {file_id} refers to no file", name,
                          field="fptr/@FILEID", found=file_id)
