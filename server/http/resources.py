"""WebDAV resources over the repository (one instance per request, plain data inside).

=====================  =====================================================  ==========
resource               what it is                                             DAV kind
=====================  =====================================================  ==========
:class:`RootFolder`    ``/``: holds ``dav/``                                  collection
:class:`ObjectFolder`  site, community, collection or item                    collection
:class:`BundleFolder`  a bundle of an item                                    collection
:class:`PackageFile`   an object's package in the default format              file
:class:`BitstreamFile` a stored file of an item                               file
:class:`PendingFile`   a name a client created before uploading (LOCK, 0 B)   file
:class:`DepositFile`   the name a package was uploaded as, for a while after  file
=====================  =====================================================  ==========

What each method does to the repository is decided here and carried out through the
services; every hook turns davpack errors into ``DAVError``s rendered from the one status
table, because WsgiDAV swallows other exceptions of some hooks into 500s.

Semantics chosen for file managers:

* A new file dropped into a site, community or collection folder is ingested as a new
  child (``PUT``; an empty PUT or a LOCK first only reserves the name).
* ``DELETE`` withdraws an item (``?purge=true`` deletes it, administrators only) and
  deletes a community or collection that holds no item (sub-folders included); anything
  else is refused.  Withdrawn items exist only for those who may change them.
* ``MKCOL`` in the site folder makes a top-level community; in a community it makes a
  collection (``?type=community`` makes a sub-community).
* ``MOVE`` of an item into another collection moves it, ``COPY`` maps it there; ``MOVE``
  of a community or collection moves it, and a ``MOVE`` to a new name renames it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

from wsgidav import util as dav_util
from wsgidav.dav_error import (
    HTTP_FORBIDDEN,
    DAVError,
    PRECONDITION_CODE_ProtectedProperty,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection

from packagers.base import Mode
from server import models as m
from server.errors import (
    AuthenticationRequired,
    Conflict,
    DavpackError,
    Detail,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from server.http import packages, urls
from server.http.errors import MethodNotAllowed, as_dav_error
from server.http.nodes import Node, snapshot
from server.http.runtime import Kept, PackageInfo, Pending, RequestState, Runtime
from server.http.uploads import StagedUpload, StagingWriter
from server.http.wsgi import Environ, parse_bool, query_pairs, query_value
from server.services import authz, dav_support, handles, metadata, objects

log = logging.getLogger(__name__)

DAVPACK_NS = "urn:davpack:props"
PROP_HANDLE = f"{{{DAVPACK_NS}}}handle"
PROP_TYPE = f"{{{DAVPACK_NS}}}type"
PROP_TITLE = f"{{{DAVPACK_NS}}}title"
PROP_WITHDRAWN = f"{{{DAVPACK_NS}}}withdrawn"
PROP_UUID = f"{{{DAVPACK_NS}}}uuid"
PROP_PACKAGE = f"{{{DAVPACK_NS}}}package"
OBJECT_PROPS = frozenset({PROP_HANDLE, PROP_TYPE, PROP_TITLE, PROP_WITHDRAWN, PROP_UUID,
                          PROP_PACKAGE})
"""Every name :meth:`Described.object_properties` may report (none can be set)."""
LISTING_BATCH = 500
"""Items of a collection read (titles, permissions) and listed at a time."""

P = ParamSpec("P")
R = TypeVar("R")


def dav_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Raise davpack errors from a hook as DAVErrors carrying our status and body."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except DavpackError as exc:
            resource = args[0]
            raise as_dav_error(exc, resource.environ) from exc  # type: ignore[attr-defined]

    return wrapper


def _join(path: str, name: str) -> str:
    return path.rstrip("/") + "/" + name


class _Repo:
    """What every resource here can reach: the request state and the runtime."""

    environ: Environ

    @property
    def state(self) -> RequestState:
        return RequestState.of(self.environ)

    @property
    def runtime(self) -> Runtime:
        return self.state.runtime

    def _orm(self, node: Node) -> m.DSpaceObject:
        obj = self.state.read().session.get(m.DSpaceObject, node.id)
        if obj is None:
            raise NotFound(f"{node.type.value} {node.handle or node.id} no longer exists")
        return obj

    def _check_locks(self, depth: str) -> None:
        """Refuse (423) a change to this resource that a lock held by another forbids;
        needed where our hooks answer for WsgiDAV (it then skips its own check)."""
        lock_manager = self.provider.lock_manager  # type: ignore[attr-defined]
        if lock_manager is None:
            return
        dav_util.parse_if_header_dict(self.environ)
        lock_manager.check_write_permission(
            url=self.get_ref_url(), depth=depth,  # type: ignore[attr-defined]
            token_list=self.environ.get("wsgidav.ifLockTokenList") or [],
            principal=self.environ.get("wsgidav.auth.user_name") or "")

    def _may_drop_pending(self, container: Node, pending: Pending) -> None:
        """A reserved name may be dropped by whoever reserved it, or by someone who may
        add to its container."""
        state = self.state
        if state.actor is None:
            raise AuthenticationRequired("log in to remove an upload")
        if pending.owner is not None and pending.owner == state.actor:
            return
        authz.authorize(state.read(), self._orm(container), m.Action.ADD)

    def _is_admin(self) -> bool:
        key = "is_admin"
        cache = self.state.cache
        if key not in cache:
            cache[key] = authz.is_admin(self.state.read())
        return bool(cache[key])


# ---------------------------------------------------------------------------------------
# Folders


class RootFolder(_Repo, DAVCollection):
    def __init__(self, path: str, environ: Environ) -> None:
        super().__init__(path, environ)

    def get_member_names(self) -> list[str]:
        return [urls.DAV_ROOT]

    def get_member(self, name: str) -> Any:
        return self.provider.get_resource_inst(_join(self.path, name), self.environ)

    def get_display_name(self) -> str:
        return str(self.runtime.repo.config.get("site.name"))

    @dav_errors
    def create_empty_resource(self, name: str) -> Any:
        raise PermissionDenied("nothing can be created at the root; use /dav/")

    @dav_errors
    def create_collection(self, name: str) -> None:
        raise PermissionDenied("nothing can be created at the root; use /dav/")

    @dav_errors
    def handle_delete(self) -> bool:
        raise PermissionDenied("the root cannot be deleted")

    def prevent_locking(self) -> bool:
        return True


class _Member:
    """A listing entry: a name, and how to make the resource for it."""

    __slots__ = ("make", "name")

    def __init__(self, name: str, make: Callable[[str], Any]) -> None:
        self.name = name
        self.make = make


class Described(_Repo):
    """Resources that stand for a repository object expose its facts as properties."""

    node: Node
    is_collection: bool
    provider: Any

    def _object_node(self) -> Node:
        return self.node

    def object_properties(self) -> list[tuple[str, str]]:
        """davpack's live properties of this resource (``urn:davpack:props``), in the
        order listings show them; PROPFIND in any form reads them from here."""
        node = self._object_node()
        props = [(PROP_TYPE, node.type.value), (PROP_TITLE, node.title),
                 (PROP_UUID, str(node.id))]
        if node.handle:
            props.append((PROP_HANDLE, node.handle))
        if node.type is m.ObjectType.ITEM:
            props.append((PROP_WITHDRAWN, "true" if node.withdrawn else "false"))
        return props

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names: list[str] = super().get_property_names(is_allprop=is_allprop)  # type: ignore[misc]
        try:
            extra = self.object_properties()
        except (DavpackError, DAVError):  # e.g. not in this request's snapshot yet
            return names
        return names + [name for name, _ in extra]

    def get_property_value(self, name: str) -> Any:
        if name in OBJECT_PROPS:
            for known, value in self.object_properties():
                if known == name:
                    return value
        return super().get_property_value(name)  # type: ignore[misc]

    def set_property_value(self, name: str, value: Any, *, dry_run: bool = False) -> Any:
        if name in OBJECT_PROPS:
            raise DAVError(HTTP_FORBIDDEN, err_condition=PRECONDITION_CODE_ProtectedProperty)
        return super().set_property_value(name, value, dry_run=dry_run)  # type: ignore[misc]

    def get_last_modified(self) -> float:
        return self._object_node().timestamp

    def get_creation_date(self) -> float:
        return self._object_node().timestamp


class ObjectFolder(Described, DAVCollection):
    """A site, community, collection or item seen as a folder."""

    def __init__(self, path: str, environ: Environ, node: Node) -> None:
        super().__init__(path, environ)
        self.node = node
        self._members: list[_Member] | None = None

    # -- identity ----------------------------------------------------------------------

    def ref_path(self) -> str:
        return urls.object_path(self.node.handle, self.node.id) + "/"

    @functools.cached_property
    def _ref_url(self) -> str:  # WsgiDAV asks for it once per property
        return quote(self.ref_path())

    def get_ref_url(self) -> str:
        return self._ref_url

    def get_display_name(self) -> str:
        return self.node.title or self.name

    # -- members -----------------------------------------------------------------------

    def _listing(self) -> list[_Member]:
        if self._members is None:
            key = ("members", self.node.id, self.path)
            cached = self.state.cache.get(key)
            if cached is None:
                cached = list(self.iter_members())
                self.state.cache[key] = cached
            self._members = cached
        return self._members

    def iter_members(self) -> Iterator[_Member]:
        """The members in listing order, made as they are consumed: of a collection,
        one query gives every item's row (id, handle, date), titles and permissions
        are read :data:`LISTING_BATCH` items at a time, and no more than one batch's
        members exist at once.  The read unit of work is asked for again per batch: a
        consumer may release it in between (measuring a package does)."""
        obj = self._orm(self.node)
        reserved = {p.name: p for p in self.runtime.pending.entries(self.node.id)} \
            if self.node.is_container else {}
        taken: set[str] = set()
        for member in self._object_members(obj):
            if member.name in reserved:
                taken.add(member.name)
            yield member
        for name, pending in reserved.items():
            if name in taken:
                continue
            if pending.deposit is not None and pending.kept is None and \
                    self.state.read().session.get(m.DSpaceObject, pending.deposit) is None:
                continue  # made after this request's snapshot: next listing shows it
            yield _Member(name, self._pending_maker(pending))

    def _object_members(self, obj: m.DSpaceObject) -> Iterator[_Member]:
        ctx = self.state.read()
        if self.node.type in (m.ObjectType.SITE, m.ObjectType.COMMUNITY):
            children = [c for c in dav_support.child_containers(ctx, obj)
                        if authz.allowed(ctx, c, m.Action.READ)]
            titles = dav_support.titles(ctx, [c.id for c in children])
            names = urls.container_names([(titles.get(c.id), c.handle or str(c.id))
                                          for c in children])
            for child, name in zip(children, names, strict=True):
                node = snapshot(child, titles.get(child.id, ""))
                yield _Member(name, self._folder_maker(node))
        elif self.node.type is m.ObjectType.COLLECTION:
            yield from self._item_members()
        elif self.node.type is m.ObjectType.ITEM:
            admin = self._is_admin()
            bundles = [b for b in dav_support.bundles_of(ctx, obj)  # type: ignore[arg-type]
                       if admin or authz.allowed(ctx, b, m.Action.READ)]
            names = urls.unique_names(b.name for b in bundles)
            for bundle, name in zip(bundles, names, strict=True):
                yield _Member(name, self._bundle_maker(snapshot(bundle)))

    def _item_members(self) -> Iterator[_Member]:
        """A collection's items: each as a folder, then as its package file."""
        admin = self._is_admin()
        rows = dav_support.collection_item_rows(self.state.read(), self.node.id,
                                                include_withdrawn=admin)
        package = packages.default_disseminator(self.runtime, m.ObjectType.ITEM)
        for start in range(0, len(rows), LISTING_BATCH):
            batch = rows[start:start + LISTING_BATCH]
            ctx = self.state.read()
            if not admin:
                readable = dav_support.readable_items(ctx, [row.id for row in batch])
                batch = [row for row in batch if row.id in readable]
            titles = dav_support.titles(ctx, [row.id for row in batch])
            for row in batch:
                node = Node(id=row.id, type=m.ObjectType.ITEM, handle=row.handle,
                            title=titles.get(row.id, ""), last_modified=row.last_modified,
                            withdrawn=row.withdrawn)
                yield _Member(urls.item_folder_name(node.title, row.handle),
                              self._folder_maker(node))
                if package is not None:
                    yield _Member(urls.package_file_name("ITEM", row.handle, package.extension),
                                  self._package_maker(node))

    def _folder_maker(self, node: Node) -> Callable[[str], Any]:
        return lambda path: ObjectFolder(path, self.environ, node)

    def _package_maker(self, node: Node) -> Callable[[str], Any]:
        ref = self.ref_path()
        return lambda path: PackageFile(path, self.environ, node, ref)

    def _bundle_maker(self, node: Node) -> Callable[[str], Any]:
        ref = self.ref_path()
        return lambda path: BundleFolder(path, self.environ, node, ref)

    def _pending_maker(self, pending: Pending) -> Callable[[str], Any]:
        node = self.node
        ref = self.ref_path()
        if pending.deposit is not None:
            return lambda path: DepositFile(path, self.environ, node, pending, ref)
        return lambda path: PendingFile(path, self.environ, node, pending, ref)

    def iter_member_resources(self) -> Iterator[Any]:
        """The members as resources, made one at a time (see :meth:`iter_members`)."""
        for member in self.iter_members():
            yield member.make(_join(self.path, member.name))

    def get_member_names(self) -> list[str]:
        return [member.name for member in self._listing()]

    def get_member_list(self) -> list[Any]:
        return [member.make(_join(self.path, member.name)) for member in self._listing()]

    def get_member(self, name: str) -> Any:
        return self.resolve(name)

    @dav_errors
    def resolve(self, name: str) -> Any:
        """The member called ``name``: listed names first, then names that resolve
        without being listed (handle tokens, package names of children)."""
        path = _join(self.path, name)
        if self.node.type is m.ObjectType.COLLECTION:
            found = self._resolve_in_collection(name, path)
            if found is not None:
                return found
        else:
            listing = self._listing()
            for member in listing:
                if member.name == name:
                    return member.make(path)
            folded = [mb for mb in listing if mb.name.casefold() == name.casefold()]
            if len(folded) == 1:
                return folded[0].make(path)
            if self.node.is_container:
                found = self._resolve_child_by_handle(name, path)
                if found is not None:
                    return found
        if self.node.is_container:
            pending = self.runtime.pending.get(self.node.id, name)
            if pending is not None:
                return self._pending_maker(pending)(path)
        return None

    def _resolve_in_collection(self, name: str, path: str) -> Any:
        ctx = self.state.read()
        collection = self._orm(self.node)
        assert isinstance(collection, m.Collection)
        package_name = urls.parse_package_file_name(name)
        handle = package_name.handle if package_name else urls.name_handle(name)
        if handle is None:
            return None
        obj = _by_handle(ctx, handle)
        if not isinstance(obj, m.Item) or obj.workflow_state is not m.WorkflowState.ARCHIVED:
            return None
        if not dav_support.is_in_collection(ctx, obj, collection):
            return None
        authz.authorize(ctx, obj, m.Action.READ)
        if not visible(ctx, obj):
            return None
        node = snapshot(obj)
        if package_name is None:
            return ObjectFolder(path, self.environ, node)
        default = packages.default_disseminator(self.runtime, m.ObjectType.ITEM)
        if (default is None or package_name.type_name != "ITEM"
                or package_name.extension != default.extension):
            return None
        return PackageFile(path, self.environ, node, self.ref_path())

    def _resolve_child_by_handle(self, name: str, path: str) -> Any:
        ctx = self.state.read()
        package_name = urls.parse_package_file_name(name)
        handle = package_name.handle if package_name else urls.name_handle(name)
        obj = _by_handle(ctx, handle) if handle else None
        if not isinstance(obj, (m.Community, m.Collection)):
            return None
        parent = authz.parent_of(obj)
        if self.node.type is m.ObjectType.SITE:
            if not (isinstance(obj, m.Community) and obj.parent_id is None):
                return None
        elif parent is None or parent.id != self.node.id:
            return None
        authz.authorize(ctx, obj, m.Action.READ)
        node = snapshot(obj)
        if package_name is None:
            return ObjectFolder(path, self.environ, node)
        cls = packages.default_disseminator(self.runtime, node.type)
        if (cls is None or package_name.type_name != node.type.value
                or package_name.extension != cls.extension):
            return None
        return PackageFile(path, self.environ, node, self.ref_path())

    # -- writes ------------------------------------------------------------------------

    @dav_errors
    def create_empty_resource(self, name: str) -> Any:
        """A client is about to upload ``name`` here (PUT of a new name, or LOCK)."""
        if not self.node.is_container:
            raise PermissionDenied(
                f"files cannot be added to a {self.node.type.value.lower()} one by one: "
                "replace the item's package instead",
                [Detail("not a container", field="path", found=self.path)])
        if urls.clean_name(name) != name or not name:
            raise InvalidInput(f"{name!r} cannot be used as a file name here",
                               [Detail("unusable file name", field="name", found=name)])
        ctx = self.state.read()
        authz.authorize(ctx, self._orm(self.node), m.Action.ADD)
        if self.environ.get("REQUEST_METHOD") == "PUT":
            from server.http.uploads import check_declared_size

            check_declared_size(self.environ, self.runtime.max_upload_size)
        pending = self.runtime.pending.add(self.node.id, name, self.state.actor)
        created = PendingFile(_join(self.path, name), self.environ, self.node, pending,
                              self.ref_path())
        created.created_here = True
        return created

    @dav_errors
    def create_collection(self, name: str) -> None:
        """MKCOL: a community in the site or (``?type=community``) in a community; a
        collection in a community."""
        if urls.clean_name(name) != name or not name or urls.is_reserved_container_name(name):
            raise InvalidInput(f"{name!r} cannot be used as a folder name",
                               [Detail("unusable folder name", field="name", found=name)])
        wanted = (query_value(query_pairs(self.environ), "type") or "").strip().lower()
        if wanted not in ("", "community", "collection"):
            raise InvalidInput(f"unknown type {wanted!r}",
                               [Detail("unknown type", field="type",
                                       expected="community or collection", found=wanted)])
        with self.state.write() as ctx:
            parent = ctx.session.get(m.DSpaceObject, self.node.id)
            if isinstance(parent, m.Site):
                if wanted == "collection":
                    raise PermissionDenied("collections live in communities, not in the site")
                objects.create_community(ctx, None, name)
            elif isinstance(parent, m.Community):
                if wanted == "community":
                    objects.create_community(ctx, parent, name)
                else:
                    objects.create_collection(ctx, parent, name)
            else:
                raise MethodNotAllowed(
                    f"folders cannot be made inside a {self.node.type.value.lower()}: "
                    "upload a package to make an item",
                    [Detail("not a community or the site", field="path", found=self.path)],
                    allow=("GET", "HEAD", "PROPFIND", "OPTIONS"))

    @dav_errors
    def handle_delete(self) -> bool:
        self._check_locks("infinity")
        delete_object(self, self.node)
        return True

    def delete(self) -> list[Any]:
        self.handle_delete()
        return []

    def support_recursive_delete(self) -> bool:
        return True

    @dav_errors
    def handle_move(self, dest_path: str) -> bool:
        move_or_copy(self, self.node, dest_path, move=True)
        return True

    @dav_errors
    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        move_or_copy(self, self.node, dest_path, move=False)
        return True


