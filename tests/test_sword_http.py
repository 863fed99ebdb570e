"""SWORD v2 over plain HTTP (``requests``), the way curl scripts, OJS and Vireo send it:
authentication, the headers' variants, multipart variants, errors, and nothing partial."""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from conftest import corpus_path
from lxml import etree
from packager_support import item_values, residue
from sword_support import (
    ATOM,
    ENTRY_TYPE,
    LEGACY_METS_SIP,
    METS_SIP,
    SIMPLEZIP,
    SWORD,
    SwordServer,
    add_person,
    bundles_of,
    item_id_of,
    item_state,
    multipart_body,
    serving,
)

from server import models as m
from server.context import Repository

ERRORS = "http://purl.org/net/sword/error/"
ADMIN = ("admin@example.org", "secret")


@pytest.fixture
def sword(repo: Repository, admin: Any) -> Iterator[SwordServer]:
    with serving(repo) as server:
        yield server


def post(sword: SwordServer, data: bytes, *, auth: Any = ADMIN, url: str | None = None,
         **headers: str) -> requests.Response:
    return requests.post(url or sword.col_iri, data=data, auth=auth,
                         headers={k.replace("_", "-"): v for k, v in headers.items()},
                         timeout=30)


def error_href(response: requests.Response) -> str | None:
    assert response.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    assert root.tag == f"{SWORD}error"
    assert root.findtext(f"{ATOM}summary")
    assert root.findtext(f"{SWORD}verboseDescription")
    href: str | None = root.get("href")
    return href


def receipt_links(response: requests.Response) -> dict[str, list[str]]:
    root = etree.fromstring(response.content)
    links: dict[str, list[str]] = {}
    for link in root.findall(f"{ATOM}link"):
        links.setdefault(link.get("rel"), []).append(link.get("href"))
    content = root.find(f"{ATOM}content")
    if content is not None:
        links["content"] = [content.get("src")]
    return links


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------
# Authentication and routing


def test_no_credentials_is_a_basic_challenge_and_creates_nothing(sword: SwordServer) -> None:
    before = residue(sword.repo)
    response = post(sword, b"x" * 200_000, auth=None, Content_Disposition="attachment; "
                    "filename=a.bin")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert error_href(response) == "urn:davpack:sword:error:AuthenticationRequired"
    assert residue(sword.repo) == before
    # the same connection still works (the body was drained, not left on the socket)
    with requests.Session() as session:
        assert session.get(sword.url, timeout=30).status_code == 401
        session.auth = ADMIN
        assert session.get(sword.url, timeout=30).status_code == 200
    wrong = requests.get(sword.url, auth=("admin@example.org", "nope"), timeout=30)
    assert wrong.status_code == 401


def test_service_document_and_routes(sword: SwordServer) -> None:
    with sword.admin_session() as session:
        sd = session.get(sword.url, timeout=30)
        assert sd.status_code == 200
        assert sd.headers["Content-Type"] == "application/atomsvc+xml;charset=utf-8"
        assert sd.headers["Cache-Control"] == "no-store"
        assert session.get(sword.url + "/", timeout=30).status_code == 200
        missing = session.get(sword.url + "/edit/not-a-uuid", timeout=30)
        assert missing.status_code == 404 and error_href(missing)
        gone = session.get(f"{sword.url}/edit/{uuid.uuid4()}", timeout=30)
        assert gone.status_code == 404
        wrong = session.put(sword.url, data=b"x", timeout=30)
        assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, HEAD"
        assert error_href(wrong) == ERRORS + "MethodNotAllowed"
        by_handle = session.get(f"{sword.url}/collection/{sword.collection_handle}",
                                timeout=30)
        assert by_handle.status_code == 200


