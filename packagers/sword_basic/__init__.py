"""SWORD's own packagings: ``Binary`` (one opaque file) and ``SimpleZip`` (a plain zip).

Both are ordinary packagers (usable from the command line and WebDAV too, by name); the
SWORD server also calls :func:`stage_binary`, :func:`stage_zip` and :func:`attach` to add
such content to an existing deposit.
"""

from packagers.sword_basic.packagers import (
    BINARY_URI,
    SIMPLEZIP_URI,
    BinaryPackager,
    SimpleZipPackager,
    StagedFile,
    attach,
    stage_binary,
    stage_zip,
)

__all__ = [
    "BINARY_URI",
    "SIMPLEZIP_URI",
    "BinaryPackager",
    "SimpleZipPackager",
    "StagedFile",
    "attach",
    "stage_binary",
    "stage_zip",
]
