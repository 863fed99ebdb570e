"""server.http.urls: the one module that builds and parses URLs and names."""

from __future__ import annotations

import uuid

import pytest

from server.http import urls


@pytest.mark.parametrize("path, kind, handle, segments", [
    ("/", "root", None, ()),
    ("", "root", None, ()),
    ("/dav", "site", None, ()),
    ("/dav/", "site", None, ()),
    ("/dav/Community A/Collection 1/", "site", None, ("Community A", "Collection 1")),
    ("/handle/123456789/8", "handle", "123456789/8", ()),
    ("/handle/123456789/8/ORIGINAL/a.pdf", "handle", "123456789/8", ("ORIGINAL", "a.pdf")),
    ("/handle/10.5072/abc-1.2", "handle", "10.5072/abc-1.2", ()),
])
def test_parse(path: str, kind: str, handle: str | None, segments: tuple[str, ...]) -> None:
    route = urls.parse(path)
    assert route.anchor.kind == kind
    assert route.anchor.handle == handle
    assert route.segments == segments


def test_parse_uuid_round_trip() -> None:
    key = uuid.uuid4()
    route = urls.parse(f"/uuid/{key}/ORIGINAL")
    assert route.anchor.uuid == key and route.segments == ("ORIGINAL",)
    assert urls.path_of(route) == f"/uuid/{key}/ORIGINAL"
    assert urls.object_path(None, key) == f"/uuid/{key}"


@pytest.mark.parametrize("path", [
    "/handle", "/handle/123", "/handle/12 3/4", "/handle/1/2$", "/uuid/", "/uuid/nope",
    "/elsewhere", "/-/health", "/dav/../etc", "/dav/a\x00b", "relative", "/dav/" + "x" * 2000,
])
def test_parse_refuses(path: str) -> None:
    with pytest.raises(urls.BadPath):
        urls.parse(path)


def test_path_round_trip() -> None:
    for path in ("/", "/dav", "/dav/A/B", "/handle/123456789/8", "/handle/1/2/ORIGINAL/x y"):
        assert urls.path_of(urls.parse(path)) == path


def test_quote_path_keeps_readable_characters() -> None:
    assert urls.quote_path("/dav/A b/ITEM@1-2.zip") == "/dav/A%20b/ITEM@1-2.zip"
    assert urls.quote_path("/dav/T [1-2]/") == "/dav/T%20%5B1-2%5D/"
    assert urls.absolute("http://h:1/", "/handle/1/2") == "http://h:1/handle/1/2"


@pytest.mark.parametrize("title, name", [
    ("Plain", "Plain"),
    ("  spaced   out  ", "spaced out"),
    ("a/b\\c", "a_b_c"),
    ('what? <now>: "x"|*', "what_ _now__ _x___"),
    ("tab\there\nnewline", "tab here newline"),
    ("trailing dots...", "trailing dots"),
    ("..", ""),
    ("", ""),
    (None, ""),
    ("é" * 200, "é" * 120),
])
def test_clean_name(title: str | None, name: str) -> None:
    assert urls.clean_name(title) == name


def test_container_names_disambiguate_clashes_only() -> None:
    names = urls.container_names([("Theses", "1/2"), ("theses", "1/3"), ("Data", "1/4"),
                                  ("", "1/5"), ("x [1-9]", "1/6")])
    assert names == ["Theses [1-2]", "theses [1-3]", "Data", "[1-5]", "x [1-9] [1-6]"]


def test_item_folder_names_carry_the_handle() -> None:
    name = urls.item_folder_name("My thesis: part 1/2", "123456789/8")
    assert name == "My thesis_ part 1_2 [123456789-8]"
    assert urls.name_handle(name) == "123456789/8"
    assert urls.name_handle("no token here") is None
    assert urls.name_handle("[1-2]") == "1/2"
    long = urls.item_folder_name("x" * 500, "123456789/123456")
    assert len(long) <= urls.MAX_NAME and long.endswith("[123456789-123456]")


def test_package_file_names() -> None:
    name = urls.package_file_name("ITEM", "123456789/8", "zip")
    assert name == "ITEM@123456789-8.zip"
    parsed = urls.parse_package_file_name(name)
    assert parsed == urls.PackageName("ITEM", "123456789/8", "zip")
    dotted = urls.parse_package_file_name("COLLECTION@10.5072-ab-c.1.zip")
    assert dotted == urls.PackageName("COLLECTION", "10.5072/ab-c.1", "zip")
    assert urls.parse_package_file_name("ITEM@123456789.zip") is None
    assert urls.parse_package_file_name("FOO@1-2.zip") is None
    assert urls.parse_package_file_name("ITEM@1-2") is None


def test_unique_names() -> None:
    assert urls.unique_names(["a.pdf", "A.pdf", "a.pdf", "README", "readme", ""]) == [
        "a.pdf", "A [2].pdf", "a [3].pdf", "README", "readme [2]", "unnamed"]


def test_reserved_container_names() -> None:
    assert urls.is_reserved_container_name("Theses [1-2]")
    assert urls.is_reserved_container_name("ITEM@1-2.zip")
    assert not urls.is_reserved_container_name("Theses")
