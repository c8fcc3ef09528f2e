"""Talking to a server must not load the server: importing the client pulls in no model, store or service."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

SERVER_SIDE = ("runtime", "ingest", "generation", "retrieval", "api", "workers", "torch", "numpy", "sqlalchemy")


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    probe = "import sys, client; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO)},
    ).stdout.split()
    assert "client" in loaded and "httpx" in loaded
    assert not set(SERVER_SIDE) & set(loaded)
