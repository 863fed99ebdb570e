"""Communities, collections, items, bundles and bitstreams: create, move, map, withdraw, delete.

Creation takes an optional ``uuid`` and ``handle`` so restores keep identities; without them
a new UUID is generated and (for archived objects) a handle minted.  Default policies follow
DSpace: containers are readable by Anonymous; a collection passes DEFAULT_ITEM_READ and
DEFAULT_BITSTREAM_READ on to the items and files installed into it.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, func, insert, inspect, select, update
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import set_committed_value

from server import models as m
from server.context import Context
from server.errors import Conflict, Detail, InvalidInput, NotFound
from server.services import authz, handles, metadata
from server.services.metadata import Value

# ---------------------------------------------------------------------------------------
# Lookup


def get(ctx: Context, object_id: uuidlib.UUID | str) -> m.DSpaceObject | None:
    try:
        key = object_id if isinstance(object_id, uuidlib.UUID) else uuidlib.UUID(str(object_id))
    except ValueError:
        return None
    return ctx.session.get(m.DSpaceObject, key)


def find(ctx: Context, identifier: str) -> m.DSpaceObject:
    """Resolve a handle (``hdl:`` forms too) or a UUID; :class:`NotFound` otherwise."""
    obj = get(ctx, identifier)
    if obj is None:
        try:
            obj = handles.resolve(ctx, identifier)
        except InvalidInput:
            obj = None
    if obj is None:
        raise NotFound(f"no object with handle or UUID {identifier!r}",
                       [Detail("unknown identifier", field="identifier", found=identifier)])
    return obj


def site(ctx: Context) -> m.Site:
    found = ctx.session.scalars(select(m.Site)).first()
    if found is None:
        raise NotFound("the repository is not initialised (no site object); run "
                       "'davpack db upgrade'")
    return found


def name_of(obj: m.DSpaceObject) -> str:
    """The human name of any object (title metadata for containers and items)."""
    if isinstance(obj, (m.Bitstream, m.Bundle, m.Group)):
        return obj.name
    if isinstance(obj, m.EPerson):
        return obj.email
    return metadata.first(obj, "dc.title") or ""


def top_communities(ctx: Context) -> list[m.Community]:
    return list(ctx.session.scalars(select(m.Community).where(m.Community.parent_id.is_(None))
                                    .order_by(m.Community.id)))


def archived_items(ctx: Context, collection: m.Collection, *,
                   include_withdrawn: bool = True, include_mapped: bool = False,
                   since: datetime | None = None) -> Iterator[m.Item]:
    """Items owned by (and optionally mapped into) ``collection``, in UUID order, streamed."""
    states = [m.WorkflowState.ARCHIVED]
    owned = select(m.Item.id).where(m.Item.owning_collection_id == collection.id,
                                    m.Item.workflow_state.in_(states))
    query = owned
    if include_mapped:
        mapped = select(m.item_mapping.c.item_id).where(
            m.item_mapping.c.collection_id == collection.id)
        query = owned.union(mapped)  # type: ignore[assignment]
    ids = sorted(ctx.session.scalars(query))
    for start in range(0, len(ids), 500):
        batch = ctx.session.scalars(select(m.Item).where(m.Item.id.in_(ids[start:start + 500]))
                                    .order_by(m.Item.id)).all()
        for item in batch:
            if not include_withdrawn and item.withdrawn:
                continue
            if since is not None and item.last_modified < since:
                continue
            yield item


# ---------------------------------------------------------------------------------------
# Containers


def _new(cls: type, object_id: uuidlib.UUID | None, **kwargs: object) -> m.DSpaceObject:
    obj: m.DSpaceObject = cls(**kwargs)
    obj.id = object_id or uuidlib.uuid4()
    # No row refers to a new UUID yet: its collections (metadata, policies, bundles, files,
    # members) are known to be empty, so reading them later costs no query (and no flush).
    mapper: Mapper[m.DSpaceObject] = inspect(cls)
    for relation in mapper.relationships:
        if relation.uselist and relation.key not in kwargs:
            set_committed_value(obj, relation.key, [])
    return obj


_FREE_UUIDS = "free-uuids"


def free_uuids(ctx: Context, wanted: Iterable[uuidlib.UUID | None]) -> set[uuidlib.UUID]:
    """Those of ``wanted`` no object has, in one query; creating an object under one of them
    later in this unit of work then costs no second look-up."""
    ids = {w for w in wanted if w is not None}
    if not ids:
        return set()
    session = ctx.session
    pending = {obj.id for obj in session.new if isinstance(obj, m.DSpaceObject)}
    with session.no_autoflush:  # pending objects are counted above, not flushed
        stored = set(session.scalars(select(m.DSpaceObject.id)
                                     .where(m.DSpaceObject.id.in_(ids - pending))))
    free = ids - pending - stored
    verified = cast(set[uuidlib.UUID], ctx._cache.setdefault(_FREE_UUIDS, set()))
    verified |= free
    return free


def claim_uuid(ctx: Context, object_id: uuidlib.UUID | None) -> uuidlib.UUID | None:
    """``object_id`` for a new object, refused when an object has it already."""
    if object_id is None:
        return None
    verified = cast(set[uuidlib.UUID], ctx._cache.get(_FREE_UUIDS, set()))
    if object_id in verified:
        verified.discard(object_id)  # taken now: the next claim must look again
        return object_id
    if ctx.session.get(m.DSpaceObject, object_id) is not None:
        raise Conflict(f"an object with UUID {object_id} already exists",
                       [Detail("duplicate UUID", field="uuid", found=str(object_id))])
    return object_id


def create_community(ctx: Context, parent: m.Community | None, name: str, *,
                     handle: str | None = None, object_id: uuidlib.UUID | None = None,
                     default_policies: bool = True) -> m.Community:
    if parent is None:
        authz.require_admin(ctx)
    else:
        authz.authorize(ctx, parent, m.Action.ADD)
    community = _new(m.Community, claim_uuid(ctx, object_id), parent=parent)
    assert isinstance(community, m.Community)
    ctx.session.add(community)
    ctx.session.flush()
    handles.assign(ctx, community, handle)
    metadata.set_single(ctx, community, "dc.title", name)
    if default_policies:
        authz.add_policy(ctx, community, m.Action.READ, group=authz.anonymous_group(ctx))
    if parent is not None:
        parent.touch()
    return community


def create_collection(ctx: Context, community: m.Community, name: str, *,
                      handle: str | None = None, object_id: uuidlib.UUID | None = None,
                      default_policies: bool = True) -> m.Collection:
    authz.authorize(ctx, community, m.Action.ADD)
    collection = _new(m.Collection, claim_uuid(ctx, object_id), community=community)
    assert isinstance(collection, m.Collection)
    ctx.session.add(collection)
    ctx.session.flush()
    handles.assign(ctx, collection, handle)
    metadata.set_single(ctx, collection, "dc.title", name)
    if default_policies:
        anonymous = authz.anonymous_group(ctx)
        for action in (m.Action.READ, m.Action.DEFAULT_ITEM_READ,
                       m.Action.DEFAULT_BITSTREAM_READ):
            authz.add_policy(ctx, collection, action, group=anonymous)
    community.touch()
    return collection


def is_empty(ctx: Context, container: m.DSpaceObject) -> bool:
    if isinstance(container, m.Community):
        return not container.subcommunities and not container.collections
    if isinstance(container, m.Collection):
        count = ctx.session.scalar(select(func.count()).select_from(m.Item)
                                   .where(m.Item.owning_collection_id == container.id))
        mapped = ctx.session.scalar(select(func.count()).select_from(m.item_mapping)
                                    .where(m.item_mapping.c.collection_id == container.id))
        return not count and not mapped
    return True


def delete_container(ctx: Context, container: m.Community | m.Collection) -> None:
    """Delete an empty community or collection (with its logo and template item)."""
    parent = authz.parent_of(container)
    if parent is None:
        authz.require_admin(ctx)
    else:
        authz.authorize(ctx, parent, m.Action.REMOVE)
    if isinstance(container, m.Collection) and container.template_item is not None:
        template = container.template_item
        container.template_item = None
        ctx.session.flush()
        _delete_item_rows(ctx, template)
    if not is_empty(ctx, container):
        raise Conflict(f"{container.type.value} {container.handle} is not empty",
                       [Detail("container not empty", field="handle",
                               found=container.handle)])
    _drop_logo(ctx, container)
    if parent is not None:
        parent.touch()
    ctx.session.delete(container)
    ctx.session.flush()


def move_collection(ctx: Context, collection: m.Collection, target: m.Community) -> None:
    authz.authorize(ctx, collection.community, m.Action.REMOVE)
    authz.authorize(ctx, target, m.Action.ADD)
    collection.community.touch()
    collection.community = target
    target.touch()
    collection.touch()
    ctx.session.flush()


def move_community(ctx: Context, community: m.Community, target: m.Community | None) -> None:
    if community.parent is None or target is None:
        authz.require_admin(ctx)
    else:
        authz.authorize(ctx, community.parent, m.Action.REMOVE)
        authz.authorize(ctx, target, m.Action.ADD)
    ancestor = target
    while ancestor is not None:
        if ancestor.id == community.id:
            raise InvalidInput("a community cannot be moved inside itself",
                               [Detail("cycle", field="parent", found=community.handle)])
        ancestor = ancestor.parent
    community.parent = target
    community.touch()
    ctx.session.flush()


def set_logo(ctx: Context, container: m.Community | m.Collection,
             content: m.StoredContent | None, *, name: str = "logo",
             mime_type: str = "application/octet-stream",
             object_id: uuidlib.UUID | None = None, **fields: object) -> m.Bitstream | None:
    """Replace the container's logo; ``fields`` are further bitstream columns (format facts,
    source, description) a restore carries."""
    authz.authorize(ctx, container, m.Action.WRITE)
    _drop_logo(ctx, container)
    if content is None:
        return None
    logo = _new_bitstream(ctx, content, name=name, mime_type=mime_type, object_id=object_id,
                          **fields)
    container.logo = logo
    container.touch()
    ctx.session.flush()
    return logo


def _drop_logo(ctx: Context, container: m.Community | m.Collection) -> None:
    old = container.logo
    if old is not None:
        container.logo = None
        ctx.session.flush()
        ctx.release(old.sha256)
        ctx.session.delete(old)
        ctx.session.flush()


# ---------------------------------------------------------------------------------------
# Items


def create_item(ctx: Context, collection: m.Collection | None, *,
                submitter: m.EPerson | None = None, object_id: uuidlib.UUID | None = None,
                template: bool = False) -> m.Item:
    """A workspace item in ``collection`` (no handle until it is installed)."""
    if collection is not None:
        authz.authorize(ctx, collection, m.Action.ADD)
    who = submitter if submitter is not None else ctx.actor
    item = _new(m.Item, claim_uuid(ctx, object_id), submitter=who,
                submitter_id=who.id if who is not None else None,
                in_archive=False, withdrawn=False, discoverable=True,
                workflow_state=m.WorkflowState.WORKSPACE, is_template=template)
    assert isinstance(item, m.Item)
    if collection is not None:
        _own(collection, item)
    ctx.session.add(item)
    return item


def _own(collection: m.Collection, item: m.Item) -> None:
    """Make ``collection`` own ``item`` without keeping the item in a loaded
    ``collection.items`` (a restore's collections would otherwise hold every item it
    creates, and their files, policies and values, until the unit of work ends)."""
    state = inspect(collection)
    if "items" not in state.unloaded and state.attrs["items"].history.has_changes():
        item.owning_collection = collection  # changes pending there: join them
        return
    item.owning_collection_id = collection.id
    set_committed_value(item, "owning_collection", collection)
    if "items" not in state.unloaded and state.session is not None:
        state.session.expire(collection, ["items"])


def create_template_item(ctx: Context, collection: m.Collection,
                         object_id: uuidlib.UUID | None = None) -> m.Item:
    authz.authorize(ctx, collection, m.Action.WRITE)
    if collection.template_item is not None:
        raise Conflict(f"collection {collection.handle} already has a template item")
    item = _new(m.Item, claim_uuid(ctx, object_id), owning_collection=None, in_archive=False,
                workflow_state=m.WorkflowState.WORKSPACE, is_template=True)
    assert isinstance(item, m.Item)
    ctx.session.add(item)
    ctx.session.flush()
    collection.template_item = item
    collection.touch()
    ctx.session.flush()
    return item


def delete_template_item(ctx: Context, collection: m.Collection) -> None:
    """Remove the collection's template item (a force-replace restores it from the package)."""
    authz.authorize(ctx, collection, m.Action.WRITE)
    template = collection.template_item
    if template is None:
        return
    collection.template_item = None
    collection.touch()
    ctx.session.flush()
    _delete_item_rows(ctx, template)


