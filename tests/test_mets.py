"""The METS packager (DSpace METS SIP profile): DSpace's, the SWORD clients' and Vireo's
packages from the corpus, METS of other systems, crosswalks, checksums, licences and
embargoes, the METS DIP and its options, round trips and hostile packages."""

from __future__ import annotations

import hashlib
import io
import re
import urllib.request
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import corpus_path
from lxml import etree
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

from packagers.base import IngestRequest, PackageSource
from packagers.errors import PackageValidationError
from packagers.mets import SWORD_LEGACY_URI, SWORD_URI, METSPackager
from packagers.params import PackageParameters
from packagers.registry import Registry
from server import models as m
from server.errors import UnknownMetadataField, UnsafeInput
from server.services import metadata

SIP = "mets-sip"
M = "{http://www.loc.gov/METS/}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"

EXAMPLE_TITLE = ("Attempts to detect retrotransposition and de novo deletion of Alus and "
                 "other dispersed repeats at specific loci in the human genome")


@pytest.fixture
def env(repo: Any, admin: Any) -> Setup:
    return setup(repo, admin)


def mets(dmd: str, files: str = "", *, structmaps: str | None = None, amd: str = "",
         profile: str = "DSpace METS SIP Profile 1.0", mets_id: str = "sip-1") -> bytes:
    """A METS SIP manifest: ``dmd`` is the mdWrap of dmdSec ``dmd-1``; ``files`` the
    ``file`` elements of a CONTENT fileGrp."""
    profile_attr = f' PROFILE="{profile}"' if profile else ""
    id_attr = f' ID="{mets_id}"' if mets_id else ""
    structmaps = structmaps if structmaps is not None else (
        '<structMap TYPE="LOGICAL"><div DMDID="dmd-1"><fptr FILEID="f1"/></div></structMap>')
    return f"""<?xml version="1.0" encoding="utf-8"?>
<mets{id_attr}{profile_attr} xmlns="http://www.loc.gov/METS/"
      xmlns:xlink="http://www.w3.org/1999/xlink">
  <dmdSec ID="dmd-1">{dmd}</dmdSec>
  {amd}
  <fileSec><fileGrp USE="CONTENT">{files}</fileGrp></fileSec>
  {structmaps}
</mets>""".encode()


DIM = """<mdWrap MDTYPE="OTHER" OTHERMDTYPE="DIM"><xmlData>
  <dim:dim xmlns:dim="http://www.dspace.org/xmlns/dspace/dim">
    <dim:field mdschema="dc" element="title">Ein Titel</dim:field>
    <dim:field mdschema="dc" element="contributor" qualifier="author">Lovelace, Ada</dim:field>
  </dim:dim></xmlData></mdWrap>"""
FILE_A = ('<file ID="f1" MIMETYPE="text/plain"><FLocat LOCTYPE="URL" xlink:href="a.txt"/>'
          '</file>')


def sip(tmp_path: Path, manifest: bytes, files: dict[str, bytes] | None = None,
        name: str = "sip.zip") -> Path:
    return make_zip(tmp_path / name, {"mets.xml": manifest, **(files or {"a.txt": b"aaa"})})


def primary_name(repo: Any, item_id: Any) -> str | None:
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        for bundle in item.bundles:
            if bundle.primary_bitstream is not None:
                return str(bundle.primary_bitstream.name)
    return None


# ---------------------------------------------------------------------------------------
# Registration and choosing


def test_registered_names_sword_uris_and_sniffing(tmp_path: Path) -> None:
    registry = Registry()
    registry.check()
    for name in ("METS", "mets", "METSDSpaceSIP", "DSpace METS SIP"):
        assert registry.get(name) is METSPackager
    assert registry.choose_ingester(sword_packaging=SWORD_URI) is METSPackager
    assert registry.choose_ingester(sword_packaging=SWORD_LEGACY_URI) is METSPackager
    package = sip(tmp_path, mets(DIM, FILE_A))
    assert METSPackager.sniff(PackageSource(package))
    assert registry.choose_ingester(content_type="application/zip",
                                    source=PackageSource(package)) is METSPackager
    bare = tmp_path / "mets.xml"
    bare.write_bytes(mets(DIM))
    assert registry.choose_ingester(content_type="text/xml",
                                    source=PackageSource(bare)) is METSPackager
    other = sip(tmp_path, mets(DIM, FILE_A, profile="my-profile"), name="other.zip")
    assert not METSPackager.sniff(PackageSource(other))
    aip = corpus_path("aip", "dspace-1.7-docs-samples", "22675554.zip")
    assert not METSPackager.sniff(PackageSource(aip))
    for name in ("dspace-sword2-tests/example.zip", "swordapp-JavaClient2.0/example2.zip",
                 "swordappv2-php-library/sword-article.zip",
                 "vireo-tests/Sword1_ValidDeposit.zip"):
        assert METSPackager.sniff(PackageSource(corpus_path(SIP, *name.split("/")))), name


