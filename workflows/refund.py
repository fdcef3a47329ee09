"""RefundWorkflow (`refund-{refund_no}`): one refund from request to money back.

    [support review of a quality claim, approved automatically at its deadline] → [buyer ships the return → supplier confirms receipt
    (or it is accepted when they do not in time)] → WeChat Pay refund (out_refund_no =
    refund_no) → result by REFUND.* notification or by query → books reversed per line,
    stock restored → what had been split to suppliers is taken back (分账回退) → the order's
    workflow is told.

A refund of an order paid in the Channels shop follows the shop's after-sale instead
(workflows/refund_shop.py).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from domain.search_attributes import BUSINESS_STATUS
from workflows.options import DB_STEP, PARTNER_CALL
from workflows.refund_shop import ShopRefundPath

with workflow.unsafe.imports_passed_through():
    from activities.logistics import LogisticsActivities
    from activities.payments import PaymentActivities
    from activities.refunds import RefundActivities
    from activities.split_returns import SplitReturnActivities
    from domain.orders import TrackingUpdate
    from domain.refunds import (
        NEVER_REJECTABLE,
        RefundDecision,
        RefundInput,
        RefundKind,
        RefundNotice,
        RefundOutcome,
        RefundProgress,
        RefundStatus,
        ReturnParcel,
        ReturnReceipt,
    )

REVIEW_DEADLINE_PATCH = "refund-review-deadline"   # every review ends by a deadline (auto-approved)
VERIFY_LATE_PAYMENT_PATCH = "refund-verify-late-payment"   # a late payment is confirmed by query first


def workflow_id(refund_no: str) -> str:
    return f"refund-{refund_no}"


@workflow.defn(name="RefundWorkflow")
class RefundWorkflow(ShopRefundPath):
    def __init__(self) -> None:
        self._shop_status: str | None = None
        self._progress: RefundProgress | None = None
        self._decision: RefundDecision | None = None
        self._parcel: ReturnParcel | None = None
        self._receipt: ReturnReceipt | None = None
        self._notice: RefundNotice | None = None
        self._resolution: RefundDecision | None = None
        self._suppliers: list[int] = []

    @workflow.run
    async def run(self, inp: RefundInput) -> RefundOutcome:
        self._suppliers = inp.supplier_ids
        self._progress = RefundProgress(refund_no=inp.refund_no, order_no=inp.order_no, kind=inp.kind,
                                        status=RefundStatus.REFUNDING, amount_fen=inp.amount_fen,
                                        review_reasons=inp.review_reasons)
        if inp.channels_aftersale_id and inp.resume_refunding:
            return await self._shop_refund(inp)
        if inp.resume_refunding:  # continued as new while WeChat Pay was processing the refund
            return await self._refund(inp, inp.resume_note, resumed=True)
        if inp.late_payment is not None:
            late = inp.late_payment
            if workflow.patched(VERIFY_LATE_PAYMENT_PATCH):
                # only WeChat Pay's own record says money came in: book and refund what it says
                late = await workflow.execute_activity_method(
                    PaymentActivities.verify_payment, late.out_trade_no, **PARTNER_CALL)
                if late.trade_state != "SUCCESS":
                    self._progress.note = f"no payment at WeChat Pay ({late.trade_state}): nothing to refund"
                    self._set(RefundStatus.CLOSED)
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    return RefundOutcome(refund_no=inp.refund_no, status=RefundStatus.CLOSED)
                self._progress.amount_fen = late.amount_fen
            await workflow.execute_activity_method(
                RefundActivities.open_late_payment_refund, args=[inp.refund_no, late], **DB_STEP)
        else:
            await self._tell_order(inp.order_no, "refund_opened", inp.refund_no)
        if inp.channels_aftersale_id:  # paid in the Channels shop: refunded through its after-sale
            return await self._shop_refund(inp)
        if inp.review_reasons:
            if workflow.patched(REVIEW_DEADLINE_PATCH):
                await self._review_with_deadline(inp)
            else:
                await self._step(RefundStatus.REVIEWING, "; ".join(inp.review_reasons))
                await workflow.wait_condition(lambda: self._decision is not None)
            if not self._decision.approve:
                return await self._close(RefundStatus.REJECTED, self._decision.note or "rejected by support")
        note = ""
        if inp.needs_return:
            await self._step(RefundStatus.AWAITING_RETURN, "waiting for the buyer's return parcel")
            try:
                await workflow.wait_condition(lambda: self._parcel is not None,
                                              timeout=inp.timings.return_ship_timeout)
            except TimeoutError:
                return await self._close(RefundStatus.CLOSED, "the return was not shipped in time")
            await workflow.execute_activity_method(
                RefundActivities.record_return_parcel, args=[inp.refund_no, self._parcel], **DB_STEP)
            await workflow.execute_activity_method(
                LogisticsActivities.subscribe_tracking, args=[self._parcel.carrier, self._parcel.waybill_no],
                **PARTNER_CALL)
            self._set(RefundStatus.RETURN_SHIPPED)
            try:
                await workflow.wait_condition(lambda: self._receipt is not None,
                                              timeout=inp.timings.return_receipt_timeout)
            except TimeoutError:
                note = "return accepted: the supplier did not confirm in time"
        return await self._refund(inp, note)

    async def _review_with_deadline(self, inp: RefundInput) -> None:
        """Support judges a quality claim by a deadline the buyer sees; undecided by then, the
        refund is approved automatically."""
        deadline = workflow.now() + inp.timings.review_deadline
        note = "; ".join(inp.review_reasons)
        await workflow.execute_activity_method(
            RefundActivities.start_refund_review, args=[inp.refund_no, note, deadline], **DB_STEP)
        self._progress.review_deadline_at, self._progress.note = deadline, note
        self._set(RefundStatus.REVIEWING)   # decisions are taken from here on
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=inp.timings.review_deadline,
                                          timeout_summary="review deadline")
        except TimeoutError:
            self._decision = RefundDecision(approve=True, reviewer_user_id=None,
                                            note="approved automatically: support did not decide by the deadline")
        await workflow.execute_activity_method(
            RefundActivities.record_refund_review, args=[inp.refund_no, self._decision], **DB_STEP)

    async def _refund(self, inp: RefundInput, note: str, resumed: bool = False) -> RefundOutcome:
        self._set(RefundStatus.REFUNDING)
        if resumed:
            notice = await workflow.execute_activity_method(
                RefundActivities.query_refund, inp.refund_no, **PARTNER_CALL)
        else:
            try:
                notice = await workflow.execute_activity_method(
                    RefundActivities.request_refund, inp.refund_no, **PARTNER_CALL)
            except ActivityError as err:
                # WeChat Pay refused (NOT_ENOUGH: the merchant balance is short; INVALID_REQUEST:
                # more than is left): a person must look, the money is owed
                cause = err.cause
                code = cause.type if isinstance(cause, ApplicationError) else "FAILED"
                notice = RefundNotice(refund_no=inp.refund_no, status="ABNORMAL")
                note = f"WeChat Pay refused the refund: {code}"
        polls = 0
        while notice.status == "PROCESSING":
            if polls >= inp.timings.polls_per_run or workflow.info().is_continue_as_new_suggested():
                # a refund WeChat Pay keeps processing: start afresh with a short history
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp.model_copy(update={"resume_refunding": True, "resume_note": note}))
            try:
                await workflow.wait_condition(
                    lambda: self._notice is not None and self._notice.status != "PROCESSING",
                    timeout=inp.timings.refund_poll_every)
                notice = self._notice
            except TimeoutError:
                polls += 1
                notice = await workflow.execute_activity_method(
                    RefundActivities.query_refund, inp.refund_no, **PARTNER_CALL)
        if notice.status == "ABNORMAL":
            await self._step(RefundStatus.ABNORMAL, note or "WeChat Pay could not return the money")
            await workflow.wait_condition(lambda: self._resolution is not None)
            note = f"settled by support: {self._resolution.note}".strip()
        if notice.status == "CLOSED":
            return await self._close(RefundStatus.CLOSED, "WeChat Pay closed the refund")
        outcome = await workflow.execute_activity_method(
            RefundActivities.complete_refund, args=[inp.refund_no, notice.refund_id or "", note], **DB_STEP)
        if workflow.patched("split-return"):
            await workflow.execute_activity_method(
                SplitReturnActivities.return_splits, inp.refund_no, **PARTNER_CALL)
        return await self._finish(outcome)

    async def _close(self, status: RefundStatus, note: str) -> RefundOutcome:
        self._progress.note = note
        outcome = await workflow.execute_activity_method(
            RefundActivities.close_refund, args=[self._progress.refund_no, status, note], **DB_STEP)
        return await self._finish(outcome)

    async def _finish(self, outcome: RefundOutcome) -> RefundOutcome:
        self._set(outcome.status)
        if self._progress.kind != RefundKind.LATE_PAYMENT:
            await self._tell_order(self._progress.order_no, "refund_finished", outcome)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _step(self, status: RefundStatus, note: str) -> None:
        self._set(status)
        self._progress.note = note
        await workflow.execute_activity_method(
            RefundActivities.set_refund_status, args=[self._progress.refund_no, status, note], **DB_STEP)

    async def _tell_order(self, order_no: str, signal: str, arg: object) -> None:
        handle = workflow.get_external_workflow_handle(f"order-{order_no}")
        try:
            await handle.signal(signal, arg)
        except Exception:  # noqa: BLE001 - the order's workflow has ended (refund after completion)
            workflow.logger.info("order workflow not running; %s not delivered", signal)

    def _set(self, status: RefundStatus) -> None:
        self._progress.status = status
        self._progress.updated_at = workflow.now()
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(f"REFUND_{status.value}")])

    # --- what the outside world sends ----------------------------------------------------
    @workflow.update
    def review(self, decision: RefundDecision) -> RefundProgress:
        self._decision = decision
        return self._progress

    @review.validator
    def _validate_review(self, decision: RefundDecision) -> None:
        if not decision.approve and self._progress is not None and self._progress.kind in NEVER_REJECTABLE:
            raise ApplicationError(f"a {self._progress.kind} refund is the buyer's right and cannot be rejected",
                                   type="NOT_REJECTABLE")
        self._expect(RefundStatus.REVIEWING, "is not waiting for review")
        if self._decision is not None:
            raise ApplicationError("already decided", type="ALREADY_DECIDED")

    @workflow.update
    def ship_return(self, parcel: ReturnParcel) -> RefundProgress:
        self._parcel = parcel
        return self._progress

    @ship_return.validator
    def _validate_ship_return(self, parcel: ReturnParcel) -> None:
        self._expect(RefundStatus.AWAITING_RETURN, "is not waiting for a return parcel")
        if self._parcel is not None:
            raise ApplicationError("the return parcel was already given", type="ALREADY_SHIPPED")

    @workflow.update
    def confirm_return(self, receipt: ReturnReceipt) -> RefundProgress:
        self._receipt = receipt
        return self._progress

    @confirm_return.validator
    def _validate_confirm_return(self, receipt: ReturnReceipt) -> None:
        self._expect(RefundStatus.RETURN_SHIPPED, "has no return parcel on its way")
        if receipt.supplier_id not in self._suppliers:
            raise ApplicationError("this return is not for your goods", type="NOT_YOUR_RETURN")
        if self._receipt is not None:
            raise ApplicationError("receipt already confirmed", type="ALREADY_CONFIRMED")

    @workflow.update
    def resolve_abnormal(self, resolution: RefundDecision) -> RefundProgress:
        self._resolution = resolution
        return self._progress

    @resolve_abnormal.validator
    def _validate_resolve(self, resolution: RefundDecision) -> None:
        self._expect(RefundStatus.ABNORMAL, "is not abnormal")
        if not resolution.approve:
            raise ApplicationError("an abnormal refund is owed: settle it and confirm", type="INVALID_DECISION")

    @workflow.signal
    def refund_notified(self, notice: RefundNotice) -> None:
        if self._notice is None or self._notice.status == "PROCESSING":
            self._notice = notice

    @workflow.signal
    def return_tracking(self, update: TrackingUpdate) -> None:
        self._progress.note = f"return parcel: state {update.state}" + (" (delivered)" if update.delivered else "")

    @workflow.query
    def progress(self) -> RefundProgress | None:
        return self._progress

    def _expect(self, status: RefundStatus, what: str) -> None:
        current = self._progress.status if self._progress else None
        if current != status:
            raise ApplicationError(f"refund {what} (it is {current})", type="NOT_ALLOWED_NOW")
