"""Ingest messages: one per upload request, skipped cheaply when another run took the documents, batched
on recovery. The real Celery app and its memory broker; tasks run through ``Task.apply``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from core.config import Settings
from core.models import Document, DocumentStatus
from ingest.claims import claim
from ingest.service import Upload
from runtime.services import Services
from workers.app import make_celery, queue_names
from workers.names import INGEST_BATCH_TASK, INGEST_TASK
from workers.recovery import requeue_unfinished

TEXTS = {
    "owls.txt": b"Barn owls hunt at night. Their hearing locates voles under snow.",
    "tides.txt": b"Spring tides follow the new and the full moon.",
    "bread.txt": b"Rye bread uses a sour starter and a dense dough.",
    "bees.txt": b"Honey bees dance to tell the hive where flowers are.",
}


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = Services(Settings(data_dir=tmp_path / "d", llm_backend="none", ingest_batch_documents=3, _env_file=None))
    built.ingest.create_collection("t")
    yield built
    built.close()


@pytest.fixture
def celery(services: Services) -> Celery:
    app = make_celery(services.settings)
    app.services = services  # type: ignore[attr-defined]
    return app


def upload(services: Services, *names: str) -> list[str]:
    """One request's files; returns the ids it queued, in order."""
    queued: list[list[str]] = []
    uploads = [Upload(name, TEXTS[name]) for name in names]
    services.ingest.submit("t", uploads, None, lambda ids: queued.append(list(ids)))
    assert len(queued) == 1
    return queued[0]


def run(celery: Celery, task: str, *args: Any) -> Any:
    """The task's return value, run here through Celery's own request machinery (``Task.apply``)."""
    result = celery.tasks[task].apply(args=args)
    assert result.successful(), result.traceback
    return result.result


def statuses(services: Services) -> dict[str, str]:
    with services.db.session() as session:
        return {d.filename: d.status for d in session.query(Document)}


def queued_messages(celery: Celery) -> list[tuple[str, Any]]:
    """(task name, args) of every message waiting in the ingest queue of the memory broker; keyword
    arguments, where there are any, are appended to the args as a dict."""
    messages = []
    with celery.connection_for_read() as connection:
        queue = connection.SimpleQueue(queue_names(celery)[0])
        while queue.qsize():
            message = queue.get(timeout=1)
            args, kwargs, _ = message.decode()
            messages.append((message.headers["task"], [*args, kwargs] if kwargs else args))
            message.ack()
        queue.close()
    return messages


def test_one_upload_request_queues_one_message_with_its_new_documents(services: Services) -> None:
    queued: list[list[str]] = []
    files = [Upload(name, TEXTS[name]) for name in ("owls.txt", "tides.txt")]
    files.append(Upload("copy.txt", TEXTS["owls.txt"]))  # same bytes: a duplicate, not queued again
    submitted = services.ingest.submit("t", files, None, queued.append)
    assert queued == [[submitted[0].document.id, submitted[1].document.id]]
    assert submitted[2].document.id == submitted[0].document.id and not submitted[2].created
    again = services.ingest.submit("t", files[:1], None, queued.append)
    assert not again[0].created and len(queued) == 1  # nothing new: no message


def test_the_api_sends_one_batch_task_for_several_files_and_the_single_task_for_one(celery: Celery) -> None:
    from workers.app import ingest_enqueuer

    enqueue = ingest_enqueuer(celery, batch_documents=2)
    enqueue(["a", "b", "c"])  # more files than a task takes: split
    enqueue(["d"])
    enqueue([])
    assert queued_messages(celery) == [
        (INGEST_BATCH_TASK, [["a", "b"]]),
        (INGEST_TASK, ["c"]),
        (INGEST_TASK, ["d"]),
    ]


def test_a_batch_task_indexes_its_documents_and_tops_up_with_queued_peers(services: Services, celery: Celery) -> None:
    owls, tides = upload(services, "owls.txt", "tides.txt")
    upload(services, "bread.txt")
    upload(services, "bees.txt")
    result = run(celery, INGEST_BATCH_TASK, [owls, tides])
    assert result == {owls: DocumentStatus.indexed, tides: DocumentStatus.indexed}
    # RAG_INGEST_BATCH_DOCUMENTS=3: the oldest queued peer came along, the next one waits for its own task.
    assert statuses(services) == {
        "owls.txt": "indexed",
        "tides.txt": "indexed",
        "bread.txt": "indexed",
        "bees.txt": "queued",
    }


def test_a_task_whose_documents_another_run_holds_takes_queued_peers_or_stops(
    services: Services, celery: Celery
) -> None:
    (owls,) = upload(services, "owls.txt")
    upload(services, "tides.txt")
    assert set(claim(services.db, [owls], "another-live-run")) == {owls}
    assert run(celery, INGEST_TASK, owls) == "skipped"
    # Its own document stays with the run that holds it; the queued one did not wait for its own message.
    assert statuses(services) == {"owls.txt": "processing", "tides.txt": "indexed"}
    assert run(celery, INGEST_TASK, owls) == "skipped"  # nothing left to take: ends after two SELECTs
    assert statuses(services) == {"owls.txt": "processing", "tides.txt": "indexed"}


def test_a_crash_in_a_batch_sends_each_document_back_alone_so_only_the_bad_file_fails(
    services: Services, celery: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.pipeline

    real_build = ingest.pipeline.build

    def build(document: Document, *args: Any, **kwargs: Any) -> Any:
        if document.filename == "tides.txt":
            raise ValueError("a parser bug")  # not a RagError: an unexpected crash
        return real_build(document, *args, **kwargs)

    monkeypatch.setattr(ingest.pipeline, "build", build)
    owls, tides = upload(services, "owls.txt", "tides.txt")
    assert run(celery, INGEST_BATCH_TASK, [owls, tides]) == {owls: "queued", tides: "queued"}
    assert statuses(services) == {"owls.txt": "queued", "tides.txt": "queued"}
    requeued = queued_messages(celery)
    alone = {"alone": True}
    assert sorted(requeued, key=str) == sorted([(INGEST_TASK, [owls, alone]), (INGEST_TASK, [tides, alone])], key=str)
    (bread,) = upload(services, "bread.txt")  # queued meanwhile: a task sent back to run alone leaves it
    for name, (document_id, kwargs) in requeued:
        assert run(celery, name, document_id, kwargs["alone"]) in ("indexed", "failed")
    assert statuses(services) == {"owls.txt": "indexed", "tides.txt": "failed", "bread.txt": "queued"}
    assert run(celery, INGEST_TASK, bread) == "indexed"


def test_restart_recovery_requeues_unfinished_documents_in_batches(services: Services, celery: Celery) -> None:
    ids = upload(services, "owls.txt", "tides.txt", "bread.txt", "bees.txt")
    sent, _ = requeue_unfinished(services, celery)
    assert sent == 4
    (batch_task, (batch,)), (single_task, (single,)) = queued_messages(celery)
    assert (batch_task, single_task) == (INGEST_BATCH_TASK, INGEST_TASK)
    assert len(batch) == 3 and {*batch, single} == set(ids)  # RAG_INGEST_BATCH_DOCUMENTS=3 per message
