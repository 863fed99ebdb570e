"""PROPFIND Depth 1 on a collection: a listing costs the same few statements whether the
collection holds 10 items or 100 (W6 of the bench lists 10 000), and shows the same
members and properties (withdrawn and mapped items, titles, handles)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from http_support import ADMIN, Dav
from lxml import etree
from sqlalchemy import event

from server import models as m
from server.services import metadata, objects

pytest_plugins = ("http_fixtures",)

DAV_NS = {"D": "DAV:", "p": "urn:davpack:props"}
NAMED = (b'<D:propfind xmlns:D="DAV:" xmlns:p="urn:davpack:props"><D:prop><D:displayname/>'
         b"<D:getlastmodified/><D:resourcetype/><p:handle/><p:title/><p:withdrawn/>"
         b"</D:prop></D:propfind>")


def _add_items(dav: Dav, count: int, start: int) -> None:
    with dav.repo.context(system=True) as ctx:
        collection = ctx.session.get(m.Collection, dav.tree.collection)
        for n in range(start, start + count):
            item = objects.create_item(ctx, collection)
            metadata.add(ctx, item, "dc.title", f"Listed item {n}")
            objects.install(ctx, item)


@contextmanager
def _statements(dav: Dav) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(dav.repo.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(dav.repo.engine, "before_cursor_execute", count)


def _listing_costs(dav: Dav) -> dict[str, int]:
    """Statements of each kind of collection listing (the package sizes of an allprop
    listing are measured once, by the first, then cached: the second is counted)."""
    costs: dict[str, int] = {}
    for who, auth in (("anonymous", None), ("admin", ADMIN)):
        with _statements(dav) as seen:
            named = dav("PROPFIND", dav.tree.collection_path + "/", body=NAMED,
                        headers={"Depth": "1"}, auth=auth)
        assert named.status == 207
        costs[f"named-{who}"] = len(seen)
        assert dav("PROPFIND", dav.tree.collection_path + "/", headers={"Depth": "1"},
                   auth=auth).status == 207
        with _statements(dav) as seen:
            again = dav("PROPFIND", dav.tree.collection_path + "/", headers={"Depth": "1"},
                        auth=auth)
        assert again.status == 207
        costs[f"allprop-{who}"] = len(seen)
    return costs


def test_listing_statements_do_not_grow_with_the_items(dav: Dav) -> None:
    _add_items(dav, 9, 0)
    at_10 = _listing_costs(dav)
    _add_items(dav, 90, 9)
    at_100 = _listing_costs(dav)
    assert at_10 == at_100
    listing = dav("PROPFIND", dav.tree.collection_path + "/", body=NAMED,
                  headers={"Depth": "1"})
    doc = etree.fromstring(listing.body)
    assert len(doc.findall("D:response", DAV_NS)) == 1 + 2 * 100


@pytest.mark.parametrize("auth", [None, ADMIN])
def test_listing_shows_mapped_items_and_withdrawn_ones_to_administrators(
        dav: Dav, auth: tuple[str, str] | None) -> None:
    with dav.repo.context(system=True) as ctx:
        other = ctx.session.get(m.Collection, dav.tree.other_collection)
        mapped = objects.create_item(ctx, other)
        metadata.add(ctx, mapped, "dc.title", "Mapped here")
        objects.install(ctx, mapped)
        here = ctx.session.get(m.Collection, dav.tree.collection)
        assert here is not None
        objects.map_item(ctx, mapped, here)
        gone = objects.create_item(ctx, here)
        metadata.add(ctx, gone, "dc.title", "Gone")
        objects.install(ctx, gone)
        objects.withdraw(ctx, gone)
        mapped_handle, gone_handle = str(mapped.handle), str(gone.handle)
    listing = dav("PROPFIND", dav.tree.collection_path + "/", body=NAMED,
                  headers={"Depth": "1"}, auth=auth)
    folders = {r.findtext(".//p:handle", namespaces=DAV_NS):
               (r.findtext(".//p:title", namespaces=DAV_NS),
                r.findtext(".//p:withdrawn", namespaces=DAV_NS))
               for r in etree.fromstring(listing.body).findall("D:response", DAV_NS)
               if r.find(".//D:resourcetype/D:collection", DAV_NS) is not None}
    assert folders[mapped_handle] == ("Mapped here", "false")
    assert folders[dav.tree.item_handle] == ("A thesis", "false")
    if auth is None:
        assert gone_handle not in folders
    else:
        assert folders[gone_handle] == ("Gone", "true")


# ---------------------------------------------------------------------------------------
# The listing renderer (server/http/propfind.py) against WsgiDAV's own handler

LOCKINFO = (b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            b"<D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>")
DEAD_PROP = (b'<D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:x"><D:set><D:prop>'
             b"<x:note>a &amp; b</x:note></D:prop></D:set></D:propertyupdate>")
BODIES = {
    "none": None,
    "empty": b"",
    "allprop": b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>',
    "named": NAMED,
    "everything": (
        b'<D:propfind xmlns:D="DAV:" xmlns:p="urn:davpack:props" xmlns:x="urn:x"'
        b' xmlns:a="http://apache.org/dav/props/"><D:prop><D:getcontentlength/>'
        b"<D:getetag/><D:getcontenttype/><D:creationdate/><D:lockdiscovery/>"
        b"<D:supportedlock/><D:quota-used-bytes/><D:nothing/><p:type/><p:uuid/>"
        b"<p:package/><p:withdrawn/><x:note/><x:absent/><a:executable/><plain xmlns=''/>"
        b"</D:prop><D:prop><D:displayname/></D:prop></D:propfind>"),
    "empty prop": b'<D:propfind xmlns:D="DAV:"><D:prop/></D:propfind>',
}


def _tree(element: Any) -> tuple[Any, ...]:
    return (element.tag, sorted(element.attrib.items()), element.text or "",
            [_tree(child) for child in element])


def _responses(body: bytes) -> list[tuple[Any, ...]]:
    """Each ``response`` of a multistatus as (name, attributes, text, children): prefixes
    and where namespaces are declared do not matter; names, values and order do."""
    return [_tree(r) for r in etree.fromstring(body).findall("D:response", DAV_NS)]


@pytest.fixture
def listed(dav: Dav, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """A collection holding every kind of member, and the record of which listings the
    renderer answered (True) or left to WsgiDAV (False)."""
    from server.http import propfind
    from server.services import authz

    with dav.repo.context(system=True) as ctx:
        collection = ctx.session.get(m.Collection, dav.tree.collection)
        other = ctx.session.get(m.Collection, dav.tree.other_collection)
        assert collection is not None and other is not None
        mapped = objects.create_item(ctx, other)
        metadata.add(ctx, mapped, "dc.title", "Mapped <here> & \"there\", déjà")
        objects.install(ctx, mapped)
        objects.map_item(ctx, mapped, collection)
        for title, change in (("Withdrawn", objects.withdraw),
                              ("Restricted", authz.clear_policies), ("Locked", None)):
            item = objects.create_item(ctx, collection)
            metadata.add(ctx, item, "dc.title", title)
            objects.install(ctx, item)
            if change is not None:
                change(ctx, item)
    collection_path = "/dav/Community A/Collection 1/"
    locked = dav("LOCK", collection_path + "Locked [" + _token(dav, "Locked") + "]",
                 body=LOCKINFO, auth=ADMIN, headers={"Timeout": "Infinite"})
    assert locked.status == 200, locked.text
    reserved = dav("LOCK", collection_path + "upload.zip", body=LOCKINFO, auth=ADMIN,
                   headers={"Timeout": "Infinite"})
    assert reserved.status == 201, reserved.text
    noted = dav("PROPPATCH", dav.tree.item_path, body=DEAD_PROP, auth=ADMIN)
    assert noted.status == 207 and b"200 OK" in noted.body
    answered: list[bool] = []
    real = propfind.listing_response

    def spy(*args: Any) -> Any:
        result = real(*args)
        answered.append(result is not None)
        return result

    monkeypatch.setattr(propfind, "listing_response", spy)
    yield answered


def _token(dav: Dav, title: str) -> str:
    with dav.repo.context(system=True) as ctx:
        collection = ctx.session.get(m.Collection, dav.tree.collection)
        assert collection is not None
        handle = next(i.handle for i in collection.items if metadata.first(i, "dc.title") == title)
    return str(handle).replace("/", "-")


def _both(dav: Dav, path: str, body: bytes | None, headers: dict[str, str],
          auth: tuple[str, str] | None) -> tuple[Any, Any]:
    runtime = dav.app.runtime
    fast = dav("PROPFIND", path, body=body, headers=headers, auth=auth)
    runtime.fast_listings = False
    try:
        slow = dav("PROPFIND", path, body=body, headers=headers, auth=auth)
    finally:
        runtime.fast_listings = True
    return fast, slow


@pytest.mark.parametrize("auth", [None, ADMIN], ids=["anonymous", "admin"])
@pytest.mark.parametrize("body", list(BODIES), ids=list(BODIES))
@pytest.mark.parametrize("where", ["collection", "community", "site", "item"])
def test_listing_is_the_one_wsgidav_renders(dav: Dav, listed: list[bool], where: str,
                                            body: str, auth: tuple[str, str] | None) -> None:
    path = {"collection": "/dav/Community A/Collection 1/",
            "community": dav.tree.community_path, "site": "/dav",
            "item": dav.tree.item_path + "/"}[where]
    fast, slow = _both(dav, path, BODIES[body], {"Depth": "1"}, auth)
    assert listed == [True]
    assert (fast.status, fast.header("Content-Type")) == (slow.status, slow.header("Content-Type"))
    assert fast.status == 207
    assert fast.header("Content-Length") == str(len(fast.body))
    assert fast.header("Connection") is None
    assert _responses(fast.body) == _responses(slow.body)
    if where == "collection":
        text = fast.body.decode()
        assert ("Withdrawn" in text) == (auth is not None)
        assert ("Restricted" in text) == (auth is not None)
        assert "upload.zip" in text
        if body != "empty prop":
            assert "Mapped &lt;here&gt; &amp; \"there\", déjà" in text
        if body in ("none", "everything"):
            assert "<D:activelock>" in text  # the locked item, rendered by WsgiDAV
    if where == "item" and body in ("none", "everything"):
        assert "a &amp; b" in fast.body.decode()  # the dead property


@pytest.mark.parametrize(("body", "headers"), [
    (b'<D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>', {"Depth": "1"}),
    (b'<D:propfind xmlns:D="DAV:"><D:allprop/><D:include><D:getetag/></D:include>'
     b"</D:propfind>", {"Depth": "1"}),
    (None, {"Depth": "0"}),
    (None, {"Depth": "1", "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}),
    (b"<D:propfind xmlns:D='DAV:'><D:prop><D:getetag/></D:prop>", {"Depth": "1"}),
    (b'<!DOCTYPE x [<!ENTITY e "e">]><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>',
     {"Depth": "1"}),
], ids=["propname", "include", "depth 0", "conditional", "malformed", "doctype"])
def test_other_propfinds_are_left_to_wsgidav(dav: Dav, listed: list[bool], body: bytes | None,
                                              headers: dict[str, str]) -> None:
    fast, slow = _both(dav, "/dav/Community A/Collection 1/", body, headers, ADMIN)
    assert listed == [False]
    assert fast.status == slow.status
    if fast.status == 207:
        assert _responses(fast.body) == _responses(slow.body)
