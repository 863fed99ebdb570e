"""Writing over HTTP, in-process: POST ingest, PUT replace, files dropped into folders,
limits and checksums, DELETE, MKCOL, MOVE/COPY, and permissions."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
from http_packagers import build_zip
from http_support import ADMIN, USER, Dav
from lxml import etree
from sqlalchemy import select

from server import models as m
from server.services import authz, fixity

pytest_plugins = ("http_fixtures",)


class Tracked(io.BytesIO):
    """A request body that remembers whether anything read it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.touched = False

    def read(self, size: int | None = -1) -> bytes:
        self.touched = True
        return super().read(size)


def _raw(dav: Dav, method: str, path: str, body: io.BytesIO, headers: dict[str, str],
         auth: tuple[str, str] | None = ADMIN) -> tuple[int, dict[str, str], bytes]:
    """A request whose body stream the test keeps (to see whether it was read)."""
    import http_support

    original = io.BytesIO
    try:
        http_support.io.BytesIO = lambda data=b"": body  # type: ignore[assignment]
        response = http_support.call(dav.app, method, path, body=b"", headers=headers,
                                     auth=auth)
    finally:
        http_support.io.BytesIO = original  # type: ignore[assignment]
    return response.status, response.headers, response.body


def _titles(dav: Dav) -> list[str]:
    from server.services import metadata

    with dav.repo.context(write=False) as ctx:
        return sorted(metadata.first(i, "dc.title") or "" for i in
                      ctx.session.scalars(select(m.Item).where(m.Item.in_archive.is_(True))))


def _staging_is_empty(dav: Dav) -> bool:
    staging = dav.repo.config.path("server.staging_dir")
    return not [p for p in staging.iterdir() if not p.name.startswith("deposit-")]


def _no_orphans(dav: Dav) -> None:
    findings = list(fixity.check(dav.repo))
    assert findings == []


def _names(dav: Dav, path: str, auth: tuple[str, str] | None = ADMIN) -> list[str]:
    response = dav("PROPFIND", path, headers={"Depth": "1"}, auth=auth)
    assert response.status == 207, response.text
    doc = etree.fromstring(response.body)
    hrefs = [h.text or "" for h in doc.iterfind("{DAV:}response/{DAV:}href")]
    from urllib.parse import unquote

    return [unquote(h.rstrip("/").rsplit("/", 1)[1]) for h in hrefs[1:]]


# ---------------------------------------------------------------------------------------
# POST


def test_post_ingests_a_new_item(dav: Dav) -> None:
    package = build_zip("Posted thesis", {"a.txt": b"hello", "b.txt": b"world"})
    response = dav("POST", dav.tree.collection_path, body=package, auth=ADMIN,
                   headers={"Content-Type": "application/zip",
                            "Content-Disposition": 'attachment; filename="thesis.zip"'})
    assert response.status == 201, response.text
    receipt = response.json()
    assert receipt["type"] == "ITEM" and receipt["outcome"] == "created"
    assert receipt["packager"] == "TESTZIP"
    location = response.header("Location")
    assert location == f"http://localhost/handle/{receipt['handle']}" == receipt["url"]
    assert receipt["objects"][0]["package"] == "thesis.zip"
    fetched = dav("GET", f"/handle/{receipt['handle']}")
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(fetched.body)).read("manifest.json"))
    assert manifest["title"] == "Posted thesis"
    assert {f["name"] for f in manifest["files"]} == {"a.txt", "b.txt"}
    handle = receipt["handle"].replace("/", "-")
    assert f"Posted thesis [{handle}]" in _names(dav, "/dav/Community A/Collection 1/")
    assert _staging_is_empty(dav)
    _no_orphans(dav)


@pytest.mark.parametrize("query, headers", [
    ("package=TESTZIP", {"Content-Type": "application/octet-stream"}),
    ("package=tz", {}),
    ("", {"Packaging": "http://example.org/testzip"}),
    ("", {"Content-Type": "application/x-testzip"}),
    ("", {"Content-Type": "application/zip"}),
    ("", {}),
])
def test_post_chooses_the_packager(dav: Dav, query: str, headers: dict[str, str]) -> None:
    response = dav("POST", dav.tree.collection_path, query=query, auth=ADMIN,
                   body=build_zip("Chosen", {"x": b"1"}), headers=headers)
    assert response.status == 201, response.text


