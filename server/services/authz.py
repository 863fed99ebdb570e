"""Authorization: administrators, resource policies, and the Anonymous group.

A person may do ``action`` on an object when they are an administrator, when a policy on the
object grants that action (or ADMIN) to them or to a group they belong to (directly or via
nested groups; everyone is in Anonymous), or when they hold ADMIN on an ancestor container.
Policies outside their start/end dates do not apply.  The submitter of an item still in the
workspace may READ, WRITE, ADD and REMOVE it, its bundles and its files (DSpace's rule for
one's own submission), until it enters the workflow or the archive.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import NoReturn

from sqlalchemy import select

from server import models as m
from server.context import Context
from server.errors import AuthenticationRequired, Detail, NotFound, PermissionDenied


def group_by_name(ctx: Context, name: str) -> m.Group | None:
    return ctx.session.scalars(select(m.Group).where(m.Group.name == name)).first()


def require_group(ctx: Context, name: str) -> m.Group:
    group = group_by_name(ctx, name)
    if group is None:
        raise NotFound(f"group {name!r} does not exist", [Detail("unknown group", field=name)])
    return group


def anonymous_group(ctx: Context) -> m.Group:
    return require_group(ctx, m.ANONYMOUS)


def admin_group(ctx: Context) -> m.Group:
    return require_group(ctx, m.ADMINISTRATOR)


def group_ids_of(ctx: Context, person: m.EPerson | None) -> set[uuid.UUID]:
    """Every group the person is in, nested groups included; always Anonymous."""
    key = ("groups", person.id if person else None)
    cached = ctx._cache.get(key)
    if isinstance(cached, set):
        return cached
    ids: set[uuid.UUID] = {anonymous_group(ctx).id}
    if person is not None:
        frontier = {row for row in ctx.session.scalars(
            select(m.group_people.c.group_id).where(m.group_people.c.eperson_id == person.id))}
        while frontier:
            ids |= frontier
            parents = set(ctx.session.scalars(
                select(m.group_groups.c.parent_id)
                .where(m.group_groups.c.child_id.in_(frontier))))
            frontier = parents - ids
    ctx._cache[key] = ids
    return ids


def is_admin(ctx: Context, person: m.EPerson | None = None) -> bool:
    if person is None:
        if ctx.system:
            return True
        person = ctx.actor
    if person is None:
        return False
    return admin_group(ctx).id in group_ids_of(ctx, person)


def parent_of(obj: m.DSpaceObject) -> m.DSpaceObject | None:
    """The container whose ADMIN rights extend to ``obj``."""
    if isinstance(obj, m.Bitstream):
        return obj.bundle
    if isinstance(obj, m.Bundle):
        return obj.item
    if isinstance(obj, m.Item):
        return obj.owning_collection
    if isinstance(obj, m.Collection):
        return obj.community
    if isinstance(obj, m.Community):
        return obj.parent
    return None


def _policy_applies(policy: m.ResourcePolicy, person: m.EPerson | None,
                    groups: set[uuid.UUID]) -> bool:
    now = m.utcnow()
    if policy.start_date is not None and policy.start_date > now:
        return False
    if policy.end_date is not None and policy.end_date < now:
        return False
    if policy.eperson_id is not None and person is not None and policy.eperson_id == person.id:
        return True
    return policy.group_id is not None and policy.group_id in groups


_SUBMITTER_ACTIONS = frozenset({m.Action.READ, m.Action.WRITE, m.Action.ADD, m.Action.REMOVE})


def _item_of(obj: m.DSpaceObject) -> m.Item | None:
    if isinstance(obj, m.Item):
        return obj
    if isinstance(obj, m.Bundle):
        return obj.item
    if isinstance(obj, m.Bitstream) and obj.bundle is not None:
        return obj.bundle.item
    return None


def _own_submission(obj: m.DSpaceObject, person: m.EPerson | None) -> bool:
    """True for an item still in its submitter's workspace (and its bundles and files),
    asked about by that submitter: as in DSpace, a submitter may read and change their
    own submission until it is completed."""
    if person is None:
        return False
    item = _item_of(obj)
    return (item is not None and not item.is_template
            and item.workflow_state == m.WorkflowState.WORKSPACE
            and item.submitter_id is not None and item.submitter_id == person.id)


def allowed(ctx: Context, obj: m.DSpaceObject, action: m.Action) -> bool:
    if ctx.system or is_admin(ctx):
        return True
    person = ctx.actor
    if action in _SUBMITTER_ACTIONS and _own_submission(obj, person):
        return True
    groups = group_ids_of(ctx, person)
    wanted = {action, m.Action.ADMIN}
    for policy in obj.policies:
        if policy.action in wanted and _policy_applies(policy, person, groups):
            return True
    ancestor = parent_of(obj)
    while ancestor is not None:
        for policy in ancestor.policies:
            if policy.action == m.Action.ADMIN and _policy_applies(policy, person, groups):
                return True
        ancestor = parent_of(ancestor)
    return False


def authorize(ctx: Context, obj: m.DSpaceObject, action: m.Action) -> None:
    """Raise unless the context's person may do ``action`` on ``obj``."""
    if allowed(ctx, obj, action):
        return
    _refuse(ctx, obj.type, obj.handle or str(obj.id), action)


