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
        objects.map_item(ctx, mapped, ctx.session.get(m.Collection, dav.tree.collection))
        gone = objects.create_item(ctx, ctx.session.get(m.Collection, dav.tree.collection))
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
