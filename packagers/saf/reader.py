"""Reading Simple Archive Format batches: find the item folders, parse what each holds.

A batch is a zip (or tar) archive, or a directory on the command line, holding one folder
per item -- directly, or inside one wrapper folder (DSpace's own test zips have ``saf/``).
A package whose root itself holds ``dublin_core.xml`` is one item.  Operating-system junk
(``__MACOSX/``, ``.DS_Store``...) is ignored everywhere.

Everything here is untrusted input: names are checked before they are used as paths, XML
goes through :mod:`server.xmlsafe` with a size bound, text files are read with a bound,
and a symbolic link in a directory batch may not lead out of its item folder.  Parsing
never stops at the first problem: :func:`read_item` returns every finding for the item, so
a validation run reports a whole batch at once.
"""

from __future__ import annotations

import os
import re
import stat
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from server import models as m
from server import xmlsafe
from server.archive import ArchiveLimits, SafeArchive, junk_name
from server.errors import DavpackError, Detail, InvalidInput, UnsafeInput
from server.services import handles
from server.services.metadata import Value, split_field

DUBLIN_CORE = "dublin_core.xml"
CONTENTS = "contents"
COLLECTIONS = "collections"
HANDLE = "handle"
RELATIONSHIPS = "relationships"
CONTROL_FILES = frozenset({CONTENTS, COLLECTIONS, HANDLE, RELATIONSHIPS})
_METADATA_FILE = re.compile(r"^metadata_[^/]*\.xml$")

MAX_XML_BYTES = 16 * 1024 * 1024
"""Largest metadata file read (a dublin_core.xml of 16 MiB is already absurd)."""
MAX_TEXT_BYTES = 4 * 1024 * 1024
"""Largest ``contents``, ``collections``, ``handle`` or ``relationships`` file read."""

DEFAULT_BUNDLE = "ORIGINAL"
# Licence files go to DSpace's licence bundles unless the contents line says otherwise.
DEFAULT_BUNDLES = {"license.txt": "LICENSE", "license_rdf": "CC-LICENSE",
                   "license_text": "CC-LICENSE"}

# Bitstream metadata written by the iiif-* contents options (DSpace's "iiif" schema).
IIIF_FIELDS = {"iiif-label": "iiif.label", "iiif-toc": "iiif.toc",
               "iiif-width": "iiif.image.width", "iiif-height": "iiif.image.height"}

_ARCHIVE_LIMITS = ArchiveLimits(max_members=1_000_000)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAME_PART = re.compile(r"^[A-Za-z0-9_\-]+$")
_METADATA_REF = re.compile(r"^([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)?):(.*)$",
                           re.DOTALL)


def is_metadata_file(name: str) -> bool:
    return name == DUBLIN_CORE or bool(_METADATA_FILE.match(name))


def natural_key(name: str) -> tuple[object, ...]:
    """Sort ``item_2`` before ``item_10`` and ``9`` before ``10`` (exports number folders)."""
    parts = re.split(r"(\d+)", name)
    return (*(int(p) if i % 2 else p for i, p in enumerate(parts)), name)


# ---------------------------------------------------------------------------------------
# What a folder describes


@dataclass(frozen=True)
class Permission:
    """``permissions:-r 'group'`` (READ) or ``-w 'group'`` (WRITE)."""

    action: m.Action
    group: str


@dataclass(frozen=True)
class BitstreamSpec:
    """One ``contents`` line: the file (a path inside the item folder) and its options."""

    name: str
    line: int
    bundle: str
    description: str | None = None
    primary: bool = False
    permission: Permission | None = None
    extra: tuple[Value, ...] = ()  # bitstream metadata (iiif-*)


@dataclass(frozen=True)
class RelationSpec:
    """One relationship to create once every item of the batch exists."""

    type: str  # relationship type name, e.g. isAuthorOfPublication
    target: str  # as written: folderName:x, a handle, a UUID, or schema.element:value
    file: str
    line: int | None

    @property
    def kind(self) -> str:
        """``folder``, ``uuid``, ``metadata`` or ``handle``."""
        return target_kind(self.target)[0]


