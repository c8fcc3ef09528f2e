"""Every operation in the OpenAPI document x every kind of key: who may call it, and what the others get.

The operations come from the app's own OpenAPI document and each must have a rule in ``RULES``: a new
endpoint without one fails ``test_every_operation_has_a_rule``, so none can skip the matrix. The status
an allowed caller gets is the 2xx the document declares for that operation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import wait_for_status

ROOT_KEY = "matrix-root-key"
ROOT = {"Authorization": f"Bearer {ROOT_KEY}"}
ROLE_RANK = {"reader": 0, "writer": 1, "admin": 2}


@dataclass(frozen=True)
class Caller:
    name: str
    role: str | None  # None: no valid key
    scoped: bool  # limited to collection "beta" (the resources live in "alpha")
    header: str | None = None


@dataclass(frozen=True)
class Rule:
    """``role``: the least role; ``scope``: how a key scoped to another collection is answered.

    path: the collection is named in the path, 403 | record: addressed by id, 404 as if missing |
    unscoped: a platform-wide act, 403 | own: the caller's own data, allowed | owner: a conversation,
    visible to its owner and unscoped admins, 404 for the rest | open: no key needed."""

    role: str | None
    scope: str


RULES: dict[str, Rule] = {
    "GET /health": Rule(None, "open"),
    "GET /ready": Rule(None, "open"),
    "POST /v1/collections": Rule("admin", "path"),
    "GET /v1/collections": Rule("reader", "own"),
    "DELETE /v1/collections/{name}": Rule("admin", "path"),
    "POST /v1/collections/{name}/documents": Rule("writer", "path"),
    "POST /v1/collections/{name}/documents/batch": Rule("writer", "path"),
    "GET /v1/collections/{name}/documents": Rule("reader", "path"),
    "GET /v1/documents/{document_id}": Rule("reader", "record"),
    "DELETE /v1/documents/{document_id}": Rule("writer", "record"),
    "GET /v1/documents/{document_id}/original": Rule("reader", "record"),
    "POST /v1/documents/{document_id}/retry": Rule("writer", "record"),
    "POST /v1/collections/{name}/query": Rule("reader", "path"),
    "GET /v1/queries/{query_id}": Rule("admin", "record"),
    "POST /v1/collections/{name}/conversations": Rule("reader", "path"),
    "GET /v1/conversations/{conversation_id}": Rule("reader", "owner"),
    "DELETE /v1/conversations/{conversation_id}": Rule("reader", "owner"),
    "POST /v1/conversations/{conversation_id}/messages": Rule("reader", "owner"),
    "GET /v1/memory": Rule("reader", "own"),
    "DELETE /v1/memory": Rule("reader", "own"),
    "PUT /v1/memory/{key}": Rule("reader", "own"),
    "DELETE /v1/memory/{key}": Rule("reader", "own"),
    "POST /v1/admin/keys": Rule("admin", "unscoped"),
    "GET /v1/admin/keys": Rule("admin", "unscoped"),
    "DELETE /v1/admin/keys/{key_id}": Rule("admin", "unscoped"),
    "DELETE /v1/admin/keys/{key_id}/data": Rule("admin", "unscoped"),
    "POST /v1/admin/collections/{name}/reindex": Rule("admin", "path"),
    "GET /v1/admin/reindex/{job_id}": Rule("admin", "record"),
    "GET /v1/admin/queries": Rule("admin", "unscoped"),
    "GET /v1/models": Rule("reader", "own"),
    "GET /v1/models/{model}": Rule("reader", "path"),
    "POST /v1/chat/completions": Rule("reader", "path"),  # the collection is the body's "model"
}
OPENAI_SHAPED = {"GET /v1/models", "GET /v1/models/{model}", "POST /v1/chat/completions"}


def expected(rule: Rule, caller: Caller, success: int) -> int:
    if rule.scope == "open":
        return success
    if caller.role is None:
        return 401
    if ROLE_RANK[caller.role] < ROLE_RANK[str(rule.role)]:
        return 403
    if rule.scope == "owner":
        return success if caller.role == "admin" and not caller.scoped else 404
    if caller.scoped and rule.scope in ("path", "unscoped"):
        return 403
    if caller.scoped and rule.scope == "record":
        return 404
    return success


class World:
    """Fresh resources in collection "alpha", made with the root key, for each request that needs one."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.counter = itertools.count()
        self.query_id = client.post(
            "/v1/collections/alpha/query", json={"query": "x", "generate": False}, headers=ROOT
        ).json()["query_id"]
        self.job_id = client.post("/v1/admin/collections/alpha/reindex", json={}, headers=ROOT).json()["id"]

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def collection(self) -> str:
        name = self.fresh("tmp")
        assert self.client.post("/v1/collections", json={"name": name}, headers=ROOT).status_code == 201
        return name

    def document(self) -> str:
        data = f"Matrix document {next(self.counter)}.".encode()
        return self.client.post(
            "/v1/collections/alpha/documents", files={"file": ("m.txt", data)}, headers=ROOT
        ).json()["id"]

    def failed_document(self) -> str:
        """A document that ended ``failed`` (bytes that claim to be a PDF and are not), for retries."""
        data = f"%PDF-1.7\nnot a PDF body {next(self.counter)}".encode()
        document_id = self.client.post(
            "/v1/collections/alpha/documents", files={"file": ("broken.pdf", data)}, headers=ROOT
        ).json()["id"]
        return wait_for_status(self.client, document_id, headers=ROOT)["id"]

    def conversation(self) -> str:
        return self.client.post("/v1/collections/alpha/conversations", headers=ROOT).json()["id"]

    def key_id(self) -> str:
        body = {"name": self.fresh("k"), "role": "reader"}
        return self.client.post("/v1/admin/keys", json=body, headers=ROOT).json()["id"]


