"""The BAGIT packager: the Library of Congress conformance suite, real bags from
Archivematica and DSpace's Replication Task Suite, round trips and hostile bags."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import bagit
import pytest
from conftest import CORPUS, corpus_path
from packager_support import (
    Setup,
    details_text,
    ingest,
    item_files,
    item_values,
    package_bytes,
    refused,
    residue,
    setup,
    zip_dir,
)

from packagers.bagit import BagItPackager
from packagers.base import PackageSource
from packagers.errors import PackageValidationError, UnsupportedOperation
from packagers.registry import Registry
from server.errors import DavpackError, UnsafeInput
from server.services import metadata

SUITE = ("bagit", "bagit-conformance-suite")

# Conformance suite: directory -> (accepted?, text the refusal must contain).
# The suite's folder names give the expected outcome; "warning" and platform folders are
# decided as documented in the README's conformance table.
CONFORMANCE: dict[str, tuple[bool, str]] = {
    "v0.93/valid/basic-bag": (True, ""),
    "v0.93/valid/duplicate-metadata-entries": (True, ""),
    "v0.94/valid/basic-bag": (True, ""),
    "v0.94/valid/duplicate-metadata-entries": (True, ""),
    "v0.95/valid/basic-bag": (True, ""),
    "v0.95/valid/duplicate-metadata-entries": (True, ""),
    "v0.96/valid/bag-in-a-bag": (True, ""),
    "v0.96/valid/bag-with-encoded-names": (True, ""),
    "v0.96/valid/bag-with-escapable-characters": (True, ""),
    "v0.96/valid/bag-with-leading-dot-slash-in-manifest": (True, ""),
    "v0.96/valid/bag-with-space": (True, ""),
    "v0.96/valid/basic-bag": (True, ""),
    "v0.96/valid/duplicate-metadata-entries": (True, ""),
    "v0.96/valid/holey-bag": (True, ""),
    "v0.97/valid/ISO-8859-1-encoded-tag-files": (True, ""),
    "v0.97/valid/UTF-16-encoded-tag-files": (True, ""),
    "v0.97/valid/bag-in-a-bag": (True, ""),
    "v0.97/valid/bag-with-encoded-names": (True, ""),
    "v0.97/valid/bag-with-escapable-characters": (True, ""),
    "v0.97/valid/bag-with-leading-dot-slash-in-manifest": (True, ""),
    "v0.97/valid/bag-with-space": (True, ""),
    "v0.97/valid/basic-bag": (True, ""),
    "v0.97/valid/duplicate-metadata-entries": (True, ""),
    "v0.97/valid/holey-bag": (True, ""),
    "v0.97/valid/minimal-bag": (True, ""),
    "v0.97/valid/uncommon-metadata-separators": (True, ""),
    "v1.0/valid/basicBag": (True, ""),
    "v0.97/invalid/baginfo-missing-encoding": (False, "Tag-File-Character-Encoding"),
    "v0.97/invalid/bom-in-bagit.txt": (False, "byte-order mark"),
    "v0.97/invalid/corrupt-data-file": (False, "Payload-Oxum"),
    "v0.97/invalid/corrupt-tag-file": (False, "deadbeefe555f03147e4513070966839"),
    "v0.97/invalid/extra-file-in-bag": (False, "Payload-Oxum"),
    "v0.97/invalid/invalid-version-number": (False, "MAJOR.MINOR"),
    "v0.97/invalid/missing-baginfo": (False, "bag-info.txt"),
    "v0.97/invalid/out-of-scope-file-paths-using-dot-notation": (False, "unsafe"),
    "v0.97/invalid/out-of-scope-file-paths-using-dot-notation-for-fetch": (False, "unsafe"),
    "v0.97/invalid/same-filename-listed-twice-with-different-hashes": (False, "conflicting"),
    "v1.0/invalid/bagit-with-invalid-whitespace": (False, "before the colon"),
    "v1.0/invalid/notAllManifestsListAllFiles": (False, "missingFromManifest.txt"),
    "v1.0/invalid/same-filename-listed-twice-with-different-hashes": (False, "conflicting"),
    "v1.0/invalid/same-filename-listed-twice-with-the-same-hash": (False, "multiple times"),
    "v0.97/linux-only/out-of-scope-file-paths-using-absolute-path": (False, "/tmp/foo"),
    "v0.97/linux-only/out-of-scope-file-paths-using-absolute-path-for-fetch": (False, "unsafe"),
    "v0.97/linux-only/out-of-scope-file-paths-using-shortcut": (False, "~/foo"),
    "v0.97/linux-only/out-of-scope-file-paths-using-shortcut-for-fetch": (False, "unsafe"),
    "v0.97/linux-only/out-of-scope-file-paths-using-shortcut-username": (False, "~root"),
    "v0.97/linux-only/out-of-scope-file-paths-using-shortcut-username-for-fetch":
        (False, "unsafe"),
    "v0.97/windows-only/out-of-scope-file-paths-using-absolute-path": (False, "C:\\Windows"),
    "v0.97/windows-only/out-of-scope-file-paths-using-absolute-path-for-fetch":
        (False, "Windows path"),
    "v0.97/windows-only/out-of-scope-file-paths-using-shortcut": (False, "%HomeDrive%"),
    "v0.97/windows-only/out-of-scope-file-paths-using-shortcut-for-fetch":
        (False, "Windows path"),
    "v0.97/windows-only/out-of-scope-file-paths-using-unc": (False, "UNC"),
    "v0.97/windows-only/out-of-scope-file-paths-using-unc-for-fetch": (False, "Windows path"),
    "v0.97/warning/duplicate-file-with-different-case": (False, "data/HELLO.txt"),
    "v0.97/warning/made-with-md5sum-tools": (True, ""),
    "v0.97/warning/relative-path": (True, ""),
    "v0.97/warning/same-filename-listed-twice-with-different-normalization": (True, ""),
    "v0.97/warning/same-filename-listed-twice-with-the-same-hash": (True, ""),
    "v0.97/warning/special-system-files": (False, "Payload-Oxum"),
}


@pytest.fixture
def env(repo: Any, admin: Any) -> Setup:
    return setup(repo, admin)


# ---------------------------------------------------------------------------------------
# Bags made by the tests


def write_bag(root: Path, files: dict[str, bytes], info: dict[str, str] | None = None, *,
              algorithms: tuple[str, ...] = ("sha256",), version: str = "1.0",
              manifest_override: dict[str, str] | None = None,
              extra_tags: dict[str, bytes] | None = None) -> Path:
    """A bag written by hand (bagit.make_bag would chdir), optionally with a lying
    manifest line (``manifest_override``: path -> hex)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    tags: dict[str, bytes] = {
        "bagit.txt": f"BagIt-Version: {version}\nTag-File-Character-Encoding: UTF-8\n"
                     .encode()}
    lines = [f"{k}: {v}" for k, v in (info or {}).items()]
    lines.append(f"Payload-Oxum: {sum(map(len, files.values()))}.{len(files)}")
    tags["bag-info.txt"] = ("\n".join(lines) + "\n").encode()
    for alg in algorithms:
        manifest = "".join(
            f"{(manifest_override or {}).get(name) or hashlib.new(alg, data).hexdigest()}  "
            f"data/{name}\n" for name, data in sorted(files.items()))
        tags[f"manifest-{alg}.txt"] = manifest.encode()
    tags.update(extra_tags or {})
    for name, data in tags.items():
        (root / name).write_bytes(data)
    for alg in algorithms:
        (root / f"tagmanifest-{alg}.txt").write_text("".join(
            f"{hashlib.new(alg, data).hexdigest()}  {name}\n"
            for name, data in sorted(tags.items())))
    return root


