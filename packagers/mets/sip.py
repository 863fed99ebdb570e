"""Where a SIP's files come from: a zip (or tar), a directory (command line), or nowhere
(a bare ``mets.xml``, whose files must already be in this repository).

davpack never fetches content from the network.  A file referenced by an absolute URL is
accepted only when the URL names a bitstream of this repository that the depositor may
read -- the ``/handle/<prefix>/<suffix>/<bundle>/<name>`` (or ``/uuid/<item>/...``) URLs
of :mod:`server.http.urls` under ``site.base_url``, which is what a ``manifestOnly``
dissemination writes, or DSpace's ``/bitstreams/<uuid>/download`` -- and then the stored
content is reused without being copied.
"""

from __future__ import annotations

import os
import re
import stat
import uuid
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from packagers.base import PackageSource
from packagers.errors import PackageValidationError
from packagers.imscp.packager import repaired_name
from packagers.itemkit import archive_path_problem
from packagers.mets.manifest import MANIFEST, MAX_MANIFEST_BYTES
from server import models as m
from server.archive import SafeArchive, junk_name
from server.context import Context
from server.errors import Detail, InvalidInput, SizeLimitExceeded, UnsafeInput
from server.http import urls
from server.services import authz, handles, objects

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_DOWNLOAD = re.compile(r"/bitstreams/([0-9a-fA-F-]{36})(?:/download)?/?")


def is_url(href: str) -> bool:
    return bool(_SCHEME.match(href)) or href.startswith("//")


def looks_like_xml(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"<") or head.startswith((b"\xff\xfe", b"\xfe\xff"))


class PackageFiles:
    """The members of a package by name (normalised as :mod:`server.archive` does)."""

    def __init__(self, source: PackageSource, *, manifest_only: bool) -> None:
        self.label = source.label
        self.kind = "bare"
        self._archive: SafeArchive | None = None
        self._dir: Path | None = None
        self._path = source.path
        self._raw: dict[str, str] = {}
        if source.is_directory:
            self.kind = "directory"
            self._dir = source.path.resolve()
            _check_directory(self._dir, self.label)
            for dirpath, _dirs, names in os.walk(self._dir):
                for name in names:
                    rel = Path(dirpath, name).relative_to(self._dir).as_posix()
                    self._raw[rel] = rel
        elif looks_like_xml(source.head(64)):
            self.kind = "bare"
        elif manifest_only:
            raise PackageValidationError(
                f"{self.label}: manifestOnly=true, but the package is not a bare mets.xml",
                [Detail("not an XML document", file=self.label, field="manifestOnly",
                        expected="mets.xml")])
        else:
            try:
                self._archive = SafeArchive.open(source.path, name=self.label)
            except InvalidInput as exc:
                if type(exc) is not InvalidInput:  # unsafe, too large: as it is
                    raise
                raise PackageValidationError(
                    "No METS Manifest found (filename=mets.xml). Package is unacceptable!",
                    [Detail("neither a zip holding mets.xml nor a bare mets.xml", file=self.label,
                            expected="a zip with mets.xml at its root")]) from exc
            self.kind = "archive"
            for raw in self._archive.names():
                self._raw.setdefault(repaired_name(raw), raw)

    @property
    def bare(self) -> bool:
        return self.kind == "bare"

    def manifest(self) -> bytes:
        """The bytes of mets.xml (refused when missing, or larger than the limit)."""
        if self.bare:
            size = self._path.stat().st_size
            if size > MAX_MANIFEST_BYTES:
                raise _too_large(self.label)
            return self._path.read_bytes()
        if MANIFEST not in self._raw:
            nested = sorted(n for n in self._raw if n.endswith("/" + MANIFEST))
            detail = (Detail("mets.xml must be at the root of the package, not in a folder",
                             file=nested[0], expected=MANIFEST, found=nested[0]) if nested
                      else Detail("no mets.xml at the root of the package", file=self.label,
                                  expected=MANIFEST))
            raise PackageValidationError(
                "No METS Manifest found (filename=mets.xml). Package is unacceptable!",
                [detail])
        with self.open(MANIFEST) as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise _too_large(self.label)
        return data

    def names(self) -> list[str]:
        """Every file but mets.xml and operating-system clutter."""
        return [n for n in self._raw if n != MANIFEST and not junk_name(n)]

    def find(self, href: str) -> str | None:
        """The member an href names: verbatim (as DSpace reads it), else percent-decoded."""
        for candidate in (href, unquote(href)):
            name = candidate.removeprefix("./")
            if name in self._raw:
                return name
        return None

    def open(self, name: str) -> IO[bytes]:
        raw = self._raw[name]
        if self._archive is not None:
            return self._archive.open(raw)
        assert self._dir is not None
        return open(self._dir / raw, "rb")

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None

    def __enter__(self) -> PackageFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _too_large(label: str) -> SizeLimitExceeded:
    return SizeLimitExceeded(f"{label}: mets.xml is too large", [Detail(
        "manifest larger than allowed", file=MANIFEST,
        expected=f"at most {MAX_MANIFEST_BYTES} bytes")])