def set_workflow_enabled(ctx: Context, collection: m.Collection, enabled: bool) -> None:
    authz.authorize(ctx, collection, m.Action.WRITE)
    if collection.workflow_enabled != enabled:
        collection.workflow_enabled = enabled
        collection.touch()
        ctx.session.flush()


def template_values(collection: m.Collection) -> list[Value]:
    """The metadata a new submission to ``collection`` starts with: its template item's."""
    template = collection.template_item
    return [] if template is None else metadata.ordered_values(template)


def submit(ctx: Context, item: m.Item, *, skip_workflow: bool = False,
           handle: str | None = None) -> None:
    """Finish a submission: into workflow when the collection has one, else archive it."""
    collection = item.owning_collection
    if collection is not None and collection.workflow_enabled and not skip_workflow:
        item.workflow_state = m.WorkflowState.WORKFLOW
        item.touch()
        ctx.session.flush()
        return
    install(ctx, item, handle=handle)


def install(ctx: Context, item: m.Item, *, handle: str | None = None,
            restore: bool = False, provenance: bool = True) -> None:
    """Archive an item: handle, in_archive, policies; DSpace's system metadata on submit.

    ``restore=True`` keeps the item's metadata and policies exactly as the package gave
    them (the AIP carries them).
    """
    collection = item.owning_collection
    if item.handle is None or handle is not None:
        handles.assign(ctx, item, handle)
    item.in_archive = True
    item.workflow_state = m.WorkflowState.ARCHIVED
    if not restore:
        system = install_values(ctx, item.handle,
                                issued=bool(metadata.values(item, "dc.date.issued")),
                                provenance=provenance)
        metadata.add_values(ctx, item, system)
    with ctx.session.no_autoflush:  # one flush at the end, not one per policy looked at
        if not restore and collection is not None and not item.policies:
            authz.inherit_policies(ctx, collection, item,
                                   [(m.Action.DEFAULT_ITEM_READ, m.Action.READ)])
            for bundle in item.bundles:
                if not bundle.policies:
                    authz.inherit_policies(ctx, collection, bundle,
                                           [(m.Action.DEFAULT_BITSTREAM_READ, m.Action.READ)])
                for bitstream in bundle.bitstreams:
                    if not bitstream.policies:
                        authz.inherit_policies(
                            ctx, collection, bitstream,
                            [(m.Action.DEFAULT_BITSTREAM_READ, m.Action.READ)])
    item.touch()