# ---------------------------------------------------------------------------------------
# The corpus: what goes in


def test_corpus_dspace_example(env: Setup) -> None:
    result = ingest(METSPackager(), env, corpus_path(SIP, "dspace-sword2-tests", "example.zip"))
    assert result.primary is not None and result.primary.uuid is not None
    assert result.warnings == []
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == [EXAMPLE_TITLE]
    assert values["dc.contributor.author"] == ["Hollies, C.R.", "Monckton, D.G.",
                                               "Jeffreys, A.J."]
    assert values["dc.description.abstract"][0].startswith(
        "Dispersed repeat elements contribute to genome instability by de novo insertion")
    assert values["dc.description.abstract"][0].endswith("sensitive methods currently "
                                                         "available.")
    assert values["dc.identifier.uri"][0] == "http://www.myu.ac.uk/some/identifier"
    assert values["dc.language.iso"] == ["en"]
    assert values["dc.type"] == ["Journal Article"]
    assert values["dc.date.issued"] == ["2001-02"]
    assert values["dc.description"] == ["Peer Reviewed"]
    assert values["dc.rights.holder"] == ["Nature Publishing Group"]
    files = item_files(env.repo, result.primary.uuid)
    assert [(n, s) for n, s, _ in files["ORIGINAL"]] == [
        ("pdf1.pdf", 11083), ("pdf2.pdf", 11287), ("pdf3.pdf", 11323)]
    # no fptr directly in the item's div: the first file it lists is the primary one
    assert primary_name(env.repo, result.primary.uuid) == "pdf1.pdf"


def test_corpus_dspace_example_variants(env: Setup) -> None:
    mimetypes = ingest(METSPackager(), env,
                       corpus_path(SIP, "dspace-sword2-tests", "example-mimetypes.zip"))
    assert mimetypes.primary is not None and mimetypes.primary.uuid is not None
    with env.repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, mimetypes.primary.uuid)
        assert item is not None
        assert [(b.name, b.mime_type, b.size) for b in item.bundles[0].bitstreams] == [
            ("pdf1.pdf", "application/pdf", 11083), ("text.txt", "text/plain", 5),
            ("dspace-logo.svg", "image/svg+xml", 3949)]
    embargo = ingest(METSPackager(), env,
                     corpus_path(SIP, "dspace-sword2-tests", "example-embargo.zip"))
    assert embargo.primary is not None and embargo.primary.uuid is not None
    assert item_values(env.repo, embargo.primary.uuid)["dc.title"] == [EXAMPLE_TITLE]
    with env.repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, embargo.primary.uuid)
        assert item is not None
        (bitstream,) = item.bundles[0].bitstreams
        assert (bitstream.name, bitstream.size) == ("dspace-logo.pdf", 11056)
        policies = [(p.action, p.group.name if p.group else None, p.start_date)
                    for p in bitstream.policies]
    # the package's METSRights delay anonymous access (the collection's default) to
    # 2025-02-15: an embargo, not an extra grant
    assert policies == [(m.Action.READ, m.ANONYMOUS, datetime(2025, 2, 15))]


def test_corpus_javaclient_example2(env: Setup) -> None:
    result = ingest(METSPackager(), env,
                    corpus_path(SIP, "swordapp-JavaClient2.0", "example2.zip"))
    assert result.primary is not None and result.primary.uuid is not None
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["A title from a METS document"]
    assert values["dc.contributor.author"] == ["Jones, RD"]
    assert values["dc.description.abstract"] == [
        "This document is an alternative example METS document for testing with"]
    assert values["dc.identifier.uri"][0] == "http://www.myu.ac.uk/some/other"
    assert values["dc.date.issued"] == ["2013-01"]
    assert [(n, s) for n, s, _ in item_files(env.repo, result.primary.uuid)["ORIGINAL"]] == [
        ("pdf4.pdf", 11083), ("pdf5.pdf", 11287)]


def test_corpus_ariadne_article(env: Setup) -> None:
    result = ingest(METSPackager(), env,
                    corpus_path(SIP, "swordappv2-php-library", "sword-article.zip"))
    assert result.primary is not None and result.primary.uuid is not None
    assert result.warnings == []  # "eprint/terms/Status" (capital S) is still the status
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["SWORD: Simple Web-service Offering Repository Deposit"]
    assert values["dc.contributor.author"] == ["Allinson, Julie", "Fran\u00e7ois, Sebastien",
                                               "Lewis, Stuart"]
    assert values["dc.identifier.uri"][0] == "http://www.ariadne.ac.uk/issue54/allinson-et-al/"
    assert values["dc.date.issued"] == ["2008-01"]
    assert values["dc.description"] == ["Peer Reviewed"]
    assert values["dc.description.abstract"][0].startswith(
        "This article offers a twofold introduction to the JISC-funded SWORD Project")
    ((name, size, md5),) = item_files(env.repo, result.primary.uuid)["ORIGINAL"]
    assert (name, size) == ("SWORD Ariadne Jan 2008.pdf", 837437)
    assert md5 == "95a1a31ed9e6211f09a60fbcc41283f8"