def test_registered_and_sniffed(tmp_path: Path) -> None:
    registry = Registry()
    assert registry.get("BagIt") is BagItPackager
    assert registry.by_sword_packaging("http://purl.org/net/sword/package/BagIt") \
        is BagItPackager
    bag = write_bag(tmp_path / "bag", {"a.txt": b"a"})
    assert BagItPackager.sniff(PackageSource(bag))
    assert BagItPackager.sniff(PackageSource(zip_dir(bag, tmp_path / "b.zip")))
    assert BagItPackager.sniff(PackageSource(zip_dir(bag, tmp_path / "c.zip", prefix="c/")))
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as tar:
        tar.add(bag, arcname="d")
    assert BagItPackager.sniff(PackageSource(tmp_path / "d.tar.gz"))
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04 nonsense")
    assert not BagItPackager.sniff(PackageSource(tmp_path / "x.zip"))
    assert not BagItPackager.sniff(PackageSource(tmp_path / "bag" / "data"))


# ---------------------------------------------------------------------------------------
# Conformance suite


@pytest.mark.parametrize("case", sorted(CONFORMANCE))
def test_conformance_suite(env: Setup, case: str) -> None:
    path = corpus_path(*SUITE, *case.split("/"))
    accepted, reason = CONFORMANCE[case]
    if accepted:
        result = ingest(BagItPackager(), env, path)
        assert result.primary is not None and result.primary.uuid is not None
        files = item_files(env.repo, result.primary.uuid)["ORIGINAL"]
        listed = {unicodedata.normalize("NFC", p) for p in bagit.Bag(str(path)).payload_entries()}
        assert len(files) == len(listed)
    else:
        error = refused(BagItPackager(), env, path)
        assert reason in details_text(error)


