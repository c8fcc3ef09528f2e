"""Per-key rate limits (moving window) on query and upload, backed by the ``limits`` library."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.config import Settings
from core.errors import RateLimited


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage))
        self._rules: dict[str, list[RateLimitItem]] = {
            "query": parse_many(settings.rate_limit_query),
            "upload": parse_many(settings.rate_limit_upload),
        }

    def hit(self, bucket: str, identity: str, cost: int = 1) -> None:
        """Count ``cost`` requests for ``identity``; raise 429 with Retry-After once over any rule."""
        for rule in self._rules[bucket]:
            if not self._limiter.hit(rule, bucket, identity, cost=cost):
                reset = self._limiter.get_window_stats(rule, bucket, identity).reset_time
                retry = max(1, math.ceil(reset - time.time()))
                raise RateLimited(f"Rate limit of {rule} for {bucket} reached; retry in {retry} s.", retry)