def test_corpus_vireo_valid_deposit(env: Setup) -> None:
    """Vireo's "valid" deposit lists pdf2.jpg and pdf3.jpg, but the zip holds pdf2.pdf and
    pdf3.pdf, and its DIM uses the thesis schema and dc fields a stock registry lacks."""
    package = corpus_path(SIP, "vireo-tests", "Sword1_ValidDeposit.zip")
    error = refused(METSPackager(), env, package, expect=PackageValidationError)
    assert [d.file for d in error.details] == ["pdf2.jpg", "pdf3.jpg"]
    error = refused(METSPackager(), env, package, expect=UnknownMetadataField,
                    ignoreMissingFiles="true", createMetadataFields="true")
    assert {d.field for d in error.details} == {
        "thesis.degree.name", "thesis.degree.level", "thesis.degree.discipline",
        "thesis.degree.department", "thesis.degree.college"}
    with env.repo.context(system=True) as ctx:  # a repository set up for Vireo has it
        metadata.create_schema(ctx, "thesis", "http://www.ndltd.org/standards/metadata/etdms/1.0/")
    result = ingest(METSPackager(), env, package, ignoreMissingFiles="true",
                    createMetadataFields="true")
    assert result.primary is not None and result.primary.uuid is not None
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["Document Title"]
    assert values["dc.creator"] == ["Phillips, Scott 2002-"]
    assert values["dc.description.abstract"] == ["Document Abstract"]
    assert values["dc.subject"] == ["Keyword"]
    assert values["dc.date.created"] == ["2002-1"]
    assert values["dc.date.submitted"] == ["2002 January"]
    assert values["dc.type.genre"] == ["thesis"]
    assert values["dc.type.material"] == ["text"]
    assert values["thesis.degree.name"] == ["My Degree"]
    assert values["thesis.degree.level"] == ["Undergraduate"]
    assert values["dc.description.provenance"][0] == (
        "DSpace METS Submission Ingestion Package generated from Vireo submission #12 on "
        "2012-07-31 at 11:29:35")
    assert item_files(env.repo, result.primary.uuid)["ORIGINAL"] == [
        ("pdf1.pdf", 11083, "348fb9ceae472a41df626a1610d764c5")]
    assert primary_name(env.repo, result.primary.uuid) == "pdf1.pdf"
    text = " ".join(result.warnings)
    assert "pdf2.jpg" in text and "pdf3.jpg" in text  # left out
    assert "pdf2.pdf" in text and "pdf3.pdf" in text  # not listed


def test_corpus_invalid_deposits_refused_with_reason(env: Setup, tmp_path: Path) -> None:
    error = refused(METSPackager(), env,
                    corpus_path(SIP, "vireo-tests", "Sword1_InvalidDeposit.zip"),
                    expect=PackageValidationError)
    assert 'required "title"' in error.message
    assert error.details[0].field == "dc.title" and error.details[0].found == "dc.creator"
    # a bare manifest whose files are not in this repository: nothing is fetched
    for name in ("mets.xml", "mets-dspace-1.6.2.xml"):
        error = refused(METSPackager(), env, corpus_path(SIP, "dspace-sword-example", name),
                        expect=PackageValidationError)
        assert [d.file for d in error.details] == ["pdf1.pdf", "pdf2.pdf", "pdf3.pdf"]
        assert "URL of a bitstream of this repository" in error.details[0].message
    # Dissemin's SWORD METS is not the DSpace profile
    for name in ("mets.xml", "mets_dc_lesebibliothek_frauenzimmer.xml"):
        path = corpus_path(SIP, "dissemin-sword-mets", name)
        error = refused(METSPackager(), env, path)
        assert error.message == "Cannot accept METS with no PROFILE attribute!"
        assert not METSPackager.sniff(PackageSource(path))
        zipped = make_zip(tmp_path / "dissemin.zip",
                          {"mets.xml": path.read_bytes(), "document.pdf": b"%PDF-1.4"})
        assert refused(METSPackager(), env, zipped).message == error.message


