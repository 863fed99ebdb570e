"""The one hardened XML parser of davpack: every untrusted XML document goes through here.

METS manifests, DIM, MODS, Atom entries, ``imsmanifest.xml`` and ``dublin_core.xml`` all
arrive from people we do not trust, so parsing follows one policy:

* **No DTD at all.**  A document with a ``<!DOCTYPE ...>`` (internal subset or external id)
  is refused with :class:`~server.errors.UnsafeInput`.  None of our formats needs one, and
  refusing it removes entity expansion (billion laughs), external entities (XXE), external
  DTDs and parameter entities in one rule.  The DOCTYPE is found by a streaming lexical
  scan of the prolog *before* the XML parser sees it; libxml2's own view (``docinfo``) is
  checked again when the root element starts, before any event reaches the caller.
* The lxml parser is configured so that, even if a DOCTYPE slipped past, nothing would be
  loaded or expanded: ``resolve_entities=False``, ``no_network=True``, ``load_dtd=False``,
  ``dtd_validation=False``, ``huge_tree=False``, and a resolver that refuses every URL.
* XInclude is never processed (we never call ``xinclude()``); processing instructions are
  kept as inert nodes.
* Input is read in chunks and counted; more than ``max_bytes`` is refused with
  :class:`~server.errors.SizeLimitExceeded` after reading at most ``max_bytes + 1`` bytes.
* Malformed XML raises :class:`~server.errors.InvalidInput` naming file and line.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable, Collection, Iterator
from typing import Any, Protocol, TypeAlias

from lxml import etree

from server.errors import Detail, InvalidInput, SizeLimitExceeded, UnsafeInput

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Readable",
    "Source",
    "fromstring",
    "iterparse",
    "parse",
    "release",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Largest document accepted by default (64 MiB); manifests are far smaller."""

_CHUNK = 64 * 1024

_EVENTS = frozenset({"start", "end", "start-ns", "end-ns", "comment", "pi"})


class Readable(Protocol):
    """Anything with a binary ``read(size)``: open files, HTTP bodies, archive members."""

    def read(self, size: int, /) -> bytes: ...


Source: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | Readable
"""A path, the document itself as bytes, or a binary file object opened for reading."""


class _RefuseResolver(etree.Resolver):
    """Refuses every external resource, should libxml2 ever try to load one."""

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self._name = name

    def resolve(self, url: str | None, pubid: str | None, context: object) -> None:
        raise UnsafeInput(
            "XML document refers to an external resource",
            [Detail(f"refused to load external resource {url or pubid!r}", file=self._name)],
        )


def _new_parser(events: Collection[str], name: str | None,
                tag: str | Collection[str] | None = None) -> Any:
    """A pull parser with every dangerous libxml2 feature switched off."""
    parser = etree.XMLPullParser(
        events=tuple(events),
        tag=tag,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        recover=False,
    )
    parser.resolvers.add(_RefuseResolver(name))
    return parser


# --- reading ---------------------------------------------------------------------------


def _source_name(source: object, name: str | None) -> str | None:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    candidate = getattr(source, "name", None)
    return candidate if isinstance(candidate, str) else None


def _too_big(name: str | None, max_bytes: int) -> SizeLimitExceeded:
    return SizeLimitExceeded(
        "XML document is too large",
        [Detail("document exceeds the size limit", file=name,
                expected=f"at most {max_bytes} bytes", found=f"more than {max_bytes} bytes")],
    )


def _read_limited(stream: Readable, name: str | None, max_bytes: int) -> Iterator[bytes]:
    """Yield chunks of ``stream``; never reads more than ``max_bytes + 1`` bytes in total."""
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return
        total += len(chunk)
        if total > max_bytes:
            raise _too_big(name, max_bytes)
        yield chunk


