"""Every URL the server answers, built and parsed in one place.

Layout (all paths are below the application root, i.e. ``SCRIPT_NAME``):

``/``
    The root folder; its only member is ``dav/``.
``/dav/``
    The site as a folder: the browse tree for file managers starts here.
``/dav/<Community>/<Collection>/``
    Communities and collections are folders named after their title.  When two siblings
    would get the same name (compared case-insensitively, as Windows and macOS do) or the
    title is empty, each of them gets its handle appended: ``Theses [123456789-12]``.
``<Collection>/<Item title> [123456789-8]/``
    An item as a folder: its bundles are sub-folders, its bitstreams are files in them.
    Item folders always carry the handle token, so they are unique and stay resolvable
    when the title changes (the token decides; the title part is decoration).
``<Collection>/ITEM@123456789-8.zip``
    The same item as a package file, in the default package format.  Any container
    folder also resolves ``COLLECTION@…``/``COMMUNITY@…`` names of its children, so a
    package dropped back onto its own name replaces the object.
``/handle/<prefix>/<suffix>``
    The canonical URL of an object (the site is ``/handle/<prefix>/0``).  Below it the
    same member names as in the browse tree resolve, e.g. the bitstream
    ``/handle/123456789/8/ORIGINAL/thesis.pdf``.
``/uuid/<uuid>``
    The fallback for objects without a handle (workspace and workflow items).

Names are cleaned of characters file systems refuse (``/``, ``\\``, control characters,
and ``<>:"|?*`` for Windows clients) and cut to :data:`MAX_NAME` characters.  Bundle and
bitstream names that clash inside one parent get `` [2]``, `` [3]``… before the extension,
in a stable order (position, then id).

This module knows nothing of the database: it turns paths into :class:`Route` values and
names into candidate identifiers, and back.  Resolving a route to objects is the
provider's job (``server.http.provider``).
"""

from __future__ import annotations

import re
import unicodedata
import uuid as uuidlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

DAV_ROOT = "dav"
HANDLE_ROOT = "handle"
UUID_ROOT = "uuid"
INTROSPECTION_PREFIX = "/-/"

MAX_NAME = 120
"""Longest folder or file name the tree produces (titles are cut, not refused)."""

MAX_SEGMENT = 1024
"""Longest path segment the parser accepts; longer ones cannot name anything."""

PACKAGE_TYPES = ("SITE", "COMMUNITY", "COLLECTION", "ITEM")

_HANDLE_PREFIX = r"[0-9A-Za-z.]+"
_HANDLE_SUFFIX = r"[0-9A-Za-z._\-]+"
_TOKEN_RE = re.compile(rf" \[(?P<prefix>{_HANDLE_PREFIX})-(?P<suffix>{_HANDLE_SUFFIX})\]$")
_PACKAGE_RE = re.compile(
    rf"^(?P<type>{'|'.join(PACKAGE_TYPES)})@(?P<prefix>{_HANDLE_PREFIX})-"
    rf"(?P<suffix>{_HANDLE_SUFFIX})\.(?P<ext>[A-Za-z0-9]{{1,16}})$")
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')
_SPACES = re.compile(r"\s+")
_SAFE_URL_CHARS = "/@-._~!$&'()*+,;=:"


class BadPath(ValueError):
    """A path that cannot name anything this server serves (answered with 404)."""


@dataclass(frozen=True)
class Anchor:
    """Where a path starts: the root, the site (``/dav``), a handle, or a UUID."""

    kind: str  # "root", "site", "handle" or "uuid"
    handle: str | None = None
    uuid: uuidlib.UUID | None = None


@dataclass(frozen=True)
class Route:
    """A parsed path: an anchor plus the member names below it."""

    anchor: Anchor
    segments: tuple[str, ...] = ()

    @property
    def is_root(self) -> bool:
        return self.anchor.kind == "root" and not self.segments

    def child(self, name: str) -> Route:
        return Route(self.anchor, (*self.segments, name))

    def parent(self) -> Route | None:
        if self.segments:
            return Route(self.anchor, self.segments[:-1])
        return None


ROOT = Route(Anchor("root"))
SITE = Route(Anchor("site"))


def parse(path: str) -> Route:
    """Turn a share-relative, unquoted path into a :class:`Route`; :class:`BadPath` if no
    resource can live there."""
    if not path.startswith("/") and path != "":
        raise BadPath(f"not an absolute path: {path!r}")
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if part in (".", "..") or len(part) > MAX_SEGMENT or "\x00" in part:
            raise BadPath("invalid path segment")
    if not parts:
        return ROOT
    head, rest = parts[0], parts[1:]
    if head == DAV_ROOT:
        return Route(Anchor("site"), tuple(rest))
    if head == HANDLE_ROOT:
        if len(rest) < 2:
            raise BadPath("a handle URL needs a prefix and a suffix")
        prefix, suffix = rest[0], rest[1]
        if not re.fullmatch(_HANDLE_PREFIX, prefix) or not re.fullmatch(_HANDLE_SUFFIX, suffix):
            raise BadPath("not a handle")
        return Route(Anchor("handle", handle=f"{prefix}/{suffix}"), tuple(rest[2:]))
    if head == UUID_ROOT:
        if not rest:
            raise BadPath("a UUID URL needs a UUID")
        try:
            key = uuidlib.UUID(rest[0])
        except ValueError:
            raise BadPath("not a UUID") from None
        return Route(Anchor("uuid", uuid=key), tuple(rest[1:]))
    raise BadPath(f"nothing is served under /{head}")


