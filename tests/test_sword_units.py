"""Unit tests of the SWORD building blocks: header parsing, the streaming multipart reader,
Atom entry mapping, IRIs and error classification."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import pytest
from sword_support import multipart_body

from packagers.errors import PackageValidationError, UnknownPackager
from server.errors import ChecksumMismatch, InvalidInput, SizeLimitExceeded
from server.sword import atom, errors, iris, multipart
from server.sword import headers as h

# ---------------------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize(("value", "expected"), [
    ("attachment; filename=a.zip", "a.zip"),
    ('attachment; filename="a b.zip"', "a b.zip"),
    ('attachment;filename="say \\"hi\\".txt"', 'say "hi".txt'),
    ("attachment; filename=my%20file%20%C3%A9.zip", "my file é.zip"),
    ("attachment; filename=%E9t%E9.txt", "été.txt"),  # Latin-1 percent-encoding
    ("attachment; filename*=UTF-8''na%C3%AFve.txt", "naïve.txt"),
    ("attachment; filename*=iso-8859-1'en'%A3rates.txt", "£rates.txt"),
    ("attachment; filename=x.txt; filename*=UTF-8''y.txt", "y.txt"),
    ("filename=bare.txt", "bare.txt"),
    ("attachment; filename=../../etc/passwd", "passwd"),
    ("attachment", None),
    ("", None),
    ('attachment; filename=""', None),
])
def test_content_disposition(value: str, expected: str | None) -> None:
    assert h.filename(value) == expected


def test_utf8_bytes_in_headers_are_read_as_utf8() -> None:
    raw = 'attachment; filename="żółw.txt"'.encode().decode("latin-1")
    assert h.filename(raw) == "żółw.txt"
    assert h.as_text("Caf\xe9") == "Caf\xe9"  # real Latin-1 stays


def test_booleans_and_packaging() -> None:
    assert h.parse_bool(" TRUE ", "In-Progress", False) is True
    assert h.parse_bool(None, "In-Progress", False) is False
    with pytest.raises(errors.BadRequest):
        h.parse_bool("yes", "In-Progress", False)
    assert h.normalise_packaging("http://purl.org/net/sword-types/METSDSpaceSIP") == \
        "http://purl.org/net/sword/package/METSDSpaceSIP"
    assert h.normalise_packaging(" <http://purl.org/net/sword/package/Binary> ") == \
        "http://purl.org/net/sword/package/Binary"
    assert h.normalise_packaging("  ") is None
    assert h.media_type('Multipart/Related; boundary="a;b"; type="x"') == (
        "multipart/related", {"boundary": "a;b", "type": "x"})


def test_headers_are_bounded() -> None:
    with pytest.raises(errors.BadRequest):
        h.header({"HTTP_SLUG": "x" * 5000}, "HTTP_SLUG")
    assert h.slug({"HTTP_SLUG": "a%2Fb\x07c"}) == "a/bc"


# ---------------------------------------------------------------------------------------
# Multipart


def _read(body: bytes, boundary: str, tmp_path: Path, *, block: int = 7,
          limit: int = 10_000_000) -> multipart.Multipart:
    return multipart.read(io.BytesIO(body), boundary, staging=tmp_path, limit=limit,
                          block_size=block)


@pytest.mark.parametrize("block", [1, 3, 7, 64, 65536])
def test_boundaries_across_blocks(tmp_path: Path, block: int) -> None:
    payload = b"\r\n--almost the boundary\r\n--bound" + bytes(range(256)) * 3
    body = b"preamble\r\n" + multipart_body(
        [({"Content-Disposition": 'attachment; name="atom"'}, b"<entry/>"),
         ({"Content-Disposition": 'attachment; name="payload"; filename="f.bin"'}, payload)],
        "boundary") + b"epilogue"
    parts = _read(body, "boundary", tmp_path, block=block)
    entry, media = parts.entry_and_media()
    assert entry is not None and media is not None
    assert entry.path.read_bytes() == b"<entry/>"
    assert media.path.read_bytes() == payload
    assert media.digests.md5 == hashlib.md5(payload).hexdigest()
    assert media.filename == "f.bin"
    parts.discard()
    assert list(tmp_path.iterdir()) == []


def test_base64_declared_and_undeclared(tmp_path: Path) -> None:
    data = b"\x00\x01binary\xff" * 50
    md5 = hashlib.md5(data).hexdigest()
    body = multipart_body(
        [({"Content-Type": "application/atom+xml"}, base64.b64encode(b"<entry/>")),
         ({"Content-Transfer-Encoding": "BASE64", "Content-MD5": md5},
          base64.encodebytes(data)),
         ({"Content-MD5": md5}, base64.encodebytes(data))], "b")
    parts = _read(body, "b", tmp_path)
    assert [p.path.read_bytes() for p in parts.parts] == [b"<entry/>", data, data]
    assert [p.decoded_from_base64 for p in parts.parts] == [True, True, True]
    # base64-looking text without a checksum saying otherwise stays as it is
    plain = multipart_body([({"Content-Disposition": 'attachment; name="payload"'},
                             b"QUJD")], "b")
    (part,) = _read(plain, "b", tmp_path).parts
    assert part.path.read_bytes() == b"QUJD"


def test_multipart_refusals(tmp_path: Path) -> None:
    good = multipart_body([({"X": "y"}, b"data")], "b")
    with pytest.raises(errors.BadRequest, match="incomplete"):
        _read(good[:-8], "b", tmp_path)
    with pytest.raises(errors.BadRequest, match="incomplete"):
        _read(b"no parts at all", "b", tmp_path)
    with pytest.raises(errors.BadRequest, match="more than"):
        _read(multipart_body([({}, b"x")] * 5, "b"), "b", tmp_path)
    with pytest.raises(errors.BadRequest, match="transfer encoding"):
        _read(multipart_body([({"Content-Transfer-Encoding": "x-uue"}, b"x")], "b"), "b",
              tmp_path)
    with pytest.raises(errors.BadRequest, match="malformed header"):
        _read(b"--b\r\nno colon here\r\n\r\nx\r\n--b--\r\n", "b", tmp_path)
    with pytest.raises(errors.BadRequest, match="not valid base64"):
        _read(multipart_body([({"Content-Transfer-Encoding": "base64"}, b"@@@@")], "b"), "b",
              tmp_path)
    with pytest.raises(SizeLimitExceeded):
        _read(multipart_body([({}, b"x" * 5000)], "b"), "b", tmp_path, limit=100)
    with pytest.raises(errors.BadRequest, match="boundary"):
        _read(good, "", tmp_path)
    undeclared_wrong = multipart_body([({"Content-MD5": "0" * 32}, base64.b64encode(b"abc"))],
                                      "b")
    (part,) = _read(undeclared_wrong, "b", tmp_path).parts
    assert part.path.read_bytes() == base64.b64encode(b"abc")  # neither form matches
    with pytest.raises(ChecksumMismatch):
        multipart.verify_md5(part, "media part")
    part.discard()
    assert list(tmp_path.iterdir()) == []


def test_part_md5_helpers(tmp_path: Path) -> None:
    assert multipart.md5_of(base64.b64encode(hashlib.md5(b"x").digest()).decode()) == \
        hashlib.md5(b"x").hexdigest()
    with pytest.raises(errors.BadRequest):
        multipart.md5_of("zzz")
    (part,) = _read(multipart_body([({"Content-MD5": "0" * 32}, b"data")], "b"), "b",
                    tmp_path).parts
    with pytest.raises(ChecksumMismatch):
        multipart.verify_md5(part, "media part")


# ---------------------------------------------------------------------------------------
# Entries


def _entry(tmp_path: Path, text: bytes, content_type: str | None = None) -> atom.EntryData:
    path = tmp_path / "entry.xml"
    path.write_bytes(text)
    return atom.parse_entry(path, content_type)


def test_entry_mapping(tmp_path: Path) -> None:
    data = _entry(tmp_path, b"""<?xml version="1.0" encoding="utf-8"?>
