"""SWORD v2 driven by the PyPI ``sword2`` client 0.3 against a real server on port 0:
the whole life cycle of a deposit, the refusals, and non-ASCII titles and file names."""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packager_support import residue
from sword_support import (
    BINARY,
    SIMPLEZIP,
    SwordServer,
    add_person,
    bundles_of,
    connection,
    item_id_of,
    item_state,
    serving,
    set_workflow,
    sword2_module,
)

from server import models as m
from server.context import Repository
from server.sword import views

ERRORS = "http://purl.org/net/sword/error/"


@pytest.fixture
def sword(repo: Repository, admin: Any) -> Iterator[SwordServer]:
    with serving(repo) as server:
        yield server


@pytest.fixture
def conn(sword: SwordServer, tmp_path: Path) -> Any:
    return connection(sword, tmp_path)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def entry(**fields: str) -> Any:
    return sword2_module().Entry(**fields)


def error_of(result: Any) -> tuple[int, str | None]:
    return int(result.code), result.error_href


# ---------------------------------------------------------------------------------------
# Service document


def test_service_document(conn: Any, sword: SwordServer) -> None:
    assert conn.sd.valid and conn.sd.version == "2.0"
    assert conn.maxUploadSize == sword.repo.config.max_upload_size  # bytes (design §8.2)
    (title, collections), = conn.workspaces
    assert title == "davpack repository"
    by_href = {c.href: c for c in collections}
    collection = by_href[sword.col_iri]
    assert collection.title == "Collection"
    assert collection.mediation is False
    assert collection.accept == ["*/*"] and collection.accept_multipart == ["*/*"]
    assert {BINARY, SIMPLEZIP} <= set(collection.acceptPackaging)
    from packagers.registry import default_registry

    assert set(collection.acceptPackaging) == set(default_registry().sword_packaging_uris())


def test_service_document_lists_only_collections_one_may_deposit_to(
        sword: SwordServer, tmp_path: Path) -> None:
    add_person(sword.repo, "nobody@example.org")
    add_person(sword.repo, "depositor@example.org", collection=sword.collection,
               collection_rights=(m.Action.ADD,))
    nobody = connection(sword, tmp_path, user="nobody@example.org", password="pw")
    assert nobody.sd.valid and nobody.workspaces[0][1] == []
    depositor = connection(sword, tmp_path, user="depositor@example.org", password="pw")
    assert [c.href for c in depositor.workspaces[0][1]] == [sword.col_iri]


def test_wrong_password_is_refused(sword: SwordServer, tmp_path: Path) -> None:
    conn = connection(sword, tmp_path, password="wrong")
    assert conn.sd is None  # 401 twice: the client gives up


# ---------------------------------------------------------------------------------------
# The life cycle


def test_binary_create_is_archived_with_receipt(conn: Any, sword: SwordServer) -> None:
    data = b"%PDF-1.4 not really\n"
    receipt = conn.create(col_iri=sword.col_iri, payload=data, mimetype="application/pdf",
                          filename="thesis.pdf", packaging=BINARY)
    assert receipt.code == 201 and receipt.valid
    assert receipt.location == receipt.edit and "/sword/edit/" in receipt.edit
    assert receipt.se_iri == receipt.edit
    assert receipt.edit_media and receipt.cont_iri == receipt.edit_media
    assert receipt.atom_statement_iri and receipt.ore_statement_iri
    assert receipt.metadata["sword_treatment"][0].startswith("The deposit was unpacked")
    assert SIMPLEZIP in receipt.packaging
    assert receipt.metadata["dcterms_title"] == ["thesis"]
    assert "originalDeposit" in " ".join(receipt.links)
    headers = receipt.response_headers
    assert headers["content-type"] == "application/atom+xml;type=entry;charset=utf-8"
    assert headers["cache-control"] == "no-store"
    item_id = item_id_of(receipt.edit)
    assert item_state(sword.repo, item_id) == m.WorkflowState.ARCHIVED
    assert bundles_of(sword.repo, item_id) == {"ORIGINAL": ["thesis.pdf"],
                                               "SWORD": ["thesis.pdf"]}
    content = conn.get_resource(content_iri=receipt.cont_iri)
    assert content.response_headers["packaging"] == SIMPLEZIP
    with zipfile.ZipFile(io.BytesIO(content.content)) as zf:
        assert zf.read("thesis.pdf") == data


