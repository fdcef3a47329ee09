"""Pre-sale (预售): a supplier puts a SKU on pre-sale (deposit, balance window); a buyer who
paid the deposit pays the balance once its window opens (`POST /orders/{no}/balance`).
Rules: chuchuang/domain/presale.py."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.auth import Principal, require_roles, signed_in
from api.deps import run_update, sessions_of
from api.errors import ApiError, not_found
from db.models import Order, Payment, Product, Sku, Supplier
from db.presale_models import PresaleOrder, SkuPresale
from domain.commission import SkuCommission, line_commission_pool
from domain.money import apply_bps
from domain.orders import OrderProgress
from domain.presale import PresaleRefused, PresaleRules, presale_terms
from workflows.order import OrderWorkflow, workflow_id

router = APIRouter(tags=["pre-sale"])


class PresaleBody(BaseModel):
    deposit_fen: int | None = Field(default=None, gt=0, description="per unit; default PRESALE_DEPOSIT_BPS of the price")
    balance_starts_at: datetime | None = Field(default=None, description="default now + PRESALE_BALANCE_STARTS_AFTER")
    balance_ends_at: datetime | None = Field(default=None, description="default start + PRESALE_BALANCE_WINDOW")


class PresaleOut(BaseModel):
    sku_id: int
    price_fen: int
    deposit_fen: int
    balance_fen: int
    balance_starts_at: datetime
    balance_ends_at: datetime
    active: bool


class PaymentOut(BaseModel):
    out_trade_no: str
    kind: str
    amount_fen: int
    status: str
    paid_at: datetime | None


class PresaleOrderOut(BaseModel):
    order_no: str
    status: str
    deposit_fen: int
    balance_fen: int
    balance_starts_at: datetime
    balance_ends_at: datetime
    deposit_paid_at: datetime | None
    reminded_at: datetime | None
    balance_paid_at: datetime | None
    payments: list[PaymentOut]


def rules_of(settings) -> PresaleRules:
    return PresaleRules(deposit_bps=settings.presale_deposit_bps, max_deposit_bps=settings.presale_deposit_max_bps,
                        balance_starts_after=settings.presale_balance_starts_after,
                        balance_window=settings.presale_balance_window)


def _own_sku(s, principal: Principal, sku_id: int) -> tuple[Sku, Supplier]:
    row = s.execute(select(Sku, Supplier).join(Product, Sku.product_id == Product.id)
                    .join(Supplier, Product.supplier_id == Supplier.id).where(Sku.id == sku_id)).first()
    if row is None or row[1].owner_user_id != principal.user_id:
        raise not_found(f"SKU {sku_id}")
    return row


def _out(sku: Sku, p: SkuPresale) -> PresaleOut:
    return PresaleOut(sku_id=sku.id, price_fen=sku.price_fen, deposit_fen=p.deposit_fen,
                      balance_fen=sku.price_fen - p.deposit_fen, balance_starts_at=p.balance_starts_at,
                      balance_ends_at=p.balance_ends_at, active=p.active)


@router.put("/skus/{sku_id}/presale", response_model=PresaleOut, summary="Put a SKU on pre-sale (supplier)")
def put_presale(sku_id: int, body: PresaleBody, request: Request,
                principal: Principal = Depends(require_roles("supplier"))) -> PresaleOut:
    settings = request.app.state.settings
    with sessions_of(request).begin() as s:
        sku, supplier = _own_sku(s, principal, sku_id)
        rule = SkuCommission(sku.commission_bps, sku.commission_fixed_fen)
        try:
            terms = presale_terms(
                price_fen=sku.price_fen, now=datetime.now(UTC), rules=rules_of(settings), deposit_fen=body.deposit_fen,
                balance_starts_at=body.balance_starts_at, balance_ends_at=body.balance_ends_at,
                commission_pool_fen=line_commission_pool(sku.price_fen, 1, rule),
                service_fee_fen=apply_bps(sku.price_fen, supplier.service_fee_bps))
        except PresaleRefused as err:
            raise ApiError(422, err.code, err.message) from err
        row = s.get(SkuPresale, sku_id, with_for_update=True)
        if row is None:
            row = SkuPresale(sku_id=sku_id)
            s.add(row)
        # orders already placed keep the terms they were placed with (presale_orders)
        row.deposit_fen, row.balance_starts_at, row.balance_ends_at = (
            terms.deposit_fen, terms.balance_starts_at, terms.balance_ends_at)
        row.active = True
        s.flush()
        return _out(sku, row)


@router.delete("/skus/{sku_id}/presale", response_model=PresaleOut, summary="End a SKU's pre-sale (supplier)")
def end_presale(sku_id: int, request: Request,
                principal: Principal = Depends(require_roles("supplier"))) -> PresaleOut:
    with sessions_of(request).begin() as s:
        sku, _ = _own_sku(s, principal, sku_id)
        row = s.get(SkuPresale, sku_id, with_for_update=True)
        if row is None:
            raise not_found(f"pre-sale of SKU {sku_id}")
        row.active = False
        return _out(sku, row)


@router.get("/skus/{sku_id}/presale", response_model=PresaleOut, summary="A SKU's pre-sale terms")
def get_presale(sku_id: int, request: Request, principal: Principal = Depends(signed_in)) -> PresaleOut:
    with sessions_of(request)() as s:
        sku, row = s.get(Sku, sku_id), s.get(SkuPresale, sku_id)
        if sku is None or row is None:
            raise not_found(f"pre-sale of SKU {sku_id}")
        return _out(sku, row)


def _buyers_presale(request: Request, principal: Principal, order_no: str) -> PresaleOrderOut:
    with sessions_of(request)() as s:
        order = s.get(Order, order_no)
        presale = s.get(PresaleOrder, order_no)
        if order is None or order.buyer_user_id != principal.user_id or presale is None:
            raise not_found(f"pre-sale order {order_no}")
        payments = s.scalars(select(Payment).where(Payment.order_no == order_no).order_by(Payment.created_at)).all()
        return PresaleOrderOut(
            order_no=order_no, status=presale.status, deposit_fen=presale.deposit_fen,
            balance_fen=presale.balance_fen, balance_starts_at=presale.balance_starts_at,
            balance_ends_at=presale.balance_ends_at, deposit_paid_at=presale.deposit_paid_at,
            reminded_at=presale.reminded_at, balance_paid_at=presale.balance_paid_at,
            payments=[PaymentOut.model_validate(p, from_attributes=True) for p in payments])


@router.get("/orders/{order_no}/presale", response_model=PresaleOrderOut, summary="A pre-sale order's payments (buyer)")
def presale_order(order_no: str, request: Request,
                  principal: Principal = Depends(require_roles("buyer", "promoter"))) -> PresaleOrderOut:
    return _buyers_presale(request, principal, order_no)


@router.post("/orders/{order_no}/balance", response_model=OrderProgress,
             summary="Pay a pre-sale order's balance: the WeChat Pay parameters (buyer)")
async def pay_balance(order_no: str, request: Request,
                      principal: Principal = Depends(require_roles("buyer", "promoter"))) -> OrderProgress:
    await run_in_threadpool(_buyers_presale, request, principal, order_no)  # 404 unless it is theirs
    progress = await run_update(request, workflow_id(order_no), OrderWorkflow.request_balance)
    if progress.balance_prepay is None:
        raise ApiError(409, "BALANCE_NOT_PAYABLE", f"order {order_no} is {progress.status}; no balance to pay")
    return progress