def test_post_a_collection_into_a_community_and_options(dav: Dav) -> None:
    package = build_zip("New collection", {}, type_name="COLLECTION")
    response = dav("POST", dav.tree.community_path, body=package, auth=ADMIN,
                   query="title=Renamed+on+the+way")
    assert response.status == 201
    assert response.json()["type"] == "COLLECTION"
    assert "Renamed on the way" in _names(dav, "/dav/Community A/")


@pytest.mark.parametrize("query, headers, body, status, error", [
    ("package=NOPE", {}, b"x" * 100, 415, "UnknownPackager"),
    ("", {"Packaging": "http://nope"}, b"x" * 100, 415, "UnknownPackager"),
    ("package=TESTSTREAM", {}, b"x" * 100, 415, "UnsupportedOperation"),
    ("package=TESTZIP&bogus=1", {}, b"x" * 100, 400, "UnknownOption"),
    ("mode=sideways", {}, b"x" * 100, 400, "BadRequest"),
    ("skipWorkflow=perhaps", {}, b"x" * 100, 400, "InvalidInput"),
])
def test_post_refusals_before_reading_the_body(dav: Dav, query: str, headers: dict[str, str],
                                               body: bytes, status: int, error: str) -> None:
    stream = Tracked(body)
    code, _headers, answer = _raw(dav, "POST", dav.tree.collection_path + "?" + query, stream,
                                  {"Content-Length": str(len(body)), **headers})
    assert code == status, answer
    assert json.loads(answer)["error"] == error
    assert not stream.touched


def test_post_refuses_junk_and_broken_packages(dav: Dav) -> None:
    junk = dav("POST", dav.tree.collection_path, body=b"not a package", auth=ADMIN)
    assert junk.status == 415 and junk.json()["error"] == "AmbiguousPackage"
    good = build_zip("Broken", {"a.txt": b"a"})
    broken = good.replace(b"files/ORIGINAL/a.txt", b"files/ORIGINAL/b.txt", 1)
    response = dav("POST", dav.tree.collection_path, body=broken, auth=ADMIN,
                   query="package=TESTZIP")
    assert response.status == 422, response.text
    assert response.json()["error"] == "PackageValidationError"
    wrong_parent = dav("POST", dav.tree.community_path, body=good, auth=ADMIN)
    assert wrong_parent.status == 422
    assert _titles(dav) == ["A thesis"]
    assert _staging_is_empty(dav)
    _no_orphans(dav)


def test_post_needs_add_permission_before_the_body_is_read(dav: Dav) -> None:
    body = build_zip("Nope", {"a": b"a"})
    for auth, status in ((None, 401), (USER, 403)):
        stream = Tracked(body)
        code, headers, _answer = _raw(dav, "POST", dav.tree.collection_path, stream,
                                      {"Content-Length": str(len(body))}, auth=auth)
        assert code == status
        assert not stream.touched
        if status == 401:
            assert headers["www-authenticate"].startswith("Basic ")
    with dav.repo.context(system=True) as ctx:
        from server.services import people

        user = people.by_email(ctx, USER[0])
        collection = ctx.session.get(m.Collection, dav.tree.collection)
        authz.add_policy(ctx, collection, m.Action.ADD, eperson=user)
    allowed = dav("POST", dav.tree.collection_path, body=body, auth=USER)
    assert allowed.status == 201


def test_post_to_things_that_are_not_containers(dav: Dav) -> None:
    body = build_zip("x", {})
    item = dav("POST", dav.tree.item_path, body=body, auth=ADMIN)
    assert item.status == 405 and "PUT" in (item.header("Allow") or "")
    bitstream = dav("POST", dav.tree.item_path + "/ORIGINAL/data.csv", body=body, auth=ADMIN)
    assert bitstream.status == 405
    missing = dav("POST", "/handle/123456789/999", body=body, auth=ADMIN)
    assert missing.status == 404