def _safe_info(state: RequestState, node: Node,
               default_packager: Callable[[], Any]) -> PackageInfo | None:
    """The size and ETag of ``node``'s package by ``default_packager()``, or None
    (logged) when it cannot be made."""
    try:
        return packages.package_info(state, node, default_packager())
    except DavpackError as exc:
        log.warning("no package size for %s %s: %s", node.type.value, node.handle or node.id,
                    exc.message)
        return None


def visible(ctx: Any, obj: m.DSpaceObject) -> bool:
    """Withdrawn items exist only for those who may change them (administrators and
    collection administrators); to everyone else they are gone."""
    if isinstance(obj, m.Item) and obj.withdrawn:
        return authz.allowed(ctx, obj, m.Action.WRITE)
    return True


def _by_handle(ctx: Any, handle: str) -> m.DSpaceObject | None:
    try:
        return handles.resolve(ctx, handle)
    except DavpackError:
        return None


class BundleFolder(_Repo, DAVCollection):
    """A bundle of an item (``ORIGINAL``, ``LICENSE``…): its bitstreams are files."""

    def __init__(self, path: str, environ: Environ, node: Node, item_ref: str) -> None:
        super().__init__(path, environ)
        self.node = node
        self.item_ref = item_ref
        self._members: list[tuple[str, Node]] | None = None

    def get_ref_url(self) -> str:
        return quote(self.item_ref + self.name + "/")

    def get_display_name(self) -> str:
        return self.node.title or self.name

    def get_last_modified(self) -> float:
        return self.node.timestamp

    def _listing(self) -> list[tuple[str, Node]]:
        if self._members is None:
            ctx = self.state.read()
            bundle = self._orm(self.node)
            assert isinstance(bundle, m.Bundle)
            admin = self._is_admin()
            files = [b for b in bundle.bitstreams
                     if admin or authz.allowed(ctx, b, m.Action.READ)]
            names = urls.unique_names(b.name for b in files)
            self._members = [(name, snapshot(b)) for name, b in zip(names, files, strict=True)]
        return self._members

    def get_member_names(self) -> list[str]:
        return [name for name, _ in self._listing()]

    def get_member_list(self) -> list[Any]:
        ref = self.item_ref + self.name + "/"
        return [BitstreamFile(_join(self.path, name), self.environ, node, ref)
                for name, node in self._listing()]

    def get_member(self, name: str) -> Any:
        return self.resolve(name)

    def resolve(self, name: str) -> Any:
        ref = self.item_ref + self.name + "/"
        for member, node in self._listing():
            if member == name:
                return BitstreamFile(_join(self.path, name), self.environ, node, ref)
        return None

    @dav_errors
    def create_empty_resource(self, name: str) -> Any:
        raise PermissionDenied("files are added to an item by replacing its package")

    @dav_errors
    def create_collection(self, name: str) -> None:
        raise PermissionDenied("bundles hold files, not folders")

    @dav_errors
    def handle_delete(self) -> bool:
        raise PermissionDenied("bundles change with their item's package")

    @dav_errors
    def handle_move(self, dest_path: str) -> bool:
        raise PermissionDenied("bundles cannot be moved")

    @dav_errors
    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        raise PermissionDenied("bundles cannot be copied")

    def prevent_locking(self) -> bool:
        return True


