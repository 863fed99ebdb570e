"""XML Schema validation of METS manifests against a *local* schema directory.

DSpace's advice (seeds/001, "AIP Configurations To Improve Ingestion Speed while
Validating") is to keep a local cache of the schemas; here the cache is the only source:
validation never touches the network.

The directory (config ``packagers.schemas_dir``) is searched for ``*.xsd`` files, and each
is catalogued under its ``targetNamespace``.  A file ``catalog.txt`` in the directory, with
lines ``<namespace> <relative path>`` (what ``davpack schemas fetch`` writes; the same
shape as DSpace's ``mets.xsd.<abbr>`` settings), takes precedence.  When several files
declare the same namespace, the one whose base name is the conventional one (``mets.xsd``,
``xlink.xsd``, ``mods.xsd``, ``xml.xsd``) wins, then the first in path order.

The METS and XLink schemas are required: without them validation fails, naming the
missing namespace.  The vocabularies embedded in an AIP are validated when their schema is
present (MODS, PREMIS 1, METSRights, the XML namespace) and otherwise checked laxly - the
METS schema declares ``xmlData`` content as ``processContents="lax"`` - with a warning
naming what was not checked.  ``xs:import`` locations inside the schemas are redirected to
the catalogued files (by namespace, then by base name); an import that cannot be satisfied
locally is an error naming its URL, never a download.

Schema files are the administrator's own local files, not package input, so they are read
with lxml directly (network, DTD loading and entity expansion off); the manifests being
validated always come through :mod:`server.xmlsafe`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lxml import etree

from packagers.aip.mets import METS_NS, MODS_NS, PREMIS_NS, RIGHTS_NS, XLINK_NS, XML_NS
from packagers.errors import PackageValidationError
from server import xmlsafe
from server.errors import ConfigError, Detail

CATALOG_FILE = "catalog.txt"
REQUIRED = (XML_NS, XLINK_NS, METS_NS)
EMBEDDED = (MODS_NS, PREMIS_NS, RIGHTS_NS)
CONVENTIONAL = {METS_NS: "mets.xsd", XLINK_NS: "xlink.xsd", MODS_NS: "mods.xsd",
                XML_NS: "xml.xsd", PREMIS_NS: "premis-v1.xsd", RIGHTS_NS: "metsrights.xsd"}
_TARGET = re.compile(rb'targetNamespace\s*=\s*["\']([^"\']+)["\']')

# What `davpack schemas fetch` downloads: (namespace, file name, URL).
OFFICIAL = (
    (XML_NS, "xml.xsd", "https://www.w3.org/2001/xml.xsd"),
    (XLINK_NS, "xlink.xsd", "https://www.loc.gov/standards/xlink/xlink.xsd"),
    (METS_NS, "mets.xsd", "https://www.loc.gov/standards/mets/mets.xsd"),
    (MODS_NS, "mods.xsd", "https://www.loc.gov/standards/mods/mods.xsd"),
    (PREMIS_NS, "premis-v1.xsd", "https://www.loc.gov/standards/premis/v1/PREMIS-v1-1.xsd"),
    (RIGHTS_NS, "metsrights.xsd", "http://cosimo.stanford.edu/sdr/metsrights.xsd"),
)


@dataclass
class Catalog:
    directory: Path
    by_namespace: dict[str, Path] = field(default_factory=dict)
    by_basename: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Catalog:
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(f"the schema directory {root} does not exist",
                              [Detail("schema directory missing", field="packagers.schemas_dir",
                                      found=str(root))])
        catalog = cls(root)
        files = sorted(p for p in root.rglob("*.xsd") if p.is_file())
        candidates: dict[str, list[Path]] = {}
        for path in files:
            catalog.by_basename.setdefault(path.name, path)
            with open(path, "rb") as fh:
                head = fh.read(16384)
            found = _TARGET.search(head)
            if found:
                namespace = found.group(1).decode("utf-8", "replace")
                candidates.setdefault(namespace, []).append(path)
        for namespace, paths in candidates.items():
            conventional = [p for p in paths if p.name == CONVENTIONAL.get(namespace)]
            catalog.by_namespace[namespace] = (conventional or paths)[0]
        listing = root / CATALOG_FILE
        if listing.is_file():
            for number, line in enumerate(listing.read_text("utf-8").splitlines(), 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                parts = text.split()
                if len(parts) != 2:
                    raise ConfigError(f"{listing}: line {number} is not '<namespace> <file>'",
                                      [Detail("bad catalog line", file=str(listing),
                                              line=number, found=text)])
                target = (root / parts[1]).resolve()
                if not target.is_file() or root.resolve() not in target.parents:
                    raise ConfigError(f"{listing}: line {number} names a missing file",
                                      [Detail("catalogued schema missing", file=str(listing),
                                              line=number, found=parts[1])])
                catalog.by_namespace[parts[0]] = target
                catalog.by_basename[target.name] = target
        return catalog

    def locate(self, url: str) -> Path | None:
        """A local file for an import/include location: a catalogued file by base name."""
        if url.startswith("file:"):
            path = Path(url[len("file://"):] if url.startswith("file://") else url[5:])
            resolved = path.resolve()
            base = self.directory.resolve()
            if resolved.is_file() and (base == resolved.parent or base in resolved.parents):
                return resolved
        name = url.rstrip("/").rsplit("/", 1)[-1]
        return self.by_basename.get(name)


class _LocalResolver(etree.Resolver):
    """Imports and includes resolve to catalogued files only; the rest are recorded."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog
        self.missing: list[str] = []

    def resolve(self, url: str | None, pubid: str | None, context: Any) -> Any:
        if url is None:
            return None
        local_file = self.catalog.locate(url)
        if local_file is not None:
            return self.resolve_filename(str(local_file), context)
        self.missing.append(url)
        return self.resolve_string('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>',
                                   context)


