"""The ``davpack`` command line: administration commands, exit codes, messages."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from core_support import clean_environ, store_root, write_cli_config
from sqlalchemy import select

from server import __version__
from server import models as m
from server.cli import main
from server.context import Repository
from server.services import authz, handles, metadata, people

DAVPACK = Path(sys.executable).with_name("davpack")


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def bare_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run ``davpack ARGS...`` in-process; returns the exit code and the captured output."""
    for name in [k for k in os.environ if k.startswith("DAVPACK_")]:
        monkeypatch.delenv(name)  # they would override the configuration file

    def run(*args: str, stdin: str | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli(repo: Repository, tmp_path: Path, bare_cli: Run) -> Run:
    """Run ``davpack --config FILE ARGS...`` against the test repository."""
    conf = write_cli_config(tmp_path, repo)

    def run(*args: str, stdin: str | None = None) -> Result:
        return bare_cli("--config", str(conf), *args, stdin=stdin)

    return run


def _subprocess(repo: Repository, tmp_path: Path, *args: str,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    conf = write_cli_config(tmp_path, repo)
    return subprocess.run([str(DAVPACK), "--config", str(conf), *args], input=stdin,
                          capture_output=True, text=True, env=clean_environ(), timeout=120)


def test_user_add_admin_with_password_from_stdin(repo: Repository, tmp_path: Path) -> None:
    done = _subprocess(repo, tmp_path, "user", "add", "x@y.org", "--admin", "--first-name",
                       "Xavier", "--password-stdin", stdin="s3cret pässword\n")
    assert (done.returncode, done.stderr) == (0, "")
    with repo.context(write=False) as ctx:
        person = people.require_person(ctx, "x@y.org")
        assert done.stdout == f"created x@y.org ({person.id}) as administrator\n"
        assert person.first_name == "Xavier"
        assert authz.is_admin(ctx, person)
        assert people.authenticate(ctx, "x@y.org", "s3cret pässword") is not None
        assert people.authenticate(ctx, "x@y.org", "s3cret pässword\n") is None


def test_user_add_without_admin_and_duplicates(cli: Run, repo: Repository) -> None:
    result = cli("user", "add", "plain@example.org", "--password-stdin", stdin="pw\n")
    assert result.code == 0
    assert not result.out.rstrip().endswith("as administrator")
    with repo.context(write=False) as ctx:
        assert not authz.is_admin(ctx, people.require_person(ctx, "plain@example.org"))
    again = cli("user", "add", "plain@example.org", "--no-password")
    assert again.code == 1
    assert "a person with e-mail plain@example.org already exists" in again.err


def test_user_add_refuses_an_empty_password(cli: Run, repo: Repository) -> None:
    result = cli("user", "add", "empty@example.org", "--password-stdin", stdin="\n")
    assert result.code == 1
    with repo.context(write=False) as ctx:
        assert people.by_email(ctx, "empty@example.org") is None


def test_user_password(cli: Run, repo: Repository) -> None:
    assert cli("user", "add", "p@example.org", "--password-stdin", stdin="old\n").code == 0
    result = cli("user", "password", "p@example.org", "--password-stdin", stdin="new\n")
    assert (result.code, result.out) == (0, "password of p@example.org changed\n")
    with repo.context(write=False) as ctx:
        assert people.authenticate(ctx, "p@example.org", "new") is not None
        assert people.authenticate(ctx, "p@example.org", "old") is None
    missing = cli("user", "password", "nobody@example.org", "--password-stdin", stdin="x\n")
    assert missing.code == 1
    assert "no person with e-mail nobody@example.org" in missing.err


def test_group_add_and_members(cli: Run, repo: Repository) -> None:
    assert cli("user", "add", "m@example.org", "--no-password").code == 0
    first = cli("group", "add", "Editors")
    assert first.code == 0 and first.out.startswith("created group Editors (")
    assert cli("group", "add", "Reviewers").code == 0
    person = cli("group", "member", "Editors", "--person", "m@example.org")
    assert (person.code, person.out) == (0, "added m@example.org to Editors\n")
    nested = cli("group", "member", "Reviewers", "--group", "Editors")
    assert (nested.code, nested.out) == (0, "added Editors to Reviewers\n")
    with repo.context(write=False) as ctx:
        editors = authz.require_group(ctx, "Editors")
        assert [p.email for p in editors.people] == ["m@example.org"]
        assert [g.name for g in authz.require_group(ctx, "Reviewers").subgroups] == ["Editors"]
        member = people.require_person(ctx, "m@example.org")
        names = {g.name for g in ctx.session.scalars(
            select(m.Group).where(m.Group.id.in_(authz.group_ids_of(ctx, member))))}
        assert names == {m.ANONYMOUS, "Editors", "Reviewers"}
    duplicate = cli("group", "add", "Editors")
    assert duplicate.code == 1 and "group 'Editors' already exists" in duplicate.err
    unknown = cli("group", "member", "Nope", "--person", "m@example.org")
    assert unknown.code == 1 and "group 'Nope' does not exist" in unknown.err


def test_community_and_collection_create(cli: Run, repo: Repository) -> None:
    top = cli("community", "create", "Top Ünïversity")
    assert (top.code, top.out) == (0, "123456789/1\n")
    sub = cli("community", "create", "Faculty", "--parent", "hdl:123456789/1")
    assert (sub.code, sub.out) == (0, "123456789/2\n")
    col = cli("collection", "create", "Theses", "--community", "123456789/2", "--workflow")
    assert (col.code, col.out) == (0, "123456789/3\n")
    plain = cli("collection", "create", "Articles", "--community", "123456789/1")
    assert (plain.code, plain.out) == (0, "123456789/4\n")
    with repo.context(write=False) as ctx:
        top_c = handles.require(ctx, "123456789/1")
        faculty = handles.require(ctx, "123456789/2")
        theses = handles.require(ctx, "123456789/3")
        articles = handles.require(ctx, "123456789/4")
        assert isinstance(faculty, m.Community) and isinstance(theses, m.Collection)
        assert isinstance(articles, m.Collection)
        assert metadata.first(top_c, "dc.title") == "Top Ünïversity"
        assert faculty.parent_id == top_c.id
        assert theses.community_id == faculty.id and theses.workflow_enabled is True
        assert articles.community_id == top_c.id and articles.workflow_enabled is False
        assert metadata.first(theses, "dc.title") == "Theses"


def test_unknown_handle_exits_1_with_a_message(cli: Run) -> None:
    result = cli("collection", "create", "X", "--community", "123456789/999")
    assert result.code == 1
    assert result.out == ""
    first, *details = result.err.splitlines()
    assert first == "davpack: error: no object has the handle 123456789/999"
    assert len(details) == 1 and "field=handle" in details[0] and "123456789/999" in details[0]
    parent = cli("community", "create", "X", "--parent", "123456789/998")
    assert parent.code == 1 and "123456789/998" in parent.err


def test_collection_in_a_non_community_exits_1(cli: Run) -> None:
    assert cli("community", "create", "C").code == 0
    assert cli("collection", "create", "L", "--community", "123456789/1").code == 0
    result = cli("collection", "create", "Nested", "--community", "123456789/2")
    assert result.code == 1
    assert "123456789/2 is not a community" in result.err


def test_db_upgrade(cli: Run, repo: Repository) -> None:
    result = cli("db", "upgrade")
    assert result.code == 0
    assert result.out == (f"database at revision 0001; store at {store_root(repo)}\n")


def test_version(bare_cli: Run) -> None:
    result = bare_cli("--version")
    assert (result.code, result.out) == (0, f"davpack {__version__}\n")


def _command_paths() -> list[list[str]]:
    """Every command and subcommand the parser knows, e.g. ``["db", "upgrade"]``."""
    from server.cli import build_parser

    def walk(parser: object, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        for action in getattr(parser, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, child in choices.items():
                    found.extend(walk(child, [*prefix, name]))
        return found

    return walk(build_parser(), [])


SUBCOMMANDS = _command_paths()


def test_the_core_commands_are_registered() -> None:
    assert {" ".join(words) for words in SUBCOMMANDS} >= {
        "", "serve", "db", "db upgrade", "user", "user add", "user password", "group",
        "group add", "group member", "community", "community create", "collection",
        "collection create", "fixity"}


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "davpack")
def test_help_exits_0(bare_cli: Run, words: list[str]) -> None:
    result = bare_cli(*words, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: davpack {' '.join(words)}".rstrip())
    assert result.err == ""


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["db"], ["collection", "create", "X"],
    ["group", "member", "G"], ["group", "member", "G", "--person", "a", "--group", "b"],
    ["serve", "--port", "abc"], ["user", "add"], ["fixity", "--bogus"],
], ids=lambda a: " ".join(a) or "nothing")
def test_bad_usage_exits_2(bare_cli: Run, tmp_path: Path, args: list[str]) -> None:
    result = bare_cli("--config", str(tmp_path / "never-read.yaml"), *args)
    assert result.code == 2
    assert "usage: davpack" in result.err
    assert result.out == ""


def test_exit_codes_of_the_installed_command(repo: Repository, tmp_path: Path) -> None:
    usage = _subprocess(repo, tmp_path, "collection", "create", "X")
    assert usage.returncode == 2
    assert "the following arguments are required: --community" in usage.stderr
    failure = _subprocess(repo, tmp_path, "collection", "create", "X", "--community",
                          "123456789/999")
    assert failure.returncode == 1
    assert failure.stderr.splitlines()[0] == (
        "davpack: error: no object has the handle 123456789/999")
    assert failure.stdout == ""
