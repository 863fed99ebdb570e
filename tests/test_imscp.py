"""The IMSCP packager: pyslet and Rustici packages, Moodle's broken variants, round trips
and hostile packages."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import corpus_path
from packager_support import (
    Setup,
    details_text,
    ingest,
    item_files,
    item_values,
    make_zip,
    package_bytes,
    refused,
    setup,
)

from packagers.base import PackageSource
from packagers.errors import PackageValidationError
from packagers.imscp import IMSCPPackager
from packagers.registry import Registry
from server.errors import UnsafeInput

RUSTICI = ("imscp", "rustici-scorm-golf-examples-via-mod_exescorm")
PYSLET = ("imscp", "pyslet-unittests")

MANIFEST = b"""<?xml version="1.0" encoding="UTF-8"?>
<manifest xmlns="http://www.imsglobal.org/xsd/imscp_v1p1"
          xmlns:imsmd="http://www.imsglobal.org/xsd/imsmd_v1p2" identifier="M1">
  <metadata>
    <schema>IMS Content</schema>
    <imsmd:lom>
      <imsmd:general>
        <imsmd:title><imsmd:langstring xml:lang="en">Water treatment</imsmd:langstring>
        </imsmd:title>
        <imsmd:language>en</imsmd:language>
        <imsmd:description><imsmd:langstring>Lecture notes</imsmd:langstring>
        </imsmd:description>
        <imsmd:keyword><imsmd:langstring>water</imsmd:langstring></imsmd:keyword>
        <imsmd:keyword><imsmd:langstring>sewage</imsmd:langstring></imsmd:keyword>
      </imsmd:general>
      <imsmd:rights><imsmd:description><imsmd:langstring>CC-BY 4.0</imsmd:langstring>
      </imsmd:description></imsmd:rights>
    </imsmd:lom>
  </metadata>
  <organizations default="O1">
    <organization identifier="O1"><title>Course</title>
      <item identifier="I1" identifierref="R1"><title>Start</title></item>
    </organization>
  </organizations>
  <resources>
    <resource identifier="R1" type="webcontent" href="pages/index.html">
      <file href="pages/index.html"/>
      <file href="pages/%C3%BCbung%201.html"/>
      <file href="http://example.org/external.js"/>
    </resource>
  </resources>
