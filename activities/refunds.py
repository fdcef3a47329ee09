"""Refund side effects: claiming units at request, WeChat Pay refunds (out_refund_no = our
refund_no, intent written first), and the ledger reversal per line — from pending commission
and the order's held money before the order completed, from available commission (a negative
balance is carried, never lost), the supplier's payable and platform revenue after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import bonuses, coupons, freight, group_buy, ledger, risk
from activities.catalog import notify
from activities.errors import business_error
from activities.order_events import record_event
from activities.orders import restock
from activities.payments import as_activity_error
from activities.presale import order_of_trade, plan_refund_payments, refund_payments
from db.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Order,
    OrderEvent,
    OrderLine,
    Payment,
    Shipment,
)
from db.order_models import PickupCode, Refund, RefundLine
from db.presale_models import RefundPayment
from domain import ledger as rules
from domain.order_status import OrderStatus
from domain.orders import PaymentNotice
from domain.presale import combined_refund_status
from domain.refunds import (
    BUYER_KINDS,
    RESTOCKED,
    WHOLE_PAYMENT,
    RefundDecision,
    RefundInput,
    RefundKind,
    RefundLineRequest,
    RefundNotice,
    RefundOutcome,
    RefundPlan,
    RefundRefused,
    RefundRules,
    RefundStatus,
    RefundTimings,
    ReturnParcel,
    StrandedRefunds,
    aftersale_of_refund_no,
    plan_refund,
    share_of,
)
from domain.risk import RiskKind
from integrations.wechatpay import WeChatPayClient


def paid_in_shop(s: Session, order_no: str) -> bool:
    """Paid in the Channels shop: refunds are the shop's after-sales, money goes back through it."""
    return s.scalar(select(Payment.out_trade_no).where(Payment.order_no == order_no,
                                                      Payment.kind == "channels")) is not None


