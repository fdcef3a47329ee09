"""拼团 group buying: suppliers offer a SKU at a group price; buyers open a group by paying and
others join through the shared link (domain/group_buy.py, activities/group_buy.py,
workflows/group_buy.py). A place is taken here, answered at once (full, ended, already in it);
the order then runs like any other and is fulfilled only once the group forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select

from activities import group_buy
from api.auth import Principal, require_roles, signed_in
from api.deps import sessions_of
from api.errors import ApiError, not_found
from api.routers.flash_sales import active_supplier_id
from api.routers.orders import (
    PlaceOrderBody,
    check_placeable,
    order_input,
    order_no_for,
    payment_path,
    start_order_workflow,
)
from db.group_models import GroupBuy, GroupDeal
from domain.group_buy import MAX_SIZE, MAX_TIME_LIMIT, MIN_SIZE, MIN_TIME_LIMIT, GroupRefused, GroupStatus
from domain.flash_sales import sale_status
from domain.order_status import OrderStatus
from domain.orders import LineRequest, ShippingAddress

router = APIRouter(tags=["group buying"])
REFUSED_STATUS = {"SKU_NOT_FOUND": 404, "GROUP_DEAL_NOT_FOUND": 404, "GROUP_NOT_FOUND": 404, "NOT_YOUR_SKU": 403,
                  "NOT_ON_SALE": 409, "PRESALE_SKU": 409}
ID = dict(ge=1, le=2**31 - 1)


class GroupDealBody(BaseModel):
    sku_id: int = Field(**ID)
    group_price_fen: int = Field(gt=0, le=10**10, description="the price per unit in a group, below the SKU's")
    group_size: int = Field(ge=MIN_SIZE, le=MAX_SIZE, description="members a group needs to form")
    time_limit_minutes: int = Field(ge=int(MIN_TIME_LIMIT.total_seconds() // 60),
                                    le=int(MAX_TIME_LIMIT.total_seconds() // 60),
                                    description="from the opener's payment until the group fails if not full")
    starts_at: AwareDatetime = Field(description="with its time zone, e.g. 2026-12-12T20:00:00+08:00")
    ends_at: AwareDatetime = Field(description="no new group opens after this")


class GroupDealOut(BaseModel):
    id: int
    sku_id: int
    group_price_fen: int
    group_size: int
    time_limit_minutes: int
    starts_at: datetime
    ends_at: datetime
    status: Literal["upcoming", "running", "ended"]


class GroupOrderBody(BaseModel):
    quantity: int = Field(default=1, ge=1, le=99)
    window_id: int | None = Field(default=None, **ID)
    source: str = Field(default="share_link", pattern="^(window|share_link|live)$")
    address: ShippingAddress


class GroupOrderOut(BaseModel):
    order_no: str
    status: OrderStatus
    group_id: int
    unit_price_fen: int
    payment: str = Field(description="where the wx.requestPayment parameters are fetched once ready")


class GroupOut(BaseModel):
    """A group as its shared link shows it: how many places are left, never who the members are."""
    id: int
    deal_id: int
    sku_id: int
    group_price_fen: int
    size: int
    paid: int = Field(description="members whose payment stands (not refunded or being refunded)")
    places_left: int
    status: GroupStatus
    deadline: datetime | None
    platform_filled: bool
    joined: bool = Field(description="the caller holds a place in it")


def _deal_out(deal: GroupDeal, now: datetime) -> GroupDealOut:
    status = sale_status(active=deal.active, starts_at=deal.starts_at, ends_at=deal.ends_at, now=now)
    return GroupDealOut(id=deal.id, sku_id=deal.sku_id, group_price_fen=deal.group_price_fen,
                        group_size=deal.group_size, time_limit_minutes=deal.time_limit_seconds // 60,
                        starts_at=deal.starts_at, ends_at=deal.ends_at, status=status)


def _refused(err: GroupRefused) -> ApiError:
    return ApiError(REFUSED_STATUS.get(err.code, 409 if err.code.startswith("GROUP_") else 422), err.code, str(err))


@router.post("/group-deals", status_code=201, response_model=GroupDealOut,
             summary="Offer one of my SKUs at a group price (supplier)",
             responses={409: {"description": "NOT_ON_SALE, PRESALE_SKU"},
                        403: {"description": "NOT_YOUR_SKU, NOT_AN_ACTIVE_SUPPLIER"}})
def create_deal(body: GroupDealBody, request: Request,
                principal: Principal = Depends(require_roles("supplier"))) -> GroupDealOut:
    """422 `PRICE_NOT_LOWER`, `BAD_GROUP_SIZE`, `BAD_TIME_LIMIT`, `ENDS_TOO_EARLY` for terms a group
    deal cannot have."""
    now = datetime.now(UTC)
    with sessions_of(request).begin() as s:
        supplier_id = active_supplier_id(s, principal, "offers group deals")
        try:
            deal = group_buy.create_deal(s, supplier_id=supplier_id, sku_id=body.sku_id,
                                         group_price_fen=body.group_price_fen, group_size=body.group_size,
                                         time_limit=timedelta(minutes=body.time_limit_minutes),
                                         starts_at=body.starts_at, ends_at=body.ends_at, now=now)
        except GroupRefused as err:
            raise _refused(err) from err
        return _deal_out(deal, now)


@router.post("/group-deals/{deal_id}/deactivate", response_model=GroupDealOut,
             summary="Stop a group deal of mine: no new group opens; groups already open run to their end")
def deactivate_deal(request: Request, deal_id: int = Path(**ID),
                    principal: Principal = Depends(require_roles("supplier"))) -> GroupDealOut:
    with sessions_of(request).begin() as s:
        supplier_id = active_supplier_id(s, principal, "offers group deals")
        deal = s.get(GroupDeal, deal_id, with_for_update=True)
        if deal is None or deal.supplier_id != supplier_id:
            raise not_found(f"group deal {deal_id}")
        deal.active = False
        return _deal_out(deal, datetime.now(UTC))


@router.get("/group-deals", response_model=list[GroupDealOut], summary="Group deals running or about to start")
def list_deals(request: Request, sku_id: int | None = Query(default=None, **ID),
               limit: int = Query(default=20, ge=1, le=100), offset: int = Query(default=0, ge=0, le=100_000),
               _: Principal = Depends(signed_in)) -> list[GroupDealOut]:
    now = datetime.now(UTC)
    with sessions_of(request)() as s:
        query = select(GroupDeal).where(GroupDeal.active, GroupDeal.ends_at > now)
        if sku_id is not None:
            query = query.where(GroupDeal.sku_id == sku_id)
        return [_deal_out(d, now) for d in s.scalars(query.order_by(GroupDeal.starts_at, GroupDeal.id)
                                                     .limit(limit).offset(offset))]


@router.get("/group-deals/{deal_id}/groups", response_model=list[GroupOut],
            summary="Groups of a deal a buyer can join now (places left, soonest deadline first)")
def joinable(request: Request, deal_id: int = Path(**ID), limit: int = Query(default=20, ge=1, le=100),
             offset: int = Query(default=0, ge=0, le=100_000),
             principal: Principal = Depends(signed_in)) -> list[GroupOut]:
    now = datetime.now(UTC)
    with sessions_of(request)() as s:
        deal = s.get(GroupDeal, deal_id)
        if deal is None:
            raise not_found(f"group deal {deal_id}")
        groups = s.scalars(select(GroupBuy).where(GroupBuy.deal_id == deal_id, GroupBuy.status == GroupStatus.FORMING,
                                                  GroupBuy.deadline > now)
                           .order_by(GroupBuy.deadline, GroupBuy.id).limit(limit).offset(offset)).all()
        shown = [_group_out(s, g, deal, principal) for g in groups]
        return [g for g in shown if g.places_left > 0]


@router.get("/groups/{group_id}", response_model=GroupOut, summary="A group as its shared link shows it")
def one_group(request: Request, group_id: int = Path(**ID), principal: Principal = Depends(signed_in)) -> GroupOut:
    with sessions_of(request)() as s:
        group = s.get(GroupBuy, group_id)
        if group is None:
            raise not_found(f"group {group_id}")
        return _group_out(s, group, s.get(GroupDeal, group.deal_id), principal)


def _group_out(s, group: GroupBuy, deal: GroupDeal, principal: Principal) -> GroupOut:
    taken = group_buy.taken_places(s, group.id)
    return GroupOut(id=group.id, deal_id=deal.id, sku_id=deal.sku_id, group_price_fen=deal.group_price_fen,
                    size=group.size, paid=len(group_buy.paid_members(s, group.id)),
                    places_left=max(group.size - len(taken), 0) if group.status == GroupStatus.FORMING else 0,
                    status=group.status, deadline=group.deadline, platform_filled=group.platform_filled,
                    joined=principal.user_id in taken.values())


@router.post("/group-deals/{deal_id}/groups", status_code=202, response_model=GroupOrderOut,
             summary="Open a group: my order at the group price; others can join once it is paid",
             responses={409: {"description": "GROUP_DEAL_ENDED, GROUP_DEAL_NOT_STARTED, NOT_ON_SALE, OUT_OF_STOCK"}})
async def open_group(body: GroupOrderBody, request: Request, deal_id: int = Path(**ID),
                     principal: Principal = Depends(require_roles("buyer", "promoter")),
                     idempotency_key: str | None = Header(default=None, max_length=64),
                     device_id: str | None = Header(default=None, alias="X-Device-Id", max_length=128)) -> GroupOrderOut:
    return await _take_place(request, principal, body, idempotency_key, device_id, deal_id=deal_id)


@router.post("/groups/{group_id}/orders", status_code=202, response_model=GroupOrderOut,
             summary="Join a group through its shared link: a place is taken at once or refused",
             responses={409: {"description": "GROUP_FULL, GROUP_ENDED, GROUP_NOT_OPEN, GROUP_ALREADY_JOINED, "
                                             "NOT_ON_SALE, OUT_OF_STOCK"}})
async def join_group(body: GroupOrderBody, request: Request, group_id: int = Path(**ID),
                     principal: Principal = Depends(require_roles("buyer", "promoter")),
                     idempotency_key: str | None = Header(default=None, max_length=64),
                     device_id: str | None = Header(default=None, alias="X-Device-Id", max_length=128)) -> GroupOrderOut:
    return await _take_place(request, principal, body, idempotency_key, device_id, group_id=group_id)


async def _take_place(request: Request, principal: Principal, body: GroupOrderBody, idempotency_key: str | None,
                      device_id: str | None, *, deal_id: int | None = None, group_id: int | None = None) -> GroupOrderOut:
    settings = request.app.state.settings
    now = datetime.now(UTC)
    order_no = order_no_for(principal, idempotency_key, now.astimezone(ZoneInfo(settings.settlement_timezone)))

    def take() -> tuple[GroupDeal, GroupBuy, str, int | None, PlaceOrderBody]:
        with sessions_of(request)() as s:
            if deal_id is not None:
                deal = s.get(GroupDeal, deal_id)
            else:
                group = s.get(GroupBuy, group_id)
                deal = s.get(GroupDeal, group.deal_id) if group is not None else None
            if deal is None:
                raise not_found(f"group deal {deal_id}" if deal_id is not None else f"group {group_id}")
            order = PlaceOrderBody(window_id=body.window_id, source=body.source, fulfilment="delivery",
                                   address=body.address, lines=[LineRequest(sku_id=deal.sku_id, quantity=body.quantity)])
        openid, promoter_id = check_placeable(request, principal, order)
        with sessions_of(request).begin() as s:
            try:
                if deal_id is not None:
                    deal, group = group_buy.open_group(s, deal_id=deal_id, buyer_user_id=principal.user_id,
                                                       order_no=order_no, now=now)
                else:
                    deal, group = group_buy.join_group(s, group_id=group_id, buyer_user_id=principal.user_id,
                                                       order_no=order_no, now=now)
            except GroupRefused as err:
                raise _refused(err) from err
            return deal, group, openid, promoter_id, order

    deal, group, openid, promoter_id, order = await run_in_threadpool(take)
    await start_order_workflow(request, order_input(request, principal, order, order_no, openid, device_id,
                                                    group_id=group.id), promoter_id)
    return GroupOrderOut(order_no=order_no, status=OrderStatus.PENDING_PAYMENT, group_id=group.id,
                         unit_price_fen=deal.group_price_fen, payment=payment_path(order_no))