def test_cross_site_requests_may_not_write(dav: Dav) -> None:
    body = build_zip("CSRF", {})
    other = dav("POST", dav.tree.collection_path, body=body, auth=ADMIN,
                headers={"Origin": "https://evil.example"})
    assert other.status == 403
    same = dav("POST", dav.tree.collection_path, body=body, auth=ADMIN,
               headers={"Origin": "http://localhost"})
    assert same.status == 201


# ---------------------------------------------------------------------------------------
# Limits and checksums


def test_declared_size_over_the_limit_is_refused_unread(dav: Dav) -> None:
    dav.repo.config.values["store"]["max_upload_size"] = 1000
    from server.http.runtime import Runtime

    app_runtime: Runtime = dav.app.runtime
    app_runtime.max_upload_size = 1000
    stream = Tracked(b"x" * 2000)
    code, _h, answer = _raw(dav, "POST", dav.tree.collection_path, stream,
                            {"Content-Length": "2000"})
    assert code == 413 and json.loads(answer)["error"] == "SizeLimitExceeded"
    assert not stream.touched
    put = Tracked(b"x" * 2000)
    code, _h, _a = _raw(dav, "PUT", "/dav/Community A/Collection 1/big.zip", put,
                        {"Content-Length": "2000"})
    assert code == 413 and not put.touched
    chunked = dav("POST", dav.tree.collection_path, body=b"y" * 5000, chunked=True, auth=ADMIN)
    assert chunked.status == 413
    chunked_put = dav("PUT", "/dav/Community A/Collection 1/big2.zip", body=b"y" * 5000,
                      chunked=True, auth=ADMIN)
    assert chunked_put.status == 413
    assert "big2.zip" not in _names(dav, "/dav/Community A/Collection 1/")
    assert _staging_is_empty(dav)


def test_checksums(dav: Dav) -> None:
    package = build_zip("Checked", {"c": b"c"})
    md5 = hashlib.md5(package).digest()
    sha = hashlib.sha256(package).digest()
    good_headers: list[dict[str, str]] = [
        {"Content-MD5": base64.b64encode(md5).decode()},
        {"Content-MD5": md5.hex()},
        {"Digest": f"SHA-256={base64.b64encode(sha).decode()}, "
                   f"MD5={base64.b64encode(md5).decode()}"},
        {"Content-Digest": f"sha-256=:{base64.b64encode(sha).decode()}:"},
        {"Digest": "sha-512=abc"},
    ]
    for headers in good_headers:
        response = dav("POST", dav.tree.collection_path, body=package, headers=headers,
                       auth=ADMIN)
        assert response.status == 201, (headers, response.text)
    bad = dav("POST", dav.tree.collection_path, body=package, auth=ADMIN,
              headers={"Content-MD5": base64.b64encode(b"0" * 16).decode()})
    assert bad.status == 412 and bad.json()["error"] == "ChecksumMismatch"
    assert bad.json()["details"][0]["field"] == "md5"
    bad_sha = dav("POST", dav.tree.collection_path, body=package, auth=ADMIN,
                  headers={"Digest": "sha-256=" + base64.b64encode(b"1" * 32).decode()})
    assert bad_sha.status == 412
    bad_put = dav("PUT", "/dav/Community A/Collection 1/sum.zip", body=package, auth=ADMIN,
                  headers={"Content-MD5": base64.b64encode(b"0" * 16).decode()})
    assert bad_put.status == 412
    assert "sum.zip" not in _names(dav, "/dav/Community A/Collection 1/")
    malformed = dav("POST", dav.tree.collection_path, body=package, auth=ADMIN,
                    headers={"Content-MD5": "!!"})
    assert malformed.status == 400
    assert dav("POST", dav.tree.collection_path, body=package, auth=ADMIN,
               headers={"Digest": "no-equals-sign"}).status == 400
    assert _titles(dav).count("Checked") == len(good_headers)
    assert _staging_is_empty(dav)