def test_conformance_zipped_like_directories(env: Setup, tmp_path: Path) -> None:
    """The same verdicts when the bags arrive zipped (with a top-level folder)."""
    for case in ("v0.97/valid/bag-with-space", "v0.97/invalid/corrupt-tag-file",
                 "v1.0/invalid/notAllManifestsListAllFiles"):
        path = corpus_path(*SUITE, *case.split("/"))
        packed = zip_dir(path, tmp_path / f"{path.name}.zip", prefix=f"{path.name}/")
        if CONFORMANCE[case][0]:
            assert ingest(BagItPackager(), env, packed).primary is not None
        else:
            assert CONFORMANCE[case][1] in details_text(refused(BagItPackager(), env, packed))


def test_corpus_bag_info_and_mets(env: Setup) -> None:
    bag = corpus_path("bagit", "archivematica-sampledata", "small_initial_ingest")
    result = ingest(BagItPackager(), env, bag)
    assert result.primary is not None and result.primary.uuid is not None
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["valid small test example with additional metadata"]
    assert values["dc.date.issued"] == ["1933-05-29"]  # from the METS/MODS dmdSec
    assert values["dc.language.iso"] == ["ger"]
    assert values["dc.description"] == ["valid small test example with additional metadata"]
    # METS gave an identifier, so bag-info's External-Identifier does not add another
    assert values["dc.identifier.other"] == ["380303"]
    assert values["dc.identifier.uri"][0] == "http://digital.slub-dresden.de/id1666408611-19330529"
    assert values["local.bagit.SLUBArchiv-externalId"] == [
        "test-sip_2020-07-17_13-40-17_96152"]
    assert values["local.bagit.Encoding-Test-Pattern"] == ["Ä--ä--Ö--ö--Ü--ü--ß"]
    assert "local.bagit.Payload-Oxum" not in values
    names = [f[0] for f in item_files(env.repo, result.primary.uuid)["ORIGINAL"]]
    assert "RiesTaunA_1666408611-19330529_mets.xml" in names
    assert "metadata/custom_dir/alto.ocr.00000001.xml" in names
    assert len(names) == 36