def test_corpus_mets_of_other_systems_refused(env: Setup) -> None:
    other = corpus_path("mets-other")
    checked = 0
    for path in sorted(other.rglob("*.xml")):
        head = path.read_bytes()[:4096]
        if b"mets" not in head.lower():
            continue
        dspace_profile = b'PROFILE="DSpace METS SIP Profile' in head
        assert METSPackager.sniff(PackageSource(path)) == (
            dspace_profile and b'"http://www.loc.gov/METS/"' in head), path
        error = refused(METSPackager(), env, path)
        assert ("PROFILE" in error.message or "not a METS document" in error.message
                or "files by the URL" in details_text(error)), (path, error)
        checked += 1
    assert checked >= 30
    # METS 2 (another namespace) with a DSpace profile: not METS 1, not claimed
    v2 = corpus_path("mets-other", "mets-board-examples", "dspace-sword-mets2.xml")
    assert "not in the METS namespace" in refused(METSPackager(), env, v2).message
    # Fedora's SIP Creator zip has backslashes in its names
    fedora = corpus_path("mets-other", "fedora-sipcreator", "Output.zip")
    error = refused(METSPackager(), env, fedora, expect=UnsafeInput)
    assert any("\\" in (d.file or "") for d in error.details)


def test_aip_refused_with_a_hint(env: Setup) -> None:
    aip = corpus_path("aip", "dspace-1.7-docs-samples", "22675554.zip")
    error = refused(METSPackager(), env, aip)
    assert "package=AIP" in error.message
    assert error.details[0].field == "mets/@PROFILE"


# ---------------------------------------------------------------------------------------
# Manifest rules and crosswalks


def test_dmdid_found_in_any_structmap(env: Setup, tmp_path: Path) -> None:
    maps = ('<structMap TYPE="PHYSICAL"><div TYPE="page"><fptr FILEID="f1"/></div></structMap>'
            '<structMap LABEL="Parent"><div DMDID="dmd-1"/></structMap>'
            '<structMap TYPE="LOGICAL"><div TYPE="book"><div DMDID="dmd-1">'
            '<fptr FILEID="f1"/></div></div></structMap>')
    result = ingest(METSPackager(), env, sip(tmp_path, mets(DIM, FILE_A, structmaps=maps)))
    assert result.primary is not None and result.primary.uuid is not None
    assert item_values(env.repo, result.primary.uuid)["dc.title"] == ["Ein Titel"]
    none = '<structMap><div TYPE="x"><fptr FILEID="f1"/></div></structMap>'
    error = refused(METSPackager(), env, sip(tmp_path, mets(DIM, FILE_A, structmaps=none)))
    assert error.details[0].field == "structMap/div/@DMDID"
    dangling = '<structMap><div DMDID="nope"/></structMap>'
    error = refused(METSPackager(), env, sip(tmp_path, mets(DIM, FILE_A, structmaps=dangling)))
    assert error.details[0].found == "nope"


def test_required_attributes(env: Setup, tmp_path: Path) -> None:
    error = refused(METSPackager(), env, sip(tmp_path, mets(DIM, FILE_A, mets_id="")))
    assert error.message == "Manifest is missing the required mets@ID attribute."
    error = refused(METSPackager(), env, sip(tmp_path, mets(DIM, FILE_A, profile="")))
    assert error.details[0].expected == "DSpace METS SIP Profile 1.0"
    no_use = mets(DIM, FILE_A).replace(b' USE="CONTENT"', b"")
    error = refused(METSPackager(), env, sip(tmp_path, no_use))
    assert error.details[0].field == "fileGrp/@USE"
    fcontent = FILE_A.replace('<FLocat LOCTYPE="URL" xlink:href="a.txt"/>',
                              "<FContent><binData>YWFh</binData></FContent>")
    error = refused(METSPackager(), env, sip(tmp_path, mets(DIM, fcontent)))
    assert "FContent" in error.message
    twice = mets(DIM, FILE_A).replace(b'ID="dmd-1"', b'ID="f1"')
    assert "used twice" in refused(METSPackager(), env, sip(tmp_path, twice)).message
    marc = '<mdWrap MDTYPE="MARC"><xmlData><record/></xmlData></mdWrap>'
    error = refused(METSPackager(), env, sip(tmp_path, mets(marc, FILE_A)))
    assert error.details[0].found == "MARC" and "DIM" in (error.details[0].expected or "")
    broken = sip(tmp_path, b"<mets><unclosed></mets>")
    error = refused(METSPackager(), env, broken)
    assert "well-formed" in error.message and error.details[0].file == "mets.xml"


