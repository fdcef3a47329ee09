"""The pre-sale path of an order: the deposit, then (window open, buyer reminded, balance asked
for) the balance; a balance unpaid by the end closes the order and refunds the deposit
(rules in domain/presale.py)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.options import DB_STEP, PARTNER_CALL
from workflows.order_payment import PaymentSteps
from workflows.order_state import VERIFY_PAYMENT_PATCH, error_is
from workflows.refund import RefundWorkflow
from workflows.refund import workflow_id as refund_workflow_id

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from activities.presale import PresaleActivities
    from domain.order_process import OrderTimings
    from domain.order_status import OrderStatus
    from domain.presale import PartPayment, balance_trade_no, deposit_trade_no, lapse_refund_no
    from domain.refunds import RefundInput, RefundKind


class PresalePath(PaymentSteps):
    async def _take_presale_payments(self, placed, timings: OrderTimings) -> bool:
        """Deposit, then (window open, buyer reminded, balance asked for) the balance. False when
        the order ended here: deposit unpaid (cancelled) or balance unpaid (closed, deposit refunded)."""
        order_no, presale = placed.order_no, placed.presale
        self._progress.presale = presale
        self._balance_no = balance_trade_no(order_no)
        deposit = PartPayment(
            order_no=order_no, out_trade_no=deposit_trade_no(order_no), kind="deposit",
            amount_fen=presale.deposit_fen, description=f"{placed.description} 定金"[:120],
            buyer_openid=placed.buyer_openid)
        try:
            self._progress.prepay = await workflow.execute_activity_method(
                PaymentActivities.create_part_payment, deposit, **PARTNER_CALL)
            self._prepay_made("part", deposit, timings)
        except ActivityError as err:
            await self._cancel_unpaid(order_no, "WeChat Pay refused the order")
            self._cancel_failed(err)
            return False
        if not await self._wait_for_payment(order_no, timings, deposit_trade_no(order_no)):
            return False
        await workflow.execute_activity_method(PresaleActivities.record_deposit, self._payment, **self._paid_step())
        self._set_status(OrderStatus.DEPOSIT_PAID)
        await self._send_buyer_messages()

        opens_in = presale.balance_starts_at - workflow.now()
        if opens_in > timedelta(0):
            await workflow.sleep(opens_in, summary="balance window opens")
        await workflow.execute_activity_method(PresaleActivities.open_balance, order_no, **DB_STEP)
        self._progress.balance_open = True
        self._publish_status()
        await self._send_buyer_messages()

        ends_in = max(presale.balance_ends_at - workflow.now(), timedelta(seconds=1))
        if await self._wait_for(lambda: self._balance_asked or self._balance is not None, ends_in, "balance window ends"):
            try:
                self._progress.balance_prepay = await workflow.execute_activity_method(
                    PaymentActivities.create_part_payment, PartPayment(
                        order_no=order_no, out_trade_no=self._balance_no, kind="balance",
                        amount_fen=presale.balance_fen, description=f"{placed.description} 尾款"[:120],
                        buyer_openid=placed.buyer_openid), **PARTNER_CALL)
            except ActivityError as err:
                cause = err.cause
                self._balance_failure = cause.type if isinstance(cause, ApplicationError) else "FAILED"
            # asked for near the end, the buyer still has the whole payment timeout
            due = max(presale.balance_ends_at, workflow.now() + timings.payment_timeout)
            self._progress.balance_due_at = due
            self._publish_status()
            if workflow.patched(VERIFY_PAYMENT_PATCH):
                paid = await self._wait_for_verified_balance(due)
            else:
                paid = await self._wait_for(lambda: self._balance is not None,
                                            max(due - workflow.now(), timedelta(seconds=1)), "balance payment timeout")
            if not paid and self._balance_failure is None:
                paid = await self._balance_at_wechat()
        else:
            paid = False
        if not paid:
            await self._close_unpaid_presale(order_no, timings)
            return False
        await workflow.execute_activity_method(PresaleActivities.record_balance, self._balance, **self._paid_step())
        return True
    async def _wait_for_verified_balance(self, due) -> bool:
        """The balance's payment signal counts only once WeChat Pay's own record confirms it."""
        while True:
            if not await self._wait_for(lambda: self._balance is not None,
                                        max(due - workflow.now(), timedelta(seconds=1)), "balance payment timeout"):
                return False
            checked = await workflow.execute_activity_method(
                PaymentActivities.verify_payment, self._balance_no, **PARTNER_CALL)
            if checked.trade_state == "SUCCESS":
                self._balance = checked
                return True
            workflow.logger.warning("balance signal for %s not confirmed by WeChat Pay (%s): ignored",
                                    self._balance_no, checked.trade_state)
            self._balance = None
            self._progress.ignored_payment_signals += 1
            if workflow.now() >= due:
                return False
    async def _balance_at_wechat(self) -> bool:
        """The balance's deadline passed with no notice: ask WeChat Pay, then close it."""
        notice = await workflow.execute_activity_method(
            PaymentActivities.query_payment, self._balance_no, **PARTNER_CALL)
        if notice.trade_state == "SUCCESS":
            self._balance = notice
            return True
        try:
            await workflow.execute_activity_method(PaymentActivities.close_payment, self._balance_no, **PARTNER_CALL)
        except ActivityError as err:
            if not error_is(err, "WECHATPAY_ORDERPAID"):
                raise
            self._balance = await workflow.execute_activity_method(
                PaymentActivities.query_payment, self._balance_no, **PARTNER_CALL)
            return True
        return False
    async def _close_unpaid_presale(self, order_no: str, timings: OrderTimings) -> None:
        """Balance unpaid: the order is closed and the deposit refunded (stock given back)."""
        amount = await workflow.execute_activity_method(
            PresaleActivities.lapse_presale, args=[order_no, "balance not paid by the end of its window"], **DB_STEP)
        self._set_status(OrderStatus.CANCELLED)
        await self._send_buyer_messages()
        refund_no = lapse_refund_no(order_no)
        outcome = await workflow.execute_child_workflow(
            RefundWorkflow.run, RefundInput(
                refund_no=refund_no, order_no=order_no, kind=RefundKind.PRESALE_LAPSED, amount_fen=amount,
                needs_return=False, supplier_ids=sorted(self._suppliers), timings=timings.refunds),
            id=refund_workflow_id(refund_no))
        self.refund_finished(outcome)
        if self._balance is not None:
            # the balance was paid after its order was closed: it goes back too
            await self._refund_late_payment(order_no, self._balance, timings)
