"""PROPFIND ``Depth: 1`` on a repository folder, rendered here rather than by WsgiDAV.

WsgiDAV answers a PROPFIND by asking each member for each property through its generic
machinery and building one lxml tree of the whole answer: for a collection of 10 000
items (20 000 members: a folder and a package file each) that is seconds, and the whole
body in memory.  Here the folder's members are made a batch at a time
(:meth:`ObjectFolder.iter_member_resources`), each is asked once for each of its facts,
and the multistatus is written as text into a spooled file (memory up to
:data:`SPOOL_IN_MEMORY`, then the staging directory), so that the response still carries
a ``Content-Length``: WsgiDAV closes the connection after any 207 without one.

The answer is WsgiDAV's, property for property (a test compares the two): the same
names in the same order, the same values, a ``404`` propstat for names a resource does
not have, the same hrefs and namespace prefixes.  What is not rendered here is left to
WsgiDAV:

* the whole request, unless it is ``Depth: 1`` on a site, community, collection or item
  folder, with no conditional header (``If``, ``If-Match``…) and a body that is empty,
  ``allprop`` or ``prop`` (``propname``, ``include`` or anything unusual go to WsgiDAV);
* one member's ``response``, when it holds what only WsgiDAV renders: dead properties,
  active locks, a failing property, or a resource class not in :data:`_RENDERED`.
"""

from __future__ import annotations

import functools
import io
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

from lxml import etree
from wsgidav import util as dav_util
from wsgidav import xml_tools
from wsgidav.dav_error import HTTP_NOT_FOUND, DAVError
from wsgidav.lock_man.lock_manager import normalize_lock_root

from server import xmlsafe
from server.errors import DavpackError
from server.http.resources import (
    OBJECT_PROPS,
    BundleFolder,
    Described,
    ObjectFolder,
    PackageFile,
)
from server.http.responses import Body
from server.http.runtime import RequestState
from server.http.wsgi import Environ, StartResponse

SPOOL_IN_MEMORY = 1024 * 1024
"""Bytes of a multistatus kept in memory before it spills into a temporary file."""

CHUNK_RESPONSES = 256
"""Responses rendered into one string before it is encoded and spooled."""

HREF_SAFE = "/!*'(),$-_|."
"""Characters WsgiDAV leaves unquoted in an href (``_DAVResource.get_href``)."""
_HREF_QUOTES = {code: f"%{code:02X}" for code in range(128)
                if not (chr(code).isalnum() or chr(code) in "_.-~" + HREF_SAFE)}

CONDITIONS = ("HTTP_IF", "HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
              "HTTP_IF_UNMODIFIED_SINCE")

_RENDERED = frozenset({ObjectFolder, PackageFile, BundleFolder})
"""Resource classes whose properties are exactly WsgiDAV's defaults plus, for the
described ones, :meth:`Described.object_properties` (others are left to WsgiDAV)."""

DAV = "{DAV:}"
RESOURCETYPE = DAV + "resourcetype"
CREATIONDATE = DAV + "creationdate"
GETCONTENTLENGTH = DAV + "getcontentlength"
GETCONTENTTYPE = DAV + "getcontenttype"
GETLASTMODIFIED = DAV + "getlastmodified"
DISPLAYNAME = DAV + "displayname"
GETETAG = DAV + "getetag"
LOCKDISCOVERY = DAV + "lockdiscovery"
SUPPORTEDLOCK = DAV + "supportedlock"


@functools.lru_cache(maxsize=4096)
def _whole_seconds(format_time: Callable[[float], str], seconds: int) -> str:
    return format_time(seconds)


def _by_second(format_time: Callable[[float], str], timestamp: float) -> str:
    """``format_time(timestamp)``, which shows whole seconds: remembered per second
    (objects made together share it), except just below the next second, which
    ``email.utils.formatdate`` may round up to."""
    seconds = math.floor(timestamp)
    if timestamp - seconds < 0.999:
        return _whole_seconds(format_time, seconds)
    return format_time(timestamp)


def _rfc3339(timestamp: float) -> str:
    return _by_second(dav_util.get_rfc3339_time, timestamp)


def _rfc1123(timestamp: float) -> str:
    return _by_second(dav_util.get_rfc1123_time, timestamp)