def test_short_body_is_400_and_nothing_is_kept(dav: Dav) -> None:
    package = build_zip("Short", {"s": b"s" * 1000})
    for method, path in (("POST", dav.tree.collection_path),
                         ("PUT", "/dav/Community A/Collection 1/short.zip"),
                         ("PUT", dav.tree.item_path)):
        code, _h, answer = _raw(dav, method, path, io.BytesIO(package[:-10]),
                                {"Content-Length": str(len(package))})
        assert code == 400, answer
        assert json.loads(answer)["error"] == "IncompleteBody"
    assert _titles(dav) == ["A thesis"]
    assert "short.zip" not in _names(dav, "/dav/Community A/Collection 1/")
    assert _staging_is_empty(dav)
    _no_orphans(dav)


# ---------------------------------------------------------------------------------------
# PUT


def test_put_replaces_an_item(dav: Dav) -> None:
    package = build_zip("Replaced title", {"new.txt": b"new"})
    response = dav("PUT", dav.tree.item_path, body=package, auth=ADMIN)
    assert response.status == 200, response.text
    receipt = response.json()
    assert receipt["outcome"] == "replaced" and receipt["handle"] == dav.tree.item_handle
    names = _names(dav, dav.tree.item_path + "/ORIGINAL/")
    assert names == ["new.txt"]
    again = dav("PUT", f"/dav/Community A/Collection 1/{dav.tree.item_file()}", auth=ADMIN,
                body=build_zip("Via the package file", {"z.txt": b"z"}))
    assert again.status == 200
    assert _titles(dav) == ["Via the package file"]
    _no_orphans(dav)


def test_put_replace_refusals(dav: Dav) -> None:
    package = build_zip("No", {"n": b"n"})
    assert dav("PUT", dav.tree.item_path, body=package).status == 401
    assert dav("PUT", dav.tree.item_path, body=package, auth=USER).status == 403
    stale = dav("PUT", dav.tree.item_path, body=package, auth=ADMIN,
                headers={"If-Match": '"stale"'})
    assert stale.status == 412
    etag = dav("GET", dav.tree.item_path).header("ETag") or ""
    fresh = dav("PUT", dav.tree.item_path, body=package, auth=ADMIN, headers={"If-Match": etag})
    assert fresh.status == 200
    bitstream = dav("PUT", dav.tree.item_path + "/ORIGINAL/n", body=b"x", auth=ADMIN)
    assert bitstream.status == 405
    unknown = dav("PUT", dav.tree.item_path, body=package, auth=ADMIN, query="package=NOPE")
    assert unknown.status == 415
    cannot = dav("PUT", dav.tree.item_path, body=package, auth=ADMIN,
                 query="package=TESTSTREAM")
    assert cannot.status == 415
    empty_object = dav("PUT", dav.tree.item_path, body=b"", auth=ADMIN)
    assert empty_object.status == 415
    empty_file = dav("PUT", f"/dav/Community A/Collection 1/{dav.tree.item_file()}", body=b"",
                     auth=ADMIN)
    assert empty_file.status == 204  # a file manager truncating first: nothing happens
    assert _titles(dav) == ["No"]


def test_put_a_new_file_into_a_collection_ingests_it(dav: Dav) -> None:
    package = build_zip("Dropped", {"d.txt": b"dropped"})
    response = dav("PUT", "/dav/Community A/Collection 1/dropped.zip", body=package,
                   auth=ADMIN, headers={"Content-Type": "application/zip"})
    assert response.status == 201, response.text
    receipt = response.json()
    assert receipt["objects"][0]["package"] == "dropped.zip"
    assert response.header("Location") == receipt["url"]
    names = _names(dav, "/dav/Community A/Collection 1/")
    handle = receipt["handle"].replace("/", "-")
    assert {"dropped.zip", f"Dropped [{handle}]", f"ITEM@{handle}.zip"} <= set(names)
    # the upload name reads back the bytes as sent (clients check their uploads)
    back = dav("GET", "/dav/Community A/Collection 1/dropped.zip")
    assert back.body == package
    props = dav("PROPFIND", "/dav/Community A/Collection 1/dropped.zip", headers={"Depth": "0"})
    assert f"<D:getcontentlength>{len(package)}</D:getcontentlength>".encode() in props.body
    assert receipt["handle"].encode() in props.body
    # deleting the name forgets it (and the kept bytes); the item stays
    assert dav("DELETE", "/dav/Community A/Collection 1/dropped.zip", auth=ADMIN).status == 204
    assert "dropped.zip" not in _names(dav, "/dav/Community A/Collection 1/")
    assert dav("GET", f"/handle/{receipt['handle']}").status == 200
    staging = dav.repo.config.path("server.staging_dir")
    assert list(staging.iterdir()) == []


