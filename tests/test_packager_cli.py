"""``davpack packager`` as DSpace administrators know it: every example command of
seeds/001 ("AIP Backup and Restore") runs with ``davpack`` in place of
``[dspace]/bin/dspace``; plus help, listings, --log-json, exit codes and
``davpack schemas fetch``."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aip_support import make_repo
from conftest import CORPUS

from server import models as m
from server.cli import main
from server.context import Repository
from server.services import authz, handles, metadata, objects, people

SEED = sorted((CORPUS.parent / "seeds").glob("001_*.txt"))
PLACEHOLDERS = {
    "<eperson>": "admin@myu.edu", "<handle>": "4321/4567", "<parent-handle>": "4321/12",
    "<AIP-file-path>": "aip4567.zip", "<site-handle-prefix>": "4321",
    "/full/path/to/your/site-aip.zip": "site-aip.zip", "[option1-value]": "ignoreParent=false",
    "[option2-value]": "createMetadataFields=false",
}


def seed_commands() -> list[str]:
    """The packager commands of the seed's code blocks, as written there."""
    if not SEED:
        return []
    commands: list[str] = []
    inside = False
    for line in SEED[0].read_text("utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if inside and re.search(r"bin/dspace packager", line, re.IGNORECASE):
            commands.append(line.strip())
    return commands


def as_davpack(command: str) -> list[str]:
    command = re.sub(r"\[dspace\]/bin/dspace", "davpack", command, flags=re.IGNORECASE)
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    words = shlex.split(command)
    if "<file-path>" in words:
        words[words.index("<file-path>")] = "aip.zip" if "-d" in words else "aip4567.zip"
    assert words[0] == "davpack" and not any("<" in w for w in words), words
    return words[1:]


def config_file(repo: Repository, path: Path) -> Path:
    path.write_text(yaml.safe_dump(repo.config.values), encoding="utf-8")
    return path


def build_source(repo: Repository) -> None:
    """Handles as in the seed: community 4321/4567 (a collection and an item inside) and
    community 4321/12; administrator admin@myu.edu."""
    with repo.context(system=True) as ctx:
        admin = people.create_person(ctx, "admin@myu.edu", password="pw")
        people.add_member(ctx, authz.admin_group(ctx), admin)
        community = objects.create_community(ctx, None, "Community 4567", handle="4321/4567")
        collection = objects.create_collection(ctx, community, "Collection",
                                               handle="4321/4568")
        item = objects.create_item(ctx, collection)
        metadata.add(ctx, item, "dc.title", "An item")
        import io

        content = ctx.add_content(io.BytesIO(b"content"), name="f.txt")
        objects.add_bitstream(ctx, objects.create_bundle(ctx, item, "ORIGINAL"), content,
                              name="f.txt", mime_type="text/plain")
        objects.install(ctx, item, handle="4321/4569")
        objects.create_community(ctx, None, "Community 12", handle="4321/12")


def build_target(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        admin = people.create_person(ctx, "admin@myu.edu", password="pw")
        people.add_member(ctx, authz.admin_group(ctx), admin)
        objects.create_community(ctx, None, "Community 12", handle="4321/12")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(config of the source repository, directory of the packages the examples read)."""
    base = tmp_path_factory.mktemp("cli-source")
    repo = make_repo(base / "repo", suffix="cli_source", **{"site.handle_prefix": "4321"})
    build_source(repo)
    cfg = config_file(repo, base / "source.yaml")
    packages = base / "packages"
    packages.mkdir()
    assert main(["--config", str(cfg), "packager", "-d", "-a", "-t", "AIP", "-i", "4321/0",
                 str(packages / "site-aip.zip")]) == 0
    assert main(["--config", str(cfg), "packager", "-d", "-a", "-t", "AIP", "-i",
                 "4321/4567", str(packages / "aip4567.zip")]) == 0
    shutil.copy(packages / "aip4567.zip", packages / "community-aip.zip")
    yield cfg, packages
    repo.dispose()


@pytest.mark.skipif(not SEED, reason="seeds/001 not available")
@pytest.mark.parametrize("command", seed_commands())
def test_seed_example(command: str, source: tuple[Path, Path], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    args = as_davpack(command)
    source_cfg, packages = source
    if "-d" in args:
        monkeypatch.chdir(tmp_path)
        assert main(["--config", str(source_cfg), *args]) == 0
        written = tmp_path / args[-1]
        with zipfile.ZipFile(written) as archive:
            assert b"mets_aip_1_0.xsd" in archive.read("mets.xml")
        if "-a" in args:
            assert len(list(tmp_path.glob("*.zip"))) >= 3  # children beside it
        return
    target = make_repo(tmp_path / "target", suffix="cli_target",
                       **{"site.handle_prefix": "4321"})
    build_target(target)
    target_cfg = config_file(target, tmp_path / "target.yaml")
    monkeypatch.chdir(packages)
    log = tmp_path / "log.jsonl"
    assert main(["--config", str(target_cfg), *args, "--log-json", str(log)]) == 0, args
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines and all(line["outcome"] in ("created", "replaced", "skipped")
                         for line in lines)
    with target.context(write=False) as ctx:
        assert handles.resolve(ctx, "4321/12") is not None
        items = [i for i in ctx.session.query(m.Item).all() if not i.is_template]
        if "-r" in args:  # restored under its own handle; its children only with -a
            assert isinstance(handles.resolve(ctx, "4321/4567"), m.Community)
            restored = handles.resolve(ctx, "4321/4569")
            if "-a" in args:
                assert isinstance(restored, m.Item)
                assert metadata.first(restored, "dc.title") == "An item"
            else:
                assert restored is None
        else:  # submitted: a new community (new handle), its children only with -a
            copies = [c for c in ctx.session.query(m.Community).all()
                      if metadata.first(c, "dc.title") == "Community 4567"]
            assert len(copies) == 1 and copies[0].handle != "4321/4567"
            assert bool(items) is ("-a" in args)
            assert all(i.handle != "4321/4569" for i in items)
    target.dispose()


def test_the_seed_has_the_examples() -> None:
    if not SEED:
        pytest.skip("seeds/001 not available")
    commands = seed_commands()
    assert len(commands) >= 20
    assert {c.split()[2] for c in commands} >= {"-d", "-s", "-r"}


# ---------------------------------------------------------------------------------------
# The rest of the command line


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["packager", "-h", "-t", "AIP"]) == 0
    out = capsys.readouterr().out
    for option in ("createMetadataFields", "skipIfParentMissing", "updatedAfter",
                   "-r, --restore", "--log-json"):
        assert option in out
    assert main(["packager", "-d", "-t", "AIP", "-i", "1/2"]) == 2
    assert "package file" in capsys.readouterr().err
    assert main(["packager", "-d", "-r", "-t", "AIP", str(tmp_path / "x.zip")]) == 2
    assert main(["packager", "-r", "-k", "-f", "-t", "AIP", str(tmp_path / "x.zip")]) == 2


def test_packagers_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["packagers", "list"]) == 0
    text = capsys.readouterr().out
    assert "AIP (aliases: DSpace AIP)" in text
    assert "-o ignoreHandle  (ingest; default submit: true; restore: false; replace: false)" \
        in text
    assert main(["packagers", "list", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    aip = next(r for r in records if r["name"] == "AIP")
    options = {o["name"]: o for o in aip["options"]}
    assert set(options) >= {"createMetadataFields", "filterBundles", "ignoreHandle",
                            "ignoreParent", "includeBundles", "manifestOnly", "passwords",
                            "skipIfParentMissing", "unauthorized", "updatedAfter", "validate"}
    assert options["validate"]["defaults"] == {"disseminate": "true", "submit": "false",
                                               "restore": "false", "replace": "false"}
    assert options["createMetadataFields"]["default"] == "true"


def test_failure_exit_code_log_and_details(repo: Repository, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_file(repo, tmp_path / "c.yaml")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("readme.txt", "not an AIP")
    log = tmp_path / "log.jsonl"
    assert main(["--config", str(cfg), "packager", "-r", "-t", "AIP", "--log-json", str(log),
                 str(bad)]) == 1
    err = capsys.readouterr().err
    assert "No METS Manifest found" in err and "bad.zip" in err
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["outcome"] == "failed" and "No METS Manifest" in line["reason"]
    # an unknown option is refused with the list of known ones
    assert main(["--config", str(cfg), "packager", "-r", "-t", "AIP", "-o", "nosuch=1",
                 str(bad)]) == 1
    assert "ignoreHandle" in capsys.readouterr().err
    # an unknown packager lists the installed ones
    assert main(["--config", str(cfg), "packager", "-r", "-t", "NOPE", str(bad)]) == 1
    assert "AIP" in capsys.readouterr().err


def test_eperson_must_exist_and_operations_run_as_them(repo: Repository, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    cfg = config_file(repo, tmp_path / "c.yaml")
    assert main(["--config", str(cfg), "packager", "-d", "-t", "AIP", "-e", "nobody@x.org",
                 "-i", repo.site_handle, str(tmp_path / "s.zip")]) == 1
    assert "nobody@x.org" in capsys.readouterr().err
    with repo.context(system=True) as ctx:
        people.create_person(ctx, "plain@example.org")
    # the site AIP lists every person: administrators only
    assert main(["--config", str(cfg), "packager", "-d", "-t", "AIP", "-e",
                 "plain@example.org", "-i", repo.site_handle, str(tmp_path / "s.zip")]) == 1
    assert "administrators" in capsys.readouterr().err
    assert main(["--config", str(cfg), "packager", "-d", "-t", "AIP", "-i", repo.site_handle,
                 str(tmp_path / "s.zip")]) == 0


def test_schemas_fetch_fails_cleanly_without_network(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    import requests

    def offline(url: str, **kw: object) -> None:
        raise requests.ConnectionError(f"Failed to resolve host for {url}")

    monkeypatch.setattr(requests, "get", offline)
    target = tmp_path / "schemas"
    assert main(["schemas", "fetch", "--dir", str(target)]) == 1
    err = capsys.readouterr().err
    assert "could not download" in err and "mets.xsd" in err and "catalog.txt" in err
    assert not (target / "catalog.txt").exists()
    assert main(["schemas", "fetch"]) == 1  # no directory configured
    assert "schemas_dir" in capsys.readouterr().err


@pytest.mark.skipif(not (CORPUS / "schemas").is_dir(), reason="corpus schemas not available")
def test_schemas_fetch_writes_a_catalog_validation_uses(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """The download itself is not tested (no network): the responses are local files."""
    import requests

    from packagers.aip import validation

    local = {"xml.xsd": CORPUS / "schemas/pypi-eark-validator-1.1.3/xml.xsd",
             "xlink.xsd": CORPUS / "schemas/metsrw/xlink.xsd",
             "mets.xsd": CORPUS / "schemas/metsrw/mets.xsd",
             "mods.xsd": CORPUS / "schemas/archivematica-sampledata/mods.xsd"}

    class Response:
        def __init__(self, body: bytes) -> None:
            self.content = body

        def raise_for_status(self) -> None:
            return None

    def fake(url: str, **kw: object) -> Response:
        for name, path in local.items():
            if url.endswith(name):
                return Response(path.read_bytes())
        raise requests.ConnectionError("unreachable")

    monkeypatch.setattr(requests, "get", fake)
    target = tmp_path / "schemas"
    assert main(["schemas", "fetch", "--dir", str(target)]) == 0
    catalog = (target / "catalog.txt").read_text()
    assert "http://www.loc.gov/METS/ mets.xsd" in catalog
    compiled = validation.compile_schema(target)
    assert validation.PREMIS_NS in compiled.unchecked
