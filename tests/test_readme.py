"""The README is documentation the code keeps honest."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from packagers.registry import default_registry, markdown_table
from server.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_packager_table_is_generated_from_the_declarations() -> None:
    block = re.search(r"<!-- packager table:.*?-->\n(.*?)<!-- end of packager table -->",
                      README, re.S)
    assert block is not None, "the README lost its packager table markers"
    assert block.group(1) == markdown_table(default_registry())


def test_every_packager_has_a_section() -> None:
    for cls in default_registry().all():
        assert re.search(rf"^### .*`?{re.escape(cls.name)}\b", README, re.M), cls.name


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in commands.choices:
        assert f"`davpack {name}" in README, f"davpack {name} is not in the README"


def test_the_two_set_up_commands_come_first() -> None:
    head = README[:README.index("## Layout")]
    assert "make run" in head and "make test" in head