def test_mods_dc_qdc_and_choice_of_dmd(env: Setup, tmp_path: Path) -> None:
    mods = """<mdWrap MDTYPE="MODS"><xmlData><mods:mods xmlns:mods="http://www.loc.gov/mods/v3">
      <mods:titleInfo><mods:title>Titel aus MODS</mods:title></mods:titleInfo>
      <mods:name><mods:role><mods:roleTerm type="text">author</mods:roleTerm></mods:role>
        <mods:namePart>Noether, Emmy</mods:namePart></mods:name>
      <mods:originInfo><mods:dateIssued encoding="iso8601">1921</mods:dateIssued>
      </mods:originInfo>
      <mods:subject><mods:topic>Ringtheorie</mods:topic></mods:subject>
    </mods:mods></xmlData></mdWrap>"""
    result = ingest(METSPackager(), env, sip(tmp_path, mets(mods, FILE_A)))
    assert result.primary is not None and result.primary.uuid is not None
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["Titel aus MODS"]
    assert values["dc.contributor.author"] == ["Noether, Emmy"]
    assert values["dc.date.issued"] == ["1921"]
    assert values["dc.subject"] == ["Ringtheorie"]
    qdc = """<mdWrap MDTYPE="DC"><xmlData xmlns:dc="http://purl.org/dc/elements/1.1/"
        xmlns:dcterms="http://purl.org/dc/terms/"
        xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
      <dc:title xml:lang="de">  Titel aus DC </dc:title>
      <dc:creator>Curie, Marie</dc:creator>
      <dcterms:abstract>Kurzfassung</dcterms:abstract>
      <dcterms:issued>1903</dcterms:issued>
      <dc:identifier xsi:type="dcterms:URI">https://example.org/x</dc:identifier>
      <dc:identifier>ISBN 3</dc:identifier>
      <dcterms:audience>Physiker</dcterms:audience>
    </xmlData></mdWrap>"""
    result = ingest(METSPackager(), env, sip(tmp_path, mets(qdc, FILE_A)))
    assert result.primary is not None and result.primary.uuid is not None
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["Titel aus DC"]
    assert values["dc.contributor.author"] == ["Curie, Marie"]
    assert values["dc.description.abstract"] == ["Kurzfassung"]
    assert values["dc.date.issued"] == ["1903"]
    assert values["dc.identifier.uri"][0] == "https://example.org/x"
    assert values["dc.identifier"] == ["ISBN 3"]
    assert values["dcterms.audience"] == ["Physiker"]
    # two descriptions of one group: DIM first; dmd= picks another
    both = mets(DIM, FILE_A).replace(
        b'<dmdSec ID="dmd-1">', b'<dmdSec ID="dmd-2">' + mods.encode() + b'</dmdSec>'
        b'<dmdSec ID="dmd-1">').replace(b'DMDID="dmd-1"', b'DMDID="dmd-2 dmd-1"')
    first = ingest(METSPackager(), env, sip(tmp_path, both)).primary
    assert first is not None and first.uuid is not None
    assert item_values(env.repo, first.uuid)["dc.title"] == ["Ein Titel"]
    chosen = ingest(METSPackager(), env, sip(tmp_path, both), dmd="MODS").primary
    assert chosen is not None and chosen.uuid is not None
    assert item_values(env.repo, chosen.uuid)["dc.title"] == ["Titel aus MODS"]


def test_dmd_by_reference_and_bundles(env: Setup, tmp_path: Path) -> None:
    dim_file = DIM.split("<xmlData>", 1)[1].split("</xmlData>", 1)[0].encode()
    ref = '<mdRef LOCTYPE="URL" MDTYPE="OTHER" OTHERMDTYPE="DIM" xlink:href="meta/dim.xml"/>'
    files = (FILE_A + '</fileGrp><fileGrp USE="TEXT"><file ID="f2"><FLocat LOCTYPE="URL" '
             'xlink:href="a.txt.txt"/></file></fileGrp><fileGrp USE="MANIFESTMD">'
             '<file ID="f3" MIMETYPE="text/xml"><FLocat LOCTYPE="URL" '
             'xlink:href="meta/dim.xml"/></file>')
    package = sip(tmp_path, mets(ref, files), {"a.txt": b"aaa", "a.txt.txt": b"extracted",
                                               "meta/dim.xml": dim_file})
    result = ingest(METSPackager(), env, package)
    assert result.primary is not None and result.primary.uuid is not None
    assert result.warnings == []
    assert item_values(env.repo, result.primary.uuid)["dc.title"] == ["Ein Titel"]
    files_by_bundle = item_files(env.repo, result.primary.uuid)
    assert [(b, [f[0] for f in fs]) for b, fs in files_by_bundle.items()] == [
        ("ORIGINAL", ["a.txt"]), ("TEXT", ["a.txt.txt"]), ("METADATA", ["meta/dim.xml"])]


# ---------------------------------------------------------------------------------------
# Checksums, sizes, licences


def _file(checksum: str = "", kind: str = "", size: str = "", href: str = "a.txt",
          file_id: str = "f1") -> str:
    attrs = "".join(f' {k}="{v}"' for k, v in (("CHECKSUM", checksum), ("CHECKSUMTYPE", kind),
                                                 ("SIZE", size)) if v)
    return (f'<file ID="{file_id}"{attrs}><FLocat LOCTYPE="URL" xlink:href="{href}"/>'
            "</file>")


