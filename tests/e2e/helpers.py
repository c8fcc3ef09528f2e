"""Small HTTP helpers for end-to-end tests (real server or TestClient, same calls)."""

from __future__ import annotations

import time
from typing import Any, Protocol


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