def test_every_iri_of_a_receipt_answers(sword: SwordServer) -> None:
    response = post(sword, b"hello", Content_Type="text/plain",
                    Content_Disposition="attachment; filename=hello.txt", In_Progress="true")
    assert response.status_code == 201
    assert response.headers["Content-Type"] == ENTRY_TYPE + ";charset=utf-8"
    assert response.headers["Location"] == receipt_links(response)["edit"][0]
    links = receipt_links(response)
    with sword.admin_session() as session:
        for rel, hrefs in links.items():
            for href in hrefs:
                answer = session.get(href, timeout=30)
                assert answer.status_code == 200, (rel, href, answer.text[:300])
                head = session.head(href, timeout=30)
                assert head.status_code == 200 and head.content == b""
        feed = session.get(links["edit-media"][1], timeout=30)
        assert feed.headers["Content-Type"].startswith("application/atom+xml;type=feed")
        negotiated = session.get(links["edit"][0], headers={"Accept": "application/rdf+xml"},
                                 timeout=30)
        assert etree.fromstring(negotiated.content).tag.endswith("RDF")
        listing = session.get(sword.col_iri, timeout=30)
        entries = etree.fromstring(listing.content).findall(f"{ATOM}entry")
        assert len(entries) == 1


# ---------------------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize(("disposition", "expected"), [
    ('attachment; filename="quoted name.txt"', "quoted name.txt"),
    ("attachment; filename=plain.txt", "plain.txt"),
    ("attachment; filename=my%20file%20%C3%A9.txt", "my file é.txt"),
    ("attachment; filename*=UTF-8''%C5%BC%C3%B3%C5%82w.txt", "żółw.txt"),
    ("attachment; filename=\"fallback.txt\"; filename*=utf-8''%E2%82%AC.txt", "€.txt"),
    ('attachment; filename="C:\\Users\\me\\path.txt"', "path.txt"),
])
def test_content_disposition_file_names(sword: SwordServer, disposition: str,
                                        expected: str) -> None:
    response = post(sword, b"data", Content_Type="text/plain",
                    Content_Disposition=disposition)
    assert response.status_code == 201, response.text
    item = item_id_of(response.headers["Location"])
    assert bundles_of(sword.repo, item)["ORIGINAL"] == [expected]


def test_raw_utf8_file_name(sword: SwordServer) -> None:
    name = "Zażółć gęślą jaźń.txt"
    response = requests.post(sword.col_iri, data=b"data", auth=ADMIN, timeout=30, headers={
        "Content-Type": "text/plain",
        "Content-Disposition": f'attachment; filename="{name}"'.encode().decode("latin-1")})
    assert response.status_code == 201, response.text
    assert bundles_of(sword.repo, item_id_of(response.headers["Location"]))["ORIGINAL"] == \
        [name]


def test_missing_file_name_and_bad_headers(sword: SwordServer) -> None:
    before = residue(sword.repo)
    missing = post(sword, b"data", Content_Type="text/plain")
    assert missing.status_code == 400 and error_href(missing) == ERRORS + "ErrorBadRequest"
    assert "Content-Disposition" in missing.text
    bad = post(sword, b"data", Content_Disposition="attachment; filename=a.txt",
               In_Progress="perhaps")
    assert bad.status_code == 400 and "In-Progress" in bad.text
    md5 = post(sword, b"data", Content_Disposition="attachment; filename=a.txt",
               Content_MD5="not-a-checksum")
    assert md5.status_code == 400
    assert residue(sword.repo) == before


def test_content_md5_in_hex_any_case_and_base64(sword: SwordServer) -> None:
    data = b"checked bytes"
    digest = hashlib.md5(data)
    for value in (digest.hexdigest().upper(), base64.b64encode(digest.digest()).decode()):
        response = post(sword, data, Content_Disposition="attachment; filename=c.txt",
                        Content_MD5=value)
        assert response.status_code == 201, response.text
    wrong = post(sword, data, Content_Disposition="attachment; filename=c.txt",
                 Content_MD5=hashlib.md5(b"other").hexdigest())
    assert wrong.status_code == 412 and error_href(wrong) == ERRORS + "ErrorChecksumMismatch"


