"""The packager interface: what a packager plugin must implement, and what it may rely on.

A *package* is one data stream (a zip, a PDF, a bare METS manifest, a BagIt bag...) that
carries an object's metadata and content.  A *packager* turns packages into repository
objects (an :class:`Ingester`) and objects into packages (a :class:`Disseminator`); one class
may offer both, and should then use the same name for both directions.

Packagers are named plugins, found through the ``davpack.packagers`` entry-point group
(see :mod:`packagers.registry`); built-in packagers are registered the same way as
third-party ones.  A fresh packager instance is made for every operation, so instances may
keep per-run state.

Packagers know nothing about HTTP.  They receive:

* an :class:`Operation`: the repository, on whose behalf they work, and how to report
  progress.  Units of work are opened with :meth:`Operation.context`; the packager decides
  how many, as its mode requires (an AIP restore is all-or-nothing, so one; a SAF batch
  commits item by item, recording a mapfile).
* a :class:`PackageSource`: the package, already staged to the local filesystem (a file,
  or a directory on the command line), with the name and content type the client gave.
  The bytes are untrusted: read archives through :mod:`server.archive` and XML through
  :mod:`server.xmlsafe`, never with ``zipfile``/``lxml`` defaults.
* :class:`PackageParameters`: options, checked against :attr:`Packager.options` before
  the packager is called, so every name a packager sees is one it declared.

What must be implemented
------------------------
Every packager: the class attributes of :class:`Packager` (``name`` at least).
Ingesters: :meth:`Ingester.ingest`; optionally :meth:`Ingester.replace` (default: refuse)
and :meth:`Ingester.sniff` (default: never claims a package).
Disseminators: :meth:`Disseminator.disseminate`; optionally
:meth:`Disseminator.disseminate_all` (default: refuse hierarchies).

What the caller guarantees
--------------------------
* Options are known to the packager (:meth:`PackageParameters.check_known` was called).
* ``ingest``'s parent and ``disseminate``'s object are of a type listed in
  ``ingest_parent_types`` / ``disseminate_types`` (or None for a restore that takes its
  parent from the package, when ``IngestRequest.parent`` is None).
* The :class:`Package` a disseminator returns is closed by the caller, also on errors.

What a packager guarantees
--------------------------
* Nothing partial: a failed ingest raises a :class:`packagers.errors.PackageError` (with
  details naming the file, field or line) and leaves no rows and no stored files behind for
  the unit of work that failed.
* Constant memory: packages and bitstreams are streamed, never read whole.
"""

from __future__ import annotations

import enum
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from packagers.errors import UnsupportedOperation
from packagers.params import PackageParameters
from server.errors import Detail
from server.models import ObjectType

if TYPE_CHECKING:
    from server.context import Context, Repository
    from server.models import Item
    from server.zipstream import ZipEntry


# ---------------------------------------------------------------------------------------
# Declarations


@dataclass(frozen=True)
class Option:
    """One packager option, declared so that help, listings and the README are generated.

    ``default`` is shown in help; ``defaults`` overrides it per mode (``submit``,
    ``restore``, ``replace``, ``disseminate``) where DSpace's defaults differ by mode.
    ``applies_to`` says where the option has an effect.
    """

    name: str
    help: str
    default: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)
    applies_to: frozenset[str] = frozenset({"ingest", "disseminate"})
    multiple: bool = False

    def default_for(self, mode: str) -> str | None:
        return self.defaults.get(mode, self.default)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "help": self.help, "default": self.default,
                "defaults": dict(self.defaults), "applies_to": sorted(self.applies_to),
                "multiple": self.multiple}


INGEST = frozenset({"ingest"})
DISSEMINATE = frozenset({"disseminate"})
BOTH = frozenset({"ingest", "disseminate"})


class Mode(enum.StrEnum):
    """How an ingest treats identities, in DSpace's terms (``dspace packager -s/-r/-r -f``)."""

    SUBMIT = "submit"  # new object, new handle, parent required, workflow unless skipped
    RESTORE = "restore"  # handles and parent from the package; existing object = error
    REPLACE = "replace"  # restore, replacing existing objects (force replace)


# ---------------------------------------------------------------------------------------
# What packagers receive


@dataclass
class PackageSource:
    """A staged package: ``path`` is a file (or a directory, from the command line)."""

    path: Path
    name: str | None = None
    content_type: str | None = None

    @property
    def is_directory(self) -> bool:
        return self.path.is_dir()

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def head(self, size: int = 8) -> bytes:
        """The first bytes of a file package (for sniffing); empty for a directory."""
        if self.is_directory:
            return b""
        with self.open() as fh:
            return fh.read(size)

    @property
    def label(self) -> str:
        return self.name or self.path.name


