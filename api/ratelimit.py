"""Per-viewer limits on anonymous-ish writes (window exposures and clicks), with the `limits`
library. Storage is `RATE_LIMIT_STORAGE` (memory:// by default: per API process; point several
API processes at one store, e.g. redis://, to share the counts)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond, parse, storage, strategies

from api.errors import ApiError


class ViewerLimits:
    def __init__(self, settings):
        self._storage = storage.storage_from_string(settings.rate_limit_storage)
        self._limiter = strategies.MovingWindowRateLimiter(self._storage)
        self._rate = parse(settings.window_event_rate)
        self._once = RateLimitItemPerSecond(1, max(1, int(settings.window_event_dedup.total_seconds())))

    def spend(self, scope: str, viewer: str) -> None:
        """Take one request from the viewer's budget for `scope`; 429 RATE_LIMITED when spent."""
        if not self._limiter.hit(self._rate, scope, viewer):
            reset = self._limiter.get_window_stats(self._rate, scope, viewer).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            raise ApiError(429, "RATE_LIMITED", f"too many {scope} requests; try again in {wait} s",
                           headers={"Retry-After": str(wait)})

    def first_in_period(self, *key: str) -> bool:
        """True the first time this key is seen in the dedup period (WINDOW_EVENT_DEDUP)."""
        return self._limiter.hit(self._once, "once", *key)

    def reset(self) -> None:
        """Forget every count (tests: ids restart with each emptied database)."""
        self._storage.reset()
