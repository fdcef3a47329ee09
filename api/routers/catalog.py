"""The selection centre (选品中心) and promoters' windows (橱窗): browse and filter listed
products, mount them in one call, hide, remove and order them, and per-product window stats."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import selectinload

from activities import channels_outbox
from activities.bonuses import window_closed
from activities.catalog import product_in_stock
from api.auth import Principal, require_roles, signed_in
from api.deps import sessions_of
from api.errors import ApiError, not_found
from db.catalog_models import ProductDetail, WindowProductStat
from db.channels_models import ChannelsWindowItem
from db.models import (
    Order,
    OrderLine,
    Product,
    Promoter,
    Sku,
    Supplier,
    Window,
    WindowProduct,
)
from domain.catalog import WindowItemStatus, effective_commission_bps

router = APIRouter(tags=["catalog"])

SOLD_STATUSES = ("PAID", "SHIPPED", "DELIVERED", "RECEIVED", "COMPLETED")


class SkuOut(BaseModel):
    id: int
    spec: str
    price_fen: int
    stock: int
    commission_bps: int | None
    commission_fixed_fen: int | None


class ProductOut(BaseModel):
    id: int
    supplier_id: int
    title: str
    category: str
    skus: list[SkuOut]
    status: str = "listed"
    description: str = ""
    images: list[str] = []
    video_url: str | None = None
    materials: list[dict] = []
    newbie_pick: bool = False
    max_commission_bps: int = 0
    in_stock: bool = True
    sales: int = 0


def product_out(p: Product, detail: ProductDetail | None = None, sales: int = 0) -> ProductOut:
    return ProductOut(
        id=p.id, supplier_id=p.supplier_id, title=p.title, category=p.category, status=p.status,
        skus=[SkuOut.model_validate(s, from_attributes=True) for s in p.skus],
        description=detail.description if detail else "", images=detail.images if detail else [],
        video_url=detail.video_url if detail else None, materials=detail.materials if detail else [],
        newbie_pick=bool(detail and detail.newbie_pick),
        max_commission_bps=max((effective_commission_bps(s.price_fen, s.commission_bps, s.commission_fixed_fen)
                                for s in p.skus), default=0),
        in_stock=any(s.stock > 0 for s in p.skus), sales=sales)


_product_out = product_out  # earlier name


def _sku_rate():
    return case((Sku.commission_fixed_fen.is_not(None), Sku.commission_fixed_fen * 10_000 / Sku.price_fen),
                else_=func.coalesce(Sku.commission_bps, 0))


@router.get("/products", response_model=list[ProductOut],
            summary="Selection centre: listed products, filtered and sorted")
def list_products(request: Request, category: str | None = None, q: str | None = None,
                  min_commission_bps: int | None = None, newbie_pick: bool | None = None,
                  in_stock: bool | None = None, supplier_id: int | None = None,
                  sort: Literal["newest", "sales", "commission", "price"] = "newest",
                  limit: int = 50, offset: int = 0, _: Principal = Depends(signed_in)):
    per_product = (select(Sku.product_id, func.max(_sku_rate()).label("rate"),
                          func.sum(Sku.stock).label("stock"), func.min(Sku.price_fen).label("price"))
                   .group_by(Sku.product_id).subquery())
    sold = (select(OrderLine.product_id, func.sum(OrderLine.quantity).label("qty"))
            .join(Order, Order.order_no == OrderLine.order_no).where(Order.status.in_(SOLD_STATUSES))
            .group_by(OrderLine.product_id).subquery())
    sales = func.coalesce(sold.c.qty, 0)
    query = (select(Product, ProductDetail, sales)
             .join(Supplier, Supplier.id == Product.supplier_id)
             .join(per_product, per_product.c.product_id == Product.id)
             .outerjoin(ProductDetail, ProductDetail.product_id == Product.id)
             .outerjoin(sold, sold.c.product_id == Product.id)
             .where(Product.status == "listed", Supplier.status == "active")
             .options(selectinload(Product.skus)))
    if category:
        query = query.where(Product.category == category)
    if q:
        query = query.where(Product.title.ilike(f"%{q}%"))
    if supplier_id is not None:
        query = query.where(Product.supplier_id == supplier_id)
    if min_commission_bps is not None:
        query = query.where(per_product.c.rate >= min_commission_bps)
    if newbie_pick is not None:
        query = query.where(func.coalesce(ProductDetail.newbie_pick, False).is_(newbie_pick))
    if in_stock is not None:
        query = query.where((per_product.c.stock > 0) if in_stock else (per_product.c.stock == 0))
    order = {"newest": [Product.id.desc()], "sales": [sales.desc(), Product.id.desc()],
             "commission": [per_product.c.rate.desc(), Product.id.desc()],
             "price": [per_product.c.price.asc(), Product.id]}[sort]
    with sessions_of(request)() as s:
        rows = s.execute(query.order_by(*order).limit(min(limit, 200)).offset(offset)).all()
        return [product_out(p, d, int(n)) for p, d, n in rows]


# --- my window (promoters) -------------------------------------------------------------------
class WindowItemOut(BaseModel):
    product: ProductOut
    status: str
    off_reason: str | None
    position: int
    mounted_at: datetime


class MyWindowOut(BaseModel):
    id: int
    promoter_id: int
    name: str
    items: list[WindowItemOut]


def _my_window(s, principal: Principal) -> Window:
    window = s.scalar(select(Window).join(Promoter, Window.promoter_id == Promoter.id)
                      .where(Promoter.user_id == principal.user_id))
    if window is None:
        raise ApiError(404, "NO_WINDOW", "bind your Channels window (橱窗) first")
    return window


def _my_window_out(s, window: Window) -> MyWindowOut:
    rows = s.execute(select(WindowProduct, Product, ProductDetail)
                     .join(Product, WindowProduct.product_id == Product.id)
                     .outerjoin(ProductDetail, ProductDetail.product_id == Product.id)
                     .where(WindowProduct.window_id == window.id)
                     .options(selectinload(Product.skus))
                     .order_by(WindowProduct.position, WindowProduct.mounted_at, Product.id)).all()
    return MyWindowOut(id=window.id, promoter_id=window.promoter_id, name=window.name, items=[
        WindowItemOut(product=product_out(p, d), status=wp.status, off_reason=wp.off_reason,
                      position=wp.position, mounted_at=wp.mounted_at) for wp, p, d in rows])


@router.get("/windows/me", response_model=MyWindowOut, summary="My window with every item, hidden or off sale")
def my_window(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> MyWindowOut:
    with sessions_of(request)() as s:
        return _my_window_out(s, _my_window(s, principal))


class MountBody(BaseModel):
    product_id: int = Field(gt=0)


@router.post("/windows/me/products", status_code=201, response_model=WindowItemOut,
             summary="Mount a product from the selection centre into my window (one call)")
def mount(body: MountBody, request: Request, principal: Principal = Depends(require_roles("promoter"))):
    with sessions_of(request).begin() as s:
        window = _my_window(s, principal)
        if window_closed(s, window.id):
            raise ApiError(409, "WINDOW_CLOSED", "this window was closed after confirmed fake-trade findings")
        row = s.execute(select(Product, Supplier).join(Supplier, Supplier.id == Product.supplier_id)
                        .where(Product.id == body.product_id)).first()
        if row is None or row[0].status != "listed":
            raise ApiError(404, "PRODUCT_NOT_LISTED", f"product {body.product_id} is not in the selection centre")
        product, supplier = row
        if supplier.status != "active":
            raise ApiError(409, "SUPPLIER_SUSPENDED", "this supplier is suspended")
        if not product_in_stock(s, product.id):
            raise ApiError(409, "SOLD_OUT", f"product {product.id} is sold out")
        top = s.scalar(select(func.coalesce(func.max(WindowProduct.position), 0))
                       .where(WindowProduct.window_id == window.id))
        s.execute(insert(WindowProduct).values(window_id=window.id, product_id=product.id,
                                               status=WindowItemStatus.MOUNTED, position=top + 1)
                  .on_conflict_do_update(index_elements=["window_id", "product_id"],
                                         set_={"status": WindowItemStatus.MOUNTED, "off_reason": None}))
        channels_outbox.window_changed(s, window.id, product.id, "mount")  # into the Channels window too
        wp = s.get(WindowProduct, (window.id, product.id), populate_existing=True)
        return WindowItemOut(product=product_out(product, s.get(ProductDetail, product.id)), status=wp.status,
                             off_reason=wp.off_reason, position=wp.position, mounted_at=wp.mounted_at)


class ItemPatch(BaseModel):
    hidden: bool


def _my_item(s, principal: Principal, product_id: int) -> WindowProduct:
    window = _my_window(s, principal)
    wp = s.get(WindowProduct, (window.id, product_id), with_for_update=True)
    if wp is None:
        raise not_found(f"product {product_id} in my window")
    return wp


@router.patch("/windows/me/products/{product_id}", response_model=MyWindowOut, summary="Hide or show an item")
def patch_item(product_id: int, body: ItemPatch, request: Request,
               principal: Principal = Depends(require_roles("promoter"))) -> MyWindowOut:
    with sessions_of(request).begin() as s:
        wp = _my_item(s, principal, product_id)
        if wp.status == WindowItemStatus.OFF_SALE:
            raise ApiError(409, "OFF_SALE", f"the product is off sale ({wp.off_reason}); it returns by itself")
        wp.status = WindowItemStatus.HIDDEN if body.hidden else WindowItemStatus.MOUNTED
        channels_outbox.window_changed(s, wp.window_id, product_id, "hide" if body.hidden else "unhide")
        s.flush()
        return _my_window_out(s, s.get(Window, wp.window_id))


@router.delete("/windows/me/products/{product_id}", status_code=204, summary="Remove an item from my window")
def remove_item(product_id: int, request: Request, principal: Principal = Depends(require_roles("promoter"))):
    with sessions_of(request).begin() as s:
        wp = _my_item(s, principal, product_id)
        channels_outbox.window_changed(s, wp.window_id, product_id, "remove")
        s.delete(wp)


class OrderBody(BaseModel):
    product_ids: list[int] = Field(min_length=1, max_length=500, description="the window's items, first shown first")


@router.put("/windows/me/order", response_model=MyWindowOut, summary="Order my window's items")
def order_items(body: OrderBody, request: Request, principal: Principal = Depends(require_roles("promoter"))):
    with sessions_of(request).begin() as s:
        window = _my_window(s, principal)
        items = {wp.product_id: wp for wp in s.scalars(
            select(WindowProduct).where(WindowProduct.window_id == window.id).with_for_update())}
        unknown = [pid for pid in body.product_ids if pid not in items]
        if unknown or len(set(body.product_ids)) != len(body.product_ids):
            raise ApiError(422, "BAD_ORDER", f"list each item of your window once; not in it: {unknown}")
        for position, pid in enumerate(body.product_ids, start=1):
            items[pid].position = position
        rest = sorted((wp for pid, wp in items.items() if pid not in set(body.product_ids)),
                      key=lambda wp: (wp.position, wp.product_id))
        for position, wp in enumerate(rest, start=len(body.product_ids) + 1):
            wp.position = position
        s.flush()
        return _my_window_out(s, window)


class ItemStatsOut(BaseModel):
    product_id: int
    title: str
    status: str
    exposures: int
    clicks: int
    orders: int
    units: int
    gmv_fen: int
    shop_sales: int = Field(default=0, description="sales (销量) the Channels shop reports, at the last reconcile")
    shop_stock: int | None = Field(default=None, description="stock the Channels shop reports")
    shop_synced_at: datetime | None = None


@router.get("/windows/me/stats", response_model=list[ItemStatsOut],
            summary="Per product in my window: exposures, clicks, paid orders, units, GMV")
def my_stats(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> list[ItemStatsOut]:
    with sessions_of(request)() as s:
        window = _my_window(s, principal)
        sold = (select(OrderLine.product_id, func.count(func.distinct(Order.order_no)).label("orders"),
                       func.sum(OrderLine.quantity).label("units"), func.sum(OrderLine.paid_fen).label("gmv"))
                .join(Order, Order.order_no == OrderLine.order_no)
                .where(Order.window_id == window.id, Order.status.in_(SOLD_STATUSES))
                .group_by(OrderLine.product_id).subquery())
        rows = s.execute(
            select(WindowProduct.product_id, Product.title, WindowProduct.status,
                   func.coalesce(WindowProductStat.exposures, 0), func.coalesce(WindowProductStat.clicks, 0),
                   func.coalesce(sold.c.orders, 0), func.coalesce(sold.c.units, 0), func.coalesce(sold.c.gmv, 0),
                   func.coalesce(ChannelsWindowItem.shop_sales, 0), ChannelsWindowItem.shop_stock,
                   ChannelsWindowItem.stats_at)
            .join(Product, Product.id == WindowProduct.product_id)
            .outerjoin(ChannelsWindowItem, (ChannelsWindowItem.window_id == WindowProduct.window_id)
                       & (ChannelsWindowItem.product_id == WindowProduct.product_id))
            .outerjoin(WindowProductStat, (WindowProductStat.window_id == WindowProduct.window_id)
                       & (WindowProductStat.product_id == WindowProduct.product_id))
            .outerjoin(sold, sold.c.product_id == WindowProduct.product_id)
            .where(WindowProduct.window_id == window.id)
            .order_by(WindowProduct.position, WindowProduct.product_id)).all()
        return [ItemStatsOut(product_id=r[0], title=r[1], status=r[2], exposures=r[3], clicks=r[4],
                             orders=r[5], units=r[6], gmv_fen=r[7], shop_sales=r[8], shop_stock=r[9],
                             shop_synced_at=r[10]) for r in rows]


class WindowEvent(BaseModel):
    product_id: int = Field(gt=0)
    kind: Literal["exposure", "click"]


WINDOW_VIEWERS = ("buyer", "promoter")  # who browses windows; staff and suppliers' views are not counted


@router.post("/windows/{window_id}/events", status_code=204,
             summary="Count an exposure or a click: once per viewer and item in WINDOW_EVENT_DEDUP, "
                     "rate-limited per viewer (429 RATE_LIMITED)")
def window_event(window_id: int, body: WindowEvent, request: Request,
                 principal: Principal = Depends(require_roles(*WINDOW_VIEWERS))):
    limits = request.app.state.viewer_limits
    limits.spend("window event", str(principal.user_id))
    column = "exposures" if body.kind == "exposure" else "clicks"
    with sessions_of(request).begin() as s:
        if s.get(WindowProduct, (window_id, body.product_id)) is None:
            raise not_found(f"product {body.product_id} in window {window_id}")
        owner = s.scalar(select(Promoter.user_id).join(Window, Window.promoter_id == Promoter.id)
                         .where(Window.id == window_id))
        if owner == principal.user_id:
            return  # a promoter looking at their own window is no exposure
        if not limits.first_in_period(str(principal.user_id), str(window_id), str(body.product_id), body.kind):
            return  # this viewer was counted for this item already
        s.execute(insert(WindowProductStat).values(window_id=window_id, product_id=body.product_id, **{column: 1})
                  .on_conflict_do_update(index_elements=["window_id", "product_id"],
                                         set_={column: getattr(WindowProductStat, column) + 1}))


class WindowOut(BaseModel):
    id: int
    promoter_id: int
    name: str
    products: list[ProductOut]


@router.get("/windows/{window_id}", response_model=WindowOut, summary="A promoter's window (橱窗)")
def get_window(window_id: int, request: Request, _: Principal = Depends(signed_in)):
    with sessions_of(request)() as s:
        window = s.get(Window, window_id)
        if window is None:
            raise not_found("window")
        rows = s.execute(
            select(Product, ProductDetail).join(WindowProduct, WindowProduct.product_id == Product.id)
            .outerjoin(ProductDetail, ProductDetail.product_id == Product.id)
            .where(WindowProduct.window_id == window_id, WindowProduct.status == WindowItemStatus.MOUNTED,
                   Product.status == "listed")
            .options(selectinload(Product.skus))
            .order_by(WindowProduct.position, WindowProduct.mounted_at, Product.id)).all()
        return WindowOut(id=window.id, promoter_id=window.promoter_id, name=window.name,
                         products=[product_out(p, d) for p, d in rows])
