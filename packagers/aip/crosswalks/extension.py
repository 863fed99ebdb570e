"""davpack's own AIP sections: what DSpace's profile cannot carry, so a restore loses nothing.

Both live in one extra ``amdSec`` that no ``ADMID`` refers to, so DSpace (which crosswalks
only the sections that the object's div, a ``fileGrp`` or a ``file`` point at, and fails on
types it has no crosswalk for) never reads them.  Namespace ``urn:davpack:xmlns:aip:1``
(prefix ``davpack``), metadata values as DIM ``field`` elements.  Principals are named as
DSPACE-ROLES and METSRights name them (group name, e-mail), never by the exporting
repository's UUIDs, so an object's AIP does not change with where its groups live.

``DAVPACK-OBJECT`` (a ``techMD``), root ``davpack:object``::

    <davpack:object version="1" type="ITEM" id="<uuid>" lastModified="<UTC, µs>"
                    inArchive="true" withdrawn="false" discoverable="true">
      <davpack:policies>                               (always present; may be empty)
        <davpack:policy action="READ" group="<exported group name>" person="<e-mail>"
                        start="<UTC>" end="<UTC>" name="..." description="..." type="..."/>
      </davpack:policies>
      <davpack:bundle id= name= position= primaryBitstream="<uuid>" lastModified=>
        <davpack:metadata><dim:field .../></davpack:metadata>
        <davpack:policies>...</davpack:policies>
        <davpack:bitstream id= position= lastModified= [placeholder="true"]>
          <davpack:metadata>...</davpack:metadata> <davpack:policies>...</davpack:policies>
        </davpack:bitstream>
      </davpack:bundle>
      <davpack:logo id= name= mimeType= source= description= formatName= formatSupport=
                    formatInternal= userFormat= lastModified=> metadata, policies </davpack:logo>
      <davpack:template id= lastModified=> policies </davpack:template>
      <davpack:memberOf group="COLLECTION_hdl:1/2_ADMIN" parent="Reviewers"/>
    </davpack:object>

Collections add ``workflowEnabled``.  ``memberOf`` (communities and collections) names the
groups that contain the container's own groups: DSPACE-ROLES lists a group's members but
not what it is a member of, so without it restoring a collection after the site would lose
"Reviewers contains COLLECTION_..._ADMIN".  ``DAVPACK-RELATIONSHIPS`` (items that have any), root
``davpack:relationships``: one ``davpack:relationship`` per relationship the item takes part
in (either side), with ``leftType``, ``rightType``, ``leftPlace``, ``rightPlace`` and the
optional ``leftLabel``/``rightLabel``, and ``davpack:left``/``davpack:right`` children naming
each item by ``id`` (UUID) and ``handle``.  Both items' AIPs list the relationship; a
restore creates it once both items exist, whichever comes first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from packagers.aip.crosswalks.dim import add_fields, read_fields
from packagers.aip.crosswalks.rights import PolicySpec
from packagers.aip.mets import DAVPACK_NS, DIM_NS, child, children, element, iso_utc, parse_iso, sub
from server import models as m
from server.services.metadata import Value

D = f"{{{DAVPACK_NS}}}"
DIM_FIELD = f"{{{DIM_NS}}}field"
VERSION = "1"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _flag(text: str | None) -> bool | None:
    if text is None:
        return None
    return text.strip().lower() == "true"


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------
# Data


@dataclass
class ExtBitstream:
    id: uuid.UUID | None = None
    position: int | None = None
    last_modified: datetime | None = None
    placeholder: bool = False
    metadata: list[Value] = field(default_factory=list)
    policies: list[PolicySpec] | None = None
    # logos only (item bitstreams have these in AIP-TECHMD)
    name: str | None = None
    mime_type: str | None = None
    source: str | None = None
    description: str | None = None
    format_name: str | None = None
    format_support: str | None = None
    format_internal: bool | None = None
    user_format: str | None = None


@dataclass
class ExtBundle:
    name: str
    id: uuid.UUID | None = None
    position: int | None = None
    primary: uuid.UUID | None = None
    last_modified: datetime | None = None
    metadata: list[Value] = field(default_factory=list)
    policies: list[PolicySpec] | None = None
    bitstreams: dict[uuid.UUID, ExtBitstream] = field(default_factory=dict)


@dataclass
class ExtTemplate:
    id: uuid.UUID | None = None
    last_modified: datetime | None = None
    policies: list[PolicySpec] | None = None


@dataclass
class ExtObject:
    type: str | None = None
    id: uuid.UUID | None = None
    last_modified: datetime | None = None
    in_archive: bool | None = None
    withdrawn: bool | None = None
    discoverable: bool | None = None
    workflow_enabled: bool | None = None
    policies: list[PolicySpec] | None = None
    bundles: list[ExtBundle] = field(default_factory=list)
    logo: ExtBitstream | None = None
    template: ExtTemplate | None = None
    member_of: list[tuple[str, str]] = field(default_factory=list)  # (group, parent group)

    def bundle(self, name: str, bundle_id: uuid.UUID | None = None) -> ExtBundle | None:
        for bundle in self.bundles:
            if bundle_id is not None and bundle.id == bundle_id:
                return bundle
        for bundle in self.bundles:
            if bundle.name == name:
                return bundle
        return None


@dataclass(frozen=True)
class RelationshipSpec:
    left_type: str
    right_type: str
    left_id: uuid.UUID | None
    left_handle: str | None
    right_id: uuid.UUID | None
    right_handle: str | None
    left_place: int = 0
    right_place: int = 0
    left_label: str | None = None
    right_label: str | None = None


# ---------------------------------------------------------------------------------------
# Writing


def new_object(kind: str, object_id: uuid.UUID, last_modified: datetime,
               **flags: bool | None) -> Any:
    attrs = {"version": VERSION, "type": kind, "id": str(object_id),
             "lastModified": iso_utc(last_modified)}
    names = {"in_archive": "inArchive", "withdrawn": "withdrawn",
             "discoverable": "discoverable", "workflow_enabled": "workflowEnabled"}
    for key, value in flags.items():
        if value is not None:
            attrs[names[key]] = _bool(value)
    return element(f"{D}object", attrs, nsmap={"davpack": DAVPACK_NS, "dim": DIM_NS})


def add_policies(parent: Any, policies: list[PolicySpec]) -> None:
    holder = sub(parent, f"{D}policies")
    for p in policies:
        sub(holder, f"{D}policy", {
            "action": p.action.value, "group": p.group, "person": p.person,
            "start": iso_utc(p.start) if p.start else None,
            "end": iso_utc(p.end) if p.end else None,
            "name": p.name, "description": p.description, "type": p.rptype})


def add_metadata(parent: Any, values: list[Value]) -> None:
    if values:
        add_fields(sub(parent, f"{D}metadata"), values, DIM_FIELD)


def add_bundle(parent: Any, *, bundle_id: uuid.UUID, name: str, position: int,
               primary: uuid.UUID | None, last_modified: datetime, values: list[Value],
               policies: list[PolicySpec]) -> Any:
    el = sub(parent, f"{D}bundle", {
        "id": str(bundle_id), "name": name, "position": str(position),
        "primaryBitstream": str(primary) if primary else None,
        "lastModified": iso_utc(last_modified)})
    add_metadata(el, values)
    add_policies(el, policies)
    return el


def add_bitstream(parent: Any, *, bitstream_id: uuid.UUID, position: int,
                  last_modified: datetime, values: list[Value], policies: list[PolicySpec],
                  placeholder: bool = False, tag: str = "bitstream",
                  extra: dict[str, str | None] | None = None) -> Any:
    attrs: dict[str, str | None] = {"id": str(bitstream_id), "position": str(position),
                                    "lastModified": iso_utc(last_modified)}
    attrs.update(extra or {})
    if placeholder:
        attrs["placeholder"] = "true"
    el = sub(parent, f"{D}{tag}", attrs)
    add_metadata(el, values)
    add_policies(el, policies)
    return el


def add_member_of(parent: Any, pairs: list[tuple[str, str]]) -> None:
    for group, container in pairs:
        sub(parent, f"{D}memberOf", {"group": group, "parent": container})


def add_template(parent: Any, *, template_id: uuid.UUID, last_modified: datetime,
                 policies: list[PolicySpec]) -> None:
    el = sub(parent, f"{D}template", {"id": str(template_id),
                                      "lastModified": iso_utc(last_modified)})
    add_policies(el, policies)


def relationships_document(relationships: list[RelationshipSpec]) -> Any:
    root = element(f"{D}relationships", {"version": VERSION}, nsmap={"davpack": DAVPACK_NS})
    for r in relationships:
        rel = sub(root, f"{D}relationship", {
            "leftType": r.left_type, "rightType": r.right_type,
            "leftPlace": str(r.left_place), "rightPlace": str(r.right_place),
            "leftLabel": r.left_label, "rightLabel": r.right_label})
        sub(rel, f"{D}left", {"id": str(r.left_id) if r.left_id else None,
                              "handle": r.left_handle})
        sub(rel, f"{D}right", {"id": str(r.right_id) if r.right_id else None,
                               "handle": r.right_handle})
    return root


# ---------------------------------------------------------------------------------------
# Reading


def _policies(el: Any) -> list[PolicySpec] | None:
    holder = child(el, "policies")
    if holder is None:
        return None
    out = []
    for p in children(holder, "policy"):
        try:
            action = m.Action(p.get("action") or "")
        except ValueError:
            continue
        out.append(PolicySpec(action=action, group=p.get("group"), person=p.get("person"),
                              start=parse_iso(p.get("start")), end=parse_iso(p.get("end")),
                              name=p.get("name"), description=p.get("description"),
                              rptype=p.get("type"), group_id=p.get("groupId"),
                              person_id=p.get("personId")))
    return out


def _metadata(el: Any) -> list[Value]:
    holder = child(el, "metadata")
    return read_fields(holder) if holder is not None else []


def _bitstream(el: Any) -> ExtBitstream:
    return ExtBitstream(
        id=_uuid(el.get("id")), position=_int(el.get("position")),
        last_modified=parse_iso(el.get("lastModified")),
        placeholder=_flag(el.get("placeholder")) or False, metadata=_metadata(el),
        policies=_policies(el), name=el.get("name"), mime_type=el.get("mimeType"),
        source=el.get("source"), description=el.get("description"),
        format_name=el.get("formatName"), format_support=el.get("formatSupport"),
        format_internal=_flag(el.get("formatInternal")), user_format=el.get("userFormat"))


def read_object(root: Any) -> ExtObject:
    ext = ExtObject(type=root.get("type"), id=_uuid(root.get("id")),
                    last_modified=parse_iso(root.get("lastModified")),
                    in_archive=_flag(root.get("inArchive")),
                    withdrawn=_flag(root.get("withdrawn")),
                    discoverable=_flag(root.get("discoverable")),
                    workflow_enabled=_flag(root.get("workflowEnabled")),
                    policies=_policies(root))
    for b in children(root, "bundle"):
        bundle = ExtBundle(name=b.get("name") or "", id=_uuid(b.get("id")),
                           position=_int(b.get("position")),
                           primary=_uuid(b.get("primaryBitstream")),
                           last_modified=parse_iso(b.get("lastModified")),
                           metadata=_metadata(b), policies=_policies(b))
        for bs in children(b, "bitstream"):
            facts = _bitstream(bs)
            if facts.id is not None:
                bundle.bitstreams[facts.id] = facts
        ext.bundles.append(bundle)
    logo = child(root, "logo")
    if logo is not None:
        ext.logo = _bitstream(logo)
    for link in children(root, "memberOf"):
        if link.get("group") and link.get("parent"):
            ext.member_of.append((link.get("group"), link.get("parent")))
    template = child(root, "template")
    if template is not None:
        ext.template = ExtTemplate(id=_uuid(template.get("id")),
                                   last_modified=parse_iso(template.get("lastModified")),
                                   policies=_policies(template))
    return ext


def read_relationships(root: Any) -> list[RelationshipSpec]:
    out = []
    for rel in children(root, "relationship"):
        left, right = child(rel, "left"), child(rel, "right")
        if left is None or right is None or not rel.get("leftType") \
                or not rel.get("rightType"):
            continue
        out.append(RelationshipSpec(
            left_type=rel.get("leftType"), right_type=rel.get("rightType"),
            left_id=_uuid(left.get("id")), left_handle=left.get("handle"),
            right_id=_uuid(right.get("id")), right_handle=right.get("handle"),
            left_place=_int(rel.get("leftPlace")) or 0,
            right_place=_int(rel.get("rightPlace")) or 0,
            left_label=rel.get("leftLabel"), right_label=rel.get("rightLabel")))
    return out
