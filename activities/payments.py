"""WeChat Pay side effects. The out_trade_no is the order number, so a retried activity can
never create a second charge; the intent is written before we call out."""

from __future__ import annotations

import asyncio

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.models import Payment
from domain.orders import PaymentNotice, PlacedOrder, PrepayParams
from domain.presale import PartPayment
from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.wechatpay import WeChatPayClient


def as_activity_error(err: Exception) -> Exception:
    if isinstance(err, PartnerRejected):
        return ApplicationError(str(err), type=f"WECHATPAY_{err.code}", non_retryable=True)
    if isinstance(err, PartnerUnavailable):
        return ApplicationError(str(err), type="WECHATPAY_UNAVAILABLE")
    return err


class PaymentActivities:
    def __init__(self, sessions: sessionmaker[Session], pay: WeChatPayClient):
        self.sessions = sessions
        self.pay = pay

    def _record_intent(self, order: PlacedOrder) -> None:
        with self.sessions.begin() as s:
            s.execute(insert(Payment).values(
                out_trade_no=order.order_no, order_no=order.order_no, amount_fen=order.total_fen,
                status="CREATING").on_conflict_do_nothing())

    def _record_prepay(self, out_trade_no: str, prepay_id: str) -> None:
        with self.sessions.begin() as s:
            payment = s.get(Payment, out_trade_no, with_for_update=True)
            if payment.status in ("CREATING", "NOTPAY"):  # NOTPAY: a fresh prepay_id for an expired one
                payment.status, payment.prepay_id = "NOTPAY", prepay_id

    @activity.defn
    async def create_payment(self, order: PlacedOrder) -> PrepayParams:
        await asyncio.to_thread(self._record_intent, order)
        return await self._prepay(order.order_no, order.description, order.total_fen, order.buyer_openid)

    @activity.defn
    async def create_part_payment(self, part: PartPayment) -> PrepayParams:
        """A pre-sale order's deposit or balance: its own out_trade_no, intent first."""
        await asyncio.to_thread(self._record_part_intent, part)
        return await self._prepay(part.out_trade_no, part.description, part.amount_fen, part.buyer_openid)

    async def _prepay(self, out_trade_no: str, description: str, total_fen: int, openid: str) -> PrepayParams:
        """The JSAPI order at WeChat Pay for a payment whose intent is recorded, and its prepay id."""
        try:
            prepay = await self.pay.create_jsapi(out_trade_no=out_trade_no, description=description,
                                                 total_fen=total_fen, openid=openid)
        except Exception as err:  # noqa: BLE001 - mapped to retryable / non-retryable
            raise as_activity_error(err) from err
        await asyncio.to_thread(self._record_prepay, out_trade_no, prepay.prepay_id)
        return PrepayParams.model_validate(prepay, from_attributes=True)

    def _record_part_intent(self, part: PartPayment) -> None:
        with self.sessions.begin() as s:
            s.execute(insert(Payment).values(
                out_trade_no=part.out_trade_no, order_no=part.order_no, kind=part.kind,
                amount_fen=part.amount_fen, status="CREATING").on_conflict_do_nothing())

    @activity.defn
    async def query_payment(self, out_trade_no: str) -> PaymentNotice:
        try:
            txn = await self.pay.query(out_trade_no)
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err
        return PaymentNotice(out_trade_no=out_trade_no, transaction_id=txn.transaction_id or "",
                             trade_state=txn.trade_state, amount_fen=txn.amount.total,
                             success_time=txn.success_time)

    @activity.defn
    async def verify_payment(self, out_trade_no: str) -> PaymentNotice:
        """What WeChat Pay itself says of a payment a signal claimed: its state (SUCCESS only when
        the transaction is our merchant's and app's, under this out_trade_no) and the amount
        really paid. The notice returned is WeChat Pay's record, never the signal's; an amount
        that does not match the order is refused when recorded, and the order refunds it."""
        try:
            txn = await self.pay.query(out_trade_no)
        except PartnerRejected as err:
            if err.code == "ORDER_NOT_EXIST":
                return PaymentNotice(out_trade_no=out_trade_no, transaction_id="", trade_state="NOT_FOUND",
                                     amount_fen=0)
            raise as_activity_error(err) from err
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err
        state = txn.trade_state
        if (txn.mchid, txn.appid) != (self.pay.config.mchid, self.pay.config.appid) or txn.out_trade_no != out_trade_no:
            state = "NOT_OURS"
        elif state == "SUCCESS" and not txn.transaction_id:
            state = "NO_TRANSACTION"
        return PaymentNotice(out_trade_no=out_trade_no, transaction_id=txn.transaction_id or "",
                             trade_state=state, amount_fen=txn.amount.total, success_time=txn.success_time)

    @activity.defn
    async def close_payment(self, out_trade_no: str) -> None:
        try:
            await self.pay.close(out_trade_no)
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err