def test_checksums_verified_against_the_store(env: Setup, tmp_path: Path) -> None:
    data = b"aaa"
    good = [(hashlib.md5(data).hexdigest(), "MD5"), (hashlib.sha1(data).hexdigest(), "SHA-1"),
            (hashlib.sha256(data).hexdigest(), "SHA-256"),
            (hashlib.sha512(data).hexdigest(), "SHA-512"),
            (hashlib.sha256(data).hexdigest().upper(), "")]
    for checksum, kind in good:
        result = ingest(METSPackager(), env,
                        sip(tmp_path, mets(DIM, _file(checksum, kind, "3"))))
        assert result.warnings == [], kind
    for kind, length in (("MD5", 32), ("SHA-1", 40), ("SHA-256", 64), ("SHA-512", 128)):
        error = refused(METSPackager(), env,
                        sip(tmp_path, mets(DIM, _file("0" * length, kind))),
                        expect=PackageValidationError)
        (detail,) = error.details
        assert (detail.file, detail.field, detail.expected) == ("a.txt", "CHECKSUM",
                                                                "0" * length)
    error = refused(METSPackager(), env, sip(tmp_path, mets(DIM, _file(size="4"))),
                    expect=PackageValidationError)
    assert (error.details[0].field, error.details[0].found) == ("SIZE", "3")
    tiger = ingest(METSPackager(), env, sip(tmp_path, mets(DIM, _file("abc", "TIGER"))))
    assert any("TIGER" in w for w in tiger.warnings)


def test_deposit_licence(env: Setup, tmp_path: Path) -> None:
    amd = ('<amdSec ID="amd-1"><rightsMD ID="r1"><mdRef LOCTYPE="URL" MDTYPE="OTHER" '
           'OTHERMDTYPE="DSpaceDepositLicense" MIMETYPE="text/plain" '
           'xlink:href="licence.txt"/></rightsMD></amdSec>')
    maps = '<structMap><div DMDID="dmd-1" ADMID="amd-1"/></structMap>'
    package = sip(tmp_path, mets(DIM, FILE_A, structmaps=maps, amd=amd),
                  {"a.txt": b"aaa", "licence.txt": b"I grant the licence."})
    request = IngestRequest(parent=env.collection, skip_workflow=True,
                            license="the caller's licence")
    result = METSPackager().ingest(env.op, PackageSource(package), request)
    assert result.primary is not None and result.primary.uuid is not None
    files = item_files(env.repo, result.primary.uuid)
    assert [f[:2] for f in files["LICENSE"]] == [("license.txt", 20)]
    plain = METSPackager().ingest(env.op, PackageSource(sip(tmp_path, mets(DIM, FILE_A))),
                                  request).primary
    assert plain is not None and plain.uuid is not None
    assert [f[:2] for f in item_files(env.repo, plain.uuid)["LICENSE"]] == [
        ("license.txt", 20)]
    missing = sip(tmp_path, mets(DIM, FILE_A, structmaps=maps, amd=amd))
    error = refused(METSPackager(), env, missing, expect=PackageValidationError)
    assert error.details[0].file == "licence.txt"


def test_unsafe_and_foreign_references(env: Setup, tmp_path: Path) -> None:
    for href in ("../etc/passwd", "/etc/passwd", "a/../../x", "%2e%2e/x"):
        error = refused(METSPackager(), env, sip(tmp_path, mets(DIM, _file(href=href))),
                        expect=UnsafeInput)
        assert error.details[0].file == href
    error = refused(METSPackager(), env,
                    sip(tmp_path, mets(DIM, _file(href="http://example.org/a.pdf"))),
                    expect=PackageValidationError)
    assert error.details[0].file == "http://example.org/a.pdf"
    assert "never fetches" in error.details[0].message


def test_hostile_xml(env: Setup, tmp_path: Path) -> None:
    entity = mets(DIM, FILE_A).replace(
        b"<mets ", b'<!DOCTYPE mets [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<mets ', 1)
    error = refused(METSPackager(), env, sip(tmp_path, entity), expect=UnsafeInput)
    assert "DOCTYPE" in details_text(error) and error.details[0].file == "mets.xml"
    bomb = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">]><mets/>'
    refused(METSPackager(), env, sip(tmp_path, bomb), expect=UnsafeInput)
    bare = tmp_path / "entity.xml"
    bare.write_bytes(entity)
    refused(METSPackager(), env, bare, expect=UnsafeInput)


# ---------------------------------------------------------------------------------------
# Dissemination


