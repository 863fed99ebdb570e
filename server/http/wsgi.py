"""Small WSGI helpers shared by the HTTP modules: types, query and header parsing.

Everything here treats the environ as untrusted input: malformed values raise
:class:`server.errors.InvalidInput` (answered 400), never a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from server.errors import Detail, InvalidInput

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

MAX_QUERY = 8192
"""Longest query string accepted (longer ones are refused before parsing)."""


def query_pairs(environ: Environ) -> list[tuple[str, str]]:
    """The query string as ordered ``(name, value)`` pairs (blank values kept)."""
    raw = environ.get("QUERY_STRING") or ""
    if len(raw) > MAX_QUERY:
        raise InvalidInput("the query string is too long",
                           [Detail("query string too long", field="query",
                                   expected=f"<= {MAX_QUERY} characters")])
    try:
        return parse_qsl(raw, keep_blank_values=True, strict_parsing=False,
                         errors="strict", max_num_fields=256)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the query string cannot be parsed",
                           [Detail(str(exc), field="query")]) from None


def query_value(pairs: list[tuple[str, str]], name: str) -> str | None:
    for key, value in pairs:
        if key == name:
            return value
    return None


def parse_bool(value: str | None, name: str, default: bool = False) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("", "1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name} must be true or false",
                       [Detail("not a boolean", field=name, expected="true|false",
                               found=value[:80])])


def content_length(environ: Environ) -> int | None:
    """The declared body length; None when the body is chunked or absent."""
    raw = (environ.get("CONTENT_LENGTH") or "").strip()
    if raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise InvalidInput("Content-Length is not a non-negative integer",
                           [Detail("invalid Content-Length", field="Content-Length",
                                   found=raw[:40])])
    return int(raw)


def has_body(environ: Environ) -> bool:
    length = content_length(environ)
    if length is not None:
        return length > 0
    return "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()


def base_url(environ: Environ) -> str:
    """``scheme://host[:port]`` plus the application's mount point (SCRIPT_NAME)."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host or any(c in host for c in "/\\@ \t\r\n"):
        host = environ.get("SERVER_NAME", "localhost")
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != ("443" if scheme == "https" else "80"):
            host = f"{host}:{port}"
    mount = environ.get("davpack.mount", "")
    return f"{scheme}://{host}{mount}"


def header_text(environ: Environ, key: str, limit: int = 4096) -> str | None:
    """A request header value, or None; values longer than ``limit`` are refused."""
    value = environ.get(key)
    if value is None:
        return None
    if len(value) > limit:
        raise InvalidInput(f"header {key[5:].replace('_', '-').title()} is too long",
                           [Detail("header too long", field=key, expected=f"<= {limit}")])
    return str(value)
