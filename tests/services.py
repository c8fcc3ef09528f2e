"""What a test does when a local service it needs (PostgreSQL, Redis, docker-compose) is missing.

On a developer's machine it skips, saying what to start. In CI (``RAG_TEST_REQUIRE_SERVICES=1``, set by
.ci/run, which starts or installs every service first) it fails: a skipped scale-out test would pass CI
without testing the path it exists for.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_VARIABLE = "RAG_TEST_REQUIRE_SERVICES"


def missing_service(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"a required service is missing ({REQUIRE_VARIABLE}=1): {reason}", pytrace=False)
    pytest.skip(reason)