def open_refund(s: Session, *, refund_no: str, order_no: str, buyer_user_id: int | None, kind: RefundKind,
                lines: list[RefundLineRequest] | None, reason: str, rules_: RefundRules,
                now: datetime | None = None, from_shop: bool = False) -> tuple[Refund, RefundPlan]:
    """Claim the units and record the request in the caller's transaction, or raise
    RefundRefused. Called again with the same refund_no it returns the refund already made.
    `buyer_user_id` None means the platform asks (system refunds); `from_shop`: an after-sale
    opened in the Channels shop (the only way an order paid there is refunded)."""
    now = now or datetime.now(UTC)
    order = s.get(Order, order_no, with_for_update=True)
    if order is None or (buyer_user_id is not None and order.buyer_user_id != buyer_user_id):
        raise RefundRefused("ORDER_NOT_FOUND", f"order {order_no} not found")
    if not from_shop and buyer_user_id is not None and paid_in_shop(s, order_no):
        raise RefundRefused("REFUND_IN_SHOP", "this order was paid in the WeChat Channels shop: ask for the "
                                              "refund there (售后), it reaches us from the shop")
    existing = s.get(Refund, refund_no)
    if existing is not None:
        if existing.order_no != order_no:
            raise RefundRefused("IDEMPOTENCY_CONFLICT", "this request key was used for another order")
        return existing, plan_of(existing)
    order_lines = {ln.id: ln for ln in s.scalars(
        select(OrderLine).where(OrderLine.order_no == order_no).order_by(OrderLine.id).with_for_update())}
    wanted = lines or [RefundLineRequest(line_id=ln.id, quantity=ln.quantity - ln.refund_claimed_quantity)
                       for ln in order_lines.values() if ln.quantity > ln.refund_claimed_quantity]
    if not wanted or any(w.line_id in order_lines and w.quantity > order_lines[w.line_id].quantity
                         - order_lines[w.line_id].refund_claimed_quantity for w in wanted):
        # a retried request (no Idempotency-Key) finds the same refund still open
        same = _open_same_request(s, order_no, buyer_user_id, kind, lines)
        if same is not None:
            return same, plan_of(same)
    if not wanted:
        raise RefundRefused("NOTHING_TO_REFUND", "every unit of this order is already refunded or being refunded")
    if lines and group_buy.in_undecided_group(s, order_no) and any(
            w.line_id in order_lines and w.quantity < order_lines[w.line_id].quantity for w in wanted):
        raise RefundRefused("GROUP_ORDER_WHOLE", "until its group forms, a group-buy order is cancelled whole")
    if len({w.line_id for w in wanted}) != len(wanted):
        raise RefundRefused("DUPLICATE_LINE", "each line may appear once")
    refund_lines: list[RefundLine] = []
    for want in wanted:
        line = order_lines.get(want.line_id)
        if line is None:
            raise RefundRefused("LINE_NOT_FOUND", f"line {want.line_id} is not part of order {order_no}")
        left = line.quantity - line.refund_claimed_quantity
        if want.quantity > left:
            raise RefundRefused("QUANTITY_TOO_HIGH", f"line {line.id} has {left} unit(s) left to refund")
        refund_lines.append(RefundLine(
            refund_no=refund_no, order_line_id=line.id, quantity=want.quantity,
            claimed_before=line.refund_claimed_quantity,
            amount_fen=share_of(line.paid_fen, line.quantity, line.refund_claimed_quantity, want.quantity)))
        line.refund_claimed_quantity += want.quantity
    amount = sum(rl.amount_fen for rl in refund_lines)
    amount += freight.claim_for_refund(s, order_no, refund_no, kind)  # the freight too, by its rule
    if kind == RefundKind.PICKUP_EXPIRED or buyer_user_id is None:
        plan = RefundPlan(needs_return=False)
    else:
        pickup = s.get(PickupCode, order_no)
        recent = _recent_refunds(s, order.buyer_user_id, now, rules_)
        plan = plan_refund(kind, status=OrderStatus(order.status), pickup=order.fulfilment == "pickup",
                           picked_up=pickup is not None and pickup.status == "picked_up",
                           received_at=_received_at(s, order_no), now=now, amount_fen=amount,
                           recent_refunds=recent, rules=rules_)
        if recent >= rules_.frequent_returns:
            risk.raise_flag(s, RiskKind.FREQUENT_RETURNS, "refund", refund_no,
                            f"buyer has {recent} refunds in {rules_.frequent_returns_window.days} days",
                            buyer_user_id=order.buyer_user_id, order_no=order_no)
        if amount > rules_.review_above_fen:  # flagged for support; never holds the refund up
            risk.raise_flag(s, RiskKind.LARGE_REFUND, "refund", refund_no,
                            f"refund of {amount} fen above {rules_.review_above_fen}",
                            buyer_user_id=order.buyer_user_id, order_no=order_no)
    refund = Refund(refund_no=refund_no, order_no=order_no, buyer_user_id=order.buyer_user_id, kind=kind,
                    reason=reason, amount_fen=amount, needs_return=plan.needs_return,
                    review_reasons="; ".join(plan.review_reasons),
                    status=RefundStatus.REVIEWING if plan.review_reasons else (
                        RefundStatus.AWAITING_RETURN if plan.needs_return else RefundStatus.REFUNDING))
    s.add(refund)
    s.flush()
    s.add_all(refund_lines)
    plan_refund_payments(s, refund_no, order_no, amount)  # a pre-sale order: from balance, then deposit
    order.open_refunds += 1
    record_event(s, order_no, OrderStatus.AFTER_SALE, f"refund {refund_no} requested ({kind}): {amount} fen",
                 f"refund:{refund_no}:opened")
    s.flush()
    return refund, plan


def plan_of(refund: Refund) -> RefundPlan:
    return RefundPlan(refund.needs_return, [r for r in refund.review_reasons.split("; ") if r])


def _open_same_request(s: Session, order_no: str, buyer_user_id: int | None, kind: RefundKind,
                       lines: list[RefundLineRequest] | None) -> Refund | None:
    """The buyer's refund of this kind still open on the order for the same units (any units
    when the request names none): what a retried request without an Idempotency-Key meant."""
    if buyer_user_id is None:
        return None
    candidates = s.scalars(select(Refund).where(
        Refund.order_no == order_no, Refund.buyer_user_id == buyer_user_id, Refund.kind == kind,
        Refund.status.not_in([st.value for st in RefundStatus if st.final])).order_by(Refund.created_at.desc()))
    for refund in candidates:
        if lines is None:
            return refund
        claimed = {(rl.order_line_id, rl.quantity) for rl in s.scalars(
            select(RefundLine).where(RefundLine.refund_no == refund.refund_no))}
        if claimed == {(ln.line_id, ln.quantity) for ln in lines}:
            return refund
    return None


