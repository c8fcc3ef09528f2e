"""Building the MCP server leaves the process's logging as its entry point set it up."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from api.mcp_server import McpContext, build_mcp_server
from core.config import Settings
from runtime.services import Services


@contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger of a process that configured no logging. Entered in the test body: pytest adds its
    capture handler to the root after the fixtures are set up."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def build(data_dir: Path) -> None:
    build_mcp_server(McpContext(Services(Settings(data_dir=data_dir)), limits=None, local=None))


def test_building_the_mcp_server_adds_no_root_handler_and_keeps_the_level(tmp_path: Path) -> None:
    with bare_root() as root:
        build(tmp_path)
        assert root.handlers == []
        assert root.level == logging.WARNING


def test_a_configured_root_stays_as_configured(tmp_path: Path) -> None:
    with bare_root() as root:
        handler = logging.NullHandler()
        root.addHandler(handler)
        root.setLevel(logging.ERROR)
        build(tmp_path)
        assert root.handlers == [handler]
        assert root.level == logging.ERROR
