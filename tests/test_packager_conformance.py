"""The conformance test every installed packager must pass (issue 5, "Done when").

Parametrised over ``Registry().names()``: a packager installed later is covered without
touching this file.

* Declarations are coherent (names, types, options, the round-trip declaration).
* Round trip: for each packager that writes items and reads them into collections, a
  reference item is disseminated, the package submitted into another collection and the
  new item disseminated again.  The two packages must be byte-identical, unless the
  packager declares ``roundtrip_exact = False`` with a ``roundtrip_note`` saying why;
  either way the title and the content of the files must come back.
* Hostile input: for each ingester whose own package is a zip, that package is turned
  into a zip-slip, an absolute path, a symbolic link, a zip bomb, an XML document with a
  DOCTYPE/entity, a package missing a file its manifest lists, and one whose file does not
  match the checksum its manifest gives.  Each must be refused with structured details
  naming the file, and leave nothing behind: no item, no bitstream, no stored content, no
  staging file.  A case that does not apply to a format (no XML in it, no manifest naming
  files, no checksums) is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import _reset_postgres as reset_postgres
from conftest import make_config
from core_support import count, make_structure
from pypdf import PdfWriter

from packagers.base import (
    Disseminator,
    Ingester,
    IngestRequest,
    Operation,
    Package,
    PackageSource,
)
from packagers.errors import PackageError
from packagers.params import PackageParameters
from packagers.registry import Registry
from server import models as m
from server.context import Repository
from server.errors import DavpackError, UnsafeInput
from server.services import authz, metadata, objects, people

REGISTRY = Registry()
NAMES = REGISTRY.names()

TITLE = "Konformit\u00e4t: \u00dcber Kl\u00e4ranlagen"
NOTES = "notes/\u00dcber.txt"
NOTES_BYTES = "Notizen \u00fcber Kl\u00e4ranlagen\n".encode()
CHANGED = datetime(2020, 2, 3, 4, 5, 6)
LICENCE_BYTES = b"I grant the repository the right to distribute this work.\n"


# ---------------------------------------------------------------------------------------
# Set-up


@dataclass
class Env:
    repo: Repository
    op: Operation
    collection: uuid.UUID
    other: uuid.UUID
    item: uuid.UUID
    pdf: bytes


def _pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": TITLE, "/Author": "Lovelace, Ada"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One repository and reference item for the whole module (setting up a database per
    test would dominate the run time); every test leaves it as it found it, or only adds
    items to the other collection."""
    repo = Repository(make_config(tmp_path_factory.mktemp("conformance")))
    if repo.engine.dialect.name != "sqlite":
        reset_postgres(repo)
    repo.initialise()
    try:
        yield _reference(repo)
    finally:
        repo.dispose()


def _reference(repo: Repository) -> Env:
    structure = make_structure(repo)
    pdf = _pdf()
    with repo.context(system=True) as ctx:
        admin = people.create_person(ctx, "admin@example.org", password="secret")
        people.add_member(ctx, authz.admin_group(ctx), admin)
        collection = ctx.session.get(m.Collection, structure.collection)
        item = objects.create_item(ctx, collection)
        for name, value in (("dc.title", TITLE), ("dc.contributor.author", "Lovelace, Ada"),
                            ("dc.contributor.author", "Babbage, Charles"),
                            ("dc.subject", "Wasser"), ("dc.subject", "Abwasser"),
                            ("dc.date.issued", "2021-03-04"),
                            ("dc.description.abstract", "Eine Kurzfassung."),
                            ("dc.language.iso", "de")):
            metadata.add(ctx, item, name, value)
        original = objects.bundle_named(ctx, item, "ORIGINAL")
        for data, name, mime, primary in ((pdf, "paper.pdf", "application/pdf", True),
                                          (NOTES_BYTES, NOTES, "text/plain", False)):
            content = ctx.add_content(io.BytesIO(data), name=name)
            objects.add_bitstream(ctx, original, content, name=name, mime_type=mime,
                                  primary=primary,
                                  format_name="Adobe PDF" if primary else None)
        licence = ctx.add_content(io.BytesIO(LICENCE_BYTES), name="license.txt")
        objects.add_bitstream(ctx, objects.bundle_named(ctx, item, "LICENSE"), licence,
                              name="license.txt", mime_type="text/plain; charset=utf-8",
                              format_name="License")
        objects.install(ctx, item)
        item_id, admin_id = item.id, admin.id
        # long ago: a format that records the item's time cannot pass by luck
        objects.set_last_modified(ctx, {item_id: CHANGED})
    return Env(repo, Operation(repo, actor=admin_id), structure.collection,
               structure.other_collection, item_id, pdf)


def _cls(name: str) -> type[Any]:
    return REGISTRY.get(name)


def _writes_items(cls: type[Any]) -> bool:
    return issubclass(cls, Disseminator) and m.ObjectType.ITEM in cls.disseminate_types


def _reads_items(cls: type[Any]) -> bool:
    return issubclass(cls, Ingester) and m.ObjectType.COLLECTION in cls.ingest_parent_types


