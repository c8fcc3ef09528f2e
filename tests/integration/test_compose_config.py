"""docker-compose.yml is valid and wires the stack as documented.

No container engine runs in CI, so ``docker-compose config`` (Debian's docker-compose package) is the
validation: it checks the schema and resolves interpolation, anchors and merges.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import missing_service

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SERVICES = {"api", "worker", "scheduler", "migrate", "postgres", "redis", "qdrant", "vllm"}
LONG_RUNNING = SERVICES - {"migrate", "scheduler"}


@pytest.fixture(scope="module", autouse=True)
def _docker_compose() -> None:
    if shutil.which("docker-compose") is None:
        missing_service("docker-compose is not on PATH (Debian: apt-get install docker-compose)")


def compose(*args: str, secrets: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "POSTGRES_PASSWORD")}
    if secrets:
        env.update(API_KEY="test-key", POSTGRES_PASSWORD="test-password")
    command = ["docker-compose", "-f", str(COMPOSE), "--env-file", str(REPO / ".env.example"), *args]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    result = compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_config_is_valid() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_secrets_are_required() -> None:
    result = compose("config", "-q", secrets=False)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "API_KEY" in result.stderr


def test_services_and_health_checks(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == SERVICES
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "container_name" not in services[name], "a fixed name would block --scale"
    assert "ports" not in services["worker"], "a fixed host port would block --scale worker=N"
    assert "--beat" in services["scheduler"]["command"] and "--beat" not in services["worker"]["command"]


def test_app_wiring(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    env = services["api"]["environment"]
    assert env["RAG_LLM_BASE_URL"] == "http://vllm:8000/v1"
    assert env["RAG_KEYWORD_BACKEND"] == "qdrant_sparse"
    assert env["RAG_QDRANT_URL"] == "http://qdrant:6333"
    assert env["RAG_DATABASE_URL"].startswith("postgresql+psycopg://rag:test-password@postgres:5432/")
    assert env["RAG_BROKER_URL"].startswith("redis://redis:6379/")
    # API and workers must see the same stores: the same settings but for their own metrics plumbing.
    worker_env = {k: v for k, v in services["worker"]["environment"].items() if k != "RAG_WORKER_METRICS_PORT"}
    assert worker_env == {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    assert "PROMETHEUS_MULTIPROC_DIR" in env
    assert any("/data" in volume for volume in services["worker"]["volumes"])
    assert any("/data" in volume for volume in services["api"]["volumes"])
    assert services["worker"]["command"][:2] == ["ragctl", "worker"]


def test_vllm_gets_a_gpu_and_its_model_from_env(resolved: dict[str, Any]) -> None:
    vllm = resolved["services"]["vllm"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--model=Qwen/Qwen2.5-7B-Instruct" in vllm["command"]
    assert "--max-model-len=8192" in vllm["command"]
    assert resolved["services"]["api"]["environment"]["RAG_LLM_MODEL"] == "Qwen/Qwen2.5-7B-Instruct"
