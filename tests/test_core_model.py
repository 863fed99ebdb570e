"""The object model: handles, metadata on every type, structure changes, last_modified."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from core_support import Structure, add_file, count, get, make_structure, new_item
from sqlalchemy import select

from server import models as m
from server.context import Context, Repository
from server.errors import Conflict, InvalidInput, UnknownMetadataField
from server.services import authz, handles, metadata, objects, people
from server.services.metadata import Value

# -- handles ----------------------------------------------------------------------------


def test_mint_skips_restored_handles_and_ignores_other_prefixes(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        five = objects.create_community(ctx, None, "restored five", handle="123456789/5")
        seven = objects.create_collection(ctx, five, "restored seven",
                                          handle="hdl:123456789/7")
        foreign = objects.create_community(ctx, None, "foreign", handle="10673/1")
        assert (five.handle, seven.handle, foreign.handle) == (
            "123456789/5", "123456789/7", "10673/1")
    with repo.context(system=True) as ctx:
        minted = [handles.mint(ctx) for _ in range(7)]
    assert minted == ["123456789/1", "123456789/2", "123456789/3", "123456789/4",
                      "123456789/6", "123456789/8", "123456789/9"]
    # the counter is persistent: a new unit continues after the last minted suffix
    with repo.context(system=True) as ctx:
        community = objects.create_community(ctx, None, "fresh")
        assert community.handle == "123456789/10"


def test_mint_never_returns_a_handle_restored_ahead_of_the_counter(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        first = objects.create_community(ctx, None, "minted")
        assert first.handle == "123456789/1"
        # the counter now stands at 2; a restore brings 3, ahead of it
        objects.create_community(ctx, None, "restored", handle="123456789/3")
        second = objects.create_community(ctx, None, "minted again")
        third = objects.create_community(ctx, None, "and again")
        assert (second.handle, third.handle) == ("123456789/2", "123456789/4")
    with repo.context(write=False) as ctx:
        taken = sorted(h for h in ctx.session.scalars(select(m.DSpaceObject.handle)) if h)
    assert taken == ["123456789/0", "123456789/1", "123456789/2", "123456789/3",
                     "123456789/4"]


def test_restoring_a_taken_handle_is_a_conflict(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        objects.create_community(ctx, None, "A", handle="123456789/5")
    with pytest.raises(Conflict) as info, repo.context(system=True) as ctx:
        objects.create_community(ctx, None, "B", handle="http://hdl.handle.net/123456789/5")
    assert info.value.details[0].found == "123456789/5"


@pytest.mark.parametrize(("text", "expected"), [
    ("123456789/5", "123456789/5"),
    ("hdl:123456789/5", "123456789/5"),
    ("info:hdl/10673/abc.1", "10673/abc.1"),
    ("https://hdl.handle.net/10.5072/x-y_z", "10.5072/x-y_z"),
    ("  123456789/5 ", "123456789/5"),
])
def test_handle_forms_are_normalised(text: str, expected: str) -> None:
    assert handles.normalise(text) == expected


@pytest.mark.parametrize("text", ["123456789", "/5", "12345/6/7", "a b/1", ""])
def test_malformed_handles_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        handles.normalise(text)


# -- metadata on every object type -----------------------------------------------------------

VALUES = [
    Value("dc.title", "Über die Quellen — 源流", "de"),
    Value("dc.contributor.author", "Müller, Jürgen", None, "orcid:0000-0002-1825-0097", 600),
    Value("dc.title", "On the sources", "en"),
    Value("dc.contributor.author", "Ødegård, Åse", "nb", "rid:42", 500),
    Value("dc.description.abstract", "line one\nline two\t“quoted” 🚀 <&>", "en_US", None, 0),
    Value("dc.contributor.author", "Smith, J.", None, None, -1),
    Value("dc.subject", "Ελληνικά", "el", "lcsh:sh85057078", 300),
]


def _site(ctx: Context, s: Structure) -> m.DSpaceObject:
    return objects.site(ctx)


def _community(ctx: Context, s: Structure) -> m.DSpaceObject:
    return get(ctx, m.Community, s.community)


def _collection(ctx: Context, s: Structure) -> m.DSpaceObject:
    return get(ctx, m.Collection, s.collection)


def _item(ctx: Context, s: Structure) -> m.DSpaceObject:
    return new_item(ctx, s.collection)


def _bundle(ctx: Context, s: Structure) -> m.DSpaceObject:
    return objects.create_bundle(ctx, new_item(ctx, s.collection), "ORIGINAL")


def _bitstream(ctx: Context, s: Structure) -> m.DSpaceObject:
    return add_file(ctx, new_item(ctx, s.collection), b"bytes", "file.txt")


def _eperson(ctx: Context, s: Structure) -> m.DSpaceObject:
    return people.create_person(ctx, "someone@example.org")


def _group(ctx: Context, s: Structure) -> m.DSpaceObject:
    return people.create_group(ctx, "Editors")


MAKERS: dict[m.ObjectType, Callable[[Context, Structure], m.DSpaceObject]] = {
    m.ObjectType.SITE: _site, m.ObjectType.COMMUNITY: _community,
    m.ObjectType.COLLECTION: _collection, m.ObjectType.ITEM: _item,
    m.ObjectType.BUNDLE: _bundle, m.ObjectType.BITSTREAM: _bitstream,
    m.ObjectType.EPERSON: _eperson, m.ObjectType.GROUP: _group,
}


def test_makers_cover_every_object_type() -> None:
    assert set(MAKERS) == set(m.ObjectType)


@pytest.mark.parametrize("kind", list(m.ObjectType), ids=lambda k: k.value.lower())
def test_metadata_round_trips_on_every_object_type(repo: Repository,
                                                   kind: m.ObjectType) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        obj = MAKERS[kind](ctx, s)
        metadata.clear(ctx, obj)
        metadata.add_values(ctx, obj, VALUES[:3])
        obj_id = obj.id
    with repo.context(system=True) as ctx:  # a second unit appends after the first
        metadata.add_values(ctx, get(ctx, m.DSpaceObject, obj_id), VALUES[3:])

    with repo.context(write=False) as ctx:
        loaded = get(ctx, m.DSpaceObject, obj_id)
        assert loaded.type == kind
        assert metadata.ordered_values(loaded) == VALUES
        assert metadata.values(loaded, "dc.contributor.author") == [VALUES[1], VALUES[3],
                                                                    VALUES[5]]
        assert metadata.values(loaded, "dc.title") == [VALUES[0], VALUES[2]]
        assert metadata.first(loaded, "dc.subject") == "Ελληνικά"
        places = sorted((v.field.name, v.place) for v in loaded.metadata_values)
        assert places == [("dc.contributor.author", 0), ("dc.contributor.author", 1),
                          ("dc.contributor.author", 2), ("dc.description.abstract", 0),
                          ("dc.subject", 0), ("dc.title", 0), ("dc.title", 1)]


def test_replace_all_and_set_single(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        metadata.replace_all(ctx, item, VALUES)
        metadata.set_single(ctx, item, "dc.title", "Only title")
        item_id = item.id
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, item_id)
        assert metadata.values(item, "dc.title") == [Value("dc.title", "Only title")]
        assert len(metadata.ordered_values(item)) == len(VALUES) - 2 + 1


def test_unknown_field_is_refused_and_nothing_is_kept(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item_id = new_item(ctx, s.collection, title="kept").id
    with pytest.raises(UnknownMetadataField) as info, repo.context(system=True) as ctx:
        item = get(ctx, m.Item, item_id)
        metadata.add_values(ctx, item, [Value("dc.subject", "fine"),
                                        Value("dc.colour", "red"),
                                        Value("nosuchschema.thing", "x")])
    assert {(d.field, d.message) for d in info.value.details} == {
        ("dc.colour", "unknown metadata field"),
        ("nosuchschema.thing", "unknown metadata schema")}
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, item_id)
        assert metadata.values(item, "dc.subject") == []
        assert metadata.get_schema(ctx, "nosuchschema") is None


def test_create_true_creates_the_field_and_its_schema(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        metadata.add(ctx, item, "myschema.colour.primary", "blau", language="de", create=True)
        metadata.add(ctx, item, "dc.colour", "red", create=True)
        item_id = item.id
    with repo.context(write=False) as ctx:
        schema = metadata.get_schema(ctx, "myschema")
        assert schema is not None
        assert schema.namespace == "http://dspace.org/myschema"
        made = metadata.get_field(ctx, "myschema.colour.primary")
        assert (made.element, made.qualifier, made.name) == (
            "colour", "primary", "myschema.colour.primary")
        assert metadata.get_field(ctx, "dc.colour").qualifier is None
        item = get(ctx, m.Item, item_id)
        assert metadata.values(item, "myschema.colour.primary") == [
            Value("myschema.colour.primary", "blau", "de")]
    with repo.context(system=True) as ctx:  # known now: no create needed
        metadata.add(ctx, get(ctx, m.Item, item_id), "myschema.colour.primary", "grün")


@pytest.mark.parametrize("name", ["dc", "dc..x", "dc.ti tle", "dc.a.b.c"])
def test_malformed_field_names_are_refused(repo: Repository, name: str) -> None:
    with pytest.raises(InvalidInput), repo.context(system=True) as ctx:
        metadata.get_field(ctx, name, create=True)


def test_values_xml_cannot_carry_are_refused(repo: Repository) -> None:
    s = make_structure(repo)
    with pytest.raises(InvalidInput), repo.context(system=True) as ctx:
        metadata.add(ctx, new_item(ctx, s.collection), "dc.title", "bell\x07")


# -- structure ---------------------------------------------------------------------------------


def test_withdraw_and_reinstate(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item_id = new_item(ctx, s.collection).id
    with repo.context(system=True) as ctx:
        objects.withdraw(ctx, get(ctx, m.Item, item_id))
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, item_id)
        assert (item.withdrawn, item.in_archive) == (True, False)
        provenance = [v.value for v in metadata.values(item, "dc.description.provenance")]
        assert provenance[-1].startswith("Item withdrawn by the system on ")
        assert list(objects.archived_items(ctx, get(ctx, m.Collection, s.collection),
                                           include_withdrawn=False)) == []
    with repo.context(system=True) as ctx:
        objects.reinstate(ctx, get(ctx, m.Item, item_id))
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, item_id)
        assert (item.withdrawn, item.in_archive) == (False, True)
        provenance = [v.value for v in metadata.values(item, "dc.description.provenance")]
        assert provenance[-1].startswith("Item reinstated by the system on ")
        assert [i.id for i in objects.archived_items(
            ctx, get(ctx, m.Collection, s.collection), include_withdrawn=False)] == [item_id]


def test_install_sets_handle_system_metadata_and_inherited_policies(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection, install=False)
        bitstream = add_file(ctx, item, b"data", "a.txt")
        assert item.handle is None
        objects.install(ctx, item)
        item_id, bitstream_id = item.id, bitstream.id
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, item_id)
        assert item.handle == "123456789/4"  # community, two collections, then the item
        assert (item.in_archive, item.workflow_state) == (True, m.WorkflowState.ARCHIVED)
        assert metadata.first(item, "dc.identifier.uri") == (
            "http://127.0.0.1:8080/handle/123456789/4")
        assert [(p.action, p.group.name) for p in item.policies] == [
            (m.Action.READ, m.ANONYMOUS)]
        bitstream = get(ctx, m.Bitstream, bitstream_id)
        assert [(p.action, p.group.name) for p in bitstream.policies] == [
            (m.Action.READ, m.ANONYMOUS)]


def test_move_item_to_another_collection(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        objects.map_item(ctx, item, get(ctx, m.Collection, s.other_collection))
        item_id = item.id
    with repo.context(system=True) as ctx:
        objects.move_item(ctx, get(ctx, m.Item, item_id),
                          get(ctx, m.Collection, s.other_collection))
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, item_id)
        assert item.owning_collection_id == s.other_collection
        assert item.mapped_collections == []  # a mapping into the new owner is dropped
        assert get(ctx, m.Collection, s.collection).items == []


def test_map_and_unmap(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        objects.map_item(ctx, item, get(ctx, m.Collection, s.other_collection))
        objects.map_item(ctx, item, get(ctx, m.Collection, s.other_collection))  # no-op
        objects.map_item(ctx, item, get(ctx, m.Collection, s.collection))  # owner: no-op
        item_id = item.id
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, item_id)
        other = get(ctx, m.Collection, s.other_collection)
        assert [c.id for c in item.mapped_collections] == [s.other_collection]
        assert [i.id for i in objects.archived_items(ctx, other, include_mapped=True)] == [
            item_id]
        assert list(objects.archived_items(ctx, other)) == []
        assert not objects.is_empty(ctx, other)
    with repo.context(system=True) as ctx:
        objects.unmap_item(ctx, get(ctx, m.Item, item_id),
                           get(ctx, m.Collection, s.other_collection))
    with repo.context(write=False) as ctx:
        assert get(ctx, m.Item, item_id).mapped_collections == []
        assert objects.is_empty(ctx, get(ctx, m.Collection, s.other_collection))


def test_delete_empty_containers(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        objects.delete_container(ctx, get(ctx, m.Collection, s.other_collection))
        objects.delete_container(ctx, get(ctx, m.Collection, s.collection))
        objects.delete_container(ctx, get(ctx, m.Community, s.community))
    with repo.context(write=False) as ctx:
        assert handles.resolve(ctx, s.community_handle) is None
        assert handles.resolve(ctx, s.collection_handle) is None
        assert objects.top_communities(ctx) == []
        # their metadata and policies went with them
        assert ctx.session.scalars(select(m.MetadataValue).where(
            m.MetadataValue.dso_id.in_([s.community, s.collection]))).all() == []
        assert ctx.session.scalars(select(m.ResourcePolicy).where(
            m.ResourcePolicy.dso_id.in_([s.community, s.collection]))).all() == []


def test_deleting_a_non_empty_container_is_a_conflict(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        new_item(ctx, s.collection)
    with pytest.raises(Conflict), repo.context(system=True) as ctx:
        objects.delete_container(ctx, get(ctx, m.Collection, s.collection))
    with pytest.raises(Conflict), repo.context(system=True) as ctx:
        objects.delete_container(ctx, get(ctx, m.Community, s.community))
    with repo.context(write=False) as ctx:
        assert handles.resolve(ctx, s.collection_handle) is not None
        assert handles.resolve(ctx, s.community_handle) is not None


def test_a_collection_holding_only_mapped_items_is_not_empty(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        objects.map_item(ctx, new_item(ctx, s.collection),
                         get(ctx, m.Collection, s.other_collection))
    with pytest.raises(Conflict), repo.context(system=True) as ctx:
        objects.delete_container(ctx, get(ctx, m.Collection, s.other_collection))


def test_create_with_an_existing_uuid_is_a_conflict(repo: Repository) -> None:
    s = make_structure(repo)
    with pytest.raises(Conflict), repo.context(system=True) as ctx:
        objects.create_item(ctx, get(ctx, m.Collection, s.collection), object_id=s.community)


def test_restore_keeps_given_uuids(repo: Repository) -> None:
    s = make_structure(repo)
    wanted = uuid.UUID("5c8f7a36-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
    with repo.context(system=True) as ctx:
        objects.create_item(ctx, get(ctx, m.Collection, s.collection), object_id=wanted)
    with repo.context(write=False) as ctx:
        assert get(ctx, m.Item, wanted).owning_collection_id == s.collection


# -- last_modified --------------------------------------------------------------------------------

LONG_AGO = datetime(2001, 2, 3, 4, 5, 6, 789000)


def _age(repo: Repository, item_id: uuid.UUID) -> None:
    with repo.context(system=True) as ctx:
        get(ctx, m.Item, item_id).last_modified = LONG_AGO
    with repo.context(write=False) as ctx:
        assert get(ctx, m.Item, item_id).last_modified == LONG_AGO


def test_adding_a_bitstream_changes_the_item_last_modified(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item_id = new_item(ctx, s.collection).id
    _age(repo, item_id)
    before = m.utcnow() - timedelta(seconds=1)
    with repo.context(system=True) as ctx:
        add_file(ctx, get(ctx, m.Item, item_id), b"new file", "new.txt")
    with repo.context(write=False) as ctx:
        assert get(ctx, m.Item, item_id).last_modified > before


def test_changing_bitstream_metadata_changes_the_item_last_modified(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        bitstream_id = add_file(ctx, item, b"file", "f.txt").id
        item_id = item.id
    _age(repo, item_id)
    before = m.utcnow() - timedelta(seconds=1)
    with repo.context(system=True) as ctx:
        metadata.add(ctx, get(ctx, m.Bitstream, bitstream_id), "dc.description", "note")
    with repo.context(write=False) as ctx:
        assert get(ctx, m.Item, item_id).last_modified > before
        assert get(ctx, m.Bitstream, bitstream_id).last_modified > before


def test_an_explicit_last_modified_survives_commit(repo: Repository) -> None:
    s = make_structure(repo)
    bundle_time = datetime(1999, 12, 31, 23, 59, 59, 1)
    with repo.context(system=True) as ctx:
        item = new_item(ctx, s.collection)
        bitstream = add_file(ctx, item, b"restored", "r.txt")
        item.discoverable = False  # a change pending in the same flush as the explicit time
        item.last_modified = LONG_AGO
        bitstream.bundle.last_modified = bundle_time  # type: ignore[union-attr]
        item_id, bundle_id = item.id, bitstream.bundle_id
    assert bundle_id is not None
    with repo.context(write=False) as ctx:
        item = get(ctx, m.Item, item_id)
        assert item.last_modified == LONG_AGO
        assert item.discoverable is False
        assert get(ctx, m.Bundle, bundle_id).last_modified == bundle_time


def test_pinned_last_modified_survives_later_changes(repo, admin):
    """A restore pins the package's time; later service calls must not move it."""
    from datetime import datetime

    from server import models as m
    from server.services import metadata, objects

    when = datetime(2011, 3, 4, 5, 6, 7)
    with repo.context(system=True) as ctx:
        community = objects.create_community(ctx, None, "Pins")
        collection = objects.create_collection(ctx, community, "Pinned")
        item = objects.create_item(ctx, collection)
        ctx.pin_last_modified(item, when)
        metadata.add(ctx, item, "dc.title", "changed after the pin")
        bundle = objects.create_bundle(ctx, item, "ORIGINAL")
        ctx.session.flush()
        item_id = item.id
        bundle_id = bundle.id
    with repo.context(write=False) as ctx:
        assert ctx.session.get(m.Item, item_id).last_modified == when
        assert ctx.session.get(m.Bundle, bundle_id).last_modified != when


