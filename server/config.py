"""Configuration: one YAML file, environment overrides, validated on load.

The schema below is the single source of truth: ``conf/davpack.example.yaml`` documents the
same keys, and a test keeps the two in step.  Unknown keys and bad values raise
:class:`ConfigError` naming the key (``store.max_upload_size``), never a stack trace.
Relative paths are resolved against the working directory at load time (``make run``
runs from the checkout, so ``var/`` lands beside it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server.errors import ConfigError, Detail

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: Any) -> int:
    """Accept ``1048576``, ``"1 MiB"``, ``"10G"``: sizes are always binary multiples."""
    if isinstance(value, bool):
        raise ValueError("a size, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (use bytes or e.g. '10 GiB')")
    unit = (m.group(2) or "").upper()[:1] if m.group(2) and m.group(2).upper() != "B" else ""
    return int(m.group(1)) * _SIZE_UNITS[unit]


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _int(minimum: int, maximum: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("a number, not a boolean")
        number = int(value)
        if not minimum <= number <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return number

    return convert


def _str(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"not a string: {value!r}")
    return str(value)


def _handle_prefix(value: Any) -> str:
    text = _str(value)
    if not re.fullmatch(r"[0-9A-Za-z.]+", text):
        raise ValueError("a handle prefix is letters, digits and dots, e.g. 123456789")
    return text


def _choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _str(value)
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text

    return convert


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else _str(value)


def _url_path(value: Any) -> str:
    """A mount path such as ``/sword``: absolute, no trailing slash, plain segments."""
    text = _str(value).strip()
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", text) or any(
            part in (".", "..") for part in text.split("/")):
        raise ValueError("a path such as /sword: starts with /, no trailing /, segments of "
                         "letters, digits, '.', '_', '~' and '-'")
    return text


@dataclass(frozen=True)
class Key:
    convert: Callable[[Any], Any]
    default: Any
    help: str
    env: str | None = None


SCHEMA: dict[str, dict[str, Key]] = {
    "site": {
        "name": Key(_str, "davpack repository", "Repository name shown in pages and AIPs."),
        "handle_prefix": Key(_handle_prefix, "123456789", "Prefix of minted handles.",
                             "DAVPACK_HANDLE_PREFIX"),
        "base_url": Key(_str, "http://127.0.0.1:8080", "Public URL of the server (links, AIPs).",
                        "DAVPACK_BASE_URL"),
    },
    "database": {
        "url": Key(_str, "sqlite:///var/davpack.db",
                   "SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://user@host/db.",
                   "DAVPACK_DATABASE_URL"),
        "echo": Key(_bool, False, "Log every SQL statement (debugging only)."),
    },
    "store": {
        "path": Key(_str, "var/store", "Directory of the content-addressed store.",
                    "DAVPACK_STORE_PATH"),
        "max_upload_size": Key(parse_size, "64 GiB",
                               "Largest package or bitstream accepted, bytes or '10 GiB'.",
                               "DAVPACK_MAX_UPLOAD_SIZE"),
        "fsync": Key(_bool, True, "fsync every stored file and its directory before commit."),
    },
    "server": {
        "host": Key(_str, "127.0.0.1", "Address to listen on.", "DAVPACK_HOST"),
        "port": Key(_int(0, 65535), 8080, "Port to listen on (0 picks a free one).",
                    "DAVPACK_PORT"),
        "threads": Key(_int(1, 512), 16, "Worker threads of the cheroot server."),
        "block_size": Key(parse_size, "1 MiB", "Read/write block for transfers."),
        "timeout": Key(_int(1, 86400), 300, "Socket timeout in seconds."),
        "staging_dir": Key(_str, "var/staging", "Where uploads are staged before ingest.",
                           "DAVPACK_STAGING_DIR"),
        "default_package": Key(_str, "AIP", "Packager used by GET without ?package=."),
        "log_format": Key(_choice("text", "json"), "text", "Request log format.",
                          "DAVPACK_LOG_FORMAT"),
        "deposit_ttl": Key(_int(0, 86400), 900,
                           "Seconds a file uploaded into a folder stays readable under its "
                           "upload name (0: not kept)."),
        "package_info_cache": Key(_int(0, 10_000_000), 50_000,
                                  "Package sizes and ETags kept for listings (entries of "
                                  "about 650 bytes)."),
        "ssl_certificate": Key(_opt_str, None, "PEM certificate for TLS (cheroot builtin)."),
        "ssl_private_key": Key(_opt_str, None, "PEM private key for TLS."),
    },
    "packagers": {
        "schemas_dir": Key(_opt_str, None, "Local XML schema directory used by validation.",
                           "DAVPACK_SCHEMAS_DIR"),
    },
    "sword": {
        "root": Key(_url_path, "/sword",
                    "Path of the SWORD v2 service document; every SWORD IRI lies below it. "
                    "Uploads are limited by store.max_upload_size.", "DAVPACK_SWORD_ROOT"),
        "mediation": Key(_bool, False,
                         "Accept On-Behalf-Of (mediated deposit); the mediating account needs "
                         "ADMIN rights on the collection.", "DAVPACK_SWORD_MEDIATION"),
        "keep_original": Key(_bool, True,
                             "Keep every deposited file or package as received in the item's "
                             "SWORD bundle (stored once: the store deduplicates)."),
    },
}


@dataclass
class Config:
    """Validated settings: ``config.get("store.path")`` or attribute-style sections."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    def path(self, dotted: str) -> Path:
        return Path(self.get(dotted)).expanduser().resolve()

    # Frequently used settings, typed for callers.
    @property
    def database_url(self) -> str:
        url: str = self.get("database.url")
        return url

    @property
    def handle_prefix(self) -> str:
        prefix: str = self.get("site.handle_prefix")
        return prefix

    @property
    def max_upload_size(self) -> int:
        size: int = self.get("store.max_upload_size")
        return size


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the YAML file, then ``DAVPACK_*`` variables, then ``overrides``."""
    env = os.environ if environ is None else environ
    path = path if path is not None else env.get("DAVPACK_CONFIG") or None
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            raise ConfigError(
                f"configuration file {path} is not valid YAML",
                [Detail(str(exc), file=str(path), line=None if line is None else line + 1)],
            ) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"configuration file {path} must be a mapping of sections")
        raw = loaded

    problems: list[Detail] = []
    values: dict[str, dict[str, Any]] = {}
    for section in raw:
        if section not in SCHEMA:
            problems.append(Detail("unknown section", field=str(section),
                                   expected=", ".join(SCHEMA)))
        elif not isinstance(raw[section] or {}, dict):
            problems.append(Detail("a section must be a mapping", field=str(section)))
    for section, keys in SCHEMA.items():
        given = raw.get(section) or {}
        if not isinstance(given, dict):
            continue
        for name in given:
            if name not in keys:
                problems.append(Detail("unknown key", field=f"{section}.{name}",
                                       expected=", ".join(keys)))
        values[section] = {}
        for name, key in keys.items():
            dotted = f"{section}.{name}"
            value, origin = key.default, "default"
            if name in given:
                value, origin = given[name], "file"
            if key.env and key.env in env:
                value, origin = env[key.env], f"environment variable {key.env}"
            if overrides and dotted in overrides:
                value, origin = overrides[dotted], "override"
            try:
                values[section][name] = key.convert(value)
            except (ValueError, TypeError) as exc:
                problems.append(Detail(f"invalid value from {origin}: {exc}", field=dotted,
                                       found=repr(value)))
    if overrides:
        for dotted in overrides:
            section, _, name = dotted.partition(".")
            if name not in SCHEMA.get(section, {}):
                problems.append(Detail("unknown key", field=dotted))
    if problems:
        fields = ", ".join(sorted({d.field or "?" for d in problems}))
        raise ConfigError(f"invalid configuration ({fields})", problems)
    return Config(values=values, source=None if path is None else str(path))


def example_yaml() -> str:
    """The annotated example configuration, generated from :data:`SCHEMA`."""
    lines = [
        "# davpack configuration. Every key is optional; shown values are the defaults.",
        "# Load with `davpack --config FILE` or DAVPACK_CONFIG=FILE. Environment variables",
        "# (named after each key) override the file. Relative paths are relative to the",
        "# working directory. Sizes accept bytes or units: '10 GiB', '512M'.",
    ]
    for section, keys in SCHEMA.items():
        lines.append("")
        lines.append(f"{section}:")
        for name, key in keys.items():
            lines.append(f"  # {key.help}" + (f" Env: {key.env}." if key.env else ""))
            default = key.default
            rendered = "null" if default is None else yaml.safe_dump(default).strip()
            if rendered.endswith("\n..."):
                rendered = rendered[: -len("\n...")]
            lines.append(f"  {name}: {rendered}")
    return "\n".join(lines) + "\n"
