"""The repository and its unit of work.

:class:`Repository` owns the engine, the content store and the configuration.
:class:`Context` is one unit of work (one database transaction) done on behalf of one person
(or of the system): packagers, the CLI and the HTTP layer all do their work through a
context and the services in ``server.services``, never through raw sessions.

Nothing partial: if the block inside ``with repo.context(...)`` raises, the transaction is
rolled back *and* every file this context newly placed in the store is removed while the
context still holds the database lock on it, so no other writer can be relying on it.
Content released by deletions is collected only after commit, by :meth:`Repository.collect`.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import BinaryIO, cast

from sqlalchemy import Engine, Table, delete, event, exists, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from server import models as m
from server.config import Config
from server.db import make_engine
from server.errors import Conflict, ContentMissing, Detail
from server.store import ContentStore, FilesystemStore, StagedContent, verify_expected

log = logging.getLogger(__name__)

_CLAIM_ATTEMPTS = 10
_SYNC_BATCH = 1000
_PINS = "davpack_pinned_last_modified"


class Repository:
    """Engine, store and configuration: everything a unit of work needs."""

    def __init__(self, config: Config, *, engine: Engine | None = None,
                 store: ContentStore | None = None) -> None:
        self.config = config
        self.engine = engine or make_engine(config.database_url,
                                            echo=bool(config.get("database.echo")))
        self.store = store or FilesystemStore(config.path("store.path"),
                                              fsync=bool(config.get("store.fsync")))
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False,
                                      autoflush=True)
        self._write_sessions = sessionmaker(
            bind=self.engine.execution_options(davpack_write=True),
            expire_on_commit=False, autoflush=True)
        for factory in (self._sessions, self._write_sessions):
            event.listen(factory, "before_flush", _touch_changed)
        # Registry fields known to be committed (name -> detached field); see
        # services.metadata.get_field.
        self.known_fields: dict[str, m.MetadataField] = {}

    @property
    def handle_prefix(self) -> str:
        return self.config.handle_prefix

    @property
    def site_handle(self) -> str:
        return f"{self.handle_prefix}/0"

    def initialise(self) -> None:
        """Create or upgrade the schema and seed the registry, site and built-in groups."""
        from server import db
        from server.services import bootstrap

        db.upgrade(self.engine)
        with self.context(system=True) as ctx:
            bootstrap.seed(ctx)

    @contextmanager
    def context(self, actor: m.EPerson | uuid.UUID | None = None, *, system: bool = False,
                write: bool = True) -> Iterator[Context]:
        """One unit of work; commits on success, rolls back everything on error.

        ``system=True`` bypasses authorization (CLI administration, bootstrap).  Read-only
        contexts (``write=False``) never take SQLite's write lock.
        """
        factory = self._write_sessions if write else self._sessions
        session = factory()
        ctx = Context(self, session, system=system)
        try:
            if actor is not None:
                ctx.actor = (session.get(m.EPerson, actor) if isinstance(actor, uuid.UUID)
                             else session.merge(actor, load=False))
            yield ctx
            if write:
                ctx.sync_content()
                session.commit()
            else:
                session.rollback()
        except BaseException:
            ctx._undo_placed_content()
            session.rollback()
            raise
        finally:
            session.close()
        if ctx.released_content:
            self.collect(ctx.released_content)

    def collect(self, candidates: set[str] | None = None) -> list[str]:
        """Remove stored content that no committed bitstream references; returns keys removed.

        Each key is locked (row lock on PostgreSQL, the write lock on SQLite) and re-checked
        before its file is deleted, so a concurrent writer that is about to reference it
        either waits for us or re-creates it.
        """
        removed: list[str] = []
        with self._write_sessions() as session:
            if candidates is None:
                keys = list(session.scalars(
                    select(m.StoredContent.sha256).where(
                        ~exists().where(m.Bitstream.sha256 == m.StoredContent.sha256))))
            else:
                keys = sorted(candidates)
            for key in keys:
                row = session.scalars(select(m.StoredContent)
                                      .where(m.StoredContent.sha256 == key)
                                      .with_for_update()).first()
                if row is None:
                    continue
                referenced = session.scalar(select(exists().where(m.Bitstream.sha256 == key)))
                if referenced:
                    continue
                session.execute(delete(m.StoredContent).where(m.StoredContent.sha256 == key))
                self.store.delete(key)
                removed.append(key)
            session.commit()
        return removed

    def dispose(self) -> None:
        self.engine.dispose()


class Context:
    """One unit of work on behalf of ``actor`` (None: anonymous, unless ``system``)."""

    def __init__(self, repo: Repository, session: Session, *, system: bool = False) -> None:
        self.repo = repo
        self.session = session
        self.system = system
        self.actor: m.EPerson | None = None
        self.placed_content: set[str] = set()
        self._unsynced: list[str] = []
        self.released_content: set[str] = set()
        self.warnings: list[str] = []
        self.new_fields: set[str] = set()
        self._cache: dict[object, object] = {}

    @property
    def store(self) -> ContentStore:
        return self.repo.store

    @property
    def config(self) -> Config:
        return self.repo.config

    def pin_last_modified(self, obj: m.DSpaceObject, when: datetime) -> None:
        """Keep ``obj.last_modified`` at ``when`` until this unit commits, whatever changes
        follow: a restore gives objects the time their package carries, so that re-exports
        are byte-identical, without having to order its changes around it."""
        pins: dict[object, tuple[m.DSpaceObject, datetime]] = self.session.info.setdefault(
            _PINS, {})
        pins[id(obj)] = (obj, when)
        obj.last_modified = when

    def warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    # -- content -----------------------------------------------------------------------

    def stage(self, source: BinaryIO, *, name: str | None = None,
              limit: int | None = None) -> StagedContent:
        """Stream bytes into staging (no database lock held): do this before heavy DB work."""
        if limit is None:
            limit = self.config.max_upload_size
        return self.store.stage(source, limit=limit, name=name)

    def keep(self, staged: StagedContent, *, md5: str | None = None,
             sha256: str | None = None, size: int | None = None) -> m.StoredContent:
        """Verify staged content against declared checksums and make it part of this unit.

        The staged file is consumed either way (placed, or discarded as a duplicate).
        """
        try:
            verify_expected(staged.digests, name=staged.name, md5=md5, sha256=sha256,
                            size=size)
        except BaseException:
            staged.discard()
            raise
        d = staged.digests
        try:
            row, created = self._claim_content(d.sha256, d.size, d.md5, d.crc32)
            if created:
                self.store.place(staged)
                self.placed_content.add(d.sha256)
            elif d.sha256 in self.placed_content or self.store.exists(d.sha256):
                staged.discard()
                return row
            else:
                # The row exists but the file is gone (damaged store): heal it with our copy.
                self.store.place(staged)
        except BaseException:
            staged.discard()
            raise
        self._unsynced.append(d.sha256)
        if len(self._unsynced) >= _SYNC_BATCH:
            self.sync_content()
        return row

    def sync_content(self) -> None:
        """Make the content this unit placed durable (the store does a batch at once);
        runs before commit, and every :data:`_SYNC_BATCH` files so the list stays short."""
        if self._unsynced:
            self.store.sync(self._unsynced)
            self._unsynced.clear()

    def add_content(self, source: BinaryIO, *, name: str | None = None,
                    limit: int | None = None, md5: str | None = None,
                    sha256: str | None = None, size: int | None = None) -> m.StoredContent:
        """Stage and keep in one call (for small content or when locking early is fine)."""
        staged = self.stage(source, name=name, limit=limit)
        return self.keep(staged, md5=md5, sha256=sha256, size=size)

    def _claim_content(self, sha256: str, size: int, md5: str,
                       crc32: int) -> tuple[m.StoredContent, bool]:
        """Lock the content row, inserting it if new; returns ``(row, created)``.

        An existing row is share-locked so the collector cannot remove it under us; a new
        row is ours until commit (a concurrent inserter of the same key waits for us).
        """
        values = {"sha256": sha256, "size": size, "md5": md5, "crc32": crc32,
                  "created": m.utcnow()}
        # Insert first (new content is the common case: one statement, no savepoint); a
        # row that vanishes between a refused insert and the select (the unit that had it
        # committed, released it and had it collected) is claimed again from the insert.
        insert_new = _insert_new_content(self.session.get_bind().dialect.name)
        for _attempt in range(_CLAIM_ATTEMPTS):
            with self.session.no_autoflush:  # no pending object bears on a content row
                inserted = self.session.execute(insert_new, values).first() is not None
                if inserted:
                    new = m.StoredContent(**values)
                    make_transient_to_detached(new)
                    self.session.add(new)
                    return new, True
                row = self.session.scalars(select(m.StoredContent)
                                           .where(m.StoredContent.sha256 == sha256)
                                           .with_for_update(read=True)).first()
            if row is not None:
                return row, False
        raise Conflict(f"content {sha256} is being stored and removed concurrently; try again",
                       [Detail("content claim contended", field="sha256", found=sha256)])

    def release(self, sha256: str) -> None:
        """Note content that may be unreferenced once this unit commits."""
        self.released_content.add(sha256)

    def open_content(self, bitstream: m.Bitstream) -> BinaryIO:
        try:
            return self.store.open(bitstream.sha256)
        except ContentMissing as exc:
            raise ContentMissing(
                f"the content of bitstream {bitstream.name!r} ({bitstream.id}) is missing "
                "from the store",
                [Detail("content missing", file=bitstream.name, field="sha256",
                        expected=bitstream.sha256)],
            ) from exc

    def _undo_placed_content(self) -> None:
        for key in self.placed_content:
            try:
                self.store.delete(key)
            except OSError as exc:  # pragma: no cover - reported, never masks the cause
                log.error("could not remove %s after rollback: %s", key, exc)
        self.placed_content.clear()
        self.released_content.clear()
        self._unsynced.clear()


@functools.cache
def _insert_new_content(dialect_name: str) -> sqlite.Insert | postgresql.Insert:
    """INSERT of a ``stored_content`` row that does nothing when the key exists (a
    concurrent inserter of the same key makes us wait for its outcome); it returns the key
    only when it inserted (the portable way to tell: psycopg reports no row count)."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    table = cast(Table, m.StoredContent.__table__)
    return (dialect.insert(table).on_conflict_do_nothing(index_elements=["sha256"])
            .returning(table.c.sha256))


def _touch_changed(session: Session, _flush_context: object, _instances: object) -> None:
    """Keep ``last_modified`` current on every change, propagating files to their item.

    An object whose ``last_modified`` was set explicitly in this flush keeps that value, and
    one pinned with :meth:`Context.pin_last_modified` keeps the pinned time until commit.
    """
    owners: dict[int, m.DSpaceObject] = {}

    def note(obj: m.DSpaceObject | None) -> None:
        while obj is not None:
            owners[id(obj)] = obj
            if isinstance(obj, m.Bitstream):
                obj = obj.bundle
            elif isinstance(obj, m.Bundle):
                obj = obj.item
            else:
                obj = None

    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, (m.MetadataValue, m.ResourcePolicy)):
            note(obj.dso)
        elif isinstance(obj, m.DSpaceObject):
            if obj in session.dirty and not session.is_modified(obj):
                continue
            note(obj)
    now = m.utcnow()
    for obj in owners.values():
        if obj in session.deleted:
            continue
        state = inspect(obj)
        if state.attrs.last_modified.history.has_changes():
            continue
        obj.last_modified = now
    for obj, when in session.info.get(_PINS, {}).values():
        if obj not in session.deleted and obj.last_modified != when:
            obj.last_modified = when
