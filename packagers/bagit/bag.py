"""Opening and validating a deposited bag, without ``os.chdir`` and without trusting it.

The bag arrives as a zip or tar (extracted by :mod:`server.archive` into a private scratch
directory), or as a directory on the command line (read in place, never modified).  Then:

1. ``bagit.txt`` is checked strictly (RFC 8493 §2.1.1: UTF-8 without a byte-order mark, the
   two required labels spelled exactly, no white space before the colon) and kept small.
2. bagit-python's :class:`bagit.Bag` parses the tag files and every manifest (unsafe paths,
   duplicate entries, unsupported versions and encodings are refused there).  It works on
   absolute paths and never changes the working directory; ``make_bag``/``Bag.save``, which
   do, are never called.
3. ``fetch.txt``: davpack never downloads anything on a client's behalf.  A fetch list whose
   every file is already in the payload is accepted with a warning; any entry still to be
   fetched, or naming a Windows path, refuses the bag.
4. ``Bag.validate(completeness_only=True)``: structure, Payload-Oxum, and that manifests
   and payload list the same files.
5. Tag manifests are checked here (tag files are small); payload checksums are checked
   while the payload is copied into the store, in the same single pass that computes the
   store's own MD5 and SHA-256 (see :class:`HashingReader`), so every byte is read once.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import bagit

from packagers.errors import PackageValidationError
from server.archive import SafeArchive, junk_name
from server.errors import Detail, UnsafeInput

MAX_BAGIT_TXT = 64 * 1024
MAX_BAG_INFO = 8 * 1024 * 1024
MAX_FETCH_TXT = 8 * 1024 * 1024
BLOCK = 1024 * 1024
_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:|\\\\|%[^%]+%)|\\")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@dataclass
class PayloadFile:
    """One payload file: its manifest path (``data/...``), where it is on disk, and the
    checksums every manifest gives for it (algorithm -> lower-case hex)."""

    manifest_path: str
    path: Path
    checksums: dict[str, str]

    @property
    def relative(self) -> str:
        """The path below ``data/`` (the bitstream name)."""
        return self.manifest_path[len("data/"):]


@dataclass
class OpenedBag:
    """A validated bag: ``root`` is its base directory."""

    root: Path
    label: str
    version: tuple[int, ...]
    info: list[tuple[str, str]]
    payload: list[PayloadFile]
    algorithms: list[str]
    tag_files: set[str]
    warnings: list[str] = field(default_factory=list)
    extracted: bool = False

    def tag_path(self, name: str) -> Path | None:
        """A tag file by its path relative to the bag root, if it is present."""
        path = self.root / name
        return path if name in self.tag_files and path.is_file() else None


def refusal(label: str, message: str, details: list[Detail]) -> PackageValidationError:
    return PackageValidationError(f"{label}: {message}", details)


# ---------------------------------------------------------------------------------------
# Getting the bag onto disk


def bag_root_in_archive(archive: SafeArchive, label: str) -> str:
    """``""`` when ``bagit.txt`` is at the archive root, else the single top-level
    directory holding it (how bags are usually zipped or tarred)."""
    names = [n for n in archive.names() if "__MACOSX" not in n.split("/")]
    if "bagit.txt" in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names if "/" in n and not junk_name(n)}
    loose = [n for n in names if "/" not in n and not junk_name(n)]
    if len(tops) == 1 and not loose:
        top = tops.pop()
        if f"{top}/bagit.txt" in names:
            return top
    raise refusal(label, "not a bag", [Detail(
        "no bagit.txt at the root of the archive or in its single top-level directory",
        file=label, expected="bagit.txt")])


def extract_bag(source: Path, dest: Path, label: str) -> Path:
    """Extract the bag in archive ``source`` below ``dest``; return the bag's root."""
    with SafeArchive.open(source, name=label) as archive:
        top = bag_root_in_archive(archive, label)
        prefix = f"{top}/" if top else ""

        def skip(name: str) -> bool:
            return not name.startswith(prefix) or "__MACOSX" in name.split("/")

        archive.extract_all(dest, skip=skip)
    root = dest / top if top else dest
    return root