# Packagers that write items and read them back into collections: the round trip applies to
# them, and the hostile-input cases to those whose packages are zips (generated, so a
# packager added later is covered without editing this file).
ROUND_TRIPPERS = [n for n in NAMES if _writes_items(_cls(n)) and _reads_items(_cls(n))]
ZIP_ROUND_TRIPPERS = [n for n in ROUND_TRIPPERS if _cls(n).extension == "zip"]


def test_every_packager_is_checked_somewhere() -> None:
    """Packagers left out of the round trip only ingest (SWORD's Binary) or only write."""
    for name in set(NAMES) - set(ROUND_TRIPPERS):
        cls = _cls(name)
        assert not (_writes_items(cls) and _reads_items(cls)), name


def _package(cls: type[Any], env: Env, item: uuid.UUID) -> tuple[bytes, Package]:
    with cls().disseminate(env.op, item, PackageParameters()) as package:
        out = io.BytesIO()
        written = package.write_to(out)
    data = out.getvalue()
    assert written == len(data)
    if package.size is not None:
        assert package.size == len(data), "declared size differs from the bytes written"
    return data, package


def _ingest(cls: type[Any], env: Env, path: Path, package: Package,
            parent: uuid.UUID) -> Any:
    source = PackageSource(path, name=package.file_name, content_type=package.mime_type)
    params = PackageParameters()
    if "ignoreHandles" in cls.option_names("ingest"):
        # The copy goes into the same repository: it cannot take the original's handle.
        params.add("ignoreHandles", "true")
    request = IngestRequest(parent=parent, skip_workflow=True, params=params)
    return cls().ingest(env.op, source, request)


def _original(repo: Repository, item_id: uuid.UUID) -> list[tuple[str, str]]:
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None
        return [(b.name, b.md5) for bundle in item.bundles if bundle.name == "ORIGINAL"
                for b in bundle.bitstreams]


# ---------------------------------------------------------------------------------------
# Declarations


@pytest.mark.parametrize("name", NAMES)
def test_declarations(name: str) -> None:
    cls = _cls(name)
    assert cls.name and cls.name.lower() == name.lower()
    assert cls.mime_types and all("/" in t for t in cls.mime_types)
    assert issubclass(cls, (Ingester, Disseminator))
    options = [o.name for o in cls.options]
    assert len(options) == len(set(options)), "an option is declared twice"
    assert cls.roundtrip_exact in (True, False, None)
    if cls.roundtrip_exact is False:
        assert cls.roundtrip_note.strip(), (
            f"{name} declares roundtrip_exact = False: roundtrip_note must say why")
    for uri in cls.sword_packaging:
        assert REGISTRY.by_sword_packaging(uri) is cls, f"{uri} is claimed twice"


def test_names_and_aliases_are_unique() -> None:
    REGISTRY.check()


# ---------------------------------------------------------------------------------------
# Round trip


@pytest.mark.parametrize("name", ROUND_TRIPPERS)
def test_round_trip(name: str, env: Env, tmp_path: Path) -> None:
    cls = _cls(name)
    first, package = _package(cls, env, env.item)
    path = tmp_path / (package.file_name or f"package.{cls.extension}")
    path.write_bytes(first)
    result = _ingest(cls, env, path, package, env.other)
    copy = result.primary
    assert copy is not None and copy.uuid is not None, f"{name}: nothing was created"
    # whatever the format: the content comes back unchanged
    original = {md5 for _, md5 in _original(env.repo, env.item)}
    copied = _original(env.repo, copy.uuid)
    assert copied, f"{name}: the copy has no ORIGINAL files"
    assert {md5 for _, md5 in copied} <= original, f"{name}: file content changed"
    second, _ = _package(cls, env, copy.uuid)
    if cls.roundtrip_exact is False:
        return  # declared and explained (test_declarations checks the note)
    assert second == first, (
        f"{name}: disseminate -> ingest -> disseminate gives different bytes; if the format "
        "cannot give the same package, declare roundtrip_exact = False and say why in "
        "roundtrip_note (packagers/base.py)")


# ---------------------------------------------------------------------------------------
# Hostile input

CASES = ("zip-slip", "absolute-path", "symlink", "zip-bomb", "xml-entity", "missing-file",
         "wrong-checksum")


@dataclass
class Residue:
    items: int
    bitstreams: int
    keys: list[str]
    staging: list[str]


def residue(repo: Repository) -> Residue:
    leftovers = []
    for root in {repo.config.path("store.path") / ".staging",
                 repo.config.path("server.staging_dir")}:
        for dirpath, dirs, names in os.walk(root):
            leftovers.extend(os.path.join(dirpath, n) for n in names + dirs)
    return Residue(count(repo, m.Item), count(repo, m.Bitstream),
                   sorted(repo.store.iter_keys()), sorted(leftovers))


def _members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _write(path: Path, members: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data, compress_type=info.compress_type)
    return path


def _info(name: str, *, mode: int = 0o100644, deflate: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 6))
    info.create_system = 3
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    return info