def test_slug_and_entry_in_latin1_and_utf8(sword: SwordServer) -> None:
    entry = ('<entry xmlns="http://www.w3.org/2005/Atom" '
             'xmlns:dcterms="http://purl.org/dc/terms/" '
             'xmlns:dc="http://purl.org/dc/elements/1.1/">'
             '<title>Atom title</title><dcterms:title xml:lang="{lang}">{title}</dcterms:title>'
             '<dc:subject>Subject</dc:subject><other xmlns="urn:x">ignored</other></entry>')
    latin = entry.format(lang="fr", title="Élève").encode("latin-1")
    response = post(sword, latin, Content_Type="application/atom+xml;type=entry",
                    Slug="my%20slug", In_Progress="true")
    assert response.status_code == 201, response.text
    item = item_id_of(response.headers["Location"])
    values = item_values(sword.repo, item)
    assert values["dc.title"] == ["Élève"]
    assert values["dc.subject"] == ["Subject"]
    assert values["sword.slug"] == ["my slug"]
    assert "urn:x" in etree.fromstring(response.content).findtext(f"{SWORD}verboseDescription")
    utf8 = entry.format(lang="pl", title="Zażółć").encode("utf-8")
    response = post(sword, utf8, Content_Type="application/atom+xml")
    assert response.status_code == 201
    assert item_values(sword.repo, item_id_of(response.headers["Location"]))["dc.title"] == \
        ["Zażółć"]
    assert item_state(sword.repo, item_id_of(response.headers["Location"])) == \
        m.WorkflowState.ARCHIVED


def test_hostile_entries_are_refused(sword: SwordServer) -> None:
    before = residue(sword.repo)
    doctype = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x "y">]>'
               b'<entry xmlns="http://www.w3.org/2005/Atom"><title>&x;</title></entry>')
    for body in (doctype, b"<entry>not closed", b"<feed xmlns='http://www.w3.org/2005/Atom'/>"):
        response = post(sword, body, Content_Type="application/atom+xml;type=entry")
        assert response.status_code == 400, response.text
        assert error_href(response) == ERRORS + "ErrorBadRequest"
    assert residue(sword.repo) == before


# ---------------------------------------------------------------------------------------
# Multipart


ENTRY = (b'<?xml version="1.0" encoding="utf-8"?>'
         b'<entry xmlns="http://www.w3.org/2005/Atom" xmlns:dcterms="http://purl.org/dc/terms/">'
         b'<title>Multipart</title><dcterms:creator>Author, A.</dcterms:creator></entry>')


def _multipart_variants() -> list[tuple[str, list[tuple[dict[str, str], bytes]], str]]:
    payload = zip_bytes({"inside.txt": b"inside"})
    md5 = hashlib.md5(payload).hexdigest()
    encoded = base64.encodebytes(payload)
    media = {"Content-Type": "application/zip", "Packaging": SIMPLEZIP, "Content-MD5": md5,
             "Content-Disposition": 'attachment; name="payload"; filename="p.zip"'}
    atom = {"Content-Type": 'application/atom+xml; charset="utf-8"',
            "Content-Disposition": 'attachment; name="atom"'}
    return [
        ("raw binary parts", [(atom, ENTRY), (media, payload)], "multipart/related"),
        ("base64 declared on both",
         [({**atom, "Content-Transfer-Encoding": "base64"}, base64.encodebytes(ENTRY)),
          ({**media, "Content-Transfer-Encoding": "base64"}, encoded)], "multipart/related"),
        ("sword2 0.3: entry base64 undeclared",
         [({**atom, "MIME-Version": "1.0"}, base64.b64encode(ENTRY)),
          ({**media, "MIME-Version": "1.0", "Content-Transfer-Encoding": "base64"},
           base64.b64encode(payload))], "multipart/related"),
        ("Java client: payload base64 undeclared",
         [(atom, ENTRY), (media, encoded)], "multipart/related"),
        ("form-data, media first, no names",
         [({"Content-Type": "application/zip", "Packaging": SIMPLEZIP,
            "Content-Disposition": 'form-data; filename="p.zip"'}, payload),
          ({"Content-Type": "application/atom+xml"}, ENTRY)], "multipart/form-data"),
    ]


