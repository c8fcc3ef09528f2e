"""A real uvicorn server on a free port with two indexed collections, for tests that drive it with the
official clients (openai, mcp): ``docs`` holds the project's own eval corpus, ``other`` two small files.
A reader key scoped to ``docs`` comes with it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
from core.config import Settings
from core.db import Database
from core.models import Chunk
from tests.conftest import free_port
from tests.e2e.helpers import wait_for_status

EVAL_SET = Path(__file__).resolve().parents[2] / "eval_sets" / "platform-docs"
ROOT_KEY = "live-root-key"
OTHER_FILES = {
    "lighthouse.txt": b"The lighthouse on the northern cape was built in 1902 and is painted red and white.",
    "harbour.txt": b"The harbour freezes over in February, when ferries stop running for three weeks.",
}


@dataclass
class LiveApp:
    url: str
    settings: Settings
    reader_key: str
    documents: dict[str, str]
    """filename -> document id, both collections."""

    def headers(self, key: str = ROOT_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def client(self, key: str = ROOT_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(key), timeout=120)

    def chunk_text(self, chunk_id: str) -> str:
        """Read from the server's own database (SQLite allows readers beside the server)."""
        database = Database(self.settings.sql_url)
        try:
            with database.session() as session:
                chunk = session.get(Chunk, (chunk_id, 1))
                assert chunk is not None, chunk_id
                return chunk.text
        finally:
            database.dispose()


def upload(client: httpx.Client, collection: str, files: dict[str, bytes]) -> dict[str, str]:
    assert client.post("/v1/collections", json={"name": collection}).status_code == 201
    batch = [("files", (name, data, "text/plain")) for name, data in files.items()]
    response = client.post(f"/v1/collections/{collection}/documents/batch", files=batch)
    assert response.status_code == 202, response.text
    ids = {d["filename"]: d["id"] for d in response.json()}
    for document_id in ids.values():
        assert wait_for_status(client, document_id)["status"] == "indexed"
    return ids


def eval_corpus() -> dict[str, bytes]:
    files = {}
    for line in (EVAL_SET / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        files[f"{doc['_id']}.txt"] = f"{doc['title']}\n\n{doc['text']}".encode()
    return files


def live_app(data_dir: Path, **overrides: object) -> Iterator[LiveApp]:
    settings = Settings(data_dir=data_dir, llm_backend="none", api_key=ROOT_KEY, _env_file=None, **overrides)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ROOT_KEY}"}, timeout=120) as client:
            documents = upload(client, "docs", eval_corpus()) | upload(client, "other", OTHER_FILES)
            minted = client.post("/v1/admin/keys", json={"name": "reader", "role": "reader", "collections": ["docs"]})
            assert minted.status_code == 201, minted.text
        yield LiveApp(url, settings, minted.json()["key"], documents)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
