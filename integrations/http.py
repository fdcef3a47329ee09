"""One place that makes outbound HTTP clients.

Every partner client gets its `httpx.AsyncClient` here. Clients are long-lived: a client object
holds its own (WeChat Pay, Channels, messages), and the stateless calls (logistics, OAuth) share
one per partner and process through `shared_client`, so connections and TLS sessions are
reused; all of them share one TLS context, whose creation is costly (a profile of the order
benchmark found a tenth of its time in `ssl.create_default_context` when every call built one).
`close_shared_clients` closes them on shutdown.

Tests route a base URL to an in-process ASGI app with `route_to_app`, so the whole system speaks
real HTTP on the wire format without opening sockets.
"""

from __future__ import annotations

import asyncio
import ssl
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


_tls: ssl.SSLContext | None = None
_shared: dict[tuple[asyncio.AbstractEventLoop, str, float], httpx.AsyncClient] = {}


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = httpx.create_ssl_context()
    return _tls


def make_client(base_url: str = "", timeout: float = 10.0) -> httpx.AsyncClient:
    """A new client (its owner closes it) on the process's one TLS context."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        transport=_RoutingTransport(httpx.AsyncHTTPTransport(retries=0, verify=_tls_context())),
    )


def shared_client(base_url: str, timeout: float = 10.0) -> httpx.AsyncClient:
    """The process's long-lived client for one partner base URL (never close it yourself)."""
    # a client's connections belong to the event loop that opened them
    key = (asyncio.get_running_loop(), base_url.rstrip("/"), timeout)
    client = _shared.get(key)
    if client is None or client.is_closed:
        client = _shared[key] = make_client(key[1], timeout)
    return client


async def close_shared_clients() -> None:
    """Close this event loop's shared clients (at shutdown)."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _shared if k[0] is loop]:
        await _shared.pop(key).aclose()
