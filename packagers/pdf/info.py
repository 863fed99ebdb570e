"""Read a PDF's document information dictionary without reading the document.

pypdf is used on an open file (never on a path: pypdf reads a path whole into memory), so it
seeks to the trailer, reads the cross-reference tables and resolves the ``/Info`` object
only.  A damaged cross-reference table makes pypdf rebuild it by reading the whole file
into memory; :class:`_BudgetReader` stops that: any read beyond ``READ_BUDGET`` bytes in
total ends the attempt, and the PDF counts as *unreadable* (it is still a PDF: the ingester
decides what that means).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, cast

from packagers.errors import PackageValidationError
from server.errors import Detail

READ_BUDGET = 64 * 1024 * 1024
"""Most bytes pypdf may read from one PDF to find its info dictionary."""

HEADER_WINDOW = 1024
"""``%PDF-`` must start within the first this many bytes (as Acrobat accepts)."""

MAX_VALUE_LENGTH = 32 * 1024

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_PDF_DATE = re.compile(
    r"^(?:D:)?(?P<Y>\d{4})(?P<m>\d{2})?(?P<d>\d{2})?(?P<H>\d{2})?(?P<M>\d{2})?(?P<S>\d{2})?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+\-])(?P<oh>\d{2})'?(?:(?P<om>\d{2})'?)?)?\s*$")


class _BudgetExceeded(Exception):
    """pypdf wanted to read more of the file than finding the info dictionary needs."""


class _BudgetReader(io.RawIOBase):
    """A seekable read-only view of ``raw`` that refuses to deliver more than ``budget``
    bytes in total (and refuses ``read()`` of "everything")."""

    def __init__(self, raw: io.BufferedReader, budget: int) -> None:
        super().__init__()
        self._raw = raw
        self._left = budget

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise _BudgetExceeded("read of the whole file")
        if size > self._left:
            raise _BudgetExceeded(f"read of {size} bytes")
        data = self._raw.read(size)
        self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


@dataclass
class PdfInfo:
    """What the info dictionary says; ``problem`` is set when it could not be read."""

    header_offset: int
    version: str | None = None
    title: str | None = None
    author: str | None = None
    subject: str | None = None
    keywords: str | None = None
    creator: str | None = None
    producer: str | None = None
    created: str | None = None  # DC date (ISO 8601, as precise as the PDF says)
    encrypted: bool = False
    needs_password: bool = False
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)


def find_header(head: bytes) -> int:
    """Offset of ``%PDF-`` within the first :data:`HEADER_WINDOW` bytes, or -1."""
    return head[:HEADER_WINDOW].find(b"%PDF-")


def clean_text(value: object) -> str | None:
    """A metadata-safe string: XML-illegal characters dropped, trimmed, bounded."""
    if value is None:
        return None
    text = _XML_ILLEGAL.sub("", str(value)).strip()
    if not text:
        return None
    return text[:MAX_VALUE_LENGTH]


def dc_date(raw: str | None) -> str | None:
    """A PDF date (``D:YYYYMMDDHHmmSSOHH'mm'``) as a DC date, normalised to UTC when the
    PDF gives a time zone; as precise as the PDF is (``D:2020`` is ``2020``)."""
    if not raw:
        return None
    match = _PDF_DATE.match(raw.strip())
    if match is None:
        return None
    parts = match.groupdict()
    year = parts["Y"]
    if parts["m"] is None:
        return year
    if parts["d"] is None:
        return f"{year}-{parts['m']}"
    try:
        when = datetime(int(year), int(parts["m"]), int(parts["d"]), int(parts["H"] or 0),
                        int(parts["M"] or 0), int(parts["S"] or 0))
    except ValueError:
        return None
    if parts["H"] is None:
        return when.strftime("%Y-%m-%d")
    if parts["z"] or parts["sign"]:
        offset = timedelta(0)
        if parts["sign"]:
            offset = timedelta(hours=int(parts["oh"]), minutes=int(parts["om"] or 0))
            if parts["sign"] == "-":
                offset = -offset
        try:
            utc = when.replace(tzinfo=timezone(offset)).astimezone(UTC)
        except (ValueError, OverflowError):
            return None
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return when.strftime("%Y-%m-%dT%H:%M:%S")  # no zone given: none claimed


def read_info(path: Path, label: str) -> PdfInfo:
    """Check that ``path`` is a PDF and read its info dictionary.

    Raises :class:`PackageValidationError` when the content is not a PDF at all.  A PDF
    whose structure pypdf cannot read comes back with ``problem`` set.
    """
    with open(path, "rb") as fh:
        head = fh.read(HEADER_WINDOW)
        offset = find_header(head)
        if offset < 0:
            raise PackageValidationError(
                f"{label} is not a PDF", [Detail("no '%PDF-' header in the first "
                                                 f"{HEADER_WINDOW} bytes", file=label,
                                                 expected="%PDF-1.x",
                                                 found=repr(head[:16]))])
        info = PdfInfo(header_offset=offset)
        version = re.match(rb"%PDF-(\d\.\d)", head[offset:offset + 8])
        info.version = version.group(1).decode() if version else None
        fh.seek(0)
        _read_dictionary(fh, info)
    return info


def _read_dictionary(fh: io.BufferedReader, info: PdfInfo) -> None:
    from pypdf import PasswordType, PdfReader

    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)  # pypdf narrates every repair; our warning says enough
    try:
        reader = PdfReader(cast(IO[bytes], _BudgetReader(fh, READ_BUDGET)), strict=False)
        if reader.is_encrypted:
            info.encrypted = True
            if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                info.needs_password = True
                return
        document = reader.metadata
        if document is None:
            return
        info.title = _text(document, "/Title")
        info.author = _text(document, "/Author")
        info.subject = _text(document, "/Subject")
        info.keywords = _text(document, "/Keywords")
        info.creator = _text(document, "/Creator")
        info.producer = _text(document, "/Producer")
        for key in ("/CreationDate", "/ModDate"):
            raw = _text(document, key)
            date = dc_date(raw)
            if raw and date is None:
                info.warnings.append(f"ignored the unreadable PDF date {key[1:]} {raw!r}")
            if date is not None:
                info.created = date
                break
    except _BudgetExceeded:
        info.problem = ("the cross-reference table is damaged; repairing it would mean "
                        "reading the whole file")
    except Exception as exc:
        # Any failure of the parser on hostile input means the same thing here: the info
        # dictionary cannot be read.
        info.problem = f"the PDF structure cannot be read ({type(exc).__name__}: {exc})"[:500]
    finally:
        logger.setLevel(level)


def _text(document: Any, key: str) -> str | None:
    """A string entry of the info dictionary (indirect objects resolved, byte strings
    decoded as UTF-8 or, failing that, Latin-1)."""
    value = document.get(key)
    if value is None:
        return None
    resolve = getattr(value, "get_object", None)
    if callable(resolve):
        value = resolve()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    return clean_text(value)