</manifest>
"""
FILES = {"imsmanifest.xml": MANIFEST, "pages/index.html": b"<html>index</html>",
         "pages/\u00fcbung 1.html": b"<html>exercise</html>",
         "__MACOSX/._imsmanifest.xml": b"junk", ".DS_Store": b"junk"}


@pytest.fixture
def env(repo: Any, admin: Any) -> Setup:
    return setup(repo, admin)


def test_registered_and_sniffed(tmp_path: Path) -> None:
    registry = Registry()
    assert registry.get("imscp") is IMSCPPackager
    package = make_zip(tmp_path / "p.zip", FILES)
    assert IMSCPPackager.sniff(PackageSource(package))
    assert registry.choose_ingester(content_type="application/zip",
                                    source=PackageSource(package)) is IMSCPPackager
    nested = make_zip(tmp_path / "n.zip", {"x/imsmanifest.xml": MANIFEST})
    assert not IMSCPPackager.sniff(PackageSource(nested))


def test_ingest_lom_metadata_files_and_manifest(env: Setup, tmp_path: Path) -> None:
    package = make_zip(tmp_path / "course.zip", FILES)
    result = ingest(IMSCPPackager(), env, package)
    assert result.primary is not None and result.primary.uuid is not None
    assert result.primary.warnings == []
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["Water treatment"]
    assert values["dc.description"] == ["Lecture notes"]
    assert values["dc.subject"] == ["water", "sewage"]
    assert values["dc.language.iso"] == ["en"]
    assert values["dc.rights"] == ["CC-BY 4.0"]
    files = item_files(env.repo, result.primary.uuid)
    assert [f[0] for f in files["ORIGINAL"]] == ["pages/index.html", "pages/\u00fcbung 1.html"]
    assert files["METADATA"][0][:2] == ("imsmanifest.xml", len(MANIFEST))
    with env.repo.context(write=False) as ctx:
        from server import models as m

        item = ctx.session.get(m.Item, result.primary.uuid)
        assert item is not None
        original = next(b for b in item.bundles if b.name == "ORIGINAL")
        assert original.primary_bitstream is not None
        assert original.primary_bitstream.name == "pages/index.html"


def test_corpus_rustici_scorm_packages(env: Setup) -> None:
    result = ingest(IMSCPPackager(), env, corpus_path(*RUSTICI, "singlescobasic.zip"))
    assert result.primary is not None and result.primary.uuid is not None
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["Golf Explained - Run-time Basic Calls"]
    names = [f[0] for f in item_files(env.repo, result.primary.uuid)["ORIGINAL"]]
    assert "shared/launchpage.html" in names and "Etiquette/Course.html" in names
    assert len(names) == 45  # every file but the manifest
    assert any("adlcp_rootv1p2.xsd" in w for w in result.primary.warnings)
    scorm2004 = ingest(IMSCPPackager(), env, corpus_path(
        *RUSTICI, "RuntimeBasicCalls_SCORM20043rdEdition.zip"))
    assert scorm2004.primary is not None and scorm2004.primary.uuid is not None
    assert item_values(env.repo, scorm2004.primary.uuid)["dc.title"] == [
        "Golf Explained - Run-time Basic Calls"]


def test_corpus_pyslet_packages(env: Setup) -> None:
    zipped = ingest(IMSCPPackager(), env,
                    corpus_path(*PYSLET, "data_imscpv1p2", "package_1.zip"))
    assert zipped.primary is not None and zipped.primary.uuid is not None
    # the zip has no UTF-8 flag and __MACOSX clutter: the name is repaired, clutter ignored
    assert item_files(env.repo, zipped.primary.uuid)["ORIGINAL"] == [
        ("\u82f1\u56fd.xml", 70, item_files(env.repo, zipped.primary.uuid)["ORIGINAL"][0][2])]
    package_3 = ingest(IMSCPPackager(), env, corpus_path(*PYSLET, "data_imscpv1p2",
                                                         "package_3"))
    assert package_3.primary is not None and package_3.primary.uuid is not None
    names = [f[0] for f in item_files(env.repo, package_3.primary.uuid)["ORIGINAL"]]
    assert names == ["file_1.xml", "file_2.xml", "file_3.xml", "file_4.xml", "file_a.xml",
                     "file_b.xml"]
    assert any("file_4.xml" in w for w in package_3.primary.warnings)
    china = ingest(IMSCPPackager(), env, corpus_path(*PYSLET, "data_imscpv1p2",
                                                     "\u82f1\u56fd"))
    assert china.primary is not None and china.primary.uuid is not None
    assert item_values(env.repo, china.primary.uuid)["dc.title"] == ["\u82f1\u56fd"]
    cartridge = ingest(IMSCPPackager(), env,
                       corpus_path(*PYSLET, "imscc_profilev1p1-sample_1"))
    assert cartridge.primary is not None and cartridge.primary.uuid is not None
    assert len(item_files(env.repo, cartridge.primary.uuid)["ORIGINAL"]) == 11


def test_corpus_moodle_broken_variants_refused(env: Setup) -> None:
    error = refused(IMSCPPackager(), env, corpus_path(*RUSTICI, "badscorm.zip"))
    assert error.details[0].file == "badscorm/imsmanifest.xml"
    error = refused(IMSCPPackager(), env, corpus_path(*RUSTICI, "invalid.zip"))
    assert error.details[0].expected == "imsmanifest.xml"
    error = refused(IMSCPPackager(), env, corpus_path(*RUSTICI, "validscorm.zip"))
    assert "well-formed" in error.message and error.details[0].line == 2
    error = refused(IMSCPPackager(), env,
                    corpus_path(*RUSTICI, "singlescobasic_missingorg.zip"))
    assert error.details[0].field == "organizations"


def test_missing_file_and_escaping_href(env: Setup, tmp_path: Path) -> None:
    missing = dict(FILES)
    del missing["pages/index.html"]
    error = refused(IMSCPPackager(), env, make_zip(tmp_path / "m.zip", missing),
                    expect=PackageValidationError)
    assert [d.file for d in error.details] == ["pages/index.html"]
    escaping = dict(FILES)
    escaping["imsmanifest.xml"] = MANIFEST.replace(b'href="pages/index.html"/>',
                                                   b'href="../../etc/passwd"/>')
    error = refused(IMSCPPackager(), env, make_zip(tmp_path / "e.zip", escaping))
    assert error.details[0].found == "../../etc/passwd"


def test_hostile_archives_and_xml(env: Setup, tmp_path: Path) -> None:
    for evil in ("../evil.html", "/abs.html"):
        package = make_zip(tmp_path / "z.zip", {**FILES, evil: b"x"})
        error = refused(IMSCPPackager(), env, package, expect=UnsafeInput)
        assert evil in details_text(error)
    bomb = tmp_path / "bomb.zip"
    make_zip(bomb, FILES)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pages/zeros.bin", bytes(50 * 1024 * 1024))
    refused(IMSCPPackager(), env, bomb, expect=UnsafeInput)
    entity = MANIFEST.replace(b'<manifest', b'<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/'
                              b'passwd">]>\n<manifest', 1)
    error = refused(IMSCPPackager(), env,
                    make_zip(tmp_path / "x.zip", {**FILES, "imsmanifest.xml": entity}),
                    expect=UnsafeInput)
    assert "DOCTYPE" in details_text(error)


def test_round_trip_original_and_generated(env: Setup, tmp_path: Path) -> None:
    package = make_zip(tmp_path / "course.zip", FILES)
    first = ingest(IMSCPPackager(), env, package).primary
    assert first is not None and first.uuid is not None
    original = package_bytes(IMSCPPackager(), env, first.uuid)
    assert package_bytes(IMSCPPackager(), env, first.uuid) == original
    with zipfile.ZipFile(io.BytesIO(original)) as zf:
        assert zf.namelist() == ["imsmanifest.xml", "pages/index.html",
                                 "pages/\u00fcbung 1.html"]
        assert zf.read("imsmanifest.xml") == MANIFEST
    again = tmp_path / "again.zip"
    again.write_bytes(original)
    second = ingest(IMSCPPackager(), env, again).primary
    assert second is not None and second.uuid is not None
    assert package_bytes(IMSCPPackager(), env, second.uuid) == original
    generated = package_bytes(IMSCPPackager(), env, first.uuid, manifest="generate")
    regen = tmp_path / "regen.zip"
    regen.write_bytes(generated)
    third = ingest(IMSCPPackager(), env, regen).primary
    assert third is not None and third.uuid is not None
    for name in ("dc.title", "dc.description", "dc.subject", "dc.language.iso", "dc.rights"):
        assert item_values(env.repo, third.uuid)[name] == \
            item_values(env.repo, first.uuid)[name]
    assert package_bytes(IMSCPPackager(), env, third.uuid) == generated
    # a manifest generated afresh differs only in its identifier (the item's own handle)
    fresh = package_bytes(IMSCPPackager(), env, third.uuid, manifest="generate")
    with zipfile.ZipFile(io.BytesIO(fresh)) as a, zipfile.ZipFile(io.BytesIO(generated)) as b:
        ours, theirs = a.read("imsmanifest.xml"), b.read("imsmanifest.xml")
    assert ours != theirs
    assert ours.replace(third.handle.replace("/", "-").encode(), b"H") == \
        theirs.replace(first.handle.replace("/", "-").encode(), b"H")


def test_item_without_manifest_gets_generated_one(env: Setup) -> None:
    from core_support import add_file, new_item

    with env.repo.context(system=True) as ctx:
        item = new_item(ctx, env.collection, title="Plain item")
        add_file(ctx, item, b"hello", "hello.txt")
        add_file(ctx, item, b"manifest clash", "imsmanifest.xml")
        item_id = item.id
    data = package_bytes(IMSCPPackager(), env, item_id)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        manifest = zf.read("imsmanifest.xml")
    assert names[0] == "imsmanifest.xml" and "hello.txt" in names
    assert b"manifest clash" not in manifest and b">Plain item</lom:string>" in manifest
    assert any(n.startswith("bitstream_") for n in names)
