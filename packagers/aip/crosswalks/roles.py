"""DSPACE-ROLES: groups (with their members) and people, as DSpace's RoleCrosswalk has them.

Written unprefixed (DSpace's reader looks elements up by bare tag name) under a default
namespace declaration of DSpace's roles namespace; read by local name, so both DSpace's
namespace-less output and ours are understood.  ``ID`` attributes carry the UUIDs of the
exporting repository, which a restore keeps.  Password hashes (``PasswordHash`` with the
digest algorithm and hex salt) are written only when the ``passwords`` option asks for them.

Container groups are named after their container: ``COLLECTION_<uuid>_SUBMIT`` inside the
repository becomes ``COLLECTION_hdl:<handle>_SUBMIT`` in a package and back again on
restore (:func:`export_group_name` / :func:`import_group_name`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from packagers.aip.mets import ROLES_NS, child, child_text, children, element, local, sub

_INTERNAL = re.compile(r"^(COMMUNITY|COLLECTION)_([0-9a-fA-F-]{36})_(.+)$")
_EXPORTED = re.compile(r"^(COMMUNITY|COLLECTION)_hdl:([^_/]+/[^_]+)_(.+)$")
TYPED_ROLES = ("ADMIN", "SUBMIT", "WORKFLOW_STEP_1", "WORKFLOW_STEP_2", "WORKFLOW_STEP_3")


def internal_group_prefix(kind: str, object_id: uuid.UUID) -> str:
    return f"{kind}_{object_id}_"


def export_group_name(name: str, handle_of: Callable[[uuid.UUID], str | None]) -> str:
    """``COLLECTION_<uuid>_X`` → ``COLLECTION_hdl:<handle>_X`` when the object has a handle."""
    found = _INTERNAL.match(name)
    if not found:
        return name
    try:
        object_id = uuid.UUID(found.group(2))
    except ValueError:
        return name
    handle = handle_of(object_id)
    if handle is None:
        return name
    return f"{found.group(1)}_hdl:{handle}_{found.group(3)}"


def import_group_name(name: str,
                      resolve: Callable[[str], uuid.UUID | None]) -> tuple[str | None, str | None]:
    """``(internal name, None)``, or ``(None, handle)`` when the group names a container
    (by handle) that does not exist (yet)."""
    found = _EXPORTED.match(name)
    if not found:
        return name, None
    object_id = resolve(found.group(2))
    if object_id is None:
        return None, found.group(2)
    return f"{found.group(1)}_{object_id}_{found.group(3)}", None


def role_type(exported_name: str, kind: str, handle: str | None) -> str | None:
    """The ``Type`` attribute of a container's own typed groups (ADMIN, SUBMIT, ...)."""
    if handle is None:
        return None
    prefix = f"{kind}_hdl:{handle}_"
    if exported_name.startswith(prefix) and exported_name[len(prefix):] in TYPED_ROLES:
        return exported_name[len(prefix):]
    return None


@dataclass
class GroupSpec:
    name: str
    id: str | None = None
    type: str | None = None
    members: list[tuple[str | None, str]] = field(default_factory=list)  # (id, e-mail)
    member_groups: list[tuple[str | None, str]] = field(default_factory=list)  # (id, name)


@dataclass
class PersonSpec:
    email: str
    id: str | None = None
    netid: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    language: str | None = None
    password_algorithm: str | None = None
    password_salt: str | None = None
    password_digest: str | None = None
    can_log_in: bool = False
    require_certificate: bool = False
    self_registered: bool = False


@dataclass
class Roles:
    groups: list[GroupSpec] = field(default_factory=list)
    people: list[PersonSpec] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.groups or self.people)


def roles_document(roles: Roles) -> Any:
    n = f"{{{ROLES_NS}}}"
    root = element(f"{n}DSpaceRoles", nsmap={None: ROLES_NS})
    if roles.groups:
        groups = sub(root, f"{n}Groups")
        for group in roles.groups:
            g = sub(groups, f"{n}Group", {"ID": group.id, "Name": group.name,
                                          "Type": group.type})
            if group.members:
                members = sub(g, f"{n}Members")
                for member_id, email in group.members:
                    sub(members, f"{n}Member", {"ID": member_id, "Name": email})
            if group.member_groups:
                member_groups = sub(g, f"{n}MemberGroups")
                for member_id, name in group.member_groups:
                    sub(member_groups, f"{n}MemberGroup", {"ID": member_id, "Name": name})
    if roles.people:
        people = sub(root, f"{n}People")
        for person in roles.people:
            p = sub(people, f"{n}Person", {"ID": person.id})
            sub(p, f"{n}Email", None, person.email)
            for tag, value in (("Netid", person.netid), ("FirstName", person.first_name),
                               ("LastName", person.last_name),
                               ("Language", person.language)):
                if value is not None:
                    sub(p, f"{n}{tag}", None, value)
            if person.password_digest is not None:
                sub(p, f"{n}PasswordHash", {"digest": person.password_algorithm,
                                            "salt": person.password_salt},
                    person.password_digest)
            for tag, flag in (("CanLogin", person.can_log_in),
                              ("RequireCertificate", person.require_certificate),
                              ("SelfRegistered", person.self_registered)):
                if flag:
                    sub(p, f"{n}{tag}")
    return root


def read_roles(root: Any) -> Roles:
    roles = Roles()
    for groups in children(root, "Groups"):
        for g in children(groups, "Group"):
            name = g.get("Name")
            if not name:
                continue
            spec = GroupSpec(name=name, id=g.get("ID"), type=g.get("Type"))
            for members in children(g, "Members"):
                for member in children(members, "Member"):
                    if member.get("Name"):
                        spec.members.append((member.get("ID"), member.get("Name")))
            for member_groups in children(g, "MemberGroups"):
                for member in children(member_groups, "MemberGroup"):
                    if member.get("Name"):
                        spec.member_groups.append((member.get("ID"), member.get("Name")))
            roles.groups.append(spec)
    for people in children(root, "People"):
        for p in children(people, "Person"):
            email = child_text(p, "Email")
            if not email:
                continue
            spec_p = PersonSpec(email=email.strip(), id=p.get("ID"),
                                netid=child_text(p, "Netid"),
                                first_name=child_text(p, "FirstName"),
                                last_name=child_text(p, "LastName"),
                                language=child_text(p, "Language"),
                                can_log_in=child(p, "CanLogin") is not None,
                                require_certificate=child(p, "RequireCertificate") is not None,
                                self_registered=child(p, "SelfRegistered") is not None)
            password = child(p, "PasswordHash")
            if password is not None and (password.text or "").strip():
                spec_p.password_digest = (password.text or "").strip()
                spec_p.password_algorithm = password.get("digest") or None
                spec_p.password_salt = password.get("salt") or None
            roles.people.append(spec_p)
    return roles


def is_roles_root(el: Any) -> bool:
    return local(el.tag) == "DSpaceRoles"
