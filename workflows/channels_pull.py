"""ChannelsPullWorkflow (`channels-pull`, run by the schedule of that name): the shop's orders and
after-sales changed since the last pull (less a lookback, for late updates), each handed to its
ShopOrderWorkflow. A push the shop lost is found here; one it did send changes nothing twice,
since every shop order workflow reads the shop's own state."""

from __future__ import annotations

from temporalio import workflow

from workflows.options import DB_STEP, PARTNER_CALL

with workflow.unsafe.imports_passed_through():
    from activities.channels_inbound import ChannelsInboundActivities
    from domain.channels_inbound import ChannelsPullInput, ChannelsPullProgress

PULL_WORKFLOW_ID = "channels-pull"


@workflow.defn(name="ChannelsPullWorkflow")
class ChannelsPullWorkflow:
    def __init__(self) -> None:
        self._progress = ChannelsPullProgress()

    @workflow.run
    async def run(self, inp: ChannelsPullInput) -> ChannelsPullProgress:
        events = await workflow.execute_activity_method(
            ChannelsInboundActivities.pull_shop_changes, int(inp.lookback.total_seconds()), **PARTNER_CALL)
        self._progress.orders = len({e.order_id for e in events if not e.after_sale_order_id})
        self._progress.aftersales = len({e.after_sale_order_id for e in events if e.after_sale_order_id})
        self._progress.new_events = len(events)
        if events:
            await workflow.execute_activity_method(
                ChannelsInboundActivities.wake_shop_orders, args=[events, inp.order_timings, inp.linger], **DB_STEP)
        return self._progress

    @workflow.query
    def progress(self) -> ChannelsPullProgress:
        return self._progress
