"""The DSpace object model, persisted with SQLAlchemy 2.

Every addressable object (site, community, collection, item, bundle, bitstream, person,
group) is a row of ``dso`` (joined-table inheritance), so that UUIDs, handles, metadata
values and resource policies attach to *any* object the same way, as in DSpace.  A restore
must reproduce every value an AIP carries, so nothing here is derived or lossy: metadata
keeps its order (``place``), language, authority and confidence; bitstreams keep their
sequence id, format facts and three checksums.

Timestamps are stored as naive UTC datetimes (portable across SQLite and PostgreSQL).
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Naive UTC now, to the microsecond: the one clock of the model."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class ObjectType(enum.StrEnum):
    SITE = "SITE"
    COMMUNITY = "COMMUNITY"
    COLLECTION = "COLLECTION"
    ITEM = "ITEM"
    BUNDLE = "BUNDLE"
    BITSTREAM = "BITSTREAM"
    EPERSON = "EPERSON"
    GROUP = "GROUP"


class WorkflowState(enum.StrEnum):
    WORKSPACE = "workspace"
    WORKFLOW = "workflow"
    ARCHIVED = "archived"


class Action(enum.StrEnum):
    """Resource-policy actions, with DSpace's names and numeric codes (METSRights uses them)."""

    READ = "READ"
    WRITE = "WRITE"
    OBSOLETE_DELETE = "DELETE"
    ADD = "ADD"
    REMOVE = "REMOVE"
    WORKFLOW_STEP_1 = "WORKFLOW_STEP_1"
    WORKFLOW_STEP_2 = "WORKFLOW_STEP_2"
    WORKFLOW_STEP_3 = "WORKFLOW_STEP_3"
    WORKFLOW_ABORT = "WORKFLOW_ABORT"
    DEFAULT_BITSTREAM_READ = "DEFAULT_BITSTREAM_READ"
    DEFAULT_ITEM_READ = "DEFAULT_ITEM_READ"
    ADMIN = "ADMIN"
    WITHDRAWN_READ = "WITHDRAWN_READ"


class DSpaceObject(Base):
    """Common row of every addressable object: identity, handle, change time."""

    __tablename__ = "dso"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    type: Mapped[ObjectType] = mapped_column(Enum(ObjectType, native_enum=False, length=16))
    handle: Mapped[str | None] = mapped_column(String(255), unique=True)
    last_modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    metadata_values: Mapped[list[MetadataValue]] = relationship(
        back_populates="dso", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(MetadataValue.field_id, MetadataValue.place, MetadataValue.id)",
    )
    policies: Mapped[list[ResourcePolicy]] = relationship(
        back_populates="dso", cascade="all, delete-orphan", passive_deletes=True,
        foreign_keys="ResourcePolicy.dso_id", order_by="ResourcePolicy.id",
    )

    __mapper_args__ = {"polymorphic_on": "type"}

    def touch(self) -> None:
        self.last_modified = utcnow()

    def __repr__(self) -> str:
        return f"<{self.type.value} {self.handle or self.id}>"


class Site(DSpaceObject):
    __tablename__ = "site"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                          primary_key=True)
    __mapper_args__ = {"polymorphic_identity": ObjectType.SITE}


class Community(DSpaceObject):
    __tablename__ = "community"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                          primary_key=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("community.id", ondelete="RESTRICT"), index=True)
    logo_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bitstream.id", ondelete="SET NULL", use_alter=True,
                   name="fk_community_logo"))

    parent: Mapped[Community | None] = relationship(
        remote_side="Community.id", foreign_keys=[parent_id], back_populates="subcommunities")
    subcommunities: Mapped[list[Community]] = relationship(
        foreign_keys=[parent_id], back_populates="parent", order_by="Community.id")
    collections: Mapped[list[Collection]] = relationship(
        back_populates="community", foreign_keys="Collection.community_id",
        order_by="Collection.id")
    logo: Mapped[Bitstream | None] = relationship(foreign_keys=[logo_id])

    __mapper_args__ = {"polymorphic_identity": ObjectType.COMMUNITY,
                       "inherit_condition": id == DSpaceObject.id}


class Collection(DSpaceObject):
    __tablename__ = "collection"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                          primary_key=True)
    community_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("community.id", ondelete="RESTRICT"), index=True)
    logo_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bitstream.id", ondelete="SET NULL", use_alter=True,
                   name="fk_collection_logo"))
    template_item_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("item.id", ondelete="SET NULL", use_alter=True,
                   name="fk_collection_template"))
    workflow_enabled: Mapped[bool] = mapped_column(Boolean, default=False)

    community: Mapped[Community] = relationship(back_populates="collections",
                                                foreign_keys=[community_id])
    logo: Mapped[Bitstream | None] = relationship(foreign_keys=[logo_id])
    template_item: Mapped[Item | None] = relationship(foreign_keys=[template_item_id],
                                                      post_update=True)
    items: Mapped[list[Item]] = relationship(
        back_populates="owning_collection", foreign_keys="Item.owning_collection_id",
        order_by="Item.id")

    __mapper_args__ = {"polymorphic_identity": ObjectType.COLLECTION,
                       "inherit_condition": id == DSpaceObject.id}