GETTERS: dict[str, tuple[str, Callable[[Any], str]]] = {
    CREATIONDATE: ("get_creation_date", _rfc3339),
    GETCONTENTLENGTH: ("get_content_length", str),
    GETCONTENTTYPE: ("get_content_type", str),
    GETLASTMODIFIED: ("get_last_modified", _rfc1123),
    DISPLAYNAME: ("get_display_name", str),
    GETETAG: ("get_etag", str),
}
"""Live properties WsgiDAV reports when their getter gives a value (else ``404``), in
the order of an ``allprop``, with how it writes the value."""

HEAD = b"<?xml version='1.0' encoding='UTF-8'?>\n<D:multistatus xmlns:D=\"DAV:\">"
TAIL = "</D:multistatus>"

_PLAIN_NAMESPACE = re.compile(r"[\x21-\x7e]*")
_QUOTED_IN_XML = re.compile(r"[\"'<>&]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_NEEDS_ESCAPE = re.compile("[&<>\r]")


class _Markup:
    """A property rendered as XML already (WsgiDAV's value is an element)."""

    __slots__ = ("xml",)

    def __init__(self, xml: str) -> None:
        self.xml = xml


COLLECTION = _Markup("<D:resourcetype><D:collection/></D:resourcetype>")
NO_LOCKS = _Markup("<D:lockdiscovery/>")
SUPPORTED_LOCKS = _Markup(
    "<D:supportedlock>"
    "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope>"
    "<D:locktype><D:write/></D:locktype></D:lockentry>"
    "<D:lockentry><D:lockscope><D:shared/></D:lockscope>"
    "<D:locktype><D:write/></D:locktype></D:lockentry>"
    "</D:supportedlock>")
NOT_FOUND = DAVError(HTTP_NOT_FOUND)


class _LeftToWsgiDAV(Exception):
    """This resource's response is rendered by WsgiDAV."""


class _Locks:
    """The lock roots of the share, read once per listing (asking the lock manager per
    member costs more than the rest of its response)."""

    def __init__(self, lock_manager: Any) -> None:
        self.enabled = lock_manager is not None
        self._roots = {normalize_lock_root(lock["root"])
                       for lock in lock_manager.get_url_lock_list("/", recursive=True)} \
            if lock_manager is not None else set()

    def check(self, ref: str) -> None:
        """Leave a locked resource to WsgiDAV (it renders ``lockdiscovery``)."""
        if self._roots and normalize_lock_root(ref) in self._roots:
            raise _LeftToWsgiDAV


def listing_response(provider: Any, environ: Environ,
                     start_response: StartResponse) -> Iterable[bytes] | None:
    """The 207 answering a PROPFIND ``Depth: 1`` on a repository folder, or None when
    WsgiDAV's handler is to answer (see the module text)."""
    if environ.get("HTTP_DEPTH") != "1" or any(key in environ for key in CONDITIONS):
        return None
    folder = provider.get_resource_inst(environ.get("PATH_INFO", "/"), environ)
    if not isinstance(folder, ObjectFolder):
        return None
    wanted = _requested(environ)
    if wanted is None:
        return None
    allprop, names = wanted
    state = RequestState.of(environ)
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - the response body closes it
        SPOOL_IN_MEMORY, mode="w+b", dir=str(state.runtime.staging_dir))
    try:
        for chunk in _multistatus(folder, allprop, names):
            spool.write(chunk)
        size = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    state.release()
    start_response("207 Multi-Status", [("Content-Type", "application/xml; charset=utf-8"),
                                        ("Date", dav_util.get_rfc1123_time()),
                                        ("Content-Length", str(size))])
    block = state.runtime.block_size
    return Body(iter(functools.partial(spool.read, block), b""), spool.close)


def _requested(environ: Environ) -> tuple[bool, list[str]] | None:
    """``(allprop, names)`` asked for by the body, or None for WsgiDAV to answer (the
    body is then put back for it to read).  Like WsgiDAV, a body without a
    ``Content-Length`` is not read."""
    declared = (environ.get("CONTENT_LENGTH") or "").strip()
    if not declared or declared == "0":
        return True, []
    if not declared.isdigit():
        return None
    body = environ["wsgi.input"].read(int(declared))
    try:
        wanted = _parse(xmlsafe.fromstring(body, "PROPFIND body"))
    except DavpackError:
        wanted = None
    if wanted is None:
        environ["wsgi.input"] = io.BytesIO(body)
    else:
        environ["wsgidav.all_input_read"] = 1
    return wanted