def check_directory(root: Path, label: str) -> None:
    """A bag given as a directory must hold only directories and regular files: a symbolic
    link could make the store copy anything the server can read."""
    findings: list[Detail] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                findings.append(Detail("symbolic links are not accepted in a bag",
                                       file=str(full.relative_to(root))))
            elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                findings.append(Detail("not a regular file or directory",
                                       file=str(full.relative_to(root))))
    if findings:
        raise UnsafeInput(f"{label}: unsafe bag directory refused", findings)


# ---------------------------------------------------------------------------------------
# Validation


def check_bagit_txt(root: Path, label: str) -> None:
    """RFC 8493 §2.1.1, stricter than bagit-python (which strips white space around
    labels): ``BagIt-Version: M.N`` and ``Tag-File-Character-Encoding: ENCODING``."""
    path = root / "bagit.txt"
    if not path.is_file():
        raise refusal(label, "not a bag", [Detail("bagit.txt is missing", file="bagit.txt")])
    if path.stat().st_size > MAX_BAGIT_TXT:
        raise refusal(label, "bagit.txt is too large", [Detail(
            "bagit.txt is larger than allowed", file="bagit.txt",
            expected=f"at most {MAX_BAGIT_TXT} bytes", found=f"{path.stat().st_size} bytes")])
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise refusal(label, "invalid bagit.txt", [Detail(
            "bagit.txt must not start with a byte-order mark", file="bagit.txt")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refusal(label, "invalid bagit.txt", [Detail(
            f"bagit.txt is not UTF-8: {exc}", file="bagit.txt")]) from None
    findings: list[Detail] = []
    labels: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, _value = line.partition(":")
        if not sep:
            findings.append(Detail("not a 'Label: value' line", file="bagit.txt", line=number,
                                   found=line[:80]))
        elif name != name.strip() or not _value.startswith(" "):
            findings.append(Detail("white space is not allowed before the colon, and one "
                                   "space must follow it", file="bagit.txt", line=number,
                                   found=line[:80]))
        labels.append(name.strip())
    for required in ("BagIt-Version", "Tag-File-Character-Encoding"):
        if required not in labels:
            findings.append(Detail(f"required label {required} is missing", file="bagit.txt",
                                   field=required))
    if findings:
        raise refusal(label, "invalid bagit.txt", findings)


def _bag_error(label: str, root: Path, exc: bagit.BagError) -> PackageValidationError:
    """bagit-python's findings as structured details."""
    details: list[Detail] = []
    message = str(getattr(exc, "message", None) or exc).replace(str(root), label)
    for item in getattr(exc, "details", None) or []:
        path = getattr(item, "path", None)
        if isinstance(item, bagit.ChecksumMismatch):
            details.append(Detail("checksum does not match the manifest", file=path,
                                  field=item.algorithm, expected=item.expected,
                                  found=item.found))
        elif isinstance(item, bagit.FileMissing):
            details.append(Detail("listed in a manifest but missing from the bag", file=path))
        elif isinstance(item, bagit.UnexpectedFile):
            details.append(Detail("in the payload but not listed in the manifests",
                                  file=path))
        else:
            details.append(Detail(str(item), file=path))
    if not details:
        details.append(Detail(message, file=label))
    return refusal(label, f"invalid bag: {message}", details)


def _limit(root: Path, name: str, maximum: int, label: str) -> None:
    path = root / name
    if path.is_file() and path.stat().st_size > maximum:
        raise refusal(label, f"{name} is too large", [Detail(
            f"{name} is larger than allowed", file=name, expected=f"at most {maximum} bytes",
            found=f"{path.stat().st_size} bytes")])


def open_bag(root: Path, label: str, *, extracted: bool) -> OpenedBag:
    """Validate the bag at ``root`` (everything but payload checksums; see module doc)."""
    check_bagit_txt(root, label)
    for name, maximum in (("bag-info.txt", MAX_BAG_INFO), ("package-info.txt", MAX_BAG_INFO),
                          ("fetch.txt", MAX_FETCH_TXT)):
        _limit(root, name, maximum, label)
    warnings: list[str] = []
    try:
        bag = bagit.Bag(str(root))
        if extracted:
            warnings.extend(_drop_unlisted_junk(bag, root))
        warnings.extend(_check_fetch(bag, root, label))
        bag.validate(processes=1, completeness_only=True)
    except bagit.BagError as exc:
        raise _bag_error(label, root, exc) from None
    except (UnicodeDecodeError, ValueError, LookupError) as exc:
        raise refusal(label, "invalid bag", [Detail(f"cannot read the tag files: {exc}",
                                                    file=label)]) from None
    payload: list[PayloadFile] = []
    tag_entries: dict[str, dict[str, str]] = {}
    for rel, hashes in bag.entries.items():
        rel_posix = rel.replace(os.sep, "/")
        checksums = {alg.lower(): value.lower() for alg, value in hashes.items()}
        if rel_posix.startswith("data/"):
            on_disk = bag.normalized_filesystem_names.get(nfc(rel), rel)
            payload.append(PayloadFile(rel_posix, root / on_disk, checksums))
        else:
            tag_entries[rel_posix] = checksums
    payload = _merge_normalisations(payload, label, warnings)
    _verify_tag_files(root, tag_entries, label)
    info = _info_pairs(bag)
    return OpenedBag(root=root, label=label, version=tuple(bag.version_info), info=info,
                     payload=payload, algorithms=list(bag.algorithms),
                     tag_files=set(tag_entries) | _root_files(root), warnings=warnings,
                     extracted=extracted)


def _merge_normalisations(payload: list[PayloadFile], label: str,
                          warnings: list[str]) -> list[PayloadFile]:
    """One file listed under two Unicode normalisations of its name (NFC and NFD) is one
    file: agreeing checksums merge (with a warning), conflicting ones refuse the bag."""
    groups: dict[str, list[PayloadFile]] = {}
    for item in sorted(payload, key=lambda p: p.manifest_path):
        groups.setdefault(nfc(item.manifest_path), []).append(item)
    merged: list[PayloadFile] = []
    findings: list[Detail] = []
    for name, items in groups.items():
        first = items[0]
        for other in items[1:]:
            for alg, value in other.checksums.items():
                if first.checksums.setdefault(alg, value) != value:
                    findings.append(Detail("the same file is listed twice (differently "
                                           "normalised names) with different checksums",
                                           file=name, field=alg, expected=first.checksums[alg],
                                           found=value))
        if len(items) > 1:
            warnings.append(f"{name} is listed {len(items)} times under differently "
                            "normalised Unicode names; kept once")
            first.manifest_path = name
        merged.append(first)
    if findings:
        raise refusal(label, "conflicting manifest entries", findings)
    return merged


def verify_files(files: list[PayloadFile], label: str) -> None:
    """Hash payload files that are not copied into the store (metadata the planner reads,
    files the item does not keep) and compare them with the manifests."""
    findings: list[Detail] = []
    for item in files:
        with open(item.path, "rb") as fh:
            reader = HashingReader(fh, item.checksums)
            while reader.read(BLOCK):
                pass
        findings.extend(reader.mismatches(item.manifest_path))
    if findings:
        raise refusal(label, "the payload does not match its manifests", findings)


def _root_files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_file()}


def _info_pairs(bag: Any) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for label, value in bag.info.items():
        for one in value if isinstance(value, list) else [value]:
            pairs.append((str(label), " ".join(str(one).split())))
    return pairs


def _drop_unlisted_junk(bag: Any, root: Path) -> list[str]:
    """Operating-system clutter in an extracted payload (``.DS_Store``, ``Thumbs.db``,
    AppleDouble ``._*``) that no manifest lists is removed with a warning; listed clutter
    is payload like any other file."""
    listed = {nfc(p) for p in bag.entries}
    dropped: list[str] = []
    data = root / "data"
    for dirpath, _dirs, names in os.walk(data):
        for name in names:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if junk_name(rel) and nfc(rel) not in listed:
                full.unlink()
                dropped.append(rel)
    return [f"ignored {rel}: operating-system clutter not listed in any manifest"
            for rel in sorted(dropped)]


def _check_fetch(bag: Any, root: Path, label: str) -> list[str]:
    entries = list(bag.fetch_entries())
    if not entries:
        return []
    findings: list[Detail] = []
    for url, _size, name in entries:
        if _WINDOWS_PATH.search(name):
            findings.append(Detail("unsafe path in fetch.txt (Windows path)", file="fetch.txt",
                                   found=name))
        elif not (root / name).is_file():
            findings.append(Detail("fetch.txt asks for remote content; davpack does not fetch "
                                   "files for a deposit: include them in the payload",
                                   file="fetch.txt", field=name, found=url))
    if findings:
        raise refusal(label, "incomplete (holey) bag", findings)
    return [f"fetch.txt lists {len(entries)} file(s), all already in the payload; nothing "
            "was fetched"]


def _verify_tag_files(root: Path, entries: dict[str, dict[str, str]], label: str) -> None:
    findings: list[Detail] = []
    for rel, checksums in sorted(entries.items()):
        if _WINDOWS_PATH.search(rel):
            findings.append(Detail("unsafe path in a tag manifest", file=rel))
            continue
        path = root / rel
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            findings.append(Detail("listed in a tag manifest but missing from the bag",
                                   file=rel))
            continue
        if not stat.S_ISREG(mode):
            findings.append(Detail("not a regular file", file=rel))
            continue
        with open(path, "rb") as fh:
            reader = HashingReader(fh, checksums)
            while reader.read(BLOCK):
                pass
        findings.extend(reader.mismatches(rel))
    if findings:
        raise refusal(label, "a tag file does not match its tag manifest", findings)


# ---------------------------------------------------------------------------------------
# Single-pass checksums


class HashingReader:
    """Wraps a binary file: every byte read (``read`` or ``readinto``) also feeds one hasher
    per manifest algorithm, so the store's copy and the manifest check share one pass.

    Algorithms in ``computed_elsewhere`` (the store's own MD5 and SHA-256) are not hashed
    twice: their results are passed to :meth:`mismatches`.
    """

    def __init__(self, raw: BinaryIO, expected: dict[str, str],
                 computed_elsewhere: tuple[str, ...] = ()) -> None:
        self._raw = raw
        self.expected = dict(expected)
        self._hashers: dict[str, Any] = {}
        for algorithm in expected:
            if algorithm in computed_elsewhere:
                continue
            try:
                self._hashers[algorithm] = hashlib.new(algorithm)
            except ValueError:
                self._hashers[algorithm] = None

    def _feed(self, data: Any) -> None:
        for hasher in self._hashers.values():
            if hasher is not None:
                hasher.update(data)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._feed(data)
        return data

    def readinto(self, buffer: Any) -> int:
        readinto: Callable[[Any], int | None] = self._raw.readinto  # type: ignore[attr-defined]
        n = readinto(buffer) or 0
        self._feed(memoryview(buffer)[:n])
        return n

    def mismatches(self, name: str, computed: dict[str, str] | None = None) -> list[Detail]:
        """One detail per algorithm whose digest differs from the manifest's."""
        found_by_alg = dict(computed or {})
        out: list[Detail] = []
        for algorithm, expected in self.expected.items():
            if algorithm in found_by_alg:
                found: str | None = found_by_alg[algorithm]
            else:
                hasher = self._hashers.get(algorithm)
                found = hasher.hexdigest() if hasher is not None else None
            if found is None:
                out.append(Detail(f"checksum algorithm {algorithm} is not supported",
                                  file=name, field=algorithm))
            elif found != expected:
                out.append(Detail("checksum does not match the manifest", file=name,
                                  field=algorithm, expected=expected, found=found))
        return out
