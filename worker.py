"""The one worker entry: registers every workflow and activity on the task queue."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import structlog
from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import channels_outbox
from activities.bonuses import BonusActivities
from activities.catalog import CatalogActivities
from activities.channels_delivery import ChannelsDeliveryActivities
from activities.channels_inbound import ChannelsInboundActivities
from activities.channels_sync import ChannelsSyncActivities
from activities.flash_sales import FlashSaleActivities
from activities.group_buy import GroupActivities
from activities.product_edits import ProductEditActivities
from activities.logistics import LogisticsActivities
from activities.messages import MessageActivities
from activities.orders import FulfilmentAlerts, OrderActivities
from activities.payments import PaymentActivities
from activities.payouts import PayoutActivities
from activities.pickup import PickupActivities
from activities.presale import PresaleActivities
from activities.promoters import PromoterActivities
from activities.reconciliation import ReconciliationActivities
from activities.refunds import RefundActivities
from activities.rollups import RollupActivities
from activities.settlement import SettlementActivities
from activities.split_returns import SplitReturnActivities
from activities.withdrawals import WithdrawalActivities
from db.session import session_factory
from domain.messages import MessageTemplates
from integrations.channels import ChannelsClient
from integrations.http import close_shared_clients
from integrations.messages import MessagesClient
from integrations.production import refuse_unsafe_defaults
from integrations.temporal import connect, ensure_search_attributes
from integrations.wechatpay import WeChatPayClient, WeChatPayConfig
from settings import Settings, get_settings
from workflows.channels_pull import ChannelsPullWorkflow
from workflows.channels_sync import ChannelsSyncWorkflow, wake_channels_sync
from workflows.flash_sale import FlashSaleWorkflow
from workflows.group_buy import GroupBuyWorkflow
from workflows.messages import MessageDrainWorkflow
from workflows.rollups import DashboardRollupWorkflow
from workflows.order import OrderWorkflow
from workflows.payouts import PayoutWorkflow
from workflows.product import ProductReviewWorkflow
from workflows.promoter_lifecycle import PromoterLifecycleWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.refund import RefundWorkflow
from workflows.refund_sweep import RefundSweepWorkflow
from workflows.revival import RevivalWorkflow
from workflows.schedules import ensure_schedules
from workflows.shop_order import ShopOrderWorkflow
from workflows.settlement import (
    CommissionSettlementWorkflow,
    CommissionStatementBatchesWorkflow,
    SupplierSettlementWorkflow,
)
from workflows.supplier import SupplierOnboardingWorkflow
from workflows.withdrawal import WithdrawalWorkflow

WORKFLOWS = [OrderWorkflow, RefundWorkflow, PromoterLifecycleWorkflow, RevivalWorkflow, SupplierOnboardingWorkflow,
             ProductReviewWorkflow, ChannelsSyncWorkflow, WithdrawalWorkflow, PayoutWorkflow,
             SupplierSettlementWorkflow, CommissionSettlementWorkflow, CommissionStatementBatchesWorkflow,
             ReconciliationWorkflow, MessageDrainWorkflow, FlashSaleWorkflow, RefundSweepWorkflow, DashboardRollupWorkflow,
             ShopOrderWorkflow, ChannelsPullWorkflow, GroupBuyWorkflow]
log = structlog.get_logger()


def activities(settings: Settings, sessions=None, pay: WeChatPayClient | None = None) -> list:
    sessions = sessions or session_factory(settings)
    pay = pay or WeChatPayClient(WeChatPayConfig.from_settings(settings))
    channels = ChannelsClient.from_settings(settings)
    orders = OrderActivities(sessions, settings.commission_policy(), settings.risk_rules,
                             level_period=settings.level_period, tier_ceiling=lambda: settings.commission_tiers)
    payments = PaymentActivities(sessions, pay)
    logistics = LogisticsActivities(settings, sessions)
    promoters = PromoterActivities(sessions)
    refunds = RefundActivities(sessions, pay, settings.refund_rules)
    pickup = PickupActivities(sessions, settings.resolved_pickup_code_key)  # issues with the key in force
    return [
        orders.place_order, orders.cancel_unpaid, orders.record_payment, orders.record_shipment,
        orders.record_tracking, orders.mark_received, orders.complete_order, orders.book_group_commission,
        FulfilmentAlerts(sessions).shipment_overdue,
        payments.create_payment, payments.query_payment, payments.verify_payment, payments.close_payment,
        refunds.open_system_refund, refunds.open_late_payment_refund, refunds.set_refund_status,
        refunds.record_return_parcel, refunds.close_refund, refunds.request_refund, refunds.query_refund,
        refunds.complete_refund, refunds.open_compensation_refund, refunds.stranded_refunds,
        refunds.mark_refunds_started, refunds.start_refund_review, refunds.record_refund_review,
        pickup.issue_pickup_code, pickup.record_pickup,
        logistics.subscribe_tracking, logistics.poll_tracking,
        promoters.promoter_status, promoters.count_sales, promoters.assess_cycle, promoters.remind,
        promoters.mark_left, promoters.open_revival, promoters.resolve_revival,
        *CatalogActivities(sessions, pay, channels).all(),
        *ChannelsSyncActivities(sessions, channels).all(),
        *ChannelsInboundActivities(sessions, channels, settings.refund_rules,
                                   settings.resolved_channels_return_address_id).all(),
        *presale_and_messages(settings, sessions, orders, payments, channels),
        *BonusActivities(sessions, settings.level_period, tier_ceiling=lambda: settings.commission_tiers).all(),
        *WithdrawalActivities(sessions, pay).all(),
        *PayoutActivities(sessions, settings.withdrawal_rules, settings.withdrawal_timings(),
                          settings.settlement_timezone).all(),
        *SettlementActivities(sessions, pay).all(),
        *SplitReturnActivities(sessions, pay).all(),
        *ReconciliationActivities(sessions, pay).all(),
        *FlashSaleActivities(sessions).all(),
        *GroupActivities(sessions, lambda: settings.group_platform_fill).all(),
        *ProductEditActivities(sessions).all(),
        *RollupActivities(sessions).all(),
    ]


def presale_and_messages(settings: Settings, sessions, orders: OrderActivities, payments: PaymentActivities,
                         channels_client: ChannelsClient) -> list:
    presale = PresaleActivities(sessions, orders)
    templates = MessageTemplates(order_status=settings.message_template_order_status,
                                 presale_balance=settings.message_template_presale_balance,
                                 refund=settings.message_template_refund, general=settings.message_template_general,
                                 promoter=settings.message_template_promoter,
                                 supplier=settings.message_template_supplier)
    messages = MessageActivities(sessions, MessagesClient.from_settings(settings), templates,
                                 resend_after=settings.message_resend_after, tz=settings.settlement_timezone)
    channels = ChannelsDeliveryActivities(sessions, channels_client)
    return [payments.create_part_payment, presale.record_deposit, presale.open_balance, presale.record_balance,
            presale.lapse_presale, messages.deliver_messages, messages.send_as_written, channels.send_channels_delivery]


# Our workflow modules are loaded once, not again in a fresh sandbox for every run: re-importing
# workflows/order.py and its paths took about a tenth of the worker's CPU (py-spy --gil over
# bench/order_pipeline.py). They hold no mutable module state, and the sandbox's runtime checks
# (clock, randomness, I/O) still apply to their code; the replay tests run the strict default
# sandbox over every recorded history.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows"))


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor, **overrides) -> Worker:
    try:  # outbox commits in this process wake `channels-sync` through this client
        channels_outbox.install(lambda: wake_channels_sync(client, settings))
    except RuntimeError:  # no running event loop: nothing to wake with
        pass
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        activities=activities(settings, **overrides),
        activity_executor=executor,
        max_concurrent_activities=executor._max_workers,
    )


def serve_metrics(settings: Settings):
    """The worker's own counters (reconciliation differences, runs...) live in this process,
    not the API's: they are served on a port of their own for Prometheus to scrape."""
    if not settings.worker_metrics_port:
        return None
    try:
        server, _ = start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    except OSError as err:  # a second worker on one host: it keeps working, unscraped
        log.warning("worker.metrics_unavailable", port=settings.worker_metrics_port, error=str(err))
        return None
    log.info("worker.metrics", url=f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics")
    return server


async def run_worker(settings: Settings) -> None:
    refuse_unsafe_defaults(settings)
    client = await connect(settings)
    await ensure_search_attributes(client)
    await ensure_schedules(client, settings)
    await wake_channels_sync(client, settings)  # drains what was left pending
    serve_metrics(settings)
    with ThreadPoolExecutor(max_workers=64) as executor:
        worker = build_worker(client, settings, executor)
        log.info("worker.started", task_queue=settings.task_queue,
                 temporal=settings.resolved_temporal_address)
        try:
            await worker.run()
        finally:
            await close_shared_clients()


def main() -> None:
    asyncio.run(run_worker(get_settings()))


if __name__ == "__main__":
    main()