def install_values(ctx: Context, handle: str | None, *, issued: bool,
                   provenance: bool = True) -> list[Value]:
    """DSpace's system metadata for an item archived now (``issued``: it has an issue date
    already, so none is added)."""
    now = m.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    system = [Value("dc.date.accessioned", now), Value("dc.date.available", now)]
    if not issued:
        system.append(Value("dc.date.issued", now[:10]))
    system.append(Value("dc.identifier.uri", handle_url(ctx, handle)))
    if provenance:
        who = ctx.actor.email if ctx.actor else "the system"
        system.append(Value("dc.description.provenance",
                            f"Made available in DSpace on {now} (GMT). Submitted by {who}.",
                            language="en"))
    return system


def handle_url(ctx: Context, handle: str | None) -> str:
    base = str(ctx.config.get("site.base_url")).rstrip("/")
    return f"{base}/handle/{handle}"


def withdraw(ctx: Context, item: m.Item) -> None:
    authz.authorize(ctx, item, m.Action.WRITE)
    item.withdrawn = True
    item.in_archive = False
    who = ctx.actor.email if ctx.actor else "the system"
    metadata.add(ctx, item, "dc.description.provenance",
                 f"Item withdrawn by {who} on {m.utcnow():%Y-%m-%dT%H:%M:%SZ}", language="en")
    item.touch()
    ctx.session.flush()


