"""Every SAF sample of ../shared/corpus/saf imports (read in place; skipped without the corpus).

The samples: DSpace's own itemimport test zips, and real ``dspace export`` output from the
Norwegian Brage repositories (numeric folder names, ``/`` inside bitstream names, zip
names stored as UTF-8 without the UTF-8 flag, ``__MACOSX``/``.DS_Store`` junk, an empty
``license_rdf``, a single item zipped at the root, Brage's local ``dc.source.*`` fields and
a non-dc schema).  Brage's local fields are not in a fresh registry, so those imports use
``createMetadataFields`` (one test shows the refusal without it).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from conftest import corpus_path
from core_support import make_structure
from saf_support import ingest, items_in, nothing_stored

from packagers.base import PackageSource
from packagers.errors import PackageValidationError
from packagers.saf import SAFPackager
from server import models as m
from server import xmlsafe
from server.context import Repository
from server.services import metadata, objects

SAF = ("saf",)


def _only_item(repo: Repository, collection: uuid.UUID):  # type: ignore[no-untyped-def]
    items = items_in(repo, collection)
    assert len(items) == 1, list(items)
    return next(iter(items.values()))


def test_dspace_saf_bitstreams_zip(repo: Repository) -> None:
    path = corpus_path(*SAF, "dspace-itemimport-tests", "saf-bitstreams.zip")
    structure = make_structure(repo)
    assert SAFPackager.sniff(PackageSource(path))
    result = ingest(repo, path, structure.collection)
    assert [o.package for o in result.objects] == ["item_000"]  # inside the saf/ wrapper
    item = _only_item(repo, structure.collection)
    assert item.first("dc.title") == "A Tale of Two Cities"
    assert item.first("dc.date.issued") == "1990"
    assert ("dc.title.alternative", "J'aime les Printemps", "fr") in item.values
    assert item.first("dcterms.title") == "A Tale of Two Cities"  # metadata_dcterms.xml
    original = item.file("file1.txt")
    assert (original.bundle, original.size) == ("ORIGINAL", 15)
    with repo.context(write=False) as ctx:
        bitstream = ctx.session.get(m.Item, item.uuid).bundles[0].bitstreams[0]
        assert bitstream.mime_type == "text/plain"
        with ctx.open_content(bitstream) as fh:
            assert fh.read() == b"TEST TEST TEST\n"


def test_dspace_saf_relationships_zip(repo: Repository, tmp_path: Path) -> None:
    path = corpus_path(*SAF, "dspace-itemimport-tests", "saf-relationships.zip")
    person_xml = corpus_path(*SAF, "dspace-itemimport-tests", "dublin_core-person.xml")
    structure = make_structure(repo)
    # The person the relationship names ("dc.title:Person Test"), imported from DSpace's
    # own dublin_core-person.xml, into another collection.
    person_batch = tmp_path / "person"
    (person_batch / "person").mkdir(parents=True)
    shutil.copyfile(person_xml, person_batch / "person" / "dublin_core.xml")
    ingest(repo, person_batch, structure.other_collection)
    ingest(repo, path, structure.collection)
    publication = _only_item(repo, structure.collection)
    assert publication.first("dc.title") == "A Tale of Two Cities"
    assert publication.relations == (("isAuthorOfPublication", "Person Test"),)
    person = _only_item(repo, structure.other_collection)
    assert person.relations == (("isAuthorOfPublication", "A Tale of Two Cities"),)


def test_dspace_saf_registered_bitstreams_zip_is_refused(repo: Repository) -> None:
    """Its contents names file1.txt, which the zip does not hold (DSpace registered the
    file from an assetstore); registration is not supported, so the file is missing."""
    path = corpus_path(*SAF, "dspace-itemimport-tests", "saf-registered-bitstreams.zip")
    structure = make_structure(repo)
    with pytest.raises(PackageValidationError) as caught:
        ingest(repo, path, structure.collection)
    [detail] = caught.value.details
    assert (detail.file, detail.line, detail.found) == (
        "saf/item_000/contents", 1, "saf/item_000/file1.txt")
    assert nothing_stored(repo)


def test_brage_bundle_with_forward_slashes(repo: Repository) -> None:
    path = corpus_path(*SAF, "nva-brage-migration", "bundleWithForwardSlashes.zip")
    structure = make_structure(repo)
    assert SAFPackager.sniff(PackageSource(path))
    result = ingest(repo, path, structure.collection, createMetadataFields="true")
    assert [(o.package, o.handle) for o in result.objects] == [("54", "11250/3024509")]
    item = _only_item(repo, structure.collection)
    assert item.handle == "11250/3024509"
    assert item.first("dc.title") == ("Chasing the Collaborative. Critical studies of "
                                      "performer agency in modern flute music")
    assert item.first("dc.contributor.author") == "Habbestad, Bjørnar"
    names = {f.name for f in item.files}
    assert len(item.files) == 11
    assert not any("DS_Store" in n or "MACOSX" in n or n.startswith("._") for n in names)
    slash = item.file("Sound example 2: Excerpt from material catalogue developed by "
                      "Habbestad/Snoei")
    assert slash.bundle == "ORIGINAL" and slash.size == 0
    # the zip stores these names as UTF-8 without the UTF-8 flag; contents spells them right
    dash = item.file("Sound example 3: Workshop excerpts \u2013 strategies 1\u20134")
    assert dash.description == "Sound example 3: Workshop excerpts \u2013 strategies 1\u20134"
    thesis = item.file("Habbestad_Chasing_the_Collaborative_Avhandling.pdf")
    assert thesis.description == ("B. Habbestad - Ph.D. Dissertation: Chasing the "
                                  "Collaborative (2022)")
    bundles: dict[str, int] = {}
    for f in item.files:
        bundles[f.bundle] = bundles.get(f.bundle, 0) + 1
    assert bundles == {"ORIGINAL": 6, "LICENSE": 1, "TEXT": 2, "THUMBNAIL": 2}
    assert item.file("Chasing the Collaborative.jpg").size == 437932
    assert item.file("license.txt").bundle == "LICENSE"


def test_brage_single_item_at_zip_root_with_empty_cc_licence(repo: Repository) -> None:
    path = corpus_path(*SAF, "nva-brage-migration", "inputWithEmptyCCLicense.zip")
    structure = make_structure(repo)
    assert SAFPackager.sniff(PackageSource(path))
    result = ingest(repo, path, structure.collection, createMetadataFields="true")
    assert [o.package for o in result.objects] == ["inputWithEmptyCCLicense"]
    item = _only_item(repo, structure.collection)
    assert item.handle == "11250/2992908"
    assert item.first("dc.title") == "Kunnskapsbasert praksis i kriminalomsorgen"
    rdf = item.file("license_rdf")
    assert (rdf.bundle, rdf.size) == ("CC-LICENSE", 0)
    assert item.file("390003.pdf").bundle == "ORIGINAL"
    assert item.file("390003.pdf").size == 477580
    assert item.file("390003.pdf.txt").description == "Extracted text"
    assert item.file("390003.pdf.jpg").bundle == "THUMBNAIL"
    assert item.file("license.txt").bundle == "LICENSE"


def test_brage_directory_export_with_spaces(repo: Repository) -> None:
    path = corpus_path(*SAF, "nva-brage-migration", "11")
    structure = make_structure(repo)
    result = ingest(repo, path, structure.collection, createMetadataFields="true")
    assert [(o.package, o.handle) for o in result.objects] == [("1", "11250/2753238")]
    item = _only_item(repo, structure.collection)
    assert ("dc.title", "Simulated precipitation fields with variance-consistent "
            "interpolation", "en_US") in item.values
    assert item.first("dc.publisher") == "Taylor & Francis"
    assert item.first("dc.source.journal") == "Hydrological Sciences Journal"
    assert item.all("dc.contributor.author") == ["Skaugen, Thomas", "Andersen, Jess"]
    pdf = item.file("Simulated precipitation fields with variance consistent interpolation.pdf")
    assert (pdf.bundle, pdf.description, pdf.size) == ("ORIGINAL", "Datagrunnlag", 12)
    assert item.file("Simulated precipitation fields with variance consistent "
                     "interpolation.pdf.jpg").size == 0
    assert item.file("Simulated precipitation fields with variance consistent "
                     "interpolation.pdf.txt").bundle == "TEXT"


def test_brage_dataset_with_cc_licence(repo: Repository) -> None:
    path = corpus_path(*SAF, "nva-brage-migration", "NVE-2833909")
    structure = make_structure(repo)
    ingest(repo, path, structure.collection, createMetadataFields="true")
    item = _only_item(repo, structure.collection)
    assert item.handle == "11250/2836938"
    assert item.first("dc.title") == ("A reconstruction of Jostedalsbreen during the Little "
                                      "Ice Age (LIA)")
    data = item.file("glacier_outlines_Jostedalsbreen_LIA.zip")
    assert (data.bundle, data.description, data.size) == ("ORIGINAL", "Datagrunnlag", 382466)
    assert item.file("license_rdf").bundle == "CC-LICENSE"
    assert item.file("license.txt").bundle == "LICENSE"


def test_brage_local_fields_are_refused_without_create(repo: Repository) -> None:
    path = corpus_path(*SAF, "nva-brage-migration", "11")
    structure = make_structure(repo)
    with pytest.raises(PackageValidationError) as caught:
        ingest(repo, path, structure.collection)
    found = {(d.file, d.line, d.field) for d in caught.value.details}
    assert found == {("1/dublin_core.xml", 16, "dc.source.pagenumber"),
                     ("1/dublin_core.xml", 17, "dc.source.journal")}
    assert nothing_stored(repo)


@pytest.mark.parametrize(("sample", "title", "issued"), [
    ("one", "The Youth Olympic Games and a new awakening for sports and exercise medicine",
     "2011"),
    ("two", "Maximal Heart Rate for Swimmers", "2019"),
    ("three", "Variability of reporting recurrence after arthroscopic bankart repair: A call "
              "for a standardized study design", "2019"),
    ("four", "Associations of volumes and patterns of physical activity with metabolic health "
             "in children: A multivariate pattern analysis approach", "2018"),
])
def test_brage_metadata_only_items(repo: Repository, sample: str, title: str,
                                   issued: str) -> None:
    """``<sample>/1/1/dublin_core.xml``: a wrapper folder, then an item with no files."""
    path = corpus_path(*SAF, "nva-brage-import-dc-only", sample)
    structure = make_structure(repo)
    assert SAFPackager.sniff(PackageSource(path))
    result = ingest(repo, path, structure.collection, createMetadataFields="true")
    assert [o.package for o in result.objects] == ["1"]
    item = _only_item(repo, structure.collection)
    assert item.first("dc.title") == title
    assert item.first("dc.date.issued") == issued
    assert sorted(item.all("dc.type")) == ["Journal article", "Peer reviewed"]
    assert item.files == ()
    document = xmlsafe.parse(path / "1" / "1" / "dublin_core.xml")
    non_empty = [v for v in document.getroot() if (v.text or "").strip()]
    with repo.context(write=False) as ctx:
        stored = ctx.session.get(m.Item, item.uuid)
        assert stored is not None
        # every non-empty value of the file, plus the four the repository adds on install
        assert len(metadata.ordered_values(stored)) == len(non_empty) + 4


def test_brage_loose_files_non_dc_schema_and_unusual_bundles(repo: Repository,
                                                            tmp_path: Path) -> None:
    """The loose files, assembled into an item folder at test time: metadata_fs.xml (schema
    ``fs``), a dublin_core.xml with repeated values and a multi-line provenance, and a
    contents file with METADATA, ORE and UnknownType bundles and a blank line."""
    loose = corpus_path(*SAF, "nva-brage-migration", "loose-files")
    folder = tmp_path / "batch" / "item"
    folder.mkdir(parents=True)
    shutil.copyfile(loose / "dc_with_duplicated_values.xml", folder / "dublin_core.xml")
    shutil.copyfile(loose / "metadata_fs.xml", folder / "metadata_fs.xml")
    shutil.copyfile(loose / "contents", folder / "contents")
    listed = [line.split("\t")[0] for line in
              (loose / "contents").read_text(encoding="utf-8").splitlines() if line.strip()]
    for name in listed:
        (folder / name).write_bytes(f"content of {name}\n".encode())
    structure = make_structure(repo)
    ingest(repo, tmp_path / "batch", structure.collection, createMetadataFields="true")
    item = _only_item(repo, structure.collection)
    assert item.all("dc.title") == []  # the sample has none: a warning, not an error
    assert item.first("fs.subjectcode") == "JUS399"
    assert item.first("fs.unitcode") == "16-0-0"
    assert item.all("dc.description") == ["First description", "Second description"]
    assert item.all("dc.contributor") == ["Ugulen, Jo Rune", "Bruvik, Tone Merete",
                                          "Fluge, Rannveig", "Haugland, Håkon"]
    assert len(item.files) == len(listed) == 10
    bundles = {f.name: f.bundle for f in item.files}
    assert bundles["cristin-1825416.xml"] == "METADATA"
    assert bundles["ORE.xml"] == "ORE"
    assert bundles["unknownType"] == "UnknownType"
    assert bundles["CustomLicense.pdf"] == "LICENSE"
    assert item.file("rapport2022_25_2.pdf").description == "Datagrunnlag_2"
    with repo.context(write=False) as ctx:
        stored = ctx.session.get(m.Item, item.uuid)
        assert stored is not None
        provenance = [v.value for v in metadata.values(stored, "dc.description.provenance")]
        assert any(v.startswith("Submitted by Ingrid Cutler\n    (ingrid.cutler@ub.uib.no)")
                   for v in provenance)
        assert objects.get_bundle(stored, "ORE") is not None