def refund_input(s: Session, refund: Refund, timings: RefundTimings) -> RefundInput:
    """What a buyer's refund's workflow is started with, from its row."""
    suppliers = sorted(set(s.scalars(select(OrderLine.supplier_id).join(
        RefundLine, RefundLine.order_line_id == OrderLine.id).where(RefundLine.refund_no == refund.refund_no))))
    plan = plan_of(refund)
    return RefundInput(refund_no=refund.refund_no, order_no=refund.order_no, kind=refund.kind,
                       amount_fen=refund.amount_fen, needs_return=plan.needs_return,
                       review_reasons=plan.review_reasons, supplier_ids=suppliers, timings=timings,
                       channels_aftersale_id=aftersale_of_refund_no(refund.refund_no))


def mark_started(s: Session, refund_nos: list[str]) -> None:
    if refund_nos:
        s.execute(update(Refund).where(Refund.refund_no.in_(refund_nos), Refund.workflow_started_at.is_(None))
                  .values(workflow_started_at=datetime.now(UTC)))


def _received_at(s: Session, order_no: str) -> datetime | None:
    received = s.scalar(select(func.min(OrderEvent.at)).where(
        OrderEvent.order_no == order_no, OrderEvent.status == OrderStatus.RECEIVED))
    if received is not None:
        return received
    return s.scalar(select(func.max(Shipment.delivered_at)).where(Shipment.order_no == order_no))


def _recent_refunds(s: Session, buyer_user_id: int, now: datetime, rules_: RefundRules) -> int:
    return s.scalar(select(func.count()).select_from(Refund).where(
        Refund.buyer_user_id == buyer_user_id, Refund.created_at >= now - rules_.frequent_returns_window,
        Refund.status != RefundStatus.REJECTED)) or 0


def _units_left(s: Session, order_no: str) -> dict[int, int]:
    """line id → units not refunded (refunds still open count as not refunded)."""
    refunded = dict(s.execute(
        select(RefundLine.order_line_id, func.sum(RefundLine.quantity))
        .join(Refund, Refund.refund_no == RefundLine.refund_no)
        .where(Refund.order_no == order_no, Refund.status == RefundStatus.REFUNDED)
        .group_by(RefundLine.order_line_id)).all())
    return {ln.id: ln.quantity - refunded.get(ln.id, 0)
            for ln in s.scalars(select(OrderLine).where(OrderLine.order_no == order_no))}


def _outcome(s: Session, refund: Refund) -> RefundOutcome:
    left = _units_left(s, refund.order_no)
    lines = {ln.id: ln.supplier_id for ln in s.scalars(select(OrderLine).where(OrderLine.order_no == refund.order_no))}
    order = s.get(Order, refund.order_no)
    return RefundOutcome(refund_no=refund.refund_no, status=RefundStatus(refund.status),
                         order_fully_refunded=order.status == OrderStatus.REFUNDED,
                         suppliers_with_units_left=sorted({lines[i] for i, n in left.items() if n > 0}))