def test_put_new_file_refusals_leave_no_placeholder(dav: Dav) -> None:
    refused = dav("PUT", "/dav/Community A/Collection 1/junk.bin", body=b"junk", auth=ADMIN)
    assert refused.status == 415
    anonymous = dav("PUT", "/dav/Community A/Collection 1/anon.zip", body=b"x")
    assert anonymous.status == 401
    in_item = dav("PUT", dav.tree.item_path + "/ORIGINAL/extra.txt", body=b"x", auth=ADMIN)
    assert in_item.status == 403
    names = _names(dav, "/dav/Community A/Collection 1/")
    assert not {"junk.bin", "anon.zip"} & set(names)


def test_lock_then_empty_put_then_put_then_unlock(dav: Dav) -> None:
    """What davfs2, Finder and Windows do when a file is copied into a folder."""
    path = "/dav/Community A/Collection 1/copied.zip"
    lockinfo = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
                b"</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>me</D:owner>"
                b"</D:lockinfo>")
    locked = dav("LOCK", path, body=lockinfo, auth=ADMIN, headers={"Timeout": "Second-60"})
    assert locked.status == 201, locked.text
    token = locked.header("Lock-Token") or ""
    assert token.startswith("<")
    assert "copied.zip" in _names(dav, "/dav/Community A/Collection 1/")
    head = dav("HEAD", path, auth=ADMIN)
    assert head.status == 200 and head.header("Content-Length") == "0"
    empty = dav("PUT", path, body=b"", auth=ADMIN, headers={"If": f"({token})"})
    assert empty.status in (201, 204)
    assert _titles(dav) == ["A thesis"]
    without_token = dav("PUT", path, body=build_zip("Thief", {}), auth=ADMIN)
    assert without_token.status == 423
    package = build_zip("Copied by a file manager", {"f.txt": b"f"})
    put = dav("PUT", path, body=package, auth=ADMIN, headers={"If": f"({token})"})
    assert put.status == 201, put.text
    assert dav("UNLOCK", path, auth=ADMIN, headers={"Lock-Token": token}).status == 204
    assert _titles(dav) == ["A thesis", "Copied by a file manager"]
    assert dav("GET", path).body == package


def test_lock_needs_login_and_rights(dav: Dav) -> None:
    lockinfo = (b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
                b"<D:locktype><D:write/></D:locktype></D:lockinfo>")
    assert dav("LOCK", dav.tree.item_path, body=lockinfo).status == 401
    assert dav("LOCK", dav.tree.item_path, body=lockinfo, auth=USER).status == 403
    assert dav("LOCK", "/dav/Community A/Collection 1/new.zip", body=lockinfo,
               auth=USER).status == 403
    assert dav("LOCK", dav.tree.item_path, body=lockinfo, auth=ADMIN).status == 200


# ---------------------------------------------------------------------------------------
# DELETE, MKCOL, MOVE, COPY


