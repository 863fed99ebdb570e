"""SWORD error documents: the seven SWORD error IRIs, davpack's own, and one mapping.

Every failure of a SWORD request is answered with an error document (root ``sword:error``
in the ``http://purl.org/net/sword/terms/`` namespace, ``href`` = the error IRI) carrying a
one-line ``atom:summary`` and a ``sword:verboseDescription`` that lists every finding
(file, field, expected, found) and says what the depositor should change.

The seven IRIs of the profile (``http://purl.org/net/sword/error/...``) are used with the
statuses the profile and the ``sword2`` client expect; failures the profile has no IRI for
(401, 403 for a permission, 404, 409, 500) get davpack's own IRIs under
:data:`DAVPACK_ERRORS`, which clients treat as "unknown error" and still display.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from packagers import errors as perr
from server import errors as serr
from server.errors import DavpackError, Detail

SWORD_ERRORS = "http://purl.org/net/sword/error/"
DAVPACK_ERRORS = "urn:davpack:sword:error:"

ERROR_CONTENT = SWORD_ERRORS + "ErrorContent"
CHECKSUM_MISMATCH = SWORD_ERRORS + "ErrorChecksumMismatch"
BAD_REQUEST = SWORD_ERRORS + "ErrorBadRequest"
TARGET_OWNER_UNKNOWN = SWORD_ERRORS + "TargetOwnerUnknown"
MEDIATION_NOT_ALLOWED = SWORD_ERRORS + "MediationNotAllowed"
METHOD_NOT_ALLOWED = SWORD_ERRORS + "MethodNotAllowed"
MAX_UPLOAD_SIZE_EXCEEDED = SWORD_ERRORS + "MaxUploadSizeExceeded"

UNAUTHORIZED = DAVPACK_ERRORS + "AuthenticationRequired"
FORBIDDEN = DAVPACK_ERRORS + "PermissionDenied"
NOT_FOUND = DAVPACK_ERRORS + "NotFound"
CONFLICT = DAVPACK_ERRORS + "Conflict"
SERVER_ERROR = DAVPACK_ERRORS + "ServerError"


class SwordError(DavpackError):
    """A failure that already knows its SWORD error IRI and HTTP status."""

    iri: str = BAD_REQUEST
    status: int = 400
    hint: str = ""

    def __init__(self, message: str, details: Iterable[Detail] = (), *, hint: str | None = None,
                 allow: Iterable[str] = ()) -> None:
        super().__init__(message, list(details))
        if hint is not None:
            self.hint = hint
        self.allow = tuple(allow)


class ErrorContent(SwordError):
    iri, status = ERROR_CONTENT, 415


class NotAcceptable(SwordError):
    """ErrorContent on retrieval: no package of the asked packaging can be made."""

    iri, status = ERROR_CONTENT, 406


class BadRequest(SwordError):
    iri, status = BAD_REQUEST, 400


class TargetOwnerUnknown(SwordError):
    iri, status = TARGET_OWNER_UNKNOWN, 403
    hint = ("On-Behalf-Of must name an existing account that may log in (its e-mail "
            "address or netid).")


class MediationNotAllowed(SwordError):
    iri, status = MEDIATION_NOT_ALLOWED, 412
    hint = ("Mediated deposit is switched off on this server (sword.mediation): send the "
            "request without On-Behalf-Of, with the depositor's own credentials.")


class MethodNotAllowed(SwordError):
    iri, status = METHOD_NOT_ALLOWED, 405


class Forbidden(SwordError):
    iri, status = FORBIDDEN, 403


class NotFound(SwordError):
    iri, status = NOT_FOUND, 404


@dataclass(frozen=True)
class Answer:
    """How one failure is answered."""

    status: int
    iri: str
    summary: str
    details: tuple[Detail, ...]
    hint: str
    allow: tuple[str, ...] = ()


# Davpack's own errors as SWORD answers, first match wins: (error classes, status — or
# None for "406 when retrieving, else 415" —, error IRI, what the depositor should do).
# ``{limit}`` in a hint is filled with the upload limit.
ANSWER_TABLE: tuple[tuple[tuple[type[BaseException], ...], int | None, str, str], ...] = (
    ((serr.ChecksumMismatch,), 412, CHECKSUM_MISMATCH,
     "Content-MD5 must be the MD5 (hex) of exactly the bytes sent as the file (for a "
     "multipart deposit: the decoded media part); the values the server computed are listed "
     "above. Resend the file, or fix the checksum."),
    ((serr.SizeLimitExceeded,), 413, MAX_UPLOAD_SIZE_EXCEEDED,
     "The server takes at most the limit{limit} per request (sword:maxUploadSize in the "
     "service document, in bytes). Send a smaller package, or split the content over "
     "several requests to the SE-IRI with In-Progress: true."),
    ((serr.AuthenticationRequired,), 401, UNAUTHORIZED,
     "Send HTTP Basic credentials of a repository account (e-mail address or netid, and "
     "password)."),
    ((serr.PermissionDenied,), 403, FORBIDDEN,
     "The account lacks the resource policy this needs (ADD on the collection to deposit; "
     "the deposit must still be in its submitter's workspace to change it). Ask the "
     "repository's administrators."),
    ((serr.NotFound,), 404, NOT_FOUND,
     "Use the IRIs of the service document and of the deposit receipt; a deleted deposit "
     "is gone for good."),
    ((perr.UnknownPackager, perr.AmbiguousPackage, perr.UnsupportedOperation), None,
     ERROR_CONTENT,
     "Use one of the packaging IRIs the service document lists as sword:acceptPackaging "
     "(for retrieval: the receipt's sword:packaging)."),
    ((perr.PackageError,), None, ERROR_CONTENT,
     "The content could not be read as the packaging the Packaging header names; the "
     "findings above say which file or field is wrong."),
    ((serr.Conflict,), 409, CONFLICT,
     "The request clashes with what the repository holds (see above)."),
    ((serr.InvalidInput,), 400, BAD_REQUEST,
     "The request could not be understood as sent; the findings above name the header, "
     "part or field to fix."),
    ((serr.ContentMissing,), 500, SERVER_ERROR,
     "Stored content is damaged or missing; tell the repository's administrators."),
)


def classify(error: BaseException, *, retrieving: bool = False,
             limit: int | None = None) -> Answer:
    """The status, IRI and texts for ``error`` (anything not known is a 500)."""
    if isinstance(error, SwordError):
        return Answer(error.status, error.iri, error.message, tuple(error.details),
                      error.hint, error.allow)
    if not isinstance(error, DavpackError):
        return Answer(500, SERVER_ERROR, "internal server error", (),
                      "This is a fault of the server, not of the request; it was logged. "
                      "Try again later or tell the repository's administrators.")
    details = tuple(error.details)
    for classes, status, iri, hint in ANSWER_TABLE:
        if isinstance(error, classes):
            if status is None:
                status = 406 if retrieving else 415
            where = f" of {limit} bytes" if limit is not None else ""
            return Answer(status, iri, error.message, details, hint.format(limit=where))
    return Answer(400, BAD_REQUEST, error.message, details, "")


def verbose_text(answer: Answer) -> str:
    lines = [answer.summary]
    lines.extend(f"- {detail}" for detail in answer.details)
    if answer.hint:
        lines.append("")
        lines.append("What to do: " + answer.hint)
    return "\n".join(lines)
