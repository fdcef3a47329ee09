"""Suppliers submit products (ProductReviewWorkflow), support reviews them, suppliers keep
their SKUs' stock and prices. A supplier sees and edits only its own products."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from activities.catalog import (
    approved_categories,
    reinstate_product,
    relist_product,
    stock_changed,
    suspend_product,
    withdraw_product,
)
from api.auth import PLATFORM_STAFF, Principal, require_roles, signed_in
from api.deps import sessions_of, temporal_of
from api.errors import ApiError, not_found, update_refused
from api.routers.catalog import ProductOut, product_out
from db.catalog_models import ProductDetail
from db.models import Product, Sku, Supplier
from domain.catalog import (
    LOW_STOCK_THRESHOLD,
    MAX_BATCH,
    PRODUCT_SUSPENDED,
    PRODUCT_WITHDRAWN,
    SUSPENDABLE_PRODUCT_STATUSES,
    ProductDecision,
    ProductProgress,
    ProductReviewInput,
    ProductStatus,
    ProductSubmission,
    max_commission_fen,
    product_problems,
    sku_commission_fen,
)
from domain.search_attributes import BUSINESS_STATUS, SUPPLIER_ID
from workflows.product import ProductReviewWorkflow, workflow_id

router = APIRouter(tags=["products"])


class SubmittedOut(BaseModel):
    product_id: int
    status: str
    workflow_id: str


class BatchBody(BaseModel):
    products: list[ProductSubmission] = Field(min_length=1, max_length=MAX_BATCH)


def _active_supplier(s, principal: Principal) -> Supplier:
    supplier = s.scalar(select(Supplier).where(Supplier.owner_user_id == principal.user_id))
    if supplier is None:
        raise ApiError(403, "NOT_A_SUPPLIER", "apply as a supplier first (POST /suppliers)")
    if supplier.status != "active":
        raise ApiError(409, "SUPPLIER_NOT_ACTIVE", f"supplier is {supplier.status}; only active suppliers submit products")
    return supplier


def _write_products(request: Request, principal: Principal, items: list[ProductSubmission]) -> tuple[int, list[int]]:
    """Check every product, then write all or none. Returns (supplier id, product ids)."""
    with sessions_of(request).begin() as s:
        supplier = _active_supplier(s, principal)
        categories = approved_categories(s, supplier)
        for i, item in enumerate(items):
            problems = product_problems(item, service_fee_bps=supplier.service_fee_bps,
                                        approved_categories=categories)
            if problems:
                where = f"products[{i}]: " if len(items) > 1 else ""
                raise ApiError(422, problems[0].code, where + "; ".join(p.message for p in problems))
        ids = []
        for item in items:
            product = Product(supplier_id=supplier.id, title=item.title, category=item.category,
                              status="pending_review")
            s.add(product)
            s.flush()
            s.add_all([Sku(product_id=product.id, **sku.model_dump()) for sku in item.skus])
            s.add(ProductDetail(product_id=product.id, description=item.description, images=item.images,
                                video_url=item.video_url, materials=[m.model_dump() for m in item.materials]))
            ids.append(product.id)
        return supplier.id, ids


def _delete_products(request: Request, product_ids: list[int]) -> None:
    with sessions_of(request).begin() as s:
        for pid in product_ids:
            s.query(ProductDetail).filter_by(product_id=pid).delete()
            s.query(Sku).filter_by(product_id=pid).delete()
            s.query(Product).filter_by(id=pid).delete()


async def _start_reviews(request: Request, supplier_id: int, product_ids: list[int]) -> list[SubmittedOut]:
    settings = request.app.state.settings
    sla = settings.product_review_sla
    started: list[SubmittedOut] = []
    client = await temporal_of(request)
    for i, pid in enumerate(product_ids):
        try:
            await client.start_workflow(
                ProductReviewWorkflow.run, ProductReviewInput(product_id=pid, supplier_id=supplier_id, review_sla=sla),
                id=workflow_id(pid), task_queue=settings.task_queue,
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(SUPPLIER_ID, [str(supplier_id)]),
                    SearchAttributePair(BUSINESS_STATUS, ProductStatus.CHECKING.value)]))
        except Exception as err:  # noqa: BLE001 - products without a review are not kept
            await run_in_threadpool(_delete_products, request, product_ids[i:])
            raise ApiError(503, "TEMPORAL_UNAVAILABLE",
                           f"could not start the review; submitted before the failure: {[o.product_id for o in started]}"
                           ) from err
        started.append(SubmittedOut(product_id=pid, status="pending_review", workflow_id=workflow_id(pid)))
    return started


@router.post("/products", status_code=201, response_model=SubmittedOut,
             summary="Submit a product with its SKUs for review")
async def submit_product(body: ProductSubmission, request: Request,
                         principal: Principal = Depends(require_roles("supplier"))) -> SubmittedOut:
    supplier_id, ids = await run_in_threadpool(_write_products, request, principal, [body])
    return (await _start_reviews(request, supplier_id, ids))[0]


@router.post("/products/batch", status_code=201, response_model=list[SubmittedOut],
             summary=f"Submit up to {MAX_BATCH} products at once: all are checked, then all or none are written")
async def submit_batch(body: BatchBody, request: Request,
                       principal: Principal = Depends(require_roles("supplier"))) -> list[SubmittedOut]:
    supplier_id, ids = await run_in_threadpool(_write_products, request, principal, body.products)
    return await _start_reviews(request, supplier_id, ids)


class MyProductOut(ProductOut):
    review_note: str = ""
    reviewed_at: datetime | None = None
    suspended_reason: str | None = Field(default=None, description="why support suspended it (status product_suspended)")


def _my_out(s, p: Product) -> MyProductOut:
    detail = s.get(ProductDetail, p.id)
    base = product_out(p, detail)
    return MyProductOut(**base.model_dump(), suspended_reason=p.suspended_reason,
                        review_note=detail.review_note if detail else "",
                        reviewed_at=detail.reviewed_at if detail else None)


@router.get("/products/mine", response_model=list[MyProductOut], summary="My products in every status (suppliers)")
def my_products(request: Request, status: str | None = None,
                principal: Principal = Depends(require_roles("supplier"))) -> list[MyProductOut]:
    with sessions_of(request)() as s:
        supplier_id = s.scalar(select(Supplier.id).where(Supplier.owner_user_id == principal.user_id))
        query = select(Product).where(Product.supplier_id == supplier_id).options(selectinload(Product.skus))
        if status:
            query = query.where(Product.status == status)
        return [_my_out(s, p) for p in s.scalars(query.order_by(Product.id)).all()]


@router.get("/products/{product_id}", response_model=MyProductOut, summary="One product")
def get_product(product_id: int, request: Request,
                principal: Principal = Depends(signed_in)) -> MyProductOut:
    with sessions_of(request)() as s:
        product = s.get(Product, product_id)
        if product is None:
            raise not_found(f"product {product_id}")
        if principal.role == "supplier":
            own = s.scalar(select(Supplier.id).where(Supplier.owner_user_id == principal.user_id))
            if product.supplier_id != own:
                raise not_found(f"product {product_id}")
        elif principal.role not in PLATFORM_STAFF and product.status != "listed":
            raise not_found(f"product {product_id}")
        return _my_out(s, product)


class ProductReviewBody(BaseModel):
    action: str = Field(pattern="^(approve|reject)$")
    reason: str | None = Field(default=None, max_length=500)
    newbie_pick: bool = Field(default=False, description="feature as 新手优选")


@router.post("/products/{product_id}/review", response_model=ProductProgress,
             summary="Support approves (listed) or rejects a product")
async def review_product(product_id: int, body: ProductReviewBody, request: Request,
                         principal: Principal = Depends(require_roles("support"))) -> ProductProgress:
    def status() -> str:
        with sessions_of(request)() as s:
            product = s.get(Product, product_id)
            if product is None:
                raise not_found(f"product {product_id}")
            return product.status

    current = await run_in_threadpool(status)
    if current != "pending_review":
        raise ApiError(409, "NOT_AWAITING_DECISION", f"product is {current}, not awaiting a decision")
    decision = ProductDecision(action=body.action, reviewer_user_id=principal.user_id, reason=body.reason,
                               newbie_pick=body.newbie_pick)
    return await send_decision(request, workflow_id(product_id), decision)


async def send_decision(request: Request, review_workflow_id: str, decision: ProductDecision) -> ProductProgress:
    """Support's decision to a waiting review (a product's or a content edit's)."""
    handle = (await temporal_of(request)).get_workflow_handle(review_workflow_id)
    try:
        return await handle.execute_update(ProductReviewWorkflow.decide, decision)
    except WorkflowUpdateFailedError as err:
        raise update_refused(err) from err
    except RPCError as err:
        raise ApiError(409, "NOT_AWAITING_DECISION", f"the review is not running: {err.message}") from err


