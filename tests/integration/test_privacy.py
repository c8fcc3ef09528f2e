"""Privacy controls: query-text modes, log redaction, and the periodic retention purge."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.config import Settings
from core.models import Collection, Conversation, QueryLog
from core.redaction import redact_text
from core.telemetry import JsonFormatter
from generation.query_types import QueryRequest
from ingest.service import Upload
from runtime.services import Services
from workers.app import make_celery
from workers.embedded import EmbeddedWorker
from workers.names import PURGE_TASK

SECRET_QUESTION = "Is jane.doe@example.com on the list? Call +44 20 7946 0958."


def indexed_services(settings: Settings) -> Services:
    services = Services(settings)
    services.ingest.create_collection("p")
    ids: list[str] = []
    services.ingest.submit("p", [Upload("a.txt", b"The list has Jane Doe on it.")], None, ids.extend)
    services.ingest.index(ids)
    return services


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("plain", lambda q: "[EMAIL]" in q and "[PHONE]" in q and "jane.doe" not in q),
        ("hash", lambda q: q.startswith("sha256:") and len(q) == 71),
        ("none", lambda q: q == ""),
    ],
)
def test_query_text_modes(tmp_path: Path, mode: str, check) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "d", llm_backend="none", log_query_text=mode, _env_file=None)
    services = indexed_services(settings)
    try:
        result = services.queries.query("p", QueryRequest(query=SECRET_QUESTION, generate=False))
        with services.db.session() as session:
            stored = session.get(QueryLog, result.query_id)
            assert stored is not None and check(stored.query), stored.query
            assert stored.retrieval["fused"]  # ids and metrics stay whatever the mode
    finally:
        services.close()


def test_log_lines_are_redacted_unless_turned_off() -> None:
    record = logging.LogRecord("rag", logging.INFO, __file__, 1, "user %s asked", ("a@b.io",), None)
    record.query = {"text": SECRET_QUESTION, "ids": ["6f1c3c2e-5a8e-4f61-9d0b-2f6f2f0c9a11"]}
    line = json.loads(JsonFormatter(redact=True).format(record))
    assert line["msg"] == "user [EMAIL] asked"
    assert "jane.doe" not in line["query"]["text"] and "7946" not in line["query"]["text"]
    assert line["query"]["ids"] == ["6f1c3c2e-5a8e-4f61-9d0b-2f6f2f0c9a11"]
    raw = json.loads(JsonFormatter(redact=False).format(record))
    assert raw["msg"] == "user a@b.io asked"


def test_server_generated_ids_pass_redaction_untouched_and_nothing_else_does() -> None:
    card_like_id = "4111111111111111" + "a" * 16  # its digit run passes the Luhn check
    assert redact_text(card_like_id) != card_like_id
    record = logging.LogRecord("rag", logging.INFO, __file__, 1, "query", (), None)
    record.retrieval = {"fused": [card_like_id, "6f1c3c2e-5a8e-4f61-9d0b-2f6f2f0c9a11"]}
    record.query_id = card_like_id
    record.client_value = card_like_id  # id-shaped, but a client could have sent it
    line = json.loads(JsonFormatter(redact=True).format(record))
    assert line["retrieval"]["fused"] == [card_like_id, "6f1c3c2e-5a8e-4f61-9d0b-2f6f2f0c9a11"]
    assert line["query_id"] == card_like_id
    assert line["client_value"] == redact_text(card_like_id)


def test_retention_purge_runs_periodically_in_the_embedded_worker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", llm_backend="none", retention_days=30, _env_file=None)
    services = Services(settings)
    old, recent = datetime.now(UTC) - timedelta(days=45), datetime.now(UTC) - timedelta(days=2)
    with services.db.session() as session:
        collection = Collection(name="r")
        session.add(collection)
        session.flush()
        for when, label in ((old, "old"), (recent, "recent")):
            session.add(
                QueryLog(
                    id=f"log-{label}",
                    collection="r",
                    index_version=1,
                    query=label,
                    mode="hybrid",
                    top_k=5,
                    created_at=when,
                )
            )
            session.add(
                Conversation(
                    id=f"conv-{label}", collection_id=collection.id, owner="root", created_at=when, updated_at=when
                )
            )
    celery = make_celery(settings)
    celery.services = services  # type: ignore[attr-defined]
    celery.conf.beat_schedule = {"purge-expired": {"task": PURGE_TASK, "schedule": 0.5}}
    worker = EmbeddedWorker(celery)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with services.db.session() as session:
                if session.get(QueryLog, "log-old") is None:
                    break
            time.sleep(0.2)
        with services.db.session() as session:
            assert session.get(QueryLog, "log-old") is None and session.get(Conversation, "conv-old") is None
            assert session.get(QueryLog, "log-recent") is not None
            assert session.get(Conversation, "conv-recent") is not None
    finally:
        worker.stop()
        services.close()


def test_no_retention_setting_keeps_everything(tmp_path: Path) -> None:
    from core.retention import purge_expired

    services = Services(Settings(data_dir=tmp_path / "d", llm_backend="none", _env_file=None))
    with services.db.session() as session:
        session.add(
            QueryLog(
                id="ancient",
                collection="x",
                index_version=1,
                query="q",
                mode="hybrid",
                top_k=5,
                created_at=datetime(2000, 1, 1, tzinfo=UTC),
            )
        )
    assert purge_expired(services.db, None).query_logs == 0
    with services.db.session() as session:
        assert session.get(QueryLog, "ancient") is not None
    services.close()
