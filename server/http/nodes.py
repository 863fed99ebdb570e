"""Plain snapshots of repository objects for the HTTP layer.

WebDAV resources live for one request but must not keep ORM instances: the request's
read unit of work is released before long transfers and writes.  A :class:`Node`
carries everything a resource needs after that.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from server import models as m
from server.context import Context
from server.services import authz, metadata
from server.services import objects as objects_service

CONTAINER_TYPES = frozenset({m.ObjectType.SITE, m.ObjectType.COMMUNITY,
                             m.ObjectType.COLLECTION})
OBJECT_TYPES = CONTAINER_TYPES | {m.ObjectType.ITEM}


@dataclass(frozen=True)
class Node:
    """A site, community, collection, item, bundle or bitstream, as plain data."""

    id: uuid.UUID
    type: m.ObjectType
    handle: str | None
    title: str
    last_modified: datetime
    withdrawn: bool = False
    archived: bool = True
    # bitstreams
    size: int | None = None
    mime_type: str | None = None
    sha256: str | None = None
    # bundles and bitstreams: the item they belong to
    item_id: uuid.UUID | None = None

    @property
    def is_container(self) -> bool:
        return self.type in CONTAINER_TYPES

    @property
    def is_object(self) -> bool:
        """Something a package describes (site, community, collection, item)."""
        return self.type in OBJECT_TYPES

    @property
    def timestamp(self) -> float:
        """``last_modified`` (naive UTC in the model) as epoch seconds."""
        return self.last_modified.replace(tzinfo=UTC).timestamp()


def snapshot(obj: m.DSpaceObject, title: str | None = None) -> Node:
    if title is None:
        title = objects_service.name_of(obj)
    base = Node(id=obj.id, type=obj.type, handle=obj.handle, title=title or "",
                last_modified=obj.last_modified)
    if isinstance(obj, m.Item):
        return replace(base, withdrawn=bool(obj.withdrawn),
                       archived=obj.workflow_state is m.WorkflowState.ARCHIVED)
    if isinstance(obj, m.Bundle):
        return replace(base, item_id=obj.item_id)
    if isinstance(obj, m.Bitstream):
        item_id = obj.bundle.item_id if obj.bundle is not None else None
        return replace(base, size=obj.size, mime_type=obj.mime_type, sha256=obj.sha256,
                       item_id=item_id)
    return base


def title_of(obj: m.DSpaceObject) -> str:
    return metadata.first(obj, "dc.title") or ""


def can(ctx: Context, obj: m.DSpaceObject, action: m.Action) -> bool:
    return authz.allowed(ctx, obj, action)
