"""Migrations produce exactly the models' schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select

from server import db
from server import models as m
from server.context import Repository
from server.models import Base


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _head() -> str:
    head = ScriptDirectory.from_config(db.alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_migrated_database_matches_the_models(repo: Repository) -> None:
    # the repo fixture starts from an empty database (fresh SQLite file, or every
    # PostgreSQL table dropped) and migrates it
    assert _diff(repo.engine) == []
    assert db.current_revision(repo.engine) == _head()


def test_every_model_table_exists_with_its_foreign_keys(repo: Repository) -> None:
    inspector = inspect(repo.engine)
    assert set(inspector.get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    # the cyclic foreign keys (created after the tables on PostgreSQL) are really there
    found = {(table, fk["name"]) for table in ("community", "collection", "bundle")
             for fk in inspector.get_foreign_keys(table)
             if fk["name"] and fk["name"].startswith("fk_")}
    if repo.engine.dialect.name != "sqlite":  # SQLite does not report constraint names
        assert found == {("community", "fk_community_logo"),
                         ("collection", "fk_collection_logo"),
                         ("collection", "fk_collection_template"),
                         ("bundle", "fk_bundle_primary")}
    referred = {(table, fk["referred_table"], tuple(fk["constrained_columns"]))
                for table in ("community", "collection", "bundle")
                for fk in inspector.get_foreign_keys(table)}
    assert {("community", "bitstream", ("logo_id",)),
            ("collection", "bitstream", ("logo_id",)),
            ("collection", "item", ("template_item_id",)),
            ("bundle", "bitstream", ("primary_bitstream_id",))} <= referred


def test_fresh_sqlite_file_migrates_to_the_models(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'new' / 'fresh.db'}")
    try:
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        assert _diff(engine) == []
        assert db.current_revision(engine) == _head()
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_initialise_keeps_data(repo: Repository) -> None:
    with repo.context(system=True) as ctx:
        from server.services import objects

        objects.create_community(ctx, None, "kept")
    repo.initialise()
    db.upgrade(repo.engine)
    assert _diff(repo.engine) == []
    with repo.context(write=False) as ctx:
        assert len(ctx.session.scalars(select(m.Community)).all()) == 1
        assert len(ctx.session.scalars(select(m.Site)).all()) == 1
        groups = sorted(ctx.session.scalars(select(m.Group.name)))
        assert groups == [m.ADMINISTRATOR, m.ANONYMOUS]


def test_downgrade_to_base_and_back(repo: Repository) -> None:
    from alembic import command

    cfg = db.alembic_config(repo.engine.url.render_as_string(hide_password=False))
    with repo.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "base")
    assert set(inspect(repo.engine).get_table_names()) <= {"alembic_version"}
    db.upgrade(repo.engine)
    assert _diff(repo.engine) == []
