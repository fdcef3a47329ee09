"""Taking an order's payment: wait for WeChat Pay's notice until the timeout, then ask WeChat
Pay itself; close what was not paid; refund a payment that came after the order was closed."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

from workflows.options import DB_STEP, PARTNER_CALL
from workflows.order_state import COMPENSATE_PATCH, VERIFY_PAYMENT_PATCH, OrderState, error_is
from workflows.refund import RefundWorkflow
from workflows.refund import workflow_id as refund_workflow_id

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from domain.order_process import OrderTimings
    from domain.order_status import OrderStatus
    from domain.orders import PaymentNotice
    from domain.refunds import RefundInput, RefundKind, late_payment_refund_no


PREPAY_REFRESH_PATCH = "order-prepay-refresh"


class PaymentSteps(OrderState):
    def _prepay_made(self, kind: str, request: object, timings: OrderTimings) -> None:
        """Remember how the payment parameters were made (`order`: create_payment(placed);
        `part`: create_part_payment(part)) so an expired prepay_id can be made again."""
        self._prepay_source, self._prepay_at = (kind, request), workflow.now()
        self._prepay_valid_for = timings.prepay_valid_for

    def _prepay_stale(self) -> bool:
        return (self._prepay_at is not None and self._progress is not None and self._payment is None
                and self._progress.status == OrderStatus.PENDING_PAYMENT
                and workflow.now() - self._prepay_at >= self._prepay_valid_for)

    async def _refresh_prepay(self) -> None:
        """A fresh WeChat Pay prepay for the same out_trade_no (same terms: WeChat Pay answers
        a new prepay_id once the old one expired). Paid or closed meanwhile: nothing to do."""
        async with self._prepay_lock:
            if not self._prepay_stale():
                return
            kind, request = self._prepay_source
            activity = PaymentActivities.create_payment if kind == "order" else PaymentActivities.create_part_payment
            try:
                prepay = await workflow.execute_activity_method(activity, request, **PARTNER_CALL)
            except ActivityError as err:
                if error_is(err, "WECHATPAY_ORDERPAID") or error_is(err, "WECHATPAY_ORDER_CLOSED"):
                    return  # the payment notice or the timeout settles the order
                raise ApplicationError("WeChat Pay did not make new payment parameters; try again",
                                       type="PAYMENT_UNAVAILABLE") from err
            if self._payment is None and self._progress.status == OrderStatus.PENDING_PAYMENT:
                self._progress.prepay, self._prepay_at = prepay, workflow.now()

    async def _wait_for_payment(self, order_no: str, timings: OrderTimings, out_trade_no: str | None = None) -> bool:
        """The order's payment (a pre-sale order's deposit: `out_trade_no`) within the timeout.
        Only WeChat Pay's own record makes it paid: a payment signal is checked by a query (state,
        amount, merchant and app) before it counts; one WeChat Pay does not confirm is ignored."""
        trade_no = out_trade_no or order_no
        if workflow.patched(VERIFY_PAYMENT_PATCH):
            if await self._wait_for_verified_payment(trade_no, timings):
                return True
        elif await self._wait_for(lambda: self._payment is not None, timings.payment_timeout, "payment timeout"):
            return True
        # The notice may have been lost: WeChat Pay's own record decides.
        notice = await workflow.execute_activity_method(
            PaymentActivities.query_payment, trade_no, **PARTNER_CALL)
        if notice.trade_state == "SUCCESS":
            self._payment = notice
            return True
        try:
            await workflow.execute_activity_method(PaymentActivities.close_payment, trade_no, **PARTNER_CALL)
        except ActivityError as err:
            if not error_is(err, "WECHATPAY_ORDERPAID"):
                if not workflow.patched(COMPENSATE_PATCH):
                    raise
                # the close failed: WeChat Pay's record decides; unpaid, the order is closed on our
                # side (the JSAPI order expires at WeChat Pay; a payment still made is refunded)
                workflow.logger.warning("closing %s at WeChat Pay failed: %s", trade_no, err.cause)
            # paid between our query and the close: it is a normal payment
            paid = await workflow.execute_activity_method(
                PaymentActivities.query_payment, trade_no, **PARTNER_CALL)
            if paid.trade_state == "SUCCESS" or error_is(err, "WECHATPAY_ORDERPAID"):
                self._payment = paid
                return True
        await self._cancel_unpaid(order_no, "payment timed out; WeChat Pay order closed")
        if self._payment is not None:
            # the notice came while we were closing: the buyer's money goes back
            await self._refund_late_payment(order_no, self._payment, timings)
        return False
    async def _wait_for_verified_payment(self, trade_no: str, timings: OrderTimings) -> bool:
        deadline = workflow.now() + timings.payment_timeout
        while (left := deadline - workflow.now()) > timedelta(0):
            if not await self._wait_for(lambda: self._payment is not None, left, "payment timeout"):
                return False
            checked = await workflow.execute_activity_method(
                PaymentActivities.verify_payment, trade_no, **PARTNER_CALL)
            if checked.trade_state == "SUCCESS":
                self._payment = checked
                return True
            workflow.logger.warning("payment signal for %s not confirmed by WeChat Pay (%s): ignored",
                                    trade_no, checked.trade_state)
            self._payment = None
            self._progress.ignored_payment_signals += 1
        return False
    async def _refund_late_payment(self, order_no: str, notice: PaymentNotice, timings: OrderTimings) -> None:
        refund_no = late_payment_refund_no(notice.out_trade_no)
        await workflow.execute_child_workflow(
            RefundWorkflow.run, RefundInput(
                refund_no=refund_no, order_no=order_no, kind=RefundKind.LATE_PAYMENT,
                amount_fen=notice.amount_fen, needs_return=False, timings=timings.refunds,
                late_payment=notice),
            id=refund_workflow_id(refund_no), parent_close_policy=ParentClosePolicy.ABANDON)
    async def _cancel_unpaid(self, order_no: str, reason: str) -> None:
        await workflow.execute_activity_method(
            OrderActivities.cancel_unpaid, args=[order_no, reason], **DB_STEP)
        self._set_status(OrderStatus.CANCELLED)
        await self._send_buyer_messages()
