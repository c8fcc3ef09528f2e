"""Hostile requests (not files): every one gets a 4xx with the documented body, never a 5xx, and no stored
row can break a later read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from core.models import Collection, Document
from tests.e2e.helpers import database, wait_for_status

SURROGATE = '{"x": "\\ud800"}'
DEEP = "[" * 1000 + "]" * 1000
BAD_METADATA = {
    "lone surrogate": SURROGATE,
    "lone low surrogate": '{"x": "\\udfff tail"}',
    "surrogate in a key": '{"\\udbff": 1}',
    "surrogate in a tag": '{"tags": ["ok", "\\ud83d"]}',
    "nul character": '{"x": "a\\u0000b"}',
    "5000-digit integer": '{"n": ' + "9" * 5000 + "}",
    "integer over 64 bits": '{"n": 18446744073709551616}',
    "negative integer over 64 bits": '{"n": -9223372036854775809}',
    "NaN": '{"n": NaN}',
    "Infinity": '{"n": -Infinity}',
    "float overflow": '{"n": 1e999}',
    "nested 1000 deep": '{"deep": ' + DEEP + "}",
    "nested objects 200 deep": '{"a": ' * 200 + "1" + "}" * 200,
    "one megabyte": '{"x": "' + "a" * 1_000_000 + '"}',
}
BAD_NAMES = [
    "docs\n",
    "docs\r\n",
    "docs\r",
    "\ndocs",
    "docs\t",
    "docs ",
    " docs",
    "docs\x00",
    "docs\x0b",
    "docs\u2028",
    "docs\u00a0",
    "ｄｏｃｓ",
    "dócs",
    "docs\ud800",
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with database(request.param) as url:
        settings = Settings(
            data_dir=tmp_path_factory.mktemp("hostile-req") / "data",
            llm_backend="none",
            database_url=url,
            _env_file=None,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as c:
            assert c.post("/v1/collections", json={"name": "h"}).status_code == 201
            yield c


def send_json(client: TestClient, method: str, path: str, body: Any) -> Any:
    """JSON as a client in another language sends it: lone surrogates as \\u escapes (valid JSON text)."""
    data = json.dumps(body).encode()
    return client.request(method, path, content=data, headers={"Content-Type": "application/json"})


def assert_error_shape(response: Any, status: int) -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"], body


@pytest.mark.parametrize("case", list(BAD_METADATA), ids=list(BAD_METADATA))
def test_bad_metadata_is_refused_and_nothing_is_stored(client: TestClient, case: str) -> None:
    data = f"Metadata case {case}".encode()
    response = client.post(
        "/v1/collections/h/documents", files={"file": ("m.txt", data)}, data={"metadata": BAD_METADATA[case]}
    )
    assert_error_shape(response, 422)
    listed = client.get("/v1/collections/h/documents", params={"limit": 500})
    assert listed.status_code == 200, listed.text[:300]
    assert all(d["filename"] != "m.txt" for d in listed.json()["items"])


def test_metadata_within_limits_round_trips(client: TestClient) -> None:
    metadata = '{"tags": ["a"], "n": 9007199254740991, "f": 1.5, "nested": {"l": [1, [2, [3]]]}, "s": "é 😀"}'
    response = client.post(
        "/v1/collections/h/documents", files={"file": ("ok.txt", b"Fine metadata here.")}, data={"metadata": metadata}
    )
    assert response.status_code == 202, response.text
    assert response.json()["metadata"]["s"] == "é 😀"
    assert response.json()["metadata"]["n"] == 9007199254740991


def test_a_stored_row_with_broken_text_cannot_break_reads(client: TestClient) -> None:
    """Rows written before validation existed (or by another writer) are repaired on the way out."""
    response = client.post("/v1/collections/h/documents", files={"file": ("old.txt", b"An old row with bad metadata.")})
    document_id = response.json()["id"]
    db = client.app.state.services.db  # type: ignore[attr-defined]
    with db.session() as session:
        session.get(Document, document_id).metadata_ = {"x": "\ud800", "tags": ["\udfff"]}
    assert client.get("/v1/collections/h/documents").status_code == 200
    read = client.get(f"/v1/documents/{document_id}")
    assert read.status_code == 200, read.text[:300]
    assert read.json()["metadata"]["x"] == "\ufffd"


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_collection_names_are_matched_whole(client: TestClient, name: str) -> None:
    response = send_json(client, "POST", "/v1/collections", {"name": name})
    assert_error_shape(response, 422)
    assert all(c["name"] == c["name"].strip() for c in client.get("/v1/collections").json())


def test_a_collection_stored_with_a_bad_name_fails_its_documents_and_can_be_deleted(client: TestClient) -> None:
    """A row from before full-match validation: its documents end ``failed`` (never ``processing``
    forever) and the collection can still be deleted."""
    db = client.app.state.services.db  # type: ignore[attr-defined]
    with db.session() as session:
        session.add(Collection(name="legacy\n", options={}))
    uploaded = client.post("/v1/collections/legacy%0A/documents", files={"file": ("l.txt", b"Legacy text here.")})
    assert uploaded.status_code == 202, uploaded.text
    assert wait_for_status(client, uploaded.json()["id"], timeout=120)["status"] == "failed"
    assert client.delete("/v1/collections/legacy%0A").status_code == 204
    assert client.get("/v1/collections/legacy%0A/documents").status_code == 404


@pytest.mark.parametrize("key", ["language%0A", "lang%20uage", "language%09", "%C3%A9", "%00"])
def test_memory_keys_are_matched_whole(client: TestClient, key: str) -> None:
    response = client.put(f"/v1/memory/{key}", json={"value": "English"})
    assert_error_shape(response, 422)


@pytest.mark.parametrize(
    "filters",
    [
        {"uploaded_after": "0001-01-01T00:00:00"},
        {"uploaded_before": "9999-12-31T23:59:59"},
        {"uploaded_after": "0001-01-01T00:00:00Z", "uploaded_before": "9999-12-31T23:59:59.999999"},
        {"uploaded_after": "2024-01-01"},
    ],
)
def test_extreme_and_naive_datetimes_in_filters_are_served(client: TestClient, filters: dict) -> None:
    response = client.post("/v1/collections/h/query", json={"query": "metadata", "generate": False, "filters": filters})
    assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "10000-01-01T00:00:00", "0000-01-01"]
)
def test_datetimes_that_leave_the_calendar_are_422(client: TestClient, value: str) -> None:
    response = client.post(
        "/v1/collections/h/query", json={"query": "metadata", "generate": False, "filters": {"uploaded_after": value}}
    )
    assert_error_shape(response, 422)


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00", "9999-12-31T23:59:59", "0001-01-01T00:00:00+14:00"])
def test_query_log_time_bounds_never_5xx(client: TestClient, since: str) -> None:
    response = client.get("/v1/admin/queries", params={"since": since, "until": since})
    assert response.status_code in (200, 422), response.text[:300]


@pytest.mark.parametrize("offset", ["99999999999999999999", str(2**63), str(2**31)])
@pytest.mark.parametrize("path", ["/v1/collections/h/documents", "/v1/admin/queries"])
def test_huge_offsets_are_422_or_empty(client: TestClient, path: str, offset: str) -> None:
    response = client.get(path, params={"offset": offset})
    if response.status_code == 200:
        assert response.json()["items"] == []
    else:
        assert_error_shape(response, 422)


@pytest.mark.parametrize("value", ["inf", "nan", "1e999", "-0"])
def test_non_finite_latency_filters_never_5xx(client: TestClient, value: str) -> None:
    response = client.get("/v1/admin/queries", params={"min_latency_ms": value})
    assert response.status_code in (200, 422), response.text[:300]


@pytest.mark.parametrize("text", ["\ud800", "a\x00b", "\udfff question", "\x00"])
def test_invalid_unicode_in_text_fields_is_422(client: TestClient, text: str) -> None:
    query = send_json(client, "POST", "/v1/collections/h/query", {"query": text, "generate": False})
    assert_error_shape(query, 422)
    memory = send_json(client, "PUT", "/v1/memory/language", {"value": text})
    assert_error_shape(memory, 422)
    conversation = client.post("/v1/collections/h/conversations").json()["id"]
    message = send_json(client, "POST", f"/v1/conversations/{conversation}/messages", {"message": text})
    assert_error_shape(message, 422)
    key = send_json(client, "POST", "/v1/admin/keys", {"name": text, "role": "reader"})
    assert_error_shape(key, 422)
    filtered = send_json(
        client, "POST", "/v1/collections/h/query", {"query": "q", "generate": False, "filters": {"tags": [text]}}
    )
    assert_error_shape(filtered, 422)


def test_a_surrogate_in_a_json_key_is_a_422_not_a_broken_error_body(client: TestClient) -> None:
    response = send_json(client, "POST", "/v1/collections", {"name": "ok", "\ud800": 1})
    assert_error_shape(response, 422)


def test_datetimes_carry_a_timezone_after_a_round_trip_through_sql(client: TestClient) -> None:
    uploaded = client.post("/v1/collections/h/documents", files={"file": ("tz.txt", b"Timezone check text.")})
    listed = client.get("/v1/collections/h/documents").json()["items"]
    read = client.get(f"/v1/documents/{uploaded.json()['id']}").json()
    stamps = [
        read["created_at"],
        *(d["created_at"] for d in listed),
        *(c["created_at"] for c in client.get("/v1/collections").json()),
    ]
    assert all(s.endswith(("Z", "+00:00")) for s in stamps), stamps


def test_unknown_routes_and_methods_use_the_same_body(client: TestClient) -> None:
    assert_error_shape(client.get("/v1/no-such-thing"), 404)
    assert_error_shape(client.put("/v1/collections"), 405)
    assert_error_shape(client.post("/v1/collections", json={"nope": 1}), 422)
    assert isinstance(client.post("/v1/collections", json={"nope": 1}).json()["errors"], list)


@pytest.mark.parametrize(
    "method, url",
    [
        ("GET", "/v1/documents/%00"),
        ("DELETE", "/v1/documents/a%00b"),
        ("GET", "/v1/queries/%00"),
        ("GET", "/v1/conversations/%00"),
        ("GET", "/v1/admin/reindex/%00"),
        ("GET", "/v1/admin/queries?collection=%00"),
        ("GET", "/v1/admin/queries?backend=x%00"),
        ("DELETE", "/v1/collections/%00"),
        ("DELETE", "/v1/admin/keys/%00"),
        ("POST", "/v1/collections/%00/conversations"),
        ("GET", "/v1/collections/h/documents?status=%00"),
    ],
)
def test_a_nul_in_a_path_or_query_is_422(client: TestClient, method: str, url: str) -> None:
    assert_error_shape(client.request(method, url), 422)


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "x", "top_k": ' + b"9" * 5000 + b"}",
        b'{"query": "x", "filters": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"query": "\xff\xfe"}',
    ],
    ids=["5000-digit integer", "nested 100000 deep", "not UTF-8"],
)
def test_json_bodies_the_parser_refuses_are_a_documented_4xx(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/collections/h/query", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text[:300]
    assert_error_shape(response, response.status_code)
    operation = client.app.openapi()["paths"]["/v1/collections/{name}/query"]["post"]  # type: ignore[attr-defined]
    assert str(response.status_code) in operation["responses"]