# ---------------------------------------------------------------------------------------
# Files


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (what ``get_content`` returns)."""

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = b""
        self._offset = 0
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while self._offset >= len(self._buffer):
            try:
                self._buffer, self._offset = next(self._chunks), 0
            except StopIteration:
                return b""
        end = len(self._buffer) if size is None or size < 0 else self._offset + size
        if self._offset == 0 and end >= len(self._buffer):
            data, self._buffer = self._buffer, b""
            return data
        data = self._buffer[self._offset:end]
        self._offset += len(data)
        return data

    def readinto(self, buffer: Any) -> int:  # pragma: no cover - read() is what WsgiDAV uses
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            self._on_close()
        super().close()


class PackageFile(Described, DAVNonCollection):
    """An object's package, in the default format, as a file with an exact size."""

    def __init__(self, path: str, environ: Environ, node: Node, parent_ref: str) -> None:
        super().__init__(path, environ)
        self.node = node
        self.parent_ref = parent_ref

    def _cls(self) -> Any:
        """The default packager for this type (asked once per request, not per file)."""
        key = ("default-disseminator", self.node.type)
        cache = self.state.cache
        if key not in cache:
            cache[key] = packages.disseminator_for(self.runtime, None, self.node.type)
        return cache[key]

    @functools.cached_property
    def _info(self) -> PackageInfo | None:
        """Size, ETag and type of the package; None when it cannot be made for this
        person (a listing then omits them; a GET reports the packager's error).  Kept by
        the resource, which lives as long as the request needs it: a listing of many
        files holds none of theirs after rendering them."""
        return _safe_info(self.state, self.node, self._cls)

    @functools.cached_property
    def _ref_url(self) -> str:  # WsgiDAV asks for it once per property
        return quote(self.parent_ref + self.name)

    def get_ref_url(self) -> str:
        return self._ref_url

    def get_content_length(self) -> int | None:
        info = self._info
        return info.size if info is not None else None

    def get_content_type(self) -> str:
        info = self._info
        return info.mime_type if info is not None else "application/octet-stream"

    def get_etag(self) -> str | None:
        info = self._info
        return info.etag if info is not None else None

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return False

    def get_display_name(self) -> str:
        return self.name

    def object_properties(self) -> list[tuple[str, str]]:
        return [*super().object_properties(), (PROP_PACKAGE, str(self._cls().name))]

    def get_content(self) -> Any:
        opened = packages.open_package(self.state, self.node, self._cls(),
                                       packages.PackageParameters())
        return _ChunkReader(opened.iter_bytes(0, opened.size), opened.close)

    @dav_errors
    def begin_write(self, *, content_type: str | None = None) -> Any:
        raise MethodNotAllowed("replacing a package is handled before this point")

    @dav_errors
    def handle_delete(self) -> bool:
        self._check_locks("0")
        delete_object(self, self.node)
        return True

    def delete(self) -> list[Any]:
        self.handle_delete()
        return []

    @dav_errors
    def handle_move(self, dest_path: str) -> bool:
        move_or_copy(self, self.node, dest_path, move=True)
        return True

    @dav_errors
    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        move_or_copy(self, self.node, dest_path, move=False)
        return True