@pytest.mark.parametrize("variant", _multipart_variants(), ids=lambda v: v[0])
def test_multipart_variants(sword: SwordServer,
                            variant: tuple[str, list[tuple[dict[str, str], bytes]], str]
                            ) -> None:
    _label, parts, kind = variant
    boundary = "==boundary-7f3a=="
    body = multipart_body(parts, boundary)
    response = post(sword, body, Content_Type=f'{kind}; boundary="{boundary}"; '
                    'type="application/atom+xml"')
    assert response.status_code == 201, response.text
    item = item_id_of(response.headers["Location"])
    values = item_values(sword.repo, item)
    assert values["dc.title"] == ["Multipart"]
    assert values["dc.contributor.author"] == ["Author, A."]
    assert bundles_of(sword.repo, item) == {"ORIGINAL": ["inside.txt"], "SWORD": ["p.zip"]}


def test_multipart_refusals_leave_nothing(sword: SwordServer) -> None:
    before = residue(sword.repo)
    boundary = "b0undary"
    media = {"Content-Type": "text/plain", "Content-MD5": "0" * 32,
             "Content-Disposition": 'attachment; name="payload"; filename="t.txt"'}
    atom = {"Content-Type": "application/atom+xml", "Content-Disposition": "attachment; "
            'name="atom"'}
    wrong_md5 = multipart_body([(atom, ENTRY), (media, b"text")], boundary)
    response = post(sword, wrong_md5, Content_Type=f"multipart/related; boundary={boundary}")
    assert response.status_code == 412
    truncated = multipart_body([(atom, ENTRY), (media, b"text")], boundary)[:-30]
    response = post(sword, truncated, Content_Type=f"multipart/related; boundary={boundary}")
    assert response.status_code == 400 and "incomplete" in response.text
    no_boundary = post(sword, wrong_md5, Content_Type="multipart/related")
    assert no_boundary.status_code == 400
    assert residue(sword.repo) == before


# ---------------------------------------------------------------------------------------
# curl, OJS and Vireo


def test_curl_simplezip_deposit_of_a_corpus_package(sword: SwordServer) -> None:
    path = corpus_path("mets-sip", "dspace-sword2-tests", "example.zip")
    data = path.read_bytes()
    response = post(sword, data, Content_Type="application/zip",
                    Content_Disposition="attachment; filename=example.zip",
                    Content_MD5=hashlib.md5(data).hexdigest(), Packaging=SIMPLEZIP)
    assert response.status_code == 201, response.text
    item = item_id_of(response.headers["Location"])
    assert sorted(bundles_of(sword.repo, item)["ORIGINAL"]) == [
        "mets.xml", "pdf1.pdf", "pdf2.pdf", "pdf3.pdf"]


def _mets_packager_installed() -> bool:
    from packagers.registry import default_registry

    return default_registry().by_sword_packaging(METS_SIP) is not None


@pytest.mark.parametrize(("sample", "header", "packaging"), [
    (("dspace-sword2-tests", "example.zip"), "Packaging", LEGACY_METS_SIP),  # OJS 2.x
    (("swordapp-JavaClient2.0", "example2.zip"), "X-Packaging", LEGACY_METS_SIP),  # Vireo
    (("swordappv2-php-library", "sword-article.zip"), "Packaging", METS_SIP),  # OJS 3
])
def test_mets_sip_deposits_as_ojs_and_vireo_send_them(
        sword: SwordServer, sample: tuple[str, str], header: str, packaging: str) -> None:
    """curl -u USER:PASS -H 'Content-Type: application/zip' -H 'Packaging: ...'
    --data-binary @package.zip COL-IRI -- with SWORD 1.3's packaging IRI and header names
    as OJS 2 and Vireo still send them."""
    if not _mets_packager_installed():
        pytest.skip(f"no installed packager declares the SWORD packaging {METS_SIP} "
                    "(the METS SIP packager is not written yet)")
    response = _curl_mets(sword, corpus_path("mets-sip", *sample), header, packaging)
    assert response.status_code == 201, response.text
    _assert_complete_item(sword, response, corpus_path("mets-sip", *sample))


