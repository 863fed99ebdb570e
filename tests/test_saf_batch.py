"""Batches: a commit per group of items, the mapfile, --resume after a failure or a
crash, --validate reporting every problem at once, and constant memory over 1 000 items."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import TEST_DATABASE_URL
from core_support import clean_environ, files_under, make_structure, store_root, write_cli_config
from saf_support import count, ingest, items_in, nothing_stored, write_item

from packagers.base import IngestedObject, Operation
from packagers.errors import ObjectExists, PackageError, PackageValidationError
from packagers.saf import importer
from packagers.saf.mapfile import Mapfile
from packagers.saf.reader import ItemFolder, ItemPlan
from server import models as m
from server.cli import main
from server.context import Repository
from server.errors import PermissionDenied
from server.services import objects
from server.store import StagedContent


def numbered_batch(root: Path, n: int, *, files: bool = True) -> Path:
    for i in range(n):
        write_item(root, f"item_{i:04d}", title=f"Item {i}",
                   files={"f.txt": f"file of item {i}\n".encode()} if files else None)
    return root


def titles(repo: Repository, collection: uuid.UUID) -> list[str]:
    return sorted(items_in(repo, collection))


def mapfile_folders(path: Path) -> list[str]:
    return [line.rsplit(" ", 1)[0] for line in path.read_text().splitlines()]


def test_items_commit_a_group_at_a_time_and_the_mapfile_follows(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "GROUP_ITEMS", 2)
    structure = make_structure(repo)
    numbered_batch(tmp_path / "batch", 5)
    mapfile = tmp_path / "map"
    seen: list[tuple[int, int]] = []

    def on_object(obj: IngestedObject) -> None:
        # called after its group's commit: the item is visible to others, and in the mapfile
        seen.append((count(repo, m.Item), len(mapfile.read_text().splitlines())))

    result = ingest(repo, tmp_path / "batch", structure.collection, mapfile=str(mapfile),
                    on_object=on_object)
    assert seen == [(2, 2), (2, 2), (4, 4), (4, 4), (5, 5)]
    assert [line.split() for line in mapfile.read_text().splitlines()] == [
        [o.package, o.handle] for o in result.objects]
    assert not Path(f"{mapfile}.pending").exists()
    # a second run with the same mapfile is refused: that is what resume is for
    with pytest.raises(ObjectExists) as caught:
        ingest(repo, tmp_path / "batch", structure.collection, mapfile=str(mapfile))
    assert "resume" in str(caught.value)
    assert count(repo, m.Item) == 5


def test_resume_after_an_item_fails_mid_batch(repo: Repository, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 3 claims a handle that another writer takes while the batch runs (after the
    group of items 0-1 committed): its group (2-3) fails and is redone item by item, so
    items 0-2 stay, the error names the folder, resume imports 3-5 once."""
    monkeypatch.setattr(importer, "GROUP_ITEMS", 2)
    structure = make_structure(repo)
    batch = numbered_batch(tmp_path / "batch", 6)
    (batch / "item_0003" / "handle").write_text("123456789/9999\n")
    mapfile = tmp_path / "map"

    def competitor(obj: IngestedObject) -> None:
        if obj.package == "item_0001":
            with repo.context(system=True) as ctx:
                community = objects.get(ctx, structure.community)
                assert isinstance(community, m.Community)
                objects.create_collection(ctx, community, "Taken", handle="123456789/9999")

    with pytest.raises(ObjectExists) as caught:
        ingest(repo, batch, structure.collection, mapfile=str(mapfile), on_object=competitor)
    error = caught.value
    assert error.message.startswith("item_0003: handle 123456789/9999 already belongs")
    assert error.details[0].file == "item_0003"
    assert "3 item(s) before it were committed" in error.details[0].message
    assert mapfile_folders(mapfile) == ["item_0000", "item_0001", "item_0002"]
    assert titles(repo, structure.collection) == ["Item 0", "Item 1", "Item 2"]
    stored_before = count(repo, m.StoredContent)
    assert stored_before == 3  # the failed item left no content behind

    (batch / "item_0003" / "handle").unlink()  # the fix
    result = ingest(repo, batch, structure.collection, mapfile=str(mapfile), resume="true")
    assert [o.package for o in result.objects] == ["item_0003", "item_0004", "item_0005"]
    assert titles(repo, structure.collection) == [f"Item {i}" for i in range(6)]
    assert mapfile_folders(mapfile) == [f"item_{i:04d}" for i in range(6)]
    assert count(repo, m.Item) == 6


