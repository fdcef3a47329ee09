"""Coupons: suppliers (or operators for them) issue fixed or threshold discounts on the
supplier's goods; buyers pass the code in POST /orders."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import sessions_of
from api.errors import ApiError
from api.routers.pickup import _own_supplier
from db.order_models import Coupon

router = APIRouter(prefix="/coupons", tags=["coupons"])


class CouponBody(BaseModel):
    code: str = Field(pattern=r"^[A-Z0-9]{4,32}$")
    kind: Literal["fixed", "threshold"]
    amount_fen: int = Field(gt=0)
    threshold_fen: int = Field(default=0, ge=0)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    total_limit: int = Field(gt=0, le=10_000_000)
    supplier_id: int | None = Field(default=None, description="operators only")

    @model_validator(mode="after")
    def _consistent(self) -> CouponBody:
        if self.kind == "threshold" and self.threshold_fen <= self.amount_fen:
            raise ValueError("a threshold coupon's threshold must exceed its amount")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CouponOut(BaseModel):
    code: str
    supplier_id: int
    kind: str
    amount_fen: int
    threshold_fen: int
    starts_at: datetime | None
    ends_at: datetime | None
    total_limit: int
    used_count: int
    active: bool


@router.post("", status_code=201, response_model=CouponOut, summary="Issue a coupon")
def create_coupon(body: CouponBody, request: Request,
                  principal: Principal = Depends(require_roles("supplier", "operator"))) -> CouponOut:
    with sessions_of(request).begin() as s:
        if s.get(Coupon, body.code) is not None:
            raise ApiError(409, "COUPON_EXISTS", f"coupon {body.code} already exists")
        coupon = Coupon(supplier_id=_own_supplier(s, principal, body.supplier_id),
                        **body.model_dump(exclude={"supplier_id"}))
        s.add(coupon)
        s.flush()
        return CouponOut.model_validate(coupon, from_attributes=True)


@router.get("", response_model=list[CouponOut],
            summary="A supplier's active coupons: the supplier itself, or the platform's staff naming supplier_id. "
                    "Codes are handed out by the supplier, never listed publicly")
def list_coupons(request: Request, supplier_id: int | None = None,
                 principal: Principal = Depends(require_roles("supplier", *PLATFORM_STAFF))) -> list[CouponOut]:
    with sessions_of(request)() as s:
        if principal.role in PLATFORM_STAFF:
            if supplier_id is None:
                raise ApiError(422, "SUPPLIER_REQUIRED", "name the supplier_id whose coupons to list")
        else:
            supplier_id = _own_supplier(s, principal, supplier_id)
        coupons = s.scalars(select(Coupon).where(Coupon.supplier_id == supplier_id, Coupon.active)
                            .order_by(Coupon.created_at.desc()))
        return [CouponOut.model_validate(c, from_attributes=True) for c in coupons]
