"""Password hashes: DSpace-compatible, verified against vectors computed independently."""

from __future__ import annotations

import hashlib
import re

import pytest

from server.context import Repository
from server.passwords import compose, hash_password, split, verify_password
from server.services import people


def _dspace_digest(algorithm: str, salt: bytes, password: str) -> str:
    """DSpace's DigestHasher, written out: digest(salt || utf8), then 1023 more rounds."""
    value = hashlib.new(algorithm, salt + password.encode("utf-8")).digest()
    for _ in range(1023):
        value = hashlib.new(algorithm, value).digest()
    return value.hex()


SALT = bytes.fromhex("8c1f4a2b9d3e7f6051a2b3c4d5e6f708")


def test_hash_and_verify_round_trip() -> None:
    stored = hash_password("correct horse ✓")
    assert re.fullmatch(r"SHA-512\$[0-9a-f]{32}\$[0-9a-f]{128}", stored)
    assert verify_password(stored, "correct horse ✓")
    assert not verify_password(stored, "correct horse")
    assert not verify_password(stored, "")


def test_hashes_are_salted() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first != second
    assert split(first)[1] != split(second)[1]


def test_hash_uses_the_dspace_scheme() -> None:
    stored = hash_password("päss wörd")
    algorithm, salt_hex, digest_hex = split(stored)
    assert algorithm == "SHA-512"
    assert digest_hex == _dspace_digest("sha512", bytes.fromhex(salt_hex or ""), "päss wörd")


def test_independently_computed_dspace_vector_verifies() -> None:
    digest = _dspace_digest("sha512", SALT, "Tr0ub4dor&3 — ünïcödé")
    stored = compose("SHA-512", SALT.hex(), digest.upper())
    assert stored == f"SHA-512${SALT.hex()}${digest}"
    assert verify_password(stored, "Tr0ub4dor&3 — ünïcödé")
    assert not verify_password(stored, "Tr0ub4dor&3 — unicode")
    # one round fewer is not the same hash
    short = hashlib.sha512(SALT + b"x").digest()
    for _ in range(1022):
        short = hashlib.sha512(short).digest()
    assert not verify_password(f"SHA-512${SALT.hex()}${short.hex()}", "x")
    assert verify_password(f"SHA-512${SALT.hex()}${_dspace_digest('sha512', SALT, 'x')}", "x")


def test_sha256_vector_verifies() -> None:
    stored = f"SHA-256${SALT.hex()}${_dspace_digest('sha256', SALT, 'pw')}"
    assert verify_password(stored, "pw")


def test_legacy_unsalted_md5_verifies() -> None:
    md5 = hashlib.md5("legacy pässword".encode()).hexdigest()
    assert compose(None, None, md5) == f"$${md5}"
    assert verify_password(f"$${md5}", "legacy pässword")
    assert verify_password(f"$${md5.upper()}", "legacy pässword")
    assert not verify_password(f"$${md5}", "legacy password")


@pytest.mark.parametrize("stored", [None, "", "nodollars", "SHA-512$zz$00",
                                    "WHIRLPOOL$00$00", "SHA-512$00"])
def test_malformed_or_unknown_hashes_never_verify(stored: str | None) -> None:
    assert verify_password(stored, "anything") is False


def test_authenticate_by_email_or_netid(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        people.create_person(ctx, "Login@Example.org", password="s3cret", netid="login1")
        people.create_person(ctx, "blocked@example.org", password="s3cret", can_log_in=False)
        digest = _dspace_digest("sha512", SALT, "restored")
        people.create_person(ctx, "restored@example.org",
                             password_hash=compose("SHA-512", SALT.hex(), digest))
    with repo.context(write=False) as ctx:
        found = people.authenticate(ctx, "login@example.org", "s3cret")
        assert found is not None and found.email == "Login@Example.org"
        assert people.authenticate(ctx, "login1", "s3cret") is found
        assert people.authenticate(ctx, "login@example.org", "wrong") is None
        assert people.authenticate(ctx, "blocked@example.org", "s3cret") is None
        assert people.authenticate(ctx, "nobody@example.org", "s3cret") is None
        assert people.authenticate(ctx, "restored@example.org", "restored") is not None
