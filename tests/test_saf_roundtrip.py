"""SAF export and import agree: export -> import keeps metadata, files and relationships;
exporting twice gives the same bytes; migrate, exclude-bitstreams, replace, workflow and
template do what they say; the CLI's import/export work on directories and zips."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import pytest
from core_support import get, make_structure, new_item, write_cli_config
from saf_support import (
    comparable,
    export,
    facts,
    ingest,
    items_in,
    write_item,
    zip_dir,
)

from packagers.base import IngestRequest, Operation, PackageSource
from packagers.saf import SAFPackager
from packagers.saf.writer import file_names
from server import models as m
from server.cli import main
from server.context import Repository
from server.services import metadata, objects

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40
CSV = "name;value\nø;1\n".encode()
THUMB = b"\xff\xd8\xff\xe0" + b"j" * 500
LICENSE = b"You grant the repository the right to keep this.\n"


def rich_batch(root: Path, outside_handle: str) -> Path:
    """Two related items with everything SAF can say."""
    write_item(
        root, "a",
        dc=[("title", "Round trip A", "en"), ("contributor.author", "Zeta, Zoe"),
            ("contributor.author", "Alpha, Al"), ("date.issued", "2021-05"),
            ("description.abstract", "Less < more & \"quotes\"\nsecond line", "en"),
            ("subject", "fjord", "nb"), ("identifier.uri", "https://example.org/paper")],
        files={"paper.pdf": PDF, "data/set one.csv": CSV, "license.txt": LICENSE,
               "thumb.jpg": THUMB},
        contents=["paper.pdf\tbundle:ORIGINAL\tdescription:The paper\tprimary:true",
                  "data/set one.csv\tdescription:Raw data\tpermissions:-r 'Administrator'",
                  "license.txt",
                  "thumb.jpg\tbundle:THUMBNAIL\tiiif-label:Cover\tiiif-width:640"],
        other={"metadata_dcterms.xml":
               b'<dublin_core schema="dcterms"><dcvalue element="alternative" '
               b'qualifier="none" language="de">Hin und zur\xc3\xbcck</dcvalue></dublin_core>',
               "relationships": ("relation.isAuthorOfPublication folderName:b\n"
                                 f"relation.isPartOfSeries {outside_handle}\n").encode()})
    write_item(root, "b", dc=[("title", "Round trip B"), ("type", "Person")])
    return root


def _outside_item(repo: Repository, collection: uuid.UUID) -> str:
    with repo.context(system=True) as ctx:
        item = new_item(ctx, collection, title="Outside C")
        assert item.handle
        return item.handle


def _new_collection(repo: Repository, community: uuid.UUID, name: str) -> uuid.UUID:
    with repo.context(system=True) as ctx:
        return objects.create_collection(ctx, get(ctx, m.Community, community), name).id


def test_import_reads_everything(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    outside = _outside_item(repo, structure.other_collection)
    ingest(repo, rich_batch(tmp_path / "batch", outside), structure.collection)
    items = items_in(repo, structure.collection)
    a, b = items["Round trip A"], items["Round trip B"]
    assert a.all("dc.contributor.author") == ["Zeta, Zoe", "Alpha, Al"]
    assert ("dc.description.abstract", 'Less < more & "quotes"\nsecond line', "en") in a.values
    assert ("dc.subject", "fjord", "nb") in a.values
    assert ("dcterms.alternative", "Hin und zurück", "de") in a.values
    paper = a.file("paper.pdf")
    assert (paper.bundle, paper.description, paper.primary) == ("ORIGINAL", "The paper", True)
    data = a.file("data/set one.csv")
    assert (data.bundle, data.policies) == ("ORIGINAL", (("READ", "Administrator"),))
    assert a.file("license.txt").bundle == "LICENSE"
    thumb = a.file("thumb.jpg")
    assert thumb.extra == (("iiif.label", "Cover"), ("iiif.image.width", "640"))
    assert paper.policies == (("READ", "Anonymous"),)  # the collection's default
    assert a.relations == (("isAuthorOfPublication", "Round trip B"),
                           ("isPartOfSeries", "Outside C"))
    assert b.relations == (("isAuthorOfPublication", "Round trip A"),)
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, a.uuid)
        assert {b.name: b.mime_type for bundle in item.bundles for b in bundle.bitstreams}[
            "paper.pdf"] == "application/pdf"


def test_export_then_import_gives_the_same_items(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    outside = _outside_item(repo, structure.other_collection)
    ingest(repo, rich_batch(tmp_path / "batch", outside), structure.collection)
    data = export(repo, structure.collection)
    assert export(repo, structure.collection) == data  # deterministic
    package = tmp_path / "export.zip"
    package.write_bytes(data)
    assert SAFPackager.sniff(PackageSource(package))
    target = _new_collection(repo, structure.community, "Copy")
    ingest(repo, package, target, ignoreHandles="true")
    before = items_in(repo, structure.collection)
    after = items_in(repo, target)
    assert sorted(before) == sorted(after) == ["Round trip A", "Round trip B"]
    for title in before:
        assert comparable(after[title]) == comparable(before[title]), title
        assert after[title].handle != before[title].handle
    # and the copies export to the same files, folder for folder (handles aside)
    again = zipfile.ZipFile(io.BytesIO(export(repo, target)))
    first = zipfile.ZipFile(io.BytesIO(data))
    for name in first.namelist():
        if name.rsplit("/", 1)[-1] in ("handle", "collections", "relationships",
                                       "dublin_core.xml"):
            continue
        folder_a = name.split("/")[0]
        title = "Round trip A" if "paper.pdf" in " ".join(
            n for n in first.namelist() if n.startswith(folder_a + "/")) else "Round trip B"
        other_folder = next(f for f in {n.split("/")[0] for n in again.namelist()}
                            if (title == "Round trip A") == (f"{f}/paper.pdf"
                                                            in again.namelist()))
        assert again.read(f"{other_folder}/{name.split('/', 1)[1]}") == first.read(name)


def test_exported_files_say_what_import_reads(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    outside = _outside_item(repo, structure.other_collection)
    ingest(repo, rich_batch(tmp_path / "batch", outside), structure.collection)
    a = items_in(repo, structure.collection)["Round trip A"]
    zf = zipfile.ZipFile(io.BytesIO(export(repo, a.uuid, number="7")))
    names = zf.namelist()
    assert "7/data/set one.csv" in names and "7/paper.pdf" in names
    contents = zf.read("7/contents").decode().splitlines()
    assert contents == [
        "paper.pdf\tbundle:ORIGINAL\tprimary:true\tdescription:The paper",
        "data/set one.csv\tbundle:ORIGINAL\tdescription:Raw data\t"
        "permissions:-r 'Administrator'",
        "license.txt\tbundle:LICENSE",  # bundles in the order they were made
        "thumb.jpg\tbundle:THUMBNAIL\tiiif-label:Cover\tiiif-width:640",
    ]
    dc = zf.read("7/dublin_core.xml").decode()
    assert '<dcvalue element="title" qualifier="none" language="en">Round trip A</dcvalue>' in dc
    assert ('<dcvalue element="description" qualifier="abstract" language="en">Less &lt; more '
            '&amp; "quotes"\nsecond line</dcvalue>') in dc
    assert 'element="date" qualifier="accessioned"' in dc  # not migrate: everything
    dcterms = zf.read("7/metadata_dcterms.xml").decode()
    assert '<dublin_core schema="dcterms">' in dcterms and "zurück" in dcterms
    assert zf.read("7/handle").decode() == f"{a.handle}\n"
    assert zf.read("7/collections").decode() == f"{structure.collection_handle}\n"
    # the other item is not in this package: the relationship names its handle
    b = items_in(repo, structure.collection)["Round trip B"]
    assert zf.read("7/relationships").decode().splitlines() == [
        f"relation.isAuthorOfPublication {b.handle}", f"relation.isPartOfSeries {outside}"]
    assert zf.read("7/paper.pdf") == PDF


def test_collection_export_writes_relationships_by_folder(repo: Repository,
                                                          tmp_path: Path) -> None:
    structure = make_structure(repo)
    outside = _outside_item(repo, structure.other_collection)
    ingest(repo, rich_batch(tmp_path / "batch", outside), structure.collection)
    zf = zipfile.ZipFile(io.BytesIO(export(repo, structure.collection)))
    folders = {n.split("/")[0] for n in zf.namelist()}
    assert folders == {"1", "2"}
    a_folder = next(f for f in folders if f"{f}/paper.pdf" in zf.namelist())
    b_folder = ({"1", "2"} - {a_folder}).pop()
    assert zf.read(f"{a_folder}/relationships").decode().splitlines() == [
        f"relation.isAuthorOfPublication folderName:{b_folder}",
        f"relation.isPartOfSeries {outside}"]
    assert f"{b_folder}/relationships" not in zf.namelist()  # written once, by the left item


def test_migrate_strips_what_the_target_recreates(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    outside = _outside_item(repo, structure.other_collection)
    ingest(repo, rich_batch(tmp_path / "batch", outside), structure.collection)
    a = items_in(repo, structure.collection)["Round trip A"]
    zf = zipfile.ZipFile(io.BytesIO(export(repo, a.uuid, migrate="true")))
    assert "1/handle" not in zf.namelist()
    dc = zf.read("1/dublin_core.xml").decode()
    for gone in ('qualifier="accessioned"', 'qualifier="available"', 'qualifier="provenance"',
                 f"/handle/{a.handle}<"):
        assert gone not in dc
    assert "https://example.org/paper" in dc  # someone else's URI stays
    package = tmp_path / "migrated.zip"
    package.write_bytes(zf.fp.getvalue())  # type: ignore[union-attr]
    target = _new_collection(repo, structure.community, "Migrated")
    ingest(repo, package, target)  # no handle file, no clash: no ignoreHandles needed
    copy = items_in(repo, target)["Round trip A"]
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, copy.uuid)
        assert [v.value for v in metadata.values(item, "dc.identifier.uri")] == [
            "https://example.org/paper", objects.handle_url(ctx, copy.handle)]
        assert len(metadata.values(item, "dc.date.accessioned")) == 1


def test_exclude_bitstreams_keeps_contents(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    outside = _outside_item(repo, structure.other_collection)
    ingest(repo, rich_batch(tmp_path / "batch", outside), structure.collection)
    a = items_in(repo, structure.collection)["Round trip A"]
    zf = zipfile.ZipFile(io.BytesIO(export(repo, a.uuid, excludeBitstreams="true")))
    assert sorted(zf.namelist()) == ["1/collections", "1/contents", "1/dublin_core.xml",
                                     "1/handle", "1/metadata_dcterms.xml", "1/relationships"]
    assert zf.read("1/contents").decode().startswith("paper.pdf\tbundle:ORIGINAL")


def test_unusual_bitstream_names_are_written_safely() -> None:
    names = file_names(["a.txt", "a.txt", "contents", "../up", "x/", "dir", "dir/f",
                        "metadata_dc.xml", ".DS_Store", "tab\there"])
    assert names == ["a.txt", "1_a.txt", "1_contents", "_/up", "x/_", "dir", "1_dir/f",
                     "1_metadata_dc.xml", "1_.DS_Store", "tab_here"]


def test_replace_keeps_identity(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    write_item(tmp_path / "v1", "item", title="Version one", files={"old.txt": b"old"})
    [created] = ingest(repo, tmp_path / "v1", structure.collection).objects
    before = facts(repo, created.uuid)  # type: ignore[arg-type]
    write_item(tmp_path / "v2", "item", dc=[("title", "Version two"), ("subject", "new")],
               files={"new.txt": b"new content"},
               contents=["new.txt\tdescription:Fresh\tprimary:true"])
    package = zip_dir(tmp_path / "v2", tmp_path / "v2.zip")
    op = Operation(repo, system=True)
    result = SAFPackager().replace(op, created.uuid, PackageSource(package),  # type: ignore[arg-type]
                                   IngestRequest())
    assert [o.outcome.value for o in result.objects] == ["replaced"]
    after = facts(repo, created.uuid)  # type: ignore[arg-type]
    assert after.handle == before.handle
    assert after.all("dc.title") == ["Version two"]
    assert [(f.name, f.description, f.primary) for f in after.files] == [
        ("new.txt", "Fresh", True)]
    assert after.file("new.txt").policies == (("READ", "Anonymous"),)
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, created.uuid)
        uri = [v.value for v in metadata.values(item, "dc.identifier.uri")]
        assert uri == [objects.handle_url(ctx, before.handle)]  # kept from the old item
        provenance = [v.value for v in metadata.values(item, "dc.description.provenance")]
        assert any("replaced from a Simple Archive Format package" in p for p in provenance)
    assert repo.store.exists(before.file("old.txt").sha256) is False  # collected


def test_workflow_and_template(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    with repo.context(system=True) as ctx:
        collection = get(ctx, m.Collection, structure.collection)
        collection.workflow_enabled = True
        template = objects.create_template_item(ctx, collection)
        metadata.add(ctx, template, "dc.publisher", "Template Press")
    write_item(tmp_path / "batch", "w", title="Into workflow")
    mapfile = tmp_path / "map"
    result = ingest(repo, tmp_path / "batch", structure.collection, workflow="true",
                    template="true", mapfile=str(mapfile))
    [obj] = result.objects
    assert obj.handle is None
    item = facts(repo, obj.uuid)  # type: ignore[arg-type]
    assert item.first("dc.publisher") == "Template Press"
    with repo.context(write=False) as ctx:
        assert get(ctx, m.Item, obj.uuid).workflow_state is m.WorkflowState.WORKFLOW
    assert mapfile.read_text() == f"w {obj.uuid}\n"  # no handle yet: the UUID


def test_cli_export_directory_and_import_it(repo: Repository, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    structure = make_structure(repo)
    outside = _outside_item(repo, structure.other_collection)
    ingest(repo, rich_batch(tmp_path / "batch", outside), structure.collection)
    config = str(write_cli_config(tmp_path, repo))
    out = tmp_path / "out"
    assert main(["-C", config, "export", "-t", "COLLECTION", "-i", structure.collection_handle,
                 "-d", str(out), "-n", "100"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["100", "101"]
    assert main(["-C", config, "export", "-t", "COLLECTION", "-i", structure.collection_handle,
                 "-d", str(out), "-n", "100"]) == 1  # folders exist: refused
    assert "folder exists" in capsys.readouterr().err
    assert main(["-C", config, "export", "-t", "ITEM", "-i", structure.collection_handle,
                 "-d", str(out)]) == 1  # wrong type
    target = _new_collection(repo, structure.community, "From directory")
    with repo.context(write=False) as ctx:
        target_handle = get(ctx, m.Collection, target).handle
    mapfile = tmp_path / "copy.map"
    assert main(["-C", config, "import", "-a", "-c", target_handle, "-s", str(out),
                 "-m", str(mapfile), "-o", "ignoreHandles"]) == 0
    printed = capsys.readouterr().out
    assert "import done: 2 created" in printed
    assert sorted(line.split()[0] for line in mapfile.read_text().splitlines()) == ["100",
                                                                                  "101"]
    before, after = items_in(repo, structure.collection), items_in(repo, target)
    for title in before:
        assert comparable(after[title]) == comparable(before[title])
    # zip export through the CLI, then delete the copies with the mapfile
    assert main(["-C", config, "export", "-t", "COLLECTION", "-i", target_handle,
                 "-d", str(tmp_path), "-z", "copy.zip"]) == 0
    assert zipfile.ZipFile(tmp_path / "copy.zip").testzip() is None
    assert main(["-C", config, "import", "-d", "-m", str(mapfile)]) == 0
    assert items_in(repo, target) == {}
    assert main(["-C", config, "import", "-d", "-m", str(mapfile)]) == 0  # again: no-op
    assert "2 were already gone" in capsys.readouterr().out


def test_cli_replace_with_mapfile(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    config = str(write_cli_config(tmp_path, repo))
    for n in (1, 2):
        write_item(tmp_path / "batch", f"item_{n}", title=f"Old {n}",
                   files={"f.txt": f"old {n}".encode()})
    mapfile = tmp_path / "map"
    assert main(["-C", config, "import", "-a", "-q", "-c", structure.collection_handle, "-s",
                 str(tmp_path / "batch"), "-m", str(mapfile)]) == 0
    handles_before = sorted(mapfile.read_text().split())
    for n in (1, 2):
        write_item(tmp_path / "batch", f"item_{n}", title=f"New {n}",
                   files={"f.txt": f"new {n}".encode()})
    zip_dir(tmp_path / "batch", tmp_path / "batch.zip", prefix="wrapper/")
    assert main(["-C", config, "import", "-r", "-q", "-s", str(tmp_path), "-z", "batch.zip",
                 "-m", str(mapfile)]) == 0
    items = items_in(repo, structure.collection)
    assert sorted(items) == ["New 1", "New 2"]
    assert sorted(h for i in items.values() for h in [i.handle]) == sorted(
        h for h in handles_before if "/" in h)