item_mapping = Table(
    "item_mapping",
    Base.metadata,
    Column("item_id", ForeignKey("item.id", ondelete="CASCADE"), primary_key=True),
    Column("collection_id", ForeignKey("collection.id", ondelete="CASCADE"), primary_key=True,
           index=True),
)


class Item(DSpaceObject):
    __tablename__ = "item"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                          primary_key=True)
    owning_collection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("collection.id", ondelete="RESTRICT"), index=True)
    submitter_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("eperson.id", ondelete="SET NULL"))
    in_archive: Mapped[bool] = mapped_column(Boolean, default=False)
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    discoverable: Mapped[bool] = mapped_column(Boolean, default=True)
    workflow_state: Mapped[WorkflowState] = mapped_column(
        Enum(WorkflowState, native_enum=False, length=16,
             values_callable=lambda e: [m.value for m in e]),
        default=WorkflowState.WORKSPACE)
    is_template: Mapped[bool] = mapped_column(Boolean, default=False)

    owning_collection: Mapped[Collection | None] = relationship(
        back_populates="items", foreign_keys=[owning_collection_id])
    mapped_collections: Mapped[list[Collection]] = relationship(
        secondary=item_mapping, order_by="Collection.id")
    submitter: Mapped[EPerson | None] = relationship(foreign_keys=[submitter_id])
    bundles: Mapped[list[Bundle]] = relationship(
        back_populates="item", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(Bundle.position, Bundle.id)", foreign_keys="Bundle.item_id")

    __mapper_args__ = {"polymorphic_identity": ObjectType.ITEM,
                       "inherit_condition": id == DSpaceObject.id}


class Bundle(DSpaceObject):
    __tablename__ = "bundle"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                          primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"),
                                               index=True)
    name: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(Integer, default=0)
    primary_bitstream_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bitstream.id", ondelete="SET NULL", use_alter=True,
                   name="fk_bundle_primary"))

    item: Mapped[Item] = relationship(back_populates="bundles", foreign_keys=[item_id])
    bitstreams: Mapped[list[Bitstream]] = relationship(
        back_populates="bundle", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(Bitstream.position, Bitstream.id)", foreign_keys="Bitstream.bundle_id")
    primary_bitstream: Mapped[Bitstream | None] = relationship(
        foreign_keys=[primary_bitstream_id], post_update=True)

    __mapper_args__ = {"polymorphic_identity": ObjectType.BUNDLE,
                       "inherit_condition": id == DSpaceObject.id}


class StoredContent(Base):
    """One physical file of the content store, addressed by its SHA-256.

    The row is the lock that serialises writers and the garbage collector on one piece of
    content (see ``server.store``); bitstreams reference it, and identical content is
    stored once.
    """

    __tablename__ = "stored_content"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    crc32: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Bitstream(DSpaceObject):
    __tablename__ = "bitstream"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                          primary_key=True)
    bundle_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bundle.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    sequence_id: Mapped[int | None] = mapped_column(Integer)
    mime_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    format_name: Mapped[str | None] = mapped_column(String(255))
    format_support: Mapped[str] = mapped_column(String(16), default="UNKNOWN")
    format_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    user_format: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(ForeignKey("stored_content.sha256",
                                                   ondelete="RESTRICT"), index=True)
    crc32: Mapped[int] = mapped_column(BigInteger)

    bundle: Mapped[Bundle | None] = relationship(back_populates="bitstreams",
                                                 foreign_keys=[bundle_id])
    content: Mapped[StoredContent] = relationship()

    __mapper_args__ = {"polymorphic_identity": ObjectType.BITSTREAM,
                       "inherit_condition": id == DSpaceObject.id}

    @property
    def checksum(self) -> str:
        """The ``algo:hex`` form recorded for the content."""
        return f"sha256:{self.sha256}"


class Relationship(Base):
    """A typed link between two items (DSpace entities), with its places on both sides."""

    __tablename__ = "relationship"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    left_type: Mapped[str] = mapped_column(String(255))
    right_type: Mapped[str] = mapped_column(String(255))
    left_item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"),
                                                    index=True)
    right_item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"),
                                                     index=True)
    left_place: Mapped[int] = mapped_column(Integer, default=0)
    right_place: Mapped[int] = mapped_column(Integer, default=0)
    left_label: Mapped[str | None] = mapped_column(Text)
    right_label: Mapped[str | None] = mapped_column(Text)

    left_item: Mapped[Item] = relationship(foreign_keys=[left_item_id])
    right_item: Mapped[Item] = relationship(foreign_keys=[right_item_id])


class MetadataSchema(Base):
    __tablename__ = "metadata_schema"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(64), unique=True)
    namespace: Mapped[str] = mapped_column(String(255), unique=True)

    fields: Mapped[list[MetadataField]] = relationship(back_populates="schema")


