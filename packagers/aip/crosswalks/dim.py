"""DIM (DSpace Intermediate Metadata) and AIP-TECHMD, which is DIM-encoded.

DIM carries *every* stored metadata value of an object - all schemas, languages,
authorities and confidences - for items and, unlike DSpace (DS-3960), for sites,
communities and collections too.  Values are written grouped by field (fields in the
order they were first added, values in their ``place`` order), which is also the order a
restore adds them back in, so a restored object re-exports identically.  Relationship
("virtual") values, whose authority starts with ``virtual::``, are never written as
stored data (DSpace's restore failure A7).

AIP-TECHMD records the facts DSpace keeps outside metadata: an item's submitter, owning
and mapping collections and withdrawn state; a bitstream's name, source, description and
format.  Handles are written in the ``hdl:`` form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from packagers.aip.mets import DIM_NS, check_xml_chars, element, local, sub
from server import models as m
from server.services.metadata import Value

CONFIDENCE_WORDS = {-1: "UNSET", 0: "NOVALUE", 100: "REJECTED", 200: "FAILED",
                    300: "NOTFOUND", 400: "AMBIGUOUS", 500: "UNCERTAIN", 600: "ACCEPTED"}
CONFIDENCE_VALUES = {word: number for number, word in CONFIDENCE_WORDS.items()}
VIRTUAL_AUTHORITY = "virtual::"
DIM_TAG = f"{{{DIM_NS}}}dim"
FIELD_TAG = f"{{{DIM_NS}}}field"


def export_values(dso: m.DSpaceObject) -> list[Value]:
    """The object's values in export order (see the module docstring)."""
    rows = [r for r in dso.metadata_values
            if not (r.authority or "").startswith(VIRTUAL_AUTHORITY)]
    first_seen: dict[int, int] = {}
    for row in sorted(rows, key=lambda r: r.id or 0):
        first_seen.setdefault(row.field_id, row.id or 0)
    rows.sort(key=lambda r: (first_seen[r.field_id], r.place, r.id or 0))
    return [Value(r.field.name, r.value, r.language, r.authority, r.confidence) for r in rows]


def add_fields(parent: Any, values: Iterable[Value], tag: str = FIELD_TAG) -> None:
    """Append one DIM ``field`` element per value to ``parent``."""
    for value in values:
        schema, element_name, qualifier = _split(value.field)
        attrs: dict[str, str | None] = {"mdschema": schema, "element": element_name,
                                        "qualifier": qualifier, "lang": value.language or None}
        if value.authority:
            attrs["authority"] = value.authority
            attrs["confidence"] = CONFIDENCE_WORDS.get(value.confidence,
                                                       str(value.confidence))
        sub(parent, tag, attrs, check_xml_chars(value.value, value.field))


def dim_document(values: Iterable[Value], dspace_type: str) -> Any:
    root = element(DIM_TAG, {"dspaceType": dspace_type}, nsmap={"dim": DIM_NS})
    add_fields(root, values)
    return root


def read_fields(parent: Any) -> list[Value]:
    """Values of the DIM ``field`` children of ``parent`` (any namespace), in order."""
    out: list[Value] = []
    for el in parent:
        if local(el.tag) != "field":
            continue
        schema = (el.get("mdschema") or "dc").strip() or "dc"
        element_name = (el.get("element") or "").strip()
        if not element_name:
            continue
        qualifier = (el.get("qualifier") or "").strip() or None
        confidence_text = el.get("confidence")
        confidence = -1
        if confidence_text:
            confidence = CONFIDENCE_VALUES.get(confidence_text.strip().upper(), -1)
            if confidence == -1 and confidence_text.strip().lstrip("-").isdigit():
                confidence = int(confidence_text)
        name = ".".join(p for p in (schema, element_name, qualifier) if p)
        out.append(Value(name, "".join(el.itertext()), el.get("lang") or None,
                         el.get("authority") or None, confidence))
    return out


def _split(name: str) -> tuple[str, str, str | None]:
    parts = name.split(".", 2)
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


# ---------------------------------------------------------------------------------------
# AIP-TECHMD


def hdl(handle: str | None) -> str | None:
    return f"hdl:{handle}" if handle else None


def techmd_document(dspace_type: str, pairs: Iterable[tuple[str, str | None]]) -> Any:
    """An AIP-TECHMD ``dim:dim`` from ``(dc field, value)`` pairs (None values skipped)."""
    values = [Value(name, value) for name, value in pairs if value is not None]
    return dim_document(values, dspace_type)


@dataclass
class TechMD:
    """What an AIP-TECHMD section says, read back (unknown fields are ignored)."""

    values: list[Value] = field(default_factory=list)

    def first(self, name: str) -> str | None:
        for value in self.values:
            if value.field.lower() == name.lower():
                return value.value
        return None

    def all(self, name: str) -> list[str]:
        return [v.value for v in self.values if v.field.lower() == name.lower()]

    @property
    def withdrawn(self) -> bool:
        return any(v.strip().upper() == "WITHDRAWN" for v in self.all("dc.rights.accessRights"))


def read_techmd(root: Any | None) -> TechMD:
    if root is None:
        return TechMD()
    return TechMD(read_fields(root))


def strip_hdl(value: str | None) -> str | None:
    if not value:
        return None
    text = value.strip()
    for prefix in ("hdl:", "http://hdl.handle.net/", "https://hdl.handle.net/"):
        if text.lower().startswith(prefix):
            return text[len(prefix):]
    return None
