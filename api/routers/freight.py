"""Suppliers' freight templates (运费模板) and which template each product ships by. The rules
are domain/freight.py's; buyers see what they cost through POST /cart/quote and checkout."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.auth import Principal, require_roles
from api.deps import sessions_of
from api.errors import ApiError, not_found
from db.models import Product, Sku, Supplier
from db.storefront_models import FreightTemplate, SkuShipping
from domain.freight import TemplateRules

router = APIRouter(tags=["freight"])


class TemplateBody(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    rules: TemplateRules


class TemplateOut(TemplateBody):
    id: int
    supplier_id: int
    updated_at: datetime


class ProductFreightBody(BaseModel):
    template_id: int | None = Field(ge=1, le=2**31 - 1, description="null: the product ships free")
    weights_g: dict[int, int] = Field(default_factory=dict, max_length=200,
                                      description="SKU id → weight in grams; required for every SKU of a "
                                                  "by-weight template")


class SkuShippingOut(BaseModel):
    sku_id: int
    template_id: int | None
    weight_g: int


def _supplier_of(s, principal: Principal) -> Supplier:
    supplier = s.scalar(select(Supplier).where(Supplier.owner_user_id == principal.user_id))
    if supplier is None:
        raise ApiError(403, "NOT_A_SUPPLIER", "apply as a supplier first (POST /suppliers)")
    return supplier


def _template(s, principal: Principal, template_id: int, *, lock: bool = False) -> FreightTemplate:
    template = s.get(FreightTemplate, template_id, with_for_update=lock)
    if template is None or (principal.role == "supplier" and template.supplier_id != _supplier_of(s, principal).id):
        raise not_found(f"freight template {template_id}")
    return template


def _view(t: FreightTemplate) -> TemplateOut:
    return TemplateOut(id=t.id, supplier_id=t.supplier_id, name=t.name, rules=TemplateRules.model_validate(t.rules),
                       updated_at=t.updated_at)


@router.post("/freight-templates", status_code=201, response_model=TemplateOut, summary="Add a freight template")
def add_template(body: TemplateBody, request: Request,
                 principal: Principal = Depends(require_roles("supplier"))) -> TemplateOut:
    with sessions_of(request).begin() as s:
        template = FreightTemplate(supplier_id=_supplier_of(s, principal).id, name=body.name, kind=body.rules.kind,
                                   rules=body.rules.model_dump(mode="json"))
        s.add(template)
        s.flush()
        s.refresh(template)
        return _view(template)


@router.get("/freight-templates", response_model=list[TemplateOut],
            summary="Freight templates: a supplier's own; staff see every supplier's")
def list_templates(request: Request, supplier_id: int | None = Query(default=None, ge=1, le=2**31 - 1),
                   limit: int = Query(default=50, ge=1, le=200), offset: int = Query(default=0, ge=0, le=10**6),
                   principal: Principal = Depends(require_roles("supplier", "support", "operator"))
                   ) -> list[TemplateOut]:
    with sessions_of(request)() as s:
        query = select(FreightTemplate)
        if principal.role == "supplier":
            query = query.where(FreightTemplate.supplier_id == _supplier_of(s, principal).id)
        elif supplier_id is not None:
            query = query.where(FreightTemplate.supplier_id == supplier_id)
        return [_view(t) for t in s.scalars(query.order_by(FreightTemplate.id).limit(limit).offset(offset))]


@router.get("/freight-templates/{template_id}", response_model=TemplateOut, summary="One freight template")
def get_template(request: Request, template_id: int = Path(ge=1, le=2**31 - 1),
                 principal: Principal = Depends(require_roles("supplier", "support", "operator"))) -> TemplateOut:
    with sessions_of(request)() as s:
        return _view(_template(s, principal, template_id))


@router.put("/freight-templates/{template_id}", response_model=TemplateOut,
            summary="Change a freight template (orders already placed keep the freight they were charged)",
            responses={409: {"description": "WEIGHT_REQUIRED: a by-weight template on SKUs without a weight"}})
def edit_template(body: TemplateBody, request: Request, template_id: int = Path(ge=1, le=2**31 - 1),
                  principal: Principal = Depends(require_roles("supplier"))) -> TemplateOut:
    with sessions_of(request).begin() as s:
        template = _template(s, principal, template_id, lock=True)
        if body.rules.kind == "weight" and s.scalar(select(SkuShipping.sku_id).where(
                SkuShipping.template_id == template.id, SkuShipping.weight_g <= 0).limit(1)) is not None:
            raise ApiError(409, "WEIGHT_REQUIRED", "some SKUs on this template have no weight: set their weights first")
        template.name, template.kind = body.name, body.rules.kind
        template.rules, template.updated_at = body.rules.model_dump(mode="json"), datetime.now(UTC)
        s.flush()
        return _view(template)


@router.delete("/freight-templates/{template_id}", status_code=204, summary="Delete an unused freight template",
               responses={409: {"description": "TEMPLATE_IN_USE"}})
def delete_template(request: Request, template_id: int = Path(ge=1, le=2**31 - 1),
                    principal: Principal = Depends(require_roles("supplier"))) -> None:
    with sessions_of(request).begin() as s:
        template = _template(s, principal, template_id, lock=True)
        if s.scalar(select(SkuShipping.sku_id).where(SkuShipping.template_id == template.id).limit(1)) is not None:
            raise ApiError(409, "TEMPLATE_IN_USE", "products still ship by this template: move them first")
        s.delete(template)


@router.put("/products/{product_id}/freight", response_model=list[SkuShippingOut],
            summary="Which freight template my product ships by, and each SKU's weight")
def set_product_freight(body: ProductFreightBody, request: Request, product_id: int = Path(ge=1, le=2**31 - 1),
                        principal: Principal = Depends(require_roles("supplier"))) -> list[SkuShippingOut]:
    with sessions_of(request).begin() as s:
        product = s.get(Product, product_id)
        if product is None or product.supplier_id != _supplier_of(s, principal).id:
            raise not_found(f"product {product_id}")
        template = _template(s, principal, body.template_id) if body.template_id is not None else None
        sku_ids = list(s.scalars(select(Sku.id).where(Sku.product_id == product.id).order_by(Sku.id)))
        unknown = set(body.weights_g) - set(sku_ids)
        if unknown:
            raise ApiError(422, "UNKNOWN_SKU", f"SKUs {sorted(unknown)} are not this product's")
        if any(w < 0 or w > 1_000_000 for w in body.weights_g.values()):
            raise ApiError(422, "BAD_WEIGHT", "a weight is 0 to 1,000,000 grams")
        if template is not None and template.kind == "weight" and any(body.weights_g.get(i, 0) <= 0 for i in sku_ids):
            raise ApiError(422, "WEIGHT_REQUIRED", "a by-weight template needs every SKU's weight in grams")
        out = []
        for sku_id in sku_ids:
            row = s.get(SkuShipping, sku_id, with_for_update=True)
            if row is None:
                row = SkuShipping(sku_id=sku_id)
                s.add(row)
            row.template_id, row.weight_g = body.template_id, body.weights_g.get(sku_id, row.weight_g or 0)
            out.append(SkuShippingOut(sku_id=sku_id, template_id=row.template_id, weight_g=row.weight_g))
        return out
