"""``ragctl db``: schema migrations (Alembic) for PostgreSQL and SQLite alike (``core.schema``)."""

from __future__ import annotations

from typing import Annotated

import typer

from core.config import Settings
from core.schema import SchemaMismatch, current_revision, upgrade_database

app = typer.Typer(help="Database schema: upgrade to the latest migration, show the current revision.")


def database_url() -> str:
    settings = Settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.sql_url


@app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest) on RAG_DATABASE_URL or the SQLite file."""
    try:
        adopted = upgrade_database(database_url(), revision)
    except SchemaMismatch as exc:
        raise typer.BadParameter(str(exc)) from exc
    if adopted:
        typer.echo(f"adopted a database created without migrations at revision {adopted}")
    typer.echo(f"database at revision {current_revision(database_url())}")


@app.command()
def current() -> None:
    """Print the database's revision (``none`` when it was never migrated)."""
    typer.echo(current_revision(database_url()) or "none")
