"""``ragctl db``: schema migrations (Alembic) for PostgreSQL and SQLite alike.

A database the app created before migrations existed (``create_all`` at start) has the tables but no
version row; ``upgrade`` adopts it (stamps head) when its schema matches the models exactly, and refuses
with the differences otherwise, rather than guess which revision it is at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from core.config import Settings
from core.db import make_engine
from core.models import Base

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
VERSION_TABLE = "alembic_version"

app = typer.Typer(help="Database schema: upgrade to the latest migration, show the current revision.")


def alembic_config(connection: Connection) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["connection"] = connection
    return config


def unversioned_differences(connection: Connection) -> list[object] | None:
    """None when the database is versioned or empty; else how an unversioned schema differs from head."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or not tables & set(Base.metadata.tables):
        return None
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def upgrade_database(url: str, revision: str = "head") -> str | None:
    """Migrate ``url`` to ``revision``; returns the revision an unversioned database was adopted at."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(connection)
            differences = unversioned_differences(connection)
            adopted = None
            if differences is not None:
                if differences:
                    raise typer.BadParameter(
                        "the database has tables but no migration history, and they differ from the models: "
                        f"{differences}; migrate it by hand or start from an empty database"
                    )
                adopted = ScriptDirectory.from_config(config).get_current_head()
                command.stamp(config, "head")
            command.upgrade(config, revision)
            return adopted
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def database_url() -> str:
    settings = Settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.sql_url


@app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest) on RAG_DATABASE_URL or the SQLite file."""
    adopted = upgrade_database(database_url(), revision)
    if adopted:
        typer.echo(f"adopted a database created without migrations at revision {adopted}")
    typer.echo(f"database at revision {current_revision(database_url())}")


@app.command()
def current() -> None:
    """Print the database's revision (``none`` when it was never migrated)."""
    typer.echo(current_revision(database_url()) or "none")