def _names_of(member: str) -> set[str]:
    base = member.rsplit("/", 1)[-1]
    return {base, quote(base)}


def _mentioned(member: str, others: list[tuple[zipfile.ZipInfo, bytes]]) -> bool:
    return any(n.encode() in data for n in _names_of(member) for _, data in others)


def _is_xml(info: zipfile.ZipInfo, data: bytes) -> bool:
    return info.filename.lower().endswith(".xml") and data.lstrip(b"\xef\xbb\xbf \t\r\n") \
        .startswith(b"<")


def _with_doctype(data: bytes) -> bytes:
    doctype = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
    if data.lstrip(b"\xef\xbb\xbf").startswith(b"<?xml"):
        end = data.index(b"?>") + 2
        return data[:end] + b"\n" + doctype + data[end:]
    return doctype + data


def _replace_digests(data: bytes, old: bytes, new: bytes) -> bytes:
    for algorithm in ("md5", "sha1", "sha256", "sha512"):
        before = hashlib.new(algorithm, old).hexdigest().encode()
        after = hashlib.new(algorithm, new).hexdigest().encode()
        data = data.replace(before, after).replace(before.upper(), after.upper())
    return data


def _hostile(case: str, members: list[tuple[zipfile.ZipInfo, bytes]]
             ) -> tuple[list[tuple[zipfile.ZipInfo, bytes]], set[str], type[DavpackError]]:
    """The hostile variant of a valid package, the names a detail must mention, and the
    error class expected."""
    if case == "zip-slip":
        return [*members, (_info("../evil.txt"), b"x")], {"../evil.txt"}, UnsafeInput
    if case == "absolute-path":
        return [*members, (_info("/tmp/evil.txt"), b"x")], {"/tmp/evil.txt"}, UnsafeInput
    if case == "symlink":
        link = _info("evil-link", mode=stat.S_IFLNK | 0o777)
        return [*members, (link, b"/etc/passwd")], {"evil-link"}, UnsafeInput
    if case == "zip-bomb":
        bomb = _info("zeros.bin", deflate=True)
        return [*members, (bomb, bytes(50 * 1024 * 1024))], {"zeros.bin"}, UnsafeInput
    if case == "xml-entity":
        xml = [info.filename for info, data in members if _is_xml(info, data)]
        if not xml:
            pytest.skip("the package holds no XML document")
        changed = [(info, _with_doctype(data) if info.filename in xml else data)
                   for info, data in members]
        # a format that lists checksums of its XML (BagIt tag manifests) gets them updated,
        # so that it is the parser that must refuse the document
        for (_, old), (_, new) in zip(members, changed, strict=True):
            if old != new:
                changed = [(i, _replace_digests(d, old, new)) for i, d in changed]
        return changed, {n.rsplit("/", 1)[-1] for n in xml}, DavpackError
    target = next((info.filename for info, data in members if data == NOTES_BYTES), None)
    if target is None:
        pytest.skip("the package does not carry the reference item's text file")
    others = [(i, d) for i, d in members if i.filename != target]
    if case == "missing-file":
        if not _mentioned(target, others):
            pytest.skip("no member of the package names its files (no manifest)")
        return others, _names_of(target), PackageError
    assert case == "wrong-checksum"
    digests = [hashlib.new(a, NOTES_BYTES).hexdigest()
               for a in ("md5", "sha1", "sha256", "sha512")]
    if not any(d.encode() in data.lower() for d in digests for _, data in others):
        pytest.skip("the package declares no checksum of its files")
    tampered = bytes(b ^ 0x20 if 0x41 <= b <= 0x7a else b for b in NOTES_BYTES)
    changed = [(info, tampered if info.filename == target else data)
               for info, data in members]
    return changed, _names_of(target), PackageError


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", ZIP_ROUND_TRIPPERS)
def test_hostile_input(name: str, case: str, env: Env, tmp_path: Path) -> None:
    cls = _cls(name)
    valid, package = _package(cls, env, env.item)
    assert valid.startswith(b"PK\x03\x04"), f"{name} declares zip but wrote something else"
    members, names, expected = _hostile(case, _members(valid))
    path = _write(tmp_path / (package.file_name or "hostile.zip"), members)
    before = residue(env.repo)
    with pytest.raises(DavpackError) as info:
        _ingest(cls, env, path, package, env.other)
    error = info.value
    shown = str(error) + "".join(repr(d.as_dict()) for d in error.details)
    assert isinstance(error, expected), f"{type(error).__name__}: {shown}"
    assert error.details, f"no structured details: {error!r}"
    assert any(d.file for d in error.details), f"no detail names a file: {shown}"
    if case != "missing-file":  # (a format may only know that something is missing)
        assert any(n in (d.file or "") for d in error.details for n in names), (
            f"no detail names {sorted(names)}: {shown}")
    if case == "xml-entity":
        assert isinstance(error, UnsafeInput) or "DOCTYPE" in shown, shown
    assert residue(env.repo) == before, "a refused package left something behind"
