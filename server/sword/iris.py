"""Every SWORD IRI, built and parsed in one place, all below one configurable root.

With the root ``/sword`` (``sword.root``)::

    /sword                                  SD-IRI   service document
    /sword/collection/<collection uuid>     Col-IRI  (a handle, /collection/<prefix>/<suffix>,
                                                     is accepted too)
    /sword/edit/<item uuid>                 Edit-IRI = SE-IRI (the container)
    /sword/edit-media/<item uuid>           EM-IRI  = Cont-IRI (the media resource)
    /sword/edit-media/<item uuid>.atom      the media resource as an Atom feed of its files
    /sword/file/<bitstream uuid>/<name>     one file (GET, PUT, DELETE)
    /sword/statement/<item uuid>.atom       Statement, Atom serialisation
    /sword/statement/<item uuid>.rdf        Statement, OAI-ORE resource map (RDF/XML)

Everything lives under the SD-IRI's path, so a client that authenticated for the service
document sends its credentials (and its bodies) only once afterwards.  IRIs are absolute,
built from the request's scheme and ``Host`` (the address the client used), so they work
behind the same name the client was given; GET on every IRI emitted is tested.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from server.http.wsgi import Environ

SERVICE = "service"
COLLECTION = "collection"
EDIT = "edit"
EDIT_MEDIA = "edit-media"
MEDIA_FEED = "media-feed"
FILE = "file"
STATEMENT_ATOM = "statement-atom"
STATEMENT_ORE = "statement-ore"

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (COLLECTION, re.compile(rf"^/collection/(?P<key>{_UUID}|[0-9A-Za-z.]+/[0-9A-Za-z._-]+)/?$")),
    (EDIT, re.compile(rf"^/edit/(?P<key>{_UUID})/?$")),
    (MEDIA_FEED, re.compile(rf"^/edit-media/(?P<key>{_UUID})\.atom$")),
    (EDIT_MEDIA, re.compile(rf"^/edit-media/(?P<key>{_UUID})/?$")),
    (FILE, re.compile(rf"^/file/(?P<key>{_UUID})(?:/.*)?$", re.DOTALL)),
    (STATEMENT_ATOM, re.compile(rf"^/statement/(?P<key>{_UUID})\.atom$")),
    (STATEMENT_ORE, re.compile(rf"^/statement/(?P<key>{_UUID})\.rdf$")),
)
_BAD_HOST = re.compile(r"[/\\@\s]")


@dataclass(frozen=True)
class Route:
    """What a path names: a kind of resource and its key (a UUID, or a handle)."""

    kind: str
    key: str = ""

    @property
    def uuid(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.key)
        except ValueError:
            return None


def under_root(path: str, root: str) -> bool:
    """Whether ``path`` (PATH_INFO) is the SWORD root or below it."""
    return path == root or path.startswith(root + "/")


def parse(path: str, root: str) -> Route | None:
    """The route of ``path``; None when it names nothing."""
    if not under_root(path, root):
        return None
    rest = path[len(root):]
    if rest in ("", "/", "/servicedocument"):
        return Route(SERVICE)
    if len(rest) > 4096:
        return None
    for kind, pattern in _PATTERNS:
        match = pattern.match(rest)
        if match:
            return Route(kind, match.group("key"))
    return None


def request_base(environ: Environ) -> str:
    """``scheme://host[:port]`` and the mount point, as the client addressed us."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or ""
    if not host or _BAD_HOST.search(host) or len(host) > 255:
        host = str(environ.get("SERVER_NAME") or "localhost")
        port = str(environ.get("SERVER_PORT") or "")
        if port and port != ("443" if scheme == "https" else "80"):
            host = f"{host}:{port}"
    mount = environ.get("davpack.mount")
    if mount is None:
        mount = environ.get("SCRIPT_NAME", "")
    return f"{scheme}://{host}{str(mount).rstrip('/')}"


class Iris:
    """The absolute IRIs of one request's answers."""

    def __init__(self, base: str, root: str) -> None:
        self.prefix = base.rstrip("/") + root

    def service(self) -> str:
        return self.prefix

    def collection(self, key: uuid.UUID) -> str:
        return f"{self.prefix}/collection/{key}"

    def edit(self, key: uuid.UUID) -> str:
        return f"{self.prefix}/edit/{key}"

    def edit_media(self, key: uuid.UUID) -> str:
        return f"{self.prefix}/edit-media/{key}"

    def media_feed(self, key: uuid.UUID) -> str:
        return f"{self.prefix}/edit-media/{key}.atom"

    def file(self, key: uuid.UUID, name: str) -> str:
        leaf = quote(name.replace("/", "_"), safe="")[:512] or "file"
        return f"{self.prefix}/file/{key}/{leaf}"

    def statement_atom(self, key: uuid.UUID) -> str:
        return f"{self.prefix}/statement/{key}.atom"

    def statement_ore(self, key: uuid.UUID) -> str:
        return f"{self.prefix}/statement/{key}.rdf"
