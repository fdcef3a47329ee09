"""Pre-sale side effects (rules in chuchuang/domain/presale.py): the pre-sale record written
with the order, the deposit and the balance booked once each (a ledger transaction per
payment; commission on deposit + balance once the balance is paid), the balance reminder, the
close of an order whose balance was not paid (stock back, deposit refunded), and the split of
a pre-sale refund over its two payments. Each activity is idempotent by order_no / key."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import coupons, ledger
from activities.catalog import notify
from activities.errors import business_error
from activities.order_events import record_event
from activities.orders import OrderActivities, restock
from db.models import Order, OrderLine, Payment
from db.order_models import Refund
from db.presale_models import PresaleOrder, RefundPayment, SkuPresale
from domain import ledger as rules
from domain.order_status import OrderStatus
from domain.orders import PaymentNotice
from domain.presale import (
    PresaleInfo,
    PresaleRefused,
    balance_trade_no,
    deposit_trade_no,
    lapse_refund_no,
    refund_parts,
    split_deposit,
)
from domain.refunds import RefundKind, RefundStatus

FINAL_REFUNDS = (RefundStatus.REJECTED, RefundStatus.CLOSED)


# --- used inside other activities' transactions ------------------------------------------
def on_placed(s: Session, order: Order, lines: list[OrderLine], now: datetime | None = None) -> PresaleInfo | None:
    """At placement: an order of a SKU on pre-sale (deposits taken until its balance window
    opens) gets its pre-sale record. Pre-sale goods are ordered on their own."""
    now = now or datetime.now(UTC)
    presales = {p.sku_id: p for p in s.scalars(select(SkuPresale).where(
        SkuPresale.sku_id.in_([ln.sku_id for ln in lines]), SkuPresale.active,
        SkuPresale.balance_starts_at > now))}
    if not presales:
        return None
    if len(lines) != 1:
        raise business_error("PRESALE_ORDERED_ALONE", "pre-sale goods are ordered on their own, one SKU an order")
    line = lines[0]
    terms = presales[line.sku_id]
    try:
        deposit, balance = split_deposit(line.paid_fen, terms.deposit_fen, line.quantity)
    except PresaleRefused as err:
        raise business_error(err.code, err.message) from err
    s.add(PresaleOrder(order_no=order.order_no, deposit_fen=deposit, balance_fen=balance,
                       balance_starts_at=terms.balance_starts_at, balance_ends_at=terms.balance_ends_at,
                       status="DEPOSIT_PENDING"))
    return PresaleInfo(deposit_fen=deposit, balance_fen=balance, balance_starts_at=terms.balance_starts_at,
                       balance_ends_at=terms.balance_ends_at)


def presale_info(s: Session, order_no: str) -> PresaleInfo | None:
    row = s.get(PresaleOrder, order_no)
    if row is None:
        return None
    return PresaleInfo(deposit_fen=row.deposit_fen, balance_fen=row.balance_fen,
                       balance_starts_at=row.balance_starts_at, balance_ends_at=row.balance_ends_at)


def order_of_trade(s: Session, out_trade_no: str) -> str:
    """The order a WeChat Pay out_trade_no belongs to (itself for an ordinary order)."""
    return s.scalar(select(Payment.order_no).where(Payment.out_trade_no == out_trade_no)) or out_trade_no


def plan_refund_payments(s: Session, refund_no: str, order_no: str, amount_fen: int) -> None:
    """A refund of a pre-sale order: which payment gives back how much (balance first, then
    the deposit), one row per WeChat Pay refund. Nothing for ordinary orders."""
    if s.get(PresaleOrder, order_no) is None or s.scalar(
            select(func.count()).select_from(RefundPayment).where(RefundPayment.refund_no == refund_no)):
        return
    left = {}
    for payment in s.scalars(select(Payment).where(Payment.order_no == order_no, Payment.status == "SUCCESS")):
        claimed = s.scalar(
            select(func.coalesce(func.sum(RefundPayment.amount_fen), 0))
            .join(Refund, Refund.refund_no == RefundPayment.refund_no)
            .where(RefundPayment.out_trade_no == payment.out_trade_no, Refund.status.not_in(FINAL_REFUNDS)))
        left[payment.out_trade_no] = payment.amount_fen - claimed
    parts = refund_parts(amount_fen, balance_left=left.get(balance_trade_no(order_no), 0),
                         deposit_left=left.get(deposit_trade_no(order_no), 0))
    for suffix, amount in parts:
        out_refund_no = refund_no if len(parts) == 1 else refund_no + suffix
        s.add(RefundPayment(out_refund_no=out_refund_no, refund_no=refund_no, out_trade_no=order_no + suffix,
                            amount_fen=amount))
    s.flush()


def refund_payments(s: Session, refund_no: str) -> list[RefundPayment]:
    return list(s.scalars(select(RefundPayment).where(RefundPayment.refund_no == refund_no)
                          .order_by(RefundPayment.out_refund_no)))


def _paid_part(s: Session, notice: PaymentNotice, part: str) -> tuple[str, Order, PresaleOrder]:
    """The order (locked) and pre-sale terms a paid deposit or balance belongs to; the amount
    must be that part's."""
    no = order_of_trade(s, notice.out_trade_no)
    order = s.get(Order, no, with_for_update=True)
    presale = s.get(PresaleOrder, no, with_for_update=True)
    if order is None or presale is None:
        raise business_error("ORDER_NOT_FOUND", notice.out_trade_no)
    expected = getattr(presale, f"{part}_fen")
    if notice.amount_fen != expected:
        raise business_error("AMOUNT_MISMATCH", f"paid {notice.amount_fen} for a {part} of {expected}")
    return no, order, presale


