"""ProductReviewWorkflow (`product-{id}`): a submitted product until listed or rejected.

    automatic checks (prohibited words, category qualification, price > 0,
                      commission ≤ price − platform fee)   failed → rejected
    → wait for support's decision (update `decide`, validated); past the SLA → escalate
      approve → listed, added to the Channels shop, supplier notified
      reject  → rejected, supplier notified

A content edit of a listed product (`product-{id}-edit-{edit_id}`) takes the same checks and
decision; the product stays on sale as it was until the edit is approved, and after a rejection.
"""

from __future__ import annotations


from temporalio import workflow
from temporalio.exceptions import ApplicationError

from domain.search_attributes import SUPPLIER_ID, BUSINESS_STATUS
from workflows.options import DB_STEP, PARTNER_CALL

with workflow.unsafe.imports_passed_through():
    from activities.catalog import CatalogActivities
    from activities.product_edits import ProductEditActivities
    from domain.catalog import (
        ProductDecision,
        ProductProgress,
        ProductReviewInput,
        ProductStatus,
        product_decision_problem,
    )




def workflow_id(product_id: int) -> str:
    return f"product-{product_id}"


@workflow.defn(name="ProductReviewWorkflow")
class ProductReviewWorkflow:
    def __init__(self) -> None:
        self._progress: ProductProgress | None = None
        self._decision: ProductDecision | None = None

    @workflow.run
    async def run(self, inp: ProductReviewInput) -> ProductProgress:
        pid = inp.product_id
        self._progress = ProductProgress(product_id=pid, status=ProductStatus.CHECKING)
        workflow.upsert_search_attributes([SUPPLIER_ID.value_set([str(inp.supplier_id)])])
        self._set_status(ProductStatus.CHECKING)
        if inp.edit_id is not None:
            return await self._review_edit(inp, inp.edit_id)
        check = await workflow.execute_activity_method(CatalogActivities.check_product, pid, **DB_STEP)
        self._progress.problems = check.problems
        if check.problems:
            reason = "automatic checks failed: " + "; ".join(p.message for p in check.problems)
            await workflow.execute_activity_method(
                CatalogActivities.reject_product, args=[pid, reason, None], **DB_STEP)
            self._set_status(ProductStatus.REJECTED)
            return self._progress

        decision = await self._await_decision(inp, "product", pid)
        if decision.action == "approve":
            await workflow.execute_activity_method(
                CatalogActivities.list_product, args=[pid, decision], **DB_STEP)
            self._set_status(ProductStatus.LISTED)
            self._progress.channels = await workflow.execute_activity_method(
                CatalogActivities.add_to_channels_shop, pid, **PARTNER_CALL)
        else:
            await workflow.execute_activity_method(
                CatalogActivities.reject_product, args=[pid, decision.reason, decision.reviewer_user_id],
                **DB_STEP)
            self._set_status(ProductStatus.REJECTED)
        self._decision = None
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    async def _await_decision(self, inp: ProductReviewInput, subject_type: str, subject_id: int) -> ProductDecision:
        """Support's decision; each `review_sla` without one escalates (up to max_escalations)."""
        self._set_status(ProductStatus.PENDING_REVIEW)
        level = 0
        while True:
            timeout = inp.review_sla if level < inp.max_escalations else None
            try:
                await workflow.wait_condition(lambda: self._decision is not None, timeout=timeout)
                return self._decision
            except TimeoutError:
                level += 1
                self._progress.escalations = level
                await workflow.execute_activity_method(
                    CatalogActivities.escalate_review, args=[subject_type, subject_id, 1, level], **DB_STEP)

    async def _review_edit(self, inp: ProductReviewInput, edit_id: int) -> ProductProgress:
        """A listed product's content edit: the same checks and support's decision; the product
        stays on sale as it was meanwhile, and after a rejection."""
        check = await workflow.execute_activity_method(ProductEditActivities.check_product_edit, edit_id, **DB_STEP)
        self._progress.problems = check.problems
        if check.problems:
            reason = "automatic checks failed: " + "; ".join(p.message for p in check.problems)
            await workflow.execute_activity_method(
                ProductEditActivities.reject_product_edit, args=[edit_id, reason, None], **DB_STEP)
            self._set_status(ProductStatus.REJECTED)
            return self._progress
        decision = await self._await_decision(inp, "product_edit", edit_id)
        if decision.action == "approve":
            await workflow.execute_activity_method(
                ProductEditActivities.apply_product_edit, args=[edit_id, decision], **DB_STEP)
            self._set_status(ProductStatus.LISTED)
        else:
            await workflow.execute_activity_method(
                ProductEditActivities.reject_product_edit, args=[edit_id, decision.reason, decision.reviewer_user_id],
                **DB_STEP)
            self._set_status(ProductStatus.REJECTED)
        self._decision = None
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    @workflow.update
    async def decide(self, decision: ProductDecision) -> ProductProgress:
        self._decision = decision
        self._progress.decision = decision
        await workflow.wait_condition(lambda: self._decision is None)
        return self._progress

    @decide.validator
    def _validate_decide(self, decision: ProductDecision) -> None:
        status = self._progress.status if self._progress else None
        if self._decision is not None:
            raise ApplicationError("a decision is already being applied", type="ALREADY_DECIDED")
        if status != ProductStatus.PENDING_REVIEW:
            raise ApplicationError(f"product is {status}, not awaiting a decision", type="NOT_AWAITING_DECISION")
        problem = product_decision_problem(decision)
        if problem:
            raise ApplicationError(problem, type="INVALID_DECISION")

    @workflow.query
    def progress(self) -> ProductProgress | None:
        return self._progress

    def _set_status(self, status: ProductStatus) -> None:
        self._progress.status = status
        self._progress.updated_at = workflow.now()
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status.value)])
