"""Read-side queries the WebDAV tree needs in bulk (one query per listing, not per row).

Nothing here changes the repository; every write goes through the other services.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from server import models as m
from server.context import Context
from server.errors import UnknownMetadataField
from server.services import authz, metadata

TITLE = "dc.title"


def titles(ctx: Context, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The first ``dc.title`` of each object (objects without one are left out)."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    try:
        field = metadata.get_field(ctx, TITLE)
    except UnknownMetadataField:
        return {}
    found: dict[uuid.UUID, tuple[int, int, str]] = {}
    for start in range(0, len(wanted), 500):
        rows = ctx.session.execute(
            select(m.MetadataValue.dso_id, m.MetadataValue.place, m.MetadataValue.id,
                   m.MetadataValue.value)
            .where(m.MetadataValue.field_id == field.id,
                   m.MetadataValue.dso_id.in_(wanted[start:start + 500])))
        for dso_id, place, row_id, value in rows:
            current = found.get(dso_id)
            if current is None or (place, row_id) < current[:2]:
                found[dso_id] = (place, row_id, value)
    return {key: value for key, (_, _, value) in found.items()}


def child_containers(ctx: Context, parent: m.DSpaceObject) -> list[m.Community | m.Collection]:
    """Top-level communities of the site, or the sub-communities then collections of a
    community (in UUID order, which is stable)."""
    if isinstance(parent, m.Site):
        return list(ctx.session.scalars(
            select(m.Community).where(m.Community.parent_id.is_(None))
            .options(selectinload(m.Community.policies)).order_by(m.Community.id)))
    if isinstance(parent, m.Community):
        communities: list[m.Community | m.Collection] = list(ctx.session.scalars(
            select(m.Community).where(m.Community.parent_id == parent.id)
            .options(selectinload(m.Community.policies)).order_by(m.Community.id)))
        collections = ctx.session.scalars(
            select(m.Collection).where(m.Collection.community_id == parent.id)
            .options(selectinload(m.Collection.policies)).order_by(m.Collection.id))
        return communities + list(collections)
    return []


@dataclass(frozen=True)
class ItemRow:
    """What a collection listing shows of an item, read without loading the item."""

    id: uuid.UUID
    handle: str
    last_modified: datetime
    withdrawn: bool


def collection_item_rows(ctx: Context, collection_id: uuid.UUID, *,
                         include_withdrawn: bool) -> list[ItemRow]:
    """Archived items with a handle, owned by or mapped into the collection, in UUID
    order: one query however many there are (a listing of 10 000 items must not load
    10 000 objects)."""
    mapped = select(m.item_mapping.c.item_id).where(
        m.item_mapping.c.collection_id == collection_id)
    query = (select(m.Item.id, m.Item.handle, m.Item.last_modified, m.Item.withdrawn)
             .where(m.Item.workflow_state == m.WorkflowState.ARCHIVED,
                    m.Item.handle.is_not(None),
                    or_(m.Item.owning_collection_id == collection_id,
                        m.Item.id.in_(mapped)))
             .order_by(m.Item.id))
    if not include_withdrawn:
        query = query.where(m.Item.withdrawn.is_(False))
    return [ItemRow(row.id, row.handle, row.last_modified, bool(row.withdrawn))
            for row in ctx.session.execute(query)]


def readable_items(ctx: Context, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``ids`` the context's person may READ (their policies loaded in batches,
    the decision left to :func:`authz.allowed`)."""
    found: set[uuid.UUID] = set()
    for start in range(0, len(ids), 500):
        batch = ctx.session.scalars(
            select(m.Item).where(m.Item.id.in_(ids[start:start + 500]))
            .options(selectinload(m.Item.policies)))
        found.update(item.id for item in batch if authz.allowed(ctx, item, m.Action.READ))
    return found


def is_in_collection(ctx: Context, item: m.Item, collection: m.Collection) -> bool:
    if item.owning_collection_id == collection.id:
        return True
    row = ctx.session.execute(
        select(m.item_mapping.c.item_id).where(m.item_mapping.c.item_id == item.id,
                                               m.item_mapping.c.collection_id == collection.id)
    ).first()
    return row is not None


def bundles_of(ctx: Context, item: m.Item) -> Sequence[m.Bundle]:
    return list(ctx.session.scalars(
        select(m.Bundle).where(m.Bundle.item_id == item.id)
        .options(selectinload(m.Bundle.bitstreams)).order_by(m.Bundle.position, m.Bundle.id)))
