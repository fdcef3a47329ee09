"""Flash sales (秒杀): a supplier sets units of a SKU aside at a lower price for a while; buyers
claim them with an answer in milliseconds (domain/flash_sales.py, activities/flash_sales.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities import flash_sales
from api.auth import Principal, require_roles, signed_in
from api.deps import sessions_of, temporal_of
from api.errors import ApiError, not_found
from api.routers.orders import (
    PlaceOrderBody,
    check_placeable,
    order_input,
    order_no_for,
    payment_path,
    start_order_workflow,
)
from db.flash_models import FlashSale, FlashSaleBuyer, FlashSaleClaim
from db.models import Supplier
from domain.flash_sales import (
    FlashSaleInput,
    FlashSaleRefused,
    limit_reached,
    refused_at_once,
    sale_status,
    workflow_id,
)
from domain.order_status import OrderStatus
from domain.orders import LineRequest, ShippingAddress
from workflows.flash_sale import FlashSaleWorkflow

router = APIRouter(prefix="/flash-sales", tags=["flash sales"])
REFUSED_STATUS = {"SKU_NOT_FOUND": 404, "FLASH_SALE_NOT_FOUND": 404, "NOT_YOUR_SKU": 403}


class FlashSaleBody(BaseModel):
    sku_id: int = Field(gt=0, lt=2**63)
    price_fen: int = Field(gt=0, le=10**10, description="the flash price per unit, below the SKU's price")
    quantity: int = Field(gt=0, le=100_000, description="units set aside from the SKU's stock now")
    per_buyer_limit: int = Field(default=1, gt=0, le=999)
    starts_at: AwareDatetime = Field(description="with its time zone, e.g. 2026-12-12T20:00:00+08:00")
    ends_at: AwareDatetime


class FlashSaleOut(BaseModel):
    id: int
    sku_id: int
    price_fen: int
    quantity: int
    left: int
    per_buyer_limit: int
    starts_at: datetime
    ends_at: datetime
    status: Literal["upcoming", "running", "ended"]


class FlashOrderBody(BaseModel):
    quantity: int = Field(default=1, gt=0, le=999)
    window_id: int | None = Field(default=None, gt=0, lt=2**63)
    source: str = Field(default="window", pattern="^(window|share_link|live)$")
    fulfilment: Literal["delivery", "pickup"] = "delivery"
    address: ShippingAddress | None = None
    outlet_id: int | None = Field(default=None, gt=0, lt=2**63)


class FlashOrderOut(BaseModel):
    order_no: str
    status: OrderStatus
    flash_sale_id: int
    quantity: int
    unit_price_fen: int
    payment: str = Field(description="where the wx.requestPayment parameters are fetched once ready")


def _out(sale: FlashSale, now: datetime) -> FlashSaleOut:
    status = sale_status(active=sale.status == "active", starts_at=sale.starts_at, ends_at=sale.ends_at, now=now)
    return FlashSaleOut(id=sale.id, sku_id=sale.sku_id, price_fen=sale.price_fen, quantity=sale.quantity,
                        left=0 if status == "ended" else sale.quantity - sale.sold,
                        per_buyer_limit=sale.per_buyer_limit, starts_at=sale.starts_at, ends_at=sale.ends_at,
                        status=status)


def active_supplier_id(s, principal: Principal, what: str) -> int:
    """The caller's supplier, when it is active; 403 NOT_AN_ACTIVE_SUPPLIER otherwise."""
    supplier_id = s.scalar(select(Supplier.id).where(Supplier.owner_user_id == principal.user_id,
                                                     Supplier.status == "active"))
    if supplier_id is None:
        raise ApiError(403, "NOT_AN_ACTIVE_SUPPLIER", f"only an active supplier {what}")
    return supplier_id


def _refused(err: FlashSaleRefused) -> ApiError:
    return ApiError(REFUSED_STATUS.get(err.code, 409 if err.code.startswith("FLASH_SALE_") else 422),
                    err.code, str(err))


@router.post("", status_code=201, response_model=FlashSaleOut,
             summary="Set units of one of my SKUs aside for a flash sale (supplier)")
