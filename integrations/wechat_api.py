"""Shared plumbing for api.weixin.qq.com clients (Channels shop, subscribe messages).

* access tokens from `POST /cgi-bin/stable_token` (does not invalidate tokens other processes
  hold, unlike `/cgi-bin/token`), cached until shortly before they expire, one fetch at a time;
* a call whose token is refused (40001 invalid / 42001 expired / 40014 illegal) refreshes the token
  (force_refresh) and is retried once;
* `{errcode, errmsg}` mapped: -1 (system busy), 45009/45011 (quota) -> PartnerUnavailable,
  any other non-zero errcode -> PartnerRejected(str(errcode)); HTTP 5xx/429, transport errors and
  our own deadline -> PartnerUnavailable.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.http import make_client

WECHAT_API = "https://api.weixin.qq.com"
TOKEN_ERRORS = {40001, 40014, 42001}
RETRYABLE_ERRCODES = {-1, 45009, 45011}
# Refresh this many seconds before WeChat says the token expires.
TOKEN_MARGIN_SECONDS = 300


class WeChatApiClient:
    name = "WeChat API"

    def __init__(self, base_url: str, appid: str, secret: str, *, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self.secret = secret
        self.timeout = timeout
        self._http = make_client(self.base_url, timeout)
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0  # how many times a token was fetched (observability, tests)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def access_token(self, *, force_refresh: bool = False, stale: str | None = None) -> str:
        async with self._token_lock:
            if stale is not None and self._token != stale:
                return self._token  # another call already refreshed it
            if not force_refresh and self._token and time.monotonic() < self._token_expires_at:
                return self._token
            data = await self._request(
                "POST", "/cgi-bin/stable_token",
                json={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
                      "force_refresh": force_refresh},
            )
            self.token_fetches += 1
            self._token = data["access_token"]
            ttl = int(data.get("expires_in", 7200))
            self._token_expires_at = time.monotonic() + max(ttl - TOKEN_MARGIN_SECONDS, ttl // 2)
            return self._token

    async def call(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST `payload` to `path?access_token=...`; the answer with errcode 0, or raises."""
        token = await self.access_token()
        try:
            return await self._request("POST", path, params={"access_token": token}, json=payload or {})
        except PartnerRejected as e:
            if e.code not in {str(c) for c in TOKEN_ERRORS}:
                raise
        token = await self.access_token(force_refresh=True, stale=token)
        return await self._request("POST", path, params={"access_token": token}, json=payload or {})

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http.request(method, path, **kwargs)
        except TimeoutError as e:
            raise PartnerUnavailable(f"{self.name} timed out after {self.timeout}s") from e
        except httpx.HTTPError as e:
            raise PartnerUnavailable(f"{self.name} unreachable: {e!r}") from e
        if response.status_code == 429 or response.status_code >= 500:
            raise PartnerUnavailable(f"{self.name} HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as e:
            raise PartnerUnavailable(f"{self.name} answered non-JSON (HTTP {response.status_code})") from e
        errcode = int(data.get("errcode") or 0)
        if errcode in RETRYABLE_ERRCODES:
            raise PartnerUnavailable(f"{self.name} busy: {errcode} {data.get('errmsg')}")
        if errcode:
            raise PartnerRejected(str(errcode), str(data.get("errmsg", "")), status=response.status_code)
        if response.status_code >= 400:
            raise PartnerRejected(f"HTTP_{response.status_code}", response.text[:200], status=response.status_code)
        return data