def test_corpus_zipped_and_tarred_archivematica_bags(env: Setup) -> None:
    zipped = ingest(BagItPackager(), env,
                    corpus_path("bagit", "archivematica-sampledata", "ZippedBag.zip"))
    tarred = ingest(BagItPackager(), env,
                    corpus_path("bagit", "archivematica-sampledata", "TarredBag.tar.gz"))
    for result, title in ((zipped, "ZippedBag"), (tarred, "TarredBag")):
        assert result.primary is not None and result.primary.uuid is not None
        files = item_files(env.repo, result.primary.uuid)["ORIGINAL"]
        assert [(n, s) for n, s, _ in files] == [("forkleaf-sundew.jpg", 51493),
                                                 ("roundleaf-sundew.jpg", 11647)]
        values = item_values(env.repo, result.primary.uuid)
        assert values["dc.title"] == [title]
        assert values["local.bagit.FIELD_CONTACT_NAME"] == ["A. R. Chivist"]
        assert values["local.bagit.FIELD_ORGANIZATION_ADDRESS"] == [
            "Suite 201 - 301 6th Street New Westminster, BC Canada"]
    mcp = ingest(BagItPackager(), env, corpus_path("bagit", "archivematica-sampledata",
                                                   "SimpleBagWithProcessingMCP.zip"))
    assert mcp.primary is not None and mcp.primary.uuid is not None
    assert item_values(env.repo, mcp.primary.uuid)["local.bagit.Source-Organization"] == [
        "Artefactual Systems Inc."]


def test_corpus_archivematica_failing_bags(env: Setup) -> None:
    base = ("bagit", "archivematica-sampledata", "bagitTests")
    error = refused(BagItPackager(), env, corpus_path(*base, "bag fail manifest"))
    assert error.details[0].file == "data/bagTest/README"
    assert error.details[0].field == "sha512"
    assert "Payload-Oxum" in details_text(
        refused(BagItPackager(), env, corpus_path(*base, "bag fail payload oxum")))
    error = refused(BagItPackager(), env, corpus_path(*base, "bag fail tag manifest"))
    assert error.details[0].file == "bag-info.txt"


def test_corpus_dspace_replication_item_bag(env: Setup) -> None:
    bag = corpus_path("aip", "osulp-dspace2hydra-replication-bagit-aips", "ITEM@1957-57239")
    error = refused(BagItPackager(), env, bag, expect=DavpackError)
    assert "dc.description.peerreview" in details_text(error)
    result = ingest(BagItPackager(), env, bag, createMetadataFields="true")
    assert result.primary is not None and result.primary.uuid is not None
    files = item_files(env.repo, result.primary.uuid)
    assert [f[0] for f in files["ORIGINAL"]] == ["VanTuyl-Whitmire-PLOSOne-Final.pdf"]
    assert [f[0] for f in files["LICENSE"]] == ["license.txt"]
    assert [f[0] for f in files["SWORD"]] == ["whitmira84364317.zip"]
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.creator"] == ["Van Tuyl, Steven", "Whitmire, Amanda L."]
    assert "http://hdl.handle.net/1957/57239" not in values.get("dc.identifier.uri", [])
    with env.repo.context(write=False) as ctx:
        from server import models as m

        item = ctx.session.get(m.Item, result.primary.uuid)
        assert item is not None
        original = next(b for b in item.bundles if b.name == "ORIGINAL")
        assert original.bitstreams[0].description == "Pre-print version"
        assert metadata.first(item, "dc.title")


def test_corpus_replication_bags_refused(env: Setup) -> None:
    base = ("aip", "osulp-dspace2hydra-replication-bagit-aips")
    error = refused(BagItPackager(), env, corpus_path(*base, "ITEM@1957-33356"),
                    createMetadataFields="true")
    assert error.details[0].file == "data/metadata.xml"
    assert error.details[0].expected == "222d0b1383ea7225492a26e1f05f4a03"
    replicate = ("aip", "dspace-replicate-bagit-aips")
    site = refused(BagItPackager(), env, corpus_path(*replicate, "SITE@123456789-0.zip"),
                   expect=UnsupportedOperation)
    assert site.details[0].found == "site"
    item = refused(BagItPackager(), env, corpus_path(*replicate, "ITEM@123456789-3.zip"))
    assert "Payload-Oxum" in details_text(item)
    assert "MAJOR.MINOR" in details_text(
        refused(BagItPackager(), env, corpus_path(*replicate, "fail-bag-validation.zip")))