class PresaleActivities:
    def __init__(self, sessions: sessionmaker[Session], orders: OrderActivities):
        self.sessions = sessions
        self.orders = orders

    @activity.defn
    def record_deposit(self, notice: PaymentNotice) -> None:
        """The deposit is paid: booked into the order's held money, once."""
        with self.sessions.begin() as s:
            no, order, presale = _paid_part(s, notice, "deposit")
            if order.status != OrderStatus.PENDING_PAYMENT:
                return
            now = datetime.now(UTC)
            order.status = OrderStatus.DEPOSIT_PAID
            presale.status, presale.deposit_paid_at = "DEPOSIT_PAID", now
            s.execute(update(Payment).where(Payment.out_trade_no == notice.out_trade_no).values(
                status="SUCCESS", transaction_id=notice.transaction_id, paid_at=now))
            ledger.lock_accounts(s, {rules.CLEARING, rules.ORDERS_HELD})
            ledger.post(s, f"order:{no}:payment:deposit", "payment",
                        rules.transfer(rules.CLEARING, rules.ORDERS_HELD, notice.amount_fen),
                        order_no=no, memo=f"pre-sale deposit, WeChat Pay {notice.transaction_id}")
            record_event(s, no, OrderStatus.DEPOSIT_PAID,
                         f"deposit {notice.amount_fen} fen paid, WeChat Pay {notice.transaction_id}; "
                         f"balance {presale.balance_fen} fen due from {presale.balance_starts_at:%Y-%m-%d %H:%M} UTC",
                         f"order:{no}:deposit_paid")

    @activity.defn
    def open_balance(self, order_no: str) -> None:
        """The balance window is open: the buyer is reminded (a subscribe message), once."""
        with self.sessions.begin() as s:
            presale = s.get(PresaleOrder, order_no, with_for_update=True)
            order = s.get(Order, order_no)
            if presale.status != "DEPOSIT_PAID":
                return
            presale.status, presale.reminded_at = "BALANCE_DUE", datetime.now(UTC)
            notify(s, user_id=order.buyer_user_id, kind="presale_balance_due", subject_type="order",
                   subject_id=order_no,
                   message=f"预售尾款 {presale.balance_fen / 100:.2f} 元待支付，请在 "
                           f"{presale.balance_ends_at:%Y-%m-%d %H:%M} (UTC) 前付清",
                   key=f"order:{order_no}:balance_due")
            record_event(s, order_no, OrderStatus.DEPOSIT_PAID,
                         f"balance window open until {presale.balance_ends_at:%Y-%m-%d %H:%M} UTC; buyer reminded",
                         f"order:{order_no}:balance_open")

    @activity.defn
    def record_balance(self, notice: PaymentNotice) -> None:
        """The balance is paid: booked, and the pending commission posted on deposit + balance,
        in one database transaction, once."""
        with self.sessions.begin() as s:
            no, order, presale = _paid_part(s, notice, "balance")
            if order.status != OrderStatus.DEPOSIT_PAID:
                return
            now = datetime.now(UTC)
            order.status, order.paid_at, order.transaction_id = OrderStatus.PAID, now, notice.transaction_id
            presale.status, presale.balance_paid_at = "BALANCE_PAID", now
            s.execute(update(Payment).where(Payment.out_trade_no == notice.out_trade_no).values(
                status="SUCCESS", transaction_id=notice.transaction_id, paid_at=now))
            # commission as for any order: on what was paid for the goods, deposit + balance
            self.orders.book_payment(s, order, f"order:{no}:payment:balance", notice.amount_fen,
                                     f"pre-sale balance, WeChat Pay {notice.transaction_id}")
            record_event(s, no, OrderStatus.PAID, f"balance paid, WeChat Pay {notice.transaction_id}",
                         f"order:{no}:paid")

    @activity.defn
    def lapse_presale(self, order_no: str, reason: str) -> int:
        """The balance was not paid by the end of its window: the order is closed, its stock
        and coupon given back, and its deposit refunded in full (refund `RD{order_no}`, opened
        here; the RefundWorkflow returns the money). Returns the deposit."""
        refund_no = lapse_refund_no(order_no)
        with self.sessions.begin() as s:
            order = s.get(Order, order_no, with_for_update=True)
            presale = s.get(PresaleOrder, order_no, with_for_update=True)
            if s.get(Refund, refund_no) is not None:
                return presale.deposit_fen
            if order.status != OrderStatus.DEPOSIT_PAID:
                raise business_error("NOT_LAPSABLE", f"order {order_no} is {order.status}")
            for line in s.scalars(select(OrderLine).where(OrderLine.order_no == order_no)):
                restock(s, line.sku_id, line.quantity)
            coupons.release(s, order_no)
            order.status = OrderStatus.CANCELLED
            presale.status = "LAPSED"
            s.execute(update(Payment).where(Payment.out_trade_no == balance_trade_no(order_no),
                                            Payment.status != "SUCCESS").values(status="CLOSED"))
            s.add(Refund(refund_no=refund_no, order_no=order_no, buyer_user_id=order.buyer_user_id,
                         kind=RefundKind.PRESALE_LAPSED, reason=reason, status=RefundStatus.REFUNDING,
                         amount_fen=presale.deposit_fen))
            s.flush()
            s.add(RefundPayment(out_refund_no=refund_no, refund_no=refund_no,
                                out_trade_no=deposit_trade_no(order_no), amount_fen=presale.deposit_fen))
            order.open_refunds += 1
            record_event(s, order_no, OrderStatus.CANCELLED,
                         f"{reason}; the deposit of {presale.deposit_fen} fen is refunded", f"order:{order_no}:cancelled")
            return presale.deposit_fen

