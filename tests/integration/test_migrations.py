"""The migrations build exactly the schema the models describe, on PostgreSQL and on SQLite; only the embedded
SQLite file creates its own tables, and a server database that is not migrated refuses to start."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from core.config import Settings
from core.db import Database, make_engine
from core.models import Base
from core.schema import SchemaNotMigrated, current_revision, head_revision, upgrade_database
from runtime.services import Services
from tests.services import missing_service

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url() -> Iterator[str]:
    try:
        psycopg.connect(PG_ADMIN, connect_timeout=2).close()
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL not reachable on 127.0.0.1:5432 ({exc})")
    name = f"rag_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rag.db'}"


def differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


@pytest.mark.parametrize("url_fixture", ["pg_url", "sqlite_url"])
def test_upgrade_head_matches_the_models(url_fixture: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(url_fixture)
    assert current_revision(url) is None
    assert upgrade_database(url) is None
    engine = make_engine(url)
    try:
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        assert differences(engine) == []
    finally:
        engine.dispose()
    assert current_revision(url) is not None
    upgrade_database(url)  # a second run is a no-op


def test_a_database_created_without_migrations_is_adopted(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    database.create_schema()
    database.dispose()
    adopted = upgrade_database(sqlite_url)
    assert adopted is not None
    assert current_revision(sqlite_url) == adopted


def test_a_server_database_without_migrations_refuses_to_start_and_says_what_to_run(
    pg_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, llm_backend="none", _env_file=None)
    services = Services(settings)
    with pytest.raises(SchemaNotMigrated) as refused:
        services.db  # noqa: B018 - building the database prepares the schema
    assert str(refused.value) == (
        f"The database at RAG_DATABASE_URL is at schema revision none (no tables yet); this version needs "
        f"{head_revision()}. Run `ragctl db upgrade` with the same RAG_DATABASE_URL (or set "
        "RAG_DB_MIGRATE_ON_START=true to migrate at start), then start again."
    )
    engine = make_engine(pg_url)
    try:
        assert inspect(engine).get_table_names() == []  # nothing was created behind the migrations' back
        with pytest.raises(RuntimeError, match="Only the embedded SQLite"):
            Database(pg_url).create_schema()
    finally:
        engine.dispose()
    upgrade_database(pg_url)
    migrated = Services(settings)
    try:
        assert migrated.ingest.list_collections() == []
    finally:
        migrated.close()


def test_a_server_database_is_migrated_at_start_when_configured(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=pg_url, db_migrate_on_start=True, llm_backend="none", _env_file=None
    )
    services = Services(settings)
    try:
        services.ingest.create_collection("migrated")
        assert [c.name for c, _ in services.ingest.list_collections()] == ["migrated"]
    finally:
        services.close()
    assert current_revision(pg_url) == head_revision()
    engine = make_engine(pg_url)
    try:
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_the_embedded_sqlite_file_creates_its_own_tables(tmp_path: Path) -> None:
    services = Services(Settings(data_dir=tmp_path / "data", llm_backend="none", _env_file=None))
    try:
        services.ingest.create_collection("local")
        assert differences(services.db.engine) == []
        assert current_revision(services.settings.sql_url) is None  # create_all, not the migrations
    finally:
        services.close()
