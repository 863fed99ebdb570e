"""Metadata registry and values: ordered, multi-valued, on every object type.

A field is named ``schema.element[.qualifier]``.  Unknown fields are an error
(:class:`UnknownMetadataField`) unless the caller passes ``create=True``, which is what the
``createMetadataFields`` packager option means.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from server import models as m
from server.context import Context
from server.errors import Detail, InvalidInput, UnknownMetadataField

_NAME_PART = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class Value:
    """One metadata value as packagers read and write it."""

    field: str
    value: str
    language: str | None = None
    authority: str | None = None
    confidence: int = -1

    @property
    def schema(self) -> str:
        return self.field.split(".")[0]

    @property
    def element(self) -> str:
        return self.field.split(".")[1]

    @property
    def qualifier(self) -> str | None:
        parts = self.field.split(".", 2)
        return parts[2] if len(parts) > 2 else None


def split_field(name: str) -> tuple[str, str, str | None]:
    parts = name.split(".", 2)
    if len(parts) < 2 or not all(_NAME_PART.match(p) for p in parts):
        raise InvalidInput(f"not a metadata field name: {name!r}",
                           [Detail("expected schema.element[.qualifier]", field=name)])
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def field_name(schema: str, element: str, qualifier: str | None) -> str:
    return ".".join(p for p in (schema, element, qualifier) if p)


def get_schema(ctx: Context, prefix: str) -> m.MetadataSchema | None:
    return ctx.session.scalars(select(m.MetadataSchema)
                               .where(m.MetadataSchema.prefix == prefix)).first()


def create_schema(ctx: Context, prefix: str, namespace: str) -> m.MetadataSchema:
    schema = m.MetadataSchema(prefix=prefix, namespace=namespace)
    ctx.session.add(schema)
    ctx.session.flush()
    return schema


def get_field(ctx: Context, name: str, *, create: bool = False) -> m.MetadataField:
    """Look a field up; create it (and its schema) only if asked.

    Committed fields are remembered by the repository (fields are never deleted), so a
    batch of items does not query the registry again for every item; a field created by an
    unfinished unit of work is remembered by that unit only, until it commits.
    """
    key = ("field", name)
    cached = ctx._cache.get(key)
    if isinstance(cached, m.MetadataField):
        return cached
    known = ctx.repo.known_fields.get(name)
    if known is not None:
        attached = ctx.session.merge(known, load=False)
        ctx._cache[key] = attached
        return attached
    schema_prefix, element, qualifier = split_field(name)
    schema = get_schema(ctx, schema_prefix)
    found = None
    if schema is not None:
        found = ctx.session.scalars(select(m.MetadataField).where(
            m.MetadataField.schema_id == schema.id,
            m.MetadataField.element == element,
            m.MetadataField.qualifier_key == (qualifier or ""))).first()
    if found is None:
        if not create:
            reason = ("unknown metadata schema" if schema is None else "unknown metadata field")
            raise UnknownMetadataField(
                f"metadata field {name} is not in the registry (create it first, or use the "
                "createMetadataFields option)",
                [Detail(reason, field=name)])
        if schema is None:
            schema = create_schema(ctx, schema_prefix, f"http://dspace.org/{schema_prefix}")
        found = m.MetadataField(schema_id=schema.id, element=element, qualifier=qualifier,
                                qualifier_key=qualifier or "")
        ctx.session.add(found)
        ctx.session.flush()
        ctx.new_fields.add(name)
    elif name not in ctx.new_fields:
        ctx.repo.known_fields[name] = _detached_copy(found)
    ctx._cache[key] = found
    return found


def _detached_copy(found: m.MetadataField) -> m.MetadataField:
    """A session-free copy of a committed field (and its schema) for the repository cache."""
    schema = m.MetadataSchema(id=found.schema.id, prefix=found.schema.prefix,
                              namespace=found.schema.namespace)
    make_transient_to_detached(schema)
    copy = m.MetadataField(id=found.id, schema_id=found.schema_id, element=found.element,
                           qualifier=found.qualifier, qualifier_key=found.qualifier_key,
                           scope_note=found.scope_note)
    make_transient_to_detached(copy)
    set_committed_value(copy, "schema", schema)
    return copy


def values(dso: m.DSpaceObject, name: str | None = None) -> list[Value]:
    """Values of ``dso`` in stored order (by field, then place); one field if ``name``."""
    out = []
    rows = sorted(dso.metadata_values, key=lambda v: (v.field.name, v.place, v.id or 0))
    for row in rows:
        fname = row.field.name
        if name is None or fname == name:
            out.append(Value(fname, row.value, row.language, row.authority, row.confidence))
    return out


def ordered_values(dso: m.DSpaceObject) -> list[Value]:
    """All values in insertion order (the order a package listed them), for export."""
    rows = sorted(dso.metadata_values, key=lambda v: (v.id is None, v.id or 0))
    return [Value(r.field.name, r.value, r.language, r.authority, r.confidence) for r in rows]


def first(dso: m.DSpaceObject, name: str) -> str | None:
    found = values(dso, name)
    return found[0].value if found else None


def add(ctx: Context, dso: m.DSpaceObject, name: str, value: str, *,
        language: str | None = None, authority: str | None = None, confidence: int = -1,
        create: bool = False) -> None:
    add_values(ctx, dso, [Value(name, value, language, authority, confidence)], create=create)


def add_values(ctx: Context, dso: m.DSpaceObject, new: Iterable[Value], *,
               create: bool = False) -> None:
    """Append values after the existing ones of each field, keeping the given order."""
    places: dict[int, int] = {}
    for row in dso.metadata_values:
        places[row.field_id] = max(places.get(row.field_id, -1), row.place)
    for fld, v, place in placed_values(ctx, new, places, create=create):
        dso.metadata_values.append(m.MetadataValue(
            field=fld, field_id=fld.id, value=v.value, language=v.language or None,
            authority=v.authority or None, confidence=v.confidence, place=place))
    dso.touch()


def value_rows(ctx: Context, dso_id: uuid.UUID, new: Iterable[Value], places: dict[int, int],
               *, create: bool = False) -> list[dict[str, object]]:
    """The ``metadata_value`` rows :func:`add_values` would add to a new object, for a bulk
    insert (``places``: as in :func:`placed_values`, empty for the object's first values)."""
    return [{"dso_id": dso_id, "field_id": fld.id, "value": v.value,
             "language": v.language or None, "authority": v.authority or None,
             "confidence": v.confidence, "place": place}
            for fld, v, place in placed_values(ctx, new, places, create=create)]


def placed_values(ctx: Context, new: Iterable[Value], places: dict[int, int], *,
                  create: bool = False) -> list[tuple[m.MetadataField, Value, int]]:
    """Each value with its field and its place after ``places`` (field id -> last place,
    updated); one error listing every unknown field, values XML cannot carry refused."""
    out: list[tuple[m.MetadataField, Value, int]] = []
    problems: list[Detail] = []
    for v in new:
        if v.value is None:
            problems.append(Detail("a metadata value must not be null", field=v.field))
            continue
        try:
            fld = get_field(ctx, v.field, create=create)
        except UnknownMetadataField as exc:
            problems.extend(exc.details)
            continue
        _clean(v.value)
        place = places.get(fld.id, -1) + 1
        places[fld.id] = place
        out.append((fld, v, place))
    if problems:
        unique = {d.field: d for d in problems}
        raise UnknownMetadataField(
            "metadata fields not in the registry: " + ", ".join(sorted(str(f) for f in unique)),
            list(unique.values()))
    return out


def clear(ctx: Context, dso: m.DSpaceObject, name: str | None = None) -> None:
    """Remove all values (of one field, if named)."""
    for row in list(dso.metadata_values):
        if name is None or row.field.name == name:
            dso.metadata_values.remove(row)
    dso.touch()
    ctx.session.flush()


def replace_all(ctx: Context, dso: m.DSpaceObject, new: Sequence[Value], *,
                create: bool = False) -> None:
    clear(ctx, dso)
    add_values(ctx, dso, new, create=create)


def set_single(ctx: Context, dso: m.DSpaceObject, name: str, value: str | None, *,
               create: bool = False) -> None:
    clear(ctx, dso, name)
    if value is not None:
        add(ctx, dso, name, value, create=create)


_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    """Refuse characters XML 1.0 cannot carry, rather than lose them silently on export."""
    if _XML_ILLEGAL.search(text):
        raise InvalidInput("metadata value contains characters XML cannot carry",
                           [Detail("control character in value", found=repr(text[:80]))])
    return text