# -- many items at once --------------------------------------------------------------------


_TIME = re.compile(r"\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\dZ)?")


def _item_rows(ctx: Context, item_id: uuid.UUID) -> dict[str, object]:
    """Everything stored for an item and its bundles and files, with its own identifiers
    (UUIDs, handle, times) replaced by what they are, so two items can be compared."""
    item = get(ctx, m.Item, item_id)
    own = {item.handle: "<handle>"} if item.handle else {}

    def values(obj: m.DSpaceObject) -> list[tuple[object, ...]]:
        rows = sorted(obj.metadata_values, key=lambda v: v.id)
        return [(v.field.name, v.place,
                 _TIME.sub("<time>", own.get(v.value.rsplit("/handle/", 1)[-1], v.value)),
                 v.language, v.authority, v.confidence) for v in rows]

    def policies(obj: m.DSpaceObject) -> list[tuple[object, ...]]:
        return [(p.action, p.group_id, p.eperson_id, p.start_date, p.end_date, p.name,
                 p.description, p.rptype) for p in obj.policies]

    def bitstream(b: m.Bitstream) -> dict[str, object]:
        skip = {"id", "bundle_id", "last_modified", "handle"}
        columns = {c.key: getattr(b, c.key) for c in m.Bitstream.__mapper__.column_attrs
                   if c.key not in skip}
        return {**columns, "values": values(b), "policies": policies(b)}

    return {
        "item": {c.key: getattr(item, c.key) for c in m.Item.__mapper__.column_attrs
                 if c.key not in {"id", "handle", "last_modified"}},
        "has_handle": item.handle is not None,
        "values": values(item), "policies": policies(item),
        "mapped": [c.id for c in item.mapped_collections],
        "bundles": [{"name": b.name, "position": b.position, "policies": policies(b),
                     "primary": b.primary_bitstream.name if b.primary_bitstream else None,
                     "files": [bitstream(f) for f in b.bitstreams]} for b in item.bundles],
    }