<entry xmlns="http://www.w3.org/2005/Atom" xmlns:dcterms="http://purl.org/dc/terms/"
       xmlns:dc="http://purl.org/dc/elements/1.1/">
  <title>Atom title (not used)</title>
  <summary>Atom summary</summary>
  <author><name>Atom Author</name></author>
  <dcterms:title xml:lang="en">DC title</dcterms:title>
  <dcterms:creator>Creator, One</dcterms:creator>
  <dc:creator>Creator, Two</dc:creator>
  <dcterms:issued>2020</dcterms:issued>
  <dcterms:audience>Students</dcterms:audience>
  <dcterms:author>Alias, Three</dcterms:author>
  <dcterms:nonsense>dropped</dcterms:nonsense>
  <dcterms:subject>   </dcterms:subject>
  <foo xmlns="urn:other">dropped too</foo>
</entry>""")
    fields = [(v.field, v.value, v.language) for v in data.values]
    assert ("dc.title", "DC title", "en") in fields
    assert ("dc.contributor.author", "Creator, One", None) in fields
    assert ("dc.contributor.author", "Creator, Two", None) in fields
    assert ("dc.contributor.author", "Alias, Three", None) in fields
    assert ("dc.date.issued", "2020", None) in fields
    assert ("dcterms.audience", "Students", None) in fields
    assert ("dc.description.abstract", "Atom summary", None) in fields  # no DC abstract
    assert not any(f[1] in ("Atom title (not used)", "Atom Author") for f in fields)
    assert not any(f[0] == "dc.subject" for f in fields)
    assert set(data.ignored) == {"dcterms:nonsense", "{urn:other}foo"}
    assert data.has_title


def test_entry_encodings_and_refusals(tmp_path: Path) -> None:
    body = '<entry xmlns="http://www.w3.org/2005/Atom"><title>Café</title></entry>'
    assert _entry(tmp_path, body.encode("latin-1")).values[0].value == "Café"
    assert _entry(tmp_path, body.encode("cp1252"),
                  "application/atom+xml; charset=windows-1252").values[0].value == "Café"
    declared = ('<?xml version="1.0" encoding="ISO-8859-2"?>'
                '<entry xmlns="http://www.w3.org/2005/Atom"><title>Łódź</title></entry>')
    assert _entry(tmp_path, declared.encode("iso-8859-2")).values[0].value == "Łódź"
    with pytest.raises(errors.BadRequest, match="empty"):
        _entry(tmp_path, b"  ")
    with pytest.raises(errors.BadRequest, match="not an Atom entry"):
        _entry(tmp_path, b"<entry/>")
    with pytest.raises(InvalidInput):
        _entry(tmp_path, b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><entry/>')


def test_receipt_values_go_back_to_dcterms() -> None:
    from server.services.metadata import Value

    shown = atom.dcterms_of([Value("dc.contributor.author", "A"), Value("dc.title", "T"),
                             Value("dc.date.accessioned", "2020"),
                             Value("dc.description.provenance", "hidden"),
                             Value("dcterms.audience", "S"), Value("local.x", "no"),
                             Value("dc.identifier.uri", "http://hdl")])
    assert [(term, v.value) for term, v in shown] == [
        ("creator", "A"), ("title", "T"), ("date", "2020"), ("audience", "S"),
        ("identifier", "http://hdl")]


# ---------------------------------------------------------------------------------------
# IRIs and errors


def test_iris_round_trip() -> None:
    import uuid

    key = uuid.uuid4()
    links = iris.Iris("http://h:1/app", "/sword")
    for kind, href in ((iris.EDIT, links.edit(key)), (iris.EDIT_MEDIA, links.edit_media(key)),
                       (iris.MEDIA_FEED, links.media_feed(key)),
                       (iris.FILE, links.file(key, "a/b c.txt")),
                       (iris.STATEMENT_ATOM, links.statement_atom(key)),
                       (iris.STATEMENT_ORE, links.statement_ore(key)),
                       (iris.COLLECTION, links.collection(key))):
        path = href.removeprefix("http://h:1/app")
        route = iris.parse(path, "/sword")
        assert route is not None and route.kind == kind and route.uuid == key
    assert iris.parse("/sword", "/sword") == iris.Route(iris.SERVICE)
    assert iris.parse("/swordfish", "/sword") is None
    assert iris.parse("/sword/edit/../x", "/sword") is None
    assert iris.parse("/sword/collection/123456789/2", "/sword") == \
        iris.Route(iris.COLLECTION, "123456789/2")
    assert iris.request_base({"wsgi.url_scheme": "https", "HTTP_HOST": "evil/x",
                              "SERVER_NAME": "repo", "SERVER_PORT": "443"}) == "https://repo"


def test_error_classification() -> None:
    assert errors.classify(ChecksumMismatch("x")).status == 412
    assert errors.classify(SizeLimitExceeded("x")).iri == errors.MAX_UPLOAD_SIZE_EXCEEDED
    unknown = UnknownPackager("x")
    assert errors.classify(unknown).status == 415
    assert errors.classify(unknown, retrieving=True).status == 406
    assert errors.classify(PackageValidationError("x")).iri == errors.ERROR_CONTENT
    assert errors.classify(InvalidInput("x")).iri == errors.BAD_REQUEST
    crash = errors.classify(RuntimeError("secret detail"))
    assert crash.status == 500 and "secret" not in errors.verbose_text(crash)
    document = atom.error_document(None, errors.classify(errors.MediationNotAllowed("m")))
    assert b'href="http://purl.org/net/sword/error/MediationNotAllowed"' in document
    assert b"http://purl.org/net/sword/terms/" in document
