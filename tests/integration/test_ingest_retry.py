"""A document's first run writes without the pre-write delete; any later run clears what an earlier one left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from core.config import Settings
from core.ids import chunk_id
from core.models import Collection, Document, DocumentStatus
from core.types import ChunkRecord
from ingest.claims import claim, claim_queued_peers
from ingest.pipeline import index_batch, prepare
from ingest.service import Upload
from runtime.services import Services

TEXT = b"Barn owls hunt at night. Their hearing locates voles under snow."


def submit(services: Services, name: str) -> str:
    ids: list[str] = []
    services.ingest.submit("r", [Upload(name, TEXT + name.encode())], None, ids.extend)
    return ids[0]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Embedded stores in a temp dir with one collection, ``r``."""
    built = Services(Settings(data_dir=tmp_path / "d", llm_backend="none", _env_file=None))
    built.ingest.create_collection("r")
    yield built
    built.close()


def test_a_retry_removes_chunks_an_interrupted_run_left_behind(services: Services) -> None:
    first, retried = submit(services, "first.txt"), submit(services, "retried.txt")
    # An earlier run of `retried` claimed it (one attempt), wrote a chunk this content no longer has
    # (ordinal 7) to both indexes, and died before its commit.
    leftover = ChunkRecord(
        id=chunk_id(retried, 7), text="stale words", payload={"document_id": retried, "filename": "retried.txt"}
    )
    services.retriever.index_records("r__v1", [leftover])
    with services.db.session() as session:
        session.execute(update(Document).where(Document.id == retried).values(attempts=1))

    statuses = services.ingest.index([first, retried])

    assert statuses == {first: DocumentStatus.indexed, retried: DocumentStatus.indexed}
    kept = services.keywords.search("r__v1", "stale words", 10)
    assert leftover.id not in {hit.id for hit in kept}
    assert services.vectors.count("r__v1") == services.keywords.count("r__v1") == 2
    vector_hits = services.vectors.search("r__v1", np.ones(384, dtype=np.float32) / np.sqrt(384), 10)
    assert {hit.payload["document_id"] for hit in vector_hits} == {first, retried}


def test_a_document_taken_into_another_runs_batch_is_not_claimed_twice(services: Services) -> None:
    own, peer = submit(services, "own.txt"), submit(services, "peer.txt")
    # Run "b" (the task of `own`) takes `peer` into its batch while run "a" (peer's own task) starts.
    assert claim_queued_peers(services.db, [own], 5, "b") == [peer]
    assert claim(services.db, [peer], "a") == {}
    claimed = claim(services.db, [own, peer], "b")
    assert set(claimed) == {own, peer}
    assert all(document.attempts == 1 for document, _ in claimed.values())


def test_a_run_that_finds_its_document_indexed_by_another_keeps_that_runs_chunks(services: Services) -> None:
    document = submit(services, "twice.txt")
    late, _ = prepare(services.db, services.retriever, services.settings, [document], "late")
    # A redrive (the lease ran out) indexes the document while the late run is still embedding it.
    with services.db.session() as session:
        session.execute(update(Document).where(Document.id == document).values(claim_token=None))
    assert services.ingest.index([document]) == {document: "indexed"}

    statuses, pending, chunks = index_batch(services.db, services.retriever, late)

    assert (statuses, pending, chunks) == ({document: "skipped"}, [], 0)
    assert services.vectors.count("r__v1") == services.keywords.count("r__v1") == 1
    with services.db.session() as session:
        assert session.get(Document, document).status == DocumentStatus.indexed


def test_a_late_run_into_a_version_that_no_longer_serves_removes_its_chunks_even_if_indexed(services: Services) -> None:
    document = submit(services, "late.txt")
    late, _ = prepare(services.db, services.retriever, services.settings, [document], "late")
    # Meanwhile a re-index switched the collection to version 2 and indexed the document there.
    with services.db.session() as session:
        session.execute(update(Collection).where(Collection.name == "r").values(index_version=2))
        session.execute(update(Document).where(Document.id == document).values(status=DocumentStatus.indexed))

    statuses, pending, chunks = index_batch(services.db, services.retriever, late)

    assert (statuses, pending, chunks) == ({}, [document], 0)  # indexed again by the caller (then skipped)
    assert services.vectors.count("r__v1") == services.keywords.count("r__v1") == 0