def test_delete_withdraws_and_purge_deletes(dav: Dav) -> None:
    assert dav("DELETE", dav.tree.item_path).status == 401
    assert dav("DELETE", dav.tree.item_path, auth=USER).status == 403
    assert dav("DELETE", dav.tree.item_path, auth=ADMIN).status == 204
    with dav.repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, dav.tree.item)
        assert item is not None and item.withdrawn
    props = dav("PROPFIND", dav.tree.item_path, headers={"Depth": "0"}, auth=ADMIN)
    assert b"<NS1:withdrawn>true</NS1:withdrawn>" in props.body
    listed_for_admin = _names(dav, "/dav/Community A/Collection 1/")
    assert dav.tree.item_file() in listed_for_admin
    listed_for_user = _names(dav, "/dav/Community A/Collection 1/", auth=USER)
    assert dav.tree.item_file() not in listed_for_user
    assert dav("GET", dav.tree.item_path).status == 404  # gone for everyone else
    assert dav("GET", dav.tree.item_path + "/ORIGINAL/data.csv", auth=USER).status == 404
    assert dav("GET", dav.tree.item_path, auth=ADMIN).status == 200
    assert dav("DELETE", dav.tree.item_path, auth=USER, query="purge=true").status == 404
    assert dav("DELETE", dav.tree.item_path, auth=ADMIN, query="purge=true").status == 204
    assert dav("GET", dav.tree.item_path, auth=ADMIN).status == 404
    _no_orphans(dav)


def test_delete_containers(dav: Dav) -> None:
    full = dav("DELETE", "/dav/Community A/Collection 1/", auth=ADMIN)
    assert full.status == 409 and full.json()["error"] == "Conflict"
    assert dav("DELETE", "/dav/Community A/Collection 2/", auth=ADMIN).status == 204
    assert dav("MKCOL", "/dav/Empty tree", auth=ADMIN).status == 201
    assert dav("MKCOL", "/dav/Empty tree/Sub", auth=ADMIN, query="type=community").status == 201
    assert dav("MKCOL", "/dav/Empty tree/Sub/Leaf", auth=ADMIN).status == 201
    assert dav("DELETE", "/dav/Empty tree/", auth=ADMIN).status == 204
    assert _names(dav, "/dav/") == ["Community A"]
    bundle = dav("DELETE", dav.tree.item_path + "/ORIGINAL/", auth=ADMIN)
    assert bundle.status == 403


def test_mkcol(dav: Dav) -> None:
    assert dav("MKCOL", "/dav/Top").status == 401
    assert dav("MKCOL", "/dav/Top", auth=USER).status == 403
    assert dav("MKCOL", "/dav/Top", auth=ADMIN).status == 201
    assert dav("MKCOL", "/dav/Top/Theses", auth=ADMIN).status == 201
    assert dav("MKCOL", "/dav/Top/Faculty", auth=ADMIN, query="type=community").status == 201
    kinds = dav("PROPFIND", "/dav/Top/", headers={"Depth": "1"}, auth=ADMIN).text
    assert kinds.count("<NS1:type>COLLECTION</NS1:type>") == 1
    assert kinds.count("<NS1:type>COMMUNITY</NS1:type>") == 2
    assert dav("MKCOL", "/dav/Top/Theses", auth=ADMIN).status == 405  # exists
    assert dav("MKCOL", "/dav/Top/Theses/Inner", auth=ADMIN).status == 405
    assert dav("MKCOL", "/dav/Top/X [1-2]", auth=ADMIN).status == 400
    assert dav("MKCOL", "/dav/Top/Y", auth=ADMIN, query="type=weird").status == 400
    assert dav("MKCOL", "/dav/Coll", auth=ADMIN, query="type=collection").status == 403


def test_move_and_copy_items(dav: Dav) -> None:
    handle = dav.tree.item_handle.replace("/", "-")
    folder = f"/dav/Community A/Collection 1/A thesis [{handle}]"
    target = f"http://localhost/dav/Community%20A/Collection%202/A%20thesis%20%5B{handle}%5D"
    assert dav("COPY", folder, auth=USER, headers={"Destination": target}).status == 403
    copied = dav("COPY", folder, auth=ADMIN, headers={"Destination": target})
    assert copied.status in (201, 204), copied.text
    assert f"ITEM@{handle}.zip" in _names(dav, "/dav/Community A/Collection 2/")
    assert f"ITEM@{handle}.zip" in _names(dav, "/dav/Community A/Collection 1/")
    with dav.repo.context(system=True) as ctx:
        from server.services import objects

        item = ctx.session.get(m.Item, dav.tree.item)
        objects.unmap_item(ctx, item, ctx.session.get(m.Collection, dav.tree.other_collection))
    moved = dav("MOVE", f"/dav/Community A/Collection 1/ITEM@{handle}.zip", auth=ADMIN,
                headers={"Destination": f"/dav/Community%20A/Collection%202/ITEM@{handle}.zip"})
    assert moved.status in (201, 204), moved.text
    with dav.repo.context(write=False) as ctx:
        item = ctx.session.get(m.Item, dav.tree.item)
        assert item is not None and item.owning_collection_id == dav.tree.other_collection
    rename = dav("MOVE", f"/dav/Community A/Collection 2/ITEM@{handle}.zip", auth=ADMIN,
                 headers={"Destination": "/dav/Community%20A/Collection%202/other.zip"})
    assert rename.status == 403
    into_community = dav("MOVE", f"/dav/Community A/Collection 2/ITEM@{handle}.zip",
                         auth=ADMIN, headers={"Destination": "/dav/Community%20A/x.zip"})
    assert into_community.status == 403


