"""The WsgiDAV provider: a path to a resource, resolved from the repository.

Resolution starts at the path's anchor (``/``, ``/dav``, ``/handle/<p>/<s>``,
``/uuid/<id>``; see :mod:`server.http.urls`) and walks the member names from there,
asking each folder for its member.  Every object on the way must be readable by the
person asking: anonymous requests get 401 (so clients send credentials), others 403.
Results are cached for the request, since WsgiDAV resolves the same path several times.
"""

from __future__ import annotations

import logging
from typing import Any

from wsgidav.dav_error import HTTP_FORBIDDEN, DAVError, PRECONDITION_CODE_PropfindFiniteDepth
from wsgidav.dav_provider import DAVProvider

from server import models as m
from server.errors import DavpackError, NotFound
from server.http import propfind, urls
from server.http.errors import as_dav_error
from server.http.nodes import OBJECT_TYPES, snapshot
from server.http.resources import BundleFolder, ObjectFolder, RootFolder, visible
from server.http.runtime import RequestState, Runtime
from server.http.wsgi import Environ, StartResponse
from server.services import authz, handles, objects

log = logging.getLogger(__name__)


class RepositoryProvider(DAVProvider):
    """Serves the site, communities, collections, items and their files."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.verbose = 1  # WsgiDAV prints property tracebacks to stdout from 2 up

    def __repr__(self) -> str:
        return "RepositoryProvider"

    def is_readonly(self) -> bool:
        return False

    def get_resource_inst(self, path: str, environ: Environ) -> Any:
        state = RequestState.of(environ)
        key = ("resource", path)
        if key in state.cache:
            return state.cache[key]
        resource = self._resolve(path, environ, state)
        state.cache[key] = resource
        return resource

    def _resolve(self, path: str, environ: Environ, state: RequestState) -> Any:
        try:
            route = urls.parse(path)
        except urls.BadPath:
            return None
        if route.is_root:
            return RootFolder("/", environ)
        ctx = state.read()
        anchor = route.anchor
        obj: m.DSpaceObject | None
        if anchor.kind == "site":
            try:
                obj = objects.site(ctx)
            except NotFound:
                return None
        elif anchor.kind == "handle":
            assert anchor.handle is not None
            try:
                obj = handles.resolve(ctx, anchor.handle)
            except DavpackError:  # a malformed handle names nothing
                obj = None
        else:
            obj = objects.get(ctx, anchor.uuid) if anchor.uuid else None
        if obj is None or obj.type not in OBJECT_TYPES:
            return None
        if isinstance(obj, m.Item) and obj.workflow_state is not m.WorkflowState.ARCHIVED \
                and anchor.kind != "uuid":
            return None
        try:
            authz.authorize(ctx, obj, m.Action.READ)
        except DavpackError as exc:
            raise as_dav_error(exc, environ) from exc
        if not visible(ctx, obj):
            return None
        base = urls.path_of(urls.Route(anchor))
        resource: Any = ObjectFolder(base, environ, snapshot(obj))
        for segment in route.segments:
            if not isinstance(resource, (ObjectFolder, BundleFolder)):
                return None
            resource = resource.resolve(segment)
            if resource is None:
                return None
        return resource

    def custom_request_handler(self, environ: Environ, start_response: StartResponse,
                               default_handler: Any) -> Any:
        """``PROPFIND``: refuse ``Depth: infinity`` on folders (it would walk the
        repository; on a file it means the same as ``Depth: 0``), and answer
        ``Depth: 1`` on repository folders with :mod:`server.http.propfind` (unless
        ``runtime.fast_listings`` is off)."""
        if environ.get("REQUEST_METHOD") == "PROPFIND":
            depth = (environ.get("HTTP_DEPTH") or "infinity").strip().lower()
            resource = self.get_resource_inst(environ.get("PATH_INFO", "/"), environ)
            if depth == "infinity" and resource is not None and resource.is_collection:
                raise DAVError(HTTP_FORBIDDEN, "PROPFIND with Depth: infinity is not served",
                               err_condition=PRECONDITION_CODE_PropfindFiniteDepth)
            if self.runtime.fast_listings:
                listing = propfind.listing_response(self, environ, start_response)
                if listing is not None:
                    return listing
        return default_handler(environ, start_response)
