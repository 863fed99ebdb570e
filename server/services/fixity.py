"""Fixity: re-hash every stored file and compare with what the database recorded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select

from server import models as m
from server.context import Context, Repository
from server.errors import ContentMissing
from server.store import copy_hashed


@dataclass(frozen=True)
class Finding:
    kind: str  # "missing", "altered" (failures) or "orphaned" (a file nothing records)
    sha256: str
    detail: str
    bitstreams: tuple[str, ...] = ()

    @property
    def is_failure(self) -> bool:
        return self.kind in ("missing", "altered")


def check(repo: Repository) -> Iterator[Finding]:
    """Yield one finding per problem; reads each file once, in key order, constant memory."""
    recorded: set[str] = set()
    with repo.context(write=False) as ctx:
        rows = ctx.session.execute(select(m.StoredContent.sha256, m.StoredContent.size,
                                          m.StoredContent.md5)
                                   .order_by(m.StoredContent.sha256)).all()
        for sha256, size, md5 in rows:
            recorded.add(sha256)
            try:
                stream = repo.store.open(sha256)
            except ContentMissing:
                yield Finding("missing", sha256, "file is missing from the store",
                              _users(ctx, sha256))
                continue
            with stream:
                digests = copy_hashed(stream, None)
            if (digests.sha256, digests.size, digests.md5) != (sha256, size, md5):
                yield Finding("altered", sha256,
                              f"content changed: now sha256 {digests.sha256}, "
                              f"{digests.size} bytes (recorded {size} bytes)",
                              _users(ctx, sha256))
    for key in repo.store.iter_keys():
        if key not in recorded:
            yield Finding("orphaned", key, "file in the store that no bitstream records")


def _users(ctx: Context, sha256: str) -> tuple[str, ...]:
    out = []
    for bitstream in ctx.session.scalars(select(m.Bitstream).where(m.Bitstream.sha256 == sha256)):
        bundle = bitstream.bundle
        where = bundle.item.handle if bundle is not None and bundle.item.handle else "logo"
        out.append(f"{bitstream.name} ({where}, {bitstream.id})")
    return tuple(out)
