"""Untrusted AIPs: each is refused with a structured error naming what is wrong, and leaves
nothing behind - no rows, no stored files, no staging files."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from aip_support import (
    Rich,
    build_rich_site,
    export_one,
    export_tree,
    ingest,
    residue,
    rewrite_member,
)

from packagers.base import Mode
from packagers.errors import PackageValidationError
from server import models as m
from server.context import Repository
from server.errors import DavpackError, UnsafeInput


@pytest.fixture
def rich(repo: Repository) -> Rich:
    return build_rich_site(repo)


@pytest.fixture
def article(repo: Repository, rich: Rich) -> bytes:
    return export_one(repo, rich.article)


def refused(repo: Repository, data: bytes, tmp_path: Path, expect: type[DavpackError],
            **kw: object) -> DavpackError:
    """Restore-replace ``data`` (the article exists, so a good package would succeed) and
    check it is refused with ``expect`` and changes nothing."""
    path = tmp_path / "hostile.zip"
    path.write_bytes(data)
    before = residue(repo)
    with pytest.raises(DavpackError) as info:
        ingest(repo, path, mode=Mode.REPLACE, **kw)  # type: ignore[arg-type]
    assert isinstance(info.value, expect), info.value
    assert info.value.details, "errors carry structured details"
    assert residue(repo) == before
    return info.value


def mets_edit(data: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    return rewrite_member(data, "mets.xml", edit)


def first_file(data: bytes) -> str:
    return next(n for n in zipfile.ZipFile(io.BytesIO(data)).namelist()
                if n.startswith("bitstream_"))


def test_a_good_package_is_accepted(repo: Repository, article: bytes, tmp_path: Path) -> None:
    path = tmp_path / "good.zip"
    path.write_bytes(article)
    assert ingest(repo, path, mode=Mode.REPLACE).objects


def test_zip_slip_member(repo: Repository, article: bytes, tmp_path: Path) -> None:
    out = io.BytesIO(article)
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("../../evil.sh", b"rm -rf /")
    error = refused(repo, out.getvalue(), tmp_path, UnsafeInput)
    assert any(d.file == "../../evil.sh" for d in error.details)
    assert not (tmp_path.parent / "evil.sh").exists()


def test_absolute_member(repo: Repository, article: bytes, tmp_path: Path) -> None:
    out = io.BytesIO(article)
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("/etc/passwd", b"x")
    refused(repo, out.getvalue(), tmp_path, UnsafeInput)


def test_missing_member(repo: Repository, article: bytes, tmp_path: Path) -> None:
    name = first_file(article)
    data = rewrite_member(article, name, lambda body: None)
    error = refused(repo, data, tmp_path, PackageValidationError)
    assert any(d.file == name for d in error.details)
    assert "not in the package" in error.message


def test_wrong_filesec_checksum(repo: Repository, article: bytes, tmp_path: Path) -> None:
    mets = zipfile.ZipFile(io.BytesIO(article)).read("mets.xml").decode()
    checksum = mets.split('CHECKSUM="', 1)[1].split('"', 1)[0]
    data = mets_edit(article, lambda b: b.replace(f'CHECKSUM="{checksum}"'.encode(),
                                                  b'CHECKSUM="00000000000000000000000000000000"',
                                                  1))
    error = refused(repo, data, tmp_path, PackageValidationError)
    assert any(d.field == "file/@CHECKSUM" and d.expected == "0" * 32 for d in error.details)
    assert any(d.file and d.file.startswith("bitstream_") for d in error.details)


def test_wrong_premis_checksum(repo: Repository, article: bytes, tmp_path: Path) -> None:
    mets = zipfile.ZipFile(io.BytesIO(article)).read("mets.xml").decode()
    digest = mets.split("<premis:messageDigest>", 1)[1].split("<", 1)[0]
    data = mets_edit(article, lambda b: b.replace(
        f"<premis:messageDigest>{digest}<".encode(),
        b"<premis:messageDigest>ffffffffffffffffffffffffffffffff<", 1))
    error = refused(repo, data, tmp_path, PackageValidationError)
    assert any(d.field == "premis:messageDigest" for d in error.details)


def test_altered_content(repo: Repository, article: bytes, tmp_path: Path) -> None:
    """Content changed but re-zipped with a correct CRC: the manifest's checksums catch it."""
    name = first_file(article)
    data = rewrite_member(article, name, lambda body: body[:-1] + b"!")
    error = refused(repo, data, tmp_path, PackageValidationError)
    assert any(d.file == name and d.field == "file/@CHECKSUM" for d in error.details)


def test_corrupt_member_crc(repo: Repository, article: bytes, tmp_path: Path) -> None:
    """A member whose bytes do not match the zip's own CRC-32."""
    name = first_file(article)
    archive = zipfile.ZipFile(io.BytesIO(article))
    info = archive.getinfo(name)
    body = archive.read(name)
    offset = article.index(body, info.header_offset)
    data = article[:offset] + bytes([body[0] ^ 0xFF]) + article[offset + 1:]
    error = refused(repo, data, tmp_path, PackageValidationError)
    assert any(d.file == name for d in error.details)