class MetadataField(Base):
    __tablename__ = "metadata_field"
    __table_args__ = (UniqueConstraint("schema_id", "element", "qualifier_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schema_id: Mapped[int] = mapped_column(ForeignKey("metadata_schema.id"))
    element: Mapped[str] = mapped_column(String(64))
    qualifier: Mapped[str | None] = mapped_column(String(64))
    # "" when there is no qualifier, so that the unique constraint holds on every database.
    qualifier_key: Mapped[str] = mapped_column(String(64), default="")
    scope_note: Mapped[str | None] = mapped_column(Text)

    schema: Mapped[MetadataSchema] = relationship(back_populates="fields")

    @property
    def name(self) -> str:
        parts = [self.schema.prefix, self.element]
        if self.qualifier:
            parts.append(self.qualifier)
        return ".".join(parts)


class MetadataValue(Base):
    __tablename__ = "metadata_value"
    __table_args__ = (Index("ix_metadata_value_dso_field", "dso_id", "field_id", "place"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dso_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"))
    field_id: Mapped[int] = mapped_column(ForeignKey("metadata_field.id"))
    value: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(32))
    authority: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[int] = mapped_column(Integer, default=-1)
    place: Mapped[int] = mapped_column(Integer, default=0)

    dso: Mapped[DSpaceObject] = relationship(back_populates="metadata_values")
    field: Mapped[MetadataField] = relationship(lazy="joined")


group_people = Table(
    "group_people",
    Base.metadata,
    Column("group_id", ForeignKey("epersongroup.id", ondelete="CASCADE"), primary_key=True),
    Column("eperson_id", ForeignKey("eperson.id", ondelete="CASCADE"), primary_key=True,
           index=True),
)

group_groups = Table(
    "group_groups",
    Base.metadata,
    Column("parent_id", ForeignKey("epersongroup.id", ondelete="CASCADE"), primary_key=True),
    Column("child_id", ForeignKey("epersongroup.id", ondelete="CASCADE"), primary_key=True,
           index=True),
    CheckConstraint("parent_id <> child_id", name="ck_group_not_self"),
)


class EPerson(DSpaceObject):
    __tablename__ = "eperson"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                          primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    netid: Mapped[str | None] = mapped_column(String(255), unique=True)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str | None] = mapped_column(Text)
    can_log_in: Mapped[bool] = mapped_column(Boolean, default=True)
    require_certificate: Mapped[bool] = mapped_column(Boolean, default=False)
    self_registered: Mapped[bool] = mapped_column(Boolean, default=False)

    groups: Mapped[list[Group]] = relationship(secondary=group_people, back_populates="people")

    __mapper_args__ = {"polymorphic_identity": ObjectType.EPERSON,
                       "inherit_condition": id == DSpaceObject.id}


class Group(DSpaceObject):
    __tablename__ = "epersongroup"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                          primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    permanent: Mapped[bool] = mapped_column(Boolean, default=False)

    people: Mapped[list[EPerson]] = relationship(secondary=group_people,
                                                 back_populates="groups",
                                                 order_by="EPerson.email")
    subgroups: Mapped[list[Group]] = relationship(
        secondary=group_groups,
        primaryjoin="Group.id == group_groups.c.parent_id",
        secondaryjoin="Group.id == group_groups.c.child_id",
        order_by="Group.name",
    )

    __mapper_args__ = {"polymorphic_identity": ObjectType.GROUP,
                       "inherit_condition": id == DSpaceObject.id}


ANONYMOUS = "Anonymous"
ADMINISTRATOR = "Administrator"


class ResourcePolicy(Base):
    __tablename__ = "resource_policy"
    __table_args__ = (
        CheckConstraint("(group_id IS NOT NULL) OR (eperson_id IS NOT NULL)",
                        name="ck_policy_has_subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dso_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dso.id", ondelete="CASCADE"),
                                              index=True)
    action: Mapped[Action] = mapped_column(Enum(Action, native_enum=False, length=32,
                                                values_callable=lambda e: [m.value for m in e]))
    group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("epersongroup.id", ondelete="CASCADE"), index=True)
    eperson_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("eperson.id", ondelete="CASCADE"), index=True)
    start_date: Mapped[datetime | None] = mapped_column(DateTime)
    end_date: Mapped[datetime | None] = mapped_column(DateTime)
    name: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    rptype: Mapped[str | None] = mapped_column(String(32))

    dso: Mapped[DSpaceObject] = relationship(back_populates="policies", foreign_keys=[dso_id])
    group: Mapped[Group | None] = relationship(foreign_keys=[group_id])
    eperson: Mapped[EPerson | None] = relationship(foreign_keys=[eperson_id])


class HandleCounter(Base):
    """Next suffix to try when minting a handle; restored handles are skipped over."""

    __tablename__ = "handle_counter"

    prefix: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_suffix: Mapped[int] = mapped_column(BigInteger, default=1)
