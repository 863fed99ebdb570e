"""Plain snapshots of what the SWORD documents show, taken inside a read unit of work.

Receipts, statements and feeds are rendered from these after the database is released.
The state IRIs a statement reports are DSpace's (clients written against DSpace know them);
each state always carries a description.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from server import models as m
from server.context import Context
from server.services import metadata, objects
from server.services.metadata import Value

SWORD_BUNDLE = "SWORD"
SWORD_SCHEMA = "sword"
SWORD_NAMESPACE = "http://purl.org/net/sword/terms/"
# Per original deposit (a bitstream of the SWORD bundle) and per item.
DEPOSITED_ON = "sword.depositedOn"
DEPOSITED_BY = "sword.depositedBy"
ON_BEHALF_OF = "sword.depositedOnBehalfOf"
PACKAGING = "sword.packaging"
SLUG = "sword.slug"
SWORD_FIELDS = (DEPOSITED_ON, DEPOSITED_BY, ON_BEHALF_OF, PACKAGING, SLUG)

BINARY_PACKAGING = "http://purl.org/net/sword/package/Binary"
SIMPLEZIP_PACKAGING = "http://purl.org/net/sword/package/SimpleZip"

STATE_IN_PROGRESS = "http://dspace.org/state/inprogress"
STATE_IN_REVIEW = "http://dspace.org/state/inreview"
STATE_ARCHIVED = "http://dspace.org/state/archived"
STATE_WITHDRAWN = "http://dspace.org/state/withdrawn"


@dataclass(frozen=True)
class FileView:
    id: uuid.UUID
    bundle: str
    name: str
    mime_type: str
    size: int
    md5: str
    last_modified: datetime
    original: bool
    packaging: str | None = None
    deposited_on: str | None = None
    deposited_by: str | None = None
    on_behalf_of: str | None = None


@dataclass
class ItemView:
    id: uuid.UUID
    handle: str | None
    state: m.WorkflowState
    withdrawn: bool
    collection_id: uuid.UUID | None
    collection_title: str
    workflow_enabled: bool
    title: str
    values: list[Value]
    submitter: str | None
    last_modified: datetime
    files: list[FileView] = field(default_factory=list)
    handle_url: str | None = None

    @property
    def state_iri(self) -> str:
        return state_of(self)[0]

    @property
    def in_progress(self) -> bool:
        return self.state == m.WorkflowState.WORKSPACE

    def content_files(self) -> list[FileView]:
        return [f for f in self.files if f.bundle == "ORIGINAL"]

    def originals(self) -> list[FileView]:
        return [f for f in self.files if f.original]


@dataclass(frozen=True)
class CollectionView:
    id: uuid.UUID
    handle: str | None
    title: str
    abstract: str | None
    workflow_enabled: bool


def state_of(view: ItemView) -> tuple[str, str]:
    """The state IRI of a deposit and the description a depositor reads."""
    if view.withdrawn:
        return STATE_WITHDRAWN, ("The item was withdrawn from the archive: it is kept but "
                                 "no longer shown. It cannot be changed over SWORD.")
    if view.state == m.WorkflowState.ARCHIVED:
        where = f" with handle {view.handle}" if view.handle else ""
        url = f" ({view.handle_url})" if view.handle_url else ""
        return STATE_ARCHIVED, (f"The item is in the archive{where}{url}. It can no longer "
                                "be changed over SWORD.")
    if view.state == m.WorkflowState.WORKFLOW:
        return STATE_IN_REVIEW, (f"The deposit was completed and awaits review in the "
                                 f"workflow of collection '{view.collection_title}'. It "
                                 "cannot be changed over SWORD meanwhile.")
    return STATE_IN_PROGRESS, ("The deposit is in progress, in the depositor's workspace: "
                               "it can still be changed. Complete it with an empty POST to "
                               "the SE-IRI with In-Progress: false (it then goes to "
                               + ("review" if view.workflow_enabled else "the archive")
                               + ").")


STATES: tuple[tuple[str, str], ...] = (
    (STATE_IN_PROGRESS, "In the depositor's workspace; may still be changed (In-Progress: "
     "true, or not yet completed)."),
    (STATE_IN_REVIEW, "Completed; awaiting review in the collection's workflow."),
    (STATE_ARCHIVED, "In the archive, with a handle; no longer changeable over SWORD."),
    (STATE_WITHDRAWN, "Withdrawn from the archive by an administrator."),
)
"""Every state a statement can report (for documentation and tests)."""


def _first(values: list[Value], name: str) -> str | None:
    for value in values:
        if value.field == name:
            return value.value
    return None


def collection_view(collection: m.Collection) -> CollectionView:
    return CollectionView(collection.id, collection.handle,
                          metadata.first(collection, "dc.title") or "",
                          metadata.first(collection, "dc.description.abstract")
                          or metadata.first(collection, "dc.description"),
                          bool(collection.workflow_enabled))


def item_view(ctx: Context, item: m.Item) -> ItemView:
    collection = item.owning_collection
    values = metadata.ordered_values(item)
    view = ItemView(
        id=item.id, handle=item.handle, state=item.workflow_state, withdrawn=item.withdrawn,
        collection_id=collection.id if collection else None,
        collection_title=(metadata.first(collection, "dc.title") or "") if collection else "",
        workflow_enabled=bool(collection.workflow_enabled) if collection else False,
        title=_first(values, "dc.title") or "", values=values,
        submitter=item.submitter.email if item.submitter else None,
        last_modified=item.last_modified,
        handle_url=objects.handle_url(ctx, item.handle) if item.handle else None)
    for bundle in item.bundles:
        for bitstream in bundle.bitstreams:
            original = bundle.name == SWORD_BUNDLE
            facts = metadata.ordered_values(bitstream) if original else []
            view.files.append(FileView(
                id=bitstream.id, bundle=bundle.name, name=bitstream.name,
                mime_type=bitstream.mime_type, size=bitstream.size, md5=bitstream.md5,
                last_modified=bitstream.last_modified, original=original,
                packaging=_first(facts, PACKAGING), deposited_on=_first(facts, DEPOSITED_ON),
                deposited_by=_first(facts, DEPOSITED_BY),
                on_behalf_of=_first(facts, ON_BEHALF_OF)))
    return view