def test_wrong_size(repo: Repository, article: bytes, tmp_path: Path) -> None:
    mets = zipfile.ZipFile(io.BytesIO(article)).read("mets.xml").decode()
    size = mets.split("<premis:size>", 1)[1].split("<", 1)[0]
    data = mets_edit(article, lambda b: b.replace(f"<premis:size>{size}<".encode(),
                                                  b"<premis:size>3000000000<", 1))
    error = refused(repo, data, tmp_path, PackageValidationError)
    assert any(d.field == "premis:size" and d.expected == "3000000000" for d in error.details)


@pytest.mark.parametrize("prolog", [
    b'<!DOCTYPE mets [<!ENTITY x "boom">]>',
    b'<!DOCTYPE mets SYSTEM "http://example.org/evil.dtd">',
    b'<!DOCTYPE mets [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
])
def test_doctype_and_entities_are_refused(repo: Repository, article: bytes, tmp_path: Path,
                                          prolog: bytes) -> None:
    def edit(body: bytes) -> bytes:
        head, rest = body.split(b"\n", 1)
        return head + b"\n" + prolog + b"\n" + rest
    error = refused(repo, mets_edit(article, edit), tmp_path, UnsafeInput)
    assert "DOCTYPE" in error.message


def test_not_well_formed(repo: Repository, article: bytes, tmp_path: Path) -> None:
    error = refused(repo, mets_edit(article, lambda b: b[:-20]), tmp_path, DavpackError)
    assert error.details[-1].line


@pytest.mark.parametrize(("edit", "message"), [
    (lambda b: b.replace(b' PROFILE="http://www.dspace.org/schema/aip/mets_aip_1_0.xsd"', b""),
     "Cannot accept METS with no PROFILE attribute!"),
    (lambda b: b.replace(b"mets_aip_1_0.xsd", b"other.xsd", 1),
     "METS has unacceptable PROFILE attribute"),
    (lambda b: b.replace(b'<mets ID="', b'<mets XID="', 1),
     "Manifest is missing the required mets@ID attribute."),
    (lambda b: b.replace(b'USE="ORIGINAL"', b'', 1),
     "every fileGrp element must have a USE attribute"),
    (lambda b: b.replace(b'DMDID="dmdSec_1 dmdSec_2" ', b"", 1),
     "first div on first structmap must have a DMDID attribute"),
    (lambda b: b.replace(b'ADMID="amd_3"', b'ADMID="amd_999"', 1),
     "ADMID amd_999 refers to no amdSec"),
])
def test_manifest_rules(repo: Repository, article: bytes, tmp_path: Path,
                        edit: Callable[[bytes], bytes], message: str) -> None:
    error = refused(repo, mets_edit(article, edit), tmp_path, PackageValidationError)
    assert message in error.message


def test_no_manifest(repo: Repository, article: bytes, tmp_path: Path) -> None:
    error = refused(repo, rewrite_member(article, "mets.xml", lambda b: None), tmp_path,
                    PackageValidationError)
    assert error.message == ("No METS Manifest found (filename=mets.xml). Package is "
                             "unacceptable!")
    refused(repo, b"just some bytes", tmp_path, PackageValidationError)


def test_child_reference_outside_the_directory(repo: Repository, rich: Rich,
                                               tmp_path: Path) -> None:
    tree = export_tree(repo, rich.theses, tmp_path / "tree")
    top = tree[0]
    top.write_bytes(mets_edit(top.read_bytes(), lambda b: b.replace(
        b'LOCTYPE="URL" xlink:type="simple" xlink:href="ITEM@',
        b'LOCTYPE="URL" xlink:type="simple" xlink:href="../../ITEM@', 1)))
    before = residue(repo)
    with pytest.raises(PackageValidationError) as info:
        ingest(repo, top, mode=Mode.REPLACE, recursive=True)
    assert "outside the package's directory" in info.value.message
    assert residue(repo) == before


def test_missing_child_package(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    tree = export_tree(repo, rich.theses, tmp_path / "tree")
    tree[-1].unlink()
    before = residue(repo)
    with pytest.raises(PackageValidationError) as info:
        ingest(repo, tree[0], mode=Mode.REPLACE, recursive=True)
    assert tree[-1].name in str(info.value)
    assert residue(repo) == before


def test_hostile_zip_of_aips(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    """An uploaded zip of AIPs with a member escaping the extraction directory."""
    tree = export_tree(repo, rich.letters, tmp_path / "tree")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path in tree:
            archive.writestr(path.name, path.read_bytes())
        archive.writestr("../escape.zip", tree[-1].read_bytes())
    before = residue(repo)
    path = tmp_path / "upload.zip"
    path.write_bytes(out.getvalue())
    with pytest.raises(UnsafeInput):
        ingest(repo, path, mode=Mode.REPLACE, recursive=True)
    assert residue(repo) == before
    assert not (tmp_path / "escape.zip").exists()


def test_uuid_and_handle_of_different_objects(repo: Repository, rich: Rich, article: bytes,
                                             tmp_path: Path) -> None:
    with repo.context(write=False) as ctx:
        letter = ctx.session.get(m.Item, rich.letter)
        assert letter is not None and letter.handle
        other = letter.handle
    data = mets_edit(article, lambda b: b.replace(b'OBJID="hdl:', f'OBJID="hdl:{other}" X="'
                                                  .encode(), 1))
    error = refused(repo, data, tmp_path, PackageValidationError)
    assert "two different objects" in error.message
    assert uuid.UUID(str(rich.article))