def _chunks(source: Source, name: str | None, max_bytes: int) -> Iterator[bytes]:
    """Bounded chunks of the document, whatever form ``source`` takes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        if len(view) > max_bytes:
            raise _too_big(name, max_bytes)
        for start in range(0, len(view), _CHUNK):
            yield bytes(view[start:start + _CHUNK])
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            yield from _read_limited(stream, name, max_bytes)
    else:
        yield from _read_limited(source, name, max_bytes)


def _text_chunks(text: str, name: str | None, max_bytes: int) -> Iterator[str]:
    """Chunks of an already decoded document, counted as UTF-8 bytes."""
    total = 0
    for start in range(0, len(text), _CHUNK):
        chunk = text[start:start + _CHUNK]
        total += len(chunk.encode("utf-8", "surrogatepass"))
        if total > max_bytes:
            raise _too_big(name, max_bytes)
        yield chunk


# --- DOCTYPE detection -------------------------------------------------------------------

def _refuse_doctype(name: str | None, line: int | None, how: str) -> UnsafeInput:
    return UnsafeInput(
        "XML document has a document type declaration (DOCTYPE); DTDs are not accepted",
        [Detail(f"DOCTYPE refused ({how}): DTDs, entity declarations and external "
                "subsets are not allowed in uploaded XML", file=name, line=line)],
    )


_SPACE = re.compile(r"[ \t\r\n]*")
_DOCTYPE = "<!DOCTYPE"


class _DoctypeGuard:
    """Scans the prolog of a document as it streams past and refuses a DOCTYPE lexically.

    Each chunk is scanned *before* it is fed to libxml2, so the parser never sees more
    than the first eight characters of a DOCTYPE.  The scan keeps a few characters of
    state only (whether it is inside a comment or a processing instruction), so a prolog
    of any length costs no memory.  Scanning stops at the first thing that is neither
    white space, a comment nor a processing instruction - normally the root element.
    Documents in encodings that are not ASCII-compatible or UTF-16 (UTF-32, EBCDIC) are
    left to the ``docinfo`` check taken when the root element starts.
    """

    def __init__(self, name: str | None) -> None:
        self._name = name
        self._done = False
        self._first = True
        self._start: list[bytes] = []  # the first few bytes, until the encoding is known
        self._decode: Callable[[bytes], str] | None = None
        self._state = ""  # "", "comment" or "pi"
        self._tail = ""  # unresolved text carried over to the next chunk
        self._line = 1  # line number at the start of ``_tail``

    def push(self, chunk: Any) -> list[Any]:
        """Check a chunk; return the chunks that may now go to the parser."""
        if self._done:
            return [chunk]
        if isinstance(chunk, str):
            self._scan(chunk.removeprefix("\ufeff") if self._first else chunk)
            return [chunk]
        self._start.append(chunk)
        head = b"".join(self._start)
        if len(head) < 4:
            return []  # too little to tell the encoding (a BOM may be split)
        self._start = []
        self._scan_bytes(head)
        return [head]

    def finish(self) -> list[Any]:
        """End of input: check and release whatever is still held."""
        head = b"".join(self._start)
        self._start = []
        if head and not self._done:
            self._scan_bytes(head)
        return [head] if head else []

    def _scan_bytes(self, data: bytes) -> None:
        if self._first:
            self._choose_decoder(data)
        if self._decode is None:
            self._done = True  # exotic encoding: only the docinfo check applies
            return
        text = self._decode(data)
        if self._first:
            text = text.removeprefix("\ufeff").removeprefix("\xef\xbb\xbf")
        self._scan(text)

    def _choose_decoder(self, head: bytes) -> None:
        if head[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\x00<",
                        b"<\x00\x00\x00", b"\x4c\x6f\xa7\x94"):
            return  # UTF-32 or EBCDIC
        if head.startswith((b"\xff\xfe", b"<\x00")):
            self._decode = codecs.getincrementaldecoder("utf-16-le")("replace").decode
        elif head.startswith((b"\xfe\xff", b"\x00<")):
            self._decode = codecs.getincrementaldecoder("utf-16-be")("replace").decode
        else:
            # Every byte maps to one character, so positions and newlines survive.
            self._decode = lambda data: data.decode("latin-1")

    def _scan(self, text: str) -> None:
        self._first = False
        buf = self._tail + text
        pos = 0
        while not self._done:
            if self._state:
                close = "-->" if self._state == "comment" else "?>"
                end = buf.find(close, pos)
                if end < 0:
                    pos = max(pos, len(buf) - len(close) + 1)
                    break
                pos, self._state = end + len(close), ""
                continue
            match = _SPACE.match(buf, pos)
            pos = match.end() if match else pos
            rest = buf[pos:pos + len(_DOCTYPE)]
            if rest.startswith("<?"):
                pos, self._state = pos + 2, "pi"
            elif rest.startswith("<!--"):
                pos, self._state = pos + 4, "comment"
            elif rest.upper() == _DOCTYPE:
                line = self._line + buf.count("\n", 0, pos)
                raise _refuse_doctype(self._name, line, "found in the prolog")
            elif len(rest) < len(_DOCTYPE) and (
                    _DOCTYPE.startswith(rest.upper()) or "<!--".startswith(rest)):
                break  # "", "<", "<!", "<!-", "<!DOC"...: wait for more text
            else:
                self._done = True  # the root element (or garbage for libxml2 to report)
        self._line += buf.count("\n", 0, pos)
        self._tail = buf[pos:]


def _check_docinfo(element: Any, name: str | None) -> None:
    """Second opinion from libxml2 itself, taken when the root element starts."""
    info = element.getroottree().docinfo
    if (info.doctype or info.internalDTD is not None or info.externalDTD is not None
            or info.system_url or info.public_id):
        raise _refuse_doctype(name, None, "reported by the parser before the root element")


# --- tag filtering ----------------------------------------------------------------------


def _tag_matcher(tag: str | Collection[str] | None) -> Callable[[str], bool] | None:
    """Mirror lxml's ``tag=`` filter: ``name`` / ``{}name`` mean no namespace, ``{*}name``
    any namespace, ``{ns}*`` any name in ``ns``, ``*`` any element."""
    if tag is None:
        return None
    patterns: list[tuple[str | None, str | None]] = []
    for item in [tag] if isinstance(tag, str) else list(tag):
        if item == "*":
            patterns.append((None, None))
            continue
        ns: str | None = ""
        local = item
        if item.startswith("{"):
            ns, _, local = item[1:].partition("}")
            ns = None if ns == "*" else ns
        patterns.append((ns, None if local == "*" else local))

    def matches(element_tag: str) -> bool:
        if element_tag.startswith("{"):
            ns, _, local = element_tag[1:].partition("}")
        else:
            ns, local = "", element_tag
        return any((p_ns is None or p_ns == ns) and (p_local is None or p_local == local)
                   for p_ns, p_local in patterns)

    return matches


# --- the engine -------------------------------------------------------------------------


def _syntax_error(exc: etree.ParseError, name: str | None) -> InvalidInput:
    """Report libxml2's message and line.

    With ``resolve_entities=False`` the pull parser sometimes raises a generic "no element
    found" (line 0) while the real cause, e.g. an undefined entity, is the last error in
    the (thread-wide, cleared when :func:`_run` starts) error log.
    """
    line = getattr(exc, "lineno", None) or None
    message = getattr(exc, "msg", None) or str(exc)
    if line is None:
        log = getattr(exc, "error_log", None) or []
        errors = [entry for entry in log if entry.level >= etree.ErrorLevels.ERROR]
        if errors:
            last = errors[-1]
            line = last.line or None
            message = f"{last.message}, line {last.line}, column {last.column}"
    return InvalidInput("XML document is not well-formed",
                        [Detail(message, file=name, line=line)])


def _run(chunks: Iterator[Any], name: str | None, events: Collection[str],
         tag: str | Collection[str] | None, result: list[Any]) -> Iterator[tuple[str, Any]]:
    """Feed ``chunks`` to a hardened pull parser and yield the wanted events.

    Nothing is yielded before the root element has started and both DOCTYPE checks have
    passed.  The root element is appended to ``result`` when the document is complete.
    When only element events are wanted, libxml2 itself filters them by ``tag`` (a
    Python test per element costs more than the parse); the ``docinfo`` check is then
    taken at the first element event, or at the end if none matched.
    """
    etree.clear_error_log()
    wanted = set(events)
    native = tag is not None and wanted <= {"start", "end"}
    matches = None if native else _tag_matcher(tag)
    parser = (_new_parser(wanted, name, tag) if native
              else _new_parser(wanted | {"start"}, name))
    guard = _DoctypeGuard(name)
    root_seen = False
    pending: list[tuple[str, Any]] = []

    def drain() -> Iterator[tuple[str, Any]]:
        nonlocal root_seen
        for event, item in parser.read_events():
            if not root_seen:
                if event == "start" or native:
                    _check_docinfo(item, name)
                    root_seen = True
                    yield from pending
                    pending.clear()
                else:
                    if event in wanted:
                        pending.append((event, item))
                    continue
            if event not in wanted:
                continue
            if matches is not None and event in ("start", "end") and not matches(item.tag):
                continue
            yield event, item

    try:
        for chunk in chunks:
            for part in guard.push(chunk):
                parser.feed(part)
                yield from drain()
        for part in guard.finish():
            parser.feed(part)
            yield from drain()
        root = parser.close()
        yield from drain()
    except etree.ParseError as exc:
        raise _syntax_error(exc, name) from None
    if not root_seen:
        _check_docinfo(root, name)
    result.append(root)


def parse(source: Source, *, name: str | None = None,
          max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse untrusted XML into an ``lxml.etree._ElementTree``.

    ``source`` is a path, the document as bytes, or a binary file object.  ``name`` is
    used in error details (defaults to the path or the file object's name).
    """
    name = _source_name(source, name)
    result: list[Any] = []
    for _ in _run(_chunks(source, name, max_bytes), name, (), None, result):
        pass
    return result[0].getroottree()


