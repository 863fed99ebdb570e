"""Administration commands: database, people, groups, structure, fixity."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from server.cli import open_repository


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="create or migrate the schema, seed the registry")
    up.set_defaults(handler=db_upgrade)

    user = sub.add_parser("user", help="people (EPersons)")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_sub.add_parser("add", help="add a person who can log in")
    add.add_argument("email")
    add.add_argument("--admin", action="store_true", help="make an administrator")
    add.add_argument("--first-name")
    add.add_argument("--last-name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (else prompt)")
    add.add_argument("--no-password", action="store_true",
                     help="create without a password (cannot log in over HTTP)")
    add.set_defaults(handler=user_add)
    passwd = user_sub.add_parser("password", help="set a person's password")
    passwd.add_argument("email")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=user_password)

    group = sub.add_parser("group", help="groups")
    group_sub = group.add_subparsers(dest="group_command", metavar="ACTION", required=True)
    gadd = group_sub.add_parser("add", help="create a group")
    gadd.add_argument("name")
    gadd.set_defaults(handler=group_add)
    member = group_sub.add_parser("member", help="add a person or a group to a group")
    member.add_argument("group")
    member_what = member.add_mutually_exclusive_group(required=True)
    member_what.add_argument("--person", metavar="EMAIL")
    member_what.add_argument("--group", dest="member_group", metavar="NAME")
    member.set_defaults(handler=group_member)

    community = sub.add_parser("community", help="communities")
    com_sub = community.add_subparsers(dest="community_command", metavar="ACTION",
                                       required=True)
    ccreate = com_sub.add_parser("create", help="create a community")
    ccreate.add_argument("name")
    ccreate.add_argument("--parent", metavar="HANDLE", help="parent community (else top level)")
    ccreate.set_defaults(handler=community_create)

    collection = sub.add_parser("collection", help="collections")
    col_sub = collection.add_subparsers(dest="collection_command", metavar="ACTION",
                                        required=True)
    lcreate = col_sub.add_parser("create", help="create a collection in a community")
    lcreate.add_argument("name")
    lcreate.add_argument("--community", metavar="HANDLE", required=True)
    lcreate.add_argument("--workflow", action="store_true",
                         help="submissions go through review before they are archived")
    lcreate.set_defaults(handler=collection_create)

    fixity = sub.add_parser("fixity", help="re-hash every stored file; exit 1 on any finding")
    fixity.add_argument("--quiet", "-q", action="store_true", help="print findings only")
    fixity.set_defaults(handler=fixity_check)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != value:
            raise SystemExit("davpack: passwords differ")
    if not value:
        raise SystemExit("davpack: empty password")
    return value


def db_upgrade(args: argparse.Namespace) -> int:
    from server.db import current_revision

    repo = open_repository(args)
    print(f"database at revision {current_revision(repo.engine)}; store at "
          f"{repo.config.path('store.path')}")
    return 0


def user_add(args: argparse.Namespace) -> int:
    from server.services import authz, people

    password = None if args.no_password else _password(args)
    repo = open_repository(args)
    with repo.context(system=True) as ctx:
        person = people.create_person(ctx, args.email, password=password,
                                      first_name=args.first_name, last_name=args.last_name)
        if args.admin:
            people.add_member(ctx, authz.admin_group(ctx), person)
        print(f"created {person.email} ({person.id}){' as administrator' if args.admin else ''}")
    return 0


def user_password(args: argparse.Namespace) -> int:
    from server.services import people

    password = _password(args)
    repo = open_repository(args)
    with repo.context(system=True) as ctx:
        people.set_password(ctx, people.require_person(ctx, args.email), password)
    print(f"password of {args.email} changed")
    return 0


def group_add(args: argparse.Namespace) -> int:
    from server.services import people

    repo = open_repository(args)
    with repo.context(system=True) as ctx:
        group = people.create_group(ctx, args.name)
        print(f"created group {group.name} ({group.id})")
    return 0


def group_member(args: argparse.Namespace) -> int:
    from server.services import authz, people

    repo = open_repository(args)
    with repo.context(system=True) as ctx:
        group = authz.require_group(ctx, args.group)
        member = (people.require_person(ctx, args.person) if args.person
                  else authz.require_group(ctx, args.member_group))
        people.add_member(ctx, group, member)
        print(f"added {args.person or args.member_group} to {group.name}")
    return 0


def community_create(args: argparse.Namespace) -> int:
    from server import models as m
    from server.errors import InvalidInput
    from server.services import handles, objects

    repo = open_repository(args)
    with repo.context(system=True) as ctx:
        parent = None
        if args.parent:
            found = handles.require(ctx, args.parent)
            if not isinstance(found, m.Community):
                raise InvalidInput(f"{args.parent} is not a community")
            parent = found
        community = objects.create_community(ctx, parent, args.name)
        print(community.handle)
    return 0


def collection_create(args: argparse.Namespace) -> int:
    from server import models as m
    from server.errors import InvalidInput
    from server.services import handles, objects

    repo = open_repository(args)
    with repo.context(system=True) as ctx:
        community = handles.require(ctx, args.community)
        if not isinstance(community, m.Community):
            raise InvalidInput(f"{args.community} is not a community")
        collection = objects.create_collection(ctx, community, args.name)
        collection.workflow_enabled = args.workflow
        print(collection.handle)
    return 0


def fixity_check(args: argparse.Namespace) -> int:
    from server.services import fixity

    repo = open_repository(args)
    failures = orphans = 0
    for finding in fixity.check(repo):
        if finding.is_failure:
            failures += 1
        else:
            orphans += 1
        users = "; used by " + ", ".join(finding.bitstreams) if finding.bitstreams else ""
        print(f"{finding.kind.upper()} {finding.sha256}: {finding.detail}{users}")
    if not args.quiet:
        print(f"fixity: {failures} missing or altered, {orphans} orphaned")
    return 1 if failures else 0
