"""``davpack packager``: DSpace's ``dspace packager`` with the same flags and meanings.

::

    davpack packager -d [-a] -t AIP [-e EMAIL] -i HANDLE [-o name=value]... FILE
    davpack packager -s [-a] [-w] -t AIP [-e EMAIL] -p PARENT [-o name=value]... FILE
    davpack packager -r [-a] [-k | -f] -t AIP [-e EMAIL] [-i HANDLE] [-o ...]... FILE|DIR

``-d`` disseminate, ``-s`` submit (the default), ``-r`` restore, ``-k`` keep existing
objects, ``-f`` force replace, ``-a`` the whole hierarchy, ``-t`` the packager, ``-e`` the
person the operation runs as (without it: a system operation), ``-i`` the object (handle or
UUID), ``-p`` the parent, ``-o`` packager options, ``-w`` skip workflow, ``-u`` no
confirmation question for ``-f``, ``-h`` help (with ``-t``: the packager's options).  The
package file or directory comes last.  ``--log-json FILE`` writes one JSON line per object
(type, handle, outcome, reason); a progress bar is drawn when standard error is a terminal.
Exit status 0 on success, 1 when anything failed (the error and its details are printed).

Also here: ``davpack packagers list`` (what is installed, with every option and its
defaults, generated from the declarations) and ``davpack schemas fetch`` (the official
XML schemas into ``packagers.schemas_dir``, for validation without network access).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any

from server.cli import open_repository
from server.errors import DavpackError, Detail, InvalidInput

USAGE = """\
davpack packager [-d | -s | -r [-k | -f]] [-a] [-w] [-u] -t TYPE [-e EMAIL]
                 [-i IDENTIFIER] [-p PARENT] [-o NAME=VALUE]... [--log-json FILE] PATH"""

HELP = """\
Ingest (submit or restore) or disseminate packages, as DSpace's 'dspace packager'.