def set_item_state(ctx: Context, item: m.Item, *, in_archive: bool, withdrawn: bool,
                   discoverable: bool) -> None:
    """Set an archived item's flags exactly as a restored package records them.

    Unlike :func:`withdraw`/:func:`reinstate` this writes no provenance note: a restore
    reproduces the metadata the package carries and adds nothing.
    """
    authz.authorize(ctx, item, m.Action.WRITE)
    if (item.in_archive, item.withdrawn, item.discoverable) == (in_archive, withdrawn,
                                                                 discoverable):
        return  # already so: nothing to write, nothing changed
    item.in_archive = in_archive
    item.withdrawn = withdrawn
    item.discoverable = discoverable
    item.touch()
    ctx.session.flush()


def reinstate(ctx: Context, item: m.Item) -> None:
    authz.authorize(ctx, item, m.Action.WRITE)
    item.withdrawn = False
    item.in_archive = True
    who = ctx.actor.email if ctx.actor else "the system"
    metadata.add(ctx, item, "dc.description.provenance",
                 f"Item reinstated by {who} on {m.utcnow():%Y-%m-%dT%H:%M:%SZ}", language="en")
    item.touch()
    ctx.session.flush()


def move_item(ctx: Context, item: m.Item, target: m.Collection) -> None:
    source = item.owning_collection
    if source is not None:
        authz.authorize(ctx, source, m.Action.REMOVE)
    authz.authorize(ctx, target, m.Action.ADD)
    if target in item.mapped_collections:
        item.mapped_collections.remove(target)
    item.owning_collection = target
    item.touch()
    ctx.session.flush()


def map_item(ctx: Context, item: m.Item, collection: m.Collection) -> None:
    authz.authorize(ctx, collection, m.Action.ADD)
    if collection.id == item.owning_collection_id or collection in item.mapped_collections:
        return
    item.mapped_collections.append(collection)
    item.touch()
    ctx.session.flush()


def unmap_item(ctx: Context, item: m.Item, collection: m.Collection) -> None:
    authz.authorize(ctx, collection, m.Action.REMOVE)
    if collection in item.mapped_collections:
        item.mapped_collections.remove(collection)
        item.touch()
        ctx.session.flush()


def delete_item(ctx: Context, item: m.Item) -> None:
    """Delete an item for good (administrators, or REMOVE on its collection; a submitter
    may discard their own submission while it is in the workspace)."""
    if item.owning_collection is not None:
        if not (item.workflow_state == m.WorkflowState.WORKSPACE
                and authz.allowed(ctx, item, m.Action.REMOVE)):
            authz.authorize(ctx, item.owning_collection, m.Action.REMOVE)
    else:
        authz.require_admin(ctx)
    _delete_item_rows(ctx, item)


