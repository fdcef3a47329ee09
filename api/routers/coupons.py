"""Coupons: suppliers (or operators for them) issue fixed or threshold discounts on the
supplier's goods, and operators platform-funded ones on any order; buyers pass the code in
POST /orders. A coupon put in the coupon centre (`claimable`) is listed to buyers, who claim it
first (`per_buyer_limit` each, `total_limit` claims in all) and only then can use it; its cost is
borne by whoever issued it, and commission stays on what was paid."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import sessions_of
from api.errors import ApiError, not_found
from api.routers.pickup import _own_supplier
from activities.coupons import claim as claim_coupon
from db.order_models import Coupon, CouponClaim
from domain.coupons import CouponRefused

router = APIRouter(prefix="/coupons", tags=["coupons"])


class CouponBody(BaseModel):
    code: str = Field(pattern=r"^[A-Z0-9]{4,32}$")
    kind: Literal["fixed", "threshold"]
    amount_fen: int = Field(gt=0)
    threshold_fen: int = Field(default=0, ge=0)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    total_limit: int = Field(gt=0, le=10_000_000, description="uses in all; claims too, for the coupon centre")
    claimable: bool = Field(default=False, description="listed in the coupon centre: buyers claim it before use")
    per_buyer_limit: int = Field(default=1, ge=1, le=99, description="claims and uses per buyer")
    funded_by: Literal["supplier", "platform"] = Field(
        default="supplier", description="who bears the discount: the supplier (on its goods only) or the platform "
                                        "(on the whole order; operators only)")
    supplier_id: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                    description="operators only: the supplier a supplier-funded coupon is for")

    @model_validator(mode="after")
    def _consistent(self) -> CouponBody:
        if self.per_buyer_limit > self.total_limit:
            raise ValueError("per_buyer_limit cannot exceed total_limit")
        if self.funded_by == "platform" and self.supplier_id is not None:
            raise ValueError("a platform coupon is for no one supplier: leave supplier_id out")
        if self.kind == "threshold" and self.threshold_fen <= self.amount_fen:
            raise ValueError("a threshold coupon's threshold must exceed its amount")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CouponOut(BaseModel):
    code: str
    supplier_id: int | None = Field(description="none for a platform coupon")
    funded_by: Literal["supplier", "platform"]
    kind: str
    amount_fen: int
    threshold_fen: int
    starts_at: datetime | None
    ends_at: datetime | None
    total_limit: int
    used_count: int
    active: bool
    claimable: bool
    claimed_count: int
    per_buyer_limit: int


def _coupon_out(coupon: Coupon) -> CouponOut:
    return CouponOut.model_validate({
        **{k: getattr(coupon, k) for k in CouponOut.model_fields if k != "funded_by"},
        "funded_by": "platform" if coupon.supplier_id is None else "supplier"})


@router.post("", status_code=201, response_model=CouponOut,
             summary="Issue a coupon: a supplier's on its own goods, or (operators) the platform's on any order")
def create_coupon(body: CouponBody, request: Request,
                  principal: Principal = Depends(require_roles("supplier", "operator"))) -> CouponOut:
    with sessions_of(request).begin() as s:
        if s.get(Coupon, body.code) is not None:
            raise ApiError(409, "COUPON_EXISTS", f"coupon {body.code} already exists")
        if body.funded_by == "platform":
            if principal.role != "operator":
                raise ApiError(403, "PLATFORM_COUPON_BY_OPERATORS", "only operators issue platform-funded coupons")
            supplier_id = None
        else:
            supplier_id = _own_supplier(s, principal, body.supplier_id)
        coupon = Coupon(supplier_id=supplier_id, **body.model_dump(exclude={"supplier_id", "funded_by"}))
        s.add(coupon)
        s.flush()
        return _coupon_out(coupon)


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
        return [_coupon_out(c) for c in coupons]


CODE = Path(pattern=r"^[A-Z0-9]{4,32}$")
BUYERS = ("buyer", "promoter")


class ClaimOut(BaseModel):
    code: str
    supplier_id: int | None = Field(description="none for a platform coupon (any order)")
    kind: str
    amount_fen: int
    threshold_fen: int
    ends_at: datetime | None
    claimed_at: datetime
    state: Literal["unused", "used", "ended"]
    order_no: str | None


def _claim_out(claim: CouponClaim, coupon: Coupon, now: datetime) -> ClaimOut:
    ended = not coupon.active or (coupon.ends_at is not None and now >= coupon.ends_at)
    state = "used" if claim.order_no else "ended" if ended else "unused"
    return ClaimOut(code=coupon.code, supplier_id=coupon.supplier_id, kind=coupon.kind, amount_fen=coupon.amount_fen,
                    threshold_fen=coupon.threshold_fen, ends_at=coupon.ends_at, claimed_at=claim.claimed_at,
                    state=state, order_no=claim.order_no)


@router.get("/centre", response_model=list[CouponOut], summary="The coupon centre: coupons buyers can claim now")
def coupon_centre(request: Request, supplier_id: int | None = Query(default=None, ge=1, le=2**31 - 1),
                  limit: int = Query(default=20, ge=1, le=100), offset: int = Query(default=0, ge=0, le=100_000),
                  _: Principal = Depends(require_roles(*BUYERS))) -> list[CouponOut]:
    now = datetime.now(UTC)
    with sessions_of(request)() as s:
        query = select(Coupon).where(Coupon.claimable, Coupon.active, Coupon.claimed_count < Coupon.total_limit,
                                     (Coupon.ends_at.is_(None)) | (Coupon.ends_at > now))
        if supplier_id is not None:  # that supplier's coupons, and the platform's, which apply to its goods too
            query = query.where((Coupon.supplier_id == supplier_id) | Coupon.supplier_id.is_(None))
        coupons = s.scalars(query.order_by(Coupon.created_at.desc(), Coupon.code).limit(limit).offset(offset))
        return [_coupon_out(c) for c in coupons]


@router.post("/{code}/claim", status_code=201, response_model=ClaimOut, summary="Claim a coupon of the coupon centre",
             responses={409: {"description": "ALREADY_CLAIMED, COUPON_CLAIMED_OUT, COUPON_ENDED, COUPON_NOT_STARTED"}})
async def claim(request: Request, code: str = CODE,
                principal: Principal = Depends(require_roles(*BUYERS))) -> ClaimOut:
    def take() -> ClaimOut:
        with sessions_of(request).begin() as s:
            try:
                held = claim_coupon(s, code, principal.user_id)
            except CouponRefused as err:
                status = 404 if err.code == "COUPON_NOT_FOUND" else 409
                raise ApiError(status, err.code, err.message) from err
            return _claim_out(held, s.get(Coupon, code), datetime.now(UTC))

    return await run_in_threadpool(take)


@router.get("/mine", response_model=list[ClaimOut], summary="My claimed coupons: unused, used or ended")
def my_coupons(request: Request, limit: int = Query(default=50, ge=1, le=200),
               offset: int = Query(default=0, ge=0, le=100_000),
               principal: Principal = Depends(require_roles(*BUYERS))) -> list[ClaimOut]:
    now = datetime.now(UTC)
    with sessions_of(request)() as s:
        rows = s.execute(select(CouponClaim, Coupon).join(Coupon, Coupon.code == CouponClaim.code)
                         .where(CouponClaim.buyer_user_id == principal.user_id)
                         .order_by(CouponClaim.claimed_at.desc(), CouponClaim.id.desc()).limit(limit).offset(offset))
        return [_claim_out(claim, coupon, now) for claim, coupon in rows]


@router.post("/{code}/deactivate", response_model=CouponOut,
             summary="Stop a coupon: no more claims or uses (claims already made cannot be used either)")
def deactivate(request: Request, code: str = CODE,
               principal: Principal = Depends(require_roles("supplier", "operator"))) -> CouponOut:
    with sessions_of(request).begin() as s:
        coupon = s.get(Coupon, code, with_for_update=True)
        if coupon is None or (principal.role == "supplier"
                              and _own_supplier(s, principal, None) != coupon.supplier_id):
            raise not_found(f"coupon {code}")
        coupon.active = False
        s.flush()
        return _coupon_out(coupon)
