"""Hostile SAF packages are refused with details and leave nothing behind: no rows, no
stored or staged files.  A batch with one hostile item imports nothing at all (every
folder is checked before the first item is written)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from core_support import make_structure
from saf_support import dc_xml, ingest, nothing_stored, raw_zip, write_item, zip_dir

from packagers.base import PackageSource
from packagers.errors import PackageValidationError
from packagers.saf import SAFPackager
from server.context import Repository
from server.errors import DavpackError, UnsafeInput

GOOD_DC = dc_xml([("title", "Harmless")])


def refused(repo: Repository, package: Path, kind: type[DavpackError] = UnsafeInput,
            **options: str) -> DavpackError:
    structure = make_structure(repo)
    with pytest.raises(kind) as caught:
        ingest(repo, package, structure.collection, **options)
    assert caught.value.details, "a refusal must say what is wrong"
    assert nothing_stored(repo)
    return caught.value


def test_zip_slip_member(repo: Repository, tmp_path: Path) -> None:
    package = raw_zip(tmp_path / "slip.zip", {
        "item/dublin_core.xml": GOOD_DC, "item/contents": b"x.txt\n", "item/x.txt": b"x",
        "../../evil.txt": b"owned"})
    error = refused(repo, package)
    assert any(d.file == "../../evil.txt" and "'..'" in d.message for d in error.details)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_absolute_member(repo: Repository, tmp_path: Path) -> None:
    package = raw_zip(tmp_path / "abs.zip", {
        "item/dublin_core.xml": GOOD_DC, "/etc/cron.d/evil": b"* * * * * root sh"})
    error = refused(repo, package)
    assert any(d.file == "/etc/cron.d/evil" and "absolute" in d.message
               for d in error.details)


@pytest.mark.parametrize("line", ["../../etc/passwd", "/etc/passwd", "sub/../../x",
                                  "..\\..\\win.ini", "C:/boot.ini"])
def test_contents_path_escaping_the_item_folder(repo: Repository, tmp_path: Path,
                                                line: str) -> None:
    package = raw_zip(tmp_path / "contents.zip", {
        "item/dublin_core.xml": GOOD_DC, "item/contents": f"{line}\tbundle:ORIGINAL\n".encode(),
        "etc/passwd": b"root:x:0:0"})
    error = refused(repo, package)
    [detail] = [d for d in error.details if d.file == "item/contents"]
    assert (detail.line, detail.field, detail.found) == (1, "file name", line)


def test_xml_entities_are_refused(repo: Repository, tmp_path: Path) -> None:
    laughs = (b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
              b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
              b'<dublin_core><dcvalue element="title">&b;</dcvalue></dublin_core>')
    xxe = (b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
           b'<dublin_core><dcvalue element="title">&x;</dcvalue></dublin_core>')
    package = raw_zip(tmp_path / "xml.zip", {
        "laughs/dublin_core.xml": laughs, "xxe/dublin_core.xml": xxe,
        "fine/dublin_core.xml": GOOD_DC})
    error = refused(repo, package)
    assert {(d.file, d.line) for d in error.details} == {("laughs/dublin_core.xml", 2),
                                                         ("xxe/dublin_core.xml", 2)}
    assert all("DOCTYPE" in d.message for d in error.details)


def test_missing_file_listed_in_contents(repo: Repository, tmp_path: Path) -> None:
    package = raw_zip(tmp_path / "missing.zip", {
        "item/dublin_core.xml": GOOD_DC, "item/contents": b"here.pdf\nthere.pdf\n",
        "item/here.pdf": b"%PDF"})
    error = refused(repo, package, PackageValidationError)
    [detail] = error.details
    assert (detail.file, detail.line, detail.found) == ("item/contents", 2, "item/there.pdf")


def test_oversized_xml_is_refused(repo: Repository, tmp_path: Path) -> None:
    from packagers.saf import reader

    value = b'<dcvalue element="subject">x</dcvalue>\n'
    big = b"<dublin_core>" + value * (reader.MAX_XML_BYTES // len(value) + 10) + \
        b"</dublin_core>"
    package = raw_zip(tmp_path / "big.zip", {"item/dublin_core.xml": big})
    error = refused(repo, package, PackageValidationError)
    [detail] = error.details
    assert detail.file == "item/dublin_core.xml"
    assert detail.expected == f"at most {reader.MAX_XML_BYTES} bytes"


def test_symlink_out_of_a_directory_batch(repo: Repository, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not import me")
    item = write_item(tmp_path / "batch", "item", title="Linker", contents=["link.txt"])
    os.symlink(secret, item / "link.txt")
    error = refused(repo, tmp_path / "batch")
    [detail] = error.details
    assert detail.file == "item/link.txt" and "outside the item folder" in detail.message


def test_one_hostile_item_stops_the_whole_batch(repo: Repository, tmp_path: Path) -> None:
    for n in range(3):
        write_item(tmp_path / "batch", f"good_{n}", title=f"Good {n}",
                   files={"f.txt": f"{n}".encode()})
    write_item(tmp_path / "batch", "z_bad", title="Bad", contents=["../good_0/f.txt"])
    package = zip_dir(tmp_path / "batch", tmp_path / "batch.zip")
    error = refused(repo, package)
    assert [(d.file, d.line) for d in error.details] == [("z_bad/contents", 1)]


def test_garbage_is_not_claimed_by_sniffing(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    assert not SAFPackager.sniff(PackageSource(tmp_path / "x.zip"))
    mets = raw_zip(tmp_path / "mets.zip", {"mets.xml": b"<mets/>",
                                           "item/dublin_core.xml": GOOD_DC})
    assert not SAFPackager.sniff(PackageSource(mets))
    plain = raw_zip(tmp_path / "plain.zip", {"docs/readme.txt": b"hello"})
    assert not SAFPackager.sniff(PackageSource(plain))