def _parse(root: Any) -> tuple[bool, list[str]] | None:
    if root.tag != DAV + "propfind":
        return None
    allprop = False
    names: list[str] | None = None
    for child in root:
        if child.tag == DAV + "allprop" and not allprop and names is None:
            allprop = True
        elif child.tag == DAV + "prop" and not allprop:
            names = names if names is not None else []
            for prop in child:
                if not isinstance(prop.tag, str) or not _plain(prop.tag):
                    return None
                names.append(prop.tag)
        else:
            return None
    if allprop:
        return True, []
    if names is None:
        return None
    return False, names


def _plain(name: str) -> bool:
    """A namespace this module writes as it is (lxml refuses, or would escape, others)."""
    namespace, _ = _split(name)
    return bool(_PLAIN_NAMESPACE.fullmatch(namespace)) and not _QUOTED_IN_XML.search(namespace)


def _multistatus(folder: ObjectFolder, allprop: bool, names: list[str]) -> Iterator[bytes]:
    provider = folder.provider
    prop_manager = provider.prop_manager
    locks = _Locks(provider.lock_manager)
    prefix = quote(provider.mount_path + provider.share_path + folder.path.rstrip("/") + "/",
                   safe=HREF_SAFE)

    def response(resource: Any, href: str) -> str:
        try:
            props = _properties(resource, allprop, names, locks, prop_manager)
        except _LeftToWsgiDAV:
            return _wsgidav_response(resource, href, allprop, names)
        return _render(href, props)

    yield HEAD
    parts = [response(folder, folder.get_href())]
    for resource in folder.iter_member_resources():
        href = prefix + _quote_name(resource.name)
        parts.append(response(resource, href + "/" if resource.is_collection else href))
        if len(parts) >= CHUNK_RESPONSES:
            yield "".join(parts).encode("utf-8")
            parts.clear()
    parts.append(TAIL)
    yield "".join(parts).encode("utf-8")


def _quote_name(name: str) -> str:
    """``quote(name, safe=HREF_SAFE)``; an ASCII name by one translation (member names
    are many, and quote() looks up every byte)."""
    return name.translate(_HREF_QUOTES) if name.isascii() else quote(name, safe=HREF_SAFE)


def _properties(resource: Any, allprop: bool, names: list[str], locks: _Locks,
                prop_manager: Any) -> list[tuple[str, Any]]:
    """``(name, value)`` as WsgiDAV's ``get_properties`` gives them, a value being text,
    :class:`_Markup` or a ``DAVError``; only what is asked for is computed (a package's
    size is not measured for a listing of names and dates)."""
    if type(resource) not in _RENDERED:
        raise _LeftToWsgiDAV
    ref = resource.get_ref_url()
    if allprop:
        return _allprop(resource, ref, locks, prop_manager)
    own: dict[str, str] | None = None
    props: list[tuple[str, Any]] = []
    for name in names:
        value: Any
        if name == RESOURCETYPE:
            value = COLLECTION if resource.is_collection else ""
        elif name in GETTERS:
            getter, write = GETTERS[name]
            found = getattr(resource, getter)()
            value = NOT_FOUND if found is None else write(found)
        elif name == LOCKDISCOVERY and locks.enabled:
            locks.check(ref)
            value = NO_LOCKS
        elif name == SUPPORTEDLOCK and locks.enabled:
            value = SUPPORTED_LOCKS
        elif name in OBJECT_PROPS and isinstance(resource, Described):
            if own is None:
                own = dict(resource.object_properties())
            value = own[name] if name in own else _asked(resource, name)
        elif not name.startswith(DAV) and name not in OBJECT_PROPS:  # a dead property
            if prop_manager is not None and \
                    prop_manager.get_property(ref, name, resource.environ) is not None:
                raise _LeftToWsgiDAV
            value = NOT_FOUND
        else:
            value = _asked(resource, name)
        props.append((name, value))
    return props


