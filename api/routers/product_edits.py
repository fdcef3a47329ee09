"""Content edits of listed products: a supplier changes the title, description or images, the
product stays on sale as it was while support reviews the change (ProductReviewWorkflow's edit
path, `product-{id}-edit-{edit_id}`). Price and stock change at once: PATCH /skus/{sku_id}."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import select
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

from activities.product_edits import propose_edit
from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import sessions_of, temporal_of
from api.errors import ApiError, not_found
from api.routers.products import ProductReviewBody, send_decision
from db.models import Product, Supplier
from db.review_models import ProductEdit
from domain.catalog import ProductDecision, ProductProgress, ProductReviewInput, ProductStatus, edit_workflow_id
from domain.search_attributes import BUSINESS_STATUS, SUPPLIER_ID
from workflows.product import ProductReviewWorkflow

router = APIRouter(tags=["products"])
ID = dict(ge=1, le=2**31 - 1)


class ProductEditBody(BaseModel):
    title: str | None = Field(default=None, min_length=2, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    images: list[str] | None = Field(default=None, min_length=1, max_length=20,
                                     description="image URLs, first is the cover")

    @field_validator("images")
    @classmethod
    def _urls(cls, urls: list[str] | None) -> list[str] | None:
        if urls is not None and any(not u.startswith(("http://", "https://")) or len(u) > 500 for u in urls):
            raise ValueError("images must be http(s) URLs of at most 500 characters")
        return urls

    @model_validator(mode="after")
    def _something(self) -> ProductEditBody:
        if self.title is None and self.description is None and self.images is None:
            raise ValueError("change at least one of title, description, images")
        return self


class ProductEditOut(BaseModel):
    edit_id: int
    product_id: int
    status: str = Field(description="pending, approved or rejected")
    title: str | None
    description: str | None
    images: list[str] | None
    reason: str | None
    created_at: datetime
    decided_at: datetime | None
    workflow_id: str


def _out(edit: ProductEdit) -> ProductEditOut:
    return ProductEditOut(edit_id=edit.id, product_id=edit.product_id, status=edit.status, title=edit.title,
                          description=edit.description, images=edit.images, reason=edit.reason,
                          created_at=edit.created_at, decided_at=edit.decided_at,
                          workflow_id=edit_workflow_id(edit.product_id, edit.id))


@router.patch("/products/{product_id}", status_code=202, response_model=ProductEditOut,
              summary="Edit a listed product's title, description or images: reviewed before it shows "
                      "(the product stays on sale as it was meanwhile)",
              responses={409: {"description": "NOT_EDITABLE, EDIT_PENDING"}})
async def edit_product(body: ProductEditBody, request: Request, product_id: int = Path(**ID),
                       principal: Principal = Depends(require_roles("supplier"))) -> ProductEditOut:
    def save() -> tuple[ProductEditOut, int]:
        with sessions_of(request).begin() as s:
            try:
                edit = propose_edit(s, product_id=product_id, supplier_user_id=principal.user_id, title=body.title,
                                    description=body.description, images=body.images)
            except ApplicationError as err:  # the refusal's code is its type
                if err.type == "PRODUCT_NOT_FOUND":
                    raise not_found(f"product {product_id}") from err
                raise ApiError(409, err.type or "NOT_EDITABLE", err.message) from err
            return _out(edit), s.get(Product, product_id).supplier_id

    out, supplier_id = await run_in_threadpool(save)
    settings = request.app.state.settings
    await (await temporal_of(request)).start_workflow(
        ProductReviewWorkflow.run, ProductReviewInput(product_id=product_id, supplier_id=supplier_id,
                                                      review_sla=settings.product_review_sla, edit_id=out.edit_id),
        id=out.workflow_id, task_queue=settings.task_queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SUPPLIER_ID, [str(supplier_id)]),
                                                 SearchAttributePair(BUSINESS_STATUS, ProductStatus.CHECKING.value)]))
    return out


@router.get("/products/{product_id}/edits", response_model=list[ProductEditOut],
            summary="A product's content edits, newest first (its supplier, support, operators)")
def list_edits(request: Request, product_id: int = Path(**ID), limit: int = Query(default=20, ge=1, le=100),
               offset: int = Query(default=0, ge=0, le=100_000),
               principal: Principal = Depends(require_roles("supplier", *PLATFORM_STAFF))) -> list[ProductEditOut]:
    with sessions_of(request)() as s:
        product = s.get(Product, product_id)
        owner = s.scalar(select(Supplier.owner_user_id).where(Supplier.id == product.supplier_id)) if product else None
        if product is None or (principal.role == "supplier" and owner != principal.user_id):
            raise not_found(f"product {product_id}")
        edits = s.scalars(select(ProductEdit).where(ProductEdit.product_id == product_id)
                          .order_by(ProductEdit.id.desc()).limit(limit).offset(offset))
        return [_out(e) for e in edits]


@router.post("/product-edits/{edit_id}/review", response_model=ProductProgress,
             summary="Support approves (the edit shows) or rejects (the product stays as it was) a content edit",
             responses={409: {"description": "NOT_AWAITING_DECISION"}})
async def review_edit(body: ProductReviewBody, request: Request, edit_id: int = Path(**ID),
                      principal: Principal = Depends(require_roles("support"))) -> ProductProgress:
    def pending() -> ProductEdit:
        with sessions_of(request)() as s:
            edit = s.get(ProductEdit, edit_id)
            if edit is None:
                raise not_found(f"product edit {edit_id}")
            return edit

    edit = await run_in_threadpool(pending)
    if edit.status != "pending":
        raise ApiError(409, "NOT_AWAITING_DECISION", f"the edit is {edit.status}")
    decision = ProductDecision(action=body.action, reviewer_user_id=principal.user_id, reason=body.reason)
    return await send_decision(request, edit_workflow_id(edit.product_id, edit.id), decision)