def test_entry_only_create(conn: Any, sword: SwordServer) -> None:
    receipt = conn.create(col_iri=sword.col_iri, in_progress=True,
                          metadata_entry=entry(title="Atom title", id="urn:x",
                                               dcterms_abstract="An abstract",
                                               dcterms_creator="Doe, Jane",
                                               dcterms_issued="2024"))
    assert receipt.code == 201
    md = receipt.metadata
    assert md["dcterms_title"] == ["Atom title"]
    assert md["dcterms_abstract"] == ["An abstract"]
    assert md["dcterms_creator"] == ["Doe, Jane"]
    assert md["dcterms_issued"] == ["2024"]
    item_id = item_id_of(receipt.edit)
    assert item_state(sword.repo, item_id) == m.WorkflowState.WORKSPACE
    assert bundles_of(sword.repo, item_id) == {}
    assert conn.get_resource(content_iri=receipt.cont_iri).code == 200  # an EM-IRI anyway


def test_in_progress_life_cycle(conn: Any, sword: SwordServer) -> None:
    zipped = zip_bytes({"a.txt": b"first", "dir/b.txt": b"second"})
    receipt = conn.create(col_iri=sword.col_iri, payload=zipped, mimetype="application/zip",
                          filename="bundle.zip", packaging=SIMPLEZIP, in_progress=True,
                          suggested_identifier="my-slug")
    assert receipt.code == 201
    item_id = item_id_of(receipt.edit)
    assert item_state(sword.repo, item_id) == m.WorkflowState.WORKSPACE
    assert sorted(bundles_of(sword.repo, item_id)["ORIGINAL"]) == ["a.txt", "dir/b.txt"]

    # update metadata (PUT Edit-IRI), staying in progress
    updated = conn.update(dr=receipt, in_progress=True,
                          metadata_entry=entry(title="Replaced title", id="urn:y",
                                               dcterms_subject="Testing"))
    assert updated.code == 200
    assert updated.metadata["dcterms_title"] == ["Replaced title"]
    assert updated.metadata["dcterms_subject"] == ["Testing"]

    # update files (PUT EM-IRI): all content replaced
    replaced = conn.update(dr=receipt, payload=b"new content", filename="new.txt",
                           mimetype="text/plain", packaging=BINARY)
    assert replaced.code == 204
    assert bundles_of(sword.repo, item_id)["ORIGINAL"] == ["new.txt"]
    assert item_state(sword.repo, item_id) == m.WorkflowState.WORKSPACE

    # append an entry and a binary (POST SE-IRI)
    appended = conn.append(dr=receipt, in_progress=True,
                           metadata_entry=entry(id="urn:z", dcterms_publisher="Publisher"))
    assert appended.code == 200
    assert appended.metadata["dcterms_publisher"] == ["Publisher"]
    assert appended.metadata["dcterms_title"] == ["Replaced title"]
    appended = conn.append(dr=receipt, payload=b"appendix", filename="appendix.txt",
                           mimetype="text/plain", in_progress=True)
    assert appended.code == 200
    assert "appendix.txt" in bundles_of(sword.repo, item_id)["ORIGINAL"]

    # add a file (POST EM-IRI): 201, Location = the new file
    added = conn.add_file_to_resource(receipt.edit_media, payload=b"extra",
                                      filename="extra.txt", mimetype="text/plain")
    assert added.code == 201
    assert "/sword/file/" in added.location and added.location.endswith("/extra.txt")
    assert conn.get_resource(content_iri=added.location).content == b"extra"
    assert item_state(sword.repo, item_id) == m.WorkflowState.WORKSPACE

    # receipts and both statements
    fetched = conn.get_deposit_receipt(receipt.edit)
    assert fetched.code == 200 and fetched.edit == receipt.edit
    atom = conn.get_atom_sword_statement(receipt.atom_statement_iri)
    assert atom.valid
    assert atom.states == [(views.STATE_IN_PROGRESS, views.state_of(_view(sword, item_id))[1])]
    # the PUT on the EM-IRI replaced all content, bundle.zip as deposited included
    assert {r.uri.rsplit("/", 1)[-1] for r in atom.original_deposits} == {
        "new.txt", "appendix.txt", "extra.txt"}
    assert all(r.deposited_on is not None and r.deposited_by == "admin@example.org"
               for r in atom.original_deposits)
    ore = conn.get_ore_sword_statement(receipt.ore_statement_iri)
    assert ore.valid
    assert ore.states[0][0] == views.STATE_IN_PROGRESS and ore.states[0][1]
    originals = [r for r in ore.resources if r.is_original_deposit]
    assert {r.packaging[0] for r in originals} == {BINARY}
    assert len(ore.resources) == len(atom.resources)

    # complete (empty POST SE-IRI)
    done = conn.complete_deposit(dr=receipt)
    assert done.code == 200
    assert item_state(sword.repo, item_id) == m.WorkflowState.ARCHIVED
    atom = conn.get_atom_sword_statement(receipt.atom_statement_iri)
    assert atom.states[0][0] == views.STATE_ARCHIVED

    # content with and without packaging
    plain = conn.get_resource(content_iri=receipt.cont_iri)
    with zipfile.ZipFile(io.BytesIO(plain.content)) as zf:
        assert sorted(zf.namelist()) == ["appendix.txt", "extra.txt", "new.txt"]
    asked = conn.get_resource(content_iri=receipt.cont_iri, packaging=SIMPLEZIP,
                              headers={})
    assert asked.content == plain.content
    assert asked.response_headers["packaging"] == SIMPLEZIP

    # an archived deposit cannot be changed
    conn.raise_except = False
    refused = conn.update(dr=receipt, metadata_entry=entry(title="again"), in_progress=True)
    assert error_of(refused) == (405, ERRORS + "MethodNotAllowed")
    assert refused.verbose_description
    refused = conn.add_file_to_resource(receipt.edit_media, payload=b"x", filename="x.txt",
                                        mimetype="text/plain")
    assert error_of(refused) == (405, ERRORS + "MethodNotAllowed")

    # delete the container: then 404
    deleted = conn.delete_container(dr=receipt)
    assert deleted.code == 204
    gone = conn.get_deposit_receipt(receipt.edit)
    assert gone.code == 404
    assert item_state(sword.repo, item_id) is None


