"""Channels shop inbound: events kept once, the shop's orders and after-sales read back from its
API and turned into our orders and refunds, our after-sale decisions sent back, and the pull that
finds what a lost push did not bring. Every step reads the shop first, so a repeat is harmless."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.errors import business_error
from activities.refunds import open_refund, refund_input
from db.channels_models import ChannelsEvent, ChannelsPullCursor
from db.models import Order, OrderLine, Shipment, User, Window
from db.order_models import Refund
from domain.channels_inbound import (
    AFTERSALE_ENDED_UNPAID,
    FINDER_ACCOUNT,
    AfterSaleStatus,
    ShopAfterSale,
    ShopEvent,
    ShopLine,
    ShopOrderInput,
    ShopOrderState,
    ShopRefundStep,
    allocate,
    pulled_aftersale_event,
    pulled_order_event,
    refund_kind,
    shop_address,
    shop_order_no,
    shop_refund_no,
    shop_workflow_id,
)
from domain.order_process import OrderTimings
from domain.orders import LineRequest, PlaceOrderInput
from domain.refunds import RefundLineRequest, RefundRefused, RefundRules, RefundTimings
from integrations.channels import ChannelsClient, ChannelsOrder
from integrations.errors import PartnerRejected, PartnerUnavailable

log = structlog.get_logger()
OUR_SKU_PREFIX = "cc-sku-"
PULL_SPAN = 24 * 3600  # the after-sale list takes at most 24 hours per call
ORDER_CURSOR, AFTERSALE_CURSOR = "orders", "aftersales"


def store_events(s: Session, events: list[ShopEvent], source: str) -> list[ShopEvent]:
    """Keep each event once by its key; the ones not seen before."""
    new: list[ShopEvent] = []
    for e in events:
        inserted = s.execute(insert(ChannelsEvent).values(
            key=e.key, event=e.event, shop_order_id=e.order_id, after_sale_order_id=e.after_sale_order_id,
            source=source, create_time=e.create_time).on_conflict_do_nothing().returning(ChannelsEvent.id)).scalar()
        if inserted is not None:
            new.append(e)
    return new


SHOP_ORDER_WORKFLOW = "ShopOrderWorkflow"  # workflows/shop_order.py (named here: activities do not import workflows)


async def wake_shop_order(client: Client, task_queue: str, event: ShopEvent, timings: OrderTimings,
                          linger: timedelta) -> None:
    """Hand one event to its shop order's workflow: signalled when running, started otherwise."""
    await client.start_workflow(
        SHOP_ORDER_WORKFLOW, ShopOrderInput(shop_order_id=event.order_id, order_timings=timings, linger=linger),
        id=shop_workflow_id(event.order_id), task_queue=task_queue, start_signal="shop_event",
        start_signal_args=[event])


def _partner_error(err: Exception) -> Exception:
    if isinstance(err, PartnerRejected):
        return business_error(f"CHANNELS_{err.code}", str(err))
    if isinstance(err, PartnerUnavailable):
        return err  # retried
    return err


def _our_sku(out_sku_id: str) -> int | None:
    if out_sku_id.startswith(OUR_SKU_PREFIX) and out_sku_id[len(OUR_SKU_PREFIX):].isdigit():
        return int(out_sku_id[len(OUR_SKU_PREFIX):])
    return None


