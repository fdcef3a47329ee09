"""The one worker entry: registers every workflow and activity on the task queue."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from chuchuang.activities.catalog import CatalogActivities
from chuchuang.integrations.channels import ChannelsClient
from chuchuang.activities.logistics import LogisticsActivities
from chuchuang.activities.orders import FulfilmentAlerts, OrderActivities
from chuchuang.activities.pickup import PickupActivities
from chuchuang.activities.refunds import RefundActivities
from chuchuang.activities.payments import PaymentActivities
from chuchuang.activities.promoters import PromoterActivities
from chuchuang.activities.settlement import SettlementActivities
from chuchuang.activities.split_returns import SplitReturnActivities
from chuchuang.activities.withdrawals import WithdrawalActivities
from chuchuang.db.session import session_factory
from chuchuang.domain.commission import CommissionPolicy
from chuchuang.integrations.wechatpay import WeChatPayClient, WeChatPayConfig
from chuchuang.settings import Settings
from chuchuang.workflows.order import OrderWorkflow
from chuchuang.workflows.refund import RefundWorkflow
from chuchuang.workflows.promoter_lifecycle import PromoterLifecycleWorkflow
from chuchuang.workflows.revival import RevivalWorkflow
from chuchuang.workflows.product import ProductReviewWorkflow
from chuchuang.workflows.supplier import SupplierOnboardingWorkflow
from chuchuang.workflows.settlement import (
    CommissionSettlementWorkflow,
    CommissionStatementBatchesWorkflow,
    SupplierSettlementWorkflow,
)
from chuchuang.workflows.withdrawal import WithdrawalWorkflow

WORKFLOWS = [OrderWorkflow, RefundWorkflow, PromoterLifecycleWorkflow, RevivalWorkflow, SupplierOnboardingWorkflow,
             ProductReviewWorkflow, WithdrawalWorkflow, SupplierSettlementWorkflow, CommissionSettlementWorkflow,
             CommissionStatementBatchesWorkflow]
log = structlog.get_logger()


def commission_policy(settings: Settings) -> CommissionPolicy:
    return CommissionPolicy(tiers=settings.commission_tiers,
                            tier_rates_bps=tuple(settings.commission_tier_rates_bps))


def activities(settings: Settings, sessions=None, pay: WeChatPayClient | None = None) -> list:
    sessions = sessions or session_factory(settings)
    pay = pay or WeChatPayClient(WeChatPayConfig.from_settings(settings))
    orders = OrderActivities(sessions, commission_policy(settings), settings.risk_rules)
    payments = PaymentActivities(sessions, pay)
    logistics = LogisticsActivities(settings)
    promoters = PromoterActivities(sessions)
    refunds = RefundActivities(sessions, pay, settings.refund_rules)
    pickup = PickupActivities(sessions, settings.resolved_pickup_code_key)
    return [
        orders.place_order, orders.cancel_unpaid, orders.record_payment, orders.record_shipment,
        orders.record_tracking, orders.mark_received, orders.complete_order,
        FulfilmentAlerts(sessions).shipment_overdue,
        payments.create_payment, payments.query_payment, payments.close_payment,
        refunds.open_system_refund, refunds.open_late_payment_refund, refunds.set_refund_status,
        refunds.record_return_parcel, refunds.close_refund, refunds.request_refund, refunds.query_refund,
        refunds.complete_refund,
        pickup.issue_pickup_code, pickup.record_pickup,
        logistics.subscribe_tracking, logistics.poll_tracking,
        promoters.promoter_status, promoters.count_sales, promoters.assess_cycle, promoters.remind,
        promoters.mark_left, promoters.open_revival, promoters.resolve_revival,
        *CatalogActivities(sessions, pay, ChannelsClient.from_settings(settings)).all(),
        *WithdrawalActivities(sessions, pay).all(),
        *SettlementActivities(sessions, pay).all(),
        *SplitReturnActivities(sessions, pay).all(),
    ]


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor, **overrides) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities(settings, **overrides),
        activity_executor=executor,
        max_concurrent_activities=executor._max_workers,
    )


async def run_worker(settings: Settings) -> None:
    from chuchuang.temporal import connect, ensure_search_attributes

    client = await connect(settings)
    await ensure_search_attributes(client)
    from chuchuang.schedules import ensure_schedules

    await ensure_schedules(client, settings)
    with ThreadPoolExecutor(max_workers=64) as executor:
        worker = build_worker(client, settings, executor)
        log.info("worker.started", task_queue=settings.task_queue,
                 temporal=settings.resolved_temporal_address)
        await worker.run()


def main() -> None:
    from chuchuang.settings import get_settings

    asyncio.run(run_worker(get_settings()))


if __name__ == "__main__":
    main()