async def create(body: FlashSaleBody, request: Request,
                 principal: Principal = Depends(require_roles("supplier"))) -> FlashSaleOut:
    now = datetime.now(UTC)

    def write() -> FlashSaleOut:
        with sessions_of(request).begin() as s:
            supplier_id = active_supplier_id(s, principal, "sells in flash sales")
            try:
                sale = flash_sales.create_sale(s, supplier_id=supplier_id, sku_id=body.sku_id,
                                               price_fen=body.price_fen, quantity=body.quantity,
                                               per_buyer_limit=body.per_buyer_limit, starts_at=body.starts_at,
                                               ends_at=body.ends_at, now=now)
            except FlashSaleRefused as err:
                raise _refused(err) from err
            return _out(sale, now)

    out = await run_in_threadpool(write)
    client = await temporal_of(request)
    try:
        await client.start_workflow(FlashSaleWorkflow.run, FlashSaleInput(flash_sale_id=out.id, ends_at=out.ends_at),
                                    id=workflow_id(out.id), task_queue=request.app.state.settings.task_queue,
                                    # sale ids never repeat; a test database that restarts them may
                                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
    except WorkflowAlreadyStartedError:
        pass
    return out


@router.get("", response_model=list[FlashSaleOut], summary="Flash sales running or about to start")
def running(request: Request, sku_id: int | None = Query(default=None, gt=0, lt=2**63),
            limit: int = Query(default=20, ge=1, le=100), offset: int = Query(default=0, ge=0, le=100_000),
            _: Principal = Depends(signed_in)) -> list[FlashSaleOut]:
    now = datetime.now(UTC)
    with sessions_of(request)() as s:
        query = select(FlashSale).where(FlashSale.status == "active", FlashSale.ends_at > now)
        if sku_id is not None:
            query = query.where(FlashSale.sku_id == sku_id)
        return [_out(sale, now) for sale in s.scalars(query.order_by(FlashSale.starts_at, FlashSale.id)
                                                      .limit(limit).offset(offset))]


@router.get("/{flash_sale_id}", response_model=FlashSaleOut, summary="One flash sale and how many units are left")
def one(flash_sale_id: int, request: Request, _: Principal = Depends(signed_in)) -> FlashSaleOut:
    with sessions_of(request)() as s:
        sale = s.get(FlashSale, flash_sale_id) if 0 < flash_sale_id < 2**63 else None
        if sale is None:
            raise not_found(f"flash sale {flash_sale_id}")
        return _out(sale, datetime.now(UTC))


@router.post("/{flash_sale_id}/orders", status_code=202, response_model=FlashOrderOut,
             summary="Claim flash-sale units: answered at once (sold out, limit reached, not started, ended); "
                     "the order then goes on like any other")
async def buy(flash_sale_id: int, body: FlashOrderBody, request: Request,
              principal: Principal = Depends(require_roles("buyer", "promoter")),
              idempotency_key: str | None = Header(default=None, max_length=64),
              device_id: str | None = Header(default=None, alias="X-Device-Id", max_length=128)) -> FlashOrderOut:
    if not 0 < flash_sale_id < 2**63:
        raise not_found(f"flash sale {flash_sale_id}")
    settings = request.app.state.settings
    now = datetime.now(UTC)
    order_no = order_no_for(principal, idempotency_key, now.astimezone(ZoneInfo(settings.settlement_timezone)))

    def claim() -> tuple[FlashSale, str, int | None, PlaceOrderBody]:
        with sessions_of(request)() as s:
            sale = s.get(FlashSale, flash_sale_id)
            if sale is None:
                raise not_found(f"flash sale {flash_sale_id}")
            refusal = refused_at_once(now=now, starts_at=sale.starts_at, ends_at=sale.ends_at,
                                      left=sale.quantity - sale.sold, total=sale.quantity, status=sale.status,
                                      wanted=body.quantity)
            if refusal is None:  # the buyer's count is read only for a sale that could still sell
                bought = s.get(FlashSaleBuyer, (flash_sale_id, principal.user_id))
                if bought is not None and bought.quantity + body.quantity > sale.per_buyer_limit:
                    refusal = limit_reached(sale.per_buyer_limit)
            if refusal is not None and s.get(FlashSaleClaim, order_no) is None:  # a retried claim is answered again
                raise _refused(refusal)
            order = PlaceOrderBody(window_id=body.window_id, source=body.source, fulfilment=body.fulfilment,
                                   address=body.address, outlet_id=body.outlet_id,
                                   lines=[LineRequest(sku_id=sale.sku_id, quantity=body.quantity)])
        openid, promoter_id = check_placeable(request, principal, order, check_stock=False)
        with sessions_of(request).begin() as s:
            try:
                sale = flash_sales.claim(s, flash_sale_id=flash_sale_id, buyer_user_id=principal.user_id,
                                         quantity=body.quantity, order_no=order_no, now=now)
            except FlashSaleRefused as err:
                raise _refused(err) from err
            return sale, openid, promoter_id, order

    sale, openid, promoter_id, order = await run_in_threadpool(claim)
    await start_order_workflow(request, order_input(request, principal, order, order_no, openid, device_id,
                                                    flash_sale_id=flash_sale_id), promoter_id)
    return FlashOrderOut(order_no=order_no, status=OrderStatus.PENDING_PAYMENT, flash_sale_id=flash_sale_id,
                         quantity=body.quantity, unit_price_fen=sale.price_fen, payment=payment_path(order_no))