class ChannelsInboundActivities:
    def __init__(self, sessions: sessionmaker[Session], channels: ChannelsClient, refund_rules: RefundRules,
                 return_address_id: str | None = None):
        self.sessions = sessions
        self.channels = channels
        self.refund_rules = refund_rules
        self.return_address_id = return_address_id  # the shop's 退货地址 id buyers send returns to

    def all(self) -> list:
        return [self.read_shop_order, self.import_shop_order, self.shop_refund_step, self.accept_shop_aftersale,
                self.reject_shop_aftersale, self.shop_aftersale_status, self.pull_shop_changes, self.wake_shop_orders]

    # --- orders ---------------------------------------------------------------------------------
    @activity.defn
    async def read_shop_order(self, shop_order_id: str) -> ShopOrderState:
        try:
            order = await self.channels.get_order(shop_order_id)
            lines = await self._lines(order)
        except (PartnerRejected, PartnerUnavailable) as err:
            raise _partner_error(err) from err
        paid = max(order.order_price - order.freight, 0)
        for line, part in zip(lines, allocate(paid, [ln.list_fen for ln in lines]) if lines else [], strict=True):
            line.paid_fen = part
        with self.sessions() as s:
            ours = s.scalar(select(Order.status).where(Order.order_no == shop_order_no(shop_order_id)))
        return ShopOrderState(
            shop_order_id=shop_order_id, status=order.status, buyer_openid=order.openid or "", lines=lines,
            paid_fen=paid, transaction_id=order.transaction_id,
            finder_ids=[str(i.get("account_id")) for i in order.source_infos
                        if i.get("account_type") == FINDER_ACCOUNT and i.get("account_id")],
            address=order.address, our_status=ours)

    async def _lines(self, order: ChannelsOrder) -> list[ShopLine]:
        lines: list[ShopLine] = []
        for p in order.products:
            sku_id = _our_sku(p.out_sku_id)
            if sku_id is None:  # an older order without out_sku_id: the shop's product says it
                product = await self.channels.get_product(p.product_id)
                sku_id = next((_our_sku(s.out_sku_id or "") for s in product.skus if s.sku_id == p.sku_id), None)
            if sku_id is None:
                raise business_error("SHOP_SKU_UNKNOWN", f"shop SKU {p.product_id}/{p.sku_id} is not one of ours")
            lines.append(ShopLine(sku_id=sku_id, quantity=p.sku_cnt, list_fen=p.sale_price * p.sku_cnt, paid_fen=0))
        return lines

    @activity.defn
    def import_shop_order(self, state: ShopOrderState) -> PlaceOrderInput:
        """Our order for a shop order that was paid: the buyer (by the shop's openid), the promoter
        whose 视频号 window sold it (source_infos), the lines at what was paid in the shop."""
        if not state.paid or not state.lines:
            raise business_error("SHOP_ORDER_NOT_PAID", f"shop order {state.shop_order_id} is {state.status}")
        with self.sessions.begin() as s:
            buyer = self._buyer(s, state.buyer_openid)
            window_id = s.scalar(select(Window.id).where(Window.channels_finder_id.in_(state.finder_ids))
                                 .order_by(Window.id).limit(1)) if state.finder_ids else None
            return PlaceOrderInput(
                order_no=shop_order_no(state.shop_order_id), buyer_user_id=buyer.id, buyer_openid=buyer.openid or "",
                window_id=window_id, source="channels", channels_order_id=state.shop_order_id,
                lines=[LineRequest(sku_id=ln.sku_id, quantity=ln.quantity) for ln in state.lines],
                address=shop_address(state.address), shop_paid_fen=[ln.paid_fen for ln in state.lines])

    @staticmethod
    def _buyer(s: Session, openid: str) -> User:
        if not openid:
            raise business_error("SHOP_BUYER_UNKNOWN", "the shop order names no buyer")
        s.execute(insert(User).values(role="buyer", openid=openid, display_name=f"视频号用户{openid[-4:]}",
                                      active=True).on_conflict_do_nothing(index_elements=["openid"]))
        return s.scalar(select(User).where(User.openid == openid))

    # --- after-sales ----------------------------------------------------------------------------
    async def _aftersale(self, after_sale_order_id: str) -> ShopAfterSale:
        try:
            a = await self.channels.get_aftersale(after_sale_order_id)
        except (PartnerRejected, PartnerUnavailable) as err:
            raise _partner_error(err) from err
        info = a.product_info or {}
        sku_id = _our_sku(str(info.get("out_sku_id") or ""))
        if sku_id is None and info.get("product_id"):
            product = await self.channels.get_product(str(info["product_id"]))
            sku_id = next((_our_sku(s.out_sku_id or "") for s in product.skus if s.sku_id == str(info.get("sku_id"))),
                          None)
        return ShopAfterSale(after_sale_order_id=a.after_sale_order_id, order_id=a.order_id, status=a.status,
                             type=a.type, refund_fen=a.refund_amount, sku_id=sku_id, count=int(info.get("count") or 0))

    @activity.defn
    async def shop_refund_step(self, after_sale_order_id: str, timings: RefundTimings) -> ShopRefundStep:
        """The refund of an after-sale: opened (and to be started) when the shop waits for our
        decision and we have none yet; else the one we have, with the shop's status to tell it."""
        sale = await self._aftersale(after_sale_order_id)
        return await asyncio.to_thread(self._refund_step, sale, timings)

    def _refund_step(self, sale: ShopAfterSale, timings: RefundTimings) -> ShopRefundStep:
        refund_no = shop_refund_no(sale.after_sale_order_id)
        with self.sessions.begin() as s:
            refund = s.get(Refund, refund_no)
            if refund is not None:  # ours already; its workflow is told, or started if it never was
                unstarted = refund.workflow_started_at is None
                return ShopRefundStep(refund_no=refund_no, status=sale.status, start=unstarted,
                                      refund_input=refund_input(s, refund, timings) if unstarted else None)
            order = s.get(Order, shop_order_no(sale.order_id))
            if order is None:
                raise business_error("SHOP_ORDER_NOT_IMPORTED", f"shop order {sale.order_id} has no order here yet")
            if sale.status in AFTERSALE_ENDED_UNPAID:
                return ShopRefundStep(refund_no=refund_no, status=sale.status)  # withdrawn before we saw it
            lines = [RefundLineRequest(line_id=ln.id, quantity=min(sale.count, ln.quantity - ln.refund_claimed_quantity))
                     for ln in s.scalars(select(OrderLine).where(OrderLine.order_no == order.order_no,
                                                                 OrderLine.sku_id == sale.sku_id).order_by(OrderLine.id))
                     if sale.count and ln.quantity > ln.refund_claimed_quantity][:1] or None
            shipped = s.scalar(select(Shipment.id).where(Shipment.order_no == order.order_no).limit(1)) is not None
            kind = refund_kind(sale.type, shipped=shipped)
            try:
                refund, _ = open_refund(s, refund_no=refund_no, order_no=order.order_no,
                                        buyer_user_id=order.buyer_user_id, kind=kind, lines=lines,
                                        reason=f"视频号售后 {sale.after_sale_order_id}", rules_=self.refund_rules,
                                        from_shop=True)
            except RefundRefused as err:
                raise business_error(err.code, err.message) from None
            if refund.amount_fen != sale.refund_fen:
                log.warning("channels.aftersale.amount_differs", after_sale_order_id=sale.after_sale_order_id,
                            shop_fen=sale.refund_fen, ours_fen=refund.amount_fen)
            return ShopRefundStep(refund_no=refund_no, status=sale.status, start=True,
                                  refund_input=refund_input(s, refund, timings))

    @activity.defn
    async def accept_shop_aftersale(self, after_sale_order_id: str) -> str:
        """Accept at the shop (a return: first to let the buyer send it, then on receipt); the
        shop's status after. Accepting what the shop already moved on from changes nothing."""
        sale = await self._aftersale(after_sale_order_id)
        if sale.status in (AfterSaleStatus.MERCHANT_PROCESSING, AfterSaleStatus.MERCHANT_WAIT_RECEIPT):
            returning = sale.type == "RETURN" and sale.status == AfterSaleStatus.MERCHANT_PROCESSING
            if returning and not self.return_address_id:
                raise business_error("RETURN_ADDRESS_NOT_SET", "set CHANNELS_RETURN_ADDRESS_ID: the shop needs "
                                                               "the address buyers send returns to")
            try:
                await self.channels.accept_aftersale(
                    after_sale_order_id, address_id=self.return_address_id if returning else None)
            except (PartnerRejected, PartnerUnavailable) as err:
                raise _partner_error(err) from err
            sale = await self._aftersale(after_sale_order_id)
        return sale.status

    @activity.defn
    async def reject_shop_aftersale(self, after_sale_order_id: str, reason: str) -> str:
        sale = await self._aftersale(after_sale_order_id)
        if sale.status == AfterSaleStatus.MERCHANT_PROCESSING:
            try:
                await self.channels.reject_aftersale(after_sale_order_id, reason[:200])
            except (PartnerRejected, PartnerUnavailable) as err:
                raise _partner_error(err) from err
            sale = await self._aftersale(after_sale_order_id)
        return sale.status

    @activity.defn
    async def shop_aftersale_status(self, after_sale_order_id: str) -> str:
        return (await self._aftersale(after_sale_order_id)).status

    # --- the pull -------------------------------------------------------------------------------
    @activity.defn
    async def pull_shop_changes(self, lookback_seconds: int) -> list[ShopEvent]:
        """Orders and after-sales the shop changed since each cursor (less `lookback_seconds`), as
        events; only the ones not seen before are returned (and kept)."""
        now = int(time.time())
        # the lists' end is exclusive: this second is read too (a later change in it is read
        # again by the next pull, and dropped there as seen)
        cursors = await asyncio.to_thread(self._cursors, now)
        events: list[ShopEvent] = []
        try:
            for start, end in _spans(cursors[ORDER_CURSOR] - lookback_seconds, now + 1):
                for order_id in await self._ids(self.channels.list_orders, start_time=start, end_time=end,
                                                by_update=True):
                    order = await self.channels.get_order(order_id)
                    events.append(pulled_order_event(order_id, order.update_time))
            for start, end in _spans(cursors[AFTERSALE_CURSOR] - lookback_seconds, now + 1):
                for aid in await self._ids(self.channels.list_aftersales, begin_update_time=start,
                                           end_update_time=end):
                    a = await self.channels.get_aftersale(aid)
                    events.append(pulled_aftersale_event(a.order_id, aid, a.update_time or now))
        except (PartnerRejected, PartnerUnavailable) as err:
            raise _partner_error(err) from err
        return await asyncio.to_thread(self._keep, events, now)

    @activity.defn
    async def wake_shop_orders(self, events: list[ShopEvent], timings: OrderTimings, linger: timedelta) -> int:
        """Each event to its shop order's workflow (a repeat is harmless: the workflow reads the shop)."""
        client, queue = activity.client(), activity.info().task_queue
        for event in events:
            await wake_shop_order(client, queue, event, timings, linger)
        return len(events)

    @staticmethod
    async def _ids(list_call, **kwargs) -> list[str]:
        ids: list[str] = []
        next_key = None
        while True:
            page = await list_call(next_key=next_key, **kwargs)
            ids += page.ids
            if not page.has_more or not page.next_key:
                return ids
            next_key = page.next_key

    def _cursors(self, now: int) -> dict[str, int]:
        with self.sessions() as s:
            found = {c.name: c.until for c in s.scalars(select(ChannelsPullCursor))}
        # a first pull looks one span back
        return {name: found.get(name, now - PULL_SPAN) for name in (ORDER_CURSOR, AFTERSALE_CURSOR)}

    def _keep(self, events: list[ShopEvent], now: int) -> list[ShopEvent]:
        with self.sessions.begin() as s:
            new = store_events(s, events, "pull")
            for name in (ORDER_CURSOR, AFTERSALE_CURSOR):
                s.execute(insert(ChannelsPullCursor).values(name=name, until=now, updated_at=datetime.now(UTC))
                          .on_conflict_do_update(index_elements=["name"],
                                                 set_={"until": now, "updated_at": datetime.now(UTC)}))
            return new


def _spans(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) in pieces the shop's list APIs take (24 hours at most), oldest first."""
    spans, at = [], max(start, end - 7 * PULL_SPAN)  # never more than a week back
    while at < end:
        spans.append((at, min(at + PULL_SPAN, end)))
        at += PULL_SPAN
    return spans