class ProductSuspendBody(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)] = Field(
        description="why it is taken off sale, shown to the supplier")


class ProductSuspensionOut(BaseModel):
    product_id: int
    status: str
    suspended_reason: str | None
    window_entries: int = Field(description="window entries taken off (suspend) or restored (reinstate)")


def _product_for_update(s, product_id: int) -> Product:
    product = s.get(Product, product_id, with_for_update=True)
    if product is None:
        raise not_found(f"product {product_id}")
    return product


@router.post("/products/{product_id}/suspend", response_model=ProductSuspensionOut,
             summary="Support suspends one product: off the shop and every window, supplier and promoters told")
def suspend(product_id: int, body: ProductSuspendBody, request: Request,
            _: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> ProductSuspensionOut:
    with sessions_of(request).begin() as s:
        product = _product_for_update(s, product_id)
        if product.status not in SUSPENDABLE_PRODUCT_STATUSES:
            raise ApiError(409, "NOT_SUSPENDABLE", f"product is {product.status}; only a product that was "
                                                   f"on sale can be suspended")
        removed = suspend_product(s, product, body.reason)
        return ProductSuspensionOut(product_id=product_id, status=product.status,
                                    suspended_reason=product.suspended_reason, window_entries=removed)


@router.post("/products/{product_id}/reinstate", response_model=ProductSuspensionOut,
             summary="Lift a product's suspension: back on sale and in the windows it left")
def reinstate(product_id: int, request: Request,
              _: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> ProductSuspensionOut:
    with sessions_of(request).begin() as s:
        product = _product_for_update(s, product_id)
        if product.status != PRODUCT_SUSPENDED:
            raise ApiError(409, "NOT_SUSPENDED", f"product is {product.status}")
        restored = reinstate_product(s, product)
        return ProductSuspensionOut(product_id=product_id, status=product.status,
                                    suspended_reason=None, window_entries=restored)


class ProductSaleOut(BaseModel):
    product_id: int
    status: str
    window_entries: int = Field(description="window entries taken off (off sale) or restored (on sale)")


def _own_product_for_update(s, principal: Principal, product_id: int) -> tuple[Product, Supplier]:
    row = s.execute(select(Product, Supplier).join(Supplier, Product.supplier_id == Supplier.id)
                    .where(Product.id == product_id).with_for_update(of=Product)).first()
    if row is None or row[1].owner_user_id != principal.user_id:
        raise not_found(f"product {product_id}")  # someone else's product looks like a missing one
    return row[0], row[1]


@router.post("/products/{product_id}/off-sale", response_model=ProductSaleOut,
             summary="The supplier takes its listed product off sale (下架): off the shop and every window",
             responses={409: {"description": "NOT_ON_SALE: only a listed product can be taken off sale"}})
def take_off_sale(product_id: int, request: Request,
                  principal: Principal = Depends(require_roles("supplier"))) -> ProductSaleOut:
    with sessions_of(request).begin() as s:
        product, _ = _own_product_for_update(s, principal, product_id)
        if product.status != "listed":
            raise ApiError(409, "NOT_ON_SALE", f"product is {product.status}; only a listed product can be "
                                               f"taken off sale")
        removed = withdraw_product(s, product)
        return ProductSaleOut(product_id=product_id, status=product.status, window_entries=removed)


@router.post("/products/{product_id}/on-sale", response_model=ProductSaleOut,
             summary="The supplier puts a product it took off sale back on sale (上架), in the windows it left",
             responses={409: {"description": "NOT_WITHDRAWN: only a product its supplier took off sale; "
                                             "SUPPLIER_NOT_ACTIVE: a suspended supplier sells nothing"}})
def put_on_sale(product_id: int, request: Request,
                principal: Principal = Depends(require_roles("supplier"))) -> ProductSaleOut:
    with sessions_of(request).begin() as s:
        product, supplier = _own_product_for_update(s, principal, product_id)
        if product.status != PRODUCT_WITHDRAWN:
            raise ApiError(409, "NOT_WITHDRAWN", f"product is {product.status}; only a product you took off "
                                                 f"sale can be put back")
        if supplier.status != "active":
            raise ApiError(409, "SUPPLIER_NOT_ACTIVE", "your shop is suspended: nothing goes on sale until "
                                                       "it is reinstated")
        restored = relist_product(s, product)
        return ProductSaleOut(product_id=product_id, status=product.status, window_entries=restored)


class SkuPatch(BaseModel):
    stock: int | None = Field(default=None, ge=0, le=10_000_000)
    price_fen: int | None = Field(default=None, gt=0, le=100_000_000)


class SkuOut(BaseModel):
    id: int
    product_id: int
    spec: str
    price_fen: int
    stock: int
    commission_bps: int | None
    commission_fixed_fen: int | None
    low_stock: bool


@router.patch("/skus/{sku_id}", response_model=SkuOut, summary="Update a SKU's stock or price (own products only)")
def patch_sku(sku_id: int, body: SkuPatch, request: Request,
              principal: Principal = Depends(require_roles("supplier"))) -> SkuOut:
    threshold = getattr(request.app.state.settings, "low_stock_threshold", LOW_STOCK_THRESHOLD)
    with sessions_of(request).begin() as s:
        row = s.execute(select(Sku, Supplier).join(Product, Sku.product_id == Product.id)
                        .join(Supplier, Product.supplier_id == Supplier.id)
                        .where(Sku.id == sku_id).with_for_update(of=Sku)).first()
        if row is None or row[1].owner_user_id != principal.user_id:
            raise not_found(f"SKU {sku_id}")  # someone else's SKU looks like a missing one
        sku, supplier = row
        if body.price_fen is not None:
            commission = sku_commission_fen(body.price_fen, sku.commission_bps, sku.commission_fixed_fen)
            ceiling = max_commission_fen(body.price_fen, supplier.service_fee_bps)
            if commission > ceiling:
                raise ApiError(422, "COMMISSION_TOO_HIGH",
                               f"at {body.price_fen} fen the commission {commission} fen would exceed "
                               f"the price less the platform fee ({ceiling} fen)")
            sku.price_fen = body.price_fen
        if body.stock is not None:
            before = sku.stock
            sku.stock = body.stock
            s.flush()
            stock_changed(s, sku.id, before, body.stock, threshold)
        s.flush()
        return SkuOut(id=sku.id, product_id=sku.product_id, spec=sku.spec, price_fen=sku.price_fen, stock=sku.stock,
                      commission_bps=sku.commission_bps, commission_fixed_fen=sku.commission_fixed_fen,
                      low_stock=0 < sku.stock < threshold)
