"""The PDF packager: info-dictionary metadata, refusals, dissemination from the store."""

from __future__ import annotations

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
    package_bytes,
    refused,
    residue,
    setup,
)
from pypdf import PdfWriter

from packagers.base import PackageSource
from packagers.errors import PackageValidationError, UnsupportedOperation
from packagers.params import PackageParameters
from packagers.pdf import PDFPackager
from packagers.pdf import info as pdfinfo
from packagers.registry import Registry
from server.archive import SafeArchive


def make_pdf(path: Path, info: dict[str, str] | None = None, *, user_password: str | None
             = None, owner_password: str | None = None) -> Path:
    writer = PdfWriter()
    writer.add_blank_page(72, 72)
    if info:
        writer.add_metadata(info)
    if user_password is not None or owner_password is not None:
        writer.encrypt(user_password=user_password or "", owner_password=owner_password,
                       algorithm="RC4-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


FULL_INFO = {
    "/Title": "Über Kläranlagen",
    "/Author": "Ada Lovelace",
    "/Subject": "An abstract of the work.",
    "/Keywords": "water; sewage, treatment",
    "/Creator": "LibreOffice Writer",
    "/Producer": "LibreOffice 7.6",
    "/CreationDate": "D:20240102030405+02'00'",
    "/ModDate": "D:20250101000000Z",
}


@pytest.fixture
def env(repo: Any, admin: Any) -> Setup:
    return setup(repo, admin)


def test_registered_and_sniffed(tmp_path: Path) -> None:
    registry = Registry()
    assert registry.get("pdf") is PDFPackager
    assert registry.get("Adobe PDF") is PDFPackager
    pdf = make_pdf(tmp_path / "a.pdf")
    assert PDFPackager.sniff(PackageSource(pdf))
    shifted = tmp_path / "shifted.pdf"
    shifted.write_bytes(b"\x00" * 100 + pdf.read_bytes())
    assert PDFPackager.sniff(PackageSource(shifted))
    late = tmp_path / "late.pdf"
    late.write_bytes(b" " * 1100 + pdf.read_bytes())
    assert not PDFPackager.sniff(PackageSource(late))
    assert not PDFPackager.sniff(PackageSource(tmp_path))
    assert registry.choose_ingester(content_type="application/pdf") is PDFPackager


def test_ingest_maps_info_dictionary(env: Setup, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "upload.pdf", FULL_INFO)
    result = ingest(PDFPackager(), env, pdf, name="Kläranlagen 2024.pdf")
    record = result.primary
    assert record is not None and record.uuid is not None and record.handle
    assert record.warnings == []
    values = item_values(env.repo, record.uuid)
    assert values["dc.title"] == ["Über Kläranlagen"]
    assert values["dc.contributor.author"] == ["Ada Lovelace"]
    assert values["dc.description.abstract"] == ["An abstract of the work."]
    assert values["dc.subject.other"] == ["water; sewage, treatment"]
    assert values["dc.date.created"] == ["2024-01-02T01:04:05Z"]
    provenance = values["dc.description.provenance"]
    assert "Application that created the original document: LibreOffice Writer" in provenance
    assert "Original document converted to PDF by: LibreOffice 7.6" in provenance
    files = item_files(env.repo, record.uuid)
    assert [f[0] for f in files["ORIGINAL"]] == ["Kläranlagen 2024.pdf"]
    assert files["ORIGINAL"][0][1] == pdf.stat().st_size


def test_pdf_dates() -> None:
    assert pdfinfo.dc_date("D:2020") == "2020"
    assert pdfinfo.dc_date("D:202003") == "2020-03"
    assert pdfinfo.dc_date("D:20200304") == "2020-03-04"
    assert pdfinfo.dc_date("D:20200304050607") == "2020-03-04T05:06:07"
    assert pdfinfo.dc_date("D:20200304050607-05'30'") == "2020-03-04T10:36:07Z"
    assert pdfinfo.dc_date("20200304050607Z") == "2020-03-04T05:06:07Z"
    assert pdfinfo.dc_date("yesterday") is None
    assert pdfinfo.dc_date("D:20201340") is None


def test_missing_title_uses_file_name_or_refuses(env: Setup, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "x.pdf", {"/Author": "Someone"})
    result = ingest(PDFPackager(), env, pdf, name="Annual report.pdf")
    assert result.primary is not None and result.primary.uuid is not None
    assert item_values(env.repo, result.primary.uuid)["dc.title"] == ["Annual report"]
    assert any("no readable Title" in w for w in result.primary.warnings)
    error = refused(PDFPackager(), env, pdf, expect=PackageValidationError,
                    titleFromFilename="false")
    assert error.details[0].field == "/Title"


def test_owner_password_only_pdf_is_read(env: Setup, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "locked.pdf", {"/Title": "Permissions only"},
                   owner_password="owner")
    result = ingest(PDFPackager(), env, pdf)
    assert result.primary is not None and result.primary.uuid is not None
    assert item_values(env.repo, result.primary.uuid)["dc.title"] == ["Permissions only"]
    assert item_files(env.repo, result.primary.uuid)["ORIGINAL"][0][0] == "package.pdf"


def test_password_protected_pdf_refused_unless_allowed(env: Setup, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "secret.pdf", {"/Title": "Hidden"}, user_password="user",
                   owner_password="owner")
    error = refused(PDFPackager(), env, pdf, expect=PackageValidationError, name="secret.pdf")
    assert "password" in details_text(error)
    result = ingest(PDFPackager(), env, pdf, name="secret.pdf", allowEncrypted="true")
    assert result.primary is not None and result.primary.uuid is not None
    assert item_values(env.repo, result.primary.uuid)["dc.title"] == ["secret"]
    assert any("password" in w for w in result.primary.warnings)


def test_broken_pdf_ingested_with_warning(env: Setup, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj << /Title (x) >> garbage without xref\n")
    result = ingest(PDFPackager(), env, broken, name="broken.pdf")
    assert result.primary is not None and result.primary.uuid is not None
    assert any("cannot be read" in w or "damaged" in w for w in result.primary.warnings)
    assert item_values(env.repo, result.primary.uuid)["dc.title"] == ["broken"]


def test_damaged_xref_never_read_whole(env: Setup, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged xref table makes pypdf want the whole file: the budget stops it."""
    pdf = make_pdf(tmp_path / "a.pdf", {"/Title": "Budget"})
    data = pdf.read_bytes()
    damaged = tmp_path / "damaged.pdf"
    start = data.rindex(b"startxref")
    damaged.write_bytes(data[:start] + b"startxref\n99999999\n%%EOF\n")
    monkeypatch.setattr(pdfinfo, "READ_BUDGET", 64)
    info = pdfinfo.read_info(damaged, "damaged.pdf")
    assert info.title is None and info.problem


def test_not_a_pdf_refused(env: Setup, tmp_path: Path) -> None:
    text = tmp_path / "notes.pdf"
    text.write_bytes(b"just some text\n")
    error = refused(PDFPackager(), env, text, expect=PackageValidationError)
    assert error.details[0].expected == "%PDF-1.x"
    refused(PDFPackager(), env, tmp_path, expect=PackageValidationError)


def test_parent_must_be_a_collection(env: Setup, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "a.pdf", {"/Title": "T"})
    from packagers.base import IngestRequest

    before = residue(env.repo)
    with pytest.raises(Exception) as info:
        PDFPackager().ingest(env.op, PackageSource(pdf), IngestRequest(parent=None))
    assert "parent" in str(info.value)
    assert residue(env.repo) == before


def test_disseminate_serves_stored_pdf_and_round_trips(env: Setup, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "paper.pdf", FULL_INFO)
    first = ingest(PDFPackager(), env, pdf, name="paper.pdf").primary
    assert first is not None and first.uuid is not None
    with PDFPackager().disseminate(env.op, first.uuid, PackageParameters()) as package:
        assert package.mime_type == "application/pdf"
        assert package.file_name == "paper.pdf"
        assert package.size == pdf.stat().st_size
        assert b"".join(package.iter_bytes(10, 20)) == pdf.read_bytes()[10:20]
    data = package_bytes(PDFPackager(), env, first.uuid)
    assert data == pdf.read_bytes()
    again = tmp_path / "again.pdf"
    again.write_bytes(data)
    second = ingest(PDFPackager(), env, again, name="paper.pdf").primary
    assert second is not None and second.uuid is not None
    assert package_bytes(PDFPackager(), env, second.uuid) == data
    assert item_values(env.repo, second.uuid)["dc.title"] == ["Über Kläranlagen"]


def test_disseminate_item_without_pdf(env: Setup, tmp_path: Path) -> None:
    from core_support import add_file, get, new_item

    from server import models as m

    with env.repo.context(system=True) as ctx:
        item = new_item(ctx, env.collection)
        add_file(ctx, item, b"hello", "hello.txt")
        item_id = item.id
    with pytest.raises(UnsupportedOperation):
        PDFPackager().disseminate(env.op, item_id, PackageParameters())
    with env.repo.context(system=True) as ctx:
        collection = get(ctx, m.Collection, env.collection)
        collection_id = collection.id
    with pytest.raises(UnsupportedOperation):
        PDFPackager().disseminate(env.op, collection_id, PackageParameters())


def test_corpus_pdf_from_dspace_aip(env: Setup, tmp_path: Path) -> None:
    aip = corpus_path("aip", "dspace-1.7-docs-samples", "22675554.zip")
    with SafeArchive.open(aip) as archive:
        (name,) = [n for n in archive.names() if n.endswith(".pdf")]
        target = tmp_path / "bitstream_118.pdf"
        with archive.open(name) as member, open(target, "wb") as out:
            out.write(member.read())
    result = ingest(PDFPackager(), env, target, name="bitstream_118.pdf")
    assert result.primary is not None and result.primary.uuid is not None
    values = item_values(env.repo, result.primary.uuid)
    assert values["dc.title"] == ["bitstream_118"]  # the PDF has no Title
    assert values["dc.contributor.author"] == ["Tim"]
    assert values["dc.date.created"] == ["2009-11-13T16:45:46Z"]
    assert ("Application that created the original document: Acrobat PDFMaker 9.1 for Word"
            in values["dc.description.provenance"])
    assert package_bytes(PDFPackager(), env, result.primary.uuid) == target.read_bytes()
