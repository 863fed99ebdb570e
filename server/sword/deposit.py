"""The SWORD operations on the repository: every change goes through ``server.services`` and
the packagers, with the same people and policies as WebDAV.

A *container* is an item; its *media resource* is its content: the ORIGINAL bundle (what
packages unpack into) and, when ``sword.keep_original`` is on, the SWORD bundle that keeps
every deposited file or package exactly as received, with who deposited it, when, on whose
behalf and in which packaging (fields ``sword.*`` on that bitstream).

Rules:

* **Nothing partial.**  A new deposit is made in the packager's one unit of work: the
  packager hands the complete item to :meth:`SwordService._finish_new` (the
  ``IngestRequest.finish`` hook) which records the deposit and, unless ``In-Progress: true``,
  completes it -- all in the same transaction.  A packager that finishes items by itself
  gets the same recording in a second unit of work, and its item is removed again if that
  fails.  Changes to existing deposits are one unit of work each.  Staged bodies are
  removed whatever happens.
* **In-Progress.**  ``true`` keeps the item in its submitter's workspace; ``false`` (or no
  header) on a container operation (create, PUT/POST on the Edit-IRI) completes it: into
  the collection's workflow when it has one, else into the archive.  Operations on the
  EM-IRI never change the state.
* **Only deposits in progress change.**  Metadata and content of items in review, in the
  archive or withdrawn are refused with 405 MethodNotAllowed; deleting the container is
  allowed in every state (to whoever may delete the item).
* **Mediation** (``On-Behalf-Of``): off by default (412 MediationNotAllowed).  When on, the
  named person must exist (403 TargetOwnerUnknown) and is the submitter and the person whose
  policies apply; the authenticated account must hold ADMIN on the collection concerned (or
  be an administrator), so mediation grants no rights the mediator did not have.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select

from packagers import itemkit
from packagers.base import (
    Disseminator,
    Ingester,
    IngestRequest,
    Mode,
    Operation,
    Package,
    PackageSource,
)
from packagers.errors import UnknownPackager
from packagers.params import PackageParameters
from packagers.registry import Registry
from packagers.sword_basic import (
    BINARY_URI,
    SIMPLEZIP_URI,
    SimpleZipPackager,
    StagedFile,
    stage_zip,
)
from packagers.sword_basic import attach as attach_files
from packagers.sword_basic.packagers import mime_for
from server import models as m
from server.context import Context, Repository
from server.errors import AuthenticationRequired, Detail, PermissionDenied
from server.services import authz, metadata, objects, people
from server.services.metadata import Value
from server.sword import views as v
from server.sword.atom import EntryData, ReceiptExtras, stamp
from server.sword.bodies import Upload, fsync_file, in_staging
from server.sword.errors import (
    ErrorContent,
    MediationNotAllowed,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    TargetOwnerUnknown,
)

log = logging.getLogger(__name__)

# Values a metadata replacement (PUT on the Edit-IRI) keeps: the repository's own records.
PROTECTED_FIELDS = frozenset({"dc.description.provenance", "dc.date.accessioned",
                              "dc.date.available", "dc.identifier.uri"})
REPLACEABLE_SCHEMAS = frozenset({"dc", "dcterms"})
KEPT_BUNDLES = frozenset({"LICENSE"})
MAX_LISTED = 1000


@dataclass(frozen=True)
class Principal:
    """Who a request works for: ``actor`` (the On-Behalf-Of person, else the account that
    authenticated) and, for a mediated request, the ``mediator``."""

    actor: uuid.UUID
    email: str
    mediator: uuid.UUID | None = None
    mediator_email: str | None = None


@dataclass
class Deposit:
    """What one request brings: metadata, a file or package, or both."""

    entry: EntryData | None = None
    upload: Upload | None = None

    def discard(self) -> None:
        if self.upload is not None:
            self.upload.discard()


@dataclass
class Outcome:
    """What an operation did, for the receipt."""

    item: uuid.UUID
    treatment: str
    verbose: list[str] = field(default_factory=list)
    original: uuid.UUID | None = None
    derived: list[uuid.UUID] = field(default_factory=list)
    new_file: uuid.UUID | None = None

    def extras(self, view: v.ItemView) -> ReceiptExtras:
        by_id = {f.id: f for f in view.files}
        return ReceiptExtras(
            treatment=self.treatment, verbose=list(self.verbose),
            original=by_id.get(self.original) if self.original else None,
            derived=[by_id[d] for d in self.derived if d in by_id])


class SwordService:
    """The operations, for one repository and packager registry."""

    def __init__(self, repo: Repository, registry: Registry) -> None:
        self.repo = repo
        self.registry = registry
        config = repo.config
        self.root: str = str(config.get("sword.root"))
        self.mediation = bool(config.get("sword.mediation"))
        self.keep_original = bool(config.get("sword.keep_original"))
        self.limit = config.max_upload_size
        self.block_size = int(config.get("server.block_size"))
        self.fsync = bool(config.get("store.fsync"))

    # -- set-up --------------------------------------------------------------------------

    def ensure_registry(self) -> None:
        """Create the ``sword`` metadata schema and fields once, at start (not racing in
        the first deposits)."""
        with self.repo.context(system=True) as ctx:
            if metadata.get_schema(ctx, v.SWORD_SCHEMA) is None:
                metadata.create_schema(ctx, v.SWORD_SCHEMA, v.SWORD_NAMESPACE)
            for name in v.SWORD_FIELDS:
                metadata.get_field(ctx, name, create=True)

    # -- who -----------------------------------------------------------------------------

    def authenticate(self, login: str | None, password: str | None,
                     on_behalf_of: str | None) -> Principal:
        if login is None or password is None:
            raise AuthenticationRequired(
                "this SWORD server needs HTTP Basic credentials",
                [Detail("no credentials sent", field="Authorization")])
        with self.repo.context(write=False) as ctx:
            person = people.authenticate(ctx, login, password)
            if person is None:
                raise AuthenticationRequired(
                    "unknown user or wrong password",
                    [Detail("authentication failed", field="Authorization",
                            found=login[:100])])
            if on_behalf_of is None or on_behalf_of.lower() in (
                    person.email.lower(), (person.netid or "").lower()):
                return Principal(person.id, person.email)
            if not self.mediation:
                raise MediationNotAllowed(
                    "mediated deposit (On-Behalf-Of) is not allowed on this server",
                    [Detail("On-Behalf-Of sent while sword.mediation is off",
                            field="On-Behalf-Of", found=on_behalf_of[:100])])
            target = people.by_email(ctx, on_behalf_of) or people.by_netid(ctx, on_behalf_of)
            if target is None or not target.can_log_in:
                raise TargetOwnerUnknown(
                    f"On-Behalf-Of names no known account: {on_behalf_of[:100]}",
                    [Detail("unknown or disabled account", field="On-Behalf-Of",
                            found=on_behalf_of[:100])])
            return Principal(target.id, target.email, person.id, person.email)

    def _check_mediator(self, ctx: Context, p: Principal, collection: m.Collection | None
                        ) -> None:
        if p.mediator is None:
            return
        mediator = ctx.session.get(m.EPerson, p.mediator)
        if mediator is None:  # pragma: no cover - deleted between requests
            raise AuthenticationRequired("the authenticated account no longer exists")
        if authz.is_admin(ctx, mediator):
            return
        if collection is not None:
            saved, ctx.actor = ctx.actor, mediator
            try:
                ok = authz.allowed(ctx, collection, m.Action.ADMIN)
            finally:
                ctx.actor = saved
            if ok:
                return
        raise PermissionDenied(
            f"{p.mediator_email} may not deposit on behalf of others here: mediators need "
            "ADMIN rights on the collection",
            [Detail("mediator lacks ADMIN on the collection", field="On-Behalf-Of",
                    found=p.mediator_email)])

    @contextmanager
    def _unit(self, p: Principal, *, write: bool) -> Iterator[Context]:
        with self.repo.context(p.actor, write=write) as ctx:
            yield ctx

    # -- lookups -------------------------------------------------------------------------

    def _collection(self, ctx: Context, key: str) -> m.Collection:
        found: m.DSpaceObject | None
        try:
            found = objects.find(ctx, key)
        except Exception:
            found = None
        if not isinstance(found, m.Collection):
            raise NotFound(f"no collection {key}",
                           [Detail("unknown collection", field="Col-IRI", found=key)])
        return found

    def _item(self, ctx: Context, p: Principal, key: uuid.UUID, *,
              write: bool = False) -> m.Item:
        item = ctx.session.get(m.Item, key)
        if item is None or item.is_template:
            raise NotFound(f"no deposit {key}",
                           [Detail("unknown or deleted deposit", field="IRI",
                                   found=str(key))])
        self._check_mediator(ctx, p, item.owning_collection)
        if not write and not (authz.allowed(ctx, item, m.Action.READ)
                              or item.submitter_id == p.actor):
            authz.authorize(ctx, item, m.Action.READ)
        return item

    def _bitstream(self, ctx: Context, p: Principal, key: uuid.UUID
                   ) -> tuple[m.Bitstream, m.Item]:
        bitstream = ctx.session.get(m.Bitstream, key)
        bundle = bitstream.bundle if bitstream is not None else None
        if bitstream is None or bundle is None:
            raise NotFound(f"no file {key}", [Detail("unknown file", field="IRI",
                                                     found=str(key))])
        item = bundle.item
        self._check_mediator(ctx, p, item.owning_collection)
        return bitstream, item

    @staticmethod
    def _changeable(item: m.Item, what: str) -> None:
        if item.workflow_state == m.WorkflowState.WORKSPACE and not item.withdrawn:
            return
        state = ("withdrawn" if item.withdrawn else
                 "in the archive" if item.workflow_state == m.WorkflowState.ARCHIVED
                 else "under review in the workflow")
        raise MethodNotAllowed(
            f"cannot {what}: the deposit is {state}; only deposits in progress can be "
            "changed",
            [Detail("deposit no longer in progress", field="state",
                    found=item.workflow_state.value, expected="workspace")],
            hint="Only deposits made with In-Progress: true (and not yet completed) can be "
            "changed over SWORD. Make a new deposit, or ask the repository's administrators.")

    # -- reading -------------------------------------------------------------------------

    def view(self, p: Principal, key: uuid.UUID) -> v.ItemView:
        with self._unit(p, write=False) as ctx:
            return v.item_view(ctx, self._item(ctx, p, key))

    def collections(self, p: Principal) -> list[v.CollectionView]:
        """Collections the actor may deposit into (and, mediated, the mediator may too)."""
        with self._unit(p, write=False) as ctx:
            found = []
            for collection in ctx.session.scalars(select(m.Collection)):
                if not authz.allowed(ctx, collection, m.Action.ADD):
                    continue
                try:
                    self._check_mediator(ctx, p, collection)
                except PermissionDenied:
                    continue
                found.append(v.collection_view(collection))
        return sorted(found, key=lambda c: (c.title.lower(), str(c.id)))

    def collection_items(self, p: Principal, key: str
                         ) -> tuple[v.CollectionView, list[v.ItemView]]:
        """The actor's own deposits in a collection, newest first."""
        with self._unit(p, write=False) as ctx:
            collection = self._collection(ctx, key)
            self._check_mediator(ctx, p, collection)
            authz.authorize(ctx, collection, m.Action.READ)
            items = ctx.session.scalars(
                select(m.Item).where(m.Item.owning_collection_id == collection.id,
                                     m.Item.submitter_id == p.actor)
                .order_by(m.Item.last_modified.desc(), m.Item.id).limit(MAX_LISTED))
            return v.collection_view(collection), [v.item_view(ctx, i) for i in items]

    def retrieval_packaging(self) -> list[str]:
        """Packagings a deposit's content can be fetched in (SimpleZip first)."""
        uris = [SIMPLEZIP_URI]
        for cls in self.registry.disseminators():
            if m.ObjectType.ITEM in cls.disseminate_types:
                uris.extend(u for u in cls.sword_packaging if u not in uris)
        return uris

    def deposit_packaging(self) -> list[str]:
        return self.registry.sword_packaging_uris()

    def open_content(self, p: Principal, key: uuid.UUID,
                     packaging: str | None) -> tuple[Package, str]:
        """The deposit's content as a package (SimpleZip unless another is asked for)."""
        wanted = packaging or SIMPLEZIP_URI
        with self._unit(p, write=False) as ctx:
            self._item(ctx, p, key)
        cls: type[Disseminator] | None = None
        if wanted == SIMPLEZIP_URI:
            cls = SimpleZipPackager
        else:
            for candidate in self.registry.disseminators():
                if wanted in candidate.sword_packaging and \
                        m.ObjectType.ITEM in candidate.disseminate_types:
                    cls = candidate
                    break
        if cls is None:
            offered = ", ".join(self.retrieval_packaging())
            raise NotAcceptable(
                f"the content is not available in packaging {wanted}",
                [Detail("unsupported Accept-Packaging", field="Accept-Packaging",
                        found=wanted, expected=offered)],
                hint=f"Ask for one of: {offered} (the receipt lists them as sword:packaging).")
        package = cls().disseminate(Operation(self.repo, actor=p.actor), key,
                                    PackageParameters())
        return package, wanted

    def open_file(self, p: Principal, key: uuid.UUID) -> tuple[m.Bitstream, str]:
        """A file's record (detached) and its store key, after the READ check."""
        with self._unit(p, write=False) as ctx:
            bitstream, _item = self._bitstream(ctx, p, key)
            authz.authorize(ctx, bitstream, m.Action.READ)
            ctx.session.expunge(bitstream)
            return bitstream, bitstream.sha256

    # -- creating ------------------------------------------------------------------------

    def ingester_for(self, packaging: str) -> type[Ingester]:
        try:
            cls = self.registry.choose_ingester(sword_packaging=packaging)
        except UnknownPackager as exc:
            accepted = ", ".join(self.deposit_packaging())
            raise ErrorContent(
                f"packaging {packaging} is not supported here",
                exc.details or [Detail("unknown packaging", field="Packaging",
                                       found=packaging, expected=accepted)],
                hint=f"Send one of the sword:acceptPackaging IRIs: {accepted} (no Packaging "
                "header: the file is stored as it is, Binary).") from None
        if m.ObjectType.COLLECTION not in cls.ingest_parent_types:
            raise ErrorContent(
                f"packaging {packaging} (packager {cls.name}) cannot make a new item",
                [Detail("packager does not ingest into collections", field="Packaging",
                        found=packaging)])
        return cls

    def create(self, p: Principal, collection_key: str, deposit: Deposit, *,
               in_progress: bool, slug: str | None) -> Outcome:
        with self._unit(p, write=False) as ctx:
            collection = self._collection(ctx, collection_key)
            self._check_mediator(ctx, p, collection)
            authz.authorize(ctx, collection, m.Action.ADD)
            collection_id = collection.id
            workflow = bool(collection.workflow_enabled)
        if deposit.upload is None:
            return self._create_from_entry(p, collection_id, deposit.entry or EntryData(),
                                           in_progress=in_progress, slug=slug,
                                           workflow=workflow)
        return self._create_from_package(p, collection_id, deposit, in_progress=in_progress,
                                         slug=slug, workflow=workflow)

    def _create_from_entry(self, p: Principal, collection_id: uuid.UUID, entry: EntryData,
                           *, in_progress: bool, slug: str | None,
                           workflow: bool) -> Outcome:
        with self._unit(p, write=True) as ctx:
            collection = self._collection(ctx, str(collection_id))
            item = objects.create_item(ctx, collection)
            self._record(ctx, p, item, Deposit(entry=entry), slug)
            if not in_progress:
                objects.submit(ctx, item)
            item_id = item.id
        verbose = entry.notes()
        return Outcome(item_id, "A container was created with the metadata of the Atom "
                       "entry and no content yet. " + _state_treatment(in_progress, workflow),
                       verbose)

    def _create_from_package(self, p: Principal, collection_id: uuid.UUID, deposit: Deposit,
                             *, in_progress: bool, slug: str | None,
                             workflow: bool) -> Outcome:
        upload = deposit.upload
        assert upload is not None
        cls = self.ingester_for(upload.packaging)
        params = PackageParameters()
        if deposit.entry is not None and deposit.entry.has_title and \
                "titleFromFilename" in cls.option_names("ingest"):
            params.set("titleFromFilename", "false")
        recorded: dict[str, uuid.UUID | None] = {}

        def finish(ctx: Context, item: m.Item) -> None:
            recorded["original"] = self._record(ctx, p, item, deposit, slug)
            recorded["item"] = item.id
            if not in_progress:
                objects.submit(ctx, item)

        request = IngestRequest(mode=Mode.SUBMIT, params=params, parent=collection_id,
                                finish=finish)
        source = PackageSource(upload.path, name=upload.filename,
                               content_type=upload.content_type)
        result = cls().ingest(Operation(self.repo, actor=p.actor), source, request)
        primary = result.primary
        if primary is None or primary.uuid is None:
            raise ErrorContent(f"the package made no item (packager {cls.name})",
                               [Detail("nothing ingested", file=upload.filename,
                                       field="Packaging", found=upload.packaging)])
        verbose = [f"packager {cls.name} read {upload.filename} ({upload.digests.size} bytes, "
                   f"MD5 {upload.digests.md5})", *result.warnings, *primary.warnings]
        if deposit.entry is not None:
            verbose.extend(deposit.entry.notes())
        if "item" not in recorded:
            recorded["original"] = self._record_afterwards(p, primary.uuid, deposit, slug)
            if in_progress:
                verbose.append(f"packager {cls.name} completes the items it makes: the "
                               "deposit could not stay in progress")
        with self._unit(p, write=False) as ctx:
            item = ctx.session.get(m.Item, primary.uuid)
            derived = [b.id for b in objects.item_bitstreams(item)
                       if b.bundle is not None and b.bundle.name == "ORIGINAL"] if item else []
        return Outcome(primary.uuid,
                       f"The deposit was unpacked by packager {cls.name} "
                       f"({upload.packaging}) into a new item with {len(derived)} file(s) "
                       "in its ORIGINAL bundle" +
                       ("; the deposit is kept as received in its SWORD bundle. "
                        if self.keep_original else ". ") +
                       _state_treatment(in_progress, workflow), verbose,
                       original=recorded.get("original"), derived=derived)

    def _record_afterwards(self, p: Principal, item_id: uuid.UUID, deposit: Deposit,
                           slug: str | None) -> uuid.UUID | None:
        """Record a deposit on an item a packager already finished; undo the item if that
        fails (nothing partial)."""
        try:
            with self.repo.context(p.actor, system=True) as ctx:
                item = ctx.session.get(m.Item, item_id)
                assert item is not None
                return self._record(ctx, p, item, deposit, slug)
        except BaseException:
            try:
                with self.repo.context(system=True) as ctx:
                    item = ctx.session.get(m.Item, item_id)
                    if item is not None:
                        objects.delete_item(ctx, item)
            except Exception:  # pragma: no cover - logged; the first error is the answer
                log.exception("could not remove item %s after a failed deposit", item_id)
            raise

    def _record(self, ctx: Context, p: Principal, item: m.Item, deposit: Deposit,
                slug: str | None) -> uuid.UUID | None:
        """Entry metadata, Slug and the original deposit, inside the caller's unit."""
        authz.authorize(ctx, item, m.Action.WRITE)
        if deposit.entry is not None and deposit.entry.values:
            metadata.add_values(ctx, item, deposit.entry.values)
        if slug:
            metadata.set_single(ctx, item, v.SLUG, slug)
        if deposit.upload is not None and self.keep_original:
            return self._keep_original(ctx, p, item, deposit.upload)
        return None

    def _keep_original(self, ctx: Context, p: Principal, item: m.Item, upload: Upload,
                       content: m.StoredContent | None = None) -> uuid.UUID:
        if content is None:
            content = self._keep_upload(ctx, upload)
        bundle = objects.bundle_named(ctx, item, v.SWORD_BUNDLE)
        bitstream = objects.add_bitstream(
            ctx, bundle, content, name=upload.filename,
            mime_type=mime_for(upload.filename, upload.content_type),
            description="Deposited over SWORD as received")
        facts = [Value(v.DEPOSITED_ON, stamp()), Value(v.PACKAGING, upload.packaging)]
        if p.mediator_email is not None:
            facts.append(Value(v.DEPOSITED_BY, p.mediator_email))
            facts.append(Value(v.ON_BEHALF_OF, p.email))
        else:
            facts.append(Value(v.DEPOSITED_BY, p.email))
        metadata.add_values(ctx, bitstream, facts)
        return bitstream.id

    def _keep_upload(self, ctx: Context, upload: Upload) -> m.StoredContent:
        """The staged body as stored content: renamed into the store when it was staged
        beside it, else copied through the store's staging."""
        if in_staging(self.repo, upload.path) and upload.path.exists():
            if self.fsync:
                fsync_file(upload.path)
            return ctx.keep(upload.staged())
        with open(upload.path, "rb") as fh:
            return ctx.add_content(fh, name=upload.filename, limit=self.limit)

    # -- changing ------------------------------------------------------------------------

    def _finish_if(self, ctx: Context, item: m.Item, in_progress: bool) -> None:
        if not in_progress and item.workflow_state == m.WorkflowState.WORKSPACE:
            objects.submit(ctx, item)

    def replace_metadata(self, p: Principal, key: uuid.UUID, deposit: Deposit, *,
                         in_progress: bool) -> Outcome:
        """PUT on the Edit-IRI: the entry's metadata replaces the descriptive metadata
        (and, multipart, its file replaces the content)."""
        entry = deposit.entry or EntryData()
        upload = deposit.upload

        def change(ctx: Context, item: m.Item, zipped: _Zip | None) -> Outcome:
            authz.authorize(ctx, item, m.Action.WRITE)
            names = {value.field for value in metadata.values(item)
                     if value.schema in REPLACEABLE_SCHEMAS
                     and value.field not in PROTECTED_FIELDS}
            for name in sorted(names):
                metadata.clear(ctx, item, name)
            metadata.add_values(ctx, item, entry.values)
            outcome = Outcome(item.id, "The descriptive metadata was replaced by the Atom "
                              "entry's.", entry.notes())
            if upload is not None:
                self._drop_content(ctx, item)
                self._add_content(ctx, p, item, upload, outcome, zipped)
                outcome.treatment += " The content was replaced by the file sent."
            self._finish_if(ctx, item, in_progress)
            return outcome

        return self._change(p, key, upload, "replace the metadata", change)

    def add_metadata(self, p: Principal, key: uuid.UUID, deposit: Deposit, *,
                     in_progress: bool) -> Outcome:
        """POST on the SE-IRI with an entry (and, multipart, a file)."""
        entry = deposit.entry or EntryData()
        upload = deposit.upload

        def change(ctx: Context, item: m.Item, zipped: _Zip | None) -> Outcome:
            authz.authorize(ctx, item, m.Action.WRITE)
            metadata.add_values(ctx, item, entry.values)
            outcome = Outcome(item.id, "The Atom entry's metadata was added to the deposit.",
                              entry.notes())
            if upload is not None:
                self._add_content(ctx, p, item, upload, outcome, zipped)
                outcome.treatment += " The file sent was added to its content."
            self._finish_if(ctx, item, in_progress)
            return outcome

        return self._change(p, key, upload, "add metadata", change)

    def add_content(self, p: Principal, key: uuid.UUID, upload: Upload, *,
                    in_progress: bool | None) -> Outcome:
        """POST of a file or package to the EM-IRI (``in_progress`` None: state kept) or
        to the SE-IRI (a container operation)."""
        def change(ctx: Context, item: m.Item, zipped: _Zip | None) -> Outcome:
            outcome = Outcome(item.id, "")
            self._add_content(ctx, p, item, upload, outcome, zipped)
            outcome.treatment = (f"{len(outcome.derived)} file(s) were added to the deposit's "
                                 "ORIGINAL bundle.")
            if in_progress is not None:
                self._finish_if(ctx, item, in_progress)
            return outcome

        return self._change(p, key, upload, "add content", change)

    def replace_content(self, p: Principal, key: uuid.UUID, upload: Upload) -> Outcome:
        """PUT on the EM-IRI: the file or package replaces all content."""
        def change(ctx: Context, item: m.Item, zipped: _Zip | None) -> Outcome:
            self._drop_content(ctx, item)
            outcome = Outcome(item.id, "")
            self._add_content(ctx, p, item, upload, outcome, zipped)
            outcome.treatment = (f"The content was replaced by {len(outcome.derived)} "
                                 "file(s).")
            return outcome

        return self._change(p, key, upload, "replace the content", change)

    def delete_content(self, p: Principal, key: uuid.UUID) -> None:
        def change(ctx: Context, item: m.Item, _zipped: _Zip | None) -> Outcome:
            self._drop_content(ctx, item)
            return Outcome(item.id, "The content was deleted.")

        self._change(p, key, None, "delete the content", change)

    def delete_container(self, p: Principal, key: uuid.UUID) -> None:
        with self._unit(p, write=True) as ctx:
            item = self._item(ctx, p, key, write=True)
            objects.delete_item(ctx, item)

    def complete(self, p: Principal, key: uuid.UUID, *, in_progress: bool) -> Outcome:
        """Empty POST on the SE-IRI: complete the deposit unless In-Progress: true."""
        with self._unit(p, write=True) as ctx:
            item = self._item(ctx, p, key, write=True)
            if item.workflow_state != m.WorkflowState.WORKSPACE:
                if in_progress:
                    self._changeable(item, "return the deposit to progress")
                return Outcome(item.id, "The deposit was already complete; nothing changed.")
            authz.authorize(ctx, item, m.Action.WRITE)
            collection = item.owning_collection
            workflow = bool(collection.workflow_enabled) if collection else False
            self._finish_if(ctx, item, in_progress)
            return Outcome(item.id, _state_treatment(in_progress, workflow))

    def delete_file(self, p: Principal, key: uuid.UUID) -> None:
        with self._unit(p, write=True) as ctx:
            bitstream, item = self._bitstream(ctx, p, key)
            self._changeable(item, "delete a file")
            objects.remove_bitstream(ctx, bitstream)

    def replace_file(self, p: Principal, key: uuid.UUID, upload: Upload) -> None:
        """PUT on a file IRI: new content under the same name, bundle and position."""
        with self._unit(p, write=True) as ctx:
            bitstream, item = self._bitstream(ctx, p, key)
            self._changeable(item, "replace a file")
            bundle = bitstream.bundle
            assert bundle is not None
            old_id, name, position, sequence, primary = (
                bitstream.id, bitstream.name, bitstream.position, bitstream.sequence_id,
                bundle.primary_bitstream_id == bitstream.id)
            content = self._keep_upload(ctx, upload)
            objects.remove_bitstream(ctx, bitstream)
            # Same UUID, name, place and sequence id: the file's IRI stays valid.
            objects.add_bitstream(ctx, bundle, content, name=name,
                                  mime_type=mime_for(name, upload.content_type),
                                  position=position, sequence_id=sequence, primary=primary,
                                  object_id=old_id)

    # -- helpers of the changes ----------------------------------------------------------

    def _content_packaging(self, upload: Upload) -> None:
        if upload.packaging not in (BINARY_URI, SIMPLEZIP_URI):
            raise ErrorContent(
                f"packaging {upload.packaging} can only make new deposits",
                [Detail("packaging not supported for existing deposits", field="Packaging",
                        found=upload.packaging, expected=f"{BINARY_URI} or {SIMPLEZIP_URI}")],
                hint="Add files to an existing deposit as Binary (no Packaging header) or "
                "SimpleZip; send other packages to the Col-IRI as a new deposit.")

    def _change(self, p: Principal, key: uuid.UUID, upload: Upload | None, what: str,
                change: Callable[[Context, m.Item, _Zip | None], Outcome]) -> Outcome:
        """One unit of work on a deposit in progress; a zip is unpacked into staging
        before the unit opens (no database lock held while bytes move)."""
        if upload is not None:
            self._content_packaging(upload)
        with self._unit(p, write=False) as ctx:  # fail early, before unpacking anything
            self._changeable(self._item(ctx, p, key, write=True), what)
        with itemkit.StagedFiles(self.repo) as files:
            zipped: _Zip | None = None
            if upload is not None and upload.packaging == SIMPLEZIP_URI:
                source = PackageSource(upload.path, name=upload.filename,
                                       content_type=upload.content_type)
                zipped = _Zip(files, stage_zip(files, source))
            with self._unit(p, write=True) as ctx:
                item = self._item(ctx, p, key, write=True)
                self._changeable(item, what)
                return change(ctx, item, zipped)

    def _add_content(self, ctx: Context, p: Principal, item: m.Item, upload: Upload,
                     outcome: Outcome, zipped: _Zip | None) -> None:
        if upload.packaging == SIMPLEZIP_URI:
            assert zipped is not None
            added = attach_files(ctx, item, zipped.files, zipped.entries)
            outcome.derived.extend(b.id for b in added)
            if self.keep_original:
                outcome.original = self._keep_original(ctx, p, item, upload)
            return
        content = self._keep_upload(ctx, upload)
        bundle = objects.bundle_named(ctx, item, "ORIGINAL")
        bitstream = objects.add_bitstream(ctx, bundle, content, name=upload.filename,
                                          mime_type=mime_for(upload.filename,
                                                             upload.content_type))
        outcome.derived.append(bitstream.id)
        outcome.new_file = bitstream.id
        if self.keep_original:
            outcome.original = self._keep_original(ctx, p, item, upload, content)

    def _drop_content(self, ctx: Context, item: m.Item) -> None:
        for bundle in list(item.bundles):
            if bundle.name not in KEPT_BUNDLES:
                objects.remove_bundle(ctx, bundle)


@dataclass
class _Zip:
    """A SimpleZip unpacked into staging, waiting for the unit of work."""

    files: itemkit.StagedFiles
    entries: list[StagedFile]


def _state_treatment(in_progress: bool, workflow: bool) -> str:
    if in_progress:
        return ("It stays in progress in the depositor's workspace (In-Progress: true) and "
                "can still be changed; complete it with an empty POST to the SE-IRI.")
    if workflow:
        return "It was completed and awaits review in the collection's workflow."
    return "It was completed and is in the archive."
