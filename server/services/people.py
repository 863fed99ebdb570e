"""EPeople and groups (nested), with DSpace-compatible password hashes."""

from __future__ import annotations

import uuid as uuidlib

from sqlalchemy import func, select

from server import models as m
from server.context import Context
from server.errors import Conflict, Detail, InvalidInput, NotFound
from server.passwords import hash_password, verify_password
from server.services import authz, objects


def by_email(ctx: Context, email: str) -> m.EPerson | None:
    return ctx.session.scalars(select(m.EPerson)
                               .where(func.lower(m.EPerson.email) == email.lower())).first()


def by_netid(ctx: Context, netid: str) -> m.EPerson | None:
    return ctx.session.scalars(select(m.EPerson).where(m.EPerson.netid == netid)).first()


def require_person(ctx: Context, email: str) -> m.EPerson:
    person = by_email(ctx, email)
    if person is None:
        raise NotFound(f"no person with e-mail {email}", [Detail("unknown person", found=email)])
    return person


def create_person(ctx: Context, email: str, *, password: str | None = None,
                  password_hash: str | None = None, first_name: str | None = None,
                  last_name: str | None = None, netid: str | None = None,
                  language: str | None = None, can_log_in: bool = True,
                  require_certificate: bool = False, self_registered: bool = False,
                  object_id: uuidlib.UUID | None = None) -> m.EPerson:
    authz.require_admin(ctx)
    if "@" not in email or email.strip() != email or not email:
        raise InvalidInput(f"not an e-mail address: {email!r}",
                           [Detail("invalid e-mail", field="email", found=email)])
    if by_email(ctx, email) is not None:
        raise Conflict(f"a person with e-mail {email} already exists",
                       [Detail("duplicate e-mail", field="email", found=email)])
    objects.claim_uuid(ctx, object_id)
    person = m.EPerson(email=email, netid=netid, first_name=first_name, last_name=last_name,
                       language=language, can_log_in=can_log_in,
                       require_certificate=require_certificate,
                       self_registered=self_registered,
                       password_hash=password_hash or (hash_password(password)
                                                        if password else None))
    person.id = object_id or uuidlib.uuid4()
    ctx.session.add(person)
    ctx.session.flush()
    return person


def update_person(ctx: Context, person: m.EPerson, *, first_name: str | None,
                  last_name: str | None, netid: str | None, language: str | None,
                  can_log_in: bool, require_certificate: bool, self_registered: bool,
                  password_hash: str | None = None) -> None:
    """Overwrite a person's record (a force-replace restore); a ``None`` password hash keeps
    the current password, since packages carry hashes only when exported with them."""
    authz.require_admin(ctx)
    if netid is not None:
        owner = by_netid(ctx, netid)
        if owner is not None and owner.id != person.id:
            raise Conflict(f"netid {netid} already belongs to {owner.email}",
                           [Detail("duplicate netid", field="netid", found=netid)])
    person.first_name = first_name
    person.last_name = last_name
    person.netid = netid
    person.language = language
    person.can_log_in = can_log_in
    person.require_certificate = require_certificate
    person.self_registered = self_registered
    if password_hash is not None:
        person.password_hash = password_hash
    person.touch()
    ctx.session.flush()


def set_password(ctx: Context, person: m.EPerson, password: str) -> None:
    if not (ctx.actor is not None and ctx.actor.id == person.id):
        authz.require_admin(ctx)
    person.password_hash = hash_password(password)
    person.touch()
    ctx.session.flush()


def authenticate(ctx: Context, login: str, password: str) -> m.EPerson | None:
    """The person whose e-mail (or netid) and password match and who may log in."""
    person = by_email(ctx, login) or by_netid(ctx, login)
    if person is None or not person.can_log_in:
        return None
    return person if verify_password(person.password_hash, password) else None


def create_group(ctx: Context, name: str, *, permanent: bool = False,
                 object_id: uuidlib.UUID | None = None) -> m.Group:
    authz.require_admin(ctx)
    if not name.strip():
        raise InvalidInput("a group needs a name", [Detail("empty group name", field="name")])
    if authz.group_by_name(ctx, name) is not None:
        raise Conflict(f"group {name!r} already exists",
                       [Detail("duplicate group", field="name", found=name)])
    objects.claim_uuid(ctx, object_id)
    group = m.Group(name=name, permanent=permanent)
    group.id = object_id or uuidlib.uuid4()
    ctx.session.add(group)
    ctx.session.flush()
    return group


def add_member(ctx: Context, group: m.Group, member: m.EPerson | m.Group) -> None:
    authz.require_admin(ctx)
    if isinstance(member, m.Group):
        if member.id == group.id or _contains(group, member, reverse=True):
            raise InvalidInput(f"adding {member.name} to {group.name} would make a cycle",
                               [Detail("group cycle", field="group", found=member.name)])
        if member not in group.subgroups:
            group.subgroups.append(member)
    elif member not in group.people:
        group.people.append(member)
    group.touch()
    ctx._cache.clear()
    ctx.session.flush()


def remove_member(ctx: Context, group: m.Group, member: m.EPerson | m.Group) -> None:
    authz.require_admin(ctx)
    if isinstance(member, m.Group):
        if member in group.subgroups:
            group.subgroups.remove(member)
    elif member in group.people:
        group.people.remove(member)
    group.touch()
    ctx._cache.clear()
    ctx.session.flush()


def clear_members(ctx: Context, group: m.Group, *,
                  keep: frozenset[uuidlib.UUID] = frozenset()) -> None:
    """Empty a group (people and subgroups), except the people whose ids are in ``keep``."""
    authz.require_admin(ctx)
    group.people[:] = [p for p in group.people if p.id in keep]
    group.subgroups.clear()
    group.touch()
    ctx._cache.clear()
    ctx.session.flush()


def _contains(group: m.Group, candidate: m.Group, *, reverse: bool = False) -> bool:
    """True when ``group`` is (transitively) a subgroup of ``candidate`` (reverse=True)."""
    if not reverse:
        return False
    stack, seen = [candidate], set()
    while stack:
        current = stack.pop()
        if current.id == group.id:
            return True
        if current.id in seen:
            continue
        seen.add(current.id)
        stack.extend(current.subgroups)
    return False