class RefundActivities:
    def __init__(self, sessions: sessionmaker[Session], pay: WeChatPayClient, rules_: RefundRules):
        self.sessions = sessions
        self.pay = pay
        self.rules = rules_

    # --- opened by the platform ------------------------------------------------------------
    @activity.defn
    def open_system_refund(self, refund_no: str, order_no: str, kind: RefundKind, reason: str) -> int:
        """A full refund of every unit still unclaimed (pickup code expired). Returns the amount."""
        with self.sessions.begin() as s:
            try:
                refund, _ = open_refund(s, refund_no=refund_no, order_no=order_no, buyer_user_id=None,
                                        kind=kind, lines=None, reason=reason, rules_=self.rules)
            except RefundRefused as err:
                raise business_error(err.code, err.message) from err
            if kind == RefundKind.PICKUP_EXPIRED:
                s.execute(update(PickupCode).where(PickupCode.order_no == order_no,
                                                   PickupCode.status == "issued").values(status="expired"))
            return refund.amount_fen

    @activity.defn
    def open_late_payment_refund(self, refund_no: str, notice: PaymentNotice) -> int:
        """The buyer paid an order we had already cancelled: book the money in, then refund
        all of it. Idempotent by refund_no."""
        with self.sessions.begin() as s:
            # a pre-sale order's deposit or balance has its own out_trade_no
            order = s.get(Order, order_of_trade(s, notice.out_trade_no), with_for_update=True)
            if order is None:
                raise business_error("ORDER_NOT_FOUND", notice.out_trade_no)
            if s.get(Refund, refund_no) is not None:
                return notice.amount_fen
            if order.status != OrderStatus.CANCELLED:
                raise business_error("NOT_CANCELLED", f"order {order.order_no} is {order.status}")
            part = notice.out_trade_no != order.order_no
            s.execute(update(Payment).where(Payment.out_trade_no == notice.out_trade_no).values(
                status="SUCCESS", transaction_id=notice.transaction_id, paid_at=datetime.now(UTC)))
            ledger.lock_accounts(s, {rules.CLEARING, rules.ORDERS_HELD})
            key = f"order:{order.order_no}:late_payment" + (f":{notice.out_trade_no}" if part else "")
            ledger.post(s, key, "late_payment",
                        rules.transfer(rules.CLEARING, rules.ORDERS_HELD, notice.amount_fen),
                        order_no=order.order_no, memo=f"paid after close, WeChat Pay {notice.transaction_id}")
            s.add(Refund(refund_no=refund_no, order_no=order.order_no, buyer_user_id=order.buyer_user_id,
                         kind=RefundKind.LATE_PAYMENT, reason="paid after the order was closed",
                         status=RefundStatus.REFUNDING, amount_fen=notice.amount_fen))
            if part:
                s.flush()
                s.add(RefundPayment(out_refund_no=refund_no, refund_no=refund_no, out_trade_no=notice.out_trade_no,
                                    amount_fen=notice.amount_fen))
            order.open_refunds += 1
            record_event(s, order.order_no, OrderStatus.CANCELLED,
                         f"paid after close ({notice.transaction_id}): refunding {notice.amount_fen} fen",
                         f"refund:{refund_no}:opened")
            return notice.amount_fen

    @activity.defn
    def open_compensation_refund(self, refund_no: str, order_no: str, notice: PaymentNotice, reason: str) -> int:
        """A step after payment failed for good: give the buyer's money back. If the payment was
        never recorded (e.g. its amount did not match), the order is cancelled, its stock and
        coupon released and the payment booked in, to be refunded whole; if it was, every unit
        not yet refunded is. Returns the amount (0: nothing left to refund). Idempotent."""
        with self.sessions.begin() as s:
            order = s.get(Order, order_no, with_for_update=True)
            existing = s.get(Refund, refund_no)
            if existing is not None:
                return existing.amount_fen
            if order.status in (OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED):
                if order.status == OrderStatus.PENDING_PAYMENT:
                    _cancel_for_compensation(s, order, reason)
                ledger.lock_accounts(s, {rules.CLEARING, rules.ORDERS_HELD})
                ledger.post(s, f"order:{order_no}:payment_failed:{notice.out_trade_no}", "payment_not_kept",
                            rules.transfer(rules.CLEARING, rules.ORDERS_HELD, notice.amount_fen),
                            order_no=order_no, memo=f"paid but not kept ({reason}), WeChat Pay {notice.transaction_id}")
                s.execute(update(Payment).where(Payment.out_trade_no == notice.out_trade_no).values(
                    status="SUCCESS", transaction_id=notice.transaction_id, paid_at=datetime.now(UTC)))
                s.add(Refund(refund_no=refund_no, order_no=order_no, buyer_user_id=order.buyer_user_id,
                             kind=RefundKind.PAYMENT_FAILED, reason=reason, status=RefundStatus.REFUNDING,
                             amount_fen=notice.amount_fen, workflow_started_at=datetime.now(UTC)))
                if notice.out_trade_no != order_no:  # a pre-sale part: refunded by its own out_trade_no
                    s.flush()
                    s.add(RefundPayment(out_refund_no=refund_no, refund_no=refund_no,
                                        out_trade_no=notice.out_trade_no, amount_fen=notice.amount_fen))
                order.open_refunds += 1
                record_event(s, order_no, OrderStatus.CANCELLED,
                             f"payment not kept ({reason}): refunding {notice.amount_fen} fen",
                             f"refund:{refund_no}:opened")
                amount = notice.amount_fen
            else:
                try:
                    refund, _ = open_refund(s, refund_no=refund_no, order_no=order_no, buyer_user_id=None,
                                            kind=RefundKind.PAYMENT_FAILED, lines=None, reason=reason,
                                            rules_=self.rules)
                except RefundRefused as err:
                    if err.code == "NOTHING_TO_REFUND":
                        return 0
                    raise business_error(err.code, err.message) from err
                refund.workflow_started_at = datetime.now(UTC)
                amount = refund.amount_fen
            notify(s, role="support", kind="payment_not_kept", subject_type="order", subject_id=order_no,
                   message=f"订单 {order_no} 支付后处理失败（{reason}），已自动全额退款 {amount / 100:.2f} 元",
                   key=f"order:{order_no}:payment_not_kept")
            return amount

    # --- the sweep: buyers' refunds whose workflow never started ---------------------------
    @activity.defn
    def stranded_refunds(self, stranded_after_seconds: float, after_refund_no: str, limit: int,
                         timings: RefundTimings) -> StrandedRefunds:
        """The next page of buyers' refunds still open, saved over `stranded_after_seconds` ago,
        whose workflow was never seen to start (the API died between the two)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=stranded_after_seconds)
        with self.sessions() as s:
            refunds = s.scalars(select(Refund).where(
                Refund.workflow_started_at.is_(None), Refund.created_at <= cutoff,
                Refund.refund_no > after_refund_no, Refund.kind.in_([k.value for k in BUYER_KINDS]),
                Refund.status.not_in([st.value for st in RefundStatus if st.final]))
                .order_by(Refund.refund_no).limit(limit)).all()
            return StrandedRefunds(refunds=[refund_input(s, r, timings) for r in refunds],
                                   next_after=refunds[-1].refund_no if len(refunds) == limit else None)

    @activity.defn
    def mark_refunds_started(self, refund_nos: list[str]) -> None:
        with self.sessions.begin() as s:
            mark_started(s, refund_nos)

    # --- steps -----------------------------------------------------------------------------
    @activity.defn
    def start_refund_review(self, refund_no: str, note: str, deadline: datetime) -> None:
        """Support has until `deadline` to judge; after it the refund is approved automatically."""
        with self.sessions.begin() as s:
            refund = s.get(Refund, refund_no, with_for_update=True)
            if RefundStatus(refund.status).final:
                return
            refund.review_deadline_at = deadline
        self.set_refund_status(refund_no, RefundStatus.REVIEWING, note)

    @activity.defn
    def record_refund_review(self, refund_no: str, decision: RefundDecision) -> None:
        """Who decided (None: approved automatically at the deadline), when, and why."""
        with self.sessions.begin() as s:
            refund = s.get(Refund, refund_no, with_for_update=True)
            if refund.reviewed_at is not None or RefundStatus(refund.status).final:
                return
            refund.reviewed_by_user_id, refund.reviewed_at = decision.reviewer_user_id, datetime.now(UTC)
            refund.review_note = decision.note or refund.review_note
            verdict = "approved" if decision.approve else "rejected"
            who = f"support user {decision.reviewer_user_id}" if decision.reviewer_user_id else "the review deadline"
            record_event(s, refund.order_no, OrderStatus.AFTER_SALE, f"refund {refund_no} {verdict} by {who}",
                         f"refund:{refund_no}:reviewed")

    @activity.defn
    def set_refund_status(self, refund_no: str, status: RefundStatus, note: str) -> None:
        with self.sessions.begin() as s:
            refund = s.get(Refund, refund_no, with_for_update=True)
            if RefundStatus(refund.status).final:
                return
            refund.status = status
            if note:
                refund.review_note = note
            record_event(s, refund.order_no, OrderStatus.AFTER_SALE, f"refund {refund_no}: {status} {note}".strip(),
                         f"refund:{refund_no}:{status}")
            if status == RefundStatus.ABNORMAL:
                notify(s, role="support", kind="refund_abnormal", subject_type="refund", subject_id=refund_no,
                       message=f"退款 {refund_no} 异常（如用户银行卡已注销），请线下处理后确认",
                       key=f"refund:{refund_no}:abnormal")
            if status == RefundStatus.REVIEWING:
                notify(s, role="support", kind="refund_review", subject_type="refund", subject_id=refund_no,
                       message=f"退款 {refund_no} 待审核：{refund.review_reasons}", key=f"refund:{refund_no}:review")

    @activity.defn
    def record_return_parcel(self, refund_no: str, parcel: ReturnParcel) -> None:
        with self.sessions.begin() as s:
            refund = s.get(Refund, refund_no, with_for_update=True)
            refund.return_carrier, refund.return_waybill_no = parcel.carrier, parcel.waybill_no
            refund.status = RefundStatus.RETURN_SHIPPED
            record_event(s, refund.order_no, OrderStatus.AFTER_SALE,
                         f"return for {refund_no} shipped: {parcel.carrier} {parcel.waybill_no}",
                         f"refund:{refund_no}:return_shipped")

    @activity.defn
    def close_refund(self, refund_no: str, status: RefundStatus, note: str) -> RefundOutcome:
        """Rejected or closed without money moving: the units are free to refund again."""
        with self.sessions.begin() as s:
            refund = s.get(Refund, refund_no, with_for_update=True)
            order = s.get(Order, refund.order_no, with_for_update=True)
            if not RefundStatus(refund.status).final:
                for rl in s.scalars(select(RefundLine).where(RefundLine.refund_no == refund_no)):
                    s.execute(update(OrderLine).where(OrderLine.id == rl.order_line_id).values(
                        refund_claimed_quantity=OrderLine.refund_claimed_quantity - rl.quantity))
                freight.release(s, refund_no)
                refund.status, refund.finished_at = status, datetime.now(UTC)
                refund.review_note = note or refund.review_note
                order.open_refunds -= 1
                record_event(s, refund.order_no, order.status, f"refund {refund_no} {status.lower()}: {note}",
                             f"refund:{refund_no}:closed")
                notify(s, user_id=refund.buyer_user_id, kind="refund_closed", subject_type="refund",
                       subject_id=refund_no, message=f"退款 {refund_no} 未通过：{note}", key=f"refund:{refund_no}:closed")
            return _outcome(s, refund)

    @activity.defn
    async def request_refund(self, refund_no: str) -> RefundNotice:
        refund, total = await asyncio.to_thread(self._mark_refunding, refund_no)
        parts = await asyncio.to_thread(self._parts, refund_no)
        if parts:  # several payments (pre-sale): one WeChat Pay refund each, by its own out_refund_no
            try:
                answers = [await self.pay.refund(out_refund_no, refund_fen=amount, total_fen=paid,
                                                 out_trade_no=out_trade_no, reason=refund.kind)
                           for out_refund_no, out_trade_no, amount, paid in parts]
            except Exception as err:  # noqa: BLE001
                raise as_activity_error(err) from err
            return _combined(refund_no, answers)
        try:
            answer = await self.pay.refund(refund_no, refund_fen=refund.amount_fen, total_fen=total,
                                           out_trade_no=refund.order_no, reason=refund.kind)
        except Exception as err:  # noqa: BLE001 - mapped to retryable / non-retryable
            raise as_activity_error(err) from err
        return RefundNotice(refund_no=refund_no, status=answer.status, refund_id=answer.refund_id)

    def _mark_refunding(self, refund_no: str) -> tuple[Refund, int]:
        with self.sessions.begin() as s:
            refund = s.get(Refund, refund_no, with_for_update=True)
            if refund.status != RefundStatus.REFUNDED:
                refund.status = RefundStatus.REFUNDING
            total = s.scalar(select(Payment.amount_fen).where(Payment.order_no == refund.order_no))
            return refund, total

    def _parts(self, refund_no: str) -> list[tuple[str, str, int, int]]:
        """(out_refund_no, out_trade_no, amount, that payment's total) of a multi-payment refund."""
        with self.sessions() as s:
            return [(p.out_refund_no, p.out_trade_no, p.amount_fen, s.get(Payment, p.out_trade_no).amount_fen)
                    for p in refund_payments(s, refund_no)]

    @activity.defn
    async def query_refund(self, refund_no: str) -> RefundNotice:
        parts = await asyncio.to_thread(self._parts, refund_no)
        if parts:
            try:
                answers = [await self.pay.query_refund(out_refund_no) for out_refund_no, *_ in parts]
            except Exception as err:  # noqa: BLE001
                raise as_activity_error(err) from err
            return _combined(refund_no, answers)
        try:
            answer = await self.pay.query_refund(refund_no)
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err
        return RefundNotice(refund_no=refund_no, status=answer.status, refund_id=answer.refund_id)

    @activity.defn
    def complete_refund(self, refund_no: str, wechat_refund_id: str, note: str) -> RefundOutcome:
        """The money reached the buyer: reverse the order's books for these units, once."""
        with self.sessions.begin() as s:
            refund = s.get(Refund, refund_no, with_for_update=True)
            order = s.get(Order, refund.order_no, with_for_update=True)
            if refund.status == RefundStatus.REFUNDED:
                return _outcome(s, refund)
            postings = self._reversal(s, refund, order)
            ledger.lock_accounts(s, {p.account for p in postings})
            ledger.post(s, f"refund:{refund_no}", "refund", postings, order_no=order.order_no,
                        memo=f"refund {refund_no} ({refund.kind}) {note}".strip())
            shipped = set(s.scalars(select(Shipment.supplier_id).where(Shipment.order_no == order.order_no)))
            for rl, line in s.execute(select(RefundLine, OrderLine).join(
                    OrderLine, OrderLine.id == RefundLine.order_line_id).where(RefundLine.refund_no == refund_no)):
                # a payment not kept: what never left the supplier goes back on sale
                if refund.kind in RESTOCKED or (refund.kind == RefundKind.PAYMENT_FAILED
                                                and line.supplier_id not in shipped):
                    restock(s, line.sku_id, rl.quantity)
            refund.status, refund.finished_at = RefundStatus.REFUNDED, datetime.now(UTC)
            parts = refund_payments(s, refund_no)
            if parts:  # "id,id": one WeChat Pay refund id per part, in out_refund_no order
                ids = (wechat_refund_id or "").split(",")
                for p, rid in zip(parts, ids + [""] * len(parts)):
                    p.status, p.wechat_refund_id = "SUCCESS", rid or p.wechat_refund_id
                wechat_refund_id = ids[0]
            refund.wechat_refund_id = wechat_refund_id or refund.wechat_refund_id
            order.open_refunds -= 1
            if refund.kind != RefundKind.LATE_PAYMENT and order.status != OrderStatus.CANCELLED \
                    and not any(_units_left(s, order.order_no).values()):
                order.status = OrderStatus.REFUNDED
                freight.settle_fully_refunded(s, order.order_no)  # freight not given back: the supplier's
            record_event(s, order.order_no, OrderStatus.REFUNDED if order.status == OrderStatus.REFUNDED
                         else OrderStatus.AFTER_SALE, f"refund {refund_no}: {refund.amount_fen} fen refunded",
                         f"refund:{refund_no}:refunded")
            notify(s, user_id=refund.buyer_user_id, kind="refund_succeeded", subject_type="refund",
                   subject_id=refund_no, message=f"退款 {refund.amount_fen / 100:.2f} 元已原路退回",
                   key=f"refund:{refund_no}:refunded")
            return _outcome(s, refund)

    def _reversal(self, s: Session, refund: Refund, order: Order) -> list[rules.Posting]:
        account = rules.CHANNELS_CLEARING if paid_in_shop(s, order.order_no) else rules.CLEARING
        clearing = [rules.Posting(account, -refund.amount_fen)]
        whole = refund.kind in WHOLE_PAYMENT and s.scalar(
            select(func.count()).select_from(RefundLine).where(RefundLine.refund_no == refund.refund_no)) == 0
        if whole:  # no goods, no commission yet: the payment goes back whole
            return [rules.Posting(rules.ORDERS_HELD, refund.amount_fen), *clearing]
        settled = s.scalar(select(LedgerTransaction.id).where(
            LedgerTransaction.idempotency_key == f"order:{order.order_no}:settle")) is not None
        commission = _line_commission(s, order.order_no)
        # released → from available; still pending (not completed, or frozen by a risk flag) →
        # from pending; forfeited on a confirmed flag → the platform has it, nothing to take back
        state = bonuses.commission_state(s, order.order_no)
        postings: list[rules.Posting] = []
        for rl, line in s.execute(select(RefundLine, OrderLine).join(
                OrderLine, OrderLine.id == RefundLine.order_line_id).where(RefundLine.refund_no == refund.refund_no)):
            def part(total: int) -> int:
                return share_of(total, line.quantity, rl.claimed_before, rl.quantity)

            reversed_commission = 0
            for (tier, promoter_id), posted in sorted(commission.get(line.id, {}).items()):
                account = state.account(tier or 0, promoter_id)
                if account is None:
                    continue
                amount = part(posted)
                reversed_commission += amount
                postings.append(rules.Posting(account, amount, order_line_id=line.id, tier=tier,
                                              rule="commission_reversal"))
            if settled:
                supplier = part(line.paid_fen) - part(line.service_fee_fen) - part(line.commission_fen)
                postings.append(rules.Posting(rules.supplier_payable(line.supplier_id), supplier,
                                              order_line_id=line.id, rule="supplier_share_reversal"))
                subsidy = part(line.subsidy_fen)  # a platform coupon's part goes back to the platform
                postings += [rules.Posting(rules.supplier_payable(line.supplier_id), subsidy,
                                           order_line_id=line.id, rule="platform_coupon_reversal"),
                             rules.Posting(rules.PLATFORM_REVENUE, -subsidy, order_line_id=line.id,
                                           rule="platform_coupon_reversal")]
                postings.append(rules.Posting(rules.PLATFORM_REVENUE, rl.amount_fen - supplier - reversed_commission,
                                              order_line_id=line.id, rule="platform_share_reversal"))
            else:
                postings.append(rules.Posting(rules.ORDERS_HELD, rl.amount_fen - reversed_commission,
                                              order_line_id=line.id, rule="held_refund"))
        postings += freight.reversal(s, refund.refund_no, order.order_no)
        goods_fen = refund.amount_fen - freight.returned_by(s, refund.refund_no)  # team bonuses are on goods
        postings += bonuses.team_bonus_reversals(s, order.order_no, goods_fen)
        return [p for p in postings + clearing if p.amount_fen != 0]


def _combined(refund_no: str, answers) -> RefundNotice:
    """One refund's notice from its WeChat Pay parts."""
    return RefundNotice(refund_no=refund_no, status=combined_refund_status([a.status for a in answers]),
                        refund_id=",".join(a.refund_id for a in answers if a.refund_id) or None)


def _line_commission(s: Session, order_no: str) -> dict[int, dict[tuple[int, int], int]]:
    """line id → (tier, promoter id) → commission posted at payment."""
    rows = s.execute(
        select(LedgerAccount.code, LedgerEntry.order_line_id, LedgerEntry.tier, LedgerEntry.amount_fen)
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.order_no == order_no, LedgerTransaction.kind == "commission_pending",
               LedgerAccount.code.like("promoter:%:pending"))).all()
    out: dict[int, dict[tuple[int, int], int]] = {}
    for code, line_id, tier, amount in rows:
        per_line = out.setdefault(line_id, {})
        key = (tier, rules.owner_of(code)[1])
        per_line[key] = per_line.get(key, 0) - amount  # credits are negative
    return out


def _cancel_for_compensation(s: Session, order: Order, reason: str) -> None:
    """The order could not keep its payment: cancel it, its stock and coupon released."""
    for line in s.scalars(select(OrderLine).where(OrderLine.order_no == order.order_no)):
        restock(s, line.sku_id, line.quantity)
    coupons.release(s, order.order_no)
    order.status = OrderStatus.CANCELLED
    record_event(s, order.order_no, OrderStatus.CANCELLED, f"cancelled after payment: {reason}",
                 f"order:{order.order_no}:cancelled")
