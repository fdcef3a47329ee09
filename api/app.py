"""The HTTP API: FastAPI app factory. OpenAPI docs at /docs."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api import channels_wake, console, contract, errors
from api.login_limits import LoginLimiter
from api.ratelimit import ViewerLimits
from api.routers import (
    addresses,
    auth,
    cart,
    catalog,
    channels_push,
    codec,
    coupons,
    flash_sales,
    group_buy,
    freight,
    levels,
    notifications,
    ops,
    orders,
    pickup,
    presale,
    product_edits,
    products,
    promoters,
    reconciliations,
    refunds,
    reviews,
    risk,
    settlements,
    suppliers,
    wallet,
    webhooks,
    withdrawals,
)
from db.session import session_factory
from integrations.http import close_shared_clients
from integrations.production import refuse_unsafe_defaults
from integrations.temporal import connect, payload_codec
from integrations.wechatpay import WeChatPayClient, WeChatPayConfig
from settings import Settings, get_settings

TAGS = [
    {"name": "risk", "description": "Risk flags for support review (never blocks an order or refund)"},
    {"name": "auth", "description": "WeChat OAuth login for buyers and promoters; passwords for staff"},
    {"name": "catalog", "description": "Products and promoters' windows"},
    {"name": "orders", "description": "Placing, paying, shipping and receiving orders"},
    {"name": "promoters", "description": "Free promoter onboarding, referral, assessment, revival, commission policy"},
    {"name": "wallet", "description": "Promoters' commission balances and ledger entries"},
    {"name": "withdrawals", "description": "Promoters withdraw commission to WeChat change (商家转账)"},
    {"name": "webhooks", "description": "Partner notifications (WeChat Pay, logistics, the Channels shop)"},
    {"name": "ops", "description": "Health and metrics"},
    {"name": "suppliers", "description": "Supplier onboarding, review and suspension"},
    {"name": "products", "description": "Product submission, review, SKUs and stock"},
    {"name": "notifications", "description": "What each user should know"},
    {"name": "settlements", "description": "Supplier profit sharing (T+1), monthly commission statements, bills"},
    {"name": "reconciliations", "description": "Daily reconciliation with WeChat Pay's trade bills: reports and differences"},
    {"name": "addresses", "description": "A buyer's address book (GB/T 2260 region codes)"},
    {"name": "cart", "description": "The cart across suppliers and windows: freight quote, checkout into orders"},
    {"name": "freight", "description": "Suppliers' freight templates (运费模板) and which one each product ships by"},
    {"name": "dashboards", "description": "数据看板: platform, supplier and promoter figures from the daily rollups (JSON or CSV)"},
]


class Temporal:
    """Connects on first use, so the API starts even while Temporal is still coming up."""

    def __init__(self, settings: Settings, client: Client | None = None):
        self._settings, self._client, self._lock = settings, client, asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                self._client = await connect(self._settings)
            return self._client


def create_app(settings: Settings | None = None, *, sessions: sessionmaker[Session] | None = None,
               temporal_client: Client | None = None, pay: WeChatPayClient | None = None) -> FastAPI:
    settings = settings or get_settings()
    refuse_unsafe_defaults(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await close_shared_clients()

    app = FastAPI(title="Chuchuang 橱窗 API", version="0.1.0", lifespan=lifespan, openapi_tags=TAGS,
                  dependencies=[Depends(contract.guard_inputs)],  # text and number bounds, every route
                  description="Durable back-end for WeChat social commerce. Every long-running "
                              "process is a Temporal workflow; see Temporal UI for histories.")
    app.state.settings = settings
    # version 1 of the commission policy, as the worker seeds it (validated at startup); the ceiling
    # COMMISSION_TIERS itself is read from the settings at every policy change
    app.state.first_commission_policy = settings.commission_policy()
    if sessions is None:
        sessions = session_factory(settings)
    app.state.sessions = sessions
    app.state.temporal = Temporal(settings, temporal_client)
    app.state.pay = pay or WeChatPayClient(WeChatPayConfig.from_settings(settings))
    app.state.codec = payload_codec(settings)
    app.state.login_limiter = LoginLimiter(settings)
    app.add_middleware(codec.CodecCORS, origins=settings.resolved_codec_cors_origins)
    app.state.viewer_limits = ViewerLimits(settings)
    errors.install(app)
    channels_wake.install(app)  # window/listing changes wake the Channels sync
    for router in (auth.router, catalog.router, orders.router, wallet.router, webhooks.router, ops.router,
                   suppliers.router, products.router, notifications.router,
                   promoters.router, promoters.policy_router, refunds.router, pickup.router, coupons.router, risk.router):
        app.include_router(router)
    app.include_router(withdrawals.router)
    app.include_router(settlements.router)
    app.include_router(reconciliations.router)
    app.include_router(presale.router)
    app.include_router(flash_sales.router)
    app.include_router(group_buy.router)
    app.include_router(reviews.router)
    app.include_router(product_edits.router)
    app.include_router(codec.router)
    app.include_router(channels_push.router)
    for router in (addresses.router, cart.router, freight.router):  # the storefront
        app.include_router(router)
    for router in levels.routers:
        app.include_router(router)
    console.install(app)  # /console pages and /dashboards figures
    contract.document(app)  # every route's error answers, one Error schema, the input bounds
    return app

