"""``davpack import`` and ``davpack export``: Simple Archive Format batches, with DSpace's flags.

Import (one of ``--add``, ``--replace``, ``--delete``)::

    davpack import -a -e admin@example.org -c 123456789/2 -s batch/ -m batch.map
    davpack import -a -c 123456789/2 -s incoming -z batch.zip -m batch.map
    davpack import -a -c 123456789/2 -s batch/ -v            # dry run: every problem
    davpack import -a -c 123456789/2 -s batch/ -m batch.map -R   # continue after a failure
    davpack import -r -s batch/ -m batch.map                  # replace the mapped items
    davpack import -d -m batch.map                            # delete them

Export::

    davpack export -t COLLECTION -i 123456789/2 -d out/ -n 1 [-m] [-x] [-z coll.zip]

Items are committed a group at a time and the mapfile lines of a group are written (and
fsynced) only once it is committed, so ``--resume`` continues exactly after the last
recorded item.
A progress bar is drawn when standard error is a terminal; otherwise one line per item.
The exit status is 1 when anything failed; errors print their details (file, line, field).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from server.cli import open_repository
from server.errors import Detail, InvalidInput, NotFound


def register(sub: Any) -> None:
    imp = sub.add_parser(
        "import", help="import items from a Simple Archive Format batch (DSpace's import)",
        description="Import, replace or delete items from a Simple Archive Format batch: a "
                    "directory or zip of item folders (dublin_core.xml, metadata_<schema>.xml, "
                    "contents, collections, handle, relationships and the files).")
    action = imp.add_mutually_exclusive_group(required=True)
    action.add_argument("--add", "-a", dest="action", action="store_const", const="add",
                        help="add the batch's items")
    action.add_argument("--replace", "-r", dest="action", action="store_const",
                        const="replace", help="replace the items the mapfile lists")
    action.add_argument("--delete", "-d", dest="action", action="store_const",
                        const="delete", help="delete the items the mapfile lists")
    imp.add_argument("--source", "-s", metavar="PATH",
                     help="batch directory (or zip file); with --zip, the zip's directory")
    imp.add_argument("--zip", "-z", metavar="FILE", help="zip file name (inside --source)")
    imp.add_argument("--collection", "-c", action="append", default=[], metavar="ID",
                     help="collection handle or UUID; repeat to map items into more "
                          "collections (the first owns them). Default: each folder's "
                          "collections file")
    imp.add_argument("--mapfile", "-m", metavar="FILE",
                     help="mapfile: written by --add ('<folder> <handle>' per committed "
                          "item), read by --replace, --delete and --resume")
    imp.add_argument("--eperson", "-e", metavar="EMAIL|UUID",
                     help="the person the items are submitted by")
    imp.add_argument("--workflow", "-w", action="store_true",
                     help="send items through their collection's workflow")
    imp.add_argument("--template", "-p", action="store_true",
                     help="apply the collection's template item")
    imp.add_argument("--validate", "-v", action="store_true",
                     help="dry run: report every problem of the batch, write nothing")
    imp.add_argument("--resume", "-R", action="store_true",
                     help="continue an interrupted --add after the items in the mapfile")
    imp.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    imp.add_argument("--option", "-o", action="append", default=[], metavar="NAME[=VALUE]",
                     help="further SAF packager option (e.g. createMetadataFields, "
                          "ignoreHandles)")
    imp.set_defaults(handler=run_import)

    exp = sub.add_parser(
        "export", help="export an item or a collection as Simple Archive Format",
        description="Write items as Simple Archive Format folders (or one zip) that "
                    "'davpack import' and DSpace's import read.")
    exp.add_argument("--type", "-t", required=True, type=str.upper,
                     choices=["ITEM", "COLLECTION"], help="what --id names")
    exp.add_argument("--id", "-i", required=True, metavar="HANDLE|UUID")
    exp.add_argument("--dest", "-d", required=True, metavar="DIR",
                     help="destination directory")
    exp.add_argument("--number", "-n", type=int, default=1, metavar="N",
                     help="folder name of the first item (then N+1, ...); default 1")
    exp.add_argument("--migrate", "-m", action="store_true",
                     help="for another repository: no handle, no accession dates, "
                          "provenance or own handle URI")
    exp.add_argument("--exclude-bitstreams", "-x", action="store_true",
                     help="write contents files but not the files")
    exp.add_argument("--zip", "-z", metavar="NAME", help="write one zip DEST/NAME")
    exp.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    exp.set_defaults(handler=run_export)


# ---------------------------------------------------------------------------------------
# import


class _Progress:
    """A tqdm bar on a terminal; one line per item otherwise (nothing with --quiet)."""

    def __init__(self, total: int, quiet: bool, verb: str) -> None:
        self.quiet = quiet
        self.count = 0
        self.bar: Any = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="item", desc=verb, file=sys.stderr)

    def line(self, text: str) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        elif not self.quiet:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _source_path(args: argparse.Namespace) -> Path:
    if args.zip:
        path = Path(args.source) / args.zip if args.source else Path(args.zip)
    elif args.source:
        path = Path(args.source)
    else:
        raise InvalidInput("give the batch with --source (and --zip for a zip file)",
                           [Detail("missing option", field="--source")])
    if not path.exists():
        raise NotFound(f"{path} does not exist", [Detail("no such file or directory",
                                                         file=str(path))])
    return path


def _eperson(repo: Any, who: str | None) -> uuid.UUID | None:
    from server import models as m
    from server.services import people

    if not who:
        return None
    with repo.context(system=True, write=False) as ctx:
        person: m.EPerson | None = None
        try:
            person = ctx.session.get(m.EPerson, uuid.UUID(who))
        except ValueError:
            person = people.by_email(ctx, who)
        if person is None:
            raise NotFound(f"no person {who}", [Detail("unknown eperson", field="--eperson",
                                                       found=who)])
        return person.id


def _warn(messages: list[str], quiet: bool) -> None:
    if quiet:
        return
    for message in messages:
        print(f"davpack: warning: {message}", file=sys.stderr)


def run_import(args: argparse.Namespace) -> int:
    from packagers.base import IngestRequest, Mode, Operation, PackageSource
    from packagers.params import PackageParameters
    from packagers.saf import SAFPackager, importer, reader
    from packagers.saf.mapfile import Mapfile

    if args.action != "add" and (args.resume or args.template or args.workflow):
        raise InvalidInput("--resume, --template and --workflow go with --add",
                           [Detail("option not allowed here", field="--" + args.action)])
    if not args.mapfile and not (args.action == "add" and args.validate):
        raise InvalidInput("--mapfile is required (except for a --validate run of --add)",
                           [Detail("missing option", field="--mapfile")])
    repo = open_repository(args)
    actor = _eperson(repo, args.eperson)

    if args.action == "delete":
        progress = _Progress(len(Mapfile(Path(args.mapfile)).read()), args.quiet,
                             "delete")
        op = Operation(repo, actor=actor, system=True)
        try:
            records = importer.delete_from_mapfile(
                op, Path(args.mapfile), lambda r: progress.line(
                    f"{'deleted' if r.deleted else 'already gone'} {r.folder} {r.ref}"))
        finally:
            progress.close()
        if not args.quiet:
            gone = sum(r.deleted for r in records)
            print(f"deleted {gone} item(s); {len(records) - gone} were already gone")
        return 0

    path = _source_path(args)
    with reader.open_source(path) as batch:
        total = len(batch.folders())
    progress = _Progress(total, args.quiet or args.validate,
                         "import" if args.action == "add" else "replace")

    def report(obj: Any) -> None:
        where = obj.handle or (str(obj.uuid) if obj.uuid else "")
        progress.line(f"{obj.outcome.value} {obj.package} {where}".rstrip())

    op = Operation(repo, actor=actor, system=True, on_object=report)
    options = list(args.option)
    if args.action == "replace":
        params = PackageParameters.from_cli(options)
        params.check_known(SAFPackager.option_names("ingest"), SAFPackager.name)
        settings = importer.ImportSettings(
            create_fields=params.get_bool("createMetadataFields"),
            validate_only=args.validate, mode=Mode.REPLACE)
        try:
            with reader.open_source(path) as batch:
                result = importer.replace_from_mapfile(op, batch, Path(args.mapfile),
                                                       settings)
        finally:
            progress.close()
        _warn(result.warnings + [w for o in result.objects for w in o.warnings], args.quiet)
        if not args.quiet:
            verb = "would replace" if args.validate else "replaced"
            print(f"{verb} {len(result.objects)} item(s)")
        return 0

    options += [f"workflow={'true' if args.workflow else 'false'}"]
    options += [f"collection={c}" for c in args.collection]
    if args.template:
        options.append("template=true")
    if args.validate:
        options.append("validate=true")
    if args.resume:
        options.append("resume=true")
    if args.mapfile:
        options.append(f"mapfile={args.mapfile}")
    params = PackageParameters.from_cli(options)
    params.check_known(SAFPackager.option_names("ingest"), SAFPackager.name)
    request = IngestRequest(mode=Mode.SUBMIT, params=params, parent=None,
                            skip_workflow=not args.workflow)
    try:
        result = SAFPackager().ingest(op, PackageSource(path, name=path.name), request)
    finally:
        progress.close()
    _warn(result.warnings + [w for o in result.objects for w in o.warnings], args.quiet)
    if not args.quiet:
        if args.validate:
            print(f"validated {len(result.objects)} item folder(s): no problems; nothing "
                  "was written")
        else:
            counts: dict[str, int] = {}
            for obj in result.objects:
                counts[obj.outcome.value] = counts.get(obj.outcome.value, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
            print(f"import done: {summary}" + (f"; mapfile {args.mapfile}"
                                                if args.mapfile else ""))
    return 1 if result.failed else 0


# ---------------------------------------------------------------------------------------
# export


def run_export(args: argparse.Namespace) -> int:
    from packagers.base import Operation
    from packagers.params import PackageParameters
    from packagers.saf import SAFPackager, writer
    from server.services import objects

    if args.number < 0:
        raise InvalidInput("--number must be 0 or more", [Detail("negative", field="--number",
                                                                  found=str(args.number))])
    repo = open_repository(args)
    with repo.context(system=True, write=False) as ctx:
        obj = objects.find(ctx, args.id)
        if obj.type.value != args.type:
            raise InvalidInput(f"{args.id} is a {obj.type.value}, not a {args.type}",
                               [Detail("wrong --type", field="--type", expected=args.type,
                                       found=obj.type.value)])
        target = obj.id
    options = [f"number={args.number}"]
    if args.migrate:
        options.append("migrate=true")
    if args.exclude_bitstreams:
        options.append("excludeBitstreams=true")
    params = PackageParameters.from_cli(options)
    op = Operation(repo, system=True)
    dest = Path(args.dest)
    with SAFPackager().disseminate(op, target, params) as package:
        assert isinstance(package, writer.SafPackage)
        if args.zip:
            if "/" in args.zip or args.zip in (".", ".."):
                raise InvalidInput("--zip is a file name inside --dest",
                                   [Detail("not a plain file name", field="--zip",
                                           found=args.zip)])
            writer.write_zip(package, dest / args.zip)
            where = str(dest / args.zip)
        else:
            writer.write_directory(package, dest)
            where = str(dest)
        if not args.quiet:
            print(f"exported {len(package.folders)} item(s) to {where}")
    return 0