def _view(sword: SwordServer, item_id: uuid.UUID) -> views.ItemView:
    with sword.repo.context(system=True, write=False) as ctx:
        item = ctx.session.get(m.Item, item_id)
        assert item is not None
        return views.item_view(ctx, item)


def test_get_content_in_another_packaging(conn: Any, sword: SwordServer) -> None:
    from packagers.registry import default_registry

    receipt = conn.create(col_iri=sword.col_iri, payload=b"data", mimetype="text/plain",
                          filename="data.txt")
    others = [u for u in receipt.packaging if u != SIMPLEZIP]
    bagit = "http://purl.org/net/sword/package/BagIt"
    if bagit in default_registry().sword_packaging_uris() and bagit in others:
        bag = conn.get_resource(content_iri=receipt.cont_iri, packaging=bagit, headers={})
        assert bag.response_headers["packaging"] == bagit
        with zipfile.ZipFile(io.BytesIO(bag.content)) as zf:
            assert any(n.endswith("bagit.txt") for n in zf.namelist())
    conn.raise_except = False
    conn.honour_receipts = False
    refused = conn.get_resource(content_iri=receipt.cont_iri,
                                packaging="http://example.org/no-such-packaging", headers={})
    assert error_of(refused) == (406, ERRORS + "ErrorContent")


def test_delete_content_keeps_the_container(conn: Any, sword: SwordServer) -> None:
    receipt = conn.create(col_iri=sword.col_iri, payload=b"data", mimetype="text/plain",
                          filename="data.txt", in_progress=True)
    item_id = item_id_of(receipt.edit)
    assert conn.delete_content_of_resource(dr=receipt).code == 204
    assert bundles_of(sword.repo, item_id) == {}
    with zipfile.ZipFile(io.BytesIO(conn.get_resource(content_iri=receipt.cont_iri).content)) \
            as zf:
        assert zf.namelist() == []
    assert conn.get_deposit_receipt(receipt.edit).code == 200


def test_completing_into_a_workflow(conn: Any, sword: SwordServer) -> None:
    set_workflow(sword.repo, sword.collection, True)
    receipt = conn.create(col_iri=sword.col_iri, payload=b"data", mimetype="text/plain",
                          filename="data.txt", in_progress=True)
    assert conn.complete_deposit(dr=receipt).code == 200
    item_id = item_id_of(receipt.edit)
    assert item_state(sword.repo, item_id) == m.WorkflowState.WORKFLOW
    statement = conn.get_atom_sword_statement(receipt.atom_statement_iri)
    assert statement.states[0][0] == views.STATE_IN_REVIEW


