"""One place that makes outbound HTTP clients.

Every partner client (and the sandbox's notification sender) gets its `httpx.AsyncClient`
here. Tests route a base URL to an in-process ASGI app with `route_to_app`, so the whole
system speaks real HTTP on the wire format without opening sockets.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

_routes: dict[str, httpx.AsyncBaseTransport] = {}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def route_to_app(base_url: str, app) -> None:
    """Send every request for `base_url`'s origin to the ASGI `app` (tests only)."""
    _routes[_origin(base_url)] = httpx.ASGITransport(app=app)


def clear_routes() -> None:
    _routes.clear()


class _RoutingTransport(httpx.AsyncBaseTransport):
    def __init__(self, default: httpx.AsyncBaseTransport):
        self._default = default

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        routed = _routes.get(f"{request.url.scheme}://{request.url.netloc.decode()}")
        return await (routed or self._default).handle_async_request(request)

    async def aclose(self) -> None:
        await self._default.aclose()


def make_client(base_url: str = "", timeout: float = 10.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        transport=_RoutingTransport(httpx.AsyncHTTPTransport(retries=0)),
    )
