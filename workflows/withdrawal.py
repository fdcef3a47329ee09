"""WithdrawalWorkflow (`withdrawal-{id}`): a promoter's commission to WeChat change (零钱).

    (the API has already moved the money from available into withdrawing, with the row)
    [support review above the threshold: reject → money back]
    → WeChat Pay merchant transfer bill (out_bill_no WD{id:012d}, scene 1005 佣金报酬)
    → WAIT_USER_CONFIRM: the mini program calls wx.requestMerchantTransfer with package_info
    → result by MCHTRANSFER.BILL.FINISHED notification or by query every poll period;
      not confirmed in time (or the promoter cancels) → cancel the bill
    → SUCCESS: the money leaves the books · FAIL / CANCELLED: the money goes back.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from domain.search_attributes import PROMOTER_ID, BUSINESS_STATUS
from workflows.options import DB_STEP, PARTNER_CALL

with workflow.unsafe.imports_passed_through():
    from activities.withdrawals import WithdrawalActivities
    from domain.withdrawals import (
        BILL_NOT_FOUND,
        CancelRequest,
        TransferState,
        WithdrawalDecision,
        WithdrawalInput,
        WithdrawalProgress,
        WithdrawalStatus,
        out_bill_no,
    )

CANCELLABLE = (WithdrawalStatus.REVIEWING, WithdrawalStatus.TRANSFERRING, WithdrawalStatus.WAIT_USER_CONFIRM)


def workflow_id(withdrawal_id: int) -> str:
    return f"withdrawal-{withdrawal_id}"


@workflow.defn(name="WithdrawalWorkflow")
class WithdrawalWorkflow:
    def __init__(self) -> None:
        self._progress: WithdrawalProgress | None = None
        self._decision: WithdrawalDecision | None = None
        self._cancel: CancelRequest | None = None
        self._notice: TransferState | None = None

    @workflow.run
    async def run(self, inp: WithdrawalInput) -> WithdrawalProgress:
        progress = await self._run(inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return progress

    async def _run(self, inp: WithdrawalInput) -> WithdrawalProgress:
        self._progress = WithdrawalProgress(withdrawal_id=inp.withdrawal_id, promoter_id=inp.promoter_id,
                                            amount_fen=inp.amount_fen, status=WithdrawalStatus.REQUESTED)
        workflow.upsert_search_attributes([PROMOTER_ID.value_set(str(inp.promoter_id))])
        if inp.resume_bill is not None:  # continued as new while waiting for the transfer's result
            self._progress.out_bill_no = out_bill_no(inp.withdrawal_id)
            return await self._conclude(inp, await self._await_result(inp, inp.resume_bill))
        self._set(WithdrawalStatus.REQUESTED)
        if inp.needs_review:
            await self._step(WithdrawalStatus.REVIEWING, "amount above the review threshold")
            await workflow.wait_condition(lambda: self._decision is not None or self._cancel is not None)
            if self._decision is None:
                return await self._give_back(WithdrawalStatus.CANCELLED, "CANCELLED_BY_PROMOTER")
            await workflow.execute_activity_method(
                WithdrawalActivities.record_review, args=[inp.withdrawal_id, self._decision], **DB_STEP)
            if not self._decision.approve:
                return await self._give_back(WithdrawalStatus.REJECTED, "REJECTED_BY_SUPPORT")

        self._set(WithdrawalStatus.TRANSFERRING)
        self._progress.out_bill_no = out_bill_no(inp.withdrawal_id)
        try:
            bill = await workflow.execute_activity_method(
                WithdrawalActivities.create_transfer, inp.withdrawal_id, **PARTNER_CALL)
        except ActivityError as err:
            # WeChat Pay (or our own check) refused the bill: make sure none exists, then give back
            cause = err.cause
            code = (cause.type if isinstance(cause, ApplicationError) else None) or "TRANSFER_REFUSED"
            bill = await self._query(inp.withdrawal_id)
            if bill.state == BILL_NOT_FOUND:
                return await self._give_back(WithdrawalStatus.FAILED, code)

        return await self._conclude(inp, await self._await_result(inp, bill))

    async def _conclude(self, inp: WithdrawalInput, bill: TransferState) -> WithdrawalProgress:
        if bill.state == "SUCCESS":
            status = await workflow.execute_activity_method(
                WithdrawalActivities.complete_withdrawal, args=[inp.withdrawal_id, bill], **DB_STEP)
            return self._done(status, bill)
        if bill.state == "FAIL":
            return await self._give_back(WithdrawalStatus.FAILED, bill.fail_reason or "TRANSFER_FAILED", bill)
        why = "CANCELLED_BY_PROMOTER" if self._cancel is not None else "NOT_CONFIRMED_IN_TIME"
        return await self._give_back(WithdrawalStatus.CANCELLED, why, bill)

    async def _await_result(self, inp: WithdrawalInput, bill: TransferState) -> TransferState:
        """Until the bill is final: wait for the notification, query every poll period, and
        cancel it once when the user has not confirmed in time or the promoter asks."""
        t = inp.timings
        self._bill(bill)
        self._set(WithdrawalStatus.WAIT_USER_CONFIRM)
        self._progress.note = "waiting for the promoter to confirm receipt in WeChat"
        deadline = inp.resume_deadline or workflow.now() + t.confirm_timeout
        cancel_tried = inp.resume_cancel_tried
        if cancel_tried:
            self._set(WithdrawalStatus.CANCELLING)
        polls = 0
        while not bill.final:
            if polls >= t.polls_per_run or workflow.info().is_continue_as_new_suggested():
                # a bill that stays unsettled (e.g. cancelling at WeChat Pay): a fresh, short history
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp.model_copy(update={
                    "resume_bill": bill, "resume_deadline": deadline, "resume_cancel_tried": cancel_tried}))
            if not cancel_tried and (self._cancel is not None or workflow.now() >= deadline):
                cancel_tried = True
                if await workflow.execute_activity_method(
                        WithdrawalActivities.cancel_transfer, inp.withdrawal_id, **PARTNER_CALL):
                    await self._step(WithdrawalStatus.CANCELLING, "cancelling the transfer bill")
                bill = await self._query(inp.withdrawal_id)
                continue
            wait = t.poll_every if cancel_tried else min(t.poll_every, deadline - workflow.now())
            try:
                await workflow.wait_condition(
                    lambda: self._notice is not None or (self._cancel is not None and not cancel_tried),
                    timeout=wait)
            except TimeoutError:
                polls += 1
                bill = await self._query(inp.withdrawal_id)
                continue
            if self._notice is not None:
                bill = self._notice
        return bill

    async def _query(self, withdrawal_id: int) -> TransferState:
        bill = await workflow.execute_activity_method(
            WithdrawalActivities.query_transfer, withdrawal_id, **PARTNER_CALL)
        self._bill(bill)
        return bill

    async def _give_back(self, status: WithdrawalStatus, reason: str,
                         bill: TransferState | None = None) -> WithdrawalProgress:
        status = await workflow.execute_activity_method(
            WithdrawalActivities.return_withdrawal, args=[self._progress.withdrawal_id, status, reason, bill],
            **DB_STEP)
        self._progress.note = f"money returned to the wallet: {reason}"
        return self._done(status, bill)

    def _done(self, status: WithdrawalStatus, bill: TransferState | None) -> WithdrawalProgress:
        if bill is not None:
            self._bill(bill)
        if status == WithdrawalStatus.SUCCESS:
            self._progress.note = "paid to WeChat change"
        self._set(status)
        return self._progress

    async def _step(self, status: WithdrawalStatus, note: str) -> None:
        self._set(status)
        self._progress.note = note
        await workflow.execute_activity_method(
            WithdrawalActivities.set_withdrawal_status, args=[self._progress.withdrawal_id, status, note],
            **DB_STEP)

    def _bill(self, bill: TransferState) -> None:
        if bill.state != BILL_NOT_FOUND:
            self._progress.bill_state = bill.state

    def _set(self, status: WithdrawalStatus) -> None:
        self._progress.status = status
        self._progress.updated_at = workflow.now()
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(f"WITHDRAWAL_{status.value}")])

    # --- what the outside world sends ----------------------------------------------------
    @workflow.update
    def review(self, decision: WithdrawalDecision) -> WithdrawalProgress:
        self._decision = decision
        return self._progress

    @review.validator
    def _validate_review(self, decision: WithdrawalDecision) -> None:
        current = self._progress.status if self._progress else None
        if current != WithdrawalStatus.REVIEWING or self._cancel is not None:
            raise ApplicationError(f"withdrawal is not waiting for review (it is {current})", type="NOT_ALLOWED_NOW")
        if self._decision is not None:
            raise ApplicationError("already decided", type="ALREADY_DECIDED")
        if not decision.approve and not decision.note.strip():
            raise ApplicationError("a rejection needs a note the promoter can read", type="INVALID_DECISION")

    @workflow.update
    def cancel(self, request: CancelRequest) -> WithdrawalProgress:
        self._cancel = request
        return self._progress

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        current = self._progress.status if self._progress else None
        if current not in CANCELLABLE or (current == WithdrawalStatus.REVIEWING and self._decision is not None):
            raise ApplicationError(f"withdrawal cannot be cancelled now (it is {current})", type="NOT_ALLOWED_NOW")
        if self._cancel is not None:
            raise ApplicationError("cancellation already asked for", type="ALREADY_CANCELLING")

    @workflow.signal
    def transfer_notified(self, notice: TransferState) -> None:
        """MCHTRANSFER.BILL.FINISHED: the first final state counts; repeats change nothing."""
        if self._notice is None and notice.final:
            self._notice = notice

    @workflow.query
    def progress(self) -> WithdrawalProgress | None:
        return self._progress
