"""FlashSaleWorkflow (`flash-sale-{id}`): a flash sale's end.

    started when the supplier creates the sale (its units already set aside from the SKU)
    → wait until it ends (buyers claim units through the API meanwhile, no workflow involved)
    → give back claims whose order was never placed, return every unsold unit to the SKU's stock
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.options import DB_STEP

with workflow.unsafe.imports_passed_through():
    from activities.flash_sales import FlashSaleActivities
    from domain.flash_sales import FlashSaleInput


@workflow.defn(name="FlashSaleWorkflow")
class FlashSaleWorkflow:
    @workflow.run
    async def run(self, inp: FlashSaleInput) -> int:
        left = inp.ends_at - workflow.now()
        if left > timedelta(0):
            await workflow.sleep(left, summary="flash sale ends")
        return await workflow.execute_activity_method(
            FlashSaleActivities.end_flash_sale, inp.flash_sale_id, **DB_STEP)