def _delete_item_rows(ctx: Context, item: m.Item) -> None:
    for bundle in list(item.bundles):
        for bitstream in bundle.bitstreams:
            ctx.release(bitstream.sha256)
    for rel in ctx.session.scalars(select(m.Relationship).where(
            (m.Relationship.left_item_id == item.id)
            | (m.Relationship.right_item_id == item.id))):
        ctx.session.delete(rel)
    item.mapped_collections.clear()
    ctx.session.flush()
    for bundle in list(item.bundles):
        bundle.primary_bitstream = None
    ctx.session.flush()
    ctx.session.delete(item)
    ctx.session.flush()


# ---------------------------------------------------------------------------------------
# Bundles and bitstreams


def create_bundle(ctx: Context, item: m.Item, name: str, *,
                  object_id: uuidlib.UUID | None = None,
                  position: int | None = None) -> m.Bundle:
    """A new bundle, after the existing ones unless ``position`` (a restore's) is given."""
    authz.authorize(ctx, item, m.Action.ADD)
    if not name:
        raise InvalidInput("a bundle needs a name", [Detail("empty bundle name", field="name")])
    if position is None:
        position = max((b.position for b in item.bundles), default=-1) + 1
    bundle = _new(m.Bundle, claim_uuid(ctx, object_id), name=name, position=position,
                  item_id=item.id)
    assert isinstance(bundle, m.Bundle)
    item.bundles.append(bundle)
    item.touch()
    return bundle


def get_bundle(item: m.Item, name: str) -> m.Bundle | None:
    for bundle in item.bundles:
        if bundle.name == name:
            return bundle
    return None


def bundle_named(ctx: Context, item: m.Item, name: str) -> m.Bundle:
    return get_bundle(item, name) or create_bundle(ctx, item, name)


def _new_bitstream(ctx: Context, content: m.StoredContent, *, name: str, mime_type: str,
                   object_id: uuidlib.UUID | None = None, **fields: object) -> m.Bitstream:
    bitstream = _new(m.Bitstream, claim_uuid(ctx, object_id), name=name, mime_type=mime_type,
                     size=content.size, md5=content.md5, sha256=content.sha256,
                     crc32=content.crc32, content=content, **fields)
    assert isinstance(bitstream, m.Bitstream)
    ctx.session.add(bitstream)
    return bitstream


def next_sequence_id(ctx: Context, item: m.Item) -> int:
    used = [b.sequence_id or 0 for bundle in item.bundles for b in bundle.bitstreams]
    return max(used, default=0) + 1


def add_bitstream(ctx: Context, bundle: m.Bundle, content: m.StoredContent, *, name: str,
                  mime_type: str = "application/octet-stream", source: str | None = None,
                  description: str | None = None, sequence_id: int | None = None,
                  format_name: str | None = None, format_support: str = "UNKNOWN",
                  format_internal: bool = False, user_format: str | None = None,
                  object_id: uuidlib.UUID | None = None, primary: bool = False,
                  position: int | None = None) -> m.Bitstream:
    item = bundle.item
    authz.authorize(ctx, item, m.Action.ADD)
    if sequence_id is None:
        sequence_id = next_sequence_id(ctx, item)
    elif any(b.sequence_id == sequence_id for bn in item.bundles for b in bn.bitstreams):
        raise Conflict(f"sequence id {sequence_id} is already used in item {item.handle}",
                       [Detail("duplicate sequence id", file=name, field="SEQ",
                               found=str(sequence_id))])
    if position is None:
        position = max((b.position for b in bundle.bitstreams), default=-1) + 1
    bitstream = _new_bitstream(ctx, content, name=name, mime_type=mime_type,
                               object_id=object_id, source=source, description=description,
                               sequence_id=sequence_id, format_name=format_name,
                               format_support=format_support, format_internal=format_internal,
                               user_format=user_format, position=position,
                               bundle_id=bundle.id)
    bundle.bitstreams.append(bitstream)
    if primary:
        bundle.primary_bitstream = bitstream
    bundle.touch()
    item.touch()
    return bitstream


def remove_bitstream(ctx: Context, bitstream: m.Bitstream) -> None:
    bundle = bitstream.bundle
    if bundle is None:
        raise InvalidInput("only bitstreams in bundles can be removed this way")
    authz.authorize(ctx, bundle.item, m.Action.REMOVE)
    if bundle.primary_bitstream_id == bitstream.id:
        bundle.primary_bitstream = None
        ctx.session.flush()
    ctx.release(bitstream.sha256)
    bundle.bitstreams.remove(bitstream)
    bundle.touch()
    bundle.item.touch()
    ctx.session.flush()


