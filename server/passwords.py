"""Password hashes compatible with DSpace, so hashes carried in Site AIPs verify both ways.

Stored form: ``<algorithm>$<salt hex>$<digest hex>``.  DSpace's scheme is a 16-byte random
salt and 1024 rounds of the digest over ``salt || UTF-8 password`` (then over the previous
digest); a hash without algorithm is DSpace's legacy unsalted MD5.  We write SHA-512, the
DSpace default, so an exported hash restores into DSpace unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ROUNDS = 1024
DEFAULT_ALGORITHM = "SHA-512"
_ALGORITHMS = {"SHA-512": "sha512", "SHA-256": "sha256", "SHA-1": "sha1", "MD5": "md5"}


def _digest(algorithm: str, salt: bytes, password: str) -> bytes:
    name = _ALGORITHMS.get(algorithm.upper())
    if name is None:
        raise ValueError(f"unsupported password digest algorithm {algorithm!r}")
    value = hashlib.new(name, salt + password.encode("utf-8")).digest()
    for _ in range(ROUNDS - 1):
        value = hashlib.new(name, value).digest()
    return value


def hash_password(password: str, *, algorithm: str = DEFAULT_ALGORITHM) -> str:
    salt = secrets.token_bytes(16)
    return f"{algorithm}${salt.hex()}${_digest(algorithm, salt, password).hex()}"


def compose(algorithm: str | None, salt_hex: str | None, digest_hex: str) -> str:
    """Build the stored form from the parts an AIP carries (no algorithm: legacy MD5)."""
    return f"{algorithm or ''}${salt_hex or ''}${digest_hex.lower()}"


def split(stored: str) -> tuple[str | None, str | None, str]:
    algorithm, salt, digest = stored.split("$", 2)
    return algorithm or None, salt or None, digest


def verify_password(stored: str | None, password: str) -> bool:
    if not stored or stored.count("$") != 2:
        return False
    algorithm, salt_hex, digest_hex = split(stored)
    try:
        if algorithm is None:
            candidate = hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()
            return hmac.compare_digest(candidate, digest_hex.lower())
        salt = bytes.fromhex(salt_hex or "")
        candidate = _digest(algorithm, salt, password).hex()
    except ValueError:
        return False
    return hmac.compare_digest(candidate, digest_hex.lower())