def _make_item(env: Setup) -> Any:
    from core_support import add_file, new_item

    from server.services import objects

    with env.repo.context(system=True) as ctx:
        item = new_item(ctx, env.collection, title="Bericht \u00fcber Kl\u00e4ranlagen",
                        install=False)
        metadata.add(ctx, item, "dc.contributor.author", "Lovelace, Ada", language="en")
        metadata.add(ctx, item, "dc.subject", "Wasser")
        metadata.add(ctx, item, "local.note", "nur in DIM", create=True)
        first = add_file(ctx, item, b"%PDF-1.4 report", "report.pdf")
        first.mime_type = "application/pdf"
        first.description = "the report"
        add_file(ctx, item, b"notes\n", "notes/\u00fcber.txt")
        add_file(ctx, item, b"extracted text", "report.pdf.txt", bundle="TEXT")
        add_file(ctx, item, b"Licence text.", "license.txt", bundle="LICENSE")
        item.bundles[0].primary_bitstream = first
        objects.install(ctx, item)
        return item.id


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def test_disseminate_dip(env: Setup) -> None:
    item_id = _make_item(env)
    data = package_bytes(METSPackager(), env, item_id)
    assert package_bytes(METSPackager(), env, item_id) == data  # deterministic
    members = _members(data)
    assert list(members) == ["mets.xml", "report.pdf", "notes/\u00fcber.txt",
                             "report.pdf.txt", "license.txt"]
    root = etree.fromstring(members["mets.xml"])
    assert root.get("PROFILE") == "DSpace METS SIP Profile 1.0"
    assert root.get("OBJID", "").startswith("hdl:123456789/")
    types = [(w.get("MDTYPE"), w.get("OTHERMDTYPE")) for w in root.iter(f"{M}mdWrap")
             if w.getparent().tag == f"{M}dmdSec"]
    assert types == [("MODS", None), ("OTHER", "DIM")]
    groups = {g.get("USE"): [f.find(f"{M}FLocat").get(XLINK_HREF) for f in g]
              for g in root.iter(f"{M}fileGrp")}
    assert groups == {"CONTENT": ["report.pdf", "notes/\u00fcber.txt"],
                      "TEXT": ["report.pdf.txt"]}
    report = next(f for f in root.iter(f"{M}file")
                  if f.find(f"{M}FLocat").get(XLINK_HREF) == "report.pdf")
    assert report.get("CHECKSUM") == hashlib.md5(b"%PDF-1.4 report").hexdigest()
    assert (report.get("CHECKSUMTYPE"), report.get("SIZE"), report.get("MIMETYPE")) == (
        "MD5", "15", "application/pdf")
    div = next(root.iter(f"{M}div"))
    assert div.find(f"{M}fptr").get("FILEID") == report.get("ID")
    licence = next(r for r in root.iter(f"{M}mdRef")
                   if r.get("OTHERMDTYPE") == "DSpaceDepositLicense")
    assert licence.get(XLINK_HREF) == "license.txt"
    # options: dmd (multi-valued, in order), includeBundles
    for dmd, expected in ((["DC"], [("DC", None)]),
                          (["DIM", "MODS"], [("OTHER", "DIM"), ("MODS", None)]),
                          (["DIM,DC"], [("OTHER", "DIM"), ("DC", None)])):
        params = PackageParameters(("dmd", v) for v in dmd)
        with METSPackager().disseminate(env.op, item_id, params) as package:
            out = io.BytesIO()
            package.write_to(out)
        mets_xml = etree.fromstring(_members(out.getvalue())["mets.xml"])
        assert [(w.get("MDTYPE"), w.get("OTHERMDTYPE")) for w in mets_xml.iter(f"{M}mdWrap")
                if w.getparent().tag == f"{M}dmdSec"] == expected
    everything = _members(package_bytes(METSPackager(), env, item_id, includeBundles="all"))
    mets_all = etree.fromstring(everything["mets.xml"])
    assert [g.get("USE") for g in mets_all.iter(f"{M}fileGrp")] == ["CONTENT", "TEXT",
                                                                   "LICENSE"]
    only = _members(package_bytes(METSPackager(), env, item_id, includeBundles="ORIGINAL"))
    assert list(only) == ["mets.xml", "report.pdf", "notes/\u00fcber.txt", "license.txt"]
    with pytest.raises(Exception, match="unknown metadata type"):
        package_bytes(METSPackager(), env, item_id, dmd="MARC")


