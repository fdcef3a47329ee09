"""What every sandbox endpoint shares: credentials, loaded keys, the store, background tasks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from fastapi import Response

from sandbox.credentials import SandboxCredentials, load_private_key
from sandbox.faults import Faults
from sandbox.signing import platform_headers
from sandbox.store import Store

CST = timezone(timedelta(hours=8), "Asia/Shanghai")
JSON_TYPE = "application/json; charset=utf-8"


def now_cst() -> datetime:
    return datetime.now(CST).replace(microsecond=0)


class Sandbox:
    def __init__(
        self,
        credentials: SandboxCredentials,
        store: Store,
        notify_retry_scale: float,
        *,
        faults: Faults | None = None,
        settle_delay: float | None = None,
        profit_sharing_max_ratio: float = 0.30,
        callback_client: Callable[[], httpx.AsyncClient] | None = None,
    ):
        self.credentials = credentials
        self.store = store
        self.notify_retry_scale = notify_retry_scale
        self.faults = faults or Faults()
        # Seconds after which PROCESSING refunds / split orders settle and transfer bills are
        # confirmed by the "user" on their own; None: only the /sandbox controls move them.
        self.settle_delay = settle_delay
        # What all split orders of one payment may take together (WeChat's default: 30%).
        self.profit_sharing_max_ratio = profit_sharing_max_ratio
        self.merchant_public_key = serialization.load_pem_public_key(
            credentials.merchant_public_key_pem.encode()
        )
        self.platform_private_key = load_private_key(credentials.platform_private_key_pem)
        self._tasks: set[asyncio.Task] = set()
        # how notifications and pushes reach the merchant (tests hand in one routed in-process);
        # one long-lived client, made on first use in the serving event loop
        self._make_callback_client = callback_client or (lambda: httpx.AsyncClient(timeout=5.0))
        self._callback_client: httpx.AsyncClient | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # keep a reference, or the loop may drop the task mid-flight
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._callback_client is not None:
            await self._callback_client.aclose()
            self._callback_client = None

    def callback_client(self) -> httpx.AsyncClient:
        if self._callback_client is None or self._callback_client.is_closed:
            self._callback_client = self._make_callback_client()
        return self._callback_client

    def platform_signed(self, status_code: int, payload: Any | None = None) -> Response:
        """A WeChat Pay response, signed by the platform key as every v3 response is."""
        body = "" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        headers = platform_headers(
            self.platform_private_key, self.credentials.platform_public_key_id, body
        )
        return Response(body.encode(), status_code, headers=headers, media_type=JSON_TYPE)

    def notification_headers(self, body: str) -> dict[str, str]:
        headers = platform_headers(
            self.platform_private_key, self.credentials.platform_public_key_id, body
        )
        return {**headers, "Content-Type": JSON_TYPE}

    def later(self, delay: float | None, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run `fn()` after `delay` seconds (nothing when delay is None)."""
        if delay is None:
            return

        async def _run() -> None:
            await asyncio.sleep(delay)
            await fn()

        self.spawn(_run())

    async def post(self, url: str, **kwargs: Any) -> httpx.Response | None:
        """POST to a partner's callback; None when it could not be reached at all."""
        try:
            return await self.callback_client().post(url, **kwargs)
        except httpx.HTTPError:
            return None
        except Exception:  # an in-process receiver that crashed; over the wire that is a 500
            return httpx.Response(500)
