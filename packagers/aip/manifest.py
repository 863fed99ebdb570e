"""Reading an AIP's ``mets.xml``: streamed through :mod:`server.xmlsafe` into a small model.

The document is parsed as a stream; the children of the object's top ``div`` (a
collection AIP lists one ``div`` per item, possibly a million) are reduced to
:class:`ChildRef` records and released as they end, so memory depends on the metadata, not
on the number of children.  Everything DSpace's reader checks is checked here too, with
DSpace's messages, each with a :class:`~server.errors.Detail` naming the package and the
attribute; identifier references (``DMDID``, ``ADMID``, ``FILEID``) must resolve.

Lenient where DSpace's own output varies (dspace-aip.md §11): element names are matched by
local name, ``MDTYPE``/``OTHERMDTYPE`` case-insensitively, ``mets/@ID`` with or without
``DB-ID-``, ``bitstream_<n>`` file ids of DSpace 1.x-7.3, empty ``fileGrp`` elements and
items without a ``fileSec``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import IO, Any

from packagers.aip.mets import METS_NS, PROFILE, XLINK_NS, local
from packagers.errors import PackageValidationError
from server import xmlsafe
from server.errors import Detail, InvalidInput
from server.models import ObjectType
from server.services import handles

MAX_MANIFEST_BYTES = 4 * 1024**3  # streamed; only the metadata stays in memory
HREF = f"{{{XLINK_NS}}}href"
OBJECT_TYPES = {"SITE": ObjectType.SITE, "COMMUNITY": ObjectType.COMMUNITY,
                "COLLECTION": ObjectType.COLLECTION, "ITEM": ObjectType.ITEM}
MD_KINDS = ("techMD", "rightsMD", "sourceMD", "digiprovMD")
# The elements read while streaming (any namespace): the root and the structMap skeleton.
STREAMED_TAGS = ("{*}mets", "{*}structMap", "{*}div", "{*}fptr")


@dataclass
class MdSection:
    """One ``dmdSec`` or ``amdSec`` child: wrapped XML, wrapped base64, or a reference."""

    id: str | None
    kind: str
    mdtype: str
    xml: Any | None = None
    href: str | None = None
    mimetype: str | None = None
    bindata: str | None = None

    def is_type(self, *labels: str) -> bool:
        return self.mdtype.upper() in {label.upper() for label in labels}


@dataclass
class AmdSec:
    id: str | None
    sections: list[MdSection] = field(default_factory=list)

    def of(self, kind: str) -> list[MdSection]:
        return [s for s in self.sections if s.kind == kind]


@dataclass
class MetsFile:
    id: str
    href: str
    mimetype: str | None = None
    seq: int | None = None
    size: int | None = None
    size_text: str | None = None
    checksum: str | None = None
    checksum_type: str | None = None
    admids: list[str] = field(default_factory=list)
    groupid: str | None = None

    @property
    def uuid(self) -> uuid.UUID | None:
        """The bitstream UUID of ``bitstream_<uuid>`` ids (None for ``bitstream_<n>``)."""
        if self.id.startswith("bitstream_"):
            try:
                return uuid.UUID(self.id[len("bitstream_"):])
            except ValueError:
                return None
        return None


@dataclass
class FileGroup:
    use: str
    admids: list[str] = field(default_factory=list)
    files: list[MetsFile] = field(default_factory=list)


@dataclass(frozen=True)
class ChildRef:
    type: str | None
    handle: str | None
    url: str | None

    @property
    def object_type(self) -> ObjectType | None:
        word = (self.type or "").removeprefix("DSpace ").strip().upper()
        return OBJECT_TYPES.get(word)


@dataclass
class Manifest:
    name: str
    mets_id: str
    type: ObjectType
    objid: str | None
    handle: str | None
    uuid: uuid.UUID | None
    lastmoddate: str | None = None
    dmd: dict[str, MdSection] = field(default_factory=dict)
    dmd_order: list[MdSection] = field(default_factory=list)
    amd: dict[str, AmdSec] = field(default_factory=dict)
    amd_order: list[AmdSec] = field(default_factory=list)
    groups: list[FileGroup] = field(default_factory=list)
    top_dmdids: list[str] = field(default_factory=list)
    top_admids: list[str] = field(default_factory=list)
    top_fptr: str | None = None
    children: list[ChildRef] = field(default_factory=list)
    template_dmdids: list[str] | None = None
    parent_handle: str | None = None
    has_parent_map: bool = False

    @property
    def label(self) -> str:
        what = self.type.value
        return f"{what} {self.handle}" if self.handle else f"{what} {self.mets_id}"

    def files(self) -> list[MetsFile]:
        return [f for g in self.groups for f in g.files]

    def file(self, file_id: str) -> MetsFile | None:
        for f in self.files():
            if f.id == file_id:
                return f
        return None

    def sections(self, admids: list[str], kind: str) -> list[MdSection]:
        out: list[MdSection] = []
        for admid in admids:
            amd = self.amd.get(admid)
            if amd is not None:
                out.extend(amd.of(kind))
        return out

    def section(self, admids: list[str], kind: str, *labels: str) -> MdSection | None:
        for section in self.sections(admids, kind):
            if section.is_type(*labels):
                return section
        return None

    def anywhere(self, *labels: str) -> list[MdSection]:
        """Every amdSec section of these types, wherever it is (davpack's own sections are
        in an amdSec nothing refers to)."""
        return [s for amd in self.amd_order for s in amd.sections if s.is_type(*labels)]

    def choose_dmd(self, dmdids: list[str], preferred: str | None) -> MdSection | None:
        """DSpace's choice: the ``dmd`` option's type, else DIM, else MODS, else the first."""
        sections = [self.dmd[i] for i in dmdids if i in self.dmd]
        for wanted in ([preferred] if preferred else []) + ["DIM", "MODS"]:
            for section in sections:
                if section.is_type(wanted):
                    return section
        return sections[0] if sections else None


def _fail(message: str, name: str, **detail: Any) -> PackageValidationError:
    return PackageValidationError(message, [Detail(detail.pop("what", message), file=name,
                                                   **detail)])


def _ids(value: str | None) -> list[str]:
    return (value or "").split()


def _md_section(el: Any, kind: str, name: str) -> MdSection:
    wrap = ref = None
    for c in el:
        kind_of_child = local(c.tag)
        if kind_of_child == "mdWrap" and wrap is None:
            wrap = c
        elif kind_of_child == "mdRef" and ref is None:
            ref = c
    source = wrap if wrap is not None else ref
    if source is None:
        raise _fail(f"Invalid METS Manifest: {kind} {el.get('ID')} has neither mdWrap nor "
                    "mdRef", name, field=el.get("ID"))
    mdtype = source.get("MDTYPE") or ""
    if mdtype.upper() == "OTHER":
        mdtype = source.get("OTHERMDTYPE") or "OTHER"
    section = MdSection(id=el.get("ID"), kind=kind, mdtype=mdtype,
                        mimetype=source.get("MIMETYPE"))
    if wrap is not None:
        for c in wrap:
            kind_of_child = local(c.tag)
            if kind_of_child == "xmlData":
                section.xml = next((x for x in c if isinstance(x.tag, str)), None)
            elif kind_of_child == "binData":
                section.bindata = "".join(c.itertext())
    elif ref is not None:
        if (ref.get("LOCTYPE") or "").upper() != "URL":
            raise _fail('FLocat/mdRef does not have LOCTYPE="URL" attribute.', name,
                        field="mdRef/@LOCTYPE", expected="URL", found=ref.get("LOCTYPE"))
        section.href = ref.get(HREF)
    return section


def read_manifest(stream: IO[bytes] | bytes, name: str) -> Manifest:
    """Parse and check a METS manifest (see the module docstring)."""
    root: Any = None
    structmaps = 0
    top: dict[str, Any] = {"dmdids": [], "admids": [], "fptr": None, "seen": False}
    children: list[ChildRef] = []
    template: list[str] | None = None
    # Only the elements the stream logic looks at raise events (libxml2 filters the rest,
    # so the embedded metadata costs no Python per element); the tree is built anyway.
    events = xmlsafe.iterparse(stream, events=("start", "end"), tag=STREAMED_TAGS,
                               name=name, max_bytes=MAX_MANIFEST_BYTES)
    for event, el in events:
        if root is None:
            root = el.getroottree().getroot()
        parent = el.getparent()
        if event == "start":
            if parent is None:
                continue
            if parent is root and local(el.tag) == "structMap":
                structmaps += 1
            elif (structmaps == 1 and not top["seen"] and local(el.tag) == "div"
                  and parent.getparent() is root and local(parent.tag) == "structMap"):
                top.update(dmdids=_ids(el.get("DMDID")), admids=_ids(el.get("ADMID")),
                           seen=True)
            continue
        if structmaps != 1 or not _in_first_map_div(parent, root):
            continue
        kind = local(el.tag)
        if kind == "fptr" and top["fptr"] is None:
            top["fptr"] = el.get("FILEID")
        elif kind == "div":
            if (el.get("TYPE") or "") == "DSpace ITEM Template":
                template = _ids(el.get("DMDID"))
            else:
                handle = url = None
                for mptr in el:
                    if local(mptr.tag) != "mptr":
                        continue
                    loctype = (mptr.get("LOCTYPE") or "").upper()
                    if loctype == "HANDLE":
                        handle = mptr.get(HREF)
                    elif loctype == "URL":
                        url = mptr.get(HREF)
                if handle or url:
                    children.append(ChildRef(el.get("TYPE"), handle, url))
        xmlsafe.release(el)
    if root is None or local(root.tag) != "mets":
        raise _fail("not a METS document: the root element of mets.xml is not <mets>", name,
                    found=None if root is None else local(root.tag))
    if root.tag != f"{{{METS_NS}}}mets":
        raise _fail("not a METS document: <mets> is not in the METS namespace", name,
                    expected=METS_NS, found=root.tag)
    return _model(root, name, top, children, template)


def _in_first_map_div(parent: Any, root: Any) -> bool:
    """Whether ``parent`` is a ``div`` directly under a ``structMap`` of the root: its
    children are the object's parts (files, or a container's children), streamed."""
    if parent is None or local(parent.tag) != "div":
        return False
    grand = parent.getparent()
    return grand is not None and grand.getparent() is root and local(grand.tag) == "structMap"


def _model(root: Any, name: str, top: dict[str, Any], children: list[ChildRef],
           template: list[str] | None) -> Manifest:
    profile = root.get("PROFILE")
    if profile is None:
        raise _fail("Cannot accept METS with no PROFILE attribute!", name, field="mets/@PROFILE",
                    expected=PROFILE)
    if profile != PROFILE:
        raise _fail(f"METS has unacceptable PROFILE attribute, profile={profile}", name,
                    field="mets/@PROFILE", expected=PROFILE, found=profile)
    mets_id = root.get("ID")
    if not mets_id:
        raise _fail("Manifest is missing the required mets@ID attribute.", name,
                    field="mets/@ID")
    type_text = root.get("TYPE")
    if not type_text:
        raise _fail("Manifest is missing the required mets@TYPE attribute.", name,
                    field="mets/@TYPE")
    object_type = OBJECT_TYPES.get(type_text.removeprefix("DSpace ").strip().upper())
    if object_type is None:
        raise _fail(f"METS TYPE {type_text!r} is not a DSpace object type", name,
                    field="mets/@TYPE", expected="DSpace SITE|COMMUNITY|COLLECTION|ITEM",
                    found=type_text)
    objid = root.get("OBJID")
    handle = None
    if objid and objid.lower().startswith("hdl:"):
        try:
            handle = handles.normalise(objid)
        except InvalidInput:
            raise _fail(f"mets@OBJID {objid!r} is not a handle", name, field="mets/@OBJID",
                        found=objid) from None
    object_uuid = None
    if "DB-ID-" in mets_id:
        try:
            object_uuid = uuid.UUID(mets_id.rsplit("DB-ID-", 1)[1])
        except ValueError:
            object_uuid = None
    manifest = Manifest(name=name, mets_id=mets_id, type=object_type, objid=objid,
                        handle=handle, uuid=object_uuid, children=children,
                        template_dmdids=template, top_dmdids=top["dmdids"],
                        top_admids=top["admids"], top_fptr=top["fptr"])
    ids: dict[str, str] = {}

    def claim(el: Any) -> None:
        value = el.get("ID")
        if value is None:
            return
        if value in ids:
            raise _fail(f"Invalid METS: the ID {value} is used twice", name, field="@ID",
                        found=value)
        ids[value] = local(el.tag)

    structmaps = []
    for el in root:
        kind = local(el.tag)
        if kind == "metsHdr":
            manifest.lastmoddate = el.get("LASTMODDATE")
        elif kind == "dmdSec":
            claim(el)
            section = _md_section(el, "dmdSec", name)
            if section.id:
                manifest.dmd[section.id] = section
            manifest.dmd_order.append(section)
        elif kind == "amdSec":
            claim(el)
            amd = AmdSec(el.get("ID"))
            for part in el:
                if local(part.tag) in MD_KINDS:
                    claim(part)
                    amd.sections.append(_md_section(part, local(part.tag), name))
            if amd.id:
                manifest.amd[amd.id] = amd
            manifest.amd_order.append(amd)
        elif kind == "fileSec":
            for group in el:
                if local(group.tag) == "fileGrp":
                    manifest.groups.append(_file_group(group, name, claim))
        elif kind == "structMap":
            claim(el)
            structmaps.append(el)
    if not structmaps or not top["seen"]:
        raise _fail("Invalid METS: the first structMap has no div describing the object",
                    name, field="structMap/div")
    for sm in structmaps[1:]:
        if (sm.get("LABEL") or "").lower() == "parent":
            manifest.has_parent_map = True
            for div in sm:
                if local(div.tag) != "div":
                    continue
                for mptr in div:
                    if local(mptr.tag) == "mptr" and manifest.parent_handle is None:
                        manifest.parent_handle = mptr.get(HREF)
                break
            break
    if object_type is ObjectType.ITEM and not manifest.top_dmdids:
        raise _fail("Invalid METS: Missing reference to Item descriptive metadata, first div "
                    "on first structmap must have a DMDID attribute.", name,
                    field="structMap/div/@DMDID")
    for ref in manifest.top_dmdids + (template or []):
        if ref not in manifest.dmd:
            raise _fail(f"Invalid METS: DMDID {ref} refers to no dmdSec", name, field="DMDID",
                        found=ref)
    admids = list(manifest.top_admids)
    for group in manifest.groups:
        admids += group.admids
        for f in group.files:
            admids += f.admids
    for ref in admids:
        if ref not in manifest.amd:
            raise _fail(f"Invalid METS: ADMID {ref} refers to no amdSec", name, field="ADMID",
                        found=ref)
    if manifest.top_fptr is not None and manifest.file(manifest.top_fptr) is None:
        raise _fail(f"Invalid METS: FILEID {manifest.top_fptr} refers to no file", name,
                    field="fptr/@FILEID", found=manifest.top_fptr)
    return manifest


def _file_group(group: Any, name: str, claim: Any) -> FileGroup:
    use = group.get("USE")
    if not use:
        raise _fail("Invalid METS Manifest: every fileGrp element must have a USE attribute.",
                    name, field="fileGrp/@USE")
    if use == "CONTENT":
        use = "ORIGINAL"
    elif use == "MANIFESTMD":
        use = "METADATA"
    out = FileGroup(use=use, admids=_ids(group.get("ADMID")))
    for f in group:
        if local(f.tag) != "file":
            continue
        claim(f)
        file_id = f.get("ID")
        if not file_id:
            raise _fail("Invalid METS Manifest: every file element must have an ID.", name,
                        field="file/@ID")
        flocat = next((c for c in f if local(c.tag) == "FLocat"), None)
        if flocat is None:
            raise _fail("Invalid METS Manifest: Every file element must have FLocat child.",
                        name, field=f"file[@ID={file_id}]/FLocat")
        if (flocat.get("LOCTYPE") or "").upper() != "URL":
            raise _fail('FLocat/mdRef does not have LOCTYPE="URL" attribute.', name,
                        field=f"file[@ID={file_id}]/FLocat/@LOCTYPE", expected="URL",
                        found=flocat.get("LOCTYPE"))
        href = flocat.get(HREF)
        if not href:
            raise _fail("Invalid METS Manifest: FLocat has no xlink:href", name,
                        field=f"file[@ID={file_id}]/FLocat/@xlink:href")
        size_text = f.get("SIZE")
        size = None
        if size_text is not None:
            try:
                size = int(size_text)
            except ValueError:
                raise _fail(f"Invalid METS Manifest: SIZE {size_text!r} is not a number", name,
                            field=f"file[@ID={file_id}]/@SIZE", found=size_text) from None
        seq_text = f.get("SEQ")
        seq = int(seq_text) if seq_text and seq_text.strip().isdigit() else None
        out.files.append(MetsFile(id=file_id, href=href, mimetype=f.get("MIMETYPE"), seq=seq,
                                  size=size, size_text=size_text, checksum=f.get("CHECKSUM"),
                                  checksum_type=f.get("CHECKSUMTYPE"),
                                  admids=_ids(f.get("ADMID")), groupid=f.get("GROUPID")))
    return out