def test_vireo_package_with_a_broken_manifest(sword: SwordServer) -> None:
    """Vireo's own test package lists pdf2.jpg and pdf3.jpg, which it does not hold: it
    either makes a complete item or is refused whole, with the findings."""
    if not _mets_packager_installed():
        pytest.skip(f"no installed packager declares the SWORD packaging {METS_SIP} "
                    "(the METS SIP packager is not written yet)")
    path = corpus_path("mets-sip", "vireo-tests", "Sword1_ValidDeposit.zip")
    before = residue(sword.repo)
    response = _curl_mets(sword, path, "X-Packaging", LEGACY_METS_SIP)
    if response.status_code == 201:
        _assert_complete_item(sword, response, path)
    else:
        assert response.status_code == 415, response.text
        assert error_href(response) == ERRORS + "ErrorContent"
        assert "pdf2.jpg" in response.text
        assert residue(sword.repo) == before


def _curl_mets(sword: SwordServer, path: Path, header: str,
               packaging: str) -> requests.Response:
    data = path.read_bytes()
    return requests.post(sword.col_iri, data=data, auth=ADMIN, timeout=60, headers={
        "Content-Type": "application/zip", "Content-MD5": hashlib.md5(data).hexdigest(),
        "Content-Disposition": f"filename={path.name}", header: packaging,
        "X-No-Op": "false", "User-Agent": "curl/8"})


def _assert_complete_item(sword: SwordServer, response: requests.Response,
                          path: Path) -> None:
    item = item_id_of(response.headers["Location"])
    assert item_state(sword.repo, item) == m.WorkflowState.ARCHIVED
    assert item_values(sword.repo, item).get("dc.title")
    files = bundles_of(sword.repo, item)
    with zipfile.ZipFile(path) as zf:
        pdfs = sorted(n for n in zf.namelist() if n.endswith(".pdf"))
    assert sorted(f for f in files["ORIGINAL"] if f.endswith(".pdf")) == pdfs
    assert files["SWORD"] == [path.name]


def test_legacy_packaging_iris_are_read_as_sword2(sword: SwordServer) -> None:
    data = zip_bytes({"x.txt": b"x"})
    response = post(sword, data, Content_Disposition="attachment; filename=x.zip",
                    X_Packaging="http://purl.org/net/sword-types/SimpleZip")
    assert response.status_code == 201, response.text
    assert bundles_of(sword.repo, item_id_of(response.headers["Location"]))["ORIGINAL"] == \
        ["x.txt"]


# ---------------------------------------------------------------------------------------
# Files and edge operations


def test_file_iris(sword: SwordServer) -> None:
    response = post(sword, zip_bytes({"a.txt": b"a", "b.txt": b"b"}), In_Progress="true",
                    Content_Disposition="attachment; filename=ab.zip", Packaging=SIMPLEZIP)
    item = item_id_of(response.headers["Location"])
    derived = receipt_links(response)[SWORD.strip("{}") + "derivedResource"]
    assert len(derived) == 2
    with sword.admin_session() as session:
        assert session.get(derived[0], timeout=30).content == b"a"
        replaced = session.put(derived[0], data=b"A!", timeout=30,
                               headers={"Content-Disposition": "attachment; filename=unnamed"})
        assert replaced.status_code == 204
        assert bundles_of(sword.repo, item)["ORIGINAL"] == ["a.txt", "b.txt"]
        assert session.get(derived[0], timeout=30).content == b"A!"  # same IRI
        assert session.delete(derived[1], timeout=30).status_code == 204
        assert bundles_of(sword.repo, item)["ORIGINAL"] == ["a.txt"]
        complete = session.post(response.headers["Location"], timeout=30,
                                headers={"In-Progress": "false"})
        assert complete.status_code == 200
        assert complete.headers["Content-Type"] == ENTRY_TYPE + ";charset=utf-8"
        refused = session.delete(derived[0], timeout=30)
        assert refused.status_code == 405


def test_other_packagings_only_make_new_deposits(sword: SwordServer) -> None:
    response = post(sword, b"data", In_Progress="true",
                    Content_Disposition="attachment; filename=d.txt")
    em = receipt_links(response)["edit-media"][0]
    with sword.admin_session() as session:
        refused = session.post(em, data=b"x", timeout=30, headers={
            "Content-Disposition": "attachment; filename=x.zip",
            "Packaging": "http://purl.org/net/sword/package/BagIt"})
        assert refused.status_code == 415 and error_href(refused) == ERRORS + "ErrorContent"
        entry_to_em = session.post(em, data=ENTRY, timeout=30,
                                   headers={"Content-Type": "application/atom+xml"})
        assert entry_to_em.status_code == 415


