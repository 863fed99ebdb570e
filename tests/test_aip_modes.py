"""AIP ingest modes (seeds/001 "Ingestion Modes & Options"): submit, restore, restore
keeping existing objects, force replace; single packages and hierarchies; and the
identity options ignoreHandle, ignoreParent and skipIfParentMissing.  Each test fails if
its mode or option were ignored."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import pytest
from aip_support import (
    Rich,
    add_admin,
    build_rich_site,
    export_one,
    export_tree,
    ingest,
    make_repo,
    residue,
    snapshot,
)

from packagers.base import Mode, Outcome
from packagers.errors import ObjectExists, PackageValidationError, ParentMissing
from server import models as m
from server.context import Repository
from server.errors import PermissionDenied
from server.services import handles, metadata, objects


@pytest.fixture
def rich(repo: Repository) -> Rich:
    return build_rich_site(repo)


def handle_of(repo: Repository, object_id: uuid.UUID) -> str:
    with repo.context(write=False) as ctx:
        obj = ctx.session.get(m.DSpaceObject, object_id)
        assert obj is not None and obj.handle
        return obj.handle


def package_name(repo: Repository, object_id: uuid.UUID, kind: str) -> str:
    return f"{kind}@{handle_of(repo, object_id).replace('/', '-')}.zip"


def new_collection(repo: Repository, community: uuid.UUID, name: str, *,
                   workflow: bool = False) -> uuid.UUID:
    with repo.context(system=True) as ctx:
        parent = ctx.session.get(m.Community, community)
        collection = objects.create_collection(ctx, parent, name)  # type: ignore[arg-type]
        objects.set_workflow_enabled(ctx, collection, workflow)
        return collection.id


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def item_values(repo: Repository, item_id: uuid.UUID, field: str) -> list[str]:
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None
        return [v.value for v in metadata.values(item, field)]


# ---------------------------------------------------------------------------------------
# Submit


def test_submit_creates_a_new_item_under_the_parent(repo: Repository, admin: m.EPerson,
                                                    rich: Rich, tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    inbox = new_collection(repo, rich.top, "Inbox")
    result = ingest(repo, aip, mode=Mode.SUBMIT, parent=inbox, actor=admin.id)
    new = result.objects[0]
    assert new.outcome is Outcome.CREATED and new.type is m.ObjectType.ITEM
    assert new.uuid != rich.article
    assert new.handle and new.handle != handle_of(repo, rich.article)
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, new.uuid)
        assert item is not None and item.owning_collection_id == inbox
        assert item.in_archive and item.workflow_state is m.WorkflowState.ARCHIVED
        licence = objects.get_bundle(item, "LICENSE")
        assert licence is not None and len(licence.bitstreams) == 2  # the package's + new
        with ctx.open_content(licence.bitstreams[-1]) as fh:
            assert b"non-exclusive right" in fh.read()
        titles = [v.value for v in metadata.values(item, "dc.title")]
        original = [b.name for b in objects.get_bundle(item, "ORIGINAL").bitstreams]  # type: ignore[union-attr]
    assert titles == ["Quantenfeldtheorie — eine Einführung"]
    assert original == ["Dissertation Müller.pdf", "data.csv"]
    # new system metadata: an accession date of its own and a provenance note
    assert len(item_values(repo, new.uuid, "dc.date.accessioned")) == 1
    provenance = item_values(repo, new.uuid, "dc.description.provenance")
    assert any("Submitted by admin@example.org" in p for p in provenance)
    # the original is untouched
    assert item_values(repo, rich.article, "dc.title") == titles


def test_submit_goes_through_workflow_unless_skipped(repo: Repository, admin: m.EPerson,
                                                     rich: Rich, tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    reviewed = new_collection(repo, rich.top, "Reviewed", workflow=True)
    held = ingest(repo, aip, mode=Mode.SUBMIT, parent=reviewed, actor=admin.id).objects[0]
    direct = ingest(repo, aip, mode=Mode.SUBMIT, parent=reviewed, actor=admin.id,
                    skip_workflow=True).objects[0]
    with repo.context(write=False) as ctx:
        waiting = ctx.session.get(m.Item, held.uuid)
        installed = ctx.session.get(m.Item, direct.uuid)
        assert waiting is not None and installed is not None
        assert waiting.workflow_state is m.WorkflowState.WORKFLOW and not waiting.in_archive
        assert waiting.handle is None
        assert installed.workflow_state is m.WorkflowState.ARCHIVED and installed.handle


def test_submit_needs_a_parent_unless_the_package_parent_is_wanted(
        repo: Repository, admin: m.EPerson, rich: Rich, tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    with pytest.raises(ParentMissing):
        ingest(repo, aip, mode=Mode.SUBMIT, actor=admin.id)
    copy = ingest(repo, aip, mode=Mode.SUBMIT, actor=admin.id,
                  ignoreParent="false").objects[0]
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, copy.uuid)
        assert item is not None and item.owning_collection_id == rich.theses


def test_submit_with_ignore_handle_false_keeps_the_package_handle(
        repo: Repository, rich: Rich, tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    handle = handle_of(repo, rich.article)
    target = make_repo(tmp_path / "target")
    # the people and groups its policies name (an unknown one would fail the submit)
    ingest(target, write(tmp_path, "site.zip", export_one(repo, rich.site)), mode=Mode.RESTORE,
           keep=True)
    with target.context(system=True) as ctx:
        collection = objects.create_collection(
            ctx, objects.create_community(ctx, None, "C"), "Col")
        metadata.get_field(ctx, "local.grant", create=True)
        parent = collection.id
    minted = ingest(target, aip, mode=Mode.SUBMIT, parent=parent,
                    skip_workflow=True).objects[0]
    kept = ingest(target, aip, mode=Mode.SUBMIT, parent=parent, skip_workflow=True,
                  ignoreHandle="false").objects[0]
    assert minted.handle != handle
    assert kept.handle == handle
    assert kept.uuid != rich.article  # submit never reuses identities it is not asked to
    target.dispose()


def test_submit_of_a_collection_hierarchy_copies_the_tree(repo: Repository, admin: m.EPerson,
                                                          rich: Rich, tmp_path: Path) -> None:
    export_tree(repo, rich.theses, tmp_path / "theses")
    top = tmp_path / "theses" / package_name(repo, rich.theses, "COLLECTION")
    copy = ingest(repo, top, mode=Mode.SUBMIT, recursive=True, parent=rich.sub, actor=admin.id,
                  skip_workflow=True)
    collection = copy.objects[0]
    assert collection.type is m.ObjectType.COLLECTION and collection.uuid != rich.theses
    items = [o for o in copy.objects if o.type is m.ObjectType.ITEM]
    assert len(items) == 4  # owned and mapped children, all placed in the copy
    with repo.context(write=False) as ctx:
        for receipt in items:
            item = ctx.session.get(m.Item, receipt.uuid)
            assert item is not None
            assert collection.uuid in {item.owning_collection_id,
                                       *(c.id for c in item.mapped_collections)}
        template = ctx.session.get(m.Collection, collection.uuid).template_item  # type: ignore[union-attr]
        assert template is not None
        assert metadata.first(template, "dc.publisher") == "Universität Beispiel"


# ---------------------------------------------------------------------------------------
# Restore


def test_restore_keeps_uuid_handle_and_parent(repo: Repository, rich: Rich,
                                              tmp_path: Path) -> None:
    site_aip = write(tmp_path, "site.zip", export_one(repo, rich.site))
    export_tree(repo, rich.site, tmp_path / "tree")
    target = make_repo(tmp_path / "target")
    ingest(target, site_aip, mode=Mode.RESTORE, keep=True)
    result = ingest(target, tmp_path / "tree" / "SITE@123456789-0.zip", mode=Mode.RESTORE,
                    keep=True, recursive=True)
    created = {o.uuid for o in result.objects if o.outcome is Outcome.CREATED}
    assert {rich.top, rich.sub, rich.theses, rich.journals, rich.article} <= created
    before, after = snapshot(repo), snapshot(target)
    for key in (rich.article, rich.theses, rich.top, rich.withdrawn):
        assert before[str(key)] == after[str(key)]
    target.dispose()


def test_restore_of_an_existing_object_rolls_everything_back_and_names_it(
        repo: Repository, rich: Rich, tmp_path: Path) -> None:
    export_tree(repo, rich.site, tmp_path / "tree")
    target = make_repo(tmp_path / "target")
    ingest(target, write(tmp_path, "site.zip", export_one(repo, rich.site)), mode=Mode.RESTORE,
           keep=True)
    # restore the journals collection alone first (its parent community must exist)
    ingest(target, tmp_path / "tree" / "COMMUNITY@123456789-1.zip", mode=Mode.RESTORE)
    journals = f"COLLECTION@{handle_of(repo, rich.journals).replace('/', '-')}.zip"
    ingest(target, tmp_path / "tree" / journals, mode=Mode.RESTORE)
    before = residue(target)
    with pytest.raises(ObjectExists) as info:
        ingest(target, tmp_path / "tree" / "SITE@123456789-0.zip", mode=Mode.RESTORE,
               recursive=True)
    # the site's groups exist already (as in DSpace); with -k the site passes, and the
    # first existing object met deep in the tree fails the whole run
    assert "already exist" in info.value.message
    with pytest.raises(ObjectExists) as info:
        ingest(target, tmp_path / "tree" / "COMMUNITY@123456789-1.zip", mode=Mode.RESTORE,
               recursive=True)
    assert handle_of(repo, rich.top) in str(info.value)
    assert residue(target) == before
    with target.context(write=False) as ctx:
        assert ctx.session.get(m.Community, rich.sub) is None  # nothing of the run is left
    target.dispose()


def test_restore_fails_as_a_whole_when_a_deep_object_exists(repo: Repository, rich: Rich,
                                                            tmp_path: Path) -> None:
    export_tree(repo, rich.theses, tmp_path / "theses")
    target = make_repo(tmp_path / "target")
    ingest(target, write(tmp_path, "site.zip", export_one(repo, rich.site)), mode=Mode.RESTORE,
           keep=True)
    with target.context(system=True) as ctx:
        community = objects.create_community(ctx, None, "Parent").id
        collection = objects.create_collection(ctx, ctx.session.get(m.Community, community),
                                               "Holder")  # type: ignore[arg-type]
        holder = collection.id
    article_aip = tmp_path / "theses" / package_name(repo, rich.article, "ITEM")
    ingest(target, article_aip, mode=Mode.RESTORE, parent=holder)
    before = residue(target)
    top = next((tmp_path / "theses").glob("COLLECTION@*.zip"))
    with pytest.raises(ObjectExists) as info:
        ingest(target, top, mode=Mode.RESTORE, recursive=True, parent=community,
               skipIfParentMissing="true")
    assert handle_of(repo, rich.article) in str(info.value)
    assert residue(target) == before
    target.dispose()


def test_keep_existing_skips_existing_objects_and_their_children(
        repo: Repository, rich: Rich, tmp_path: Path) -> None:
    export_tree(repo, rich.site, tmp_path / "tree")
    site_aip = tmp_path / "tree" / "SITE@123456789-0.zip"
    target = make_repo(tmp_path / "target")
    ingest(target, site_aip, mode=Mode.RESTORE, keep=True)  # people and groups only
    ingest(target, tmp_path / "tree" / "COMMUNITY@123456789-1.zip", mode=Mode.RESTORE)
    with target.context(system=True) as ctx:
        top = ctx.session.get(m.Community, rich.top)
        metadata.set_single(ctx, top, "dc.title", "Renamed")  # type: ignore[arg-type]
    result = ingest(target, site_aip, mode=Mode.RESTORE, recursive=True, keep=True)
    by_handle = {o.handle: o for o in result.objects}
    top_receipt = by_handle[handle_of(repo, rich.top)]
    assert top_receipt.outcome is Outcome.SKIPPED and top_receipt.reason
    # its whole subtree is skipped and reported, nothing of it is restored
    for object_id in (rich.sub, rich.theses, rich.journals, rich.article, rich.hidden):
        receipt = by_handle[handle_of(repo, object_id)]
        assert receipt.outcome is Outcome.SKIPPED and "already exists" in (receipt.reason or "")
    # what did not exist is restored
    for object_id in (rich.archive, rich.letters, rich.letter):
        assert by_handle[handle_of(repo, object_id)].outcome is Outcome.CREATED
    with target.context(write=False) as ctx:
        assert metadata.first(ctx.session.get(m.Community, rich.top), "dc.title") == "Renamed"  # type: ignore[arg-type]
        assert ctx.session.get(m.Collection, rich.theses) is None
        assert ctx.session.get(m.Item, rich.letter) is not None
    # without -k the same restore fails on the first existing object, changing nothing
    before = residue(target)
    with pytest.raises(ObjectExists):
        ingest(target, tmp_path / "tree" / "COMMUNITY@123456789-1.zip", mode=Mode.RESTORE,
               recursive=True)
    assert residue(target) == before
    target.dispose()


# ---------------------------------------------------------------------------------------
# Force replace


def test_force_replace_restores_the_packaged_state(repo: Repository, rich: Rich,
                                                   tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    before = snapshot(repo)
    with repo.context(system=True) as ctx:
        article = ctx.session.get(m.Item, rich.article)
        assert article is not None
        metadata.set_single(ctx, article, "dc.title", "Vandalised")
        data = ctx.session.get(m.Bitstream, rich.big_policy_bitstream)
        objects.remove_bitstream(ctx, data)  # type: ignore[arg-type]
        objects.withdraw(ctx, article)
    result = ingest(repo, aip, mode=Mode.REPLACE)
    assert result.objects[0].outcome is Outcome.REPLACED
    after = snapshot(repo)
    for key in before:
        assert before[key] == after[key], key


def test_force_replace_of_a_named_object_checks_the_type(repo: Repository, rich: Rich,
                                                         tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    with pytest.raises(PackageValidationError) as info:
        ingest(repo, aip, mode=Mode.REPLACE, target=rich.theses)
    assert "does not match up with the object type" in info.value.message
    result = ingest(repo, aip, mode=Mode.RESTORE, target=rich.article)  # -i implies -f
    assert result.objects[0].outcome is Outcome.REPLACED


def test_a_failing_replace_rolls_back_the_whole_replacement(repo: Repository, rich: Rich,
                                                            tmp_path: Path) -> None:
    tree = tmp_path / "theses"
    export_tree(repo, rich.theses, tree)
    # damage an item package: the file its manifest lists is gone
    victim = tree / f"ITEM@{handle_of(repo, rich.withdrawn).replace('/', '-')}.zip"
    victim.write_bytes(_without_member(victim.read_bytes(), ".txt"))
    with repo.context(system=True) as ctx:
        metadata.set_single(ctx, ctx.session.get(m.Item, rich.article), "dc.title",  # type: ignore[arg-type]
                            "Changed after the backup")
    before = residue(repo)
    top = next(tree.glob("COLLECTION@*.zip"))
    with pytest.raises(PackageValidationError):
        ingest(repo, top, mode=Mode.REPLACE, recursive=True)
    assert item_values(repo, rich.article, "dc.title") == ["Changed after the backup"]
    assert residue(repo) == before


def _without_member(data: bytes, suffix: str) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(suffix):
                target.writestr(info, source.read(info))
    return out.getvalue()


def test_restore_and_replace_need_an_administrator(repo: Repository, rich: Rich,
                                                   tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    with repo.context(write=False) as ctx:
        from server.services import people

        bob = people.by_email(ctx, "bob@example.org")
        assert bob is not None
        bob_id = bob.id
    with pytest.raises(PermissionDenied):
        ingest(repo, aip, mode=Mode.REPLACE, actor=bob_id)


# ---------------------------------------------------------------------------------------
# Identity options


def test_ignore_handle_in_restore_mints_a_new_handle(repo: Repository, rich: Rich,
                                                     tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    target = make_repo(tmp_path / "target")
    add_admin(target)
    ingest(target, write(tmp_path, "site.zip", export_one(repo, rich.site)), mode=Mode.RESTORE,
           keep=True)
    with target.context(system=True) as ctx:
        collection = objects.create_collection(
            ctx, objects.create_community(ctx, None, "C"), "Col",
            handle=handle_of(repo, rich.theses))
        metadata.get_field(ctx, "local.grant", create=True)
        assert collection.handle
    restored = ingest(target, aip, mode=Mode.RESTORE, ignoreHandle="true").objects[0]
    assert restored.uuid == rich.article
    assert restored.handle != handle_of(repo, rich.article)
    target.dispose()


def test_ignore_parent_with_a_parent_in_restore(repo: Repository, rich: Rich,
                                                tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    target = make_repo(tmp_path / "target")
    ingest(target, write(tmp_path, "site.zip", export_one(repo, rich.site)), mode=Mode.RESTORE,
           keep=True)
    with target.context(system=True) as ctx:
        collection = objects.create_collection(
            ctx, objects.create_community(ctx, None, "C"), "Elsewhere")
        elsewhere = collection.id
    with pytest.raises(ParentMissing):  # the package's own parent is not there
        ingest(target, aip, mode=Mode.RESTORE)
    with pytest.raises(ParentMissing):  # ignoreParent=false insists on it even with -p
        ingest(target, aip, mode=Mode.RESTORE, parent=elsewhere, ignoreParent="false")
    restored = ingest(target, aip, mode=Mode.RESTORE, parent=elsewhere).objects[0]
    with target.context(write=False) as ctx:
        item = ctx.session.get(m.Item, restored.uuid)
        assert item is not None and item.owning_collection_id == elsewhere
    target.dispose()


def test_skip_if_parent_missing(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    aip = write(tmp_path, "article.zip", export_one(repo, rich.article))
    target = make_repo(tmp_path / "target")
    before = residue(target)
    with pytest.raises(ParentMissing) as info:
        ingest(target, aip, mode=Mode.RESTORE)
    assert "Could not find a parent DSpaceObject referenced as" in info.value.message
    result = ingest(target, aip, mode=Mode.RESTORE, skipIfParentMissing="true")
    assert [o.outcome for o in result.objects] == [Outcome.SKIPPED]
    assert result.warnings
    assert residue(target) == before
    target.dispose()


def test_handles_are_never_minted_twice_after_a_restore(repo: Repository, rich: Rich,
                                                        tmp_path: Path) -> None:
    export_tree(repo, rich.site, tmp_path / "tree")
    target = make_repo(tmp_path / "target")
    ingest(target, tmp_path / "tree" / "SITE@123456789-0.zip", mode=Mode.REPLACE,
           recursive=True)
    with target.context(system=True) as ctx:
        fresh = handles.mint(ctx)
        assert handles.resolve(ctx, fresh) is None
