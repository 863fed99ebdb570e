"""Handles: ``<prefix>/<suffix>`` identifiers, minted without ever colliding with restored ones.

Restores bring their own handles (any prefix).  Minting keeps a counter per prefix and skips
every suffix already taken, so a handle restored ahead of the counter is never handed out
again.
"""

from __future__ import annotations

import re
from collections.abc import Set

from sqlalchemy import select

from server import models as m
from server.context import Context
from server.errors import Conflict, Detail, InvalidInput, NotFound

_MINT_ROUND = 500  # suffixes looked up per query
_HANDLE_RE = re.compile(r"^[0-9A-Za-z.]+/[0-9A-Za-z._\-]+$")


def normalise(text: str) -> str:
    """Accept ``hdl:1/2``, ``http://hdl.handle.net/1/2``, ``1/2``; return ``1/2``."""
    value = text.strip()
    for prefix in ("hdl:", "info:hdl/", "https://hdl.handle.net/", "http://hdl.handle.net/"):
        if value.lower().startswith(prefix):
            value = value[len(prefix):]
            break
    if not _HANDLE_RE.match(value):
        raise InvalidInput(f"not a handle: {text!r}",
                           [Detail("expected prefix/suffix", field="handle", found=text)])
    return value


def resolve(ctx: Context, handle: str) -> m.DSpaceObject | None:
    """The object with ``handle``, counting the unit's changes not yet flushed, without
    flushing them (a restore writes many new objects in one flush, not one per look-up)."""
    value = normalise(handle)
    session = ctx.session
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, m.DSpaceObject) and obj.handle == value \
                and obj not in session.deleted:
            return obj
    with session.no_autoflush:
        stored = session.scalars(select(m.DSpaceObject)
                                 .where(m.DSpaceObject.handle == value)).first()
    if stored is not None and (stored.handle != value or stored in session.deleted):
        return None  # the unit is giving it another handle, or deleting it
    return stored


def require(ctx: Context, handle: str) -> m.DSpaceObject:
    found = resolve(ctx, handle)
    if found is None:
        raise NotFound(f"no object has the handle {handle}",
                       [Detail("unknown handle", field="handle", found=handle)])
    return found


def mint(ctx: Context) -> str:
    return mint_block(ctx, 1)[0]


def mint_block(ctx: Context, count: int, *, reserved: Set[str] = frozenset()) -> list[str]:
    """``count`` new handles in order, with one lock on the counter and one look-up of the
    suffixes already taken per round (restored handles ahead of the counter); ``reserved``
    handles are skipped too (the caller is about to give them out)."""
    if count == 0:
        return []
    prefix = ctx.repo.handle_prefix
    counter = ctx.session.scalars(select(m.HandleCounter).where(m.HandleCounter.prefix == prefix)
                                  .with_for_update()).first()
    if counter is None:
        counter = m.HandleCounter(prefix=prefix, next_suffix=1)
        ctx.session.add(counter)
        ctx.session.flush()
    suffix = counter.next_suffix
    minted: list[str] = []
    while len(minted) < count:
        wanted = min(count - len(minted), _MINT_ROUND)
        candidates = [f"{prefix}/{s}" for s in range(suffix, suffix + wanted)]
        suffix += len(candidates)
        taken = set(ctx.session.scalars(select(m.DSpaceObject.handle)
                                        .where(m.DSpaceObject.handle.in_(candidates))))
        minted.extend(c for c in candidates if c not in taken and c not in reserved)
    counter.next_suffix = suffix
    ctx.session.flush()
    return minted


def assign(ctx: Context, dso: m.DSpaceObject, handle: str | None) -> str:
    """Give ``dso`` the handle (a restored one) or a freshly minted one if ``None``.

    A given handle is checked as :func:`resolve` finds it, without flushing: a new object
    (and its files, values and policies) is then written with its handle in one go.
    """
    if handle is None:
        dso.handle = mint(ctx)
        return dso.handle
    value = normalise(handle)
    owner = resolve(ctx, value)
    if owner is not None and owner is not dso:
        raise Conflict(f"handle {value} already belongs to {owner.type.value} {owner.id}",
                       [Detail("duplicate handle", field="handle", found=value)])
    dso.handle = value
    return value
