"""Every option of the AIP packager (seeds/001 "Additional Packager Options", plus dmd and
all), each with a test that would fail if the option were ignored."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from aip_support import (
    Rich,
    build_rich_site,
    export_one,
    export_tree,
    ingest,
    make_repo,
    residue,
    rewrite_member,
)
from conftest import CORPUS

from packagers.aip import AIPPackager
from packagers.base import Mode, Operation, Outcome
from packagers.errors import PackageError, PackageValidationError
from packagers.params import PackageParameters
from server import models as m
from server.context import Repository
from server.errors import PermissionDenied, UnknownMetadataField
from server.passwords import verify_password
from server.services import metadata, objects, people

SCHEMAS = CORPUS / "schemas"


@pytest.fixture
def rich(repo: Repository) -> Rich:
    return build_rich_site(repo)


def mets_of(data: bytes) -> str:
    return zipfile.ZipFile(io.BytesIO(data)).read("mets.xml").decode("utf-8")


def handle_of(repo: Repository, object_id: uuid.UUID) -> str:
    with repo.context(write=False) as ctx:
        obj = ctx.session.get(m.DSpaceObject, object_id)
        assert obj is not None and obj.handle
        return obj.handle


def person_id(repo: Repository, email: str) -> uuid.UUID:
    with repo.context(write=False) as ctx:
        person = people.by_email(ctx, email)
        assert person is not None
        return person.id


def target_with_site(repo: Repository, rich: Rich, tmp_path: Path, **export: str
                     ) -> Repository:
    """Another repository holding the people and groups of ``repo`` (site AIP, -r -k)."""
    site = tmp_path / "site.zip"
    site.write_bytes(export_one(repo, rich.site, **export))
    target = make_repo(tmp_path / "target")
    ingest(target, site, mode=Mode.RESTORE, keep=True)
    return target


def holder(target: Repository) -> uuid.UUID:
    with target.context(system=True) as ctx:
        return objects.create_collection(
            ctx, objects.create_community(ctx, None, "Holder"), "Holder").id


# ---------------------------------------------------------------------------------------
# Ingest options


def test_create_metadata_fields(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    aip = tmp_path / "article.zip"
    aip.write_bytes(export_one(repo, rich.article))
    target = target_with_site(repo, rich, tmp_path)
    parent = holder(target)
    before = residue(target)
    with pytest.raises(UnknownMetadataField) as info:
        ingest(target, aip, mode=Mode.RESTORE, parent=parent, createMetadataFields="false")
    assert "local.grant" in str(info.value)
    assert residue(target) == before
    ingest(target, aip, mode=Mode.RESTORE, parent=parent)  # default: true
    with target.context(write=False) as ctx:
        assert metadata.get_field(ctx, "local.grant").name == "local.grant"
        item = ctx.session.get(m.Item, rich.article)
        assert metadata.first(item, "local.grant") == "ERC-123"  # type: ignore[arg-type]
    target.dispose()


def test_a_missing_schema_always_fails(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    aip = tmp_path / "article.zip"
    aip.write_bytes(rewrite_member(
        export_one(repo, rich.article), "mets.xml",
        lambda body: body.replace(b'mdschema="local"', b'mdschema="nosuchschema"')))
    target = target_with_site(repo, rich, tmp_path)
    with pytest.raises(UnknownMetadataField) as info_:
        ingest(target, aip, mode=Mode.RESTORE, parent=holder(target))
    assert "Unknown Metadata Schema encountered (nosuchschema)" in info_.value.message
    target.dispose()


# ---------------------------------------------------------------------------------------
# Export options


def test_filter_bundles_excludes(repo: Repository, rich: Rich) -> None:
    mets = mets_of(export_one(repo, rich.article, filterBundles="TEXT, EMPTY"))
    assert 'USE="TEXT"' not in mets and 'USE="EMPTY"' not in mets
    assert 'USE="ORIGINAL"' in mets and 'USE="LICENSE"' in mets
    full = mets_of(export_one(repo, rich.article))
    assert 'USE="TEXT"' in full and 'USE="EMPTY"' in full


def test_filter_bundles_plus_includes_only_and_licences_travel_as_metadata(
        repo: Repository, rich: Rich, tmp_path: Path) -> None:
    data = export_one(repo, rich.article, filterBundles="+ORIGINAL")
    archive = zipfile.ZipFile(io.BytesIO(data))
    mets = archive.read("mets.xml").decode()
    assert 'USE="LICENSE"' not in mets and 'USE="TEXT"' not in mets
    assert 'xlink:href="metadata_1"' in mets and 'OTHERMDTYPE="DSpaceDepositLicense"' in mets
    assert archive.read("metadata_1") == b"You grant us the right ...\n"
    # a restore brings the deposit licence back as the LICENSE bundle
    aip = tmp_path / "a.zip"
    aip.write_bytes(data)
    target = target_with_site(repo, rich, tmp_path)
    ingest(target, aip, mode=Mode.RESTORE, parent=holder(target))
    with target.context(write=False) as ctx:
        item = ctx.session.get(m.Item, rich.article)
        assert item is not None
        assert [b.name for b in item.bundles] == ["ORIGINAL", "LICENSE"]
        licence = objects.get_bundle(item, "LICENSE")
        assert licence is not None and licence.bitstreams[0].name == "license.txt"
    target.dispose()


def test_include_bundles(repo: Repository, rich: Rich) -> None:
    mets = mets_of(export_one(repo, rich.article, includeBundles="ORIGINAL,TEXT"))
    assert 'USE="ORIGINAL"' in mets and 'USE="TEXT"' in mets
    assert 'USE="LICENSE"' not in mets and 'USE="EMPTY"' not in mets
    with pytest.raises(PackageError):
        export_one(repo, rich.article, includeBundles="ORIGINAL", filterBundles="TEXT")


def test_unauthorized(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    bob = person_id(repo, "bob@example.org")  # may read the item, not data.csv
    with pytest.raises(PermissionDenied) as info:
        export_one(repo, rich.article, actor=bob)
    assert "data.csv" in str(info.value)
    skipped = zipfile.ZipFile(io.BytesIO(export_one(repo, rich.article, actor=bob,
                                                    unauthorized="skip")))
    assert not any(n.endswith(".csv") for n in skipped.namelist())
    assert str(rich.big_policy_bitstream) not in skipped.read("mets.xml").decode()
    zero_data = export_one(repo, rich.article, actor=bob, unauthorized="zero")
    zeroed = zipfile.ZipFile(io.BytesIO(zero_data))
    csv = [i for i in zeroed.infolist() if i.filename.endswith(".csv")]
    assert len(csv) == 1 and csv[0].file_size == 0
    mets = zeroed.read("mets.xml").decode()
    assert f'ID="bitstream_{rich.big_policy_bitstream}"' in mets
    # a restore leaves the placeholder out, with a warning
    aip = tmp_path / "zero.zip"
    aip.write_bytes(zero_data)
    target = target_with_site(repo, rich, tmp_path)
    result = ingest(target, aip, mode=Mode.RESTORE, parent=holder(target))
    assert any("placeholder" in w for w in result.warnings)
    with target.context(write=False) as ctx:
        assert ctx.session.get(m.Bitstream, rich.big_policy_bitstream) is None
    target.dispose()


def test_updated_after(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    with repo.context(system=True) as ctx:
        times = {rich.article: datetime(2020, 1, 1), rich.letter: datetime(2024, 6, 1)}
        objects.set_last_modified(ctx, times)
    written = {p.name for p in export_tree(repo, rich.site, tmp_path / "inc",
                                           updatedAfter="2023-01-01T00:00:00Z")}
    everything = {p.name for p in export_tree(repo, rich.site, tmp_path / "all")}
    article = f"ITEM@{handle_of(repo, rich.article).replace('/', '-')}.zip"
    letter = f"ITEM@{handle_of(repo, rich.letter).replace('/', '-')}.zip"
    assert article in everything and article not in written
    assert letter in written
    containers = {n for n in everything if not n.startswith("ITEM@")}
    assert containers <= written


def test_passwords(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    without = export_one(repo, rich.site)
    with_hashes = export_one(repo, rich.site, passwords="true")
    assert b"PasswordHash" not in zipfile.ZipFile(io.BytesIO(without)).read("mets.xml")
    mets = zipfile.ZipFile(io.BytesIO(with_hashes)).read("mets.xml")
    assert b'<PasswordHash digest="SHA-512" salt="' in mets
    for data, expected in ((without, False), (with_hashes, True)):
        aip = tmp_path / "site.zip"
        aip.write_bytes(data)
        target = make_repo(tmp_path / f"target-{expected}")
        ingest(target, aip, mode=Mode.RESTORE, keep=True)
        with target.context(write=False) as ctx:
            alice = people.by_email(ctx, "alice@example.org")
            assert alice is not None
            assert verify_password(alice.password_hash, "wonderland") is expected
        target.dispose()


def test_manifest_only_export(repo: Repository, rich: Rich) -> None:
    packager = AIPPackager()
    params = PackageParameters([("manifestOnly", "true")])
    with packager.disseminate(Operation(repo, system=True), rich.article, params) as package:
        data = b"".join(package.iter_bytes())
        assert package.mime_type == "text/xml" and package.file_name.endswith(".xml")
        assert package.size == len(data)
    text = data.decode()
    assert text.startswith("<?xml")
    assert f"/bitstreams/{rich.big_policy_bitstream}/download" in text
    assert "<binData>" in text  # the deposit licence travels inside the manifest
    with packager.disseminate(Operation(repo, system=True), rich.theses, params) as package:
        collection = b"".join(package.iter_bytes()).decode()
    assert ".xml\"/>" in collection and ".zip\"" not in collection


def test_manifest_only_ingest_uses_content_the_repository_has(
        repo: Repository, admin: m.EPerson, rich: Rich, tmp_path: Path) -> None:
    manifest = tmp_path / "article.xml"
    manifest.write_bytes(export_one(repo, rich.article, manifestOnly="true"))
    keys = sorted(repo.store.iter_keys())
    inbox = holder(repo)
    with pytest.raises(PackageValidationError):  # without the option it is not a package
        ingest(repo, manifest, mode=Mode.SUBMIT, parent=inbox, actor=admin.id)
    copy = ingest(repo, manifest, mode=Mode.SUBMIT, parent=inbox, actor=admin.id,
                  manifestOnly="true").objects[0]
    with repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, copy.uuid)
        assert item is not None
        original = objects.get_bundle(item, "ORIGINAL")
        assert original is not None and [b.name for b in original.bitstreams] == [
            "Dissertation Müller.pdf", "data.csv"]
    new_keys = set(repo.store.iter_keys()) - set(keys)
    assert len(new_keys) == 1  # only the new deposit licence; the files were reused
    target = target_with_site(repo, rich, tmp_path)
    with pytest.raises(PackageValidationError) as info:
        ingest(target, manifest, mode=Mode.RESTORE, parent=holder(target),
               manifestOnly="true")
    assert "never downloads" in info.value.message
    target.dispose()


def test_dmd_on_export_and_ingest(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    dim_only = mets_of(export_one(repo, rich.article, dmd="DIM"))
    assert 'MDTYPE="MODS"' not in dim_only and 'OTHERMDTYPE="DIM"' in dim_only
    mods_only = mets_of(export_one(repo, rich.article, dmd="MODS"))
    assert 'OTHERMDTYPE="DIM"' not in mods_only.split("<amdSec")[0]
    both = mets_of(export_one(repo, rich.article))
    assert both.index('MDTYPE="MODS"') < both.index('OTHERMDTYPE="DIM"')
    aip = tmp_path / "article.zip"
    aip.write_bytes(export_one(repo, rich.article))
    target = target_with_site(repo, rich, tmp_path)
    parent = holder(target)
    ingest(target, aip, mode=Mode.RESTORE, parent=parent, dmd="MODS")
    with target.context(write=False) as ctx:
        item = ctx.session.get(m.Item, rich.article)
        assert item is not None
        titles = metadata.values(item, "dc.title")
        # MODS carries the value but not its language, and no local fields
        assert [t.value for t in titles] == ["Quantenfeldtheorie — eine Einführung"]
        assert titles[0].language is None
        assert metadata.values(item, "local.grant") == []
        assert [v.value for v in metadata.values(item, "dc.contributor.author")] == [
            "Müller, Jürgen", "Ødegård, Åse"]
    target.dispose()


def test_validate_on_export(repo: Repository, rich: Rich) -> None:
    with pytest.raises(PackageValidationError) as info:
        export_one(repo, rich.article, validate="true")
    assert "packagers.schemas_dir" in info.value.message
    export_one(repo, rich.article)  # the default checks structure only when no schemas
    export_one(repo, rich.article, validate="false")


@pytest.mark.skipif(not SCHEMAS.is_dir(), reason="corpus schemas not available")
def test_validate_with_local_schemas(repo: Repository, rich: Rich, tmp_path: Path) -> None:
    schema_repo = make_repo(tmp_path / "schemas", suffix="schemas",
                            **{"packagers.schemas_dir": str(SCHEMAS)})
    source = build_rich_site(schema_repo)
    for target in (source.site, source.top, source.theses, source.article, source.cc_item,
                   source.withdrawn):
        export_one(schema_repo, target, validate="true")  # METS, XLink, MODS all valid
    # a manifest with a schema error is refused on ingest when validating, named by line
    broken = rewrite_member(export_one(schema_repo, source.article), "mets.xml",
                            lambda body: body.replace(b'TYPE="DSpace Object Contents"',
                                                      b'TYPE="DSpace Object Contents" BOGUS="1"'))
    aip = tmp_path / "broken.zip"
    aip.write_bytes(broken)
    with pytest.raises(PackageValidationError) as info:
        ingest(schema_repo, aip, mode=Mode.REPLACE, validate="true")
    assert "not valid METS" in info.value.message
    assert any(d.line for d in info.value.details if "BOGUS" in d.message)
    # ... and accepted without validation (the default)
    assert ingest(schema_repo, aip, mode=Mode.REPLACE).objects[0].outcome is Outcome.REPLACED
    schema_repo.dispose()


def test_validate_explicit_on_ingest_without_schemas(repo: Repository, rich: Rich,
                                                     tmp_path: Path) -> None:
    aip = tmp_path / "article.zip"
    aip.write_bytes(export_one(repo, rich.article))
    with pytest.raises(PackageValidationError) as info:
        ingest(repo, aip, mode=Mode.REPLACE, validate="true")
    assert "schemas" in info.value.message


def test_in_effect_is_written_only_against_an_as_of_time(repo: Repository, rich: Rich) -> None:
    assert "in-effect" not in mets_of(export_one(repo, rich.article))
    packager = AIPPackager()
    op = Operation(repo, system=True, now=datetime(2032, 1, 1))
    with packager.disseminate(op, rich.article, PackageParameters()) as package:
        mets = mets_of(b"".join(package.iter_bytes()))
    assert 'in-effect="false" end-date="2031-12-31"' in mets  # data.csv's policy ended
    assert 'in-effect="true"' in mets


def test_sniff_recognises_aips_and_zips_of_aips(repo: Repository, rich: Rich,
                                                tmp_path: Path) -> None:
    from packagers.base import PackageSource

    aip = tmp_path / "one.bin"
    aip.write_bytes(export_one(repo, rich.letter))
    tree = export_tree(repo, rich.letters, tmp_path / "tree")
    bundle = tmp_path / "many.bin"
    with zipfile.ZipFile(bundle, "w") as archive:
        for path in tree:
            archive.writestr(path.name, path.read_bytes())
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("mets.xml", "<mets PROFILE='DSpace METS SIP Profile 1.0'/>")
    assert AIPPackager.sniff(PackageSource(aip))
    assert AIPPackager.sniff(PackageSource(bundle))
    assert not AIPPackager.sniff(PackageSource(other))
    assert not AIPPackager.sniff(PackageSource(tmp_path / "tree"))
    (tmp_path / "text.txt").write_text("hello")
    assert not AIPPackager.sniff(PackageSource(tmp_path / "text.txt"))