def _check_directory(root: Path, label: str) -> None:
    """Only directories and regular files: a link could make the store copy anything the
    server can read."""
    findings: list[Detail] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                findings.append(Detail("symbolic links are not accepted",
                                       file=full.relative_to(root).as_posix()))
            elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                findings.append(Detail("not a regular file or directory",
                                       file=full.relative_to(root).as_posix()))
    if findings:
        raise UnsafeInput(f"{label}: unsafe package directory refused", findings)


def href_problem(href: str) -> str | None:
    """Why a relative href cannot name a member of the package (None: it can)."""
    for candidate in {href, unquote(href)}:
        problem = archive_path_problem(candidate.removeprefix("./"))
        if problem is not None:
            return problem
    return None


# ---------------------------------------------------------------------------------------
# References to this repository's own bitstreams


def local_bitstream(ctx: Context, href: str, base_url: str) -> m.Bitstream | None:
    """The bitstream of this repository an absolute URL names, when the actor may read it
    (None for anything else: foreign URLs are never fetched)."""
    target = urlsplit(href)
    base = urlsplit(base_url)
    if (target.scheme.lower(), target.netloc.lower()) != (base.scheme.lower(),
                                                          base.netloc.lower()):
        return None
    mount = base.path.rstrip("/")
    path = unquote(target.path)
    if mount:
        if not path.startswith(mount + "/"):
            return None
        path = path[len(mount):]
    found = _DOWNLOAD.fullmatch(path)
    bitstream: m.Bitstream | None = None
    if found is not None:
        try:
            obj = objects.get(ctx, uuid.UUID(found.group(1)))
        except ValueError:
            obj = None
        bitstream = obj if isinstance(obj, m.Bitstream) else None
    else:
        bitstream = _by_tree_path(ctx, path)
    if bitstream is None or not authz.allowed(ctx, bitstream, m.Action.READ):
        return None
    return bitstream


def _by_tree_path(ctx: Context, path: str) -> m.Bitstream | None:
    try:
        route = urls.parse(path)
    except urls.BadPath:
        return None
    if len(route.segments) != 2:
        return None
    item: m.DSpaceObject | None = None
    if route.anchor.kind == "handle" and route.anchor.handle:
        item = handles.resolve(ctx, route.anchor.handle)
    elif route.anchor.kind == "uuid" and route.anchor.uuid:
        item = objects.get(ctx, route.anchor.uuid)
    if not isinstance(item, m.Item):
        return None
    bundle_name, file_name = route.segments
    admin = authz.is_admin(ctx)
    bundles = [b for b in sorted(item.bundles, key=lambda b: (b.position, str(b.id)))
               if admin or authz.allowed(ctx, b, m.Action.READ)]
    for bundle, name in zip(bundles, urls.unique_names(b.name for b in bundles), strict=True):
        if name != bundle_name:
            continue
        files = [b for b in bundle.bitstreams if admin or authz.allowed(ctx, b, m.Action.READ)]
        for bitstream, fname in zip(files, urls.unique_names(b.name for b in files),
                                    strict=True):
            if fname == file_name:
                return bitstream
    return None