def path_of(route: Route) -> str:
    """The unquoted path of a route (collections get no trailing slash here)."""
    anchor = route.anchor
    if anchor.kind == "root":
        base = ""
    elif anchor.kind == "site":
        base = f"/{DAV_ROOT}"
    elif anchor.kind == "handle":
        assert anchor.handle is not None
        base = f"/{HANDLE_ROOT}/{anchor.handle}"
    else:
        base = f"/{UUID_ROOT}/{anchor.uuid}"
    tail = "".join(f"/{s}" for s in route.segments)
    return (base + tail) or "/"


def quote_path(path: str) -> str:
    """Percent-encode a path for use in ``Location`` headers and HTML links."""
    return quote(path, safe=_SAFE_URL_CHARS)


# ---------------------------------------------------------------------------------------
# Canonical URLs


def object_path(handle: str | None, object_id: uuidlib.UUID | None = None) -> str:
    """``/handle/<prefix>/<suffix>``, or ``/uuid/<uuid>`` for an object without handle."""
    if handle:
        return f"/{HANDLE_ROOT}/{handle}"
    if object_id is None:
        raise ValueError("an object URL needs a handle or a UUID")
    return f"/{UUID_ROOT}/{object_id}"


def object_route(handle: str | None, object_id: uuidlib.UUID | None = None) -> Route:
    if handle:
        return Route(Anchor("handle", handle=handle))
    if object_id is None:
        raise ValueError("an object route needs a handle or a UUID")
    return Route(Anchor("uuid", uuid=object_id))


def absolute(base: str, path: str) -> str:
    """``base`` (scheme://host[/mount]) joined with a quoted ``path``."""
    return base.rstrip("/") + quote_path(path)


# ---------------------------------------------------------------------------------------
# Names in the browse tree


def clean_name(text: str | None) -> str:
    """A title as a single path segment: no separators, controls or Windows-reserved
    characters, whitespace collapsed, NFC, at most :data:`MAX_NAME` characters."""
    value = unicodedata.normalize("NFC", text or "")
    value = _SPACES.sub(" ", value).strip()
    value = _UNSAFE_CHARS.sub("_", value)
    value = value.rstrip(". ")  # Windows drops trailing dots and spaces
    if len(value) > MAX_NAME:
        value = value[:MAX_NAME].rstrip(". ")
    if value in ("", ".", ".."):
        return ""
    return value


def handle_token(handle: str) -> str:
    """``123456789/8`` -> ``123456789-8`` (the form used inside names)."""
    prefix, _, suffix = handle.partition("/")
    return f"{prefix}-{suffix}"


def token_handle(token: str) -> str:
    prefix, _, suffix = token.partition("-")
    return f"{prefix}/{suffix}"


def with_token(name: str, handle: str) -> str:
    token = f" [{handle_token(handle)}]"
    base = name[: MAX_NAME - len(token)].rstrip(". ") if name else ""
    return f"{base}{token}" if base else token.strip()


def item_folder_name(title: str | None, handle: str) -> str:
    """``<title> [prefix-suffix]``: readable, unique, and resolvable by its token."""
    return with_token(clean_name(title), handle)


def name_handle(name: str) -> str | None:
    """The handle a ``… [prefix-suffix]`` name carries, if any."""
    if name.startswith("[") and name.endswith("]") and " " not in name:
        name = " " + name
    found = _TOKEN_RE.search(name)
    if found is None:
        return None
    return f"{found['prefix']}/{found['suffix']}"


def container_names(children: Sequence[tuple[str | None, str]]) -> list[str]:
    """Names for sibling containers given ``(title, handle)`` pairs, in the same order.

    A container is named by its cleaned title unless that name is empty, carries a handle
    token already, or is shared (case-insensitively) with a sibling: then the handle is
    appended to every one of the clashing names.
    """
    bases = [clean_name(title) for title, _ in children]
    counts: dict[str, int] = {}
    for base in bases:
        counts[base.casefold()] = counts.get(base.casefold(), 0) + 1
    names = []
    for base, (_, handle) in zip(bases, children, strict=True):
        if not base or counts[base.casefold()] > 1 or name_handle(base) is not None:
            names.append(with_token(base, handle))
        else:
            names.append(base)
    return names


def package_file_name(type_name: str, handle: str, extension: str) -> str:
    """``ITEM@123456789-8.zip``: the name DSpace gives AIP files."""
    return f"{type_name}@{handle_token(handle)}.{extension}"


@dataclass(frozen=True)
class PackageName:
    type_name: str
    handle: str
    extension: str


def parse_package_file_name(name: str) -> PackageName | None:
    found = _PACKAGE_RE.match(name)
    if found is None:
        return None
    return PackageName(found["type"], f"{found['prefix']}/{found['suffix']}", found["ext"])


def unique_names(names: Iterable[str]) -> list[str]:
    """Make file names unique (case-insensitively) by inserting `` [2]``, `` [3]``…
    before the extension of the second and later holders of a name."""
    seen: set[str] = set()
    out = []
    for raw in names:
        base = clean_name(raw) or "unnamed"
        candidate = base
        n = 1
        while candidate.casefold() in seen:
            n += 1
            stem, dot, ext = base.rpartition(".")
            candidate = f"{stem} [{n}].{ext}" if dot and stem else f"{base} [{n}]"
        seen.add(candidate.casefold())
        out.append(candidate)
    return out


def is_reserved_container_name(name: str) -> bool:
    """Names MKCOL must refuse: they would resolve as something else in the tree."""
    return name_handle(name) is not None or parse_package_file_name(name) is not None
