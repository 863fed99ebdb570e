"""Packager errors: one root, :class:`PackageError`, with structured details.

Every subclass carries ``details`` (:class:`server.errors.Detail`: file, field, line,
expected, found) so the CLI can print and the HTTP layer can render them without parsing
strings.  The HTTP status for each class is chosen in one table in the HTTP layer.
"""

from __future__ import annotations

from server.errors import DavpackError


class PackageError(DavpackError):
    """Root of everything a packager raises on purpose."""


class UnknownPackager(PackageError):
    """No installed packager has that name (the message lists those that are installed)."""


class UnknownOption(PackageError):
    """An option the chosen packager does not know (the message lists those it knows)."""


class UnsupportedOperation(PackageError):
    """The packager cannot do this (e.g. disseminate this object type, or replace)."""


class PackageValidationError(PackageError):
    """The package is malformed, incomplete, or does not match its own manifest."""


class AmbiguousPackage(PackageError):
    """Sniffing found no packager, or several, for the content (details list candidates)."""


class ObjectExists(PackageError):
    """A restore found an object that already exists (and neither -k nor -f was given)."""


class ParentMissing(PackageError):
    """The package's parent object does not exist (``skipIfParentMissing`` turns it into a
    warning)."""