def remove_bundle(ctx: Context, bundle: m.Bundle) -> None:
    item = bundle.item
    authz.authorize(ctx, item, m.Action.REMOVE)
    bundle.primary_bitstream = None
    ctx.session.flush()
    for bitstream in bundle.bitstreams:
        ctx.release(bitstream.sha256)
    item.bundles.remove(bundle)
    item.touch()
    ctx.session.flush()


def item_bitstreams(item: m.Item) -> Iterator[m.Bitstream]:
    for bundle in item.bundles:
        yield from bundle.bitstreams


# ---------------------------------------------------------------------------------------
# Many new items at once


@dataclass
class NewFile:
    """A file of an item made by :func:`create_items`, listed after the item's earlier
    files."""

    bundle: str
    content: m.StoredContent
    name: str
    mime_type: str = "application/octet-stream"
    description: str | None = None
    primary: bool = False
    values: Sequence[Value] = ()  # the bitstream's own metadata; missing fields are created
    policies: Sequence[tuple[m.Action, m.Group]] | None = None  # None: the defaults


@dataclass
class NewItem:
    """An item for :func:`create_items`: what ``create_item``, ``add_values``,
    ``bundle_named`` + ``add_bitstream``, ``submit`` and ``map_item`` would be told."""

    collection: m.Collection
    values: Sequence[Value]
    files: Sequence[NewFile] = ()
    mapped: Sequence[m.Collection] = ()
    object_id: uuidlib.UUID | None = None
    handle: str | None = None  # honoured when the item is archived; None: minted


class Created(NamedTuple):
    id: uuidlib.UUID
    handle: str | None


def create_items(ctx: Context, new: Sequence[NewItem], *, skip_workflow: bool = False,
                 create_fields: bool = False) -> list[Created]:
    """Create and submit many items with one bulk insert per table.

    The rows are exactly those of the one-object-at-a-time services (same checks, values
    and places, bundles, positions and sequence ids, policies, handles, system metadata),
    written without loading them as objects: a batch pays for its rows, not for a unit of
    work per object.  Every check runs before the first row is written.
    """
    if not new:
        return []
    session = ctx.session
    session.flush()
    for collection in {c.id: c for d in new for c in (d.collection, *d.mapped)}.values():
        authz.authorize(ctx, collection, m.Action.ADD)
    claimed = [d.object_id for d in new if d.object_id is not None]
    cast(set[uuidlib.UUID], ctx._cache.get(_FREE_UUIDS, set())).difference_update(claimed)
    if claimed:
        taken = session.scalars(select(m.DSpaceObject.id)
                                .where(m.DSpaceObject.id.in_(claimed))).first()
        if taken is not None or len(set(claimed)) != len(claimed):
            found = str(taken or next(i for i in claimed if claimed.count(i) > 1))
            raise Conflict(f"an object with UUID {found} already exists",
                           [Detail("duplicate UUID", field="uuid", found=found)])
    archived = [not (d.collection.workflow_enabled and not skip_workflow) for d in new]
    given = [handles.normalise(d.handle) if d.handle is not None and archive else None
             for d, archive in zip(new, archived, strict=True)]
    _check_free_handles(ctx, [h for h in given if h is not None])
    minted = iter(handles.mint_block(ctx, sum(1 for d, archive in zip(given, archived,
                                                                       strict=True)
                                                if archive and d is None),
                                     reserved={h for h in given if h is not None}))
    issued = metadata.get_field(ctx, "dc.date.issued").id if any(archived) else 0
    rows = _Rows(m.utcnow())
    created: list[Created] = []
    for draft, archive, handle in zip(new, archived, given, strict=True):
        item_id = draft.object_id or uuidlib.uuid4()
        if archive and handle is None:
            handle = next(minted)
        rows.add_item(ctx, draft, item_id, handle if archive else None, archive,
                      create_fields=create_fields, issued_field=issued)
        created.append(Created(item_id, handle if archive else None))
    rows.write(session)
    for collection in {d.collection.id: d.collection for d in new}.values():
        session.expire(collection, ["items"])
    return created


def _check_free_handles(ctx: Context, wanted: list[str]) -> None:
    """Refuse handles another object has, or that two new items ask for."""
    owner = ctx.session.scalars(select(m.DSpaceObject)
                                .where(m.DSpaceObject.handle.in_(wanted))).first() \
        if wanted else None
    if owner is not None:
        assert owner.handle is not None
        raise Conflict(f"handle {owner.handle} already belongs to {owner.type.value} "
                       f"{owner.id}",
                       [Detail("duplicate handle", field="handle", found=owner.handle)])
    for value in wanted:
        if wanted.count(value) > 1:
            raise Conflict(f"handle {value} is asked for twice",
                           [Detail("duplicate handle", field="handle", found=value)])


_DEFAULT_ITEM_READ = [(m.Action.DEFAULT_ITEM_READ, m.Action.READ)]
_DEFAULT_FILE_READ = [(m.Action.DEFAULT_BITSTREAM_READ, m.Action.READ)]


