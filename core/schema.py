"""The SQL schema's life cycle: the embedded SQLite file creates its own tables; any other database (PostgreSQL)
changes only through the Alembic migrations in ``migrations/``.

``create_all`` cannot alter a table that exists, so on a server database it would leave an older schema in
place beside newer code, and two processes starting together would race on the DDL. A server database is
migrated by ``ragctl db upgrade`` (compose runs it as the one-shot ``migrate`` service), or at start with
``RAG_DB_MIGRATE_ON_START``; otherwise a process refuses to start on a schema that is not at the latest
revision, and says what to run.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from core.db import Database, make_engine
from core.models import Base

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
VERSION_TABLE = "alembic_version"


class SchemaNotMigrated(RuntimeError):
    """The server database is not at the revision this code needs."""


class SchemaMismatch(ValueError):
    """An unversioned database whose tables differ from the models: which revision it is at is unknown."""


def alembic_config(connection: Connection, configure_logger: bool = True) -> Config:
    """``configure_logger``: let alembic.ini's logging section report each step (the CLI); a server
    process that migrates at start keeps its own logging."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["connection"] = connection
    config.attributes["configure_logger"] = configure_logger
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_current_head()


def unversioned_differences(connection: Connection) -> list[object] | None:
    """None when the database is versioned or empty; else how an unversioned schema differs from head."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or not tables & set(Base.metadata.tables):
        return None
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def upgrade(engine: Engine, revision: str = "head", configure_logger: bool = True) -> str | None:
    """Migrate to ``revision``; returns the revision an unversioned database was adopted at.

    A database whose tables were created from the models without migrations (by an earlier version's
    ``create_all``) has no version row: it is adopted (stamped at head) when its schema matches the models
    exactly, and refused with the differences otherwise, rather than guessing which revision it is at.
    """
    with engine.begin() as connection:
        config = alembic_config(connection, configure_logger)
        differences = unversioned_differences(connection)
        adopted = None
        if differences is not None:
            if differences:
                raise SchemaMismatch(
                    "the database has tables but no migration history, and they differ from the models: "
                    f"{differences}; migrate it by hand or start from an empty database"
                )
            adopted = head_revision()
            command.stamp(config, "head")
        command.upgrade(config, revision)
        return adopted


def upgrade_database(url: str, revision: str = "head") -> str | None:
    engine = make_engine(url)
    try:
        return upgrade(engine, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def prepare_schema(database: Database, migrate: bool) -> None:
    """Make the schema ready for this code, or refuse to start (see the module docstring)."""
    if database.embedded:
        database.create_schema()
        return
    if migrate:
        upgrade(database.engine, configure_logger=False)
        return
    with database.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = head_revision()
    if current != head:
        raise SchemaNotMigrated(
            f"The database at RAG_DATABASE_URL is at schema revision {current or 'none (no tables yet)'}; this "
            f"version needs {head}. Run `ragctl db upgrade` with the same RAG_DATABASE_URL (or set "
            "RAG_DB_MIGRATE_ON_START=true to migrate at start), then start again."
        )
