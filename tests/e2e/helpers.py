"""Small HTTP helpers for end-to-end tests (real server or TestClient, same calls)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg

from core.schema import upgrade_database
from tests.services import missing_service

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Client(Protocol):
    def get(self, url: str, **kw: Any) -> Any: ...


def wait_for_status(client: Client, document_id: str, timeout: float = 180.0, **kw: Any) -> dict[str, Any]:
    """Poll ``GET /v1/documents/{id}`` until the document leaves queued/processing."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/documents/{document_id}", **kw)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in ("indexed", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"document {document_id} still {body.get('status')} after {timeout}s")


@contextmanager
def database(kind: str) -> Iterator[str | None]:
    """SQLite (the embedded default), or a fresh PostgreSQL database, which refuses NUL in text."""
    if kind == "sqlite":
        yield None
        return
    try:
        psycopg.connect(PG_ADMIN, connect_timeout=2).close()
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL not reachable on 127.0.0.1:5432 ({exc})")
    name = f"rag_hostile_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade_database(url)  # a server database is migrated before the platform starts on it
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