@pytest.mark.parametrize("workflow", [False, True])
def test_create_items_writes_the_rows_the_single_object_services_write(
        repo: Repository, workflow: bool) -> None:
    """The bulk path and the one-object-at-a-time path give identical items: values and
    places, bundles, positions, sequence ids, primary file, policies inherited or given,
    mapping, workflow state, system metadata."""
    s = make_structure(repo)
    values = [Value("dc.title", "Same item", "en"), Value("dc.contributor.author", "A, B"),
              Value("dc.contributor.author", "C, D", authority="x1", confidence=600),
              Value("dc.subject", "one"), Value("dc.title", "Second title")]
    files = [("ORIGINAL", b"first file", "a.pdf", True, (), None),
             ("TEXT", b"extracted", "a.pdf.txt", False, (), None),
             ("ORIGINAL", b"second file", "b.png", False,
              (Value("iiif.label", "Figure 1"),), m.Action.READ)]
    with repo.context(system=True) as ctx:
        collection = get(ctx, m.Collection, s.collection)
        other = get(ctx, m.Collection, s.other_collection)
        objects.set_workflow_enabled(ctx, collection, workflow)
        admins = get(ctx, m.Group, authz.admin_group(ctx).id)
        one = objects.create_item(ctx, collection)
        metadata.add_values(ctx, one, values)
        new_files = []
        for bundle, data, name, primary, extra, action in files:
            content = ctx.add_content(io.BytesIO(data), name=name)
            bitstream = objects.add_bitstream(
                ctx, objects.bundle_named(ctx, one, bundle), content, name=name,
                mime_type="application/x-test", description=f"about {name}",
                primary=primary)
            metadata.add_values(ctx, bitstream, list(extra), create=True)
            if action is not None:
                authz.clear_policies(ctx, bitstream)
                authz.add_policy(ctx, bitstream, action, group=admins)
            new_files.append(objects.NewFile(
                bundle, content, name, mime_type="application/x-test",
                description=f"about {name}", primary=primary, values=extra,
                policies=None if action is None else [(action, admins)]))
        objects.submit(ctx, one)
        objects.map_item(ctx, one, other)
        [many] = objects.create_items(ctx, [objects.NewItem(
            collection, values, new_files, mapped=[other, collection])])
        assert (many.handle is None) == workflow
    with repo.context(write=False) as ctx:
        assert _item_rows(ctx, many.id) == _item_rows(ctx, one.id)
        assert get(ctx, m.Item, many.id).handle == many.handle


