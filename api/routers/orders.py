from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, Depends, Header, Query, Request
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

from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import client_ip, run_update, sessions_of, temporal_of
from api.errors import ApiError, not_found
from api.views import (
    OrderOut,
    ShipToOut,
    Viewer,
    order_scope,
    order_view,
    order_visible,
    ship_to_view,
    viewer_of,
)
from db.models import (
    Order,
    Product,
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
log = structlog.get_logger()
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


# --- reading: what each role sees is decided in api/views.py ----------------------------------
ORDER_READERS = ("buyer", "promoter", "supplier", *PLATFORM_STAFF)


def _load_visible(request: Request, principal: Principal, order_no: str) -> tuple[Viewer, Order]:
    with sessions_of(request)() as s:
        viewer = viewer_of(s, principal)
        order = s.get(Order, order_no)
        # Someone else's order is indistinguishable from a missing one.
        if order is None or not order_visible(viewer, order):
            raise not_found(f"order {order_no}")
        order.lines, order.events  # noqa: B018 - load before the session closes
        return viewer, order


@router.get("/{order_no}", response_model=OrderOut, summary="An order with its status and history")
def get_order(order_no: str, request: Request,
              principal: Principal = Depends(require_roles(*ORDER_READERS))) -> OrderOut:
    return order_view(*_load_visible(request, principal, order_no))


@router.get("", response_model=list[OrderOut], summary="Orders I may see, newest first")
def list_orders(request: Request, status: OrderStatus | None = None, limit: int = Query(default=20, ge=1, le=100),
                offset: int = Query(default=0, ge=0),
                principal: Principal = Depends(require_roles(*ORDER_READERS))) -> list[OrderOut]:
    with sessions_of(request)() as s:
        viewer = viewer_of(s, principal)
        query = select(Order).where(order_scope(viewer))
        if status:
            query = query.where(Order.status == status)
        orders = s.scalars(query.order_by(Order.created_at.desc()).limit(limit).offset(offset)).all()
        for order in orders:
            order.lines, order.events  # noqa: B018
        return [out for out in (order_view(viewer, o) for o in orders) if out is not None]


@router.get("/{order_no}/ship-to", response_model=ShipToOut,
            summary="The full shipping address, for the supplier while it still has lines of the order to ship")
def ship_to(order_no: str, request: Request,
            principal: Principal = Depends(require_roles("supplier", *PLATFORM_STAFF))) -> ShipToOut:
    with sessions_of(request)() as s:
        viewer = viewer_of(s, principal)
        order = s.get(Order, order_no)
        found = ship_to_view(s, viewer, order) if order is not None else "NOT_FOUND"
        if found == "NOT_FOUND":
            raise not_found(f"order {order_no}")
        if isinstance(found, str):
            raise ApiError(409, found, "the full address is shown only while you have lines of this order to ship"
                           if found == "NOTHING_TO_SHIP" else "this order is not delivered by a supplier")
        # who read a buyer's full address, and when: ids only, never the address
        log.info("shipping address read", order_no=order_no, user_id=principal.user_id, role=principal.role)
        return found


# --- fulfilment ----------------------------------------------------------------------------
class ShipmentBody(BaseModel):
    carrier: str = Field(pattern=r"^[A-Za-z0-9]{2,32}$", description="carrier code, e.g. shunfeng, yuantong")
    waybill_no: str = Field(pattern=r"^[A-Za-z0-9]{6,40}$")


@router.post("/{order_no}/shipments", response_model=OrderProgress, summary="Supplier ships its part")
async def ship(order_no: str, body: ShipmentBody, request: Request,
               principal: Principal = Depends(require_roles("supplier"))) -> OrderProgress:
    def supplier_id() -> int:
        viewer, _ = _load_visible(request, principal, order_no)  # 404 unless the order has its goods
        return viewer.supplier_id

    shipment = ShipmentInput(supplier_id=await run_in_threadpool(supplier_id),
                             carrier=body.carrier, waybill_no=body.waybill_no)
    return await run_update(request, workflow_id(order_no), OrderWorkflow.ship, shipment)


@router.post("/{order_no}/confirm-receipt", response_model=OrderProgress, summary="Buyer confirms receipt")
async def confirm_receipt(order_no: str, request: Request,
                          principal: Principal = Depends(require_roles("buyer", "promoter"))) -> OrderProgress:
    _, order = await run_in_threadpool(_load_visible, request, principal, order_no)
    if order.buyer_user_id != principal.user_id:
        raise not_found(f"order {order_no}")
    return await run_update(request, workflow_id(order_no), OrderWorkflow.confirm_receipt)
