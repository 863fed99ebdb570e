"""Seed a new repository: metadata registry, the site object, built-in groups."""

from __future__ import annotations

from sqlalchemy import select

from server import models as m
from server.context import Context
from server.registry_seed import FIELDS, SCHEMAS
from server.services import authz, metadata


def seed(ctx: Context) -> None:
    """Idempotent: adds only what is missing, so it is safe on every start."""
    for prefix, namespace in SCHEMAS.items():
        schema = metadata.get_schema(ctx, prefix) or metadata.create_schema(ctx, prefix,
                                                                            namespace)
        existing = {(f.element, f.qualifier_key) for f in schema.fields}
        for element, qualifier in FIELDS[prefix]:
            if (element, qualifier or "") not in existing:
                ctx.session.add(m.MetadataField(schema_id=schema.id, element=element,
                                                qualifier=qualifier,
                                                qualifier_key=qualifier or ""))
                existing.add((element, qualifier or ""))
    ctx.session.flush()
    for name in (m.ANONYMOUS, m.ADMINISTRATOR):
        if authz.group_by_name(ctx, name) is None:
            ctx.session.add(m.Group(name=name, permanent=True))
    ctx.session.flush()
    site = ctx.session.scalars(select(m.Site)).first()
    if site is None:
        site = m.Site(handle=ctx.repo.site_handle)
        ctx.session.add(site)
        ctx.session.flush()
        metadata.set_single(ctx, site, "dc.title", str(ctx.config.get("site.name")))
        authz.add_policy(ctx, site, m.Action.READ, group=authz.anonymous_group(ctx))
    if ctx.session.get(m.HandleCounter, ctx.repo.handle_prefix) is None:
        ctx.session.add(m.HandleCounter(prefix=ctx.repo.handle_prefix, next_suffix=1))
    ctx.session.flush()
