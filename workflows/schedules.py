"""Temporal Schedules, and starting a settlement run by hand.

Created (or brought up to date) at worker and `chuchuang dev` start-up, visible under
Schedules in Temporal UI:

* `settlement-supplier-daily`: settings.supplier_settlement_cron (default 02:00 every day)
* `settlement-commission-monthly`: 03:00 on settings.commission_settlement_day (default the 5th)
* `reconciliation-daily`: settings.reconciliation_cron (default 10:30 Beijing time, WeChat Pay's
  own day): yesterday's WeChat Pay bill against the ledger (`reconciliation-{date}`)
* `withdrawals-sweep`: every settings.withdrawal_sweep_every, withdrawals whose workflow never started
* `refunds-sweep`: every settings.refund_sweep_every, buyers' refunds whose workflow never started
* `channels-reconcile`: every settings.channels_reconcile_every, window stats and product status
  from the Channels shop
* `channels-pull`: every settings.channels_pull_every, the shop's changed orders and after-sales
  handed to their `shop-order-{id}` workflows (`ChannelsPullWorkflow`)
* `messages-drain`: every settings.messages_drain_every, the notification outbox's listener for
  that long, sending subscribe messages as they are written (`MessageDrainWorkflow`)
* `dashboard-rollups`: every settings.dashboard_rollup_every, the dashboards' day/week/month
  figures recomputed for the recent periods (`DashboardRollupWorkflow`)

The settlement schedules run in settings.settlement_timezone. Their action starts the run
without a period; the run works out which one from the time it was due (yesterday / last
month) and settles it under the period's own workflow id (`settlement-{kind}-{period}`), the id
an operator's run gets too.
"""

from __future__ import annotations

from typing import Literal

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    WorkflowHandle,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.settlement import CommissionRunInput, SupplierRunInput, run_workflow_id
from domain.withdrawals import PayoutRunInput
from settings import Settings
from domain.search_attributes import BUSINESS_STATUS
from workflows.settlement import CommissionSettlementWorkflow, SupplierSettlementWorkflow
from workflows.channels_pull import PULL_WORKFLOW_ID, ChannelsPullWorkflow
from workflows.channels_sync import ChannelsSyncWorkflow
from workflows.messages import DRAIN_WORKFLOW_ID, MessageDrainWorkflow
from workflows.payouts import SWEEP_WORKFLOW_ID, PayoutWorkflow
from workflows.refund_sweep import SWEEP_WORKFLOW_ID as REFUND_SWEEP_WORKFLOW_ID
from workflows.refund_sweep import RefundSweepWorkflow
from domain.refunds import RefundSweepInput
from domain.reconciliation import WECHATPAY_TIMEZONE, ReconciliationInput
from domain.reconciliation import run_workflow_id as reconciliation_workflow_id
from workflows.reconciliation import ReconciliationWorkflow
from workflows.rollups import ROLLUP_WORKFLOW_ID, DashboardRollupWorkflow, RollupInput

SUPPLIER_SCHEDULE_ID = "settlement-supplier-daily"
COMMISSION_SCHEDULE_ID = "settlement-commission-monthly"
SWEEP_SCHEDULE_ID = "withdrawals-sweep"
REFUND_SWEEP_SCHEDULE_ID = "refunds-sweep"
CHANNELS_RECONCILE_SCHEDULE_ID = "channels-reconcile"
CHANNELS_PULL_SCHEDULE_ID = "channels-pull"
RECONCILIATION_SCHEDULE_ID = "reconciliation-daily"
MESSAGES_DRAIN_SCHEDULE_ID = "messages-drain"
ROLLUP_SCHEDULE_ID = "dashboard-rollups"
log = structlog.get_logger()


def supplier_run_input(settings: Settings, period: str | None = None) -> SupplierRunInput:
    return SupplierRunInput(period=period, timezone=settings.settlement_timezone,
                            delay_days=settings.supplier_settlement_delay_days,
                            max_ratio_bps=settings.profit_sharing_max_ratio_bps,
                            page_size=settings.settlement_batch_size,
                            poll_every=settings.profit_sharing_poll_every)


