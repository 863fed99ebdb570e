"""Choosing the ingester (issue 5, "Choosing the packager"), with the installed packagers.

1. an explicit name (``?package=``, ``-t``) wins, aliases and case included;
2. then the SWORD ``Packaging`` URI (SWORD 1.3's ``sword-types`` URIs too);
3. then a specific ``Content-Type``;
4. for a generic type (``application/zip``, ``application/octet-stream``, none) the content
   is sniffed: ``mets.xml`` PROFILE -> AIP or METS, ``imsmanifest.xml`` -> IMSCP,
   ``bagit.txt`` -> BAGIT, item folders with ``dublin_core.xml`` -> SAF, ``%PDF`` -> PDF;
5. ambiguous or unknown content -> :class:`AmbiguousPackage` listing the candidates
   (the HTTP layer answers 415 with them).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from packagers.base import PackageSource
from packagers.errors import AmbiguousPackage, UnknownPackager
from packagers.registry import GENERIC_TYPES, Registry
from server.models import ObjectType

SIP_PROFILE = "DSpace METS SIP Profile 1.0"
AIP_PROFILE = "http://www.dspace.org/schema/aip/mets_aip_1_0.xsd"
METS_URI = "http://purl.org/net/sword/package/METSDSpaceSIP"
METS_LEGACY_URI = "http://purl.org/net/sword-types/METSDSpaceSIP"
BAGIT_URI = "http://purl.org/net/sword/package/BagIt"
IMSCP_URI = "http://purl.org/net/sword/package/IMSCP"


def _mets(profile: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<mets ID="x" PROFILE="{profile}" '
            'xmlns="http://www.loc.gov/METS/"/>\n').encode()


MANIFEST = (b'<manifest xmlns="http://www.imsglobal.org/xsd/imscp_v1p1" identifier="M">'
            b"<organizations/><resources/></manifest>")
DUBLIN_CORE = b'<dublin_core><dcvalue element="title">T</dcvalue></dublin_core>'
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"

SAMPLES: dict[str, dict[str, bytes]] = {
    "METS": {"mets.xml": _mets(SIP_PROFILE), "a.pdf": PDF},
    "AIP": {"mets.xml": _mets(AIP_PROFILE), "bitstream_1.pdf": PDF},
    "IMSCP": {"imsmanifest.xml": MANIFEST, "index.html": b"<html/>"},
    "BAGIT": {"bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
              "data/a.txt": b"a"},
    "SAF": {"item_000/dublin_core.xml": DUBLIN_CORE, "item_000/contents": b"a.txt\n",
            "item_000/a.txt": b"a"},
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    found = Registry()
    found.check()
    missing = {"AIP", "BAGIT", "IMSCP", "METS", "PDF", "SAF"} - set(found.names())
    if missing:
        pytest.skip(f"packagers not installed: {sorted(missing)}")
    return found


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def samples(tmp_path: Path) -> dict[str, Path]:
    out = {name: _zip(tmp_path / f"{name.lower()}.zip", members)
           for name, members in SAMPLES.items()}
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(PDF)
    out["PDF"] = pdf
    bare = tmp_path / "mets.xml"
    bare.write_bytes(_mets(SIP_PROFILE))
    out["bare METS"] = bare
    return out


def _choose(registry: Registry, path: Path | None = None, **kwargs: object) -> str:
    source = PackageSource(path) if path is not None else None
    return registry.choose_ingester(source=source, **kwargs).name  # type: ignore[arg-type]


def test_explicit_name_wins(registry: Registry, samples: dict[str, Path]) -> None:
    # name beats a SWORD URI, a specific content type and the content
    assert _choose(registry, samples["METS"], name="IMSCP", sword_packaging=METS_URI,
                   content_type="application/pdf") == "IMSCP"
    assert _choose(registry, samples["PDF"], name="bagit") == "BAGIT"
    assert _choose(registry, samples["BAGIT"], name="METSDSpaceSIP") == "METS"
    assert _choose(registry, None, name="DSpace AIP") == "AIP"
    with pytest.raises(UnknownPackager) as info:
        _choose(registry, samples["METS"], name="NoSuchFormat")
    assert "METS" in (info.value.details[0].expected or "")


def test_sword_packaging_next(registry: Registry, samples: dict[str, Path]) -> None:
    # the URI beats the content type and the content
    assert _choose(registry, samples["BAGIT"], sword_packaging=METS_URI,
                   content_type="application/pdf") == "METS"
    assert _choose(registry, samples["BAGIT"], sword_packaging=METS_LEGACY_URI) == "METS"
    assert _choose(registry, samples["METS"], sword_packaging=BAGIT_URI) == "BAGIT"
    assert _choose(registry, samples["METS"], sword_packaging=IMSCP_URI) == "IMSCP"
    with pytest.raises(UnknownPackager) as info:
        _choose(registry, samples["METS"],
                sword_packaging="http://purl.org/net/sword/package/Nope")
    detail = info.value.details[0]
    assert detail.field == "Packaging" and METS_URI in (detail.expected or "")


def test_specific_content_type_next(registry: Registry, samples: dict[str, Path]) -> None:
    # a specific type decides without looking at the content
    assert _choose(registry, samples["METS"], content_type="application/pdf") == "PDF"
    assert _choose(registry, None, content_type="application/x-pdf") == "PDF"
    assert _choose(registry, None, content_type="application/x-bzip2") == "BAGIT"


@pytest.mark.parametrize("content_type", [
    "application/zip", "application/zip; charset=binary", "application/octet-stream",
    "application/x-zip-compressed", None])
def test_generic_type_sniffs_the_content(registry: Registry, samples: dict[str, Path],
                                         content_type: str | None) -> None:
    assert content_type is None or content_type.split(";")[0] in GENERIC_TYPES
    for expected in ("METS", "AIP", "IMSCP", "BAGIT", "SAF", "PDF"):
        assert _choose(registry, samples[expected], content_type=content_type) == expected


def test_sniffing_details(registry: Registry, samples: dict[str, Path],
                          tmp_path: Path) -> None:
    # a bare METS SIP manifest, whatever XML type it comes with
    for content_type in ("text/xml", "application/xml", None):
        assert _choose(registry, samples["bare METS"], content_type=content_type) == "METS"
    # the parent narrows the candidates: only AIP puts packages into communities
    assert _choose(registry, samples["AIP"], content_type="application/zip",
                   parent_type=ObjectType.COMMUNITY) == "AIP"
    # a zip whose first, stored member is a PDF is a package, not a PDF
    pdf_first = _zip(tmp_path / "pdf-first.zip", {"a.pdf": PDF, **SAMPLES["IMSCP"]})
    assert _choose(registry, pdf_first, content_type="application/zip") == "IMSCP"
    # other METS profiles are claimed by nobody
    other = _zip(tmp_path / "other.zip", {"mets.xml": _mets("https://earkcsip.dilcis.eu/"
                                                            "profile/E-ARK-CSIP.xml")})
    with pytest.raises(AmbiguousPackage):
        _choose(registry, other, content_type="application/zip")


def test_wrapped_bag_is_bagit(registry: Registry, tmp_path: Path) -> None:
    """A bag wrapped in one folder, as bags are usually zipped -- and as davpack's BAGIT
    disseminator writes them, with dublin_core.xml beside bagit.txt."""
    wrapped = _zip(tmp_path / "wrapped.zip", {
        "ITEM@1-2/bagit.txt": SAMPLES["BAGIT"]["bagit.txt"],
        "ITEM@1-2/dublin_core.xml": DUBLIN_CORE, "ITEM@1-2/data/a.txt": b"a"})
    assert _choose(registry, wrapped, content_type="application/zip") == "BAGIT"


def test_ambiguous_or_unknown_lists_the_candidates(registry: Registry,
                                                   tmp_path: Path) -> None:
    both = _zip(tmp_path / "both.zip", {"mets.xml": _mets(SIP_PROFILE),
                                        "imsmanifest.xml": MANIFEST})
    with pytest.raises(AmbiguousPackage) as info:
        _choose(registry, both, content_type="application/zip")
    assert "could be any of" in info.value.message
    assert set((info.value.details[0].expected or "").split(", ")) == {"IMSCP", "METS"}
    unknown = _zip(tmp_path / "unknown.zip", {"readme.txt": b"hello"})
    with pytest.raises(AmbiguousPackage) as info:
        _choose(registry, unknown, content_type="application/zip")
    listed = set((info.value.details[0].expected or "").split(", "))
    assert {"AIP", "BAGIT", "IMSCP", "METS", "PDF", "SAF"} <= listed
    assert info.value.details[0].file == "unknown.zip"
    noise = tmp_path / "noise.bin"
    noise.write_bytes(b"\x00\x01 not a package")
    with pytest.raises(AmbiguousPackage):
        _choose(registry, noise, content_type="application/octet-stream")
    with pytest.raises(AmbiguousPackage) as info:
        _choose(registry, None, content_type="application/zip")
    assert info.value.details[0].field == "Content-Type"
