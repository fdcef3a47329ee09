"""The cart (购物车) and its checkout: goods of many suppliers, each line keeping the promoter
window it was added from; a quote of goods and freight per order before paying; checkout into
one order per supplier and window (domain/cart.py), each an ordinary order (the OrderWorkflow,
stock reserved, risk fingerprints, coupon, payment) delivered to an address-book entry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from activities import freight
from activities.coupons import best_claimed
from api.auth import Principal, require_roles
from api.deps import sessions_of
from api.errors import ApiError, not_found
from api.routers.addresses import address_of, shipping_address
from api.routers.orders import (
    PlaceOrderBody,
    _placement_refused,
    _prepay_progress,
    check_placeable,
    order_input,
    order_no_for,
    payment_path,
    start_order_workflow,
)
from db.models import Product, Sku, Supplier, Window, WindowProduct
from db.presale_models import SkuPresale
from db.storefront_models import CartItem
from domain.cart import CartLine, OrderGroup, split_into_orders
from domain.freight import NotDeliverable
from domain.order_status import OrderStatus
from domain.orders import LineRequest, PrepayParams, ShippingAddress

router = APIRouter(prefix="/cart", tags=["cart"])
BUYERS = ("buyer", "promoter")
ID = Path(ge=1, le=2**31 - 1)
MAX_UNITS = 999


class AddItemBody(BaseModel):
    sku_id: int = Field(gt=0, le=2**31 - 1)
    quantity: int = Field(default=1, gt=0, le=MAX_UNITS)
    window_id: int | None = Field(default=None, gt=0, le=2**31 - 1,
                                  description="the promoter window the buyer added it from: its promoter is "
                                              "credited with the sale (kept from the first add)")


class QuantityBody(BaseModel):
    quantity: int = Field(gt=0, le=MAX_UNITS)


class CartItemOut(BaseModel):
    id: int
    sku_id: int
    product_id: int
    title: str
    supplier_id: int
    window_id: int | None
    quantity: int
    unit_price_fen: int
    on_sale: bool
    in_stock: bool


class SupplierCoupon(BaseModel):
    supplier_id: int = Field(gt=0, le=2**31 - 1)
    coupon_code: str = Field(min_length=1, max_length=32)


class Selection(BaseModel):
    address_id: int = Field(gt=0, le=2**31 - 1, description="an address of my address book (GET /addresses)")
    item_ids: list[int] | None = Field(default=None, min_length=1, max_length=100,
                                       description="cart items to take; none: the whole cart")

    @model_validator(mode="after")
    def _distinct(self):
        if self.item_ids is not None and len(set(self.item_ids)) != len(self.item_ids):
            raise ValueError("each cart item may appear once")
        return self


class QuoteBody(Selection):
    lines: list[LineRequest] | None = Field(default=None, min_length=1, max_length=50,
                                            description="quote these SKUs instead of the cart (buy now)")


class CheckoutBody(Selection):
    coupons: list[SupplierCoupon] = Field(default_factory=list, max_length=20,
                                          description="at most one coupon per supplier; it applies to that "
                                                      "supplier's largest order")


class SuggestedCoupon(BaseModel):
    coupon_code: str
    discount_fen: int


class QuotedOrder(BaseModel):
    supplier_id: int
    window_id: int | None
    item_ids: list[int]
    goods_fen: int = Field(description="the goods at their price, before coupons")
    freight_fen: int
    total_fen: int = Field(description="goods + freight (a coupon comes off at checkout)")
    suggested_coupon: SuggestedCoupon | None = Field(
        default=None, description="the buyer's claimed coupon that takes the most off this order (given for the "
                                  "supplier's largest order: one coupon per supplier)")


class QuoteOut(BaseModel):
    orders: list[QuotedOrder]
    goods_fen: int
    freight_fen: int
    total_fen: int


class CheckedOutOrder(BaseModel):
    order_no: str
    supplier_id: int
    window_id: int | None
    item_ids: list[int]
    coupon_code: str | None = None
    status: OrderStatus
    total_fen: int | None = Field(default=None, description="what this order's payment asks: goods after the "
                                                            "coupon, plus freight")
    freight_fen: int
    prepay: PrepayParams | None = Field(default=None, description="wx.requestPayment's arguments, when ready")
    payment_url: str
    failure: str | None = Field(default=None, description="why this order could not be placed (its code)")


class CheckoutOut(BaseModel):
    orders: list[CheckedOutOrder]


# --- the cart --------------------------------------------------------------------------------
def _item_rows(s, user_id: int, item_ids: list[int] | None = None):
    query = (select(CartItem, Sku, Product, Supplier).join(Sku, Sku.id == CartItem.sku_id)
             .join(Product, Product.id == Sku.product_id).join(Supplier, Supplier.id == Product.supplier_id)
             .where(CartItem.user_id == user_id).order_by(CartItem.id))
    if item_ids is not None:
        query = query.where(CartItem.id.in_(item_ids))
    return s.execute(query).all()


def _item_view(item: CartItem, sku: Sku, product: Product, supplier: Supplier) -> CartItemOut:
    return CartItemOut(id=item.id, sku_id=sku.id, product_id=product.id, title=f"{product.title} {sku.spec}".strip(),
                       supplier_id=supplier.id, window_id=item.window_id, quantity=item.quantity,
                       unit_price_fen=sku.price_fen, on_sale=product.status == "listed" and supplier.status == "active",
                       in_stock=sku.stock >= item.quantity)


@router.get("", response_model=list[CartItemOut], summary="My cart")
def get_cart(request: Request, principal: Principal = Depends(require_roles(*BUYERS))) -> list[CartItemOut]:
    with sessions_of(request)() as s:
        return [_item_view(*row) for row in _item_rows(s, principal.user_id)]


@router.post("/items", status_code=201, response_model=CartItemOut,
             summary="Put a SKU in my cart (again: its quantity grows, the first window it came from stays)",
             responses={409: {"description": "NOT_ON_SALE, CART_FULL"}})
def add_item(body: AddItemBody, request: Request,
             principal: Principal = Depends(require_roles(*BUYERS))) -> CartItemOut:
    limit = request.app.state.settings.cart_size
    with sessions_of(request).begin() as s:
        row = s.execute(select(Sku, Product, Supplier).join(Product, Product.id == Sku.product_id)
                        .join(Supplier, Supplier.id == Product.supplier_id).where(Sku.id == body.sku_id)).first()
        if row is None:
            raise ApiError(422, "SKU_NOT_FOUND", f"SKU {body.sku_id} does not exist")
        sku, product, supplier = row
        if product.status != "listed" or supplier.status != "active":
            raise ApiError(409, "NOT_ON_SALE", f"SKU {sku.id} is not on sale")
        if body.window_id is not None:
            if s.get(Window, body.window_id) is None:
                raise ApiError(422, "WINDOW_NOT_FOUND", f"window {body.window_id} does not exist")
            if s.get(WindowProduct, (body.window_id, product.id)) is None:
                raise ApiError(422, "NOT_IN_WINDOW", f"product {product.id} is not in window {body.window_id}")
        item_id, quantity = s.execute(
            insert(CartItem).values(user_id=principal.user_id, sku_id=sku.id, window_id=body.window_id,
                                    quantity=body.quantity)
            .on_conflict_do_update(constraint="uq_cart_items_sku", set_={
                "quantity": CartItem.quantity + body.quantity,
                "window_id": func.coalesce(CartItem.window_id, body.window_id)})
            .returning(CartItem.id, CartItem.quantity)).one()
        if quantity > MAX_UNITS:
            raise ApiError(422, "QUANTITY_TOO_HIGH", f"at most {MAX_UNITS} units of a SKU")
        if s.scalar(select(func.count()).select_from(CartItem).where(CartItem.user_id == principal.user_id)) > limit:
            raise ApiError(409, "CART_FULL", f"a cart holds at most {limit} different SKUs")
        return _item_view(*_item_rows(s, principal.user_id, [item_id])[0])


def _own_item(s, principal: Principal, item_id: int) -> CartItem:
    item = s.get(CartItem, item_id, with_for_update=True)
    if item is None or item.user_id != principal.user_id:
        raise not_found(f"cart item {item_id}")
    return item


@router.put("/items/{item_id}", response_model=CartItemOut, summary="Change a cart item's quantity")
def set_quantity(body: QuantityBody, request: Request, item_id: int = ID,
                 principal: Principal = Depends(require_roles(*BUYERS))) -> CartItemOut:
    with sessions_of(request).begin() as s:
        _own_item(s, principal, item_id).quantity = body.quantity
        s.flush()
        return _item_view(*_item_rows(s, principal.user_id, [item_id])[0])


@router.delete("/items/{item_id}", status_code=204, summary="Take an item out of my cart")
def remove_item(request: Request, item_id: int = ID,
                principal: Principal = Depends(require_roles(*BUYERS))) -> None:
    with sessions_of(request).begin() as s:
        s.delete(_own_item(s, principal, item_id))


# --- quote and checkout ------------------------------------------------------------------------
def _cart_lines(s, principal: Principal, item_ids: list[int] | None) -> list[CartLine]:
    rows = _item_rows(s, principal.user_id, item_ids)
    if item_ids is not None and len(rows) != len(item_ids):
        missing = sorted(set(item_ids) - {item.id for item, *_ in rows})
        raise ApiError(404, "NOT_FOUND", f"cart items {missing} not found")
    if not rows:
        raise ApiError(422, "CART_EMPTY", "the cart has nothing to check out")
    return [CartLine(item_id=item.id, sku_id=sku.id, supplier_id=supplier.id, window_id=item.window_id,
                     quantity=item.quantity, unit_price_fen=sku.price_fen) for item, sku, _, supplier in rows]


def _direct_lines(s, lines: list[LineRequest]) -> list[CartLine]:
    rows = {sku.id: (sku, supplier_id) for sku, supplier_id in s.execute(
        select(Sku, Product.supplier_id).join(Product, Product.id == Sku.product_id)
        .where(Sku.id.in_([ln.sku_id for ln in lines]))).all()}
    missing = [ln.sku_id for ln in lines if ln.sku_id not in rows]
    if missing:
        raise ApiError(422, "SKU_NOT_FOUND", f"SKUs {missing} do not exist")
    return [CartLine(item_id=i + 1, sku_id=ln.sku_id, supplier_id=rows[ln.sku_id][1], window_id=None,
                     quantity=ln.quantity, unit_price_fen=rows[ln.sku_id][0].price_fen) for i, ln in enumerate(lines)]


def _freight(s, group: OrderGroup, region_code: str) -> int:
    try:
        return freight.quote(s, [(ln.sku_id, ln.quantity, ln.goods_fen) for ln in group.lines], region_code)
    except NotDeliverable as err:
        raise ApiError(422, err.code, f"supplier {group.supplier_id}: {err.message}") from err


def _quoted(s, group: OrderGroup, region_code: str, direct: bool) -> QuotedOrder:
    fen = _freight(s, group, region_code)
    return QuotedOrder(supplier_id=group.supplier_id, window_id=group.window_id,
                       item_ids=[] if direct else [ln.item_id for ln in group.lines],
                       goods_fen=group.goods_fen, freight_fen=fen, total_fen=group.goods_fen + fen)


@router.post("/quote", response_model=QuoteOut,
             summary="Goods, freight and total per order, before paying: my cart (or given SKUs) to an address",
             description="422 NOT_DELIVERABLE when a supplier does not deliver to the address; 422 CART_EMPTY.")
def quote(body: QuoteBody, request: Request, principal: Principal = Depends(require_roles(*BUYERS))) -> QuoteOut:
    with sessions_of(request)() as s:
        region_code = address_of(s, principal, body.address_id).region_code
        direct = body.lines is not None
        lines = _direct_lines(s, body.lines) if direct else _cart_lines(s, principal, body.item_ids)
        groups = split_into_orders(lines)
        orders = [_quoted(s, g, region_code, direct) for g in groups]
        for supplier_id in {g.supplier_id for g in groups}:
            largest = max((o for o in orders if o.supplier_id == supplier_id), key=lambda o: o.goods_fen)
            best = best_claimed(s, principal.user_id, supplier_id, largest.goods_fen)
            if best is not None:
                largest.suggested_coupon = SuggestedCoupon(coupon_code=best[0], discount_fen=best[1])
    return QuoteOut(orders=orders, goods_fen=sum(o.goods_fen for o in orders),
                    freight_fen=sum(o.freight_fen for o in orders), total_fen=sum(o.total_fen for o in orders))


def _prepare(request: Request, principal: Principal, body: CheckoutBody
             ) -> tuple[ShippingAddress, str, list[tuple[OrderGroup, int]]]:
    """Everything the checkout needs, checked before any order starts: the address, the groups
    with their freight. 4xx on what the request gets wrong."""
    coupons: dict[int, str] = {}
    for c in body.coupons:
        if c.supplier_id in coupons:
            raise ApiError(422, "DUPLICATE_COUPON", f"one coupon per supplier (supplier {c.supplier_id})")
        coupons[c.supplier_id] = c.coupon_code
    with sessions_of(request)() as s:
        address = address_of(s, principal, body.address_id)
        lines = _cart_lines(s, principal, body.item_ids)
        presale = s.scalar(select(SkuPresale.sku_id).where(
            SkuPresale.sku_id.in_([ln.sku_id for ln in lines]), SkuPresale.active,
            SkuPresale.balance_starts_at > datetime.now(UTC)).limit(1))
        if presale is not None:
            raise ApiError(409, "PRESALE_ORDERED_ALONE", f"SKU {presale} is on pre-sale: order it on its own "
                                                         "(POST /orders)")
        unknown = set(coupons) - {ln.supplier_id for ln in lines}
        if unknown:
            raise ApiError(422, "COUPON_SUPPLIER_NOT_IN_CART", f"no goods of suppliers {sorted(unknown)} are checked out")
        groups = split_into_orders(lines, coupons)
        return (shipping_address(address), address.region_code,
                [(g, _freight(s, g, address.region_code)) for g in groups])


@router.post("/checkout", status_code=201, response_model=CheckoutOut,
             summary="Check my cart out to an address: one order per supplier and window, each to pay",
             description="Each order is an ordinary order (stock reserved, risk checks, its coupon, its own "
                         "WeChat Pay payment). The same Idempotency-Key again finds the same orders. Items go "
                         "out of the cart once their order is placed. An order whose WeChat Pay parameters are "
                         "not ready yet has none here: fetch them from its payment_url.",
             responses={409: {"description": "OUT_OF_STOCK, NOT_ON_SALE, PRESALE_ORDERED_ALONE"}})
async def checkout(body: CheckoutBody, request: Request,
                   principal: Principal = Depends(require_roles(*BUYERS)),
                   idempotency_key: str | None = Header(default=None, max_length=64),
                   device_id: str | None = Header(default=None, alias="X-Device-Id", max_length=128,
                                                  description="the client's device id, for risk checks")
                   ) -> CheckoutOut:
    settings = request.app.state.settings
    ship_to, region_code, groups = await run_in_threadpool(_prepare, request, principal, body)
    now = datetime.now(ZoneInfo(settings.settlement_timezone))
    started = []
    for group, freight_fen in groups:
        place = PlaceOrderBody(window_id=group.window_id, address=ship_to, coupon_code=group.coupon_code,
                               lines=[LineRequest(sku_id=ln.sku_id, quantity=ln.quantity) for ln in group.lines])
        openid, promoter_id = await run_in_threadpool(check_placeable, request, principal, place)
        key = f"{idempotency_key}:{group.key}" if idempotency_key else None
        order_no = order_no_for(principal, key, now)
        inp = order_input(request, principal, place, order_no, openid, device_id)
        inp = inp.model_copy(update={"order": inp.order.model_copy(update={"region_code": region_code})})
        started.append((group, freight_fen, order_no, inp, promoter_id))
    client = None
    for _, _, _, inp, promoter_id in started:
        client = await start_order_workflow(request, inp, promoter_id)
    await run_in_threadpool(_take_out_of_cart, request, principal, [ln.item_id for g, *_ in started for ln in g.lines])
    progresses = await asyncio.gather(*(_prepay_progress(client, order_no, settings.order_prepay_wait_seconds)
                                        for _, _, order_no, _, _ in started))
    out = []
    for (group, freight_fen, order_no, _, _), progress in zip(started, progresses, strict=True):
        failure = progress.failure if progress is not None else None
        out.append(CheckedOutOrder(
            order_no=order_no, supplier_id=group.supplier_id, window_id=group.window_id,
            item_ids=[ln.item_id for ln in group.lines], coupon_code=group.coupon_code,
            status=progress.status if progress is not None else OrderStatus.PENDING_PAYMENT,
            total_fen=progress.total_fen if progress is not None and not failure else None,
            freight_fen=freight_fen, prepay=progress.prepay if progress is not None and not failure else None,
            payment_url=payment_path(order_no), failure=failure))
    if out and all(o.failure for o in out):  # nothing could be placed: say why, like POST /orders
        raise _placement_refused(out[0].order_no, out[0].failure)
    return CheckoutOut(orders=out)


def _take_out_of_cart(request: Request, principal: Principal, item_ids: list[int]) -> None:
    with sessions_of(request).begin() as s:
        s.execute(delete(CartItem).where(CartItem.user_id == principal.user_id, CartItem.id.in_(item_ids)))