@dataclass
class IngestRequest:
    """What the caller asks of an ingest (CLI flags, or HTTP query arguments)."""

    mode: Mode = Mode.SUBMIT
    params: PackageParameters = field(default_factory=PackageParameters)
    parent: uuid.UUID | None = None  # explicit parent (-p); required for SUBMIT
    keep_existing: bool = False  # -k: skip objects that exist (and their children)
    recursive: bool = False  # -a: follow child packages
    skip_workflow: bool = False  # -w
    license: str | None = None  # deposit licence text to attach on submit
    # When set, a submitted item is handed to this callable in the ingest's unit of work,
    # once complete, *instead of* being finished (workflow or archive): the caller (SWORD)
    # records what it keeps about the deposit and decides whether the item stays in the
    # workspace.  Single-item packagers honour it through ``itemkit.finish_item``.
    finish: Callable[[Context, Item], None] | None = None

    @property
    def is_restore(self) -> bool:
        return self.mode in (Mode.RESTORE, Mode.REPLACE)


class Outcome(enum.StrEnum):
    CREATED = "created"
    REPLACED = "replaced"
    SKIPPED = "skipped"  # existed (keep-existing), or parent missing (skipIfParentMissing)
    FAILED = "failed"
    EXPORTED = "exported"  # a disseminator wrote the object's package (hierarchy exports)


@dataclass
class IngestedObject:
    """One object an ingest dealt with: the receipt line for it."""

    type: ObjectType
    outcome: Outcome
    handle: str | None = None
    uuid: uuid.UUID | None = None
    package: str | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type.value, "outcome": self.outcome.value, "handle": self.handle,
                "uuid": str(self.uuid) if self.uuid else None, "package": self.package,
                "reason": self.reason, "warnings": list(self.warnings)}


