"""Each role against each endpoint, collection scopes, key lifecycle and rate limits, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings

ROOT_KEY = "root-key-for-tests"


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("acl") / "data",
        llm_backend="none",
        api_key=ROOT_KEY,
        rate_limit_query="1000/minute",
        _env_file=None,
    )
    with TestClient(create_app(settings)) as client:
        root = {"Authorization": f"Bearer {ROOT_KEY}"}
        for name in ("alpha", "beta"):
            assert client.post("/v1/collections", json={"name": name}, headers=root).status_code == 201
        yield client


def mint(client: TestClient, role: str, collections: list[str] | None = None) -> str:
    response = client.post(
        "/v1/admin/keys",
        json={"name": f"{role}-key", "role": role, "collections": collections},
        headers={"Authorization": f"Bearer {ROOT_KEY}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


# (method, path, json body or upload, expected status per role: admin, writer, reader, reader scoped to beta)
ENDPOINTS = [
    ("GET", "/v1/collections", None, (200, 200, 200, 200)),
    ("POST", "/v1/collections", {"name": "gamma-{role}"}, (201, 403, 403, 403)),
    ("POST", "/v1/collections/alpha/documents", "upload", (202, 202, 403, 403)),
    ("GET", "/v1/collections/alpha/documents", None, (200, 200, 200, 403)),
    ("POST", "/v1/collections/alpha/query", {"query": "hello", "generate": False}, (200, 200, 200, 403)),
    ("POST", "/v1/collections/beta/query", {"query": "hello", "generate": False}, (200, 200, 200, 200)),
    ("GET", "/v1/admin/keys", None, (200, 403, 403, 403)),
    ("POST", "/v1/admin/collections/alpha/reindex", {}, (202, 403, 403, 403)),
    ("DELETE", "/v1/collections/gamma-admin", None, (204, 403, 403, 403)),
]
ROLES = ("admin", "writer", "reader", "scoped")


@pytest.mark.parametrize("role_index, role", list(enumerate(ROLES)))
def test_role_table(app_client: TestClient, role_index: int, role: str) -> None:
    key = mint(app_client, "reader", ["beta"]) if role == "scoped" else mint(app_client, role)
    headers = {"Authorization": f"Bearer {key}"}
    for method, path, body, expected in ENDPOINTS:
        if body == "upload":
            response = app_client.post(
                path, files={"file": (f"{role}.txt", f"Notes written by the {role} key.".encode())}, headers=headers
            )
        elif isinstance(body, dict):
            payload = {k: v.format(role=role) if isinstance(v, str) else v for k, v in body.items()}
            response = app_client.request(method, path, json=payload, headers=headers)
        else:
            response = app_client.request(method, path, headers=headers)
        assert response.status_code == expected[role_index], (role, method, path, response.text)


def test_scoped_key_sees_only_its_collections(app_client: TestClient) -> None:
    key = mint(app_client, "reader", ["beta"])
    names = [c["name"] for c in app_client.get("/v1/collections", headers={"Authorization": f"Bearer {key}"}).json()]
    assert names == ["beta"]


def test_missing_invalid_and_revoked_keys_get_401(app_client: TestClient) -> None:
    assert app_client.get("/v1/collections").status_code == 401
    assert app_client.get("/v1/collections", headers={"Authorization": "Bearer nope"}).status_code == 401
    created = app_client.post(
        "/v1/admin/keys",
        json={"name": "temp", "role": "reader"},
        headers={"Authorization": f"Bearer {ROOT_KEY}"},
    ).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert app_client.get("/v1/collections", headers=headers).status_code == 200
    revoked = app_client.delete(f"/v1/admin/keys/{created['id']}", headers={"Authorization": f"Bearer {ROOT_KEY}"})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert app_client.get("/v1/collections", headers=headers).status_code == 401


def test_keys_are_stored_hashed_and_listed_without_secret(app_client: TestClient) -> None:
    key = mint(app_client, "writer")
    listed = app_client.get("/v1/admin/keys", headers={"Authorization": f"Bearer {ROOT_KEY}"}).json()
    assert all("key" not in k for k in listed)
    assert any(key.startswith(k["prefix"]) for k in listed)
    db = app_client.app.state.services.db  # type: ignore[attr-defined]
    from sqlalchemy import text

    with db.session() as session:
        stored = [row[0] for row in session.execute(text("SELECT key_hash FROM api_keys"))]
    assert key not in stored and all(len(h) == 64 for h in stored)


def test_rate_limit_returns_429_with_retry_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path / "data", llm_backend="none", api_key=None, rate_limit_query="3/minute", _env_file=None
    )
    with TestClient(create_app(settings)) as client:
        client.post("/v1/collections", json={"name": "limited"})
        codes = [
            client.post("/v1/collections/limited/query", json={"query": "hi", "generate": False}).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        blocked = client.post("/v1/collections/limited/query", json={"query": "hi", "generate": False})
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
        assert "Rate limit" in blocked.json()["detail"]


def test_admin_query_log_filters(app_client: TestClient) -> None:
    root = {"Authorization": f"Bearer {ROOT_KEY}"}
    for q in ("first question", "second question"):
        app_client.post("/v1/collections/beta/query", json={"query": q, "generate": False}, headers=root)
    page = app_client.get("/v1/admin/queries", params={"collection": "beta", "limit": 1}, headers=root).json()
    assert page["total"] >= 2 and len(page["items"]) == 1
    assert page["items"][0]["query"] == "second question"  # newest first
    assert app_client.get("/v1/admin/queries", params={"errors": True}, headers=root).json()["total"] == 0
    slow = app_client.get("/v1/admin/queries", params={"min_latency_ms": 10**9}, headers=root).json()
    assert slow["total"] == 0
    reader = mint(app_client, "reader")
    response = app_client.get("/v1/admin/queries", headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 403


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_empty_scope_is_refused_never_all(app_client: TestClient) -> None:
    response = app_client.post(
        "/v1/admin/keys", json={"name": "empty", "role": "admin", "collections": []}, headers=auth(ROOT_KEY)
    )
    assert response.status_code == 422, response.text


def test_empty_scope_in_core_is_refused() -> None:
    from core.errors import BadInput
    from core.keys import create_key

    with pytest.raises(BadInput):
        create_key(None, "empty", "reader", [])  # type: ignore[arg-type] - refused before the database


def test_scoped_admin_creates_only_collections_in_its_scope(app_client: TestClient) -> None:
    key = mint(app_client, "admin", ["beta", "scoped-new"])
    outside = app_client.post("/v1/collections", json={"name": "outside-scope"}, headers=auth(key))
    assert outside.status_code == 403, outside.text
    inside = app_client.post("/v1/collections", json={"name": "scoped-new"}, headers=auth(key))
    assert inside.status_code == 201, inside.text


def test_scoped_key_cannot_tell_foreign_ids_from_missing_ones(app_client: TestClient) -> None:
    root = auth(ROOT_KEY)
    uploaded = app_client.post(
        "/v1/collections/alpha/documents", files={"file": ("secret.txt", b"Alpha only secret notes.")}, headers=root
    )
    document_id = uploaded.json()["id"]
    asked = app_client.post("/v1/collections/alpha/query", json={"query": "secret", "generate": False}, headers=root)
    query_id = asked.json()["query_id"]
    job = app_client.post("/v1/admin/collections/alpha/reindex", json={}, headers=root).json()["id"]
    scoped_admin = auth(mint(app_client, "admin", ["beta"]))
    scoped_writer = auth(mint(app_client, "writer", ["beta"]))
    for path, headers in (
        (f"/v1/documents/{document_id}", scoped_admin),
        (f"/v1/queries/{query_id}", scoped_admin),
        (f"/v1/admin/reindex/{job}", scoped_admin),
    ):
        foreign = app_client.get(path, headers=headers)
        missing = app_client.get(path.rsplit("/", 1)[0] + "/0000000000000000", headers=headers)
        assert foreign.status_code == missing.status_code == 404, (path, foreign.text, missing.text)
    deleted = app_client.delete(f"/v1/documents/{document_id}", headers=scoped_writer)
    assert deleted.status_code == 404, deleted.text
    assert app_client.get(f"/v1/documents/{document_id}", headers=root).status_code == 200
    assert app_client.get(f"/v1/queries/{query_id}", headers=root).status_code == 200


def test_a_role_too_low_is_403_whatever_the_id(app_client: TestClient) -> None:
    reader = auth(mint(app_client, "reader"))
    assert app_client.get("/v1/queries/0000000000000000", headers=reader).status_code == 403
    assert app_client.delete("/v1/documents/0000000000000000", headers=reader).status_code == 403


def test_open_probes_show_no_details_without_an_admin_key(app_client: TestClient) -> None:
    health = app_client.get("/health")
    assert health.status_code == 200
    assert app_client.app.state.warmup.done.wait(120)  # type: ignore[attr-defined]
    anonymous = app_client.get("/ready")
    assert anonymous.status_code == 200
    assert all(set(c) == {"status"} for c in anonymous.json()["components"].values()), anonymous.text
    data_dir = str(app_client.app.state.services.settings.data_dir)  # type: ignore[attr-defined]
    assert data_dir not in anonymous.text and data_dir not in health.text
    reader = app_client.get("/ready", headers=auth(mint(app_client, "reader")))
    assert all(set(c) == {"status"} for c in reader.json()["components"].values())
    admin = app_client.get("/ready", headers=auth(ROOT_KEY)).json()
    assert all("detail" in c for c in admin["components"].values())


def test_metrics_need_a_key(app_client: TestClient) -> None:
    assert app_client.get("/metrics").status_code == 401
    assert app_client.get("/metrics", headers=auth(mint(app_client, "reader"))).status_code == 200
