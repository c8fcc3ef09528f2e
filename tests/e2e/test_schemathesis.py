"""Property-based requests generated from the OpenAPI schema: no input may produce a server error."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from api.app import create_app
from core.config import Settings

APP = create_app(
    Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="schemathesis-")) / "data",
        llm_backend="none",
        rate_limit_query="100000/minute",
        rate_limit_upload="100000/minute",
        _env_file=None,
    )
)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(APP, raise_server_exceptions=False) as c:
        c.post("/v1/collections", json={"name": "docs"})
        c.post("/v1/collections/docs/documents", files={"file": ("a.txt", b"Some text to find.")})
        yield c


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_server_error(client: TestClient, operation) -> None:  # type: ignore[no-untyped-def]
    @given(case=operation.as_strategy())
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:  # type: ignore[no-untyped-def]
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        response = client.request(**kwargs)
        assert response.status_code < 500, (
            kwargs["method"],
            kwargs["url"],
            response.status_code,
            response.text[:300],
        )

    check()