@dataclass
class IngestResult:
    """Everything an ingest did; ``objects[0]`` is the object the package described."""

    objects: list[IngestedObject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def primary(self) -> IngestedObject | None:
        return self.objects[0] if self.objects else None

    @property
    def failed(self) -> bool:
        return any(o.outcome is Outcome.FAILED for o in self.objects)


@dataclass
class Operation:
    """The repository and the person an operation works for; opens units of work.

    ``on_object`` is called once per object as soon as its unit of work committed (the CLI
    draws progress and writes ``--log-json`` lines from it); hierarchy exports call it as
    each package is written.  ``on_progress`` is called as each object is *processed*,
    before the unit of work commits (an all-or-nothing restore commits once, at the end):
    it is for progress display only and must not be taken as a receipt.
    """

    repo: Repository
    actor: uuid.UUID | None = None
    system: bool = False
    on_object: Callable[[IngestedObject], None] | None = None
    now: datetime | None = None  # "as of" time for time-dependent output; None: the clock
    on_progress: Callable[[IngestedObject], None] | None = None

    def context(self, *, write: bool = True) -> AbstractContextManager[Context]:
        return self.repo.context(self.actor, system=self.system, write=write)

    def report(self, obj: IngestedObject) -> None:
        if self.on_object is not None:
            self.on_object(obj)

    def progress(self, obj: IngestedObject) -> None:
        if self.on_progress is not None:
            self.on_progress(obj)


# ---------------------------------------------------------------------------------------
# What disseminators return


class Package(ABC):
    """A disseminated package, ready to stream; the database is no longer needed.

    ``size`` is the exact byte length when the packager can know it before writing (it
    then must also support ranges in :meth:`iter_bytes`); ``None`` means "streamed, length
    unknown", and callers must not ask for a range.
    """

    mime_type: str
    file_name: str
    last_modified: datetime
    size: int | None = None
    etag: str | None = None

    @abstractmethod
    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the package bytes from ``start`` to ``end`` (exclusive; None = to the end)."""

    def write_to(self, out: BinaryIO) -> int:
        written = 0
        for chunk in self.iter_bytes():
            out.write(chunk)
            written += len(chunk)
        return written

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release temporary files; called by the consumer when the response ends."""

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamPackage(Package):
    """A package whose bytes are one seekable stream of known size: a stored bitstream, a
    spooled manifest, a temp file.  ``opener`` gives a fresh stream for every read, so
    ranges and repeated reads need no buffering; ``on_close`` releases what backs it."""

    def __init__(self, opener: Callable[[], BinaryIO], size: int, *, mime_type: str,
                 file_name: str, last_modified: datetime, etag: str | None = None,
                 on_close: Callable[[], None] | None = None,
                 block_size: int = 1024 * 1024) -> None:
        self._opener = opener
        self.size: int = size
        self.mime_type = mime_type
        self.file_name = file_name
        self.last_modified = last_modified
        self.etag = etag
        self._on_close = on_close
        self._block = block_size

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        stop = self.size if end is None else min(end, self.size)
        with self._opener() as fh:
            fh.seek(start)
            remaining = stop - start
            while remaining > 0:
                chunk = fh.read(min(self._block, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def manifest_package(entry: ZipEntry, *, file_name: str, last_modified: datetime) -> Package:
    """A bare XML manifest (``manifestOnly``) spooled as a zip entry, served on its own."""
    return StreamPackage(entry.opener, entry.size, mime_type="text/xml", file_name=file_name,
                         last_modified=last_modified, etag=f"{entry.crc32:08x}-{entry.size}",
                         on_close=entry.close)


class FilePackage(StreamPackage):
    """A package that is one existing file (a stored bitstream, a temp file)."""

    def __init__(self, path: Path, *, mime_type: str, file_name: str, last_modified: datetime,
                 etag: str | None = None, remove_on_close: bool = False,
                 block_size: int = 1024 * 1024) -> None:
        self.path = path
        super().__init__(lambda: path.open("rb"), path.stat().st_size, mime_type=mime_type,
                         file_name=file_name, last_modified=last_modified, etag=etag,
                         on_close=(lambda: path.unlink(missing_ok=True)) if remove_on_close
                         else None,
                         block_size=block_size)


# ---------------------------------------------------------------------------------------
# The plugin classes


class Packager:
    """Declarations shared by ingesters and disseminators (class attributes).

    ``name`` is the canonical name (``AIP``); ``aliases`` are other names it answers to,
    matched case-insensitively with the name.  ``mime_types[0]`` is the type written on
    dissemination; all are accepted on ingest.  ``sword_packaging`` lists the SWORD
    ``Packaging`` URIs it implements.  ``options`` declares every option it reads.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    mime_types: ClassVar[tuple[str, ...]] = ("application/zip",)
    extension: ClassVar[str] = "zip"
    sword_packaging: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    roundtrip_exact: ClassVar[bool | None] = None
    """Whether an item survives disseminate -> ingest -> disseminate byte for byte.

    Declared by packagers that both disseminate items and ingest them into collections,
    and checked by ``tests/test_packager_conformance.py``: the item is disseminated,
    the package submitted into another collection, the new item disseminated, and the two
    packages must be identical when this is True.  False declares that they cannot be
    (the format names the object, carries dates the repository sets on submit...), and
    then :attr:`roundtrip_note` must say what differs and why.  None (the default) means
    undeclared: the conformance test then demands identical bytes."""
    roundtrip_note: ClassVar[str] = ""
    """Why a round trip cannot give the same package (required when ``roundtrip_exact``
    is False): what differs, and what is still guaranteed to come back."""

    @classmethod
    def option_names(cls, direction: str) -> set[str]:
        return {o.name for o in cls.options if direction in o.applies_to}

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The introspection record (``davpack packagers list``, ``/-/packagers``)."""
        record: dict[str, Any] = {
            "name": cls.name, "aliases": list(cls.aliases), "description": cls.description,
            "mime_types": list(cls.mime_types), "extension": cls.extension,
            "sword_packaging": list(cls.sword_packaging),
            "options": [o.as_dict() for o in cls.options],
        }
        if issubclass(cls, Ingester):
            record["ingest_parent_types"] = sorted(t.value for t in cls.ingest_parent_types)
            record["replace_types"] = sorted(t.value for t in cls.replace_types)
        if issubclass(cls, Disseminator):
            record["disseminate_types"] = sorted(t.value for t in cls.disseminate_types)
        return record


class Ingester(Packager):
    """Reads packages into the repository.

    ``ingest_parent_types``: the types of container a package can be ingested into (a
    collection for an item package, ...).  ``replace_types``: the types it can replace.
    """

    ingest_parent_types: ClassVar[frozenset[ObjectType]] = frozenset()
    replace_types: ClassVar[frozenset[ObjectType]] = frozenset()

    @classmethod
    def sniff(cls, source: PackageSource) -> bool:
        """True when the content is certainly this packager's format (cheap; no DB).

        Used only when neither a name, a SWORD packaging URI nor a specific content type
        chose the packager.  The default never claims a package.
        """
        return False

    @abstractmethod
    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        """Create new object(s) from the package under ``request.parent`` (or the parent the
        package names, on restore)."""

    def replace(self, op: Operation, target: uuid.UUID, source: PackageSource,
                request: IngestRequest) -> IngestResult:
        """Replace the existing object ``target`` with the package's content.

        The default refuses: replacing is format-specific and optional.
        """
        raise UnsupportedOperation(
            f"packager {self.name} cannot replace objects",
            [Detail("replace not supported", field="package", found=self.name)])


class Disseminator(Packager):
    """Writes objects as packages.  ``disseminate_types``: the object types it can write."""

    disseminate_types: ClassVar[frozenset[ObjectType]] = frozenset()

    @abstractmethod
    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        """Build the package of one object; the returned :class:`Package` owns any temp
        files and no longer needs the database."""

    def file_name(self, obj: Any, params: PackageParameters) -> str:
        """The name a downloaded package gets (``ITEM@123456789-8.zip`` style by default)."""
        return package_file_name(obj, self.extension)

    def disseminate_all(self, op: Operation, target: uuid.UUID, params: PackageParameters,
                        dest: Path) -> list[Path]:
        """Write the object's package and its descendants' into directory ``dest``."""
        raise UnsupportedOperation(
            f"packager {self.name} cannot export a hierarchy",
            [Detail("hierarchy export not supported", field="all", found=self.name)])


def package_file_name(obj: Any, extension: str) -> str:
    """``<TYPE>@<prefix>-<suffix>.<ext>``, or ``<TYPE>@internal-id-<uuid>.<ext>``."""
    kind = obj.type.value
    if obj.handle:
        return f"{kind}@{obj.handle.replace('/', '-')}.{extension}"
    return f"{kind}@internal-id-{obj.id}.{extension}"
