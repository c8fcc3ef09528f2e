"""Fixtures shared by every test: the real evaluation data, isolated settings, free ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core.config import Settings

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    candidate = Path(os.environ.get("RAG_SHARED_DATA", REPO.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data (the real evaluation data) is absent; set RAG_SHARED_DATA to run this test")
    return path


@pytest.fixture(scope="session")
def pdf_dir(shared_data: Path) -> Path:
    return shared_data / "pdfs"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded defaults in a private data dir, no API key, no LLM unless a test asks for one."""
    return Settings(data_dir=tmp_path / "data", llm_backend="none", api_key=None, _env_file=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()