def fromstring(data: bytes | str, name: str | None = None, *,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse a document held in memory and return its root element.

    A ``str`` is taken as already decoded text (any encoding declaration is ignored by
    lxml); ``max_bytes`` then counts its UTF-8 size.
    """
    chunks: Iterator[Any]
    if isinstance(data, str):
        chunks = _text_chunks(data, name, max_bytes)
    else:
        chunks = _chunks(data, name, max_bytes)
    result: list[Any] = []
    for _ in _run(chunks, name, (), None, result):
        pass
    return result[0]


def iterparse(source: Source, *, tag: str | Collection[str] | None = None,
              events: Collection[str] = ("end",), name: str | None = None,
              max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[str, Any]]:
    """Stream ``(event, item)`` pairs from untrusted XML with the same hardening as
    :func:`parse`.

    ``events`` and ``tag`` follow ``lxml.etree.iterparse`` (``tag`` filters only
    ``start``/``end`` events).  The tree is still built as the parser goes, so memory
    stays bounded only if the caller discards what it has handled - call
    :func:`release` on each element once done with it::

        for _, record in xmlsafe.iterparse(path, tag="{*}record"):
            handle(record)
            xmlsafe.release(record)

    A DOCTYPE is refused before the first event is produced; a size overrun or a syntax
    error is raised when the parser reaches it, possibly after earlier events.
    """
    unknown = set(events) - _EVENTS
    if unknown:
        raise ValueError(f"unknown iterparse events: {sorted(unknown)}")
    name = _source_name(source, name)
    return _run(_chunks(source, name, max_bytes), name, tuple(events), tag, [])


def release(element: Any) -> None:
    """Free an element handled during :func:`iterparse`, and everything before it under
    the same parent, so the partially built tree does not grow without bound."""
    element.clear(keep_tail=True)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]
