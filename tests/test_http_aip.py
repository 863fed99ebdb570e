"""End to end with the real DSpace AIP packager (the default package out of the box):
GET an item AIP, POST it back into a collection, restore and replace, and a hierarchy."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest
import requests
from http_support import ADMIN, Tree, call, make_tree, running_server

from packagers.registry import default_registry
from server.context import Repository
from server.services import fixity


@pytest.fixture
def aip_app(repo: Repository) -> Iterator[tuple[object, Tree]]:
    registry = default_registry()
    if "aip" not in {n.lower() for n in registry.names()}:
        pytest.skip("the AIP packager is not installed")
    from server.http.app import make_app

    assert repo.config.get("server.default_package") == "AIP"
    tree = make_tree(repo)
    yield make_app(repo), tree


def _members(body: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return zf.namelist()


def test_item_aip_round_trip(aip_app: tuple[object, Tree], repo: Repository) -> None:
    app, tree = aip_app
    aip = call(app, "GET", tree.item_path, auth=ADMIN)
    assert aip.status == 200, aip.text
    assert aip.header("X-Davpack-Package") == "AIP"
    assert aip.header("Content-Disposition", ).startswith(  # type: ignore[union-attr]
        f'attachment; filename="{tree.item_file()}"')
    assert int(aip.header("Content-Length") or -1) == len(aip.body)
    names = _members(aip.body)
    assert "mets.xml" in names and len(names) == 3
    again = call(app, "GET", tree.item_path, auth=ADMIN)
    assert again.body == aip.body and again.header("ETag") == aip.header("ETag")
    part = call(app, "GET", tree.item_path, auth=ADMIN, headers={"Range": "bytes=100-4099"})
    assert part.status == 206 and part.body == aip.body[100:4100]
    listed = call(app, "GET", f"/dav/Community A/Collection 1/{tree.item_file()}", auth=ADMIN)
    assert listed.body == aip.body

    submitted = call(app, "POST", f"/handle/{tree.other_handle}", body=aip.body, auth=ADMIN)
    assert submitted.status == 201, submitted.text
    receipt = submitted.json()
    assert receipt["packager"] == "AIP" and receipt["type"] == "ITEM"
    assert receipt["handle"] != tree.item_handle
    copy = call(app, "GET", f"/handle/{receipt['handle']}", auth=ADMIN)
    assert "mets.xml" in _members(copy.body) and len(_members(copy.body)) >= len(names)

    exists = call(app, "POST", f"/handle/{tree.other_handle}", body=aip.body, auth=ADMIN,
                  query="mode=restore")
    assert exists.status == 409 and exists.json()["error"] == "ObjectExists"
    kept = call(app, "POST", f"/handle/{tree.other_handle}", body=aip.body, auth=ADMIN,
                query="mode=restore&keepExisting=true")
    assert kept.status == 200 and kept.json()["outcome"] == "skipped"
    forced = call(app, "POST", f"/handle/{tree.collection_handle}", body=aip.body, auth=ADMIN,
                  query="mode=restore&forceReplace=true")
    assert forced.status == 200 and forced.json()["outcome"] == "replaced"

    replaced = call(app, "PUT", tree.item_path, body=aip.body, auth=ADMIN)
    assert replaced.status == 200, replaced.text
    assert replaced.json()["handle"] == tree.item_handle
    assert list(fixity.check(repo)) == []


def test_container_and_hierarchy_aips(aip_app: tuple[object, Tree], repo: Repository) -> None:
    app, tree = aip_app
    collection = call(app, "GET", tree.collection_path, auth=ADMIN)
    assert collection.status == 200 and _members(collection.body) == ["mets.xml"]
    site = call(app, "GET", "/dav/", auth=ADMIN)
    assert site.status == 200 and "mets.xml" in _members(site.body)
    everything = call(app, "GET", tree.community_path, auth=ADMIN, query="all=true")
    assert everything.status == 200, everything.text
    inner = _members(everything.body)
    assert inner and all(n.endswith(".zip") for n in inner)
    assert int(everything.header("Content-Length") or -1) == len(everything.body)
    restored = call(app, "POST", "/dav/", body=everything.body, auth=ADMIN,
                    query="mode=restore&all=true&keepExisting=true")
    assert restored.status == 200, restored.text
    outcomes = {o["type"]: o["outcome"] for o in restored.json()["objects"]}
    assert set(outcomes) >= {"COMMUNITY", "COLLECTION", "ITEM"}
    assert set(outcomes.values()) == {"skipped"}
    staging = repo.config.path("server.staging_dir")
    assert list(staging.iterdir()) == []


def test_aip_over_the_wire(aip_app: tuple[object, Tree], repo: Repository) -> None:
    app, tree = aip_app
    with running_server(repo, app, tree) as server:
        url = f"{server.url}/handle/{tree.item_handle}"
        aip = requests.get(url, auth=ADMIN, timeout=60)
        assert aip.status_code == 200
        put = requests.put(f"{server.url}/dav/Community%20A/Collection%202/copy.zip",
                           data=aip.content, auth=ADMIN, timeout=60)
        assert put.status_code == 201, put.text
        assert put.json()["packager"] == "AIP"
        back = requests.get(f"{server.url}/dav/Community%20A/Collection%202/copy.zip",
                            auth=ADMIN, timeout=60)
        assert back.content == aip.content
        assert server.errors_5xx() == []
