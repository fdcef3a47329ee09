"""ChannelsSyncWorkflow: keeps the Channels shop (视频号小店) and promoters' Channels windows in
line with ours, from the transactional outbox (`channels_outbox`).

    channels-sync (singleton, signal-with-start `wake` after every commit that wrote outbox rows)
        drain the outbox in batches until nothing is claimable
        wait for the next wake (no timer: an idle sync costs nothing)
        continue-as-new after `wakes_per_run` wakes, or when Temporal suggests it
    channels-reconcile (Schedule, every CHANNELS_RECONCILE_EVERY; mode "reconcile")
        pull product status/stock and window stats from the shop: a product the shop reports
        off sale or in violation leaves every window (promoters and supplier told); window items
        the shop lost are queued again; then sweep the outbox
"""

from __future__ import annotations

from datetime import timedelta

from typing import TYPE_CHECKING

from temporalio import workflow

from workflows.options import PARTNER_CALL

with workflow.unsafe.imports_passed_through():
    from activities.channels_sync import ChannelsSyncActivities
    from domain.channels import ChannelsSyncInput, ChannelsSyncState

if TYPE_CHECKING:
    from temporalio.client import Client

    from settings import Settings

WORKFLOW_ID = "channels-sync"
RECONCILE = dict(PARTNER_CALL, start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=timedelta(minutes=2))
DRAIN = dict(PARTNER_CALL, start_to_close_timeout=timedelta(minutes=2))


@workflow.defn(name="ChannelsSyncWorkflow")
class ChannelsSyncWorkflow:
    def __init__(self) -> None:
        self._wakes = 0
        self._state = ChannelsSyncState()

    @workflow.run
    async def run(self, inp: ChannelsSyncInput) -> ChannelsSyncState:
        self._state = inp.state.model_copy()
        if inp.mode == "reconcile":
            await workflow.execute_activity_method(ChannelsSyncActivities.reconcile_shop, **RECONCILE)
            self._state.reconciles += 1
            await self._drain(inp)
            return self._state
        handled = 0
        while True:
            self._wakes = 0
            await self._drain(inp)
            if handled >= inp.wakes_per_run or workflow.info().is_continue_as_new_suggested():
                break
            await workflow.wait_condition(lambda: self._wakes > 0)
            handled += 1
            self._state.wakes += 1
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(inp.model_copy(update={"state": self._state}))

    async def _drain(self, inp: ChannelsSyncInput) -> None:
        while True:
            result = await workflow.execute_activity_method(
                ChannelsSyncActivities.drain_outbox, args=[inp.batch_size, inp.lease_seconds], **DRAIN)
            self._state.applied += result.applied
            self._state.failed += result.failed
            self._state.drains += 1
            self._state.last_drain_at = workflow.now()
            if not result.more:
                return

    @workflow.signal
    def wake(self) -> None:
        """New outbox rows were committed."""
        self._wakes += 1

    @workflow.query
    def progress(self) -> ChannelsSyncState:
        return self._state


async def wake_channels_sync(client: Client, settings: Settings) -> None:
    """Signal-with-start the singleton `channels-sync` workflow (from the API and the worker)."""
    await client.start_workflow(ChannelsSyncWorkflow.run, settings.channels_sync_input(), id=WORKFLOW_ID,
                                task_queue=settings.task_queue, start_signal="wake")
