"""SupplierOnboardingWorkflow (`supplier-{id}`): one supplier's application until approved,
rejected or expired.

    automatic checks (licence format + GB 32100 checksum, duplicate licence, documents per category)
      failed → rejected
    → wait for support's decision (update `decide`, validated); past the SLA → escalate to support
      approve (service fee 1%–5%) → supplier active, profit-sharing receiver, notified
      reject (reason)              → rejected, notified
      more info (what is missing)  → wait for the resubmission signal → checks again
                                     not resubmitted in time → expired
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from domain.search_attributes import SUPPLIER_ID, BUSINESS_STATUS
from workflows.options import DB_STEP

with workflow.unsafe.imports_passed_through():
    from activities.catalog import CatalogActivities
    from domain.suppliers import (
        OnboardingProgress,
        OnboardingStatus,
        ReviewDecision,
        ReviewTimings,
        decision_problem,
    )




class SupplierOnboardingInput(BaseModel):
    supplier_id: int
    timings: ReviewTimings
    fee_bps_min: int
    fee_bps_max: int


def workflow_id(supplier_id: int) -> str:
    return f"supplier-{supplier_id}"


@workflow.defn(name="SupplierOnboardingWorkflow")
class SupplierOnboardingWorkflow:
    def __init__(self) -> None:
        self._progress: OnboardingProgress | None = None
        self._decision: ReviewDecision | None = None
        self._resubmissions = 0
        self._fees = (0, 0)

    @workflow.run
    async def run(self, inp: SupplierOnboardingInput) -> OnboardingProgress:
        sid = inp.supplier_id
        self._fees = (inp.fee_bps_min, inp.fee_bps_max)
        self._progress = OnboardingProgress(supplier_id=sid, status=OnboardingStatus.CHECKING)
        workflow.upsert_search_attributes([SUPPLIER_ID.value_set([str(sid)])])
        while True:
            self._progress.round += 1
            self._set_status(OnboardingStatus.CHECKING)
            check = await workflow.execute_activity_method(
                CatalogActivities.check_application, sid, **DB_STEP)
            self._progress.problems = check.problems
            if check.problems:
                reason = "automatic checks failed: " + "; ".join(p.message for p in check.problems)
                await workflow.execute_activity_method(
                    CatalogActivities.reject_application, args=[sid, reason, None], **DB_STEP)
                return self._finish(OnboardingStatus.REJECTED)

            self._set_status(OnboardingStatus.PENDING_REVIEW)
            decision = await self._decision_within_sla(sid, inp.timings)
            if decision.action == "approve":
                await workflow.execute_activity_method(
                    CatalogActivities.activate_supplier, args=[sid, decision], **DB_STEP)
                await workflow.execute_activity_method(
                    CatalogActivities.add_profit_sharing_receiver, sid, **DB_STEP)
                return await self._finish_decided(OnboardingStatus.APPROVED)
            if decision.action == "reject":
                await workflow.execute_activity_method(
                    CatalogActivities.reject_application, args=[sid, decision.reason, decision.reviewer_user_id],
                    **DB_STEP)
                return await self._finish_decided(OnboardingStatus.REJECTED)

            await workflow.execute_activity_method(
                CatalogActivities.request_more_info, args=[sid, self._progress.round, decision.reason], **DB_STEP)
            self._set_status(OnboardingStatus.MORE_INFO)
            self._decision = None  # releases the `decide` update
            if not await self._resubmitted_in_time(sid, inp.timings.more_info_timeout):
                return self._finish(OnboardingStatus.EXPIRED)

    async def _decision_within_sla(self, sid: int, timings: ReviewTimings) -> ReviewDecision:
        """Wait for support; each time the SLA passes without a decision, escalate (up to a cap,
        then keep waiting quietly: a person must decide)."""
        level = 0
        while True:
            timeout = timings.review_sla if level < timings.max_escalations else None
            try:
                await workflow.wait_condition(lambda: self._decision is not None, timeout=timeout)
                return self._decision
            except TimeoutError:
                level += 1
                self._progress.escalations += 1
                await workflow.execute_activity_method(
                    CatalogActivities.escalate_review, args=["supplier", sid, self._progress.round, level],
                    **DB_STEP)

    async def _resubmitted_in_time(self, sid: int, timeout: timedelta) -> bool:
        seen = self._resubmissions
        try:
            await workflow.wait_condition(lambda: self._resubmissions > seen, timeout=timeout)
            return True
        except TimeoutError:
            # The database decides a last-moment race with the resubmission.
            expired = await workflow.execute_activity_method(
                CatalogActivities.expire_application, sid, **DB_STEP)
            return not expired

    # --- what support and the supplier send --------------------------------------------------
    @workflow.update
    async def decide(self, decision: ReviewDecision) -> OnboardingProgress:
        """Support's decision; answers once it has taken effect."""
        self._decision = decision
        self._progress.decision = decision
        await workflow.wait_condition(lambda: self._decision is None)
        return self._progress

    @decide.validator
    def _validate_decide(self, decision: ReviewDecision) -> None:
        status = self._progress.status if self._progress else None
        if self._decision is not None:
            raise ApplicationError("a decision is already being applied", type="ALREADY_DECIDED")
        if status != OnboardingStatus.PENDING_REVIEW:
            raise ApplicationError(f"application is {status}, not awaiting a decision",
                                   type="NOT_AWAITING_DECISION")
        problem = decision_problem(decision, *self._fees)
        if problem:
            raise ApplicationError(problem, type="INVALID_DECISION")

    @workflow.signal
    def resubmitted(self) -> None:
        self._resubmissions += 1

    @workflow.query
    def progress(self) -> OnboardingProgress | None:
        return self._progress

    # --- bookkeeping -----------------------------------------------------------------------------
    def _set_status(self, status: OnboardingStatus) -> None:
        self._progress.status = status
        self._progress.updated_at = workflow.now()
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status.value)])

    def _finish(self, status: OnboardingStatus) -> OnboardingProgress:
        self._set_status(status)
        return self._progress

    async def _finish_decided(self, status: OnboardingStatus) -> OnboardingProgress:
        self._set_status(status)
        self._decision = None
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress
