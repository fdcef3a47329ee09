"""Recorded histories must replay against today's workflow code: a change that would break
workflows already running in production fails here. Re-record (after a deliberate, versioned
change) with `CHUCHUANG_RECORD_HISTORIES=1 make test PYTEST_ARGS="tests/test_order_flow.py tests/test_refunds.py"`."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker import WORKFLOWS
from tests.helpers import HISTORIES, replay_converter

RECORDED = sorted(HISTORIES.glob("*.json"))


def test_histories_are_recorded():
    assert {p.stem for p in RECORDED} >= {
        "order_delivered_auto_confirmed", "order_buyer_confirmed", "order_payment_timed_out",
        "order_paid_after_lost_notification",
        "promoter_cycle_failed_paused", "promoter_lapsed_then_revived",
        "revival_approved_by_support", "revival_by_sales", "revival_expired",
        "supplier_approved", "supplier_more_info_then_rejected", "supplier_more_info_expired",
        "supplier_auto_rejected", "product_listed", "product_rejected", "product_auto_rejected",
        "order_refunded_before_shipment", "order_picked_up", "order_pickup_expired", "order_presale",
        "refund_before_shipment", "refund_return_after_delivery", "refund_rejected_by_support",
        "refund_late_payment", "refund_after_split_returned",
        "withdrawal_paid", "withdrawal_cancelled_unconfirmed", "withdrawal_rejected",
        "payouts_after_statement", "payouts_sweep",
        "settlement_supplier_day", "settlement_supplier_faults", "settlement_supplier_scheduled",
        "settlement_commission_reviewed", "settlement_commission_team_bonus", "settlement_commission_batches", "settlement_commission_scheduled", "channels_sync", "channels_sync_reconcile",
        "reconciliation_clean", "reconciliation_differences", "reconciliation_bill_retried",
        "reconciliation_scheduled", "messages_drain", "flash_sale_ended", "order_prepay_refreshed", "order_paid_encrypted_payloads",
        "refund_sweep", "order_completed_after_swept_refund", "refund_review_auto_approved",
        "refund_quality_claim_rejected", "order_completed_by_ship_clock", "order_payment_not_kept",
        "order_forged_payment_ignored", "refund_late_payment_forged", "dashboard_rollups",
        "order_paid_in_channels_shop", "shop_order_confirmed", "refund_channels_aftersale", "channels_pull",
        "group_buy_formed", "group_buy_failed", "order_group_failed_refunded",
        "product_edit_approved", "product_edit_auto_rejected", "messages_listener",
        "order_completed_messages_by_listener"}


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_recorded_history_replays(path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=replay_converter())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_an_encrypted_history_does_not_replay_without_its_key():
    """The recorded payloads really are sealed: another key cannot read them."""
    from integrations.temporal import data_converter
    from settings import Settings

    path = HISTORIES / "order_paid_encrypted_payloads.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    stranger = data_converter(Settings(_env_file=None, master_key="another-master-key-another-master-key-0123"))
    with pytest.raises(Exception, match="unknown key id"):
        await Replayer(workflows=WORKFLOWS, data_converter=stranger).replay_workflow(history)
