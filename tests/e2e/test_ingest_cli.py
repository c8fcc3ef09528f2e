"""`ragctl ingest` as a user runs it on a folder: every readable file indexed, the others named with why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.collections import get_collection
from core.config import Settings
from core.models import index_name
from runtime.services import Services
from tests.conftest import REPO

TOPICS = {
    "volcanoes.txt": "Volcanoes\n\nBasaltic lava flows from shield volcanoes such as Mauna Loa in Hawaii.",
    "glaciers.md": "# Glaciers\n\nGlaciers carve U-shaped valleys as the ice moves slowly downhill.",
    "tides.txt": "Tides\n\nThe Moon's gravity raises the ocean tides twice a day on most coasts.",
    "reefs.txt": "Coral reefs\n\nCoral polyps build reefs from calcium carbonate in warm shallow seas.",
}


def ragctl(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_LLM_BACKEND": "none",
        "RAG_INGEST_BATCH_DOCUMENTS": "3",  # four readable files: a full batch and a partial one
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_ingest_folder_indexes_every_readable_file_and_names_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in TOPICS.items():
        (folder / name).write_text(text)
    (folder / "empty.txt").write_bytes(b"")
    data = tmp_path / "data"

    first = ragctl(data, "ingest", str(folder), "-c", "geo")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "empty.txt" in first.stdout + first.stderr
    assert "4 of 5 files indexed into 'geo'" in first.stdout

    services = Services(Settings(data_dir=data, llm_backend="none", api_key=None, _env_file=None))
    try:
        page = services.ingest.list_documents("geo", None, 50, 0)
        assert sorted(d.filename for d in page.items) == sorted(TOPICS)
        assert all(d.status == "indexed" and d.chunk_count for d in page.items)
        index = index_name("geo", get_collection(services.db, "geo").index_version)
        hits = services.retriever.retrieve(index, "coral polyps calcium carbonate", top_k=1).hits
        assert hits[0].payload["filename"] == "reefs.txt"
    finally:
        services.close()

    again = ragctl(data, "ingest", str(folder / "tides.txt"), "-c", "geo")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 of 1 files indexed" in again.stdout