def test_create_items_mints_around_given_handles_and_checks_before_writing(
        repo: Repository) -> None:
    s = make_structure(repo)  # handles 1-3
    with repo.context(system=True) as ctx:
        collection = get(ctx, m.Collection, s.collection)
        made = objects.create_items(ctx, [
            objects.NewItem(collection, [Value("dc.title", "minted")]),
            objects.NewItem(collection, [Value("dc.title", "given")], handle="123456789/5"),
            objects.NewItem(collection, [Value("dc.title", "minted")]),
            objects.NewItem(collection, [Value("dc.title", "minted")])])
    assert [c.handle for c in made] == ["123456789/4", "123456789/5", "123456789/6",
                                        "123456789/7"]
    before = count(repo, m.DSpaceObject)
    for bad, error in (
            ([objects.NewItem(collection, [Value("dc.title", "x")], handle="123456789/5")],
             Conflict),
            ([objects.NewItem(collection, [Value("dc.title", "x")], handle="123456789/9"),
              objects.NewItem(collection, [Value("dc.title", "y")], handle="123456789/9")],
             Conflict),
            ([objects.NewItem(collection, [Value("dc.title", "x")], object_id=made[0].id)],
             Conflict),
            ([objects.NewItem(collection, [Value("dc.title", "x")]),
              objects.NewItem(collection, [Value("dc.nosuchfield", "x")])],
             UnknownMetadataField)):
        with pytest.raises(error), repo.context(system=True) as ctx:
            objects.create_items(ctx, [objects.NewItem(get(ctx, m.Collection, s.collection),
                                                       d.values, handle=d.handle,
                                                       object_id=d.object_id) for d in bad])
    assert count(repo, m.DSpaceObject) == before
