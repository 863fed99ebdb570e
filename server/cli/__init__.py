"""``davpack`` command line: a thin ``main()`` over the services.

Exit codes: 0 success, 1 the operation failed (the error and its details are printed),
2 the command line itself was wrong (argparse's convention).
Each subcommand lives in its own module and registers itself in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from server import __version__
from server.config import load_config
from server.errors import DavpackError

# module names under server.cli, each with ``register(subparsers)``
COMMANDS: list[str] = ["serve", "admin", "saf", "packager"]

if TYPE_CHECKING:
    from server.context import Repository

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="davpack",
        description="WebDAV/SWORD package server for DSpace-style repositories.",
    )
    parser.add_argument("--version", action="version", version=f"davpack {__version__}")
    parser.add_argument("--config", "-C", metavar="FILE",
                        help="configuration file (default: $DAVPACK_CONFIG, else built-in "
                             "defaults)")
    parser.add_argument("--verbose", action="store_true", help="log debugging detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"server.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    try:
        return handler(args)
    except DavpackError as exc:
        print(f"davpack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("davpack: interrupted", file=sys.stderr)
        return 1


def open_repository(args: argparse.Namespace, *, initialise: bool = True) -> Repository:
    """The repository the command works on; seeds it (idempotently) unless told not to."""
    from server.context import Repository

    repo = Repository(load_config(args.config))
    if initialise:
        repo.initialise()
    return repo


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