def test_dip_round_trip(env: Setup, tmp_path: Path) -> None:
    item_id = _make_item(env)
    first = package_bytes(METSPackager(), env, item_id)
    package = tmp_path / "dip.zip"
    package.write_bytes(first)
    assert METSPackager.sniff(PackageSource(package))
    with env.repo.context(system=True) as ctx:
        handle = ctx.session.get(m.Item, item_id).handle
    result = ingest(METSPackager(), env, package)
    copy = result.primary
    assert copy is not None and copy.uuid is not None
    assert result.warnings == []
    assert item_files(env.repo, copy.uuid) == item_files(env.repo, item_id)
    assert primary_name(env.repo, copy.uuid) == "report.pdf"
    original, again = item_values(env.repo, item_id), item_values(env.repo, copy.uuid)
    for name in ("dc.title", "dc.contributor.author", "dc.subject", "local.note",
                 "dc.date.issued"):
        assert again[name] == original[name], name
    second = package_bytes(METSPackager(), env, copy.uuid)
    # equal but for the copy's identity (handle, UUIDs, accession dates, provenance) and
    # the order of the values submitting re-creates
    a, b = _members(first), _members(second)
    assert list(a) == list(b)
    for name in a:
        if name != "mets.xml":
            assert a[name] == b[name]

    def masked(text: bytes, item: Any, handle_: str) -> str:
        out = text.decode()
        with env.repo.context(system=True) as ctx:
            obj = ctx.session.get(m.Item, item)
            ids = [str(b.id) for bundle in obj.bundles for b in bundle.bitstreams]
            dates = [v.value for v in metadata.ordered_values(obj)
                     if v.field in ("dc.date.accessioned", "dc.date.available")]
        for token in [handle_, handle_.replace("/", "-"), *ids, *dates]:
            out = out.replace(token, "X")
        out = re.sub(r"<[^<]*provenance[^>]*>[^<]*</[^>]*>\s*", "", out)
        out = re.sub(r'CREATEDATE="[^"]*"', "", out)
        return "\n".join(sorted(out.splitlines()))

    assert masked(a["mets.xml"], item_id, handle) == masked(b["mets.xml"], copy.uuid,
                                                            copy.handle or "")


def test_manifest_only(env: Setup, tmp_path: Path, live_server: Any) -> None:
    item_id = _make_item(env)
    with METSPackager().disseminate(env.op, item_id,
                                    PackageParameters([("manifestOnly", "true")])) as package:
        assert package.mime_type == "text/xml"
        assert package.file_name.endswith(".xml")
    data = package_bytes(METSPackager(), env, item_id, manifestOnly="true")
    root = etree.fromstring(data)
    base = str(env.repo.config.get("site.base_url")).rstrip("/")
    with env.repo.context(system=True) as ctx:
        handle = ctx.session.get(m.Item, item_id).handle
    hrefs = [f.get(XLINK_HREF) for f in root.iter(f"{M}FLocat")]
    assert hrefs == [f"{base}/handle/{handle}/ORIGINAL/report.pdf",
                     f"{base}/handle/{handle}/ORIGINAL/notes_%C3%BCber.txt",
                     f"{base}/handle/{handle}/TEXT/report.pdf.txt"]
    licence = next(root.iter(f"{M}binData"))
    assert "".join(licence.itertext()).strip() == "TGljZW5jZSB0ZXh0Lg=="
    # the URLs are served by this server (the WebDAV tree)
    for href, content in zip(hrefs, (b"%PDF-1.4 report", b"notes\n", b"extracted text"),
                             strict=True):
        path = href[len(base):]
        with urllib.request.urlopen(live_server.url + path) as response:
            assert response.read() == content
    # ... and ingested back without copying anything
    bare = tmp_path / "mets.xml"
    bare.write_bytes(data)
    keys = sorted(env.repo.store.iter_keys())
    copy = ingest(METSPackager(), env, bare).primary
    assert copy is not None and copy.uuid is not None
    assert item_files(env.repo, copy.uuid) == item_files(env.repo, item_id)
    assert sorted(env.repo.store.iter_keys()) == keys
    foreign = bare.read_bytes().replace(base.encode(), b"http://elsewhere.example")
    bare.write_bytes(foreign)
    error = refused(METSPackager(), env, bare, expect=PackageValidationError)
    assert len(error.details) == 3 and "never fetches" in error.details[0].message


def test_directory_on_the_command_line(env: Setup, tmp_path: Path) -> None:
    folder = tmp_path / "example"
    with zipfile.ZipFile(corpus_path(SIP, "dspace-sword2-tests", "example.zip")) as zf:
        zf.extractall(folder)
    assert METSPackager.sniff(PackageSource(folder))
    result = ingest(METSPackager(), env, folder)
    assert result.primary is not None and result.primary.uuid is not None
    assert item_values(env.repo, result.primary.uuid)["dc.title"] == [EXAMPLE_TITLE]
    assert [n for n, _, _ in item_files(env.repo, result.primary.uuid)["ORIGINAL"]] == [
        "pdf1.pdf", "pdf2.pdf", "pdf3.pdf"]
    (folder / "link.pdf").symlink_to("/etc/passwd")
    error = refused(METSPackager(), env, folder, expect=UnsafeInput)
    assert error.details[0].file == "link.pdf"


def test_manifest_only_option_wants_xml(env: Setup, tmp_path: Path) -> None:
    error = refused(METSPackager(), env, sip(tmp_path, mets(DIM, FILE_A)),
                    manifestOnly="true")
    assert error.details[0].field == "manifestOnly"