def request_for(label: str, world: World, headers: dict[str, str]) -> dict[str, Any]:
    """The path (placeholders filled with fresh resources) and body of one call of ``label``."""
    method, template = label.split(" ", 1)
    values: dict[str, Callable[[], str]] = {
        "name": (
            world.collection
            if label in ("DELETE /v1/collections/{name}", "POST /v1/admin/collections/{name}/reindex")
            else lambda: "alpha"
        ),
        "document_id": world.failed_document if label == "POST /v1/documents/{document_id}/retry" else world.document,
        "query_id": lambda: world.query_id,
        "job_id": lambda: world.job_id,
        "conversation_id": world.conversation,
        "key_id": world.key_id,
        "key": lambda: "language",
        "model": lambda: "alpha",
    }
    path = template
    for placeholder, make in values.items():
        if "{" + placeholder + "}" in path:
            path = path.replace("{" + placeholder + "}", make())
    kwargs: dict[str, Any] = {"method": method, "url": path, "headers": headers}
    upload = ("m.txt", f"Uploaded by the matrix {next(world.counter)}.".encode())
    bodies: dict[str, dict[str, Any]] = {
        "POST /v1/collections": {"json": {"name": world.fresh("new")}},
        "POST /v1/collections/{name}/documents": {"files": {"file": upload}},
        "POST /v1/collections/{name}/documents/batch": {"files": [("files", upload)]},
        "POST /v1/collections/{name}/query": {"json": {"query": "matrix", "generate": False}},
        "POST /v1/conversations/{conversation_id}/messages": {"json": {"message": "matrix", "generate": False}},
        "PUT /v1/memory/{key}": {"json": {"value": "English"}},
        "POST /v1/admin/keys": {"json": {"name": "made-by-matrix", "role": "reader"}},
        "POST /v1/admin/collections/{name}/reindex": {"json": {}},
        "POST /v1/chat/completions": {"json": {"model": "alpha", "messages": [{"role": "user", "content": "matrix"}]}},
    }
    kwargs.update(bodies.get(label, {}))
    if label == "DELETE /v1/memory/{key}" and "Authorization" in headers:
        world.client.put("/v1/memory/language", json={"value": "English"}, headers=headers)
    return kwargs


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, World, list[Caller]]]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("matrix") / "data",
        llm_backend="none",
        api_key=ROOT_KEY,
        rate_limit_query="100000/minute",
        rate_limit_upload="100000/minute",
        _env_file=None,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for name in ("alpha", "beta"):
            assert client.post("/v1/collections", json={"name": name}, headers=ROOT).status_code == 201
        callers = [
            Caller("root", "admin", False, ROOT_KEY),
            Caller("no key", None, False),
            Caller("bad key", None, False, "rag_not_a_key"),
        ]
        for role, scoped in itertools.product(ROLE_RANK, (False, True)):
            body = {"name": f"{role}-{scoped}", "role": role, "collections": ["beta"] if scoped else None}
            key = client.post("/v1/admin/keys", json=body, headers=ROOT).json()["key"]
            callers.append(Caller(f"{role}{'@beta' if scoped else ''}", role, scoped, key))
        yield client, World(client), callers


def operations(client: TestClient) -> dict[str, dict[str, Any]]:
    document = client.app.openapi()  # type: ignore[attr-defined]
    return {
        f"{method.upper()} {path}": spec for path, item in document["paths"].items() for method, spec in item.items()
    }


def test_every_operation_has_a_rule(served: tuple[TestClient, World, list[Caller]]) -> None:
    client, _, _ = served
    documented = set(operations(client))
    assert documented - set(RULES) == set(), "add a rule to RULES for each new operation"
    assert set(RULES) - documented == set(), "a rule names an operation the API no longer has"


LABELS = sorted(RULES)


@pytest.mark.parametrize("label", LABELS)
def test_each_kind_of_key_gets_what_the_rule_says(served: tuple[TestClient, World, list[Caller]], label: str) -> None:
    client, world, callers = served
    spec = operations(client)[label]
    success = int(next(code for code in spec["responses"] if code.startswith("2")))
    wrong = []
    for caller in callers:
        headers = {"Authorization": f"Bearer {caller.header}"} if caller.header else {}
        response = client.request(**request_for(label, world, headers))
        want = expected(RULES[label], caller, success)
        if response.status_code != want:
            wrong.append((caller.name, want, response.status_code, response.text[:200]))
        elif want >= 400:
            body = response.json()
            assert isinstance(body["error"]["message"] if label in OPENAI_SHAPED else body["detail"], str)
            assert str(response.status_code) in spec["responses"], (label, response.status_code)
    assert wrong == [], wrong
