"""What an OrderWorkflow is started with: the order and every period it waits on (all settings)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from domain.orders import PaymentNotice, PlaceOrderInput
from domain.refunds import RefundTimings


class OrderTimings(BaseModel):
    payment_timeout: timedelta
    auto_confirm_after: timedelta
    refund_window: timedelta
    pickup_code_valid: timedelta = timedelta(days=7)
    shipment_sla: timedelta = timedelta(hours=48)
    tracking_poll_every: timedelta = timedelta(hours=6)
    # WeChat Pay's prepay_id lives 2 hours; past this the payment parameters are created afresh
    prepay_valid_for: timedelta = timedelta(minutes=110)
    receipt_extension: timedelta = timedelta(days=5)      # the buyer may push auto-confirm back once
    step_give_up_after: timedelta = timedelta(hours=1)    # a step after payment failing this long: compensate
    refunds: RefundTimings = RefundTimings(return_ship_timeout=timedelta(days=7),
                                           return_receipt_timeout=timedelta(days=10),
                                           refund_poll_every=timedelta(minutes=10))


class OrderWorkflowInput(BaseModel):
    order: PlaceOrderInput
    timings: OrderTimings
    # an order paid in the Channels shop: its payment, as the shop reported it (no WeChat Pay order)
    shop_payment: PaymentNotice | None = None
