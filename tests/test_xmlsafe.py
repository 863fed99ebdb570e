"""Hostile and ordinary XML through the one hardened parser (server.xmlsafe)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lxml import etree

from server import xmlsafe
from server.errors import InvalidInput, SizeLimitExceeded, UnsafeInput

LOL = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz a="&lol9;">&lol9;</lolz>
"""


def refused_doctype(exc: pytest.ExceptionInfo[UnsafeInput], name: str | None,
                    line: int | None) -> None:
    [detail] = exc.value.details
    assert "DOCTYPE" in detail.message
    assert detail.file == name
    assert detail.line == line


def test_billion_laughs_refused() -> None:
    with pytest.raises(UnsafeInput) as exc:
        xmlsafe.parse(LOL, name="mets.xml")
    refused_doctype(exc, "mets.xml", 2)


def test_external_entity_refused() -> None:
    doc = b'<?xml version="1.0"?>\n\n<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<r>&e;</r>'
    with pytest.raises(UnsafeInput) as exc:
        xmlsafe.parse(doc, name="dim.xml")
    refused_doctype(exc, "dim.xml", 3)
    assert "root:" not in str(exc.value)


@pytest.mark.parametrize("doctype", [
    b'<!DOCTYPE r SYSTEM "file:///etc/passwd">',
    b'<!DOCTYPE r PUBLIC "-//X//DTD X//EN" "http://example.invalid/x.dtd">',
    b"<!DOCTYPE r>",
    b"<!doctype r>",
])
def test_external_dtd_and_bare_doctype_refused(doctype: bytes) -> None:
    with pytest.raises(UnsafeInput) as exc:
        xmlsafe.parse(doctype + b"<r/>", name="mods.xml")
    refused_doctype(exc, "mods.xml", 1)


def test_parameter_entities_refused() -> None:
    doc = (b'<!-- first -->\n<!DOCTYPE r [\n <!ENTITY % p SYSTEM "file:///etc/passwd">\n'
           b' %p;\n]>\n<r/>')
    with pytest.raises(UnsafeInput) as exc:
        xmlsafe.parse(doc, name="atom.xml")
    refused_doctype(exc, "atom.xml", 2)


def test_doctype_mention_inside_comment_is_harmless() -> None:
    root = xmlsafe.fromstring(b"<!-- <!DOCTYPE x> -->\n<r>ok</r>")
    assert root.text == "ok"


def test_utf16_doctype_refused() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE r [<!ENTITY a "x">]><r>&a;</r>'
    with pytest.raises(UnsafeInput) as exc:
        xmlsafe.parse(doc.encode("utf-16"), name="u16.xml")
    refused_doctype(exc, "u16.xml", 2)


def test_doctype_behind_huge_prolog_refused() -> None:
    # The scan streams through comments and PIs of any length, across chunk boundaries.
    doc = (b"<!--" + b"x-y\n" * (1024 * 1024) + b"-->\n<?pi " + b"?" * 100_000 + b"?>"
           + LOL[LOL.index(b"<!DOCTYPE"):])
    with pytest.raises(UnsafeInput) as exc:
        xmlsafe.parse(doc, name="big.xml")
    refused_doctype(exc, "big.xml", 1024 * 1024 + 2)


def test_nothing_is_loaded_even_if_lexical_scan_is_bypassed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    calls: list[object] = []
    # Pretend the lexical scan missed it: libxml2's docinfo is the second line of defence.
    monkeypatch.setattr(xmlsafe._DoctypeGuard, "_scan", lambda self, text: None)
    monkeypatch.setattr(xmlsafe._RefuseResolver, "resolve",
                        lambda self, url, pubid, ctx: calls.append(url))
    doc = (f'<!DOCTYPE r SYSTEM "{secret.as_uri()}" [<!ENTITY % p SYSTEM "{secret.as_uri()}">'
           f'%p;<!ENTITY e SYSTEM "{secret.as_uri()}">]><r>&e;</r>').encode()
    with pytest.raises(UnsafeInput) as exc:
        xmlsafe.parse(doc, name="x.xml")
    refused_doctype(exc, "x.xml", None)
    assert calls == []
    with pytest.raises(UnsafeInput):
        next(xmlsafe.iterparse(doc, events=("start", "end")))
    assert calls == []


def test_xinclude_not_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = (f'<r xmlns:xi="http://www.w3.org/2001/XInclude">'
           f'<xi:include href="{secret.as_uri()}" parse="text"/></r>').encode()
    tree = xmlsafe.parse(doc)
    [include] = tree.getroot()
    assert include.tag == "{http://www.w3.org/2001/XInclude}include"
    assert b"TOP-SECRET" not in etree.tostring(tree)


