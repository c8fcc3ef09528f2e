"""The migrations build exactly the schema the models describe, on PostgreSQL and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from cli.db_cmd import current_revision, upgrade_database
from core.db import Database, make_engine
from core.models import Base
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
