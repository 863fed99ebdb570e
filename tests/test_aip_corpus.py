"""Real DSpace AIPs (../shared/corpus/aip, see PROVENANCE.md) restore, and what is restored
equals what their METS says.  The corpus is read in place; tests skip when it is absent.

* ``dspace-1.7-docs-samples``: the four samples of DSpace 1.7's documentation (not a closed
  tree: the item's collection is not among them, hence ``skipIfParentMissing``).
* ``archivematica-sampledata-DSpaceExport``: a real DSpace 1.7.0 collection AIP with its
  nine items, restored as a tree under a community made for it.
"""

from __future__ import annotations

import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aip_support import export_tree, ingest, make_repo, snapshot
from conftest import corpus_path

from packagers.base import Mode, Outcome
from packagers.errors import PackageValidationError, ParentMissing
from server import models as m
from server import xmlsafe
from server.context import Repository
from server.services import authz, metadata, objects, people
from server.services.metadata import Value

NS = {"mets": "http://www.loc.gov/METS/", "dim": "http://www.dspace.org/xmlns/dspace/dim",
      "premis": "http://www.loc.gov/standards/premis", "xlink": "http://www.w3.org/1999/xlink"}
SAMPLES = ("aip", "dspace-1.7-docs-samples")
ARCHIVEMATICA = ("aip", "archivematica-sampledata-DSpaceExport")