class BitstreamFile(Described, DAVNonCollection):
    """A stored file of an item."""

    def __init__(self, path: str, environ: Environ, node: Node, bundle_ref: str) -> None:
        super().__init__(path, environ)
        self.node = node
        self.bundle_ref = bundle_ref

    @functools.cached_property
    def _ref_url(self) -> str:  # WsgiDAV asks for it once per property
        return quote(self.bundle_ref + self.name)

    def get_ref_url(self) -> str:
        return self._ref_url

    def get_content_length(self) -> int:
        return int(self.node.size or 0)

    def get_content_type(self) -> str:
        return self.node.mime_type or "application/octet-stream"

    def get_etag(self) -> str:
        return f"sha256-{self.node.sha256}"

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_display_name(self) -> str:
        return self.node.title or self.name

    def get_content(self) -> Any:
        assert self.node.sha256 is not None
        return self.runtime.repo.store.open(self.node.sha256)

    @dav_errors
    def begin_write(self, *, content_type: str | None = None) -> Any:
        raise PermissionDenied("files change with their item's package")

    @dav_errors
    def handle_delete(self) -> bool:
        raise PermissionDenied("files change with their item's package")

    @dav_errors
    def handle_move(self, dest_path: str) -> bool:
        raise PermissionDenied("files cannot be moved on their own")

    @dav_errors
    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        raise PermissionDenied("files cannot be copied on their own")


