"""Sending a representation with exact length: conditional requests, ranges, HEAD.

One function serves generated packages and stored bitstreams alike.  It evaluates the
preconditions in the order RFC 9110 §13.2.2 gives (If-Match, If-Unmodified-Since,
If-None-Match, If-Modified-Since, then Range with If-Range), answers 304/412/416 without
producing a byte, and otherwise streams ``[start, end)`` from the source.  A single byte
range is served as 206; several ranges are answered with the whole representation (RFC
9110 allows ignoring Range), since multipart bodies buy a resuming client nothing.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from server.http.errors import PreconditionFailed, RangeNotSatisfiable, status_line
from server.http.wsgi import Environ, StartResponse

SAFE_INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif",
                               "text/plain"})


def http_date(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _seconds(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _etags(header: str) -> list[tuple[bool, str]]:
    """``[(weak, opaque-tag)]`` from an If-Match/If-None-Match value; ``*`` as ``(False,
    "*")``."""
    out = []
    for part in header.split(","):
        tag = part.strip()
        if not tag:
            continue
        if tag == "*":
            out.append((False, "*"))
            continue
        weak = tag.startswith("W/")
        tag = tag[2:] if weak else tag
        out.append((weak, tag.strip().strip('"')))
    return out


def none_match(environ: Environ, etag: str) -> bool:
    """True when ``If-None-Match`` names ``etag`` (weakly) or is ``*``."""
    header = environ.get("HTTP_IF_NONE_MATCH")
    return header is not None and any(t in ("*", etag) for _, t in _etags(header))


def content_disposition(file_name: str, disposition: str = "attachment") -> str:
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in file_name)
    return (f'{disposition}; filename="{fallback}"; '
            f"filename*=UTF-8''{quote(file_name, safe='')}")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range ``[start, end)`` asked for; None to send everything; raises
    :class:`RangeNotSatisfiable` when the range lies outside ``size`` bytes."""
    if not header or size <= 0:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable("an empty suffix range selects nothing", size)
        return max(0, size - length), size
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(f"the range starts at {start}, beyond the last byte", size)
    end = size if not last else min(size, int(last) + 1)
    if end <= start:
        return None  # "bytes=9-3" is invalid syntax: ignore the header
    return start, end


class Body:
    """A WSGI response iterable whose ``close()`` always releases the source, also when
    the body was never iterated (HEAD, 304) or the client went away mid-stream."""

    def __init__(self, chunks: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


def send(environ: Environ, start_response: StartResponse, *, size: int, etag: str,
         last_modified: datetime, mime_type: str, file_name: str,
         chunks: Callable[[int, int], Iterator[bytes]], on_close: Callable[[], None],
         disposition: str = "attachment",
         extra_headers: Iterable[tuple[str, str]] = ()) -> Body:
    """Answer GET/HEAD for a representation of ``size`` bytes (see the module text)."""
    try:
        return _send(environ, start_response, size=size, etag=etag,
                     last_modified=last_modified, mime_type=mime_type, file_name=file_name,
                     chunks=chunks, on_close=on_close, disposition=disposition,
                     extra_headers=extra_headers)
    except BaseException:
        on_close()
        raise


def _send(environ: Environ, start_response: StartResponse, *, size: int, etag: str,
          last_modified: datetime, mime_type: str, file_name: str,
          chunks: Callable[[int, int], Iterator[bytes]], on_close: Callable[[], None],
          disposition: str, extra_headers: Iterable[tuple[str, str]]) -> Body:
    method = environ.get("REQUEST_METHOD", "GET")
    modified = _seconds(last_modified)
    validators = [("ETag", f'"{etag}"'), ("Last-Modified", http_date(last_modified))]

    if_match = environ.get("HTTP_IF_MATCH")
    if if_match is not None:
        tags = _etags(if_match)
        if not any(t == "*" or (not weak and t == etag) for weak, t in tags):
            raise PreconditionFailed("If-Match does not match the current ETag")
    else:
        since = _parse_date(environ.get("HTTP_IF_UNMODIFIED_SINCE"))
        if since is not None and modified > int(since.timestamp()):
            raise PreconditionFailed("the resource changed after If-Unmodified-Since")

    if_none = environ.get("HTTP_IF_NONE_MATCH")
    not_modified = False
    if if_none is not None:
        not_modified = any(t in ("*", etag) for _, t in _etags(if_none))
    else:
        since = _parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))
        not_modified = since is not None and modified <= int(since.timestamp())
    if not_modified:
        # RFC 9110 §8.6: a 304 may carry Content-Length only with the full length
        start_response(status_line(304), [*validators, ("Cache-Control", "private"),
                                          ("Content-Length", str(size))])
        return Body([], on_close)

    wanted: tuple[int, int] | None = None
    if method == "GET":
        wanted = parse_range(environ.get("HTTP_RANGE"), size)
        if_range = environ.get("HTTP_IF_RANGE")
        if wanted is not None and if_range is not None:
            value = if_range.strip()
            if value.startswith('"') or value.startswith("W/"):
                weak, tag = _etags(value)[0] if _etags(value) else (True, "")
                if weak or tag != etag:
                    wanted = None
            else:
                date = _parse_date(value)
                if date is None or int(date.timestamp()) != modified:
                    wanted = None

    start, end = wanted if wanted is not None else (0, size)
    headers = [("Content-Type", mime_type), ("Content-Length", str(end - start)),
               *validators, ("Accept-Ranges", "bytes"),
               ("Content-Disposition", content_disposition(file_name, disposition)),
               ("Cache-Control", "private"), ("X-Content-Type-Options", "nosniff"),
               *extra_headers]
    if wanted is not None:
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        start_response(status_line(206), headers)
    else:
        start_response(status_line(200), headers)
    if method == "HEAD" or start == end:
        return Body([], on_close)
    return Body(chunks(start, end), on_close)


def disposition_for(mime_type: str) -> str:
    """Bitstreams open in the browser only for types that cannot run script."""
    base = mime_type.split(";", 1)[0].strip().lower()
    return "inline" if base in SAFE_INLINE_TYPES else "attachment"


def no_body(start_response: StartResponse, code: int,
            headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    start_response(status_line(code), [("Content-Length", "0"), *headers])
    return []


def json_body(start_response: StartResponse, code: int, body: Any,
              headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    import json

    payload = (json.dumps(body, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    start_response(status_line(code), [("Content-Type", "application/json; charset=utf-8"),
                                       ("Content-Length", str(len(payload))),
                                       ("Cache-Control", "no-store"), *headers])
    return [payload]