# ---------------------------------------------------------------------------------------
# Dissemination and round trips


def _make_item(env: Setup) -> Any:
    from core_support import add_file, new_item

    with env.repo.context(system=True) as ctx:
        item = new_item(ctx, env.collection, title="Bagged item")
        metadata.add(ctx, item, "dc.contributor.author", "Lovelace, Ada", language="en")
        metadata.add(ctx, item, "dc.subject", "Engines")
        metadata.add(ctx, item, "local.bagit.Contact-Name", "Ada", create=True)
        add_file(ctx, item, b"first file\n", "a.txt")
        add_file(ctx, item, b"second\r\nfile", "dir/b 100%.txt")
        add_file(ctx, item, b"\x89PNG....", "thumb.png", bundle="THUMBNAIL")
        return item.id


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def test_disseminate_valid_deterministic_bag(env: Setup, tmp_path: Path) -> None:
    item_id = _make_item(env)
    first = package_bytes(BagItPackager(), env, item_id)
    assert package_bytes(BagItPackager(), env, item_id) == first
    members = _members(first)
    top = next(iter(members)).split("/")[0]
    assert top.startswith("ITEM@")
    assert members[f"{top}/data/a.txt"] == b"first file\n"
    assert members[f"{top}/data/dir/b 100%.txt"] == b"second\r\nfile"
    assert not any("thumb.png" in name for name in members)
    info = members[f"{top}/bag-info.txt"].decode()
    assert "Payload-Oxum: 23.2\n" in info and "Contact-Name: Ada\n" in info
    assert "Bagging-Date: " in info and "External-Identifier: hdl:" in info
    assert b"data/dir/b 100%.txt" in members[f"{top}/manifest-sha256.txt"]
    # bagit-python agrees that it is a valid bag
    out = tmp_path / "x"
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        zf.extractall(out)
    bagit.Bag(str(out / top)).validate()


def test_round_trip(env: Setup, tmp_path: Path) -> None:
    """disseminate -> ingest -> disseminate: payload, manifests and the metadata the bag
    carries are identical; what submitting changes (new handle, accession dates,
    provenance, Bagging-Date) is all that differs."""
    item_id = _make_item(env)
    first = package_bytes(BagItPackager(), env, item_id)
    package = tmp_path / "bag.zip"
    package.write_bytes(first)
    result = ingest(BagItPackager(), env, package)
    assert result.primary is not None and result.primary.uuid is not None
    assert result.primary.warnings == []
    second = package_bytes(BagItPackager(), env, result.primary.uuid)
    a, b = _members(first), _members(second)
    strip = {n.split("/", 1)[1]: v for n, v in a.items()}
    strip2 = {n.split("/", 1)[1]: v for n, v in b.items()}
    assert strip.keys() == strip2.keys()
    same = {"bagit.txt", "manifest-md5.txt", "manifest-sha256.txt", "metadata_local.xml",
            "data/a.txt", "data/dir/b 100%.txt"}
    for name in same:
        assert strip[name] == strip2[name], name
    original = item_values(env.repo, item_id)
    copy = item_values(env.repo, result.primary.uuid)
    for fname in ("dc.title", "dc.contributor.author", "dc.subject", "dc.date.issued",
                  "local.bagit.Contact-Name"):
        assert copy[fname] == original[fname]
    # and a third generation equals the second, but for what submitting re-creates
    third_source = tmp_path / "bag2.zip"
    third_source.write_bytes(second)
    third = ingest(BagItPackager(), env, third_source).primary
    assert third is not None and third.uuid is not None
    assert item_files(env.repo, third.uuid) == item_files(env.repo, result.primary.uuid)


# ---------------------------------------------------------------------------------------
# Hostile and broken bags