def test_processing_instructions_kept_inert() -> None:
    tree = xmlsafe.parse(b'<?xml-stylesheet type="text/xsl" href="evil.xsl"?><r/>')
    pi = tree.getroot().getprevious()
    assert pi.target == "xml-stylesheet"
    assert tree.getroot().tag == "r"


class CountingReader(io.RawIOBase):
    """A file object that records how many bytes were read from it."""

    def __init__(self, data: bytes, max_read: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self.consumed = 0
        self._max_read = max_read

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._max_read is not None:
            size = self._max_read if size < 0 else min(size, self._max_read)
        chunk = self._data.read(size)
        self.consumed += len(chunk)
        return chunk


def test_oversize_refused_without_reading_everything() -> None:
    doc = b"<r>" + b"<a>x</a>" * 100_000 + b"</r>"
    reader = CountingReader(doc)
    with pytest.raises(SizeLimitExceeded) as exc:
        xmlsafe.parse(reader, name="huge.xml", max_bytes=1000)
    assert reader.consumed <= 1001
    [detail] = exc.value.details
    assert detail.file == "huge.xml"
    assert detail.expected == "at most 1000 bytes"


def test_oversize_bytes_and_path(tmp_path: Path) -> None:
    doc = b"<r>" + b"x" * 200 + b"</r>"
    with pytest.raises(SizeLimitExceeded):
        xmlsafe.parse(doc, max_bytes=100)
    path = tmp_path / "m.xml"
    path.write_bytes(doc)
    with pytest.raises(SizeLimitExceeded) as exc:
        xmlsafe.parse(path, max_bytes=100)
    assert exc.value.details[0].file == str(path)
    with pytest.raises(SizeLimitExceeded):
        xmlsafe.fromstring(doc.decode(), max_bytes=100)
    assert xmlsafe.parse(doc, max_bytes=len(doc)).getroot().text == "x" * 200


def test_syntax_error_names_file_and_line() -> None:
    doc = b'<?xml version="1.0"?>\n<mets>\n  <dmdSec>\n  </amdSec>\n</mets>\n'
    with pytest.raises(InvalidInput) as exc:
        xmlsafe.parse(doc, name="mets.xml")
    assert not isinstance(exc.value, UnsafeInput)
    [detail] = exc.value.details
    assert detail.file == "mets.xml"
    assert detail.line == 4
    assert "mismatch" in detail.message


def test_undefined_entity_is_a_syntax_error() -> None:
    with pytest.raises(InvalidInput) as exc:
        xmlsafe.parse(b"<r>\n&nbsp;</r>", name="a.xml")
    assert exc.value.details[0].line == 2
    assert "nbsp" in exc.value.details[0].message


def test_empty_document_is_invalid() -> None:
    with pytest.raises(InvalidInput) as exc:
        xmlsafe.parse(b"", name="empty.xml")
    assert exc.value.details[0].file == "empty.xml"


NON_ASCII = "Ærøskøbing — 東京 · Ελληνικά · emoji \U0001F4DA · e\u0301"


def test_utf8_non_ascii_kept_exactly(tmp_path: Path) -> None:
    doc = f'<?xml version="1.0" encoding="UTF-8"?>\n<dc title="{NON_ASCII}">{NON_ASCII}</dc>'
    path = tmp_path / "dublin_core.xml"
    path.write_bytes(doc.encode("utf-8"))
    root = xmlsafe.parse(path).getroot()
    assert root.text == NON_ASCII
    assert root.get("title") == NON_ASCII
    assert xmlsafe.fromstring(doc).text == NON_ASCII  # str input: decl is ignored
    bom = xmlsafe.fromstring(b"\xef\xbb\xbf" + doc.encode("utf-8"))
    assert bom.text == NON_ASCII


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "utf-16", "utf-16-be"])
def test_tiny_reads_do_not_defeat_the_scan(encoding: str) -> None:
    doc = ("<?xml version='1.0'?>\n<!-- a -> b - c -->\n<?pi a?b >c ?>\n"
           "<!DOCTYPE r [<!ENTITY a 'x'>]><r>&a;</r>")
    reader = CountingReader(doc.encode(encoding), max_read=1)
    with pytest.raises(UnsafeInput) as exc:
        xmlsafe.parse(reader, name="slow.xml")
    refused_doctype(exc, "slow.xml", 4)
    ok = xmlsafe.parse(CountingReader(b"\xef\xbb\xbf<r>\xc3\xa9</r>", max_read=1))
    assert ok.getroot().text == "é"