def test_a_folder_unreadable_mid_group_stops_after_the_items_before_it(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of item 3 vanishes after validation: the items staged before it (same group)
    are committed and recorded first, item 3 leaves nothing, resume imports 3-4."""
    structure = make_structure(repo)
    batch = numbered_batch(tmp_path / "batch", 5)
    mapfile = tmp_path / "map"
    real_stage_files = importer.stage_files

    def vanishing(op: Operation, item: ItemFolder, plan: ItemPlan) -> list[StagedContent]:
        if plan.folder == "item_0003":
            raise FileNotFoundError(2, "No such file or directory", "item_0003/f.txt")
        return real_stage_files(op, item, plan)

    monkeypatch.setattr(importer, "stage_files", vanishing)
    with pytest.raises(PackageError) as caught:
        ingest(repo, batch, structure.collection, mapfile=str(mapfile))
    assert caught.value.message.startswith("item_0003: cannot read the item")
    assert "3 item(s) before it were committed" in caught.value.details[0].message
    assert mapfile_folders(mapfile) == ["item_0000", "item_0001", "item_0002"]
    assert titles(repo, structure.collection) == ["Item 0", "Item 1", "Item 2"]
    assert count(repo, m.StoredContent) == 3
    assert files_under(store_root(repo) / ".staging") == []
    monkeypatch.undo()
    result = ingest(repo, batch, structure.collection, mapfile=str(mapfile), resume="true")
    assert [o.package for o in result.objects] == ["item_0003", "item_0004"]
    assert count(repo, m.Item) == 5


def test_resume_settles_an_item_committed_but_not_yet_in_the_mapfile(
        repo: Repository, tmp_path: Path) -> None:
    """The crash window between a commit and its mapfile line: the journal names the item,
    resume finds it committed and records it instead of importing it again."""
    structure = make_structure(repo)
    batch = numbered_batch(tmp_path / "batch", 3)
    mapfile = tmp_path / "map"
    result = ingest(repo, batch, structure.collection, mapfile=str(mapfile))
    last = result.objects[-1]
    lines = mapfile.read_text().splitlines()
    mapfile.write_text("\n".join(lines[:-1]) + "\n")  # its line never reached the disk
    Path(f"{mapfile}.pending").write_text(f"{last.package} {last.uuid}\n")
    resumed = ingest(repo, batch, structure.collection, mapfile=str(mapfile), resume="true")
    assert resumed.objects == []
    assert any("committed before the interruption" in w for w in resumed.warnings)
    assert mapfile.read_text().splitlines() == lines
    assert count(repo, m.Item) == 3


def test_resume_imports_a_journalled_item_that_was_rolled_back(repo: Repository,
                                                               tmp_path: Path) -> None:
    journal = Mapfile(tmp_path / "map")
    journal.path.write_text("item_0000 123456789/5\n")
    journal.begin([("item_0001", uuid.uuid4())])
    assert journal.recover(lambda _id: None) == [
        "item_0001: was not committed before the interruption; importing it"]  # forgotten
    assert journal.read() == {"item_0000": "123456789/5"}
    assert not journal.pending_path.exists()
    structure = make_structure(repo)
    numbered_batch(tmp_path / "batch", 2)
    # the mapfile claims item_0000 (from another repository, say): resume skips it
    result = ingest(repo, tmp_path / "batch", structure.collection,
                    mapfile=str(journal.path), resume="true")
    assert [o.package for o in result.objects] == ["item_0001"]


def test_resume_after_the_process_is_killed(repo: Repository, tmp_path: Path) -> None:
    """A real crash: ``davpack import`` is SIGKILLed mid-batch; ``--resume`` completes the
    batch with every item exactly once."""
    structure = make_structure(repo)
    total = 2 * importer.GROUP_ITEMS + 50
    numbered_batch(tmp_path / "batch", total)
    config = write_cli_config(tmp_path, repo)
    mapfile = tmp_path / "map"
    base = [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())",
            "-C", str(config), "import", "-a", "-q", "-c", structure.collection_handle,
            "-s", str(tmp_path / "batch"), "-m", str(mapfile)]
    proc = subprocess.Popen(base, env=clean_environ(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if mapfile.exists() and mapfile.read_text():  # the first group is in
            break
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(mapfile.read_text().splitlines())
    assert importer.GROUP_ITEMS <= done < total, \
        f"the import was not interrupted mid-batch ({done} items)"
    resumed = subprocess.run([*base, "-R"], env=clean_environ(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(mapfile_folders(mapfile)) == [f"item_{i:04d}" for i in range(total)]
    assert len(mapfile_folders(mapfile)) == total  # none twice
    assert titles(repo, structure.collection) == sorted(f"Item {i}" for i in range(total))
    assert count(repo, m.Item) == total
    assert count(repo, m.Bitstream) == total


def broken_batch(root: Path) -> Path:
    """Six folders, five broken in different ways, one fine."""
    write_item(root, "ok", title="Fine")
    bad_xml = write_item(root, "bad_xml", files={"a.txt": b"a"})
    (bad_xml / "dublin_core.xml").write_bytes(
        b'<dublin_core>\n<dcvalue element="title">Unclosed\n</dublin_core>\n')
    write_item(root, "unknown_field", dc=[("title", "Unknown field"),
                                          ("nosuchelement.really", "x")])
    write_item(root, "bad_contents", title="Bad contents", files={"here.txt": b"x"},
               contents=["here.txt\tbundle:ORIGINAL", "missing.pdf\tdescription:gone",
                         "here.txt\tbundle:EXTRA\tcolour:blue",
                         "here.txt\tbundle:TEXT\tprimary:maybe"])
    write_item(root, "bad_collections", title="Bad collections",
               other={"collections": b"not a handle\n"})
    write_item(root, "bad_refs", title="Bad references", files={"r.txt": b"r"},
               contents=["r.txt\tpermissions:-r 'No Such Group'"],
               other={"relationships": b"relation.isAuthorOfPublication folderName:nowhere\n"})
    return root


def test_validate_reports_every_problem_and_writes_nothing(repo: Repository,
                                                           tmp_path: Path) -> None:
    structure = make_structure(repo)
    batch = broken_batch(tmp_path / "batch")
    mapfile = tmp_path / "map"
    with pytest.raises(PackageValidationError) as caught:
        ingest(repo, batch, structure.collection, validate="true", mapfile=str(mapfile))
    found = {(d.file, d.line, d.field) for d in caught.value.details}
    assert found == {
        ("bad_xml/dublin_core.xml", 3, None),
        ("unknown_field/dublin_core.xml", 4, "dc.nosuchelement.really"),
        ("bad_contents/contents", 2, "file name"),
        ("bad_contents/contents", 3, "colour"),
        ("bad_contents/contents", 4, "primary"),
        ("bad_refs/contents", 1, "permissions"),
        ("bad_refs/relationships", 1, None),
    }
    assert "7 problems" in caught.value.message
    assert nothing_stored(repo)
    assert not mapfile.exists()
    # without -c, the collections file is read: its problem is reported too
    with pytest.raises(PackageValidationError) as again:
        ingest(repo, batch, validate="true")
    files = {d.file for d in again.value.details}
    assert {"bad_collections/collections", "ok/collections"} <= files
    # a real run refuses the same batch before importing anything
    with pytest.raises(PackageValidationError):
        ingest(repo, batch, structure.collection, mapfile=str(mapfile))
    assert nothing_stored(repo) and not mapfile.exists()


def test_validate_of_a_good_batch(repo: Repository, tmp_path: Path) -> None:
    structure = make_structure(repo)
    numbered_batch(tmp_path / "batch", 3)
    result = ingest(repo, tmp_path / "batch", structure.collection, validate="true")
    assert [(o.package, o.outcome.value) for o in result.objects] == [
        ("item_0000", "skipped"), ("item_0001", "skipped"), ("item_0002", "skipped")]
    assert nothing_stored(repo)


def test_cli_validate_prints_every_problem(repo: Repository, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    structure = make_structure(repo)
    batch = broken_batch(tmp_path / "batch")
    config = str(write_cli_config(tmp_path, repo))
    code = main(["-C", config, "import", "-a", "-v", "-c", structure.collection_handle,
                 "-s", str(batch)])
    err = capsys.readouterr().err
    assert code == 1
    assert "7 problems" in err
    assert "file=bad_contents/contents, line=2, field=file name: listed in contents but " \
           "file not found" in err
    assert "file=unknown_field/dublin_core.xml, line=4, field=dc.nosuchelement.really" in err
    assert nothing_stored(repo)


def test_cli_argument_errors(repo: Repository, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    structure = make_structure(repo)
    config = str(write_cli_config(tmp_path, repo))
    numbered_batch(tmp_path / "batch", 1)
    batch = str(tmp_path / "batch")
    assert main(["-C", config, "import", "-a", "-c", structure.collection_handle,
                 "-s", batch]) == 1  # no mapfile
    assert main(["-C", config, "import", "-a", "-c", structure.collection_handle, "-s", batch,
                 "-m", str(tmp_path / "missing.map"), "-R"]) == 1  # nothing to resume
    assert main(["-C", config, "import", "-a", "-c", "123456789/404", "-s", batch,
                 "-m", str(tmp_path / "m")]) == 1
    assert main(["-C", config, "import", "-a", "-c", structure.collection_handle,
                 "-s", str(tmp_path / "nowhere"), "-m", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "--mapfile is required" in err
    assert "does not exist" in err and "no such collection" in err
    assert count(repo, m.Item) == 0


def test_mapfile_and_resume_are_refused_over_the_network(repo: Repository,
                                                         tmp_path: Path) -> None:
    structure = make_structure(repo)
    numbered_batch(tmp_path / "batch", 1)
    with pytest.raises(PermissionDenied):
        ingest(repo, tmp_path / "batch", structure.collection, system=False,
               mapfile=str(tmp_path / "anywhere"))
    with pytest.raises(PackageError):
        ingest(repo, tmp_path / "batch", structure.collection, resume="true")


def test_a_depositor_gets_new_handles_and_needs_add_rights(repo: Repository, admin: m.EPerson,
                                                           tmp_path: Path) -> None:
    from server.services import authz, people

    structure = make_structure(repo)
    with repo.context(system=True) as ctx:
        depositor = people.create_person(ctx, "dep@example.org", password="x")
        depositor_id = depositor.id
    write_item(tmp_path / "batch", "one", title="Deposited",
               other={"handle": b"123456789/777\n"})
    with pytest.raises(PackageValidationError) as caught:
        ingest(repo, tmp_path / "batch", structure.collection, actor=depositor_id,
               system=False)
    assert "may not add items" in str(caught.value)
    with repo.context(system=True) as ctx:
        collection = ctx.session.get(m.Collection, structure.collection)
        person = ctx.session.get(m.EPerson, depositor_id)
        assert collection is not None and person is not None
        authz.add_policy(ctx, collection, m.Action.ADD, eperson=person)
    result = ingest(repo, tmp_path / "batch", structure.collection, actor=depositor_id,
                    system=False, workflow="false")
    [obj] = result.objects
    assert obj.handle != "123456789/777"
    assert any("only administrators keep handles" in w for w in obj.warnings)


@pytest.mark.slow
@pytest.mark.skipif(TEST_DATABASE_URL is not None, reason="the 1 000-item run is SQLite-only")
def test_thousand_items_in_groups_in_flat_memory(repo: Repository, tmp_path: Path) -> None:
    """1 000 items: each is visible (committed with its group) when it is reported, and
    what stays allocated after item 100 grows only by the receipt line of each further item.

    Memory is measured as live objects and allocated blocks after a full collection
    (cheap, unlike tracing), at item 100 and at the last item.
    """
    structure = make_structure(repo)
    total = 1000
    numbered_batch(tmp_path / "batch", total)
    reported = 0
    visible: list[tuple[int, int]] = []
    memory: dict[int, tuple[int, int]] = {}

    def on_object(obj: IngestedObject) -> None:
        nonlocal reported
        reported += 1
        if reported in (1, 2, 500, total):
            visible.append((reported, count(repo, m.Item)))
        if reported in (100, total):
            gc.collect()
            memory[reported] = (len(gc.get_objects()), sys.getallocatedblocks())

    ingest(repo, tmp_path / "batch", structure.collection, mapfile=str(tmp_path / "map"),
           on_object=on_object)
    group = importer.GROUP_ITEMS
    assert visible == [(1, group), (2, group), (500, 500), (total, total)]
    assert count(repo, m.Item) == total
    objects_per_item = (memory[total][0] - memory[100][0]) / (total - 100)
    blocks_per_item = (memory[total][1] - memory[100][1]) / (total - 100)
    # the receipt (IngestedObject, its warnings list, the folder -> handle entry) is kept
    # on purpose: ~3 objects, ~5 blocks per item; anything that leaked per item (a
    # session, ORM rows, a parsed document) would be hundreds.
    assert objects_per_item < 8, objects_per_item
    assert blocks_per_item < 20, blocks_per_item
