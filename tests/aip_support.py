"""Helpers for the AIP packager tests (tests/test_aip_*.py, tests/test_packager_cli.py).

* :func:`make_repo`: another repository in its own directory - on PostgreSQL in a second
  database, created on demand beside the test database (restores need an empty target).
* :func:`build_rich_site`: a repository with every feature an AIP must carry.
* :func:`snapshot`: every value of a repository, keyed by UUID, to compare two of them.
* :func:`export_site` / :func:`restore`: drive the packager like the CLI does.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from packagers.aip import AIPPackager
from packagers.base import IngestRequest, IngestResult, Mode, Operation, PackageSource
from packagers.params import PackageParameters
from server import models as m
from server.config import Config, load_config
from server.context import Context, Repository
from server.services import authz, metadata, objects, people

TEST_DATABASE_URL = os.environ.get("DAVPACK_TEST_DATABASE_URL")


def _second_database(suffix: str) -> str:
    """A PostgreSQL database beside the test database, emptied, for a second repository."""
    assert TEST_DATABASE_URL is not None
    url = make_url(TEST_DATABASE_URL)
    name = f"{url.database}_{suffix}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                             {"n": name}).first()
        if found is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    target = url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(target)
    with engine.begin() as conn:
        names = inspect(conn).get_table_names()
        if names:
            conn.execute(text("DROP TABLE " + ", ".join(f'"{n}"' for n in names) + " CASCADE"))
    engine.dispose()
    return target


def repo_config(directory: Path, *, suffix: str = "second", **overrides: object) -> Config:
    directory.mkdir(parents=True, exist_ok=True)
    url = (_second_database(suffix) if TEST_DATABASE_URL
           else f"sqlite:///{directory / 'davpack.db'}")
    values: dict[str, object] = {"database.url": url, "store.path": str(directory / "store"),
                                 "server.staging_dir": str(directory / "staging"),
                                 "store.fsync": False}
    values.update(overrides)
    return load_config(environ={}, overrides=values)


def make_repo(directory: Path, *, suffix: str = "second", **overrides: object) -> Repository:
    repo = Repository(repo_config(directory, suffix=suffix, **overrides))
    repo.initialise()
    return repo


def add_admin(repo: Repository, email: str = "admin@example.org") -> uuid.UUID:
    with repo.context(system=True) as ctx:
        person = people.create_person(ctx, email, password="secret", first_name="Ada",
                                      last_name="Admin")
        people.add_member(ctx, authz.admin_group(ctx), person)
        return person.id


# ---------------------------------------------------------------------------------------
# A repository with everything


@dataclass
class Rich:
    site: uuid.UUID
    top: uuid.UUID
    sub: uuid.UUID
    theses: uuid.UUID
    journals: uuid.UUID
    article: uuid.UUID
    withdrawn: uuid.UUID
    mapped: uuid.UUID
    hidden: uuid.UUID
    reverse_mapped: uuid.UUID
    person_item: uuid.UUID
    cc_item: uuid.UUID
    big_policy_bitstream: uuid.UUID
    archive: uuid.UUID
    letters: uuid.UUID
    letter: uuid.UUID


def _file(ctx: Context, bundle: m.Bundle, data: bytes, name: str, **kw: Any) -> m.Bitstream:
    content = ctx.add_content(io.BytesIO(data), name=name)
    return objects.add_bitstream(ctx, bundle, content, name=name, **kw)


def build_rich_site(repo: Repository) -> Rich:
    """Nested communities, logos, a template, mapped, withdrawn and hidden items, several
    bundles, bundle and bitstream metadata, policies with dates, groups in groups, people
    with passwords, non-ASCII metadata with languages and authorities, relationships."""
    with repo.context(system=True) as ctx:
        site = objects.site(ctx)
        metadata.add(ctx, site, "dc.description", "Ein Repositorium für alles", language="de")
        alice = people.create_person(ctx, "alice@example.org", password="wonderland",
                                     first_name="Älice", last_name="Øster", language="de")
        bob = people.create_person(ctx, "bob@example.org", netid="bob", can_log_in=False,
                                   first_name="Bob", require_certificate=True)
        carol = people.create_person(ctx, "carol@example.org", self_registered=True)
        editors = people.create_group(ctx, "Editors")
        reviewers = people.create_group(ctx, "Reviewers")
        people.add_member(ctx, editors, alice)
        people.add_member(ctx, reviewers, editors)
        people.add_member(ctx, reviewers, carol)

        top = objects.create_community(ctx, None, "Fakultät für Physik")
        metadata.add(ctx, top, "dc.description", "Einführung", language="de")
        metadata.add(ctx, top, "dc.description.abstract", "Short description")
        metadata.add(ctx, top, "dc.subject", "Physik", language="de")
        metadata.add(ctx, top, "dc.subject", "Physics", language="en")
        metadata.add(ctx, top, "local.note", "a custom field", create=True)
        logo = ctx.add_content(io.BytesIO(b"\x89PNG fake logo bytes"), name="logo.png")
        objects.set_logo(ctx, top, logo, name="logo.png", mime_type="image/png")
        assert top.logo is not None
        metadata.add(ctx, top.logo, "dc.description", "Logo der Fakultät", language="de")
        community_admins = people.create_group(ctx, f"COMMUNITY_{top.id}_ADMIN")
        people.add_member(ctx, community_admins, alice)
        authz.add_policy(ctx, top, m.Action.ADMIN, group=community_admins)

        sub = objects.create_community(ctx, top, "Theorie")
        theses = objects.create_collection(ctx, sub, "Abschlussarbeiten")
        metadata.add(ctx, theses, "dc.rights.license", "Lizenz: alle Rechte vorbehalten")
        metadata.add(ctx, theses, "dc.provenance", "Gegründet 1999")
        tlogo = ctx.add_content(io.BytesIO(b"GIF89a theses logo"), name="theses.gif")
        objects.set_logo(ctx, theses, tlogo, name="theses.gif", mime_type="image/gif")
        submitters = people.create_group(ctx, f"COLLECTION_{theses.id}_SUBMIT")
        admins = people.create_group(ctx, f"COLLECTION_{theses.id}_ADMIN")
        people.add_member(ctx, submitters, bob)
        people.add_member(ctx, submitters, editors)
        people.add_member(ctx, admins, alice)
        people.add_member(ctx, reviewers, admins)  # a site group holding a collection group
        authz.add_policy(ctx, theses, m.Action.ADD, group=submitters)
        authz.add_policy(ctx, theses, m.Action.ADMIN, group=admins,
                         start_date=datetime(2020, 1, 2, 3, 4, 5), name="admins",
                         description="collection administrators")
        authz.add_policy(ctx, theses, m.Action.WORKFLOW_STEP_2, group=editors)
        template = objects.create_template_item(ctx, theses)
        metadata.add(ctx, template, "dc.publisher", "Universität Beispiel", language="de")
        metadata.add(ctx, template, "dc.type", "Thesis")

        journals = objects.create_collection(ctx, top, "Zeitschriften")
        objects.set_workflow_enabled(ctx, journals, True)

        def item(collection: m.Collection, title: str, lang: str | None = "en") -> m.Item:
            it = objects.create_item(ctx, collection, submitter=alice)
            metadata.add(ctx, it, "dc.title", title, language=lang)
            return it

        article = item(theses, "Quantenfeldtheorie — eine Einführung", "de")
        metadata.add(ctx, article, "dc.contributor.author", "Müller, Jürgen",
                     authority="orcid:0000-0001", confidence=600)
        metadata.add(ctx, article, "dc.contributor.author", "Ødegård, Åse")
        metadata.add(ctx, article, "dc.subject", "Physik", language="de")
        metadata.add(ctx, article, "dc.title.alternative", "Quantum field theory",
                     language="en")
        metadata.add(ctx, article, "dc.subject", "Σωματίδια", language="el")
        metadata.add(ctx, article, "local.grant", "ERC-123", create=True)
        metadata.add(ctx, article, "dc.description.abstract", "Zeile 1\nZeile 2 & <mehr>")
        original = objects.create_bundle(ctx, article, "ORIGINAL")
        metadata.add(ctx, original, "dc.title", "ORIGINAL")
        pdf = _file(ctx, original, b"%PDF-1.4 thesis body " * 100, "Dissertation Müller.pdf",
                    mime_type="application/pdf", format_name="Adobe PDF",
                    format_support="KNOWN", description="Volltext", source="upload.pdf",
                    primary=True)
        metadata.add(ctx, pdf, "dc.description", "Hauptdatei", language="de")
        data = _file(ctx, original, b"x,y\n1,2\n", "data.csv", mime_type="text/csv",
                     user_format="comma separated")
        authz.add_policy(ctx, data, m.Action.READ, group=editors,
                         end_date=datetime(2031, 12, 31, 23, 59, 59), rptype="TYPE_CUSTOM")
        text_bundle = objects.create_bundle(ctx, article, "TEXT")
        _file(ctx, text_bundle, b"extracted text", "Dissertation Müller.pdf.txt",
              mime_type="text/plain", format_internal=True)
        licence = objects.create_bundle(ctx, article, "LICENSE")
        _file(ctx, licence, b"You grant us the right ...\n", "license.txt",
              mime_type="text/plain; charset=utf-8", format_name="License",
              format_internal=True, format_support="KNOWN")
        objects.create_bundle(ctx, article, "EMPTY")
        objects.install(ctx, article)
        authz.add_policy(ctx, article, m.Action.WRITE, eperson=bob)

        withdrawn = item(theses, "Zurückgezogen")
        _file(ctx, objects.create_bundle(ctx, withdrawn, "ORIGINAL"), b"old", "old.txt",
              mime_type="text/plain")
        objects.install(ctx, withdrawn)
        objects.withdraw(ctx, withdrawn)

        mapped = item(theses, "Mapped item", None)
        objects.install(ctx, mapped)
        objects.map_item(ctx, mapped, journals)

        # owned by the collection restored last, mapped into the one restored first: a
        # hierarchy restore meets it before its owner exists
        reverse = item(journals, "Owned by Zeitschriften, mapped into Abschlussarbeiten")
        objects.install(ctx, reverse)
        objects.map_item(ctx, reverse, theses)

        hidden = item(journals, "Hidden item")
        objects.install(ctx, hidden)
        hidden.discoverable = False
        hidden.touch()

        person_item = item(journals, "Müller, Jürgen (person)")
        metadata.add(ctx, person_item, "dspace.entity.type", "Person")
        objects.install(ctx, person_item)
        objects.add_relationship(ctx, article, person_item, "isAuthorOfPublication",
                                 "isPublicationOfAuthor", left_label="Müller",
                                 right_label="Quantenfeldtheorie")

        cc_item = item(journals, "Creative Commons item")
        cc = objects.create_bundle(ctx, cc_item, "CC-LICENSE")
        _file(ctx, cc, b"<rdf:RDF/>", "license_rdf", mime_type="text/xml")
        _file(ctx, cc, b"CC BY 4.0", "license_text", mime_type="text/plain")
        objects.install(ctx, cc_item)

        archive = objects.create_community(ctx, None, "Archiv")
        letters = objects.create_collection(ctx, archive, "Nachlass")
        letter = item(letters, "Brief an Ö.")
        _file(ctx, objects.create_bundle(ctx, letter, "ORIGINAL"), b"Liebe \xc3\x96.",
              "brief.txt", mime_type="text/plain; charset=utf-8")
        objects.install(ctx, letter)
        ctx.session.flush()
        return Rich(site.id, top.id, sub.id, theses.id, journals.id, article.id, withdrawn.id,
                    mapped.id, hidden.id, reverse.id, person_item.id, cc_item.id, data.id,
                    archive.id, letters.id, letter.id)


# ---------------------------------------------------------------------------------------
# Comparing repositories


def _policies(obj: m.DSpaceObject) -> list[tuple[Any, ...]]:
    return [(p.action.value, p.group.name if p.group else None,
             p.eperson.email if p.eperson else None, p.start_date, p.end_date, p.name,
             p.description, p.rptype) for p in obj.policies]


def _values(obj: m.DSpaceObject) -> list[tuple[Any, ...]]:
    return [(v.field.name, v.place, v.value, v.language, v.authority, v.confidence)
            for v in sorted(obj.metadata_values, key=lambda v: (v.field.name, v.place))]


def snapshot(repo: Repository, *, times: bool = True) -> dict[str, Any]:
    """Everything restorable, keyed by UUID (people and groups too)."""
    out: dict[str, Any] = {}
    with repo.context(write=False) as ctx:
        for obj in ctx.session.scalars(select(m.DSpaceObject)):
            record: dict[str, Any] = {"type": obj.type.value, "handle": obj.handle,
                                      "values": _values(obj), "policies": _policies(obj)}
            if times and not isinstance(obj, (m.EPerson, m.Group)):
                record["last_modified"] = obj.last_modified
            if isinstance(obj, m.Community):
                record.update(parent=obj.parent_id, logo=obj.logo_id)
            elif isinstance(obj, m.Collection):
                record.update(community=obj.community_id, logo=obj.logo_id,
                              template=obj.template_item_id, workflow=obj.workflow_enabled)
            elif isinstance(obj, m.Item):
                record.update(owner=obj.owning_collection_id,
                              submitter=obj.submitter.email if obj.submitter else None,
                              in_archive=obj.in_archive, withdrawn=obj.withdrawn,
                              discoverable=obj.discoverable, state=obj.workflow_state.value,
                              template=obj.is_template,
                              mapped=sorted(str(c.id) for c in obj.mapped_collections))
            elif isinstance(obj, m.Bundle):
                record.update(item=obj.item_id, name=obj.name, position=obj.position,
                              primary=obj.primary_bitstream_id)
            elif isinstance(obj, m.Bitstream):
                record.update(bundle=obj.bundle_id, name=obj.name, source=obj.source,
                              description=obj.description, seq=obj.sequence_id,
                              mime=obj.mime_type, format=obj.format_name,
                              support=obj.format_support, internal=obj.format_internal,
                              user_format=obj.user_format, size=obj.size, md5=obj.md5,
                              sha256=obj.sha256, position=obj.position)
            elif isinstance(obj, m.EPerson):
                record.update(email=obj.email, netid=obj.netid, first=obj.first_name,
                              last=obj.last_name, language=obj.language,
                              password=obj.password_hash, login=obj.can_log_in,
                              cert=obj.require_certificate, self_reg=obj.self_registered)
            elif isinstance(obj, m.Group):
                record.update(name=obj.name, people=sorted(p.email for p in obj.people),
                              groups=sorted(g.name for g in obj.subgroups))
            out[str(obj.id)] = record
        out["relationships"] = sorted(
            (str(r.left_item_id), str(r.right_item_id), r.left_type, r.right_type,
             r.left_place, r.right_place, r.left_label, r.right_label)
            for r in ctx.session.scalars(select(m.Relationship)))
    return out


def stored_bytes(repo: Repository) -> dict[str, bytes]:
    """sha256 -> content of every stored file (small test repositories only)."""
    out = {}
    for key in repo.store.iter_keys():
        with repo.store.open(key) as fh:
            out[key] = fh.read()
    return out


# ---------------------------------------------------------------------------------------
# Driving the packager


def op_for(repo: Repository, actor: uuid.UUID | None = None) -> Operation:
    return Operation(repo, actor=actor, system=actor is None)


def site_id(repo: Repository) -> uuid.UUID:
    with repo.context(write=False) as ctx:
        return objects.site(ctx).id


def export_tree(repo: Repository, target: uuid.UUID, dest: Path, **options: str) -> list[Path]:
    params = PackageParameters(options.items())
    packager = AIPPackager()
    params.check_known(packager.option_names("disseminate"), packager.name)
    return packager.disseminate_all(op_for(repo), target, params, dest)


def export_one(repo: Repository, target: uuid.UUID, actor: uuid.UUID | None = None,
               **options: str) -> bytes:
    params = PackageParameters(options.items())
    packager = AIPPackager()
    params.check_known(packager.option_names("disseminate"), packager.name)
    with packager.disseminate(op_for(repo, actor), target, params) as package:
        data = b"".join(package.iter_bytes())
        if package.size is not None:
            assert package.size == len(data)
        return data


def ingest(repo: Repository, path: Path, *, mode: Mode = Mode.RESTORE, recursive: bool = False,
           keep: bool = False, parent: uuid.UUID | None = None, actor: uuid.UUID | None = None,
           skip_workflow: bool = False, target: uuid.UUID | None = None,
           **options: str) -> IngestResult:
    params = PackageParameters(options.items())
    packager = AIPPackager()
    params.check_known(packager.option_names("ingest"), packager.name)
    request = IngestRequest(mode=mode, params=params, parent=parent, keep_existing=keep,
                            recursive=recursive, skip_workflow=skip_workflow)
    source = PackageSource(path)
    if target is not None:
        return packager.replace(op_for(repo, actor), target, source, request)
    return packager.ingest(op_for(repo, actor), source, request)


def count(repo: Repository, cls: type[Any]) -> int:
    from sqlalchemy import func

    with repo.context(write=False) as ctx:
        return int(ctx.session.scalar(select(func.count()).select_from(cls)) or 0)


def residue(repo: Repository) -> tuple[int, int, list[str]]:
    """(dso rows, stored files, staging leftovers) - to prove a refused ingest left nothing."""
    staging = Path(repo.config.get("store.path")) / ".staging"
    leftovers = sorted(str(p) for p in staging.rglob("*")) if staging.exists() else []
    return count(repo, m.DSpaceObject), len(list(repo.store.iter_keys())), leftovers


def rewrite_member(data: bytes, name: str, transform: Any) -> bytes:
    """The zip ``data`` with member ``name`` replaced by ``transform(old bytes)`` (None:
    left out); other members are copied as they are."""
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = source.read(info)
            if info.filename == name:
                body = transform(body)
                if body is None:
                    continue
            target.writestr(info, body)
    return out.getvalue()