def test_multipart_create_with_a_fixed_client_builder(conn: Any, sword: SwordServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """sword2 0.3 cannot build multipart bodies on Python 3 (design §5.4 #1); its wire
    format, rebuilt with bytes, must be understood: both parts base64, only the payload
    declaring it."""
    import sword2.connection

    def builder(payloads: list[dict[str, Any]]) -> tuple[str, bytes]:
        boundary = "===============" + hashlib.md5(b"x").hexdigest() + "_$"
        lines: list[bytes] = []
        for part in payloads:
            lines.append(b"--" + boundary.encode())
            lines.append(f"Content-Type: {part['type']}".encode())
            disposition = f'Content-Disposition: attachment; name="{part["key"]}"'
            if part.get("filename"):
                disposition += f'; filename="{part["filename"]}"'
            lines.append(disposition.encode())
            for name, value in part.get("headers", {}).items():
                lines.append(f"{name}: {value}".encode())
            lines.append(b"MIME-Version: 1.0")
            data = part["data"]
            data = data.encode("utf-8") if isinstance(data, str) else data
            if part["key"] == "payload":
                lines.append(b"Content-Transfer-Encoding: base64")
            lines.append(b"")
            lines.append(base64.encodebytes(data).rstrip(b"\n"))
        lines.append(b"--" + boundary.encode() + b"--")
        lines.append(b"")
        return f'multipart/related; boundary="{boundary}"', b"\r\n".join(lines)

    monkeypatch.setattr(sword2.connection, "create_multipart_related", builder)
    zipped = zip_bytes({"paper.txt": b"the paper"})
    receipt = conn.create(col_iri=sword.col_iri, payload=zipped, mimetype="application/zip",
                          filename="paper.zip", packaging=SIMPLEZIP,
                          metadata_entry=entry(title="Multipart title", id="urn:m",
                                               dcterms_creator="Smith, A."))
    assert receipt.code == 201
    assert receipt.metadata["dcterms_title"] == ["Multipart title"]  # not the file name
    assert receipt.metadata["dcterms_creator"] == ["Smith, A."]
    assert bundles_of(sword.repo, item_id_of(receipt.edit))["ORIGINAL"] == ["paper.txt"]


# ---------------------------------------------------------------------------------------
# Refusals


def test_wrong_md5_is_refused_and_leaves_nothing(conn: Any, sword: SwordServer) -> None:
    before = residue(sword.repo)
    conn.raise_except = False
    result = conn.create(col_iri=sword.col_iri, payload=b"some bytes", mimetype="text/plain",
                         filename="f.txt", md5sum="0" * 32)
    assert error_of(result) == (412, ERRORS + "ErrorChecksumMismatch")
    assert hashlib.md5(b"some bytes").hexdigest() in "".join(result.verbose_description)
    assert residue(sword.repo) == before


def test_unknown_packaging_is_refused(conn: Any, sword: SwordServer) -> None:
    before = residue(sword.repo)
    conn.raise_except = False
    result = conn.create(col_iri=sword.col_iri, payload=b"bytes", mimetype="application/zip",
                         filename="f.zip", packaging="http://example.org/unknown")
    assert error_of(result) == (415, ERRORS + "ErrorContent")
    assert SIMPLEZIP in "".join(result.verbose_description)
    assert residue(sword.repo) == before


def test_mediation_is_refused_when_off(sword: SwordServer, tmp_path: Path) -> None:
    add_person(sword.repo, "author@example.org")
    conn = connection(sword, tmp_path)
    conn.raise_except = False
    result = conn.create(col_iri=sword.col_iri, payload=b"bytes", mimetype="text/plain",
                         filename="f.txt", on_behalf_of="author@example.org")
    assert error_of(result) == (412, ERRORS + "MediationNotAllowed")


def test_unknown_on_behalf_of(repo: Repository, admin: Any, tmp_path: Path) -> None:
    with serving(repo, **{"sword.mediation": True}) as sword:
        conn = connection(sword, tmp_path)
        assert conn.workspaces[0][1][0].mediation is True
        conn.raise_except = False
        result = conn.create(col_iri=sword.col_iri, payload=b"bytes", mimetype="text/plain",
                             filename="f.txt", on_behalf_of="nobody@example.org")
        assert error_of(result) == (403, ERRORS + "TargetOwnerUnknown")


def test_mediated_deposit_records_both_people(repo: Repository, admin: Any,
                                              tmp_path: Path) -> None:
    with serving(repo, **{"sword.mediation": True}) as sword:
        add_person(sword.repo, "author@example.org", collection=sword.collection,
                   collection_rights=(m.Action.ADD,))
        conn = connection(sword, tmp_path)
        receipt = conn.create(col_iri=sword.col_iri, payload=b"bytes", mimetype="text/plain",
                              filename="f.txt", on_behalf_of="author@example.org",
                              in_progress=True)
        assert receipt.code == 201
        statement = conn.get_atom_sword_statement(receipt.atom_statement_iri)
        original, = statement.original_deposits
        assert original.deposited_by == "admin@example.org"
        assert original.deposited_on_behalf_of == "author@example.org"
        with sword.repo.context(write=False) as ctx:
            item = ctx.session.get(m.Item, item_id_of(receipt.edit))
            assert item is not None and item.submitter is not None
            assert item.submitter.email == "author@example.org"


def test_oversize_is_refused(repo: Repository, admin: Any, tmp_path: Path) -> None:
    with serving(repo, **{"store.max_upload_size": 1000}) as sword:
        conn = connection(sword, tmp_path)
        assert conn.maxUploadSize == 1000
        before = residue(sword.repo)
        conn.raise_except = False
        result = conn.create(col_iri=sword.col_iri, payload=b"x" * 5000,
                             mimetype="application/octet-stream", filename="big.bin")
        assert error_of(result) == (413, ERRORS + "MaxUploadSizeExceeded")
        assert residue(sword.repo) == before


def test_broken_package_leaves_nothing(conn: Any, sword: SwordServer) -> None:
    before = residue(sword.repo)
    conn.raise_except = False
    result = conn.create(col_iri=sword.col_iri, payload=b"PK\x03\x04 not a zip at all",
                         mimetype="application/zip", filename="broken.zip",
                         packaging=SIMPLEZIP)
    assert result.code in (400, 415)
    assert result.error_href and result.verbose_description
    assert residue(sword.repo) == before


# ---------------------------------------------------------------------------------------
# Non-ASCII


def test_non_ascii_title_and_file_name(conn: Any, sword: SwordServer) -> None:
    name = "Müller café résumé.txt"
    receipt = conn.create(col_iri=sword.col_iri, payload="Grüße".encode(),
                          mimetype="text/plain", filename=name, in_progress=True)
    assert receipt.code == 201
    item_id = item_id_of(receipt.edit)
    assert bundles_of(sword.repo, item_id)["ORIGINAL"] == [name]
    # The client sends entries as Latin-1 without saying so (design §5.4 #3).
    updated = conn.update(dr=receipt, in_progress=True,
                          metadata_entry=entry(title="Études à Zürich", id="urn:e",
                                               dcterms_creator="Gödel, Kurt"))
    assert updated.metadata["dcterms_title"] == ["Études à Zürich"]
    assert updated.metadata["dcterms_creator"] == ["Gödel, Kurt"]
    statement = conn.get_atom_sword_statement(receipt.atom_statement_iri)
    assert any(r.uri.endswith("M%C3%BCller%20caf%C3%A9%20r%C3%A9sum%C3%A9.txt")
               for r in statement.resources)
    with zipfile.ZipFile(io.BytesIO(conn.get_resource(content_iri=receipt.cont_iri).content)) \
            as zf:
        assert zf.namelist() == [name]


def test_a_depositor_without_admin_rights(sword: SwordServer, tmp_path: Path) -> None:
    add_person(sword.repo, "depositor@example.org", collection=sword.collection,
               collection_rights=(m.Action.ADD,))
    add_person(sword.repo, "other@example.org", collection=sword.collection,
               collection_rights=(m.Action.ADD,))
    conn = connection(sword, tmp_path, user="depositor@example.org", password="pw")
    receipt = conn.create(col_iri=sword.col_iri, payload=b"mine", mimetype="text/plain",
                          filename="mine.txt", in_progress=True)
    assert receipt.code == 201
    assert conn.update(dr=receipt, in_progress=True,
                       metadata_entry=entry(title="Mine", id="urn:m")).code == 200
    assert conn.add_file_to_resource(receipt.edit_media, payload=b"more", filename="more.txt",
                                     mimetype="text/plain").code == 201
    other = connection(sword, tmp_path / "other", user="other@example.org", password="pw")
    other.raise_except = False
    # (get_deposit_receipt returns None on a 403: ask for the resource itself)
    assert other.get_resource(content_iri=receipt.edit, headers={}).code == 403
    assert other.delete_container(dr=receipt).code == 403
    assert conn.complete_deposit(dr=receipt).code == 200
    assert item_state(sword.repo, item_id_of(receipt.edit)) == m.WorkflowState.ARCHIVED
    assert conn.get_deposit_receipt(receipt.edit).code == 200  # one's own, still readable
    conn.raise_except = False
    assert conn.delete_container(dr=receipt).code == 403  # archived: the collection decides
    second = conn.create(col_iri=sword.col_iri, payload=b"draft", mimetype="text/plain",
                         filename="draft.txt", in_progress=True)
    assert conn.delete_container(dr=second).code == 204  # one's own draft may go
