"""The import mapfile: ``<item folder> <handle>`` for every item that is committed.

DSpace writes the mapfile as it goes but commits once at the end, so after a failure the
mapfile names items that were rolled back and ``--resume`` skips them for ever (DSpace
issue #8978).  Here items are committed a group at a time (one transaction each) and their
mapfile lines are appended and fsynced only after that transaction committed.

That leaves one window: a crash after the commit and before the lines are on disk.  It is
closed by a journal beside the mapfile (``<mapfile>.pending``): before a group commits, one
``<folder> <uuid>`` line per item is written there and fsynced; after the mapfile lines are
durable the journal is emptied.  :meth:`Mapfile.recover` looks the journal's UUIDs up:
items that exist get their lines added to the mapfile; the others were rolled back.  So a
resumed batch loses no item and imports none twice.

Lines are ``<folder> <handle>``, or ``<folder> <uuid>`` for items that went into workflow
(they have no handle yet), as in DSpace.  Folder names may contain spaces; the reference
never does, so a line is split at its last space.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from server.errors import Detail, InvalidInput


class Mapfile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending_path = path.with_name(path.name + ".pending")
        self._journal_ready = False

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, str]:
        """Folder -> handle or UUID, in file order (a later line for a folder wins)."""
        entries: dict[str, str] = {}
        if not self.path.exists():
            return entries
        with open(self.path, encoding="utf-8") as fh:
            for number, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                folder, sep, ref = line.rpartition(" ")
                if not sep or not folder or not ref:
                    raise InvalidInput(f"mapfile {self.path} is damaged", [Detail(
                        "expected '<folder> <handle>'", file=str(self.path), line=number,
                        found=line)])
                entries[folder] = ref
        return entries

    def create(self) -> None:
        """Start a new, empty mapfile (refuses to overwrite one: that is ``--resume``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.fsync(fd)
        os.close(fd)
        _fsync_dir(self.path.parent)

    # -- per group of items -----------------------------------------------------------

    def begin(self, entries: Sequence[tuple[str, uuid.UUID]]) -> None:
        """Journal the items about to commit (durable before the commit)."""
        if not self._journal_ready:
            fd = os.open(self.pending_path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.close(fd)
            _fsync_dir(self.pending_path.parent)
            self._journal_ready = True
        fd = os.open(self.pending_path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, "".join(f"{folder} {item_id}\n" for folder, item_id in entries)
                     .encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def commit(self, entries: Sequence[tuple[str, str]]) -> None:
        """Record committed items: append their lines, fsync, then clear the journal."""
        self.append(entries)
        self.abort()

    def append(self, entries: Sequence[tuple[str, str]]) -> None:
        if not entries:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(f"{folder} {ref}\n" for folder, ref in entries).encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def abort(self) -> None:
        """Forget the journalled item (its transaction rolled back, or it is recorded)."""
        if self._journal_ready or self.pending_path.exists():
            with open(self.pending_path, "wb"):
                pass

    def finish(self) -> None:
        """Remove the journal at the end of a run."""
        self.pending_path.unlink(missing_ok=True)
        self._journal_ready = False

    # -- after a crash --------------------------------------------------------------

    def recover(self, lookup: Callable[[uuid.UUID], str | None]) -> list[str]:
        """Settle the journalled items; ``lookup(uuid)`` gives a committed item's mapfile
        reference, or None if it does not exist.  Returns messages for the log."""
        if not self.pending_path.exists():
            return []
        messages: list[str] = []
        recorded = self.read()
        found: list[tuple[str, str]] = []
        for line in self.pending_path.read_text(encoding="utf-8").splitlines():
            folder, _, raw_id = line.strip().rpartition(" ")
            if not folder:
                continue
            try:
                ref = lookup(uuid.UUID(raw_id))
            except ValueError:
                ref = None
            if ref is None:
                messages.append(f"{folder}: was not committed before the interruption; "
                                "importing it")
            elif folder not in recorded:
                found.append((folder, ref))
                messages.append(f"{folder}: committed before the interruption but not yet "
                                f"in the mapfile; recorded as {ref}")
        self.append(found)
        self.finish()
        return messages


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