def target_kind(target: str) -> tuple[str, str]:
    """Classify a relationship target; returns ``(kind, value)``."""
    for prefix in ("folderName:", "rowName:"):
        if target.startswith(prefix):
            return "folder", target[len(prefix):].strip()
    try:
        return "uuid", str(uuid.UUID(target))
    except ValueError:
        pass
    match = _METADATA_REF.match(target)
    if match and "/" not in match.group(1):
        return "metadata", target
    return "handle", target


@dataclass
class ItemPlan:
    """Everything one item folder asks for."""

    folder: str
    values: list[Value] = field(default_factory=list)
    origins: list[tuple[str, int | None]] = field(default_factory=list)  # file, line of values
    bitstreams: list[BitstreamSpec] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    collection_problems: list[Detail] = field(default_factory=list)  # matter if it is used
    handle: str | None = None
    relations: list[RelationSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Findings:
    """Problems found while reading; ``unsafe`` when any was an attack-like input."""

    def __init__(self) -> None:
        self.details: list[Detail] = []
        self.unsafe = False

    def add(self, message: str, *, file: str | None = None, field: str | None = None,
            line: int | None = None, expected: str | None = None, found: str | None = None,
            unsafe: bool = False) -> None:
        self.details.append(Detail(message, file=file, field=field, line=line,
                                   expected=expected, found=found))
        self.unsafe = self.unsafe or unsafe

    def absorb(self, exc: DavpackError) -> None:
        self.details.extend(exc.details or [Detail(exc.message)])
        self.unsafe = self.unsafe or isinstance(exc, UnsafeInput)

    def merge(self, other: Findings) -> None:
        self.details.extend(other.details)
        self.unsafe = self.unsafe or other.unsafe

    def __bool__(self) -> bool:
        return bool(self.details)


# ---------------------------------------------------------------------------------------
# Sources: where item folders come from


class ItemFolder(ABC):
    """One item folder of a batch."""

    def __init__(self, folder: str, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix  # path of the folder inside the package, ending in "/"

    def label(self, name: str) -> str:
        """How a file of this folder is named in error details (its path in the package)."""
        return f"{self.prefix}{name}"

    @abstractmethod
    def files(self) -> list[str]:
        """Every regular file below the folder (relative names, junk left out), sorted."""

    @abstractmethod
    def is_file(self, name: str) -> bool:
        """Whether ``name`` (already checked by :func:`path_problems`) is a regular file."""

    @abstractmethod
    def is_dir(self, name: str) -> bool: ...

    @abstractmethod
    def open(self, name: str) -> IO[bytes]:
        """A binary stream of the file ``name``."""

    def read_text(self, name: str, limit: int = MAX_TEXT_BYTES) -> bytes:
        with self.open(name) as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise InvalidInput(f"{self.label(name)} is too large",
                               [Detail("file is larger than allowed", file=self.label(name),
                                       expected=f"at most {limit} bytes",
                                       found=f"more than {limit} bytes")])
        return data


class SafSource(ABC):
    """A batch: a list of item folders, read in natural order."""

    label: str
    layout_warnings: list[str]

    @abstractmethod
    def folders(self) -> list[str]:
        """Item folder names in processing order."""

    @abstractmethod
    def item(self, folder: str) -> ItemFolder: ...

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release the archive."""

    def __enter__(self) -> SafSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(path: Path, label: str | None = None) -> SafSource:
    """A directory batch or an archive batch (zip or tar)."""
    if path.is_dir():
        return DirectorySource(path, label)
    return ArchiveSource(path, label)


def _layout(names: list[str], label: str) -> tuple[str, list[str], list[str]]:
    """From a batch's file names: ``(prefix, item folders, stray files)``.

    ``prefix`` is ``""`` (folders at the root), ``"wrapper/"`` (one folder deep), or the
    single-item case where the root is the item: folders == ``[""]``.
    """
    root_files = [n for n in names if "/" not in n]
    if DUBLIN_CORE in root_files:
        return "", [""], []
    tops = sorted({n.split("/", 1)[0] for n in names if "/" in n}, key=natural_key)
    with_dc = {n.split("/", 1)[0] for n in names if n.count("/") == 1
               and n.endswith("/" + DUBLIN_CORE)}
    if not with_dc and len(tops) == 1 and not root_files:
        wrapper = tops[0] + "/"
        inner = [n[len(wrapper):] for n in names if n.startswith(wrapper)]
        inner_tops = {n.split("/", 1)[0] for n in inner if n.count("/") == 1
                      and n.endswith("/" + DUBLIN_CORE)}
        if inner_tops:
            folders = sorted({n.split("/", 1)[0] for n in inner if "/" in n}, key=natural_key)
            stray = [wrapper + n for n in inner if n and "/" not in n]
            return wrapper, folders, stray
    return "", tops, root_files


def single_item_name(label: str) -> str:
    """The folder name a root-level single item gets (the package name without suffix)."""
    name = PurePosixPath(label.replace("\\", "/")).name
    for suffix in (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name or "item"


class _ArchiveFolder(ItemFolder):
    def __init__(self, archive: SafeArchive, folder: str, prefix: str,
                 files: dict[str, str], dirs: set[str]) -> None:
        super().__init__(folder, prefix)
        self._archive = archive
        self._files = files  # name as contents lines spell it -> member name
        self._dirs = dirs

    def files(self) -> list[str]:
        return sorted(self._files)

    def _member(self, name: str) -> str:
        return self._files.get(name) or self.prefix + name

    def is_file(self, name: str) -> bool:
        if name in self._files:
            return True
        # a junk-looking name (.DS_Store) that contents lists on purpose is still a file
        full = self.prefix + name
        return self._archive.has(full) and not self._archive.member(full).is_dir

    def is_dir(self, name: str) -> bool:
        full = self.prefix + name
        return name in self._dirs or (self._archive.has(full)
                                      and self._archive.member(full).is_dir)

    def open(self, name: str) -> IO[bytes]:
        return self._archive.open_member(self._member(name))


def utf8_name(name: str) -> str:
    """The name as UTF-8 when a zip stored UTF-8 bytes without saying so.

    Zips made on macOS (and by Java before 7) store UTF-8 names but leave the "UTF-8"
    flag unset, so readers decode them as code page 437 (an en dash becomes three symbols) while the
    ``contents`` file, being UTF-8, names the file properly.  Re-encoding as cp437 gives
    back the stored bytes; if they are valid UTF-8, that is what the name meant.
    """
    if name.isascii():
        return name
    try:
        return name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


class ArchiveSource(SafSource):
    """A zip or tar batch, validated by :class:`server.archive.SafeArchive` on opening."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        self.label = label or path.name
        self.archive = SafeArchive.open(path, _ARCHIVE_LIMITS, name=self.label)
        try:
            names = [n for n in self.archive.names() if not junk_name(n)]
            self.prefix, self._folders, stray = _layout([utf8_name(n) for n in names],
                                                        self.label)
            self._single = self._folders == [""]
            self.layout_warnings = [f"{n}: not inside an item folder; ignored" for n in stray]
            # per folder: file name (as contents spells it) -> member name
            self._members: dict[str, dict[str, str]] = {f: {} for f in self._folders}
            self._dirs: dict[str, set[str]] = {f: set() for f in self._folders}
            for name in names:
                shown = utf8_name(name)
                if not shown.startswith(self.prefix):
                    continue
                rest = shown[len(self.prefix):]
                if self._single:
                    folder, inner = "", rest
                elif "/" in rest:
                    folder, inner = rest.split("/", 1)
                else:
                    continue
                if folder in self._members:
                    self._members[folder][inner] = name
                    parts = inner.split("/")[:-1]
                    for end in range(1, len(parts) + 1):
                        self._dirs[folder].add("/".join(parts[:end]))
            if self._single:
                self._folders = [single_item_name(self.label)]
        except BaseException:
            self.archive.close()
            raise

    def folders(self) -> list[str]:
        return list(self._folders)

    def item(self, folder: str) -> ItemFolder:
        key = "" if self._single else folder
        if key not in self._members:
            raise InvalidInput(f"no item folder {folder}", [Detail("unknown folder",
                                                                   file=folder)])
        prefix = self.prefix if self._single else f"{self.prefix}{folder}/"
        return _ArchiveFolder(self.archive, folder, prefix, self._members[key],
                              self._dirs[key])

    def close(self) -> None:
        self.archive.close()


class _DirectoryFolder(ItemFolder):
    def __init__(self, root: Path, folder: str, prefix: str) -> None:
        super().__init__(folder, prefix)
        self.root = root
        self._real = os.path.realpath(root)

    def _path(self, name: str) -> str:
        path = os.path.join(self._real, *name.split("/"))
        real = os.path.realpath(path)
        if os.path.commonpath([self._real, real]) != self._real:
            raise UnsafeInput(f"{self.label(name)} leads outside its item folder", [Detail(
                "path resolves outside the item folder (symbolic link?)",
                file=self.label(name), found=real)])
        return real

    def files(self) -> list[str]:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self._real):
            dirnames[:] = [d for d in dirnames if not junk_name(d + "/x")]
            rel_dir = os.path.relpath(dirpath, self._real)
            for leaf in filenames:
                rel = leaf if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{leaf}"
                if not junk_name(rel):
                    out.append(rel)
        return sorted(out)

    def is_file(self, name: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(self._path(name)).st_mode)
        except OSError:
            return False

    def is_dir(self, name: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(self._path(name)).st_mode)
        except OSError:
            return False

    def open(self, name: str) -> IO[bytes]:
        return open(self._path(name), "rb")


class DirectorySource(SafSource):
    """A batch unpacked on disk (command line only)."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        self.path = path
        self.label = label or str(path)
        names: list[str] = []
        with os.scandir(path) as entries:
            for entry in entries:
                if junk_name(entry.name) or junk_name(entry.name + "/x"):
                    continue
                if entry.is_dir():
                    names.append(f"{entry.name}/")
                    if os.path.isfile(os.path.join(entry.path, DUBLIN_CORE)):
                        names.append(f"{entry.name}/{DUBLIN_CORE}")
                    else:
                        names.extend(self._grandchildren(entry.path, entry.name))
                else:
                    names.append(entry.name)
        self.prefix, folders, stray = _layout(names, self.label)
        self._single = folders == [""]
        self._folders = [single_item_name(self.label)] if self._single else folders
        self.layout_warnings = [f"{n}: not inside an item folder; ignored" for n in stray]

    @staticmethod
    def _grandchildren(path: str, name: str) -> Iterator[str]:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir() and os.path.isfile(os.path.join(entry.path, DUBLIN_CORE)):
                    yield f"{name}/{entry.name}/{DUBLIN_CORE}"
                elif entry.is_dir():
                    yield f"{name}/{entry.name}/"

    def folders(self) -> list[str]:
        return list(self._folders)

    def item(self, folder: str) -> ItemFolder:
        if self._single:
            return _DirectoryFolder(self.path, folder, "")
        if "/" in folder or folder in ("", ".", ".."):
            raise UnsafeInput("not an item folder name", [Detail("bad folder", file=folder)])
        base = self.path / self.prefix.rstrip("/") if self.prefix else self.path
        return _DirectoryFolder(base / folder, folder, f"{self.prefix}{folder}/")


_OTHER_MANIFESTS = frozenset({"mets.xml", "imsmanifest.xml", "bagit.txt"})


def sniff_names(names: list[str]) -> bool:
    """Whether a package with these file names looks like a SAF batch."""
    kept = [n for n in names if not junk_name(n)]
    root = {n for n in kept if "/" not in n}
    if root & _OTHER_MANIFESTS:
        return False
    prefix, folders, _stray = _layout(kept, "")
    if any(f"{prefix}{name}" in kept or f"{prefix}{folder}/{name}" in kept
           for name in _OTHER_MANIFESTS for folder in folders if folder):
        return False  # a bag (or a METS/IMS package) zipped inside a folder
    if folders == [""]:
        return True
    return any(f"{prefix}{folder}/{DUBLIN_CORE}" in kept for folder in folders)


# ---------------------------------------------------------------------------------------
# Checking names


def path_problems(name: str) -> list[str]:
    """Why ``name`` (from a contents line) cannot be a path inside the item folder."""
    problems: list[str] = []
    if not name:
        return ["empty file name"]
    if "\x00" in name or _CONTROL.search(name):
        problems.append("file name contains a control character")
    if "\\" in name:
        problems.append("file name contains a backslash")
    if name.startswith("/"):
        problems.append("absolute path")
    elif re.match(r"^[A-Za-z]:", name):
        problems.append("file name starts with a drive letter")
    parts = name.split("/")
    if ".." in parts:
        problems.append("'..' would leave the item folder")
    if "" in parts[1:] or "." in parts:
        problems.append("empty or '.' path component")
    return problems


# ---------------------------------------------------------------------------------------
# Parsing one folder


def read_item(item: ItemFolder) -> tuple[ItemPlan, Findings]:
    """Parse every file of an item folder that SAF defines; collect every problem."""
    plan = ItemPlan(item.folder)
    found = Findings()
    files = item.files()
    metadata_files = sorted(n for n in files if "/" not in n and is_metadata_file(n)
                            and n != DUBLIN_CORE)
    if DUBLIN_CORE in files:
        metadata_files.insert(0, DUBLIN_CORE)
    if not metadata_files:
        found.add("item folder has no dublin_core.xml (nor any metadata_<schema>.xml)",
                  file=item.label(DUBLIN_CORE))
    for name in metadata_files:
        default_schema = "dc" if name == DUBLIN_CORE else name[len("metadata_"):-len(".xml")]
        read_metadata_file(item, name, default_schema, plan, found)
    listed: set[str] = set()
    if CONTENTS in files:
        read_contents(item, plan, found)
        listed = {spec.name for spec in plan.bitstreams}
    else:
        others = [n for n in files if not _is_control(n)]
        if others:
            found.add("no contents file, but the folder holds files: list them in contents",
                      file=item.label(CONTENTS), found=", ".join(others[:5])
                      + (" ..." if len(others) > 5 else ""))
    for name in files:
        if name not in listed and not _is_control(name):
            plan.warnings.append(f"{item.label(name)}: not listed in contents; ignored")
    if COLLECTIONS in files:
        read_collections(item, plan, found)
    if HANDLE in files:
        read_handle(item, plan, found)
    if RELATIONSHIPS in files:
        read_relationships(item, plan, found)
    return plan, found


def read_relations_only(item: ItemFolder) -> tuple[list[RelationSpec], Findings]:
    """Just the relationships of a folder (``relationships`` and ``metadata_relation.xml``),
    for folders a resumed batch has already imported."""
    plan = ItemPlan(item.folder)
    found = Findings()
    files = set(item.files())
    if RELATIONSHIPS in files:
        read_relationships(item, plan, found)
    for name in sorted(files):
        if "/" not in name and _METADATA_FILE.match(name):
            read_metadata_file(item, name, name[len("metadata_"):-len(".xml")], plan, found,
                               relations_only=True)
    return plan.relations, found


def _is_control(name: str) -> bool:
    return "/" not in name and (name in CONTROL_FILES or is_metadata_file(name))


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def read_metadata_file(item: ItemFolder, name: str, default_schema: str, plan: ItemPlan,
                       found: Findings, *, relations_only: bool = False) -> None:
    """``<dublin_core schema="..."><dcvalue element= qualifier= language=>`` values.

    ``qualifier="none"`` or empty means unqualified, a blank language means none, values
    are trimmed and empty ones skipped.  Values of schema ``relation`` name other items and
    become relationships.  ``authority``/``confidence`` attributes are read when present.
    """
    label = item.label(name)
    try:
        with item.open(name) as stream:
            root = xmlsafe.parse(stream, name=label, max_bytes=MAX_XML_BYTES).getroot()
    except DavpackError as exc:
        found.absorb(exc)
        return
    if _local(root.tag) != "dublin_core":
        found.add("root element must be <dublin_core>", file=label, line=root.sourceline,
                  expected="dublin_core", found=_local(root.tag))
        return
    schema = (root.get("schema") or default_schema).strip()
    if not _NAME_PART.match(schema):
        found.add("not a metadata schema name", file=label, field="schema", found=schema,
                  line=root.sourceline)
        return
    if relations_only and schema != "relation":
        return
    for child in root:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        line = child.sourceline
        if _local(child.tag) != "dcvalue":
            plan.warnings.append(f"{label} line {line}: <{_local(child.tag)}> ignored")
            continue
        element = (child.get("element") or "").strip()
        qualifier = (child.get("qualifier") or "").strip()
        if qualifier.lower() == "none":
            qualifier = ""
        if not element:
            found.add("dcvalue without an element attribute", file=label, line=line,
                      field="element")
            continue
        text = (child.text or "").strip()
        if not text:
            continue
        if schema == "relation":
            rel_type = element + (f".{qualifier}" if qualifier else "")
            plan.relations.append(RelationSpec(rel_type, text, label, line))
            continue
        fname = ".".join(p for p in (schema, element, qualifier) if p)
        try:
            split_field(fname)
        except InvalidInput:
            found.add("not a valid metadata field name", file=label, line=line, field=fname,
                      expected="schema.element[.qualifier] of letters, digits, '_' and '-'")
            continue
        language = (child.get("language") or "").strip() or None
        authority = (child.get("authority") or "").strip() or None
        confidence = -1
        raw_confidence = child.get("confidence")
        if raw_confidence is not None and raw_confidence.strip():
            try:
                confidence = int(raw_confidence)
            except ValueError:
                found.add("confidence must be a whole number", file=label, line=line,
                          field=fname, found=raw_confidence)
                continue
        plan.values.append(Value(fname, text, language, authority, confidence))
        plan.origins.append((label, line))


def _decode_lines(item: ItemFolder, name: str, found: Findings) -> list[tuple[int, str]]:
    """The file's lines (numbered from 1) as text, blank ones left out."""
    label = item.label(name)
    try:
        data = item.read_text(name)
    except DavpackError as exc:
        found.absorb(exc)
        return []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            found.add("line is not UTF-8", file=label, line=number, found=str(exc))
            continue
        text = text.rstrip("\r")
        if text.strip():
            out.append((number, text))
    return out


def read_contents(item: ItemFolder, plan: ItemPlan, found: Findings) -> None:
    """``name[\\tbundle:B][\\tpermissions:-r 'group'][\\tdescription:D][\\tprimary:true]
    [\\tiiif-label:..][\\tiiif-toc:..][\\tiiif-width:N][\\tiiif-height:N]``."""
    label = item.label(CONTENTS)
    seen: set[tuple[str, str]] = set()
    primaries: dict[str, int] = {}
    for number, text in _decode_lines(item, CONTENTS, found):
        fields = text.split("\t")
        raw_name = fields[0]
        if raw_name.startswith("-r ") or raw_name.strip() == "-r":
            found.add("registered bitstreams (-r -s <store> -f <path>) are not supported: "
                      "put the file itself in the item folder", file=label, line=number,
                      found=raw_name)
            continue
        name = raw_name.strip()
        problems = path_problems(name)
        if problems:
            found.add("; ".join(problems), file=label, line=number, field="file name",
                      found=name, unsafe=True)
            continue
        try:
            exists = item.is_file(name)
            if not exists and name != raw_name and not path_problems(raw_name) \
                    and item.is_file(raw_name):
                name, exists = raw_name, True  # a name that really ends with a space
        except UnsafeInput as exc:  # a link leading out of the item folder
            found.absorb(exc)
            continue
        spec_ok = True
        bundle: str | None = None
        description: str | None = None
        primary = False
        permission: Permission | None = None
        extra: list[Value] = []
        for option in fields[1:]:
            key, sep, value = option.partition(":")
            key = key.strip()
            if not key and not sep:
                continue  # empty column (two tabs)
            if not sep:
                found.add("contents option without ':'", file=label, line=number,
                          found=option)
                spec_ok = False
            elif key == "bundle":
                bundle = value.strip()
                if not bundle or len(bundle) > 255:
                    found.add("bundle name must be 1 to 255 characters", file=label,
                              line=number, field="bundle", found=value)
                    spec_ok = False
            elif key == "description":
                description = value.strip() or None
            elif key == "primary":
                flag = value.strip().lower()
                if flag not in ("true", "false"):
                    found.add("primary must be true or false", file=label, line=number,
                              field="primary", found=value)
                    spec_ok = False
                primary = flag == "true"
            elif key == "permissions":
                parsed = parse_permission(value)
                if parsed is None:
                    found.add("permissions must be -r 'group name' or -w 'group name'",
                              file=label, line=number, field="permissions", found=value)
                    spec_ok = False
                permission = parsed
            elif key in IIIF_FIELDS:
                iiif = value.strip()
                if key in ("iiif-width", "iiif-height") and not (iiif.isdigit()
                                                               and int(iiif) > 0):
                    found.add(f"{key} must be a positive whole number", file=label,
                              line=number, field=key, found=value)
                    spec_ok = False
                elif iiif:
                    extra.append(Value(IIIF_FIELDS[key], iiif))
            else:
                found.add("unknown contents option", file=label, line=number, field=key,
                          expected="bundle, permissions, description, primary, iiif-label, "
                                   "iiif-toc, iiif-width, iiif-height")
                spec_ok = False
        if not exists:
            what = "is a directory, not a file" if item.is_dir(name) else "file not found"
            found.add(f"listed in contents but {what} in the item folder", file=label,
                      line=number, field="file name", found=item.label(name))
            spec_ok = False
        bundle = bundle or DEFAULT_BUNDLES.get(name, DEFAULT_BUNDLE)
        if (name, bundle) in seen:
            found.add("file listed twice for the same bundle", file=label, line=number,
                      found=name)
            spec_ok = False
        seen.add((name, bundle))
        if primary:
            if bundle in primaries:
                found.add(f"second primary bitstream in bundle {bundle} (the first is on "
                          f"line {primaries[bundle]})", file=label, line=number,
                          field="primary")
                spec_ok = False
            primaries[bundle] = number
        if spec_ok:
            plan.bitstreams.append(BitstreamSpec(name, number, bundle, description, primary,
                                                 permission, tuple(extra)))


def parse_permission(value: str) -> Permission | None:
    """``-r 'group name'`` / ``-w 'group name'`` (quotes optional)."""
    text = value.strip()
    flag, _, rest = text.partition(" ")
    if flag not in ("-r", "-w"):
        return None
    group = rest.strip()
    if len(group) >= 2 and group[0] == "'" and group.endswith("'"):
        group = group[1:-1]
    elif group.startswith("'"):
        return None
    if not group:
        return None
    return Permission(m.Action.READ if flag == "-r" else m.Action.WRITE, group)


def read_collections(item: ItemFolder, plan: ItemPlan, found: Findings) -> None:
    label = item.label(COLLECTIONS)
    for number, text in _decode_lines(item, COLLECTIONS, found):
        ident = text.strip()
        if not _identifier_ok(ident):
            plan.collection_problems.append(Detail("not a collection handle or UUID",
                                                   file=label, line=number, found=ident))
            continue
        plan.collections.append(ident)


def read_handle(item: ItemFolder, plan: ItemPlan, found: Findings) -> None:
    label = item.label(HANDLE)
    lines = _decode_lines(item, HANDLE, found)
    if not lines:
        return
    number, text = lines[0]
    try:
        plan.handle = handles.normalise(text.strip())
    except InvalidInput:
        found.add("not a handle", file=label, line=number, field="handle",
                  expected="prefix/suffix", found=text.strip())


def read_relationships(item: ItemFolder, plan: ItemPlan, found: Findings) -> None:
    """``relation.<type> <target>`` per line."""
    label = item.label(RELATIONSHIPS)
    for number, text in _decode_lines(item, RELATIONSHIPS, found):
        key, _, target = text.strip().partition(" ")
        target = target.strip()
        rel_type = key[len("relation."):] if key.startswith("relation.") else ""
        if not rel_type or not all(_NAME_PART.match(p) for p in rel_type.split(".")):
            found.add("expected relation.<type> <target>", file=label, line=number,
                      found=key)
            continue
        if not target:
            found.add("relationship without a target", file=label, line=number,
                      field=key)
            continue
        kind, value = target_kind(target)
        if kind == "folder" and not value:
            found.add("folderName: needs a folder name", file=label, line=number,
                      found=target)
            continue
        if kind == "handle" and not _identifier_ok(target):
            found.add("target must be folderName:<folder>, a handle, a UUID or "
                      "schema.element[.qualifier]:value", file=label, line=number,
                      found=target)
            continue
        plan.relations.append(RelationSpec(rel_type, target, label, number))


def _identifier_ok(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        pass
    try:
        handles.normalise(text)
        return True
    except InvalidInput:
        return False