def commission_run_input(settings: Settings, period: str | None = None) -> CommissionRunInput:
    return CommissionRunInput(period=period, timezone=settings.settlement_timezone,
                              batch_size=settings.settlement_batch_size,
                              batches_per_child=settings.settlement_batches_per_child,
                              review_above_fen=settings.commission_review_above_fen)


def reconciliation_input(settings: Settings, day: str | None = None, attempt: int = 1) -> ReconciliationInput:
    return ReconciliationInput(day=day, attempt=attempt, timezone=WECHATPAY_TIMEZONE,
                               retry_every=settings.reconciliation_bill_retry_every,
                               wait_at_most=settings.reconciliation_bill_wait_at_most)


def refund_sweep_input(settings: Settings) -> RefundSweepInput:
    return RefundSweepInput(stranded_after=settings.refund_stranded_after, timings=settings.refund_timings())


def rollup_input(settings: Settings) -> RollupInput:
    return RollupInput(timezone=settings.settlement_timezone, lookback_days=settings.dashboard_rollup_lookback_days)


def commission_cron(settings: Settings) -> str:
    return f"0 {settings.commission_settlement_hour} {settings.commission_settlement_day} * *"


def schedules(settings: Settings) -> dict[str, Schedule]:
    """What each schedule should be, from settings (pure: no server needed)."""
    def schedule(workflow, arg, wf_id: str, cron: str, note: str) -> Schedule:
        return Schedule(
            action=ScheduleActionStartWorkflow(
                workflow, arg, id=wf_id, task_queue=settings.task_queue,
                typed_search_attributes=TypedSearchAttributes([SearchAttributePair(BUSINESS_STATUS,
                                                                                   "settlement_scheduled")])),
            spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=settings.settlement_timezone),
            # A run waiting on support must not stop the next period's run from starting.
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL,
                                  catchup_window=settings.settlement_catchup_window),
            state=ScheduleState(note=note))

    return {
        SUPPLIER_SCHEDULE_ID: schedule(
            SupplierSettlementWorkflow.run, supplier_run_input(settings), "settlement-supplier-scheduled",
            settings.supplier_settlement_cron,
            f"T+{settings.supplier_settlement_delay_days} supplier settlement (profit sharing), daily"),
        COMMISSION_SCHEDULE_ID: schedule(
            CommissionSettlementWorkflow.run, commission_run_input(settings), "settlement-commission-scheduled",
            commission_cron(settings), "promoters' commission statements for last month"),
        SWEEP_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                PayoutWorkflow.run, PayoutRunInput(stranded_after=settings.withdrawal_stranded_after),
                id=SWEEP_WORKFLOW_ID, task_queue=settings.task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.withdrawal_sweep_every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note="withdrawals whose workflow never started are handed to it")),
        REFUND_SWEEP_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                RefundSweepWorkflow.run, refund_sweep_input(settings),
                id=REFUND_SWEEP_WORKFLOW_ID, task_queue=settings.task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.refund_sweep_every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note="buyers' refunds whose workflow never started are handed to it")),
        RECONCILIATION_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                ReconciliationWorkflow.run, reconciliation_input(settings), id="reconciliation-scheduled",
                task_queue=settings.task_queue,
                typed_search_attributes=TypedSearchAttributes([SearchAttributePair(BUSINESS_STATUS,
                                                                                   "reconciliation_scheduled")])),
            spec=ScheduleSpec(cron_expressions=[settings.reconciliation_cron], time_zone_name=WECHATPAY_TIMEZONE),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL,
                                  catchup_window=settings.settlement_catchup_window),
            state=ScheduleState(note="yesterday's WeChat Pay trade bill against the ledger")),
        CHANNELS_RECONCILE_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(ChannelsSyncWorkflow.run, settings.channels_sync_input("reconcile"),
                                               id="channels-reconcile-run", task_queue=settings.task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.channels_reconcile_every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note="pull window stats and product status/stock from the Channels shop")),
        CHANNELS_PULL_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(ChannelsPullWorkflow.run, settings.channels_pull_input(),
                                               id=PULL_WORKFLOW_ID, task_queue=settings.task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.channels_pull_every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note="orders and after-sales the Channels shop changed, to their workflows")),
        MESSAGES_DRAIN_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(MessageDrainWorkflow.run,
                                               int(settings.messages_drain_every.total_seconds()),
                                               id=DRAIN_WORKFLOW_ID, task_queue=settings.task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.messages_drain_every)]),
            # each run listens for the whole interval: the next one starts as it ends
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE),
            state=ScheduleState(note="send the notification outbox as WeChat subscribe messages")),
        ROLLUP_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(DashboardRollupWorkflow.run, rollup_input(settings),
                                               id=ROLLUP_WORKFLOW_ID, task_queue=settings.task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.dashboard_rollup_every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note="recompute the dashboards' day/week/month figures of the recent periods")),
    }


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create the schedules, or update them to the current settings (idempotent). A server
    without schedules (Temporal's time-skipping test server) gets none: returns []."""
    made: list[str] = []
    for schedule_id, wanted in schedules(settings).items():
        try:
            await client.create_schedule(schedule_id, wanted)
        except ScheduleAlreadyRunningError:
            def keep_state(update_input, wanted=wanted):
                current = update_input.description.schedule
                wanted.state.paused = current.state.paused  # an operator's pause stays
                return ScheduleUpdate(schedule=wanted)

            await client.get_schedule_handle(schedule_id).update(keep_state)
        except RPCError as err:
            if err.status != RPCStatusCode.UNIMPLEMENTED:
                raise
            log.warning("schedules.unsupported", server=settings.resolved_temporal_address)
            return []
        made.append(schedule_id)
    return made


async def start_run(client: Client, settings: Settings, kind: Literal["supplier", "commission"],
                    period: str) -> tuple[WorkflowHandle, bool]:
    """Start the period's run, or find it: (handle, True if this call started it). A run that
    failed or was terminated may be started again; one running or completed is returned."""
    wf_id = run_workflow_id(kind, period)
    workflow, arg = ((SupplierSettlementWorkflow.run, supplier_run_input(settings, period)) if kind == "supplier"
                     else (CommissionSettlementWorkflow.run, commission_run_input(settings, period)))
    try:
        handle = await client.start_workflow(
            workflow, arg, id=wf_id, task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes([SearchAttributePair(BUSINESS_STATUS, "settlement_started")]))
        return handle, True
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(wf_id), False


async def start_reconciliation(client: Client, settings: Settings, day: str,
                               attempt: int = 1) -> tuple[WorkflowHandle, bool]:
    """Start the day's reconciliation (attempt 1: `reconciliation-{day}`; an explicit re-run n:
    `reconciliation-{day}-{n}`), or find it: (handle, True if this call started it). A run
    that failed or was terminated may be started again; one running or completed is returned."""
    wf_id = reconciliation_workflow_id(day, attempt)
    try:
        handle = await client.start_workflow(
            ReconciliationWorkflow.run, reconciliation_input(settings, day, attempt), id=wf_id,
            task_queue=settings.task_queue, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes([SearchAttributePair(BUSINESS_STATUS, "reconciliation_started")]))
        return handle, True
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(wf_id), False


async def resolve_reconciliation_attempt(client: Client, sessions, day: str, rerun: bool) -> int:
    """The attempt `POST /reconciliations/runs` and `chuchuang reconcile` start: see
    `attempt_to_start`; a re-run asked while the latest attempt's workflow has failed or was
    terminated (its report never ended) starts that attempt again. RunInProgress otherwise."""
    import asyncio

    from temporalio.client import WorkflowExecutionStatus

    from activities.reconciliation import RunInProgress, attempt_to_start

    def which() -> int:
        with sessions() as s:
            return attempt_to_start(s, day, rerun)

    try:
        return await asyncio.to_thread(which)
    except RunInProgress as busy:
        try:
            described = await client.get_workflow_handle(busy.workflow_id).describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return busy.attempt
        if described.status == WorkflowExecutionStatus.RUNNING:
            raise
        return busy.attempt