class _Rows:
    """The rows of the items :func:`create_items` makes, table by table."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.dso: list[dict[str, object]] = []
        self.items: list[dict[str, object]] = []
        self.bundles: list[dict[str, object]] = []
        self.bitstreams: list[dict[str, object]] = []
        self.primaries: list[dict[str, object]] = []
        self.values: list[dict[str, object]] = []
        self.policies: list[dict[str, object]] = []
        self.mappings: list[dict[str, object]] = []

    def _object(self, kind: m.ObjectType, object_id: uuidlib.UUID,
                handle: str | None = None) -> None:
        self.dso.append({"id": object_id, "type": kind, "handle": handle,
                         "last_modified": self.now})

    def add_item(self, ctx: Context, draft: NewItem, item_id: uuidlib.UUID,
                 handle: str | None, archive: bool, *, create_fields: bool,
                 issued_field: int) -> None:
        collection = draft.collection
        if draft.files:
            authz.authorize_new_item(ctx, collection, item_id)
        self._object(m.ObjectType.ITEM, item_id, handle)
        self.items.append({
            "id": item_id, "owning_collection_id": collection.id,
            "submitter_id": ctx.actor.id if ctx.actor is not None else None,
            "in_archive": archive, "withdrawn": False, "discoverable": True,
            "workflow_state": m.WorkflowState.ARCHIVED if archive else m.WorkflowState.WORKFLOW,
            "is_template": False})
        places: dict[int, int] = {}
        values = metadata.value_rows(ctx, item_id, draft.values, places, create=create_fields)
        if archive:
            has_issued = any(row["field_id"] == issued_field for row in values)
            values += metadata.value_rows(ctx, item_id, install_values(
                ctx, handle, issued=has_issued), places)
            self.policies += authz.inherited_rows(collection, item_id, _DEFAULT_ITEM_READ)
        self.values += values
        bundles: dict[str, tuple[uuidlib.UUID, list[int]]] = {}  # name -> id, [position]
        for sequence_id, spec in enumerate(draft.files, start=1):
            if not spec.bundle:
                raise InvalidInput("a bundle needs a name",
                                   [Detail("empty bundle name", field="name")])
            if spec.bundle not in bundles:
                bundle_id = uuidlib.uuid4()
                self._object(m.ObjectType.BUNDLE, bundle_id)
                self.bundles.append({"id": bundle_id, "item_id": item_id, "name": spec.bundle,
                                     "position": len(bundles), "primary_bitstream_id": None})
                if archive:
                    self.policies += authz.inherited_rows(collection, bundle_id,
                                                          _DEFAULT_FILE_READ)
                bundles[spec.bundle] = (bundle_id, [0])
            bundle_id, position = bundles[spec.bundle]
            bitstream_id = uuidlib.uuid4()
            self._object(m.ObjectType.BITSTREAM, bitstream_id)
            content = spec.content
            self.bitstreams.append({
                "id": bitstream_id, "bundle_id": bundle_id, "position": position[0],
                "name": spec.name, "source": None, "description": spec.description,
                "sequence_id": sequence_id, "mime_type": spec.mime_type, "format_name": None,
                "format_support": "UNKNOWN", "format_internal": False, "user_format": None,
                "size": content.size, "md5": content.md5, "sha256": content.sha256,
                "crc32": content.crc32})
            position[0] += 1
            if spec.primary:
                self.primaries.append({"key": bundle_id, "primary": bitstream_id})
            self.values += metadata.value_rows(ctx, bitstream_id, spec.values, {},
                                               create=True)
            if spec.policies is not None:
                self.policies += [{
                    "dso_id": bitstream_id, "action": action, "group_id": group.id,
                    "eperson_id": None, "start_date": None, "end_date": None, "name": None,
                    "description": None, "rptype": None} for action, group in spec.policies]
            elif archive:
                self.policies += authz.inherited_rows(collection, bitstream_id,
                                                      _DEFAULT_FILE_READ)
        for other in {c.id: c for c in draft.mapped if c.id != collection.id}:
            self.mappings.append({"item_id": item_id, "collection_id": other})

    def write(self, session: Session) -> None:
        """Insert parents before children; a bundle's primary file once both exist."""
        for model, rows in ((m.DSpaceObject, self.dso), (m.Item, self.items),
                            (m.Bundle, self.bundles), (m.Bitstream, self.bitstreams),
                            (m.MetadataValue, self.values), (m.ResourcePolicy, self.policies)):
            if rows:
                session.execute(insert(_own_table(model)), rows)
        if self.mappings:
            session.execute(insert(m.item_mapping), self.mappings)
        if self.primaries:
            table = _own_table(m.Bundle)
            session.execute(update(table).where(table.c.id == bindparam("key"))
                            .values(primary_bitstream_id=bindparam("primary")),
                            self.primaries)


def _own_table(model: type[m.Base]) -> Table:
    """The table a mapped class adds (its subtype table under joined inheritance)."""
    return cast(Table, model.__table__)