def authorize_new_item(ctx: Context, collection: m.Collection, item_id: uuid.UUID) -> None:
    """ADD on an item being created in ``collection`` by the context's person (its
    submitter), decided as :func:`authorize` decides it once the item exists."""
    if ctx.actor is not None or allowed(ctx, collection, m.Action.ADMIN):
        return
    _refuse(ctx, m.ObjectType.ITEM, str(item_id), m.Action.ADD)


def _refuse(ctx: Context, kind: m.ObjectType, label: str, action: m.Action) -> NoReturn:
    if ctx.actor is None:
        raise AuthenticationRequired(
            f"{action.value} on {kind.value} {label} requires logging in",
            [Detail("authentication required", field=action.value)])
    raise PermissionDenied(
        f"{ctx.actor.email} may not {action.value} {kind.value} {label}",
        [Detail("permission denied", field=action.value, found=ctx.actor.email)])


def require_admin(ctx: Context) -> None:
    if not is_admin(ctx):
        who = ctx.actor.email if ctx.actor else "anonymous"
        raise (PermissionDenied if ctx.actor else AuthenticationRequired)(
            "only administrators may do this", [Detail("administrator required", found=who)])


def add_policy(ctx: Context, obj: m.DSpaceObject, action: m.Action, *,
               group: m.Group | None = None, eperson: m.EPerson | None = None,
               start_date: object = None, end_date: object = None, name: str | None = None,
               description: str | None = None, rptype: str | None = None) -> m.ResourcePolicy:
    policy = m.ResourcePolicy(action=action, group=group, eperson=eperson,
                              group_id=group.id if group else None,
                              eperson_id=eperson.id if eperson else None,
                              start_date=start_date, end_date=end_date, name=name,
                              description=description, rptype=rptype)
    obj.policies.append(policy)
    return policy


def clear_policies(ctx: Context, obj: m.DSpaceObject) -> None:
    if obj.policies:  # a new object's are known to be empty: no query, no flush
        obj.policies.clear()
        ctx.session.flush()


INHERITED = "TYPE_INHERITED"


def inherit_policies(ctx: Context, source: m.DSpaceObject, target: m.DSpaceObject,
                     actions: Iterable[tuple[m.Action, m.Action]]) -> None:
    """Copy ``source``'s policies of one action to ``target`` under another action.

    Used when items are created (DEFAULT_ITEM_READ -> READ) and bitstreams added
    (DEFAULT_BITSTREAM_READ -> READ).
    """
    for policy, action in inheritable(source, actions):
        add_policy(ctx, target, action, group=policy.group, eperson=policy.eperson,
                   start_date=policy.start_date, end_date=policy.end_date, rptype=INHERITED)


def inheritable(source: m.DSpaceObject, actions: Iterable[tuple[m.Action, m.Action]]
                ) -> list[tuple[m.ResourcePolicy, m.Action]]:
    """``source``'s policies that pass on, each with the action it passes on as."""
    mapping = dict(actions)
    return [(policy, mapping[policy.action]) for policy in source.policies
            if policy.action in mapping]


def inherited_rows(source: m.DSpaceObject, target_id: uuid.UUID,
                   actions: Iterable[tuple[m.Action, m.Action]]) -> list[dict[str, object]]:
    """The ``resource_policy`` rows :func:`inherit_policies` would give a new object, for a
    bulk insert."""
    return [{"dso_id": target_id, "action": action, "group_id": policy.group_id,
             "eperson_id": policy.eperson_id, "start_date": policy.start_date,
             "end_date": policy.end_date, "name": None, "description": None,
             "rptype": INHERITED}
            for policy, action in inheritable(source, actions)]
