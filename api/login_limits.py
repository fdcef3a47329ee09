"""Failed logins limited per account and per IP (moving window, the `limits` library): past the
limit a login is refused with 429 LOGIN_RATE_LIMITED and Retry-After, before the password is
even checked. Only failures count, so a user logging in again and again is never locked out.

The counters live in the API process (`limits`' memory storage): behind N API replicas an
attacker gets at most N times the limit."""

from __future__ import annotations

import math
import time

from limits import parse, storage, strategies

from api.errors import ApiError
from settings import Settings


class LoginLimiter:
    def __init__(self, settings: Settings):
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._limits = {"account": parse(settings.login_failures_per_account),
                        "ip": parse(settings.login_failures_per_ip)}

    def _keys(self, account: str | None, ip: str | None):
        return [(kind, value) for kind, value in (("account", account), ("ip", ip)) if value]

    def check(self, account: str | None, ip: str | None) -> None:
        for kind, value in self._keys(account, ip):
            limit = self._limits[kind]
            if not self._limiter.test(limit, "login", kind, value):
                reset = self._limiter.get_window_stats(limit, "login", kind, value).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                what = "this account" if kind == "account" else "this address"
                raise ApiError(429, "LOGIN_RATE_LIMITED",
                               f"too many failed logins for {what}; try again in {wait} s",
                               headers={"Retry-After": str(wait)})

    def failed(self, account: str | None, ip: str | None) -> None:
        for kind, value in self._keys(account, ip):
            self._limiter.hit(self._limits[kind], "login", kind, value)
