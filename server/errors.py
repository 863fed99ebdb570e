"""The root of every error davpack raises on purpose.

Each error carries a human message and a list of structured :class:`Detail` records
(file, field, line, expected, found).  The CLI prints them and the HTTP layer renders
them as JSON or text through one status table (``server.http.errors``) without ever
parsing message strings.  Subclasses name the *kind* of failure; the HTTP status is
chosen from the kind, not from the wording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Detail:
    """One precise finding: what was wrong, and where."""

    message: str
    file: str | None = None
    field: str | None = None
    line: int | None = None
    expected: str | None = None
    found: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = ", ".join(
            f"{k}={v}" for k, v in (("file", self.file), ("line", self.line), ("field", self.field))
            if v is not None
        )
        text = self.message
        if where:
            text = f"{where}: {text}"
        facts = [f"{label} {value}" for label, value in
                 (("expected", self.expected), ("found", self.found)) if value is not None]
        if facts:
            text += f" ({', '.join(facts)})"
        return text


@dataclass
class DavpackError(Exception):
    """Root of davpack's errors.  ``details`` lists the individual findings."""

    message: str
    details: list[Detail] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {d}" for d in self.details)

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "details": [d.as_dict() for d in self.details],
        }

    @classmethod
    def from_details(cls, message: str, details: Iterable[Detail]) -> DavpackError:
        return cls(message, list(details))


class ConfigError(DavpackError):
    """The configuration file or an environment override is invalid."""


class NotFound(DavpackError):
    """A handle, UUID, person or group does not exist."""


class AuthenticationRequired(DavpackError):
    """The operation needs a known, logged-in person."""


class PermissionDenied(DavpackError):
    """The person is known but lacks the policy the operation needs."""


class Conflict(DavpackError):
    """The operation clashes with what exists (duplicate handle, non-empty container...)."""


class InvalidInput(DavpackError):
    """A value given by the caller is malformed or not allowed."""


class UnknownMetadataField(InvalidInput):
    """A metadata field is not in the registry and the caller did not ask to create it."""


class SizeLimitExceeded(DavpackError):
    """A stream is larger than the configured limit."""


class ChecksumMismatch(DavpackError):
    """Content does not match the checksum it was declared with."""


class ContentMissing(DavpackError):
    """A bitstream's content is missing from (or damaged in) the store."""


class UnsafeInput(InvalidInput):
    """Hostile or malformed untrusted input: path escape, link, bomb, entity, DTD..."""
