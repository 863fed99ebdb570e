"""Reading over HTTP, in-process: packages, ranges, conditional requests, bitstreams,
PROPFIND, the browse page, errors and permissions."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from http_support import ADMIN, USER, Dav, call
from lxml import etree

from server import models as m
from server.services import authz

pytest_plugins = ("http_fixtures",)

DAV_NS = {"D": "DAV:", "p": "urn:davpack:props"}


def _zip_names(body: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return sorted(zf.namelist())


def test_get_default_package_on_every_url_of_an_item(dav: Dav) -> None:
    tree = dav.tree
    paths = [tree.item_path, tree.item_path + "/",
             f"/dav/Community A/Collection 1/{tree.item_file()}",
             f"/dav/Community A/Collection 1/A thesis [{tree.item_handle.replace('/', '-')}]"]
    bodies = set()
    for path in paths:
        response = dav("GET", path)
        assert response.status == 200, (path, response.text)
        assert response.header("Content-Type") == "application/zip"
        assert int(response.header("Content-Length") or -1) == len(response.body)
        assert response.header("Accept-Ranges") == "bytes"
        assert response.header("X-Davpack-Package") == "TESTZIP"
        assert response.header("Packaging") == "http://example.org/testzip"
        assert response.header("ETag", ).startswith('"')  # type: ignore[union-attr]
        assert response.header("Last-Modified")
        assert f'filename="{tree.item_file()}"' in (response.header("Content-Disposition") or "")
        bodies.add(response.body)
    assert len(bodies) == 1  # deterministic: same bytes whichever URL
    names = _zip_names(bodies.pop())
    assert names == ["files/ORIGINAL/data.csv", "files/ORIGINAL/thesis.pdf", "manifest.json"]


def test_package_parameter_options_and_aliases(dav: Dav) -> None:
    path = dav.tree.item_path
    full = dav("GET", path, query="package=TESTZIP")
    alias = dav("GET", path, query="package=tz")
    assert full.body == alias.body
    only = dav("GET", path, query="package=TESTZIP&includeBundles=LICENSE&includeBundles=ORIGINAL")
    assert _zip_names(only.body) == _zip_names(full.body)
    none = dav("GET", path, query="package=TESTZIP&includeBundles=LICENSE")
    assert _zip_names(none.body) == ["manifest.json"]
    assert none.header("ETag") != full.header("ETag")
    titled = dav("GET", path, query="title=Other")
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(titled.body)).read("manifest.json"))
    assert manifest["title"] == "Other"


def test_unknown_or_unsuitable_package_is_406_listing_what_works(dav: Dav) -> None:
    unknown = dav("GET", dav.tree.item_path, query="package=NOPE")
    assert unknown.status == 406
    body = unknown.json()
    assert body["error"] == "NotAcceptable"
    assert "TESTSTREAM, TESTZIP" in body["message"]
    wrong_type = dav("GET", dav.tree.collection_path, query="package=TESTSTREAM")
    assert wrong_type.status == 406
    assert wrong_type.json()["details"][0]["expected"] == "TESTZIP"
    bitstream = dav("GET", dav.tree.item_path + "/ORIGINAL/data.csv", query="package=TESTZIP")
    assert bitstream.status == 406


def test_unknown_option_is_400(dav: Dav) -> None:
    response = dav("GET", dav.tree.item_path, query="package=TESTZIP&bogus=1")
    assert response.status == 400
    assert response.json()["details"] == [
        {"expected": "includeBundles, title", "field": "bogus", "message": "unknown option"}]


def test_head_has_the_headers_and_no_body(dav: Dav) -> None:
    get = dav("GET", dav.tree.item_path)
    head = dav("HEAD", dav.tree.item_path)
    assert head.status == 200 and head.body == b""
    for name in ("Content-Length", "ETag", "Last-Modified", "Content-Type",
                 "Content-Disposition"):
        assert head.header(name) == get.header(name)


def test_conditional_get(dav: Dav) -> None:
    first = dav("GET", dav.tree.item_path)
    etag = first.header("ETag")
    assert etag is not None
    same = dav("GET", dav.tree.item_path, headers={"If-None-Match": etag})
    assert same.status == 304 and same.body == b""
    assert same.header("ETag") == etag
    weak = dav("GET", dav.tree.item_path, headers={"If-None-Match": f"W/{etag}, \"x\""})
    assert weak.status == 304
    since = dav("GET", dav.tree.item_path,
                headers={"If-Modified-Since": first.header("Last-Modified") or ""})
    assert since.status == 304
    other = dav("GET", dav.tree.item_path, headers={"If-None-Match": '"other"'})
    assert other.status == 200
    failed = dav("GET", dav.tree.item_path, headers={"If-Match": '"other"'})
    assert failed.status == 412
    assert dav("GET", dav.tree.item_path, headers={"If-Match": etag}).status == 200
    assert dav("GET", dav.tree.item_path,
               headers={"If-Modified-Since": "not a date"}).status == 200


def test_ranges(dav: Dav) -> None:
    whole = dav("GET", dav.tree.item_path)
    size = len(whole.body)
    part = dav("GET", dav.tree.item_path, headers={"Range": "bytes=100-1099"})
    assert part.status == 206
    assert part.body == whole.body[100:1100]
    assert part.header("Content-Range") == f"bytes 100-1099/{size}"
    assert part.header("Content-Length") == "1000"
    tail = dav("GET", dav.tree.item_path, headers={"Range": "bytes=-22"})
    assert tail.status == 206 and tail.body == whole.body[-22:]
    rest = dav("GET", dav.tree.item_path, headers={"Range": f"bytes={size - 5}-"})
    assert rest.body == whole.body[-5:]
    beyond = dav("GET", dav.tree.item_path, headers={"Range": f"bytes={size}-"})
    assert beyond.status == 416
    assert beyond.header("Content-Range") == f"bytes */{size}"
    several = dav("GET", dav.tree.item_path, headers={"Range": "bytes=0-1,5-6"})
    assert several.status == 200 and several.body == whole.body
    junk = dav("GET", dav.tree.item_path, headers={"Range": "pages=1-2"})
    assert junk.status == 200
    etag = whole.header("ETag") or ""
    resumed = dav("GET", dav.tree.item_path, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert resumed.status == 206 and resumed.body == whole.body[10:20]
    changed = dav("GET", dav.tree.item_path, headers={"Range": "bytes=10-19",
                                                       "If-Range": '"stale"'})
    assert changed.status == 200 and changed.body == whole.body
    head = dav("HEAD", dav.tree.item_path, headers={"Range": "bytes=0-9"})
    assert head.status == 200  # ranges are for GET


def test_streamed_package_gets_an_exact_length_and_no_leftovers(dav: Dav) -> None:
    response = dav("GET", dav.tree.item_path, query="package=TESTSTREAM")
    assert response.status == 200
    assert int(response.header("Content-Length") or -1) == len(response.body)
    assert response.body.startswith(b"A thesis\n")
    assert response.header("Content-Type") == "text/plain"
    ranged = dav("GET", dav.tree.item_path, query="package=TESTSTREAM",
                 headers={"Range": "bytes=2-5"})
    assert ranged.status == 206 and ranged.body == response.body[2:6]
    staging = dav.repo.config.path("server.staging_dir")
    assert list(staging.iterdir()) == []


def test_bitstreams(dav: Dav) -> None:
    pdf = dav.tree.files["thesis.pdf"]
    response = dav("GET", dav.tree.item_path + "/ORIGINAL/thesis.pdf")
    assert response.status == 200 and response.body == pdf
    assert response.header("Content-Type") == "application/pdf"
    assert (response.header("Content-Disposition") or "").startswith("inline;")
    assert response.header("Content-Security-Policy") == "sandbox"
    csv = dav("GET", "/dav/Community A/Collection 1/A thesis [123456789-4]/ORIGINAL/data.csv")
    assert csv.body == dav.tree.files["data.csv"]
    assert (csv.header("Content-Disposition") or "").startswith("attachment;")
    part = dav("GET", dav.tree.item_path + "/ORIGINAL/thesis.pdf",
               headers={"Range": "bytes=9-18"})
    assert part.status == 206 and part.body == pdf[9:19]
    assert dav("GET", dav.tree.item_path + "/ORIGINAL/nope.pdf").status == 404


def test_propfind(dav: Dav) -> None:
    response = dav("PROPFIND", "/dav/Community A/Collection 1/", headers={"Depth": "1"})
    assert response.status == 207
    doc = etree.fromstring(response.body)
    hrefs = [h.text for h in doc.iterfind(".//D:href", DAV_NS)]
    handle = dav.tree.item_handle.replace("/", "-")
    assert hrefs == ["/dav/Community%20A/Collection%201/",
                     f"/dav/Community%20A/Collection%201/A%20thesis%20%5B{handle}%5D/",
                     f"/dav/Community%20A/Collection%201/ITEM%40{handle}.zip"]
    package = doc.findall("D:response", DAV_NS)[2]
    length = package.findtext(".//D:getcontentlength", namespaces=DAV_NS)
    assert int(length or 0) == len(dav("GET", dav.tree.item_path).body)
    assert package.findtext(".//p:handle", namespaces=DAV_NS) == dav.tree.item_handle
    assert package.findtext(".//p:type", namespaces=DAV_NS) == "ITEM"
    assert package.findtext(".//p:withdrawn", namespaces=DAV_NS) == "false"
    assert package.findtext(".//p:title", namespaces=DAV_NS) == "A thesis"
    assert package.findtext(".//p:package", namespaces=DAV_NS) == "TESTZIP"
    infinity = dav("PROPFIND", "/dav/", headers={"Depth": "infinity"})
    assert infinity.status == 403 and b"propfind-finite-depth" in infinity.body
    on_file = dav("PROPFIND", f"/dav/Community A/Collection 1/ITEM@{handle}.zip")
    assert on_file.status == 207
    canonical = dav("PROPFIND", dav.tree.item_path, headers={"Depth": "1"})
    names = [h.text for h in etree.fromstring(canonical.body).iterfind(".//D:href", DAV_NS)]
    assert names == [f"/handle/{dav.tree.item_handle}/",
                     f"/handle/{dav.tree.item_handle}/ORIGINAL/"]


def test_protected_properties_and_dead_ones(dav: Dav) -> None:
    body = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:p="urn:davpack:props"'
            b' xmlns:x="urn:x"><D:set><D:prop><x:note>hello</x:note></D:prop></D:set>'
            b"</D:propertyupdate>")
    done = dav("PROPPATCH", dav.tree.item_path, body=body, auth=ADMIN)
    assert done.status == 207 and b"200 OK" in done.body
    anonymous = dav("PROPPATCH", dav.tree.item_path, body=body)
    assert anonymous.status == 401
    user = dav("PROPPATCH", dav.tree.item_path, body=body, auth=USER)
    assert user.status == 403
    protected = body.replace(b"x:note", b"p:handle")
    refused = dav("PROPPATCH", dav.tree.item_path, body=protected, auth=ADMIN)
    assert refused.status == 207 and b"HTTP/1.1 403 Forbidden" in refused.body
    found = dav("PROPFIND", dav.tree.item_path, headers={"Depth": "0"},
                body=b'<D:propfind xmlns:D="DAV:"><D:prop><x:note xmlns:x="urn:x"/></D:prop>'
                     b"</D:propfind>")
    assert b"hello" in found.body


def test_options_advertise_post_on_containers(dav: Dav) -> None:
    allow = dav("OPTIONS", dav.tree.collection_path).header("Allow") or ""
    assert "POST" in allow and "PROPFIND" in allow
    assert "POST" not in (dav("OPTIONS", dav.tree.item_path + "/ORIGINAL/data.csv")
                          .header("Allow") or "")


def test_browse_page(dav: Dav) -> None:
    page = dav("GET", "/dav/Community A/Collection 1/", headers={"Accept": "text/html"})
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert "script-src 'nonce-" in (page.header("Content-Security-Policy") or "")
    text = page.text
    assert "<h1>Collection 1</h1>" in text
    assert f'href="/handle/{dav.tree.collection_handle}?package=TESTZIP"' in text
    assert dav.tree.item_file() in text
    assert 'id="upload"' not in text  # anonymous may not add
    admin_page = dav("GET", dav.tree.collection_path, headers={"Accept": "text/html"},
                     auth=ADMIN)
    assert 'id="upload"' in admin_page.text and "Logged in as admin@example.org" in admin_page.text
    item = dav("GET", dav.tree.item_path, headers={"Accept": "text/html,*/*;q=0.8"})
    assert "?package=TESTSTREAM" in item.text and "?package=TESTZIP" in item.text
    root = dav("GET", "/", headers={"Accept": "text/html"})
    assert root.status == 200 and 'href="/dav/"' in root.text
    login = dav("GET", "/dav/", query="login", headers={"Accept": "text/html"})
    assert login.status == 401 and login.header("WWW-Authenticate")


def test_browse_page_escapes_titles(dav: Dav) -> None:
    from server.services import metadata, objects

    with dav.repo.context(system=True) as ctx:
        item = ctx.session.get(m.Item, dav.tree.item)
        metadata.set_single(ctx, item, "dc.title", '<script>alert("x")</script>')
        objects.install(ctx, item)
    page = dav("GET", dav.tree.item_path, headers={"Accept": "text/html"}).text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_packagers_listing(dav: Dav) -> None:
    body = dav("GET", "/-/packagers").json()
    assert body["default_package"] == "TESTZIP"
    by_name = {p["name"]: p for p in body["packagers"]}
    assert set(by_name) == {"TESTSTREAM", "TESTZIP"}
    assert by_name["TESTZIP"]["aliases"] == ["TZ"]
    assert by_name["TESTZIP"]["mime_types"] == ["application/zip", "application/x-testzip"]
    assert [o["name"] for o in by_name["TESTZIP"]["options"]] == ["title", "includeBundles"]


def test_permissions_follow_policies(dav: Dav) -> None:
    with dav.repo.context(system=True) as ctx:
        item = ctx.session.get(m.Item, dav.tree.item)
        authz.clear_policies(ctx, item)
    anonymous = dav("GET", dav.tree.item_path)
    assert anonymous.status == 401
    assert anonymous.header("WWW-Authenticate") == 'Basic realm="davpack", charset="UTF-8"'
    assert dav("GET", dav.tree.item_path, auth=USER).status == 403
    assert dav("GET", dav.tree.item_path, auth=ADMIN).status == 200
    listing = dav("PROPFIND", "/dav/Community A/Collection 1/", headers={"Depth": "1"})
    assert b"ITEM%40" not in listing.body  # hidden from those who cannot read it
    wrong = dav("GET", dav.tree.item_path, auth=("admin@example.org", "wrong"))
    assert wrong.status == 401
    assert dav("GET", dav.tree.collection_path,
               headers={"Authorization": "Basic !!!"}).status == 401
    assert dav("GET", dav.tree.collection_path,
               headers={"Authorization": "Bearer abc"}).status == 401


@pytest.mark.parametrize("accept, content_type", [
    (None, "application/json; charset=utf-8"),
    ("application/json", "application/json; charset=utf-8"),
    ("text/plain", "text/plain; charset=utf-8"),
    ("text/html,application/json;q=0.5", "text/plain; charset=utf-8"),
])
def test_error_bodies(dav: Dav, accept: str | None, content_type: str) -> None:
    headers = {"Accept": accept} if accept else {}
    response = dav("GET", dav.tree.item_path, query="package=NOPE", headers=headers)
    assert response.status == 406
    assert response.header("Content-Type") == content_type
    assert response.header("X-Request-ID")
    if content_type.startswith("text/"):
        assert response.text.startswith("406 Not Acceptable: no package 'NOPE'")
        assert "  - field=package: no packager named 'NOPE'" in response.text
    else:
        assert response.json()["request_id"] == response.header("X-Request-ID")


@pytest.mark.parametrize("method, path, query, headers", [
    ("GET", "/nowhere", "", {}),
    ("GET", "/handle/99/99", "", {}),
    ("GET", "/handle/123456789/1", "package=%ff%fe", {}),
    ("GET", "/handle/123456789/1", "a=" + "x" * 9000, {}),
    ("GET", "/handle/123456789/4", "", {"Range": "bytes=999999999999999999999-"}),
    ("GET", "/handle/123456789/4", "", {"If-Modified-Since": "\x00garbage"}),
    ("PROPFIND", "/dav/", "", {"Depth": "2"}),
    ("PROPFIND", "/dav/", "", {"Depth": "1", "Content-Length": "5"}),
    ("POST", "/handle/123456789/4/ORIGINAL/data.csv", "", {}),
    ("DELETE", "/handle/123456789/4/ORIGINAL", "", {}),
    ("MKCOL", "/handle/123456789/4/x", "", {}),
    ("PATCH", "/dav/", "", {}),
])
def test_client_mistakes_are_never_500(dav: Dav, method: str, path: str, query: str,
                                       headers: dict[str, str]) -> None:
    response = call(dav.app, method, path, query=query, headers=headers, auth=ADMIN,
                    body=b"<xml" if "Content-Length" in headers else None)
    assert response.status < 500, (response.status, response.body[:300])


def test_head_and_revalidation_do_not_rebuild_an_item_package(
        dav: Dav, monkeypatch: pytest.MonkeyPatch) -> None:
    from http_packagers import ZipPackagerForTests

    first = dav("GET", dav.tree.item_path)
    calls: list[object] = []
    original = ZipPackagerForTests.disseminate

    def counting(self: ZipPackagerForTests, *args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ZipPackagerForTests, "disseminate", counting)
    head = dav("HEAD", dav.tree.item_path)
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == first.header("Content-Length")
    assert head.header("ETag") == first.header("ETag")
    assert head.header("Content-Disposition") == first.header("Content-Disposition")
    cached = dav("GET", dav.tree.item_path, headers={"If-None-Match": first.header("ETag") or ""})
    assert cached.status == 304
    assert calls == []
    assert dav("GET", dav.tree.item_path).body == first.body
    assert len(calls) == 1


def test_other_applications_can_be_mounted(dav: Dav) -> None:
    from server.http.app import make_app
    from server.http.runtime import RequestState

    seen: dict[str, object] = {}

    def mounted(environ: dict[str, object], start_response: object) -> list[bytes]:
        seen.update(script=environ["SCRIPT_NAME"], path=environ["PATH_INFO"],
                    state=isinstance(environ.get("davpack.request"), RequestState))
        start_response("200 OK", [("Content-Length", "2")])  # type: ignore[operator]
        return [b"ok"]

    app = make_app(dav.repo, dav.registry, mounts={"/extra": mounted})
    response = call(app, "GET", "/extra/servicedocument")
    assert response.status == 200 and response.body == b"ok"
    assert seen == {"script": "/extra", "path": "/servicedocument", "state": True}
    assert response.header("X-Request-ID")
    assert call(app, "GET", "/extrafish").status == 404
    assert call(app, "GET", dav.tree.item_path).status == 200


def test_listing_survives_what_it_cannot_describe(dav: Dav,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A deposit made after the listing's database snapshot, or a package the packager
    refuses to build for this person, leaves that entry incomplete, never the listing."""
    import time
    import uuid

    from http_packagers import ZipPackagerForTests

    from server.errors import PermissionDenied
    from server.http.runtime import Kept

    runtime = dav.app.runtime
    staging = dav.repo.config.path("server.staging_dir")
    kept_file = staging / "deposit-test"
    kept_file.write_bytes(b"abc")
    runtime.pending.mark_deposited(dav.tree.collection, "ghost.zip", uuid.uuid4(), time.time(),
                                   None)
    runtime.pending.mark_deposited(dav.tree.collection, "kept.zip", uuid.uuid4(), time.time(),
                                   Kept(kept_file, 3, "ab" * 32, "application/zip"))

    def refuse(*_args: object, **_kwargs: object) -> object:
        raise PermissionDenied("not for you")

    monkeypatch.setattr(ZipPackagerForTests, "disseminate", refuse)
    listing = dav("PROPFIND", "/dav/Community A/Collection 1/", headers={"Depth": "1"})
    assert listing.status == 207
    doc = etree.fromstring(listing.body)
    hrefs = [h.text or "" for h in doc.iterfind("D:response/D:href", DAV_NS)]
    assert not any("ghost.zip" in h for h in hrefs)
    kept = [r for r in doc.iterfind("D:response", DAV_NS)
            if (r.findtext("D:href", namespaces=DAV_NS) or "").endswith("kept.zip")]
    assert kept and kept[0].findtext(".//D:getcontentlength", namespaces=DAV_NS) == "3"
    package = [r for r in doc.iterfind("D:response", DAV_NS)
               if (r.findtext("D:href", namespaces=DAV_NS) or "").endswith(".zip")
               and "ITEM" in (r.findtext("D:href", namespaces=DAV_NS) or "")]
    assert package and package[0].find(".//D:getcontentlength", DAV_NS) is None
    assert dav("GET", dav.tree.item_path).status == 403  # the GET says why
    runtime.pending.clear()
    assert not kept_file.exists()


def test_without_the_default_package_installed(dav: Dav) -> None:
    from server.http.app import make_app

    dav.repo.config.values["server"]["default_package"] = "MISSING"
    app = make_app(dav.repo, dav.registry)
    response = call(app, "GET", dav.tree.item_path)
    assert response.status == 406
    assert "available are TESTSTREAM, TESTZIP" in response.json()["message"]
    assert call(app, "GET", dav.tree.item_path, query="package=TESTZIP").status == 200
    listing = call(app, "PROPFIND", "/dav/Community A/Collection 1/", headers={"Depth": "1"})
    assert listing.status == 207 and b"ITEM%40" not in listing.body
    assert b"A%20thesis" in listing.body
