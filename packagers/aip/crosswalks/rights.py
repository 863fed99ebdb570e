"""METSRights: an object's resource policies, as DSpace's METSRIGHTS crosswalk writes them.

One ``Context`` per policy: ``GENERAL PUBLIC`` (the Anonymous group), ``REPOSITORY MGR``
(Administrator), ``MANAGED GRP`` (any other group, by its exported name) or ``ACADEMIC
USER`` (a person, by e-mail); the action becomes a ``Permissions`` element.  Dates are
written as ``yyyy-MM-dd``.  ``in-effect`` depends on "today", so it is written only when the
operation gives an as-of time (``Operation.now``); otherwise it is left out and the same
policies always give the same bytes.

Actions DSpace's vocabulary cannot express (workflow steps, WITHDRAWN_READ) get an empty
``Permissions`` element here; the exact policies (with times, descriptions and types) are
also in the package's DAVPACK-OBJECT section, which a davpack restore prefers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from packagers.aip.mets import RIGHTS_NS, RIGHTS_SCHEMA_LOCATION, XSI_NS, element, local, sub
from server import models as m

R = f"{{{RIGHTS_NS}}}"
GENERAL_PUBLIC = "GENERAL PUBLIC"
REPOSITORY_MGR = "REPOSITORY MGR"
MANAGED_GRP = "MANAGED GRP"
ACADEMIC_USER = "ACADEMIC USER"

_READ = {"DISCOVER": "true", "DISPLAY": "true", "MODIFY": "false", "DELETE": "false"}
_PERMISSIONS: dict[m.Action, dict[str, str]] = {
    m.Action.READ: _READ,
    m.Action.DEFAULT_ITEM_READ: {**_READ, "OTHER": "true",
                                 "OTHERPERMITTYPE": "READ ITEM CONTENTS"},
    m.Action.DEFAULT_BITSTREAM_READ: {**_READ, "OTHER": "true",
                                      "OTHERPERMITTYPE": "READ FILE CONTENTS"},
    m.Action.WRITE: {**_READ, "MODIFY": "true"},
    m.Action.ADD: {**_READ, "MODIFY": "true", "OTHER": "true",
                   "OTHERPERMITTYPE": "ADD CONTENTS"},
    m.Action.OBSOLETE_DELETE: {**_READ, "DELETE": "true"},
    m.Action.REMOVE: {**_READ, "DELETE": "true", "OTHER": "true",
                      "OTHERPERMITTYPE": "REMOVE CONTENTS"},
    m.Action.ADMIN: {"DISCOVER": "true", "DISPLAY": "true", "COPY": "true",
                     "DUPLICATE": "true", "MODIFY": "true", "DELETE": "true", "PRINT": "true",
                     "OTHER": "true", "OTHERPERMITTYPE": "ADMIN"},
}
_OTHER_TYPES = {"ADD CONTENTS": m.Action.ADD, "REMOVE CONTENTS": m.Action.REMOVE,
                "ADMIN": m.Action.ADMIN, "READ FILE CONTENTS": m.Action.DEFAULT_BITSTREAM_READ,
                "READ ITEM CONTENTS": m.Action.DEFAULT_ITEM_READ}


@dataclass(frozen=True)
class PolicySpec:
    """One resource policy as a package states it (subject by name, not by database row).

    ``group`` is the group's exported name (``COLLECTION_hdl:1/2_ADMIN`` style), ``person``
    an e-mail.  The ``*_id`` fields are the UUIDs the exporting repository had (informative).
    """

    action: m.Action
    group: str | None = None
    person: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    name: str | None = None
    description: str | None = None
    rptype: str | None = None
    group_id: str | None = None
    person_id: str | None = None

    @property
    def subject(self) -> str:
        return f"group {self.group}" if self.group is not None else f"person {self.person}"


def _day(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%d") if when is not None else None


def rights_document(policies: list[PolicySpec], *, now: datetime | None) -> Any:
    root = element(f"{R}RightsDeclarationMD",
                   {f"{{{XSI_NS}}}schemaLocation": RIGHTS_SCHEMA_LOCATION,
                    "RIGHTSCATEGORY": "LICENSED"},
                   nsmap={"rights": RIGHTS_NS, "xsi": XSI_NS})
    for policy in policies:
        if policy.group == m.ANONYMOUS:
            context_class = GENERAL_PUBLIC
        elif policy.group == m.ADMINISTRATOR:
            context_class = REPOSITORY_MGR
        elif policy.group is not None:
            context_class = MANAGED_GRP
        else:
            context_class = ACADEMIC_USER
        attrs: dict[str, str | None] = {"CONTEXTCLASS": context_class}
        if now is not None:
            live = not ((policy.start is not None and policy.start > now)
                        or (policy.end is not None and policy.end < now))
            attrs["in-effect"] = "true" if live else "false"
        attrs["start-date"] = _day(policy.start)
        attrs["end-date"] = _day(policy.end)
        attrs["rpName"] = policy.name
        ctx_el = sub(root, f"{R}Context", attrs)
        if context_class == MANAGED_GRP:
            sub(ctx_el, f"{R}UserName", {"USERTYPE": "GROUP"}, policy.group)
        elif context_class == ACADEMIC_USER:
            sub(ctx_el, f"{R}UserName", {"USERTYPE": "INDIVIDUAL"}, policy.person)
        sub(ctx_el, f"{R}Permissions", dict(_PERMISSIONS.get(policy.action, {})))
    return root


@dataclass
class RightsRead:
    policies: list[PolicySpec]
    warnings: list[str]


def read_rights(root: Any) -> RightsRead:
    """Policies from a ``RightsDeclarationMD``, with DSpace's interpretation rules."""
    policies: list[PolicySpec] = []
    warnings: list[str] = []
    for ctx_el in root:
        if local(ctx_el.tag) != "Context":
            continue
        context_class = (ctx_el.get("CONTEXTCLASS") or "").strip().upper()
        user = None
        for c in ctx_el:
            if local(c.tag) == "UserName":
                user = "".join(c.itertext()).strip()
        permissions = None
        for c in ctx_el:
            if local(c.tag) == "Permissions":
                permissions = c
        action = _action(permissions)
        if action is None:
            warnings.append(f"a METSRights context ({context_class}) has permissions that map "
                            "to no action; it was skipped")
            continue
        group = person = None
        if context_class == GENERAL_PUBLIC:
            group = m.ANONYMOUS
        elif context_class == REPOSITORY_MGR:
            group = m.ADMINISTRATOR
        elif context_class == MANAGED_GRP and user:
            group = user
        elif context_class == ACADEMIC_USER and user:
            person = user
        else:
            warnings.append(f"a METSRights context of class {context_class!r} names nobody; "
                            "it was skipped")
            continue
        policies.append(PolicySpec(action=action, group=group, person=person,
                                   start=_date(ctx_el.get("start-date"), warnings),
                                   end=_date(ctx_el.get("end-date"), warnings),
                                   name=ctx_el.get("rpName") or None))
    return RightsRead(policies, warnings)


def _action(permissions: Any | None) -> m.Action | None:
    if permissions is None:
        return None
    other = (permissions.get("OTHERPERMITTYPE") or "").strip().upper()
    if other in _OTHER_TYPES:
        return _OTHER_TYPES[other]

    def flag(name: str) -> bool:
        return (permissions.get(name) or "").strip().lower() == "true"

    if flag("DELETE"):
        return m.Action.OBSOLETE_DELETE
    if flag("MODIFY"):
        return m.Action.WRITE
    if flag("DISCOVER") and flag("DISPLAY"):
        return m.Action.READ
    return None


def _date(text: str | None, warnings: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text.strip()[:10], "%Y-%m-%d")
    except ValueError:
        warnings.append(f"unreadable policy date {text!r} ignored")
        return None
