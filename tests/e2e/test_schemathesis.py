"""Property-based requests generated from the OpenAPI schema, against the real app, with an admin key and
with a reader key: no input may produce a server error, and every answer must match the document (its
status code, content type and body schema)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import database

ROOT_KEY = "schemathesis-root-key"


def settings_for(database_url: str | None) -> Settings:
    return Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="schemathesis-")) / "data",
        llm_backend="none",
        api_key=ROOT_KEY,
        database_url=database_url,
        rate_limit_query="100000/minute",
        rate_limit_upload="100000/minute",
        _env_file=None,
    )


SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings_for(None)))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """One app per database for the module (the embedded stores lock their folders to one opener);
    PostgreSQL refuses what SQLite stores (NUL in text), so both are attacked."""
    with database(request.param) as url, TestClient(create_app(settings_for(url)), raise_server_exceptions=False) as c:
        root = {"Authorization": f"Bearer {ROOT_KEY}"}
        assert c.app.state.warmup.done.wait(120)  # type: ignore[attr-defined]  # else /ready is a 503 by design
        c.post("/v1/collections", json={"name": "docs"}, headers=root)
        c.post("/v1/collections/docs/documents", files={"file": ("a.txt", b"Some text to find.")}, headers=root)
        reader = c.post("/v1/admin/keys", json={"name": "st-reader", "role": "reader"}, headers=root).json()["key"]
        yield c, {"admin": ROOT_KEY, "reader": reader}


@pytest.mark.parametrize("role", ["admin", "reader"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_server_error_and_no_schema_violation(served, operation, role: str) -> None:  # type: ignore[no-untyped-def]
    client, keys = served
    headers = {"Authorization": f"Bearer {keys[role]}"}

    @given(case=operation.as_strategy())
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:  # type: ignore[no-untyped-def]
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
        request = client.build_request(**kwargs)
        request.read()  # multipart bodies stream; the checks read the request back for their reports
        response = client.send(request)
        case.validate_response(response, checks=CHECKS, headers=headers)

    check()
