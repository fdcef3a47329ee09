"""Dashboards as JSON (and CSV) for the frontends and the console: the platform's figures for
support and operators, a supplier's own products, a promoter's sales and commission over time.
Every figure is read from the rollups (activities/rollups.py), never from a scan of the orders."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.console import figures
from api.deps import sessions_of
from api.errors import ApiError, not_found
from db.models import Promoter, Supplier
from domain.dashboards import Dim, Grain

router = APIRouter(prefix="/dashboards", tags=["dashboards"])

Format = Literal["json", "csv"]


def _csv(body: str, name: str) -> Response:
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


def _until(request: Request, until: date | None) -> date:
    return until or figures.today(request.app.state.settings.settlement_timezone)


@router.get("/platform", summary="Platform figures by day/week/month with 环比 and alerts (support, operators)")
def platform(request: Request, grain: Grain = Grain.DAY, periods: int = Query(default=30, ge=1, le=366),
             until: date | None = None, format: Format = "json",
             _: Principal = Depends(require_roles(*PLATFORM_STAFF))):
    settings = request.app.state.settings
    with sessions_of(request)() as s:
        data = figures.overview(s, Dim.ALL, "", grain, periods, _until(request, until),
                                settings.repeat_purchase_alert_bps)
    if format == "csv":
        return _csv(figures.to_csv(data["series"], ("period_start",)), f"platform-{grain.value}")
    return data


@router.get("/platform/breakdown", summary="One period's figures by region, category, supplier, promoter, tier or product")
def platform_breakdown(request: Request, dim: Dim, grain: Grain = Grain.MONTH, period: date | None = None,
                       order_by: str = "gmv_fen", limit: int = Query(default=200, ge=1, le=5000),
                       format: Format = "json", _: Principal = Depends(require_roles(*PLATFORM_STAFF))):
    start = period or _until(request, None)
    with sessions_of(request)() as s:
        rows = figures.breakdown(s, dim, grain, start, order_by=order_by, limit=limit)
    if format == "csv":
        return _csv(figures.to_csv(rows, ("key", "label")), f"{dim.value}-{grain.value}-{start}")
    return {"dim": dim.value, "grain": grain.value, "period": start.isoformat(), "rows": rows}


def _supplier_id(request: Request, principal: Principal, supplier_id: int | None) -> int:
    with sessions_of(request)() as s:
        if principal.role == "supplier":
            own = s.scalar(select(Supplier.id).where(Supplier.owner_user_id == principal.user_id))
            if own is None:
                raise ApiError(403, "NOT_A_SUPPLIER", "this account has no supplier")
            if supplier_id is not None and supplier_id != own:
                raise ApiError(403, "FORBIDDEN", "a supplier sees only its own figures")
            return own
        if supplier_id is None:
            raise ApiError(422, "SUPPLIER_REQUIRED", "give supplier_id")
        if s.get(Supplier, supplier_id) is None:
            raise not_found(f"supplier {supplier_id}")
        return supplier_id


@router.get("/supplier", summary="A supplier's sales over time and its products' analytics "
                                 "(exposures, clicks, orders, best and slow sellers)")
def supplier(request: Request, grain: Grain = Grain.DAY, periods: int = Query(default=30, ge=1, le=366),
             until: date | None = None, supplier_id: int | None = None, table: Literal["series", "products"] = "series",
             format: Format = "json", principal: Principal = Depends(require_roles("supplier", *PLATFORM_STAFF))):
    sid = _supplier_id(request, principal, supplier_id)
    end = _until(request, until)
    with sessions_of(request)() as s:
        data = figures.overview(s, Dim.SUPPLIER, str(sid), grain, periods, end, 0)
        products = figures.breakdown(s, Dim.PRODUCT, grain, end, supplier_id=sid, limit=1000)
    if format == "csv":
        if table == "products":
            return _csv(figures.to_csv(products, ("key", "label")), f"supplier-{sid}-products-{grain.value}")
        return _csv(figures.to_csv(data["series"], ("period_start",)), f"supplier-{sid}-{grain.value}")
    ranked = sorted(products, key=lambda r: (-r["units"], r["key"]))
    return data | {"supplier_id": sid, "products": products, "best_sellers": ranked[:5],
                   "slow_sellers": sorted(products, key=lambda r: (r["units"], r["key"]))[:5]}


@router.get("/promoter", summary="A promoter's sales and commission over time (promoters: their own)")
def promoter(request: Request, grain: Grain = Grain.DAY, periods: int = Query(default=30, ge=1, le=366),
             until: date | None = None, promoter_id: int | None = None, format: Format = "json",
             principal: Principal = Depends(require_roles("promoter", *PLATFORM_STAFF))):
    with sessions_of(request)() as s:
        if principal.role == "promoter":
            own = s.scalar(select(Promoter.id).where(Promoter.user_id == principal.user_id))
            if own is None:
                raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
            if promoter_id is not None and promoter_id != own:
                raise ApiError(403, "FORBIDDEN", "a promoter sees only its own figures")
            promoter_id = own
        elif promoter_id is None:
            raise ApiError(422, "PROMOTER_REQUIRED", "give promoter_id")
        data = figures.overview(s, Dim.PROMOTER, str(promoter_id), grain, periods, _until(request, until), 0)
    keep = ("period_start", "gmv_fen", "paid_orders", "paying_buyers", "units", "refund_fen", "commission_fen",
            "aov_fen")
    data["series"] = [{k: row[k] for k in keep} for row in data["series"]]
    if format == "csv":
        return _csv(figures.to_csv(data["series"], ("period_start",)), f"promoter-{promoter_id}-{grain.value}")
    return data | {"promoter_id": promoter_id}
