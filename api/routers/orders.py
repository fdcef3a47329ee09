from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from temporalio.client import (
    Client,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import PLATFORM_STAFF, Principal, current_principal, require_roles
from api.deps import client_ip, run_update, sessions_of, temporal_of
from api.errors import ApiError, not_found
from db.models import (
    Order,
    OrderLine,
    Product,
    Promoter,
    Sku,
    Supplier,
    User,
    Window,
    WindowProduct,
)
from domain.order_process import OrderWorkflowInput
from domain.order_status import OrderStatus
from domain.orders import (
    LineRequest,
    OrderProgress,
    PlaceOrderInput,
    PrepayParams,
    ShipmentInput,
    ShippingAddress,
    new_order_no,
)
from domain.presale import PresaleInfo
from domain.risk import address_key, fingerprint
from domain.search_attributes import BUSINESS_STATUS, ORDER_NO, PROMOTER_ID
from workflows.order import OrderWorkflow, workflow_id

router = APIRouter(prefix="/orders", tags=["orders"])
PREPAY_WAIT_SECONDS = 20.0


class PlaceOrderBody(BaseModel):
    window_id: int | None = Field(default=None, description="the promoter window the order came from")
    source: str = Field(default="window", pattern="^(window|share_link|live|channels)$",
                        description="where the buyer came from: the window, a shared link, a live-stream cart "
                                    "or a WeChat Channels shop order (channels_order_id)")
    channels_order_id: str | None = Field(default=None, pattern=r"^[0-9]{6,32}$",
                                          description="source channels: the shop's order, shipped through the shop too")
    lines: list[LineRequest] = Field(min_length=1, max_length=50)
    fulfilment: Literal["delivery", "pickup"] = "delivery"
    address: ShippingAddress | None = Field(default=None, description="required for delivery")
    outlet_id: int | None = Field(default=None, description="required for pickup: see GET /outlets")
    coupon_code: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _where_it_goes(self) -> PlaceOrderBody:
        if self.fulfilment == "delivery" and (self.address is None or self.outlet_id is not None):
            raise ValueError("a delivery order needs an address and no outlet_id")
        if self.fulfilment == "pickup" and self.outlet_id is None:
            raise ValueError("a pickup order needs an outlet_id")
        if (self.source == "channels") != (self.channels_order_id is not None):
            raise ValueError("channels_order_id is given exactly when the source is channels")
        return self


class PlacedOut(BaseModel):
    order_no: str
    status: OrderStatus
    total_fen: int | None = None
    prepay: PrepayParams | None = Field(default=None, description="for a pre-sale order: the deposit's")
    presale: PresaleInfo | None = None


class LineOut(BaseModel):
    id: int
    sku_id: int
    supplier_id: int
    title: str
    unit_price_fen: int
    quantity: int
    list_fen: int
    paid_fen: int
    refund_claimed_quantity: int


class EventOut(BaseModel):
    status: str
    note: str
    at: datetime


class OrderOut(BaseModel):
    order_no: str
    status: OrderStatus
    status_label: str
    source: str
    window_id: int | None
    promoter_id: int | None
    total_fen: int
    discount_fen: int
    fulfilment: str
    outlet_id: int | None
    open_refunds: int
    shipping_address: dict | None
    transaction_id: str | None
    created_at: datetime
    paid_at: datetime | None
    completed_at: datetime | None
    lines: list[LineOut]
    history: list[EventOut]


# --- placement -----------------------------------------------------------------------------
def _check_placeable(request: Request, principal: Principal, body: PlaceOrderBody) -> tuple[str, int | None]:
    """Fail fast with a clear 4xx on what the request itself gets wrong. Stock is reserved
    atomically by the workflow; nothing is written here."""
    with sessions_of(request)() as s:
        openid = s.scalar(select(User.openid).where(User.id == principal.user_id))
        if not openid:
            raise ApiError(403, "NO_WECHAT_IDENTITY", "log in with WeChat to pay")
        promoter_id = None
        if body.window_id is not None:
            window = s.get(Window, body.window_id)
            if window is None:
                raise ApiError(422, "WINDOW_NOT_FOUND", f"window {body.window_id} does not exist")
            promoter_id = window.promoter_id
        for line in body.lines:
            row = s.execute(select(Sku, Product, Supplier).join(Product, Sku.product_id == Product.id)
                            .join(Supplier, Product.supplier_id == Supplier.id)
                            .where(Sku.id == line.sku_id)).first()
            if row is None:
                raise ApiError(422, "SKU_NOT_FOUND", f"SKU {line.sku_id} does not exist")
            sku, product, supplier = row
            if product.status != "listed" or supplier.status != "active":
                raise ApiError(409, "NOT_ON_SALE", f"SKU {sku.id} is not on sale")
            if sku.stock < line.quantity:
                raise ApiError(409, "OUT_OF_STOCK", f"SKU {sku.id} has only {sku.stock} left")
            if body.window_id is not None and s.get(WindowProduct, (body.window_id, product.id)) is None:
                raise ApiError(422, "NOT_IN_WINDOW", f"product {product.id} is not in window {body.window_id}")
        if len({ln.sku_id for ln in body.lines}) != len(body.lines):
            raise ApiError(422, "DUPLICATE_SKU", "each SKU may appear once; raise its quantity instead")
        if body.channels_order_id and s.scalar(select(Order.order_no).where(
                Order.channels_order_id == body.channels_order_id)):
            raise ApiError(409, "CHANNELS_ORDER_TAKEN", f"Channels order {body.channels_order_id} has an order already")
        return openid, promoter_id


def _order_no_for(principal: Principal, idempotency_key: str | None, now: datetime) -> str:
    if not idempotency_key:
        return new_order_no(now)
    digest = int(hashlib.sha256(f"{principal.user_id}:{idempotency_key}".encode()).hexdigest(), 16)
    return f"CC{now:%Y%m%d}{digest % 10**14:014d}"


async def _wait_for_prepay(client: Client, order_no: str) -> OrderProgress:
    """Wait for the WeChat Pay order, re-asking when the server ends an update's long poll
    (it does while a partner keeps failing and the activity is retrying)."""
    handle = client.get_workflow_handle(workflow_id(order_no))
    deadline = asyncio.get_running_loop().time() + PREPAY_WAIT_SECONDS
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            return await asyncio.wait_for(handle.execute_update(OrderWorkflow.payment_params), left)
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            continue
        except TimeoutError:
            break
    raise ApiError(504, "PAYMENT_NOT_READY", f"order {order_no} is placed; fetch it again for payment")


@router.post("", status_code=201, response_model=PlacedOut, summary="Place an order and get WeChat Pay parameters")
async def place_order(body: PlaceOrderBody, request: Request,
                      principal: Principal = Depends(require_roles("buyer", "promoter")),
                      idempotency_key: str | None = Header(default=None, max_length=64),
                      device_id: str | None = Header(default=None, alias="X-Device-Id", max_length=128,
                                                     description="the client's device id, for risk checks"),
                      ) -> PlacedOut:
    settings = request.app.state.settings
    openid, promoter_id = await run_in_threadpool(_check_placeable, request, principal, body)
    order_no = _order_no_for(principal, idempotency_key, datetime.now(ZoneInfo(settings.settlement_timezone)))
    key = settings.resolved_risk_key
    inp = OrderWorkflowInput(
        order=PlaceOrderInput(order_no=order_no, buyer_user_id=principal.user_id, buyer_openid=openid,
                              window_id=body.window_id, source=body.source, lines=body.lines,
                              fulfilment=body.fulfilment, address=body.address, outlet_id=body.outlet_id,
                              coupon_code=body.coupon_code, channels_order_id=body.channels_order_id,
                              device_fp=fingerprint(key, "device", device_id),
                              ip_fp=fingerprint(key, "ip", client_ip(request, settings)),
                              address_fp=fingerprint(key, "address", address_key(
                                  body.address.model_dump() if body.address else None))),
        timings=settings.order_timings())
    attributes = [SearchAttributePair(ORDER_NO, order_no),
                  SearchAttributePair(BUSINESS_STATUS, OrderStatus.PENDING_PAYMENT.value)]
    if promoter_id is not None:
        attributes.append(SearchAttributePair(PROMOTER_ID, str(promoter_id)))
    client = await temporal_of(request)
    try:
        await client.start_workflow(
            OrderWorkflow.run, inp, id=workflow_id(order_no), task_queue=settings.task_queue,
            search_attributes=TypedSearchAttributes(attributes),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    except WorkflowAlreadyStartedError:
        pass  # the same Idempotency-Key again: answer with the order already placed
    progress = await _wait_for_prepay(client, order_no)
    if progress.failure:
        status = 409 if progress.failure in ("OUT_OF_STOCK", "NOT_ON_SALE", "COUPON_USED_UP",
                                             "COUPON_ALREADY_USED") else 422
        raise ApiError(status, progress.failure, f"order {order_no} could not be placed: {progress.failure}")
    return PlacedOut(order_no=order_no, status=progress.status, total_fen=progress.total_fen,
                     prepay=progress.prepay, presale=progress.presale)


# --- reading -------------------------------------------------------------------------------
def _visible_to(s, principal: Principal, order: Order) -> bool:
    if principal.role in PLATFORM_STAFF:
        return True
    if principal.role == "buyer":
        return order.buyer_user_id == principal.user_id
    if principal.role == "promoter":
        promoter_id = s.scalar(select(Promoter.id).where(Promoter.user_id == principal.user_id))
        return order.buyer_user_id == principal.user_id or (
            promoter_id is not None and order.promoter_id == promoter_id)
    if principal.role == "supplier":
        supplier_id = _supplier_id_of(s, principal)
        return any(line.supplier_id == supplier_id for line in order.lines)
    return False


def _supplier_id_of(s, principal: Principal) -> int | None:
    return s.scalar(select(Supplier.id).where(Supplier.owner_user_id == principal.user_id))


def _order_out(order: Order) -> OrderOut:
    status = OrderStatus(order.status)
    label = OrderStatus.AFTER_SALE.label if order.open_refunds else status.label
    return OrderOut(
        order_no=order.order_no, status=status, status_label=label, source=order.source,
        window_id=order.window_id, promoter_id=order.promoter_id, total_fen=order.total_fen,
        discount_fen=order.discount_fen, fulfilment=order.fulfilment, outlet_id=order.outlet_id,
        open_refunds=order.open_refunds,
        shipping_address=order.shipping_address, transaction_id=order.transaction_id,
        created_at=order.created_at, paid_at=order.paid_at, completed_at=order.completed_at,
        lines=[LineOut.model_validate(line, from_attributes=True) for line in order.lines],
        history=[EventOut.model_validate(e, from_attributes=True) for e in order.events])


def _load_visible(request: Request, principal: Principal, order_no: str) -> Order:
    with sessions_of(request)() as s:
        order = s.get(Order, order_no)
        # Someone else's order is indistinguishable from a missing one.
        if order is None or not _visible_to(s, principal, order):
            raise not_found(f"order {order_no}")
        order.lines, order.events  # noqa: B018 - load before the session closes
        return order


@router.get("/{order_no}", response_model=OrderOut, summary="An order with its status and history")
def get_order(order_no: str, request: Request, principal: Principal = Depends(current_principal)) -> OrderOut:
    return _order_out(_load_visible(request, principal, order_no))


@router.get("", response_model=list[OrderOut], summary="Orders I may see, newest first")
def list_orders(request: Request, status: OrderStatus | None = None, limit: int = 20, offset: int = 0,
                principal: Principal = Depends(current_principal)) -> list[OrderOut]:
    with sessions_of(request)() as s:
        query = select(Order)
        if principal.role == "buyer":
            query = query.where(Order.buyer_user_id == principal.user_id)
        elif principal.role == "promoter":
            promoter_id = s.scalar(select(Promoter.id).where(Promoter.user_id == principal.user_id))
            query = query.where((Order.promoter_id == promoter_id) | (Order.buyer_user_id == principal.user_id))
        elif principal.role == "supplier":
            supplier_id = _supplier_id_of(s, principal)
            query = query.where(Order.order_no.in_(
                select(OrderLine.order_no).where(OrderLine.supplier_id == supplier_id)))
        elif principal.role not in PLATFORM_STAFF:
            return []
        if status:
            query = query.where(Order.status == status)
        orders = s.scalars(query.order_by(Order.created_at.desc()).limit(min(limit, 100)).offset(offset)).all()
        for order in orders:
            order.lines, order.events  # noqa: B018
        return [_order_out(o) for o in orders]


# --- fulfilment ----------------------------------------------------------------------------
class ShipmentBody(BaseModel):
    carrier: str = Field(pattern=r"^[A-Za-z0-9]{2,32}$", description="carrier code, e.g. shunfeng, yuantong")
    waybill_no: str = Field(pattern=r"^[A-Za-z0-9]{6,40}$")


@router.post("/{order_no}/shipments", response_model=OrderProgress, summary="Supplier ships its part")
async def ship(order_no: str, body: ShipmentBody, request: Request,
               principal: Principal = Depends(require_roles("supplier"))) -> OrderProgress:
    def supplier_id() -> int:
        _load_visible(request, principal, order_no)  # 404 unless the order has this supplier's goods
        with sessions_of(request)() as s:
            return _supplier_id_of(s, principal)

    shipment = ShipmentInput(supplier_id=await run_in_threadpool(supplier_id),
                             carrier=body.carrier, waybill_no=body.waybill_no)
    return await run_update(request, workflow_id(order_no), OrderWorkflow.ship, shipment)


@router.post("/{order_no}/confirm-receipt", response_model=OrderProgress, summary="Buyer confirms receipt")
async def confirm_receipt(order_no: str, request: Request,
                          principal: Principal = Depends(require_roles("buyer", "promoter"))) -> OrderProgress:
    order = await run_in_threadpool(_load_visible, request, principal, order_no)
    if order.buyer_user_id != principal.user_id:
        raise not_found(f"order {order_no}")
    return await run_update(request, workflow_id(order_no), OrderWorkflow.confirm_receipt)


@router.post("/{order_no}/extend-receipt", response_model=OrderProgress,
             summary="Buyer pushes automatic confirmation of receipt back, once (receipt_extension)")
async def extend_receipt(order_no: str, request: Request,
                         principal: Principal = Depends(require_roles("buyer", "promoter"))) -> OrderProgress:
    order = await run_in_threadpool(_load_visible, request, principal, order_no)
    if order.buyer_user_id != principal.user_id:
        raise not_found(f"order {order_no}")
    return await run_update(request, workflow_id(order_no), OrderWorkflow.extend_receipt)
