"""The AIP packager's central promise: a site exported with -a and restored into an empty
repository with -r -a -f is the same site - every value, flag, policy, handle, UUID and
byte - and exports again to byte-identical AIPs.  Also: determinism across time zones and
repeated exports, exact sizes and byte ranges, and the whole hierarchy as one zip."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from aip_support import (
    add_admin,
    build_rich_site,
    count,
    export_one,
    export_tree,
    ingest,
    make_repo,
    site_id,
    snapshot,
    stored_bytes,
)
from lxml import etree

from packagers.aip import AIPPackager, mets
from packagers.base import Mode, Operation, Outcome
from packagers.errors import PackageError, PackageValidationError, ParentMissing
from packagers.params import PackageParameters
from server import models as m
from server.cli import main
from server.config import Config
from server.context import Repository
from server.services import authz, objects

ROOT = Path(__file__).resolve().parents[1]


def write_config(config: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.values), encoding="utf-8")
    return path


def davpack(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def test_full_site_round_trip_through_the_command_line(repo: Repository, admin: m.EPerson,
                                                       tmp_path: Path) -> None:
    rich = build_rich_site(repo)
    source_cfg = write_config(repo.config, tmp_path / "source.yaml")
    first = tmp_path / "first"
    first.mkdir()
    log = tmp_path / "export.jsonl"
    assert davpack(source_cfg, "packager", "-d", "-a", "-t", "AIP", "-e", "admin@example.org",
                   "-i", "123456789/0", "-o", "passwords", "--log-json", str(log),
                   str(first / "site.zip")) == 0
    exported = sorted(p.name for p in first.iterdir())
    # site, 3 communities, 3 collections, 8 archived items (the withdrawn one included)
    assert len(exported) == 15
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {line["outcome"] for line in lines} == {"exported"}
    assert {line["type"] for line in lines} == {"SITE", "COMMUNITY", "COLLECTION", "ITEM"}
    with repo.context(write=False) as ctx:
        withdrawn = ctx.session.get(m.Item, rich.withdrawn)
        assert withdrawn is not None
        assert f"ITEM@{withdrawn.handle.replace('/', '-')}.zip" in exported

    # A fresh installation with its initial administrator (as DSpace's instructions say).
    target = make_repo(tmp_path / "target")
    add_admin(target)
    target_cfg = write_config(target.config, tmp_path / "target.yaml")
    assert davpack(target_cfg, "packager", "-r", "-a", "-f", "-u", "-t", "AIP", "-e",
                   "admin@example.org", "-i", "123456789/0", str(first / "site.zip")) == 0

    second = tmp_path / "second"
    second.mkdir()
    assert davpack(target_cfg, "packager", "-d", "-a", "-t", "AIP", "-i", "123456789/0",
                   "-o", "passwords", str(second / "site.zip")) == 0
    assert sorted(p.name for p in second.iterdir()) == exported
    for name in exported:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    before, after = snapshot(repo), snapshot(target)
    assert before.keys() == after.keys()
    for key in before:
        assert before[key] == after[key], key
    assert stored_bytes(repo) == stored_bytes(target)
    # the features really were there
    assert before[str(rich.withdrawn)]["withdrawn"] is True
    assert before[str(rich.hidden)]["discoverable"] is False
    assert before[str(rich.mapped)]["mapped"] == [str(rich.journals)]
    assert before[str(rich.reverse_mapped)]["owner"] == rich.journals
    assert before[str(rich.reverse_mapped)]["mapped"] == [str(rich.theses)]
    assert before["relationships"]
    assert any(r["type"] == "GROUP" and r["name"] == f"COLLECTION_{rich.theses}_SUBMIT"
               for k, r in before.items() if k != "relationships")
    target.dispose()


def test_restore_into_the_same_repository_with_force_replace_is_idempotent(
        repo: Repository, tmp_path: Path) -> None:
    rich = build_rich_site(repo)
    first = tmp_path / "first"
    export_tree(repo, rich.site, first, passwords="true")
    before = snapshot(repo)
    result = ingest(repo, first / "SITE@123456789-0.zip", mode=Mode.REPLACE, recursive=True)
    assert {o.outcome.value for o in result.objects} == {"replaced"}
    second = tmp_path / "second"
    export_tree(repo, rich.site, second, passwords="true")
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    after = snapshot(repo)
    for key in before:
        assert before[key] == after[key], key


def test_exports_are_deterministic(repo: Repository, tmp_path: Path) -> None:
    rich = build_rich_site(repo)
    one = export_tree(repo, rich.site, tmp_path / "one")
    two = export_tree(repo, rich.site, tmp_path / "two")
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    assert export_one(repo, rich.article) == export_one(repo, rich.article)


def _set_time(repo: Repository, item_id: object, when: datetime) -> None:
    with repo.context(system=True) as ctx:
        objects.set_last_modified(ctx, {item_id: when})  # type: ignore[dict-item]


def test_zip_times_are_utc_whatever_the_time_zone(repo: Repository, tmp_path: Path) -> None:
    rich = build_rich_site(repo)
    # 02:30 UTC on 10 March is still 9 March in New York
    _set_time(repo, rich.article, datetime(2024, 3, 10, 2, 30, 44, 123456))
    cfg = write_config(repo.config, tmp_path / "c.yaml")
    with repo.context(write=False) as ctx:
        handle = ctx.session.get(m.Item, rich.article).handle  # type: ignore[union-attr]
    outputs = {}
    for zone in ("UTC", "America/New_York", "Asia/Kathmandu"):
        out = tmp_path / f"{zone.replace('/', '_')}.zip"
        env = dict(os.environ, TZ=zone)
        code = ("import sys; from server.cli import main; sys.exit(main(sys.argv[1:]))")
        subprocess.run([sys.executable, "-c", code, "--config", str(cfg), "packager", "-d",
                        "-t", "AIP", "-i", handle, str(out)], check=True, env=env, cwd=ROOT)
        outputs[zone] = out.read_bytes()
    assert len(set(outputs.values())) == 1
    archive = zipfile.ZipFile(io.BytesIO(outputs["UTC"]))
    assert {info.date_time for info in archive.infolist()} == {(2024, 3, 10, 2, 30, 44)}
    assert b'LASTMODDATE="2024-03-10T02:30:44Z"' in archive.read("mets.xml")
    assert b'lastModified="2024-03-10T02:30:44.123456Z"' in archive.read("mets.xml")


def test_container_aips_carry_the_fixed_zip_time(repo: Repository) -> None:
    rich = build_rich_site(repo)
    archive = zipfile.ZipFile(io.BytesIO(export_one(repo, rich.theses)))
    assert {i.date_time for i in archive.infolist()} == {(2002, 11, 4, 0, 0, 0)}


def test_single_package_has_exact_size_ranges_and_etag(repo: Repository) -> None:
    rich = build_rich_site(repo)
    packager = AIPPackager()
    with packager.disseminate(Operation(repo, system=True), rich.article,
                              PackageParameters()) as package:
        data = b"".join(package.iter_bytes())
        assert package.size == len(data)
        assert package.mime_type == "application/zip"
        assert package.file_name.startswith("ITEM@123456789-")
        assert package.etag
        for start, end in ((0, 1), (10, 5000), (len(data) - 7, len(data)), (123, None)):
            assert b"".join(package.iter_bytes(start, end)) == data[start:end]
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.namelist()[0] == "mets.xml"
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())


def test_whole_hierarchy_as_one_zip(repo: Repository, tmp_path: Path) -> None:
    """all=true: one zip whose members are the AIPs -a writes, with an exact size; it
    restores like the directory does."""
    rich = build_rich_site(repo)
    tree = export_tree(repo, rich.site, tmp_path / "tree")
    packager = AIPPackager()
    with packager.disseminate(Operation(repo, system=True), rich.site,
                              PackageParameters([("all", "true")])) as package:
        assert package.size is not None
        data = b"".join(package.iter_bytes())
        assert len(data) == package.size
        middle = len(data) // 2
        assert b"".join(package.iter_bytes(middle, middle + 4096)) == data[middle:middle + 4096]
        assert package.file_name == "SITE@123456789-0-all.zip"
    outer = zipfile.ZipFile(io.BytesIO(data))
    assert outer.testzip() is None  # every member's CRC-32 was computed without reading it
    assert sorted(outer.namelist()) == sorted(p.name for p in tree)
    for path in tree:
        assert outer.read(path.name) == path.read_bytes()
    upload = tmp_path / "upload.zip"
    upload.write_bytes(data)
    target = make_repo(tmp_path / "target")
    result = ingest(target, upload, mode=Mode.REPLACE, recursive=True)
    assert len(result.objects) == len(tree)
    assert snapshot(target)[str(rich.article)] == snapshot(repo)[str(rich.article)]
    target.dispose()


def test_directory_source_finds_its_root(repo: Repository, tmp_path: Path) -> None:
    rich = build_rich_site(repo)
    export_tree(repo, rich.theses, tmp_path / "theses")
    site_aip = tmp_path / "site.zip"
    site_aip.write_bytes(export_one(repo, rich.site))
    target = make_repo(tmp_path / "target")
    with target.context(system=True) as ctx:
        community = objects.create_community(ctx, None, "Elsewhere")
        parent = community.id
    # Without the people and groups the collection names, nothing is restored ...
    with pytest.raises(PackageValidationError) as info:
        ingest(target, tmp_path / "theses", mode=Mode.RESTORE, recursive=True, parent=parent,
               skipIfParentMissing="true")
    assert "alice@example.org" in str(info.value) and "Editors" in str(info.value)
    assert count(target, m.Item) == 0
    # ... the Site AIP brings them (-r -k keeps the site and its built-in groups).
    ingest(target, site_aip, mode=Mode.RESTORE, keep=True)
    # the collection lists an item owned by a collection that is not restored here
    with pytest.raises(ParentMissing):
        ingest(target, tmp_path / "theses", mode=Mode.RESTORE, recursive=True, parent=parent)
    result = ingest(target, tmp_path / "theses", mode=Mode.RESTORE, recursive=True,
                    parent=parent, skipIfParentMissing="true")
    kinds = [(o.type, o.outcome) for o in result.objects]
    assert kinds[0] == (m.ObjectType.COLLECTION, Outcome.CREATED)
    assert kinds.count((m.ObjectType.ITEM, Outcome.CREATED)) == 3  # the ones it owns
    skipped = [o for o in result.objects if o.outcome is Outcome.SKIPPED]
    assert len(skipped) == 1 and "Could not find a parent" in (skipped[0].reason or "")
    with target.context(write=False) as ctx:
        theses = ctx.session.get(m.Collection, rich.theses)
        assert theses is not None and theses.community_id == parent
        # the site AIP could not link Reviewers to the collection's admin group (it did not
        # exist yet); the collection's AIP did
        reviewers = authz.group_by_name(ctx, "Reviewers")
        assert reviewers is not None
        assert f"COLLECTION_{rich.theses}_ADMIN" in [g.name for g in reviewers.subgroups]
    target.dispose()


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Chatham"])
def test_in_process_time_zone_does_not_matter(repo: Repository, zone: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    rich = build_rich_site(repo)
    reference = export_one(repo, rich.article)
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert export_one(repo, rich.article) == reference
    finally:
        monkeypatch.undo()
        time.tzset()
    assert site_id(repo) == rich.site


# The embedded metadata documents are written by packagers.aip.mets.Node, byte for byte as
# lxml (which wrote them before) serialises the same element after etree.indent: AIPs
# made before and after must not differ.
AWKWARD = ["plain", "", " ", "  lead and trail  ", "a&b<c>d\"e'f", "line\nbreak", "cr\r\nlf",
           "tab\there", "]]>", "\u00a0", "\x85", "\x7f", "caf\u00e9 \u4e2d\u6587 \U0001f600",
           "&amp; already escaped", "\u2028\u2029"]


def _as_lxml(node: mets.Node, parent: object | None = None) -> object:
    attrs = dict(node.attrs)
    el = (etree.Element(node.tag, attrs, nsmap=node.nsmap) if parent is None
          else etree.SubElement(parent, node.tag, attrs))  # type: ignore[arg-type]
    el.text = node.text
    for child in node.children:
        _as_lxml(child, el)
    return el


@pytest.mark.parametrize("value", AWKWARD)
def test_embedded_documents_serialise_exactly_as_lxml(value: str) -> None:
    ns, other = "urn:example:a", "urn:example:b"
    for nsmap in ({"a": ns, "b": other}, {None: ns, "b": other}):
        root = mets.element(f"{{{ns}}}root", {"plain": value, f"{{{other}}}q": value},
                            nsmap=nsmap)
        mets.sub(root, f"{{{ns}}}leaf", {"x": value, "skipped": None}, value)
        mets.sub(root, f"{{{ns}}}empty")
        parent = mets.sub(root, f"{{{other}}}parent", None, value)  # text beside children
        mets.sub(mets.sub(parent, f"{{{ns}}}inner"), f"{{{other}}}deep", {"y": value}, value)
        mets.sub(parent, f"{{{ns}}}last", None, value)
        expected = _as_lxml(root)
        etree.indent(expected, space="  ")
        assert root.serialise() == etree.tostring(expected, encoding="unicode")


def test_embedded_document_refuses_characters_xml_cannot_carry() -> None:
    root = mets.element("{urn:example:a}root", nsmap={"a": "urn:example:a"})
    with pytest.raises(PackageError):
        mets.sub(root, "{urn:example:a}leaf", {"x": "bell\x07"})
    with pytest.raises(PackageError):
        mets.sub(root, "{urn:example:a}leaf", None, "lone \ud800 surrogate")