def big_document(n: int) -> bytes:
    items = "".join(f'<m:item n="{i}"><m:v>{i}</m:v></m:item>' for i in range(n))
    return f'<m:list xmlns:m="urn:x">{items}</m:list>'.encode()


def test_iterparse_streams_50k_elements(tmp_path: Path) -> None:
    path = tmp_path / "list.xml"
    path.write_bytes(big_document(50_000))
    count = 0
    total = 0
    for event, element in xmlsafe.iterparse(path, tag="{urn:x}item"):
        assert event == "end"
        total += int(element.findtext("{urn:x}v"))
        count += 1
        xmlsafe.release(element)
        # released siblings keep the partial tree small (the parser runs one chunk ahead)
        assert element.getprevious() is None
        assert len(element.getparent()) < 5000
    assert count == 50_000
    assert total == sum(range(50_000))


def test_iterparse_refuses_doctype_before_any_event() -> None:
    doc = b"<!DOCTYPE m [<!ENTITY x 'y'>]>\n" + big_document(10)
    events = xmlsafe.iterparse(doc, events=("start", "end", "start-ns"), name="s.xml")
    with pytest.raises(UnsafeInput) as exc:
        next(events)
    refused_doctype(exc, "s.xml", 1)


def test_iterparse_oversize_refused() -> None:
    with pytest.raises(SizeLimitExceeded):
        for _ in xmlsafe.iterparse(io.BytesIO(big_document(1000)), max_bytes=10_000):
            pass


def test_iterparse_syntax_error() -> None:
    with pytest.raises(InvalidInput) as exc:
        list(xmlsafe.iterparse(b"<r>\n<a>\n</r>", name="bad.xml"))
    assert exc.value.details[0].file == "bad.xml"
    assert exc.value.details[0].line == 3


def test_iterparse_rejects_unknown_event() -> None:
    with pytest.raises(ValueError, match="unknown iterparse events"):
        xmlsafe.iterparse(b"<r/>", events=("bogus",))


TAG_DOC = (b'<?pi x?><!--c--><r xmlns:m="urn:m"><a/><m:a/><b xmlns="urn:d"><a/></b>'
           b"<!--k--><?pi y?></r>")


@pytest.mark.parametrize("tag", [
    None, "a", "{urn:m}a", "{*}a", "{}a", "{}*", "*", "{urn:m}*", "{*}*", ["a", "{urn:d}a"],
])
def test_iterparse_tag_filter_matches_lxml(tag: str | list[str] | None) -> None:
    events = ("start", "end", "start-ns", "end-ns", "comment", "pi")

    def summary(pairs: object) -> list[tuple[str, object]]:
        return [(ev, item if isinstance(item, tuple) or item is None else
                 (item.tag if isinstance(item.tag, str) else item.text))
                for ev, item in pairs]  # type: ignore[attr-defined]

    ours = summary(xmlsafe.iterparse(TAG_DOC, events=events, tag=tag))
    theirs = summary(etree.iterparse(io.BytesIO(TAG_DOC), events=events, tag=tag))
    assert ours == theirs


@pytest.mark.parametrize("tag", ["a", "{urn:m}a", "{*}a", "{}*", "{urn:m}*", ["a", "{urn:d}a"]])
def test_iterparse_element_events_filtered_by_libxml2_match_lxml(tag: str | list[str]) -> None:
    # element events only: the filter runs inside the parser rather than in Python
    ours = [(ev, el.tag) for ev, el in xmlsafe.iterparse(TAG_DOC, events=("start", "end"),
                                                         tag=tag)]
    theirs = [(ev, el.tag) for ev, el in etree.iterparse(io.BytesIO(TAG_DOC),
                                                         events=("start", "end"), tag=tag)]
    assert ours == theirs


@pytest.mark.parametrize("tag", ["r", "nothing-matches"])
def test_filtered_iterparse_still_checks_docinfo(monkeypatch: pytest.MonkeyPatch,
                                                  tag: str) -> None:
    # With the lexical scan bypassed, libxml2's docinfo is checked at the first filtered
    # event, or at the end of the document when no element matched.
    monkeypatch.setattr(xmlsafe._DoctypeGuard, "_scan", lambda self, text: None)
    doc = b'<!DOCTYPE r [<!ENTITY e "x">]><r><a/></r>'
    with pytest.raises(UnsafeInput):
        list(xmlsafe.iterparse(doc, events=("start", "end"), tag=tag))
