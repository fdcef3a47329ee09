from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
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
from api.errors import ApiError, not_found, update_refused
from api.views import (
    OrderOut,
    ParcelOut,
    ShipToOut,
    Viewer,
    order_scope,
    order_view,
    order_visible,
    parcels_view,
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
BUYER_MEMO = "buyer_user_id"
ORDER_NO_PATTERN = r"^[0-9A-Za-z_\-|*]{6,32}$"  # an out_trade_no
log = structlog.get_logger()


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
    prepay: PrepayParams | None = Field(default=None, description="the arguments of wx.requestPayment (a pre-sale "
                                                                  "order: the deposit's); none in a 202 answer")
    presale: PresaleInfo | None = None
    payment_url: str | None = Field(default=None, description="where the payment parameters can always be "
                                                              "fetched again: GET /orders/{order_no}/payment")


# --- placement -----------------------------------------------------------------------------
def check_placeable(request: Request, principal: Principal, body: PlaceOrderBody,
                    *, check_stock: bool = True) -> tuple[str, int | None]:
    """Fail fast with a clear 4xx on what the request itself gets wrong. Stock is reserved
    atomically by the workflow (a flash sale's by its claim); nothing is written here."""
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
            if check_stock and sku.stock < line.quantity:
                raise ApiError(409, "OUT_OF_STOCK", f"SKU {sku.id} has only {sku.stock} left")
            if body.window_id is not None and s.get(WindowProduct, (body.window_id, product.id)) is None:
                raise ApiError(422, "NOT_IN_WINDOW", f"product {product.id} is not in window {body.window_id}")
        if len({ln.sku_id for ln in body.lines}) != len(body.lines):
            raise ApiError(422, "DUPLICATE_SKU", "each SKU may appear once; raise its quantity instead")
        if body.channels_order_id and s.scalar(select(Order.order_no).where(
                Order.channels_order_id == body.channels_order_id)):
            raise ApiError(409, "CHANNELS_ORDER_TAKEN", f"Channels order {body.channels_order_id} has an order already")
        return openid, promoter_id


def order_input(request: Request, principal: Principal, body: PlaceOrderBody, order_no: str, openid: str,
                device_id: str | None, flash_sale_id: int | None = None,
                group_id: int | None = None) -> OrderWorkflowInput:
    """What the OrderWorkflow starts with: the order, the buyer's keyed fingerprints, the periods."""
    settings = request.app.state.settings
    keys = settings.risk_hash_keys
    raw = {"device": device_id, "ip": client_ip(request, settings),
           "address": address_key(body.address.model_dump() if body.address else None)}
    fps = {kind: fingerprint(keys.current, kind, value) for kind, value in raw.items()}
    earlier = [fp for key in keys.all[1:] for kind, value in raw.items()
               if (fp := fingerprint(key, kind, value)) is not None]
    return OrderWorkflowInput(
        order=PlaceOrderInput(order_no=order_no, buyer_user_id=principal.user_id, buyer_openid=openid,
                              window_id=body.window_id, source=body.source, lines=body.lines,
                              fulfilment=body.fulfilment, address=body.address, outlet_id=body.outlet_id,
                              coupon_code=body.coupon_code, channels_order_id=body.channels_order_id,
                              flash_sale_id=flash_sale_id, group_id=group_id,
                              device_fp=fps["device"], ip_fp=fps["ip"], address_fp=fps["address"],
                              earlier_fps=earlier),
        timings=settings.order_timings())


async def start_order_workflow(request: Request, inp: OrderWorkflowInput, promoter_id: int | None) -> Client:
    """Start `order-{order_no}` (once: the same order number again finds it running)."""
    order_no = inp.order.order_no
    attributes = [SearchAttributePair(ORDER_NO, order_no),
                  SearchAttributePair(BUSINESS_STATUS, OrderStatus.PENDING_PAYMENT.value)]
    if promoter_id is not None:
        attributes.append(SearchAttributePair(PROMOTER_ID, str(promoter_id)))
    client = await temporal_of(request)
    try:
        await client.start_workflow(
            OrderWorkflow.run, inp, id=workflow_id(order_no), task_queue=request.app.state.settings.task_queue,
            search_attributes=TypedSearchAttributes(attributes),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={BUYER_MEMO: inp.order.buyer_user_id})  # who may fetch its payment before its row exists
    except WorkflowAlreadyStartedError:
        pass  # the same Idempotency-Key again: answer with the order already placed
    return client


def order_no_for(principal: Principal, idempotency_key: str | None, now: datetime) -> str:
    if not idempotency_key:
        return new_order_no(now)
    digest = int(hashlib.sha256(f"{principal.user_id}:{idempotency_key}".encode()).hexdigest(), 16)
    return f"CC{now:%Y%m%d}{digest % 10**14:014d}"


async def _prepay_progress(client: Client, order_no: str, wait: float) -> OrderProgress | None:
    """The order's progress once its WeChat Pay parameters exist (or placement failed); None
    when they are not there within `wait` seconds (worker busy or down, WeChat Pay slow).
    Re-asks when the server ends an update's long poll."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    handle = client.get_workflow_handle(workflow_id(order_no))
    deadline = asyncio.get_running_loop().time() + wait
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            return await asyncio.wait_for(handle.execute_update(OrderWorkflow.payment_params), left)
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            continue
        except TimeoutError:
            break
        except WorkflowUpdateFailedError as err:
            raise update_refused(err) from err
        except RPCError as err:
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise
            # the process has ended (placement refused, closed unpaid): how it ended
            try:
                ended = await handle.query(OrderWorkflow.progress)
            except RPCError:
                ended = None
            if ended is None:
                raise ApiError(409, "ORDER_NOT_PAYABLE", f"order {order_no} is no longer payable") from err
            return ended
    return None


def payment_path(order_no: str) -> str:
    return f"/orders/{order_no}/payment"


def _not_ready(order_no: str) -> ApiError:
    return ApiError(503, "PAYMENT_NOT_READY",
                    f"the payment of order {order_no} is being prepared; fetch GET {payment_path(order_no)} again",
                    headers={"Retry-After": "2"})


def _placement_refused(order_no: str, failure: str) -> ApiError:
    status = 409 if failure in ("OUT_OF_STOCK", "NOT_ON_SALE", "COUPON_USED_UP", "COUPON_ALREADY_USED",
                                 "COUPON_NOT_CLAIMED") else 422
    return ApiError(status, failure, f"order {order_no} could not be placed: {failure}")


@router.post("", status_code=201, response_model=PlacedOut, summary="Place an order and get WeChat Pay parameters",
             responses={202: {"model": PlacedOut, "description":
                              "placed, but the WeChat Pay parameters are not ready yet: fetch them from "
                              "`payment_url` (GET /orders/{order_no}/payment)"}})
async def place_order(body: PlaceOrderBody, request: Request,
                      principal: Principal = Depends(require_roles("buyer", "promoter")),
                      idempotency_key: str | None = Header(default=None, max_length=64),
                      device_id: str | None = Header(default=None, alias="X-Device-Id", max_length=128,
                                                     description="the client's device id, for risk checks"),
                      ):
    settings = request.app.state.settings
    openid, promoter_id = await run_in_threadpool(check_placeable, request, principal, body)
    order_no = order_no_for(principal, idempotency_key, datetime.now(ZoneInfo(settings.settlement_timezone)))
    inp = order_input(request, principal, body, order_no, openid, device_id)
    client = await start_order_workflow(request, inp, promoter_id)
    progress = await _prepay_progress(client, order_no, settings.order_prepay_wait_seconds)
    if progress is None:  # answer now; the buyer's app fetches the payment when it is ready
        placed = PlacedOut(order_no=order_no, status=OrderStatus.PENDING_PAYMENT, payment_url=payment_path(order_no))
        return JSONResponse(jsonable_encoder(placed), status_code=202, headers={"Location": payment_path(order_no)})
    if progress.failure:
        raise _placement_refused(order_no, progress.failure)
    return PlacedOut(order_no=order_no, status=progress.status, total_fen=progress.total_fen,
                     prepay=progress.prepay, presale=progress.presale, payment_url=payment_path(order_no))


class PaymentOut(BaseModel):
    order_no: str
    status: OrderStatus
    total_fen: int | None = Field(default=None, description="the order's total (a pre-sale order's deposit is "
                                                            "in presale.deposit_fen)")
    prepay: PrepayParams = Field(description="the arguments of wx.requestPayment")
    presale: PresaleInfo | None = None


def _check_payer(request: Request, principal: Principal, order_no: str) -> bool:
    """404 unless this is the principal's own order; 409 once it is past paying. False when
    the order has no row yet (its workflow has not placed it)."""
    with sessions_of(request)() as s:
        order = s.get(Order, order_no)
        if order is None:
            return False
        if order.buyer_user_id != principal.user_id:
            raise not_found(f"order {order_no}")
        if order.status != OrderStatus.PENDING_PAYMENT:
            raise ApiError(409, "ORDER_NOT_PAYABLE", f"order {order_no} is {order.status}: nothing to pay")
        return True


async def _started_by(client: Client, order_no: str) -> int | None:
    from temporalio.service import RPCError

    try:
        described = await client.get_workflow_handle(workflow_id(order_no)).describe()
        return (await described.memo()).get(BUYER_MEMO)
    except RPCError:
        return None


@router.get("/{order_no}/payment", response_model=PaymentOut,
            summary="The current wx.requestPayment parameters of my unpaid order",
            description="The same prepay while WeChat Pay's prepay_id is valid, a fresh one once it expired "
                        "(2 h); 409 ORDER_NOT_PAYABLE once the order is paid or closed; 503 PAYMENT_NOT_READY "
                        "(with Retry-After) while the WeChat Pay order is still being made.")
async def get_payment(request: Request, order_no: str = Path(pattern=ORDER_NO_PATTERN),
                      principal: Principal = Depends(require_roles("buyer", "promoter"))) -> PaymentOut:
    client = await temporal_of(request)
    if not await run_in_threadpool(_check_payer, request, principal, order_no):
        if await _started_by(client, order_no) != principal.user_id:
            raise not_found(f"order {order_no}")
    progress = await _prepay_progress(client, order_no, request.app.state.settings.order_prepay_wait_seconds)
    if progress is None:
        raise _not_ready(order_no)
    if progress.failure:
        raise _placement_refused(order_no, progress.failure)
    if progress.status != OrderStatus.PENDING_PAYMENT or progress.prepay is None:
        raise ApiError(409, "ORDER_NOT_PAYABLE", f"order {order_no} is {progress.status}: nothing to pay")
    return PaymentOut(order_no=order_no, status=progress.status, total_fen=progress.total_fen,
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


@router.get("/{order_no}/tracking", response_model=list[ParcelOut],
            summary="The order's parcels with every carrier event (the full tracking trace), newest first",
            description="The buyer and staff see every parcel, a supplier its own; a promoter follows the "
                        "order's status only (404).")
def tracking(order_no: str, request: Request,
             principal: Principal = Depends(require_roles(*ORDER_READERS))) -> list[ParcelOut]:
    with sessions_of(request)() as s:
        viewer = viewer_of(s, principal)
        order = s.get(Order, order_no)
        parcels = parcels_view(s, viewer, order) if order is not None else None
        if parcels is None:
            raise not_found(f"order {order_no}")
        return parcels


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


@router.post("/{order_no}/extend-receipt", response_model=OrderProgress,
             summary="Buyer pushes automatic confirmation of receipt back, once (receipt_extension)")
async def extend_receipt(order_no: str, request: Request,
                         principal: Principal = Depends(require_roles("buyer", "promoter"))) -> OrderProgress:
    _, order = await run_in_threadpool(_load_visible, request, principal, order_no)
    if order.buyer_user_id != principal.user_id:
        raise not_found(f"order {order_no}")
    return await run_update(request, workflow_id(order_no), OrderWorkflow.extend_receipt)