class PendingFile(_Repo, DAVNonCollection):
    """A name reserved by LOCK or an empty PUT in a container; the first PUT with
    content ingests it as a new child of the container."""

    def __init__(self, path: str, environ: Environ, container: Node, pending: Pending,
                 container_ref: str) -> None:
        super().__init__(path, environ)
        self.container = container
        self.pending = pending
        self.container_ref = container_ref
        self.created_here = False
        self._writer: StagingWriter | None = None

    def get_ref_url(self) -> str:
        return quote(self.container_ref + self.name)

    def get_content_length(self) -> int:
        return 0

    def get_content_type(self) -> str:
        return "application/octet-stream"

    def get_etag(self) -> str:
        digest = hashlib.sha256(f"{self.container.id}/{self.name}/{self.pending.created}"
                                .encode()).hexdigest()[:32]
        return f"pending-{digest}"

    def support_etag(self) -> bool:
        return True

    def get_last_modified(self) -> float:
        return self.pending.created

    def get_content(self) -> Any:
        return io.BytesIO(b"")

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names: list[str] = super().get_property_names(is_allprop=is_allprop)
        return [*names, PROP_TYPE]

    def get_property_value(self, name: str) -> Any:
        if name == PROP_TYPE:
            return "PENDING"
        return super().get_property_value(name)

    @dav_errors
    def begin_write(self, *, content_type: str | None = None) -> Any:
        runtime = self.runtime
        ctx = self.state.read()
        authz.authorize(ctx, self._orm(self.container), m.Action.ADD)
        self._writer = StagingWriter(self.environ, staging_dir=runtime.staging_dir,
                                     limit=runtime.max_upload_size,
                                     block_size=runtime.block_size, name=self.name,
                                     content_type=content_type)
        return self._writer

    @dav_errors
    def end_write(self, *, with_errors: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        staged: StagedUpload | None = None
        try:
            if with_errors:
                self._forget_if_new()
                return
            staged = writer.finish()
            if staged.digests.size == 0:
                return  # a client reserving the name (Finder, Windows, davfs2)
            self._ingest(staged)
        except BaseException:
            self._forget_if_new()
            raise
        finally:
            writer.discard()

    def _forget_if_new(self) -> None:
        if self.created_here:
            self.runtime.pending.remove(self.container.id, self.name)

    def _ingest(self, staged: StagedUpload) -> None:
        pairs = query_pairs(self.environ)
        plan = packages.write_plan(pairs, self.environ, default_mode=Mode.SUBMIT)
        content_type = staged.content_type
        source = staged.source()
        cls = packages.choose_ingester(self.runtime, plan, content_type=content_type,
                                       source=source, parent_type=self.container.type,
                                       replace_type=None)
        assert cls is not None
        plan.request.parent = self.container.id
        result = packages.ingest(self.state, cls, source, plan.request)
        primary = result.primary
        self.environ["davpack.ingest_result"] = (result, cls.name)
        if primary is None or primary.uuid is None:
            self.runtime.pending.remove(self.container.id, self.name)
            return
        kept: Kept | None = None
        if self.runtime.deposit_ttl > 0:
            path = self.runtime.staging_dir / f"deposit-{uuid.uuid4().hex}"
            staged.path.rename(path)
            kept = Kept(path, staged.digests.size, staged.digests.sha256, content_type)
        self.runtime.pending.mark_deposited(self.container.id, self.name, primary.uuid,
                                            time.time(), kept)

    @dav_errors
    def handle_delete(self) -> bool:
        self._may_drop_pending(self.container, self.pending)
        self._check_locks("0")
        self.runtime.pending.remove(self.container.id, self.name)
        self.remove_all_locks(recursive=False)
        self.remove_all_properties(recursive=False)
        return True

    def delete(self) -> list[Any]:
        self.handle_delete()
        return []

    @dav_errors
    def handle_move(self, dest_path: str) -> bool:
        """Renaming a reserved name (clients upload to a temporary name first)."""
        parent_path = dav_util.get_uri_parent(dest_path)
        parent = self.provider.get_resource_inst(parent_path, self.environ)
        if not isinstance(parent, ObjectFolder) or parent.node.id != self.container.id:
            raise PermissionDenied("a reserved name can only be renamed in its folder")
        new_name = dav_util.get_uri_name(dest_path)
        parent.create_empty_resource(new_name)
        self.runtime.pending.remove(self.container.id, self.name)
        return True

    @dav_errors
    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        raise PermissionDenied("a reserved name holds nothing to copy")


class DepositFile(Described, DAVNonCollection):
    """The name a package was uploaded under, kept for ``server.deposit_ttl`` seconds
    after the upload: GET returns the bytes exactly as received (so a client that checks
    its upload -- rclone compares sizes, then deletes and retries on a mismatch -- finds
    what it sent), and the ``davpack:handle`` property names the object it made.
    Deleting it only forgets the name and the bytes; PUT replaces the object."""

    def __init__(self, path: str, environ: Environ, container: Node, pending: Pending,
                 container_ref: str) -> None:
        super().__init__(path, environ)
        self.container = container
        self.pending = pending
        self.container_ref = container_ref
        self._node: Node | None = None

    def _object_node(self) -> Node:
        if self._node is None:
            assert self.pending.deposit is not None
            obj = self.state.read().session.get(m.DSpaceObject, self.pending.deposit)
            if obj is None:
                raise NotFound("the deposited object no longer exists")
            authz.authorize(self.state.read(), obj, m.Action.READ)
            self._node = snapshot(obj)
        return self._node

    @property
    def node(self) -> Node:  # type: ignore[override]
        return self._object_node()

    @property
    def kept(self) -> Kept | None:
        return self.pending.kept

    def _info(self) -> PackageInfo | None:
        try:
            node = self._object_node()
        except (DavpackError, DAVError):
            return None
        return _safe_info(self.state, node, functools.partial(
            packages.disseminator_for, self.runtime, None, node.type))

    def get_ref_url(self) -> str:
        return quote(self.container_ref + self.name)

    def get_content_length(self) -> int | None:
        kept = self.kept
        if kept is not None:
            return kept.size
        info = self._info()
        return info.size if info is not None else None

    def get_content_type(self) -> str:
        kept = self.kept
        if kept is not None:
            return kept.content_type or "application/octet-stream"
        info = self._info()
        return info.mime_type if info is not None else "application/octet-stream"

    def get_etag(self) -> str | None:
        kept = self.kept
        if kept is not None:
            return f"sha256-{kept.sha256}"
        info = self._info()
        return info.etag if info is not None else None

    def get_last_modified(self) -> float:
        return self.pending.deposited_at or self.pending.created

    def get_creation_date(self) -> float:
        return self.pending.created

    def support_etag(self) -> bool:
        return True

    def get_content(self) -> Any:
        kept = self.kept
        if kept is not None:
            return open(kept.path, "rb")
        node = self._object_node()
        cls = packages.disseminator_for(self.runtime, None, node.type)
        opened = packages.open_package(self.state, node, cls, packages.PackageParameters())
        return _ChunkReader(opened.iter_bytes(0, opened.size), opened.close)

    @dav_errors
    def begin_write(self, *, content_type: str | None = None) -> Any:
        raise MethodNotAllowed("replacing a package is handled before this point")

    @dav_errors
    def handle_delete(self) -> bool:
        self._may_drop_pending(self.container, self.pending)
        self._check_locks("0")
        self.runtime.pending.remove(self.container.id, self.name)
        self.remove_all_locks(recursive=False)
        return True

    def delete(self) -> list[Any]:
        self.handle_delete()
        return []

    @dav_errors
    def handle_move(self, dest_path: str) -> bool:
        raise PermissionDenied("an uploaded file's name cannot be moved; move the item")

    @dav_errors
    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        raise PermissionDenied("an uploaded file's name cannot be copied; copy the item")


# ---------------------------------------------------------------------------------------
# Repository operations shared by folders and package files


def delete_object(resource: _Repo, node: Node) -> None:
    """DELETE: withdraw an item (``?purge=true``: delete it; administrators only); delete
    an empty community or collection."""
    purge = parse_bool(query_value(query_pairs(resource.environ), "purge"), "purge")
    state = resource.state
    if node.type is m.ObjectType.ITEM:
        with state.write() as ctx:
            item = ctx.session.get(m.Item, node.id)
            if item is None:
                raise NotFound(f"item {node.handle or node.id} no longer exists")
            if purge:
                authz.require_admin(ctx)
                objects.delete_item(ctx, item)
            else:
                if item.owning_collection is not None:
                    authz.authorize(ctx, item.owning_collection, m.Action.REMOVE)
                else:
                    authz.require_admin(ctx)
                if not item.withdrawn:
                    objects.withdraw(ctx, item)
        return
    if node.type in (m.ObjectType.COMMUNITY, m.ObjectType.COLLECTION):
        with state.write() as ctx:
            container = ctx.session.get(m.DSpaceObject, node.id)
            if not isinstance(container, (m.Community, m.Collection)):
                raise NotFound(f"{node.type.value} {node.handle} no longer exists")
            _delete_tree(ctx, container)
        return
    raise PermissionDenied(f"a {node.type.value} cannot be deleted")


def _delete_tree(ctx: Any, top: m.Community | m.Collection) -> None:
    """Delete a container and the sub-containers below it, bottom-up, provided no
    collection in the tree holds an item (content is never deleted this way)."""
    order: list[m.Community | m.Collection] = []
    stack: list[m.Community | m.Collection] = [top]
    while stack:
        current = stack.pop()
        order.append(current)
        if isinstance(current, m.Community):
            stack.extend(current.subcommunities)
            stack.extend(current.collections)
    holding = [c for c in order if isinstance(c, m.Collection) and
               not objects.is_empty(ctx, c)]
    if holding:
        raise Conflict(
            f"{top.type.value} {top.handle} holds items: withdraw or move them first",
            [Detail("collection not empty", field="handle", found=c.handle) for c in holding])
    for container in reversed(order):
        parent = container.community if isinstance(container, m.Collection) \
            else container.parent
        objects.delete_container(ctx, container)
        if parent is not None:  # let the parent see that its member is gone
            ctx.session.expire(parent, ["collections", "subcommunities"])


def move_or_copy(resource: Any, node: Node, dest_path: str, *, move: bool) -> None:
    """MOVE/COPY of an object to ``dest_path`` (see the module text for the rules)."""
    provider = resource.provider
    environ = resource.environ
    parent_path = dav_util.get_uri_parent(dest_path)
    new_name = dav_util.get_uri_name(dest_path)
    target = provider.get_resource_inst(parent_path, environ)
    if not isinstance(target, ObjectFolder) or not target.node.is_container:
        raise PermissionDenied("the destination folder is not a site, community or collection",
                               [Detail("not a container", field="Destination",
                                       found=parent_path)])
    source_parent = provider.get_resource_inst(dav_util.get_uri_parent(resource.path),
                                               environ)
    same_parent = isinstance(source_parent, ObjectFolder) and \
        source_parent.node.id == target.node.id
    state: RequestState = resource.state
    if node.type is m.ObjectType.ITEM:
        if target.node.type is not m.ObjectType.COLLECTION:
            raise PermissionDenied("items live in collections",
                                   [Detail("destination is not a collection",
                                           field="Destination", found=parent_path)])
        if same_parent:
            raise PermissionDenied("items are named by their title and handle: change the "
                                   "title through the item's package to rename it")
        with state.write() as ctx:
            item = ctx.session.get(m.Item, node.id)
            collection = ctx.session.get(m.Collection, target.node.id)
            if item is None or collection is None:
                raise NotFound("the item or the destination no longer exists")
            if move:
                objects.move_item(ctx, item, collection)
            else:
                objects.map_item(ctx, item, collection)
        return
    if node.type not in (m.ObjectType.COMMUNITY, m.ObjectType.COLLECTION) or not move:
        raise PermissionDenied(f"a {node.type.value.lower()} cannot be "
                               f"{'moved' if move else 'copied'}")
    if isinstance(resource, PackageFile):
        raise PermissionDenied("move the folder, not the package file")
    if urls.clean_name(new_name) != new_name or urls.is_reserved_container_name(new_name):
        raise InvalidInput(f"{new_name!r} cannot be used as a folder name",
                           [Detail("unusable folder name", field="Destination",
                                   found=new_name)])
    with state.write() as ctx:
        obj = ctx.session.get(m.DSpaceObject, node.id)
        destination = ctx.session.get(m.DSpaceObject, target.node.id)
        if obj is None or destination is None:
            raise NotFound("the object or the destination no longer exists")
        if not same_parent:
            if isinstance(obj, m.Collection) and isinstance(destination, m.Community):
                objects.move_collection(ctx, obj, destination)
            elif isinstance(obj, m.Community) and isinstance(destination,
                                                             (m.Community, m.Site)):
                objects.move_community(ctx, obj, destination
                                       if isinstance(destination, m.Community) else None)
            else:
                raise PermissionDenied(f"a {node.type.value.lower()} cannot go into a "
                                       f"{target.node.type.value.lower()}")
        current = urls.clean_name(node.title)
        if new_name != current and not new_name.endswith(
                f"[{urls.handle_token(node.handle or '')}]"):
            authz.authorize(ctx, obj, m.Action.WRITE)
            metadata.set_single(ctx, obj, "dc.title", new_name)