def test_workspace_stays_until_completed_and_then_cannot_go_back(sword: SwordServer) -> None:
    response = post(sword, b"data", In_Progress="true",
                    Content_Disposition="attachment; filename=d.txt")
    edit = response.headers["Location"]
    with sword.admin_session() as session:
        still = session.post(edit, timeout=30, headers={"In-Progress": "true"})
        assert still.status_code == 200
        assert item_state(sword.repo, item_id_of(edit)) == m.WorkflowState.WORKSPACE
        assert session.post(edit, timeout=30).status_code == 200  # no header: complete
        assert item_state(sword.repo, item_id_of(edit)) == m.WorkflowState.ARCHIVED
        again = session.post(edit, timeout=30)
        assert again.status_code == 200 and "already complete" in again.text
        back = session.post(edit, timeout=30, headers={"In-Progress": "true"})
        assert back.status_code == 405


def test_unknown_person_on_behalf_and_mediator_rights(repo: Repository, admin: Any) -> None:
    with serving(repo, **{"sword.mediation": True}) as sword:
        add_person(sword.repo, "author@example.org", collection=sword.collection,
                   collection_rights=(m.Action.ADD,))
        add_person(sword.repo, "mediator@example.org", collection=sword.collection,
                   collection_rights=(m.Action.ADD,))
        unknown = post(sword, b"x", Content_Disposition="attachment; filename=x.txt",
                       On_Behalf_Of="ghost@example.org")
        assert unknown.status_code == 403
        assert error_href(unknown) == ERRORS + "TargetOwnerUnknown"
        plain_mediator = post(sword, b"x", auth=("mediator@example.org", "pw"),
                              Content_Disposition="attachment; filename=x.txt",
                              On_Behalf_Of="author@example.org")
        assert plain_mediator.status_code == 403  # ADD is not enough to act for others
        assert "ADMIN" in plain_mediator.text


def test_sword_root_is_configurable(repo: Repository, admin: Any) -> None:
    with serving(repo, **{"sword.root": "/deposit/v2"}) as sword:
        assert sword.url.endswith("/deposit/v2")
        response = post(sword, b"x", Content_Disposition="attachment; filename=x.txt")
        assert response.status_code == 201
        assert response.headers["Location"].startswith(sword.url + "/edit/")


def test_content_of_an_item_with_a_file_name_that_needs_quoting(sword: SwordServer,
                                                                tmp_path: Path) -> None:
    name = 'quote " and back\\slash.txt'
    response = post(sword, b"q", Content_Disposition="attachment; filename*=UTF-8''"
                    + quote(name, safe=""))
    assert response.status_code == 201, response.text
    with sword.admin_session() as session:
        content = session.get(receipt_links(response)["edit-media"][0], timeout=30)
        with zipfile.ZipFile(io.BytesIO(content.content)) as zf:
            assert len(zf.namelist()) == 1


def test_oversized_values_are_the_clients_not_a_server_error(sword: SwordServer) -> None:
    long_name = "n" * 400 + ".txt"
    response = post(sword, b"x", Content_Type="application/" + "x" * 300,
                    Content_Disposition=f"attachment; filename={long_name}")
    assert response.status_code == 201, response.text
    item = item_id_of(response.headers["Location"])
    assert bundles_of(sword.repo, item)["ORIGINAL"] == [long_name]
    entry = ('<entry xmlns="http://www.w3.org/2005/Atom" '
             'xmlns:dcterms="http://purl.org/dc/terms/">'
             f'<dcterms:title xml:lang="{"x" * 60}">T</dcterms:title></entry>').encode()
    response = post(sword, entry, Content_Type="application/atom+xml")
    assert response.status_code == 201, response.text
    too_long = post(sword, b"x", Content_Disposition="attachment; filename=a.txt",
                    Slug="s" * 5000)
    assert too_long.status_code == 400 and "Slug" in too_long.text