def test_move_and_rename_containers(dav: Dav) -> None:
    assert dav("MKCOL", "/dav/Other", auth=ADMIN).status == 201
    moved = dav("MOVE", "/dav/Community A/Collection 2/", auth=ADMIN,
                headers={"Destination": "/dav/Other/Collection%202/"})
    assert moved.status in (201, 204), moved.text
    assert _names(dav, "/dav/Other/") == ["Collection 2"]
    renamed = dav("MOVE", "/dav/Other/Collection 2/", auth=ADMIN,
                  headers={"Destination": "/dav/Other/Renamed/"})
    assert renamed.status in (201, 204), renamed.text
    assert _names(dav, "/dav/Other/") == ["Renamed"]
    community = dav("MOVE", "/dav/Other/", auth=ADMIN,
                    headers={"Destination": "/dav/Community%20A/Other/"})
    assert community.status in (201, 204)
    assert "Other" in _names(dav, "/dav/Community A/")
    copy = dav("COPY", "/dav/Community A/Collection 1/", auth=ADMIN,
               headers={"Destination": "/dav/Community%20A/Copy/"})
    assert copy.status == 403


def test_everything_written_is_complete(dav: Dav) -> None:
    for i in range(3):
        assert dav("POST", dav.tree.collection_path, auth=ADMIN,
                   body=build_zip(f"Item {i}", {"f": bytes([i]) * 100})).status == 201
    assert dav("PUT", dav.tree.item_path, auth=ADMIN,
               body=build_zip("Replaced", {"g": b"g"})).status == 200
    _no_orphans(dav)
    with dav.repo.context(write=False) as ctx:
        for item in ctx.session.scalars(select(m.Item)):
            assert item.handle and item.in_archive
            assert all(b.bitstreams for b in item.bundles)


def _unused(*_args: Any) -> None:
    """Keeps imports used only in type positions."""


def test_staged_uploads_carry_the_client_file_name(dav: Dav,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from http_packagers import ZipPackagerForTests

    seen: list[tuple[str, str | None, bool]] = []
    original = ZipPackagerForTests.ingest

    def spy(self: ZipPackagerForTests, op: Any, source: Any, request: Any) -> Any:
        seen.append((source.path.name, source.name, source.path.is_file()))
        return original(self, op, source, request)

    monkeypatch.setattr(ZipPackagerForTests, "ingest", spy)
    package = build_zip("Named", {"n": b"n"})
    dav("POST", dav.tree.collection_path, body=package, auth=ADMIN,
        headers={"Content-Disposition": "attachment; filename*=UTF-8''th%C3%A8se.zip"})
    dav("POST", dav.tree.collection_path, body=package, auth=ADMIN,
        headers={"Content-Disposition": 'attachment; filename="../../etc/passwd"'})
    dav("POST", dav.tree.collection_path, body=package, auth=ADMIN)
    dav("PUT", "/dav/Community A/Collection 1/dropped name.zip", body=package, auth=ADMIN)
    assert seen == [("thèse.zip", "thèse.zip", True), (".._.._etc_passwd", ".._.._etc_passwd",
                                                       True),
                    ("request-body", "request-body", True),
                    ("dropped name.zip", "dropped name.zip", True)]
    assert _staging_is_empty(dav)