@dataclass
class CompiledSchema:
    schema: Any
    unchecked: list[str]


_cache: dict[tuple[str, tuple[str, ...]], CompiledSchema] = {}
_lock = threading.Lock()


def compile_schema(directory: str | os.PathLike[str],
                   required: Iterable[str] = REQUIRED,
                   optional: Iterable[str] = EMBEDDED) -> CompiledSchema:
    """One XML Schema importing every required and available optional namespace."""
    catalog = Catalog.load(directory)
    required = tuple(required)
    missing = [ns for ns in required if ns not in catalog.by_namespace]
    if missing:
        raise PackageValidationError(
            "cannot validate: the local schema directory has no schema for "
            + ", ".join(missing) + f" (add it to {catalog.directory} or run "
            "'davpack schemas fetch')",
            [Detail("schema missing", file=str(catalog.directory), field=ns) for ns in missing])
    wanted = list(required) + [ns for ns in optional if ns in catalog.by_namespace]
    unchecked = [ns for ns in optional if ns not in catalog.by_namespace]
    key = (str(catalog.directory.resolve()),
           tuple(f"{ns}={catalog.by_namespace[ns]}:{_mtime(catalog.by_namespace[ns])}"
                 for ns in wanted))
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
    imports = "".join(f'<xs:import namespace="{ns}" '
                      f'schemaLocation="{catalog.by_namespace[ns].resolve().as_uri()}"/>'
                      for ns in wanted)
    wrapper = f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{imports}</xs:schema>'
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    resolver = _LocalResolver(catalog)
    parser.resolvers.add(resolver)
    document = etree.fromstring(wrapper.encode("utf-8"), parser)
    try:
        schema = etree.XMLSchema(document)
    except etree.XMLSchemaParseError as exc:
        details = [Detail("schema import not available locally", file=url,
                          field="xs:import/@schemaLocation") for url in resolver.missing]
        details += [Detail(str(e.message), file=e.filename, line=e.line or None)
                    for e in exc.error_log][:10]
        raise PackageValidationError(
            "cannot validate: the local schemas do not compile"
            + (f"; not available locally: {', '.join(resolver.missing)}"
               if resolver.missing else ""), details) from None
    if resolver.missing:
        raise PackageValidationError(
            "cannot validate: schemas import files that are not in the schema directory: "
            + ", ".join(resolver.missing),
            [Detail("schema import not available locally", file=url) for url in
             resolver.missing])
    compiled = CompiledSchema(schema, unchecked)
    with _lock:
        _cache[key] = compiled
    return compiled


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def validate(source: IO[bytes] | bytes, name: str, directory: str | os.PathLike[str]
             ) -> list[str]:
    """Validate a METS document; raise :class:`PackageValidationError` listing the errors
    (file, line), return warnings about vocabularies that could only be checked laxly."""
    compiled = compile_schema(directory)
    tree = xmlsafe.parse(source, name=name, max_bytes=4 * 1024**3)
    if not compiled.schema.validate(tree):
        errors = list(compiled.schema.error_log)
        details = [Detail(e.message, file=name, line=e.line or None) for e in errors[:50]]
        raise PackageValidationError(
            f"{name} is not valid METS ({len(errors)} schema error"
            f"{'s' if len(errors) != 1 else ''})", details)
    return [f"{name}: no local schema for {ns}; its sections were checked laxly"
            for ns in compiled.unchecked]


REQUIRED_FETCH = frozenset(REQUIRED)


def fetch(directory: str | os.PathLike[str], *, timeout: float = 30.0) -> list[str]:
    """Download the official schemas into ``directory`` and write its ``catalog.txt``.

    Returns one line per schema (what was stored, or why an optional one was not).  The
    required ones (XML, XLink, METS) must all arrive, else nothing is changed and a
    :class:`~server.errors.DavpackError` says which could not be fetched and how to put
    the files there by hand.
    """
    import requests

    from server.errors import DavpackError

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    fetched: dict[str, tuple[str, bytes]] = {}
    report: list[str] = []
    problems: list[Detail] = []
    for namespace, file_name, url in OFFICIAL:
        try:
            response = requests.get(url, timeout=timeout)
            response.raise_for_status()
            body = response.content
            found = _TARGET.search(body[:16384])
            if not found or found.group(1).decode("utf-8", "replace") != namespace:
                raise ValueError(f"the document at {url} is not the schema of {namespace}")
        except (requests.RequestException, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if namespace in REQUIRED_FETCH:
                problems.append(Detail(f"download failed: {reason}", file=url, field=namespace))
            else:
                report.append(f"skipped {file_name} ({namespace}): {reason}")
            continue
        fetched[namespace] = (file_name, body)
    if problems:
        raise DavpackError(
            "could not download the schemas validation needs (is the network reachable?); "
            f"alternatively copy the XSD files into {root} and list them in "
            f"{root / CATALOG_FILE} as '<namespace> <file>' lines", problems)
    lines = ["# namespace file (written by davpack schemas fetch)"]
    for namespace, (file_name, body) in fetched.items():
        target = root / file_name
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(body)
        os.replace(partial, target)
        lines.append(f"{namespace} {file_name}")
        report.append(f"stored {file_name} ({namespace}, {len(body)} bytes)")
    (root / CATALOG_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