# ---------------------------------------------------------------------------------------
# Relationships


def add_relationship(ctx: Context, left: m.Item, right: m.Item, left_type: str,
                     right_type: str, *, left_place: int | None = None,
                     right_place: int | None = None, left_label: str | None = None,
                     right_label: str | None = None) -> m.Relationship:
    authz.authorize(ctx, left, m.Action.WRITE)
    authz.authorize(ctx, right, m.Action.WRITE)
    if left_place is None:
        left_place = ctx.session.scalar(
            select(func.count()).select_from(m.Relationship)
            .where(m.Relationship.left_item_id == left.id,
                   m.Relationship.left_type == left_type)) or 0
    if right_place is None:
        right_place = ctx.session.scalar(
            select(func.count()).select_from(m.Relationship)
            .where(m.Relationship.right_item_id == right.id,
                   m.Relationship.right_type == right_type)) or 0
    rel = m.Relationship(left_item=left, right_item=right, left_type=left_type,
                         right_type=right_type, left_place=left_place, right_place=right_place,
                         left_label=left_label, right_label=right_label)
    ctx.session.add(rel)
    left.touch()
    right.touch()
    ctx.session.flush()
    return rel


def relationships_of(ctx: Context, item: m.Item) -> list[m.Relationship]:
    return list(ctx.session.scalars(select(m.Relationship).where(
        (m.Relationship.left_item_id == item.id) | (m.Relationship.right_item_id == item.id))
        .order_by(m.Relationship.left_type, m.Relationship.left_place, m.Relationship.id)))


def set_metadata(ctx: Context, obj: m.DSpaceObject, values: list[Value], *,
                 create: bool = False) -> None:
    """Replace all metadata of ``obj`` (WRITE required)."""
    authz.authorize(ctx, obj, m.Action.WRITE)
    metadata.replace_all(ctx, obj, values, create=create)


# ---------------------------------------------------------------------------------------
# Restores: times and identities exactly as a package records them


def set_last_modified(ctx: Context, times: Mapping[uuidlib.UUID, datetime]) -> None:
    """Give objects the ``last_modified`` a package records, as the unit of work's last step.

    Written with one bulk UPDATE after a flush, so the change-tracking hook (which would
    stamp *now* on anything touched later in the same unit) never sees it.  Loaded objects
    are expired so that they read the stored value again.
    """
    if not times:
        return
    ctx.session.flush()
    table = cast(Table, m.DSpaceObject.__table__)
    rows = [{"key": key, "stamp": when} for key, when in times.items()]
    statement = (update(table).where(table.c.id == bindparam("key"))
                 .values(last_modified=bindparam("stamp")))
    connection = ctx.session.connection()
    for start in range(0, len(rows), 1000):
        connection.execute(statement, rows[start:start + 1000])
    ctx.session.expire_all()


def rekey(ctx: Context, obj: m.DSpaceObject, new_id: uuidlib.UUID) -> m.DSpaceObject:
    """Give an existing object another UUID, keeping everything that refers to it.

    A full-site restore into a fresh repository meets objects every repository has (the
    site, Anonymous, Administrator, the administrator running it) under other UUIDs; a
    force-replace gives them the package's UUIDs so the restored site is the backed-up one.
    Administrators only.  Returns the object under its new key (the old instance is gone
    from the session; callers must drop it).
    """
    authz.require_admin(ctx)
    old_id = obj.id
    if old_id == new_id:
        return obj
    claim_uuid(ctx, new_id)
    ctx.session.flush()
    cls = type(obj)
    tables = list(inspect(cls).tables)  # dso first, then the subtype table
    session = ctx.session
    rows = {}
    for table in tables:
        row = session.execute(select(table).where(table.c.id == old_id)).mappings().one()
        rows[table.name] = dict(row)
    # Free the unique values on the old rows so the new rows can take them.
    for table in tables:
        freed = {}
        for column in table.columns:
            if column.unique and not column.primary_key:
                freed[column.name] = None if column.nullable else f"~rekey~{old_id}"
        if freed:
            session.execute(update(table).where(table.c.id == old_id).values(freed))
    for table in tables:
        values = dict(rows[table.name])
        values["id"] = new_id
        session.execute(insert(table).values(values))
    owned = set(tables)
    for table in m.Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table in owned and fk.column.name == "id" and table not in owned:
                column = fk.parent
                session.execute(update(table).where(column == old_id)
                                .values({column.name: new_id}))
    for table in reversed(tables):
        session.execute(delete(table).where(table.c.id == old_id))
    session.expunge(obj)
    session.expire_all()
    ctx._cache.clear()
    fresh = session.get(cls, new_id)
    assert fresh is not None
    if ctx.actor is not None and ctx.actor.id == old_id:
        assert isinstance(fresh, m.EPerson)
        ctx.actor = fresh
    return fresh