def _allprop(resource: Any, ref: str, locks: _Locks,
             prop_manager: Any) -> list[tuple[str, Any]]:
    """What an ``allprop`` reports, in WsgiDAV's order: live properties, lock
    properties, dead properties (left to WsgiDAV when there are any), then ours."""
    if resource.get_used_bytes() is not None or resource.get_available_bytes() is not None:
        raise _LeftToWsgiDAV
    props: list[tuple[str, Any]] = [(RESOURCETYPE, COLLECTION if resource.is_collection
                                     else "")]
    for name, (getter, write) in GETTERS.items():
        found = getattr(resource, getter)()
        if found is not None:
            props.append((name, write(found)))
    if locks.enabled and not resource.prevent_locking():
        locks.check(ref)
        props += [(LOCKDISCOVERY, NO_LOCKS), (SUPPORTEDLOCK, SUPPORTED_LOCKS)]
    if prop_manager is not None and prop_manager.get_properties(ref, resource.environ):
        raise _LeftToWsgiDAV
    if isinstance(resource, Described):
        props += resource.object_properties()
    return props


def _asked(resource: Any, name: str) -> Any:
    """A property only WsgiDAV's ``get_property_value`` knows how to answer."""
    try:
        value = resource.get_property_value(name)
    except DAVError as exc:
        return exc
    except Exception as exc:  # WsgiDAV turns it into a status of its own
        raise _LeftToWsgiDAV from exc
    if not isinstance(value, str):
        raise _LeftToWsgiDAV
    return value


def _wsgidav_response(resource: Any, href: str, allprop: bool, names: list[str]) -> str:
    """One ``response`` as WsgiDAV renders it."""
    multistatus = xml_tools.make_multistatus_el()
    props = resource.get_properties("allprop") if allprop else \
        resource.get_properties("named", name_list=names)
    dav_util.add_property_response(multistatus, href, props)
    return str(etree.tostring(multistatus[0], encoding="unicode"))


_SPLIT: dict[str, tuple[str, str]] = {}


def _split(name: str) -> tuple[str, str]:
    """``(namespace, local name)`` of a Clark name (remembered: names repeat)."""
    found = _SPLIT.get(name)
    if found is None:
        found = dav_util.split_namespace(name)
        if len(_SPLIT) < 1024:
            _SPLIT[name] = found
    return found


def _text(value: str) -> str:
    return value.translate(_TEXT_ESCAPES) if _NEEDS_ESCAPE.search(value) else value


def _render(href: str, props: list[tuple[str, Any]]) -> str:
    """One ``response`` element, as ``wsgidav.util.add_property_response`` builds it:
    a prefix ``NS<n>`` per namespace other than DAV's (in order of appearance), one
    propstat per status (in order of appearance)."""
    prefixes: dict[str, str] = {}
    by_status: dict[str, list[str]] = {}
    found: list[str] | None = None  # by_status["200 OK"] once there is one
    for name, value in props:
        if isinstance(value, _Markup):
            if found is None:
                found = by_status["200 OK"] = []
            found.append(value.xml)
            continue
        namespace, local = _split(name)
        if namespace == "DAV:":
            tag = "D:" + local
        elif namespace:
            prefix = prefixes.get(namespace)
            if prefix is None:
                prefix = prefixes[namespace] = f"NS{len(prefixes) + 1}"
            tag = f"{prefix}:{local}"
        else:
            tag = local
        if isinstance(value, str):
            if found is None:
                found = by_status["200 OK"] = []
            found.append(f"<{tag}>{_text(value)}</{tag}>" if value else f"<{tag}></{tag}>")
        else:
            by_status.setdefault(dav_util.get_http_status_string(value), []).append(
                f"<{tag}/>")
    declared = "".join(f' xmlns:{prefix}="{namespace}"'
                       for namespace, prefix in prefixes.items())
    propstats = "".join(
        f"<D:propstat><D:prop>{''.join(parts)}</D:prop>"
        f"<D:status>HTTP/1.1 {status}</D:status></D:propstat>"
        for status, parts in by_status.items())
    return f"<D:response{declared}><D:href>{_text(href)}</D:href>{propstats}</D:response>"
