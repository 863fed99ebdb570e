"""The SWORD request headers, read as untrusted input.

* ``Content-Disposition`` (RFC 6266/2183/2231): ``filename="..."`` (quoted, with
  backslash escapes), ``filename=unquoted``, ``filename*=UTF-8''percent%20encoded`` (which
  wins), and values the ``sword2`` client percent-encodes without saying so
  (``filename=my%20file.zip``) are all decoded to the name the client meant.  Header bytes
  that are UTF-8 (WSGI hands them over as Latin-1) are read as UTF-8.
* ``In-Progress`` and ``Metadata-Relevant``: ``true``/``false`` in any case; anything else
  is a 400 naming the header.
* ``Packaging``: an IRI; SWORD 1.3's ``X-Packaging`` and ``http://purl.org/net/sword-types/X``
  IRIs (old OJS, Vireo) are read as ``http://purl.org/net/sword/package/X``.
* ``On-Behalf-Of`` (and SWORD 1.3's ``X-On-Behalf-Of``), ``Slug``: bounded text.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_to_bytes

from server.errors import Detail
from server.http.wsgi import Environ
from server.sword.errors import BadRequest

PACKAGE_BASE = "http://purl.org/net/sword/package/"
LEGACY_PACKAGE_BASE = "http://purl.org/net/sword-types/"
MAX_HEADER = 4096

_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header(environ: Environ, *names: str, limit: int = MAX_HEADER) -> str | None:
    """The first of the named headers present (HTTP_... keys), stripped; None if absent."""
    for name in names:
        value = environ.get(name)
        if value is None:
            continue
        text = str(value)
        if len(text) > limit:
            label = name.removeprefix("HTTP_").replace("_", "-").title()
            raise BadRequest(f"header {label} is too long",
                             [Detail("header too long", field=label,
                                     expected=f"at most {limit} characters")])
        return as_text(text).strip()
    return None


def as_text(value: str) -> str:
    """A header value WSGI decoded as Latin-1, re-read as UTF-8 when those bytes are UTF-8."""
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def parse_bool(value: str | None, name: str, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise BadRequest(f"header {name} must be true or false",
                     [Detail("not true or false", field=name, expected="true|false",
                             found=value[:80])],
                     hint=f"Send {name}: true or {name}: false (or leave it out).")


def in_progress(environ: Environ) -> bool:
    return parse_bool(header(environ, "HTTP_IN_PROGRESS"), "In-Progress", False)


def metadata_relevant(environ: Environ, default: bool = True) -> bool:
    return parse_bool(header(environ, "HTTP_METADATA_RELEVANT"), "Metadata-Relevant", default)


def normalise_packaging(value: str | None) -> str | None:
    """The packaging IRI, with SWORD 1.3's ``sword-types`` IRIs read as SWORD 2's."""
    if value is None:
        return None
    text = value.strip().strip("<>").strip()
    if not text:
        return None
    if text.startswith(LEGACY_PACKAGE_BASE):
        text = PACKAGE_BASE + text[len(LEGACY_PACKAGE_BASE):]
    return text


def packaging(environ: Environ) -> str | None:
    return normalise_packaging(header(environ, "HTTP_PACKAGING", "HTTP_X_PACKAGING",
                                      limit=1024))


def on_behalf_of(environ: Environ) -> str | None:
    value = header(environ, "HTTP_ON_BEHALF_OF", "HTTP_X_ON_BEHALF_OF", limit=320)
    return value or None


def slug(environ: Environ) -> str | None:
    value = header(environ, "HTTP_SLUG", limit=1024)
    if not value:
        return None
    text = unquote(value) if _PERCENT.search(value) else value  # RFC 5023 §9.7: %-encoded
    text = "".join(c for c in text if c.isprintable()).strip()
    return text[:255] or None


def media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``(type/subtype lower-cased, parameters)`` of a Content-Type value."""
    if not value:
        return "", {}
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for key, val in split_params(rest):
        params.setdefault(key, val)
    return main.strip().lower(), params


def split_params(text: str) -> list[tuple[str, str]]:
    """``;``-separated ``name=value`` parameters; quoted values unescaped; names
    lower-cased.  Tolerant: a parameter without ``=`` is kept with an empty value."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in "=;":
            i += 1
        name = text[start:i].strip().lower()
        value = ""
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                i += 1
                chars: list[str] = []
                while i < n and text[i] != '"':
                    # A backslash escapes only a quote or a backslash: Windows paths that
                    # browsers send unescaped keep their separators.
                    if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\':
                        i += 1
                    chars.append(text[i])
                    i += 1
                i += 1  # the closing quote (or the end)
                value = "".join(chars)
                while i < n and text[i] != ";":
                    i += 1
            else:
                start = i
                while i < n and text[i] != ";":
                    i += 1
                value = text[start:i].strip()
        if name:
            out.append((name, value))
    return out


def _ext_value(value: str) -> str | None:
    """An RFC 5987/8187 ``charset'lang'pct-encoded`` value, decoded; None if malformed."""
    parts = value.split("'", 2)
    if len(parts) != 3:
        return None
    charset, _lang, encoded = parts
    charset = charset.strip().lower() or "utf-8"
    try:
        return unquote_to_bytes(encoded).decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            return unquote_to_bytes(encoded).decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            return None


def _percent_decoded(value: str) -> str:
    """``my%20file%C3%A9.zip`` -> ``my fileé.zip`` (UTF-8, else Latin-1); values without
    ``%XX`` escapes are left alone."""
    if not _PERCENT.search(value):
        return value
    raw = unquote_to_bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def disposition(value: str | None) -> tuple[str, dict[str, str]]:
    """``(disposition type, parameters)`` of a Content-Disposition value, with ``filename``
    decoded (``filename*`` preferred)."""
    if not value:
        return "", {}
    text = as_text(value)
    kind, _, rest = text.partition(";")
    if "=" in kind:  # no disposition type at all: "filename=x"
        kind, rest = "", text
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    for key, val in split_params(rest):
        if key.endswith("*"):
            decoded = _ext_value(val)
            if decoded is not None:
                extended.setdefault(key[:-1], decoded)
        else:
            params.setdefault(key, val)
    if "filename" in params:
        params["filename"] = _percent_decoded(params["filename"])
    params.update(extended)
    return kind.strip().lower(), params


def filename(value: str | None) -> str | None:
    """The file name a Content-Disposition value gives (None when it gives none)."""
    name = disposition(value)[1].get("filename")
    if name is None:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name or None