def mets(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive, archive.open("mets.xml") as fh:
        return xmlsafe.parse(fh, name=f"{path.name}!/mets.xml").getroot()


def dim_values(root: Any, dmdids: str, *, skip_empty: bool) -> list[Value]:
    out = []
    for dmdid in dmdids.split():
        section = root.find(f"mets:dmdSec[@ID='{dmdid}']", NS)
        wrap = section.find("mets:mdWrap", NS)
        if wrap.get("OTHERMDTYPE") != "DIM":
            continue
        for field in wrap.iterfind(".//dim:field", NS):
            name = ".".join(p for p in (field.get("mdschema"), field.get("element"),
                                        field.get("qualifier")) if p)
            text = field.text or ""
            if skip_empty and not text.strip():
                continue
            out.append(Value(name, text, field.get("lang")))
    return out


def top_dmdids(root: Any) -> str:
    return str(root.find("mets:structMap/mets:div", NS).get("DMDID"))


def stored(obj: m.DSpaceObject) -> list[Value]:
    return [Value(v.field, v.value, v.language) for v in metadata.ordered_values(obj)]


def grouped(values: list[Value]) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {}
    for value in values:
        out.setdefault(value.field, []).append((value.value, value.language))
    return out


def files_of(root: Any) -> list[tuple[str, str, int, str, int, str]]:
    """(bundle, name from PREMIS, size, md5, seq, mime) of every file in the fileSec."""
    out = []
    for group in root.iterfind("mets:fileSec/mets:fileGrp", NS):
        for f in group.iterfind("mets:file", NS):
            amd = root.find(f"mets:amdSec[@ID='{f.get('ADMID')}']", NS)
            name = amd.find(".//premis:originalName", NS).text
            out.append((group.get("USE"), name, int(f.get("SIZE")), f.get("CHECKSUM"),
                        int(f.get("SEQ")), f.get("MIMETYPE")))
    return out


def restored_files(item: m.Item) -> list[tuple[str, str, int, str, int, str]]:
    return [(bundle.name, b.name, b.size, b.md5, b.sequence_id or 0, b.mime_type)
            for bundle in item.bundles for b in bundle.bitstreams]


# ---------------------------------------------------------------------------------------
# DSpace 1.7 documentation samples


def sample(documented: str) -> Path:
    """A sample by its documented name: the corpus keeps those names as symbolic links,
    which a checkout may have turned into small files holding the target's name."""
    path = corpus_path(*SAMPLES, documented)
    if path.stat().st_size < 64:
        target = path.parent / path.read_text("utf-8").strip()
        if target.is_file():
            return target
    return path


def test_dspace_17_documentation_samples(repo: Repository, admin: m.EPerson) -> None:
    site_aip = sample("SITE@123456789-0.zip")
    community_aip = sample("COMMUNITY@123456789-1.zip")
    collection_aip = sample("COLLECTION@123456789-2.zip")
    item_aip = sample("ITEM@123456789-8.zip")

    # Site: people and groups.  A plain restore meets the built-in groups (as in DSpace).
    with pytest.raises(Exception, match="already exist"):
        ingest(repo, site_aip, mode=Mode.RESTORE, actor=admin.id)
    ingest(repo, site_aip, mode=Mode.REPLACE, actor=admin.id)
    with repo.context(write=False) as ctx:
        members = {p.email for p in authz.admin_group(ctx).people}
        assert members == {"admin@example.org", "tdonohue@duraspace.org", "blah@blah.org"}
        tim = people.by_email(ctx, "tdonohue@duraspace.org")
        assert tim is not None and (tim.first_name, tim.last_name, tim.language) == (
            "Tim", "Donohue", "en") and tim.can_log_in
        site = objects.site(ctx)
        assert grouped(stored(site)) == grouped(dim_values(mets(site_aip),
                                                           top_dmdids(mets(site_aip)),
                                                           skip_empty=True))

    # Community: all of its DIM; under the site (its parent handle is the site's)
    result = ingest(repo, community_aip, mode=Mode.RESTORE)
    assert result.objects[0].handle == "123456789/1"
    root = mets(community_aip)
    with repo.context(write=False) as ctx:
        community = handles_get(ctx, "123456789/1")
        assert isinstance(community, m.Community) and community.parent is None
        assert grouped(stored(community)) == grouped(dim_values(root, top_dmdids(root),
                                                                skip_empty=True))
        assert [(p.action, p.group.name) for p in community.policies] == [  # type: ignore[union-attr]
            (m.Action.READ, m.ANONYMOUS)]

    # Collection: its typed groups are created under their internal names, with members,
    # and every METSRights context becomes a policy
    ingest(repo, collection_aip, mode=Mode.RESTORE)
    root = mets(collection_aip)
    with repo.context(write=False) as ctx:
        collection = handles_get(ctx, "123456789/2")
        assert isinstance(collection, m.Collection) and collection.community.handle == \
            "123456789/1"
        assert grouped(stored(collection)) == grouped(dim_values(root, top_dmdids(root),
                                                                 skip_empty=True))
        licence = metadata.first(collection, "dc.rights.license")
        assert licence is not None and "\r\n" in licence
        prefix = f"COLLECTION_{collection.id}_"
        admins = authz.group_by_name(ctx, prefix + "ADMIN")
        assert admins is not None
        assert [p.email for p in admins.people] == ["tdonohue@duraspace.org"]
        policies = sorted((p.action.value, p.group.name.removeprefix(prefix))  # type: ignore[union-attr]
                          for p in collection.policies)
    assert policies == sorted([
        ("DEFAULT_BITSTREAM_READ", "DEFAULT_READ"), ("DEFAULT_ITEM_READ", "DEFAULT_READ"),
        ("ADD", "SUBMIT"), ("ADD", "WORKFLOW_STEP_3"), ("ADD", "WORKFLOW_STEP_2"),
        ("ADD", "WORKFLOW_STEP_1"), ("ADMIN", "ADMIN"), ("READ", m.ANONYMOUS)])

    # Item: its collection (123456789/5) is not among the samples
    with pytest.raises(ParentMissing):
        ingest(repo, item_aip, mode=Mode.RESTORE)
    skipped = ingest(repo, item_aip, mode=Mode.RESTORE, skipIfParentMissing="true")
    assert [o.outcome for o in skipped.objects] == [Outcome.SKIPPED]
    # ... restored under the sample collection instead (-p), old bitstream_<n> ids and all
    with repo.context(write=False) as ctx:
        parent = handles_get(ctx, "123456789/2").id  # type: ignore[union-attr]
    item_id = ingest(repo, item_aip, mode=Mode.RESTORE, parent=parent).objects[0].uuid
    root = mets(item_aip)
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None and item.handle == "123456789/8"
        assert item.submitter is not None and item.submitter.email == "tdonohue@duraspace.org"
        assert stored(item) == dim_values(root, top_dmdids(root), skip_empty=False)
        assert restored_files(item) == files_of(root)
        assert metadata.first(item, "dc.description.abstract").startswith(  # type: ignore[union-attr]
            "This is really just a sample abstract.  But, \u00cd\u2019v\u00e9 thrown")


def handles_get(ctx: Any, handle: str) -> m.DSpaceObject | None:
    from server.services import handles

    return handles.resolve(ctx, handle)


# ---------------------------------------------------------------------------------------
# Archivematica's DSpace export: a collection and its nine items


def _ubc(repo: Repository) -> uuid.UUID:
    """A community to restore under, and the two people the collection's groups name."""
    with repo.context(system=True) as ctx:
        for email in ("svpr@exchange.ubc.ca", "andy.torr@ubc.ca"):
            people.create_person(ctx, email)
        return objects.create_community(ctx, None, "UBC").id


def check_archivematica(repo: Repository, community: uuid.UUID, directory: Path) -> None:
    collection_root = mets(directory / "aip_1314.zip")
    items = sorted(directory.glob("ITEM@*.zip"))
    assert len(items) == 9
    with repo.context(write=False) as ctx:
        collection = handles_get(ctx, "2429/1314")
        assert isinstance(collection, m.Collection) and collection.community_id == community
        assert grouped(stored(collection)) == grouped(
            dim_values(collection_root, top_dmdids(collection_root), skip_empty=True))
        template = collection.template_item
        assert template is not None
        template_div = collection_root.find(
            "mets:structMap/mets:div/mets:div[@TYPE='DSpace ITEM Template']", NS)
        assert stored(template) == dim_values(collection_root, template_div.get("DMDID"),
                                              skip_empty=False)
        admins = authz.group_by_name(ctx, f"COLLECTION_{collection.id}_ADMIN")
        assert admins is not None
        assert sorted(p.email for p in admins.people) == ["andy.torr@ubc.ca",
                                                          "svpr@exchange.ubc.ca"]
        assert len(collection.policies) == 6
        for path in items:
            root = mets(path)
            handle = root.get("OBJID").removeprefix("hdl:")
            item = handles_get(ctx, handle)
            assert isinstance(item, m.Item), handle
            assert item.owning_collection_id == collection.id
            assert item.in_archive and not item.withdrawn
            assert stored(item) == dim_values(root, top_dmdids(root), skip_empty=False)
            assert restored_files(item) == files_of(root)
            authors = metadata.values(item, "dc.contributor.author")
            assert authors and authors[0].value
            with ctx.open_content(item.bundles[0].bitstreams[0]) as fh:
                assert fh.read(5) == b"%PDF-"


def test_archivematica_collection_restores_as_a_tree(repo: Repository) -> None:
    directory = corpus_path(*ARCHIVEMATICA)
    community = _ubc(repo)
    result = ingest(repo, directory / "aip_1314.zip", mode=Mode.RESTORE, recursive=True,
                    parent=community)
    assert [o.type for o in result.objects].count(m.ObjectType.ITEM) == 9
    assert all(o.outcome is Outcome.CREATED for o in result.objects)
    check_archivematica(repo, community, directory)
    with repo.context(write=False) as ctx:
        # DSpace 1.7 fields this registry did not have were created (createMetadataFields)
        assert metadata.get_field(ctx, "dc.description.reviewstatus")
        assert metadata.get_field(ctx, "dc.type.text")


def test_archivematica_directory_and_round_trip(repo: Repository, tmp_path: Path) -> None:
    """The directory itself is a source (its root is found), and what was restored
    exports and restores again unchanged."""
    directory = corpus_path(*ARCHIVEMATICA)
    community = _ubc(repo)
    ingest(repo, directory, mode=Mode.RESTORE, recursive=True, parent=community)
    check_archivematica(repo, community, directory)
    with repo.context(write=False) as ctx:
        collection_id = handles_get(ctx, "2429/1314").id  # type: ignore[union-attr]
    export_tree(repo, collection_id, tmp_path / "again")
    other = make_repo(tmp_path / "other")
    with other.context(system=True) as ctx:
        for email in ("svpr@exchange.ubc.ca", "andy.torr@ubc.ca"):
            people.create_person(ctx, email)
        community_copy = objects.create_community(ctx, None, "UBC", object_id=community).id
    ingest(other, tmp_path / "again", mode=Mode.RESTORE, recursive=True, parent=community_copy)
    before, after = snapshot(repo), snapshot(other)
    for key, record in before.items():
        if key != "relationships" and record["type"] in ("ITEM", "BUNDLE", "BITSTREAM",
                                                          "COLLECTION"):
            assert after[key] == record, key
    other.dispose()


def test_archivematica_collection_is_invalid_mods_when_validating(repo: Repository) -> None:
    """DSpace 1.7 wrote text directly inside mods:relatedItem, which the MODS schema
    forbids: validate=true (with local schemas) says so, naming the line."""
    directory = corpus_path(*ARCHIVEMATICA)
    schemas = corpus_path("schemas")
    other = make_repo(Path(str(repo.config.path("store.path")) + "-v"), suffix="validate",
                      **{"packagers.schemas_dir": str(schemas)})
    community = _ubc(other)
    with pytest.raises(PackageValidationError) as info:
        ingest(other, directory / "aip_1314.zip", mode=Mode.RESTORE, parent=community,
               validate="true")
    assert any("relatedItem" in d.message and d.line for d in info.value.details)
    other.dispose()
