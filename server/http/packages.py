"""Packagers as the HTTP layer uses them: choose, parameterise, disseminate, ingest.

Query arguments are packager options (multi-valued, in order), except the reserved names
below, which steer the operation itself:

GET/HEAD  ``package``
PUT/POST  ``package``, ``mode`` (``submit``, ``restore``, ``replace``), ``keepExisting``,
          ``forceReplace``, ``all``, ``skipWorkflow``

Options a packager did not declare are refused (400) before any work is done.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from packagers.base import (
    Disseminator,
    FilePackage,
    Ingester,
    IngestRequest,
    IngestResult,
    Mode,
    Operation,
    Package,
    PackageSource,
)
from packagers.errors import UnknownPackager, UnsupportedOperation
from packagers.params import PackageParameters
from server.errors import Detail
from server.http import urls
from server.http.errors import BadRequest, NotAcceptable
from server.http.nodes import Node
from server.http.runtime import PackageInfo, RequestState, Runtime
from server.models import ObjectType

READ_RESERVED = frozenset({"package"})
WRITE_RESERVED = frozenset({"package", "mode", "keepExisting", "forceReplace", "all",
                            "skipWorkflow"})


# ---------------------------------------------------------------------------------------
# Dissemination


def disseminator_for(runtime: Runtime, name: str | None, obj_type: ObjectType) -> type[
        Disseminator]:
    """The disseminator to use (``name``, else the configured default): 406 listing the
    alternatives when it is unknown or cannot write this type of object."""
    wanted = (name or runtime.default_package).strip()
    would_work = [c.name for c in runtime.registry.disseminators_for(obj_type)]
    listing = ", ".join(would_work) or "none"
    try:
        cls = runtime.registry.disseminator(wanted)
    except (UnknownPackager, UnsupportedOperation) as exc:
        raise NotAcceptable(
            f"no package {wanted!r} for {obj_type.value} objects: available are {listing}",
            [Detail(exc.message, field="package", found=wanted, expected=listing)]) from None
    if obj_type not in cls.disseminate_types:
        raise NotAcceptable(
            f"packager {cls.name} cannot disseminate {obj_type.value} objects: available "
            f"are {listing}",
            [Detail("object type not supported by this package", field="package",
                    found=cls.name, expected=listing)])
    return cls


def default_disseminator(runtime: Runtime, obj_type: ObjectType) -> type[Disseminator] | None:
    """The configured default packager when it can write ``obj_type``, else None."""
    try:
        return disseminator_for(runtime, None, obj_type)
    except NotAcceptable:
        return None


def options(pairs: list[tuple[str, str]], reserved: frozenset[str]) -> PackageParameters:
    return PackageParameters((k, v) for k, v in pairs if k not in reserved)


def check_options(params: PackageParameters, cls: type[Any], direction: str) -> None:
    params.check_known(cls.option_names(direction), cls.name)


def _canonical_params(params: PackageParameters) -> str:
    return "&".join(f"{k}={v}" for k in sorted(params) for v in params[k])


def info_key(node: Node, cls: type[Disseminator], params: PackageParameters,
             actor: uuid.UUID | None) -> tuple[Any, ...]:
    return (node.id, node.last_modified, cls.name, _canonical_params(params), actor)


def derived_etag(key: tuple[Any, ...], size: int) -> str:
    text = "|".join(str(part) for part in key) + f"|{size}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _clean_etag(value: str) -> str:
    """ETags go between double quotes: keep them to visible ASCII without quotes."""
    value = value.strip().removeprefix("W/").strip('"')
    if value and all(33 <= ord(c) <= 126 and c != '"' for c in value):
        return value
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:40]


class _SpooledPackage(FilePackage):
    """A package of unknown length written once to a temp file (removed on close)."""


def _spool(package: Package, staging_dir: Path) -> Package:
    staging_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=staging_dir, prefix="package-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            package.write_to(out)
        spooled = _SpooledPackage(path, mime_type=package.mime_type,
                                  file_name=package.file_name,
                                  last_modified=package.last_modified, etag=package.etag,
                                  remove_on_close=True)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        package.close()
    return spooled


@dataclass
class OpenPackage:
    """A disseminated package with everything its response needs, sizes exact."""

    package: Package
    size: int
    etag: str
    mime_type: str
    file_name: str
    last_modified: datetime

    def iter_bytes(self, start: int, end: int) -> Iterator[bytes]:
        return self.package.iter_bytes(start, end)

    def close(self) -> None:
        self.package.close()


def open_package(state: RequestState, node: Node, cls: type[Disseminator],
                 params: PackageParameters) -> OpenPackage:
    """Disseminate ``node``; the request's read unit of work is released first (the
    packager opens its own, and the package no longer needs the database)."""
    runtime = state.runtime
    state.release()
    package = cls().disseminate(Operation(runtime.repo, actor=state.actor), node.id, params)
    try:
        if package.size is None:
            package = _spool(package, runtime.staging_dir)
        size = package.size
        assert size is not None
        key = info_key(node, cls, params, state.actor)
        etag = _clean_etag(package.etag) if package.etag else derived_etag(key, size)
        opened = OpenPackage(package, size, etag, package.mime_type or cls.mime_types[0],
                             package.file_name, package.last_modified or node.last_modified)
        runtime.package_info.put(key, PackageInfo(size, etag, opened.mime_type,
                                                  opened.file_name, opened.last_modified))
        return opened
    except BaseException:
        package.close()
        raise


def package_info(state: RequestState, node: Node, cls: type[Disseminator]) -> PackageInfo:
    """Size, ETag and type of ``node``'s default-option package, from the cache or by
    disseminating it once (nothing is streamed)."""
    params = PackageParameters()
    key = info_key(node, cls, params, state.actor)
    found = state.runtime.package_info.get(key)
    if found is not None:
        return found
    opened = open_package(state, node, cls, params)
    opened.close()
    return PackageInfo(opened.size, opened.etag, opened.mime_type, opened.file_name,
                       opened.last_modified)


def cached_info(state: RequestState, node: Node, cls: type[Disseminator],
                params: PackageParameters) -> PackageInfo | None:
    """What a previous dissemination of this item package measured, if still valid.

    Only items: any change to an item, its files, metadata or policies moves its
    ``last_modified`` (part of the key), which is not true of a container's package
    (it lists children that change on their own)."""
    if node.type is not ObjectType.ITEM:
        return None
    return state.runtime.package_info.get(info_key(node, cls, params, state.actor))


# ---------------------------------------------------------------------------------------
# Ingest


@dataclass
class WritePlan:
    """What a PUT or POST asks for, read from the query and headers before the body."""

    package: str | None
    packaging: str | None
    request: IngestRequest


def write_plan(pairs: list[tuple[str, str]], environ: dict[str, Any], *,
               default_mode: Mode) -> WritePlan:
    from server.http.wsgi import header_text, parse_bool, query_value

    mode_text = query_value(pairs, "mode")
    try:
        mode = Mode(mode_text.strip().lower()) if mode_text else default_mode
    except ValueError:
        raise BadRequest(f"unknown mode {mode_text!r}",
                         [Detail("unknown mode", field="mode", expected="submit, restore, "
                                 "replace", found=mode_text)]) from None
    if parse_bool(query_value(pairs, "forceReplace"), "forceReplace"):
        mode = Mode.REPLACE
    request = IngestRequest(
        mode=mode,
        params=options(pairs, WRITE_RESERVED),
        keep_existing=parse_bool(query_value(pairs, "keepExisting"), "keepExisting"),
        recursive=parse_bool(query_value(pairs, "all"), "all"),
        skip_workflow=parse_bool(query_value(pairs, "skipWorkflow"), "skipWorkflow"),
    )
    package = query_value(pairs, "package")
    packaging = header_text(environ, "HTTP_PACKAGING", 1024)
    return WritePlan(package.strip() if package else None,
                     packaging.strip() if packaging else None, request)


def choose_ingester(runtime: Runtime, plan: WritePlan, *, content_type: str | None,
                    source: PackageSource | None, parent_type: ObjectType | None,
                    replace_type: ObjectType | None) -> type[Ingester] | None:
    """The ingester for this upload; None when only the body can tell (``source`` is
    None and neither a name nor a SWORD packaging was given)."""
    if source is None and not plan.package and not plan.packaging:
        return None
    cls = runtime.registry.choose_ingester(name=plan.package, sword_packaging=plan.packaging,
                                           content_type=content_type, source=source,
                                           parent_type=parent_type)
    if parent_type is not None and parent_type not in cls.ingest_parent_types:
        where = ", ".join(sorted(t.value for t in cls.ingest_parent_types)) or "nothing"
        raise UnsupportedOperation(
            f"packager {cls.name} cannot ingest into a {parent_type.value} (it ingests "
            f"into: {where})",
            [Detail("wrong parent type for this package", field="package", found=cls.name,
                    expected=where)])
    if replace_type is not None and replace_type not in cls.replace_types:
        can = ", ".join(sorted(t.value for t in cls.replace_types)) or "nothing"
        raise UnsupportedOperation(
            f"packager {cls.name} cannot replace a {replace_type.value} (it replaces: "
            f"{can})",
            [Detail("object type not replaceable with this package", field="package",
                    found=cls.name, expected=can)])
    check_options(plan.request.params, cls, "ingest")
    return cls


def ingest(state: RequestState, cls: type[Ingester], source: PackageSource,
           request: IngestRequest) -> IngestResult:
    state.release()
    return cls().ingest(Operation(state.repo, actor=state.actor), source, request)


def replace(state: RequestState, cls: type[Ingester], target: uuid.UUID,
            source: PackageSource, request: IngestRequest) -> IngestResult:
    state.release()
    return cls().replace(Operation(state.repo, actor=state.actor), target, source, request)


def receipt(result: IngestResult, *, base: str, packager: str) -> dict[str, Any]:
    """The JSON body answering an ingest: the primary object first, then every object."""
    def url_of(handle: str | None, object_id: uuid.UUID | None) -> str | None:
        if not handle and object_id is None:
            return None
        return urls.absolute(base, urls.object_path(handle, object_id))

    objects = []
    for obj in result.objects:
        record = obj.as_dict()
        record["url"] = url_of(obj.handle, obj.uuid)
        objects.append(record)
    primary = result.primary
    body: dict[str, Any] = {"packager": packager, "warnings": list(result.warnings),
                            "objects": objects}
    if primary is not None:
        body.update({"outcome": primary.outcome.value, "type": primary.type.value,
                     "handle": primary.handle,
                     "uuid": str(primary.uuid) if primary.uuid else None,
                     "url": url_of(primary.handle, primary.uuid)})
        body["warnings"] = list(result.warnings) + [w for w in primary.warnings
                                                    if w not in result.warnings]
    return body
