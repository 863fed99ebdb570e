"""Authorization through resource policies, groups (nested) and administrators."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from core_support import Structure, get, make_structure, new_item

from server import models as m
from server.context import Repository
from server.errors import AuthenticationRequired, InvalidInput, PermissionDenied
from server.services import authz, objects, people


def _person(repo: Repository, email: str = "reader@example.org") -> uuid.UUID:
    with repo.context(system=True) as ctx:
        return people.create_person(ctx, email, password="pw").id


def _policy(repo: Repository, target: uuid.UUID, action: m.Action, *,
            person: uuid.UUID | None = None, group: str | None = None,
            start_date: datetime | None = None, end_date: datetime | None = None) -> None:
    with repo.context(system=True) as ctx:
        authz.add_policy(ctx, get(ctx, m.DSpaceObject, target), action,
                         eperson=get(ctx, m.EPerson, person) if person else None,
                         group=authz.require_group(ctx, group) if group else None,
                         start_date=start_date, end_date=end_date)


def _can_add_item(repo: Repository, person: uuid.UUID, s: Structure) -> bool:
    """Try to create an item in the collection as ``person``; roll the attempt back."""
    try:
        with repo.context(person) as ctx:
            objects.create_item(ctx, get(ctx, m.Collection, s.collection))
            raise _RollBack
    except _RollBack:
        return True
    except PermissionDenied:
        return False


class _RollBack(Exception):
    pass


def test_anonymous_read_comes_from_policies(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        hidden = objects.create_community(ctx, None, "hidden", default_policies=False)
        hidden_id = hidden.id
    with repo.context(write=False) as ctx:
        assert ctx.actor is None
        community = get(ctx, m.Community, s.community)
        assert authz.allowed(ctx, community, m.Action.READ)
        assert authz.allowed(ctx, objects.site(ctx), m.Action.READ)
        assert not authz.allowed(ctx, community, m.Action.WRITE)
        assert not authz.allowed(ctx, get(ctx, m.Community, hidden_id), m.Action.READ)
        with pytest.raises(AuthenticationRequired):
            authz.authorize(ctx, get(ctx, m.Community, hidden_id), m.Action.READ)


def test_person_without_policy_may_not_add_to_a_collection(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    with pytest.raises(PermissionDenied) as info, repo.context(person) as ctx:
        objects.create_item(ctx, get(ctx, m.Collection, s.collection))
    assert "reader@example.org may not ADD COLLECTION" in info.value.message
    with repo.context(person, write=False) as ctx:  # but Anonymous READ still applies
        assert authz.allowed(ctx, get(ctx, m.Collection, s.collection), m.Action.READ)


def test_anonymous_add_asks_for_authentication(repo: Repository) -> None:
    s = make_structure(repo)
    with pytest.raises(AuthenticationRequired), repo.context() as ctx:
        objects.create_item(ctx, get(ctx, m.Collection, s.collection))


def test_administrator_may_do_anything(repo: Repository, admin: m.EPerson) -> None:
    s = make_structure(repo)
    with repo.context(admin.id) as ctx:
        assert authz.is_admin(ctx)
        item = objects.create_item(ctx, get(ctx, m.Collection, s.collection))
        assert item.submitter_id == admin.id
        objects.create_community(ctx, None, "top level needs an administrator")


def test_only_administrators_create_top_level_communities(repo: Repository) -> None:
    person = _person(repo)
    with pytest.raises(PermissionDenied), repo.context(person) as ctx:
        objects.create_community(ctx, None, "not allowed")


def test_direct_add_policy_grants_add(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    assert not _can_add_item(repo, person, s)
    _policy(repo, s.collection, m.Action.ADD, person=person)
    assert _can_add_item(repo, person, s)


def test_admin_policy_on_a_community_grants_add_on_its_collection(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    _policy(repo, s.community, m.Action.ADMIN, person=person)
    assert _can_add_item(repo, person, s)
    with repo.context(person, write=False) as ctx:
        assert authz.allowed(ctx, get(ctx, m.Collection, s.collection), m.Action.WRITE)
        assert not authz.is_admin(ctx)


def test_admin_policy_on_a_collection_does_not_reach_up(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    _policy(repo, s.collection, m.Action.ADMIN, person=person)
    with repo.context(person, write=False) as ctx:
        assert authz.allowed(ctx, get(ctx, m.Collection, s.collection), m.Action.ADD)
        assert not authz.allowed(ctx, get(ctx, m.Community, s.community), m.Action.ADD)
        assert not authz.allowed(ctx, get(ctx, m.Collection, s.other_collection),
                                 m.Action.ADD)


def test_read_policy_on_a_community_does_not_grant_add_below(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    _policy(repo, s.community, m.Action.ADD, person=person)  # ADD, not ADMIN: no inheritance
    assert not _can_add_item(repo, person, s)


def test_expired_policy_does_not_apply(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    _policy(repo, s.collection, m.Action.ADD, person=person,
            end_date=m.utcnow() - timedelta(days=1))
    assert not _can_add_item(repo, person, s)


def test_not_yet_started_policy_does_not_apply(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    _policy(repo, s.collection, m.Action.ADD, person=person,
            start_date=m.utcnow() + timedelta(days=1))
    assert not _can_add_item(repo, person, s)


def test_policy_within_its_dates_applies(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    _policy(repo, s.collection, m.Action.ADD, person=person,
            start_date=m.utcnow() - timedelta(days=1), end_date=m.utcnow() + timedelta(days=1))
    assert _can_add_item(repo, person, s)


def test_nested_group_membership_grants(repo: Repository) -> None:
    s = make_structure(repo)
    person = _person(repo)
    with repo.context(system=True) as ctx:
        outer = people.create_group(ctx, "Submitters")
        middle = people.create_group(ctx, "Department")
        inner = people.create_group(ctx, "Lab")
        people.add_member(ctx, outer, middle)
        people.add_member(ctx, middle, inner)
        people.add_member(ctx, inner, get(ctx, m.EPerson, person))
    _policy(repo, s.collection, m.Action.ADD, group="Submitters")
    assert _can_add_item(repo, person, s)
    with repo.context(person, write=False) as ctx:
        names = {get(ctx, m.Group, g).name for g in authz.group_ids_of(ctx, ctx.actor)}
        assert names == {m.ANONYMOUS, "Submitters", "Department", "Lab"}

    with repo.context(system=True) as ctx:
        people.remove_member(ctx, authz.require_group(ctx, "Department"),
                             authz.require_group(ctx, "Lab"))
    assert not _can_add_item(repo, person, s)


def test_nested_administrator_group_makes_an_administrator(repo: Repository) -> None:
    person = _person(repo)
    with repo.context(system=True) as ctx:
        deputies = people.create_group(ctx, "Deputies")
        people.add_member(ctx, deputies, get(ctx, m.EPerson, person))
        people.add_member(ctx, authz.admin_group(ctx), deputies)
    with repo.context(person, write=False) as ctx:
        assert authz.is_admin(ctx)


def test_group_cycles_are_refused(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        a = people.create_group(ctx, "A")
        b = people.create_group(ctx, "B")
        people.add_member(ctx, a, b)
    with pytest.raises(InvalidInput), repo.context(system=True) as ctx:
        people.add_member(ctx, authz.require_group(ctx, "B"), authz.require_group(ctx, "A"))
    with pytest.raises(InvalidInput), repo.context(system=True) as ctx:
        group = authz.require_group(ctx, "A")
        people.add_member(ctx, group, group)


def test_workspace_item_is_not_readable_by_anonymous(repo: Repository) -> None:
    s = make_structure(repo)
    with repo.context(system=True) as ctx:
        draft = new_item(ctx, s.collection, install=False).id
        archived = new_item(ctx, s.collection).id
    with repo.context(write=False) as ctx:
        assert not authz.allowed(ctx, get(ctx, m.Item, draft), m.Action.READ)
        assert authz.allowed(ctx, get(ctx, m.Item, archived), m.Action.READ)