modes:
  -d, --disseminate      disseminate: write the package of -i to PATH
  -s, --submit           submit: create new objects from PATH under -p (the default)
  -r, --restore          restore objects as PATH describes them (handles, parents, UUIDs)
  -k, --keep-existing    with -r: skip objects that exist (and their children)
  -f, --force-replace    with -r: replace objects that exist
  -a, --all              the whole hierarchy: children too (-d writes one file per object
                         into PATH's directory; ingest follows child packages)

options:
  -t, --type TYPE        packager name, e.g. AIP (see 'davpack packagers list')
  -e, --eperson EMAIL    run as this person (default: a system operation)
  -i, --identifier ID    handle or UUID: the object to disseminate, or to replace with -r -f
  -p, --parent HANDLE    parent of the new object (submit); overrides the package's parent
  -o, --option N=V       packager option (repeatable); '-o name' means name=true
  -w, --install          skip the collection's workflow (install immediately)
  -u, --no-user-interaction
                         do not ask before a force replace
  --log-json FILE        one JSON line per object: type, handle, outcome, reason
  -h, --help             this help; with -t, the packager's options too
"""


def register(sub: Any) -> None:
    parser = sub.add_parser("packager", help="ingest or disseminate packages (dspace packager)",
                            add_help=False, usage=USAGE,
                            description="Ingest or disseminate packages.")
    mode = parser.add_argument_group("modes")
    mode.add_argument("-d", "--disseminate", action="store_true")
    mode.add_argument("-s", "--submit", action="store_true")
    mode.add_argument("-r", "--restore", action="store_true")
    mode.add_argument("-k", "--keep-existing", action="store_true")
    mode.add_argument("-f", "--force-replace", action="store_true")
    mode.add_argument("-a", "--all", action="store_true")
    parser.add_argument("-t", "--type")
    parser.add_argument("-e", "--eperson")
    parser.add_argument("-i", "--identifier")
    parser.add_argument("-p", "--parent", action="append", default=[])
    parser.add_argument("-o", "--option", action="append", default=[])
    parser.add_argument("-w", "--install", action="store_true")
    parser.add_argument("-u", "--no-user-interaction", action="store_true")
    parser.add_argument("--log-json", metavar="FILE")
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("path", nargs="?")
    parser.set_defaults(handler=run_packager, parser=parser)

    listing = sub.add_parser("packagers", help="installed packagers and their options")
    listing_sub = listing.add_subparsers(dest="packagers_command", metavar="ACTION",
                                         required=True)
    show = listing_sub.add_parser("list", help="name, aliases, MIME types, options, defaults")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--markdown", action="store_true",
                      help="the README's packager table")
    show.set_defaults(handler=list_packagers)

    schemas = sub.add_parser("schemas", help="local XML schemas for package validation")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", metavar="ACTION",
                                         required=True)
    fetch = schemas_sub.add_parser("fetch", help="download the METS, MODS, PREMIS, XLink and "
                                                 "XML schemas into packagers.schemas_dir")
    fetch.add_argument("--dir", help="target directory (default: packagers.schemas_dir)")
    fetch.set_defaults(handler=fetch_schemas)


# ---------------------------------------------------------------------------------------
# davpack packager


class _Log:
    """--log-json lines and the progress bar."""

    def __init__(self, path: str | None) -> None:
        self._file: IO[str] | None = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115
        self.counts: Counter[str] = Counter()
        self.warnings: list[str] = []
        self._bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(unit=" objects", file=sys.stderr, leave=False)

    def progress(self, obj: Any) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{obj.type.value} {obj.handle or ''}", refresh=False)

    def record(self, obj: Any) -> None:
        self.counts[obj.outcome.value] += 1
        self.warnings.extend(obj.warnings)
        self.line({"type": obj.type.value, "handle": obj.handle, "outcome": obj.outcome.value,
                   "reason": obj.reason, "uuid": str(obj.uuid) if obj.uuid else None,
                   "package": obj.package, "warnings": list(obj.warnings)})

    def line(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()

    def failure(self, exc: DavpackError) -> None:
        where = next((d for d in exc.details if d.file), None)
        self.line({"type": None, "handle": None, "outcome": "failed", "reason": exc.message,
                   "package": where.file if where else None,
                   "details": [d.as_dict() for d in exc.details]})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            self._file.close()


def _usage_error(args: argparse.Namespace, message: str) -> int:
    args.parser.print_usage(sys.stderr)
    print(f"davpack packager: error: {message}", file=sys.stderr)
    return 2


def _print_help(packager_type: str | None) -> None:
    print(f"usage: {USAGE}\n")
    print(HELP)
    if packager_type:
        from packagers.registry import default_registry

        cls = default_registry().get(packager_type)
        print(f"options of packager {cls.name} (-o NAME=VALUE):")
        for option in cls.options:
            print(f"  {option.name}  [{', '.join(sorted(option.applies_to))}]"
                  f"  default: {_defaults(option)}")
            print(f"      {option.help}")


def _defaults(option: Any) -> str:
    if option.defaults:
        return "; ".join(f"{mode} {value}" for mode, value in option.defaults.items())
    return "unset" if option.default is None else str(option.default)


def _resolve(repo: Any, identifier: str) -> uuid.UUID:
    from server.services import objects

    with repo.context(write=False) as ctx:
        return objects.find(ctx, identifier).id


def run_packager(args: argparse.Namespace) -> int:
    if args.help:
        _print_help(args.type)
        return 0
    if not args.path:
        return _usage_error(args, "the package file or directory is required (last argument)")
    if not args.type:
        return _usage_error(args, "the packager type is required (-t, e.g. -t AIP)")
    if sum((args.disseminate, args.submit, args.restore)) > 1:
        return _usage_error(args, "choose one of -d, -s and -r")
    if args.keep_existing and args.force_replace:
        return _usage_error(args, "-k and -f exclude each other")
    from packagers.base import Operation
    from packagers.params import PackageParameters
    from packagers.registry import default_registry
    from server.services import people

    registry = default_registry()
    registry.check()
    repo = open_repository(args)
    log = _Log(args.log_json)
    try:
        actor = None
        if args.eperson:
            with repo.context(write=False) as ctx:
                actor = people.require_person(ctx, args.eperson).id
        op = Operation(repo, actor=actor, system=actor is None, on_object=log.record,
                       on_progress=log.progress)
        params = PackageParameters.from_cli(args.option)
        try:
            if args.disseminate:
                return _disseminate(args, registry, repo, op, params, log)
            return _ingest(args, registry, repo, op, params, log)
        except DavpackError as exc:
            log.failure(exc)
            raise
    finally:
        log.close()
        repo.dispose()


def _disseminate(args: argparse.Namespace, registry: Any, repo: Any, op: Any, params: Any,
                 log: _Log) -> int:
    from packagers.base import IngestedObject, Outcome

    cls = registry.disseminator(args.type)
    params.check_known(cls.option_names("disseminate"), cls.name)
    if not args.identifier:
        raise InvalidInput("-d needs the object to disseminate (-i HANDLE or UUID)",
                           [Detail("missing -i", field="identifier")])
    target = _resolve(repo, args.identifier)
    packager = cls()
    path = Path(args.path)
    if args.all:
        # As DSpace: the object's own package gets the name given, its descendants' the
        # standard names beside it.  A standard-named copy of the object already there (from
        # an export of its parent) stays as it was, so the parent's references still hold.
        directory = path if path.is_dir() else path.parent
        directory.mkdir(parents=True, exist_ok=True)
        with repo.context(write=False) as ctx:
            from server.services import objects

            standard = directory / packager.file_name(objects.find(ctx, str(target)), params)
        if not path.is_dir() and standard != path:
            def named(obj: Any, record: Any = op.on_object) -> None:
                if obj.package == standard.name:
                    obj.package = path.name
                record(obj)

            op.on_object = named
        kept = None
        if not path.is_dir() and standard != path and standard.exists():
            kept = standard.with_name(f".{standard.name}.kept")
            os.replace(standard, kept)
        try:
            written = packager.disseminate_all(op, target, params, directory)
            if written and not path.is_dir() and written[0] != path:
                os.replace(written[0], path)
                written[0] = path
        finally:
            if kept is not None:
                os.replace(kept, standard)
        print(f"wrote {len(written)} package{'s' if len(written) != 1 else ''} into "
              f"{directory} (top: {written[0].name if written else '-'})")
    else:
        with packager.disseminate(op, target, params) as package:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(prefix=".davpack-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    size = package.write_to(out)
                os.replace(partial, path)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
            with repo.context(write=False) as ctx:
                from server.services import objects

                obj = objects.find(ctx, str(target))
                log.record(IngestedObject(obj.type, Outcome.EXPORTED, obj.handle, obj.id,
                                          package=path.name))
        print(f"wrote {path} ({size} bytes)")
    _summary(log)
    return 0


def _ingest(args: argparse.Namespace, registry: Any, repo: Any, op: Any, params: Any,
            log: _Log) -> int:
    from packagers.base import IngestRequest, Mode, PackageSource

    cls = registry.ingester(args.type)
    params.check_known(cls.option_names("ingest"), cls.name)
    mode = Mode.SUBMIT
    if args.restore:
        mode = Mode.REPLACE if args.force_replace else Mode.RESTORE
    parent = None
    if args.parent:
        if len(args.parent) > 1:
            print("davpack packager: warning: only the first -p is used", file=sys.stderr)
        parent = _resolve(repo, args.parent[0])
    path = Path(args.path)
    if not path.exists():
        raise InvalidInput(f"{path} does not exist", [Detail("no such file", file=str(path))])
    request = IngestRequest(mode=mode, params=params, parent=parent,
                            keep_existing=args.keep_existing and args.restore,
                            recursive=args.all, skip_workflow=args.install)
    source = PackageSource(path, name=path.name)
    packager = cls()
    target = None
    if mode is Mode.REPLACE and args.identifier:
        target = _resolve(repo, args.identifier)
    if mode is Mode.REPLACE and not args.no_user_interaction and sys.stdin.isatty():
        answer = input("Force replace destroys the content of existing objects that the "
                       "packages replace. Continue? [y/n] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing done")
            return 1
    if target is not None:
        result = packager.replace(op, target, source, request)
    else:
        result = packager.ingest(op, source, request)
    for warning in result.warnings:
        if warning not in log.warnings:
            log.warnings.append(warning)
    _summary(log)
    return 1 if result.failed else 0


def _summary(log: _Log) -> None:
    if log.counts:
        print(", ".join(f"{n} {outcome}" for outcome, n in sorted(log.counts.items())))
    for warning in dict.fromkeys(log.warnings):
        print(f"warning: {warning}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# davpack packagers list / davpack schemas fetch


def list_packagers(args: argparse.Namespace) -> int:
    from packagers.registry import default_registry

    registry = default_registry()
    registry.check()
    records = [cls.describe() for cls in registry.all()]
    if args.markdown:
        from packagers.registry import markdown_table

        print(markdown_table(registry), end="")
        return 0
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return 0
    for record in records:
        roles = [r for r in ("ingest", "disseminate")
                 if (r == "ingest" and "ingest_parent_types" in record)
                 or (r == "disseminate" and "disseminate_types" in record)]
        print(f"{record['name']}" + (f" (aliases: {', '.join(record['aliases'])})"
                                     if record["aliases"] else ""))
        if record["description"]:
            print(f"  {record['description']}")
        print(f"  does: {', '.join(roles)}; MIME types: {', '.join(record['mime_types'])}; "
              f"extension: .{record['extension']}")
        if record["sword_packaging"]:
            print(f"  SWORD packaging: {', '.join(record['sword_packaging'])}")
        for option in record["options"]:
            if option["defaults"]:
                default = "; ".join(f"{k}: {v}" for k, v in option["defaults"].items())
            else:
                default = "unset" if option["default"] is None else option["default"]
            print(f"  -o {option['name']}  ({'/'.join(option['applies_to'])}; default "
                  f"{default})")
            print(f"       {option['help']}")
        print()
    return 0


def fetch_schemas(args: argparse.Namespace) -> int:
    from packagers.aip import validation
    from server.config import load_config

    directory = args.dir or load_config(args.config).get("packagers.schemas_dir")
    if not directory:
        raise InvalidInput("no schema directory: pass --dir or set packagers.schemas_dir "
                           "(DAVPACK_SCHEMAS_DIR)",
                           [Detail("schema directory not configured",
                                   field="packagers.schemas_dir")])
    for line in validation.fetch(directory):
        print(line)
    print(f"schemas in {directory}; validation reads only these local files")
    return 0
