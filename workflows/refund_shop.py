"""The Channels shop path of RefundWorkflow: a refund of an order paid in the shop is the shop's
after-sale (`CA{after-sale id}`). Our decisions go back through the after-sale API and the shop
pays the buyer back; we wait for it to say so (its status, pushed or polled), then reverse the
books exactly as for our own refunds.

    [support review of a quality claim: a rejection goes to the shop with its reason]
    → accept at the shop → a return: the buyer sends it back through the shop → the supplier
      confirms receipt (or it is accepted when they do not in time) → accept again
    → the shop refunds (MERCHANT_REFUND_SUCCESS) → books reversed, the order told
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from workflows.options import DB_STEP, PARTNER_CALL

with workflow.unsafe.imports_passed_through():
    from activities.channels_inbound import ChannelsInboundActivities
    from activities.refunds import RefundActivities
    from domain.channels_inbound import AFTERSALE_ENDED_UNPAID, AFTERSALE_REFUNDED, AfterSaleStatus
    from domain.refunds import RefundDecision, RefundInput, RefundOutcome, RefundProgress, RefundStatus, ReturnReceipt


class ShopRefundPath:
    _progress: RefundProgress | None
    _decision: RefundDecision | None
    _receipt: ReturnReceipt | None
    _shop_status: str | None

    async def _shop_refund(self, inp: RefundInput) -> RefundOutcome:
        aid = inp.channels_aftersale_id
        note = inp.resume_note
        if not inp.resume_refunding:
            if inp.review_reasons:
                await self._review_with_deadline(inp)
                if not self._decision.approve:
                    reason = self._decision.note or "rejected by support"
                    await workflow.execute_activity_method(
                        ChannelsInboundActivities.reject_shop_aftersale, args=[aid, reason], **PARTNER_CALL)
                    return await self._close(RefundStatus.REJECTED, reason)
            await self._accept(aid)
            if self._shop_status in AFTERSALE_ENDED_UNPAID:
                return await self._close(RefundStatus.CLOSED, f"the after-sale ended in the shop: {self._shop_status}")
            if self._shop_status == AfterSaleStatus.USER_WAIT_RETURN:
                await self._step(RefundStatus.AWAITING_RETURN, "the buyer sends the goods back through the shop")
                await self._until_shop({AfterSaleStatus.MERCHANT_WAIT_RECEIPT, *AFTERSALE_ENDED_UNPAID}, aid, inp,
                                       workflow.now() + inp.timings.return_ship_timeout)
                if self._shop_status != AfterSaleStatus.MERCHANT_WAIT_RECEIPT:
                    return await self._close(RefundStatus.CLOSED, "the return was not shipped in time")
                await self._step(RefundStatus.RETURN_SHIPPED, "the return parcel is on its way (Channels shop)")
                try:
                    await workflow.wait_condition(lambda: self._receipt is not None,
                                                  timeout=inp.timings.return_receipt_timeout)
                except TimeoutError:
                    note = "return accepted: the supplier did not confirm in time"
                await self._accept(aid)
        self._set(RefundStatus.REFUNDING)
        await self._until_shop({*AFTERSALE_REFUNDED, *AFTERSALE_ENDED_UNPAID}, aid, inp, None, note)
        if self._shop_status not in AFTERSALE_REFUNDED:
            return await self._close(RefundStatus.CLOSED, f"the after-sale ended in the shop: {self._shop_status}")
        outcome = await workflow.execute_activity_method(
            RefundActivities.complete_refund, args=[inp.refund_no, f"channels:{aid}", note], **DB_STEP)
        return await self._finish(outcome)

    async def _accept(self, aid: str) -> None:
        self._shop_status = await workflow.execute_activity_method(
            ChannelsInboundActivities.accept_shop_aftersale, aid, **PARTNER_CALL)

    async def _until_shop(self, wanted: set[str], aid: str, inp: RefundInput, deadline: datetime | None,
                          note: str = "") -> None:
        """Until the shop's status is one of `wanted` (told by the shop order's workflow, or
        asked every refund_poll_every) or `deadline` passes. Waiting with no deadline for the
        shop's refund, a long wait continues as new."""
        polls = 0
        while self._shop_status not in wanted:
            wait = inp.timings.refund_poll_every
            if deadline is not None:
                if workflow.now() >= deadline:
                    return
                wait = min(wait, deadline - workflow.now())
            try:
                await workflow.wait_condition(lambda: self._shop_status in wanted, timeout=wait,
                                              timeout_summary="the shop's after-sale status")
            except TimeoutError:
                polls += 1
                self._shop_status = await workflow.execute_activity_method(
                    ChannelsInboundActivities.shop_aftersale_status, aid, **PARTNER_CALL)
                if deadline is None and self._shop_status not in wanted and (
                        polls >= inp.timings.polls_per_run or workflow.info().is_continue_as_new_suggested()):
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(inp.model_copy(update={"resume_refunding": True, "resume_note": note}))

    @workflow.signal
    def shop_aftersale_status(self, status: str) -> None:
        """The after-sale's status at the shop, as its shop order's workflow read it."""
        self._shop_status = status