def test_wrong_checksum_and_missing_file(env: Setup, tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bad", {"a.txt": b"aaa", "b.txt": b"bbb"},
                    algorithms=("sha256", "sha512"),
                    manifest_override={"b.txt": "0" * 64})
    error = refused(BagItPackager(), env, zip_dir(bag, tmp_path / "bad.zip"))
    assert any(d.file == "data/b.txt" and d.field == "sha256" for d in error.details)
    missing = write_bag(tmp_path / "missing", {"a.txt": b"aaa"})
    (missing / "data" / "a.txt").unlink()
    (missing / "bag-info.txt").write_text("")
    with open(missing / "tagmanifest-sha256.txt", "w") as fh:
        for name in ("bag-info.txt", "bagit.txt", "manifest-sha256.txt"):
            fh.write(f"{hashlib.sha256((missing / name).read_bytes()).hexdigest()}  {name}\n")
    error = refused(BagItPackager(), env, missing)
    assert any(d.file == "data/a.txt" for d in error.details)


def test_zip_slip_and_absolute_paths(env: Setup, tmp_path: Path) -> None:
    good = write_bag(tmp_path / "g", {"a.txt": b"a"})
    for evil in ("../evil.txt", "/etc/evil.txt"):
        target = tmp_path / "evil.zip"
        zip_dir(good, target)
        with zipfile.ZipFile(target, "a") as zf:
            zf.writestr(evil, b"x")
        error = refused(BagItPackager(), env, target, expect=UnsafeInput)
        assert any(d.file == evil for d in error.details)
    assert not (tmp_path / "evil.txt").exists()


def test_links_refused(env: Setup, tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "l", {"a.txt": b"a"})
    target = tmp_path / "links.tar"
    with tarfile.open(target, "w") as tar:
        tar.add(bag, arcname="l")
        link = tarfile.TarInfo("l/data/passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    refused(BagItPackager(), env, target, expect=UnsafeInput)
    os.symlink("/etc/passwd", bag / "data" / "passwd")
    error = refused(BagItPackager(), env, bag, expect=UnsafeInput)
    assert error.details[0].file == "data/passwd"


def test_zip_bomb_refused(env: Setup, tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bomb", {"a.txt": b"a"})
    target = zip_dir(bag, tmp_path / "bomb.zip")
    with zipfile.ZipFile(target, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/zeros.bin", bytes(50 * 1024 * 1024))
    error = refused(BagItPackager(), env, target, expect=UnsafeInput)
    assert "data/zeros.bin" in details_text(error)


def test_xml_entities_refused(env: Setup, tmp_path: Path) -> None:
    laughs = (b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
              b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
              b'<dublin_core schema="dc"><dcvalue element="title">&b;</dcvalue></dublin_core>')
    bag = write_bag(tmp_path / "xml", {"a.txt": b"a"}, extra_tags={"dublin_core.xml": laughs})
    error = refused(BagItPackager(), env, zip_dir(bag, tmp_path / "xml.zip"),
                    expect=UnsafeInput)
    assert "DOCTYPE" in details_text(error)


def test_fetch_and_not_a_bag(env: Setup, tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "holey", {"a.txt": b"a"},
                    extra_tags={"fetch.txt": b"https://example.org/b.txt 1 data/b.txt\n"})
    error = refused(BagItPackager(), env, bag)
    assert "does not fetch" in details_text(error)
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("readme.txt", b"hello")
    error = refused(BagItPackager(), env, plain, expect=PackageValidationError)
    assert error.details[0].expected == "bagit.txt"


def test_corpus_paths_resolve() -> None:
    """The corpus lives beside the checkout; these tests skip cleanly without it."""
    if not CORPUS.exists():
        pytest.skip("corpus not available")
    assert (CORPUS / "PROVENANCE.md").is_file()


def test_nothing_left_after_success(env: Setup, tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "ok", {"a.txt": b"a", "b/c.txt": b"c"})
    before = residue(env.repo)
    result = ingest(BagItPackager(), env, zip_dir(bag, tmp_path / "ok.zip"))
    after = residue(env.repo)
    assert result.primary is not None
    assert after.staging == [] and after.items == before.items + 1
    assert len(after.keys) == len(before.keys) + 2
