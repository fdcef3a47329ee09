"""Types of the Channels shop sync (ChannelsSyncWorkflow and its activities). No I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

# What the drain leaves at the shop for a window item.
PRESENT, HIDDEN, ABSENT = "present", "hidden", "absent"
# Shop product statuses (视频号小店 product status) that mean "found in violation".
SHOP_VIOLATION_STATUSES = (13, 20)  # 违规下架, 封禁
SHOP_ON_SALE = 5
SHOP_DELISTED = 11


class ChannelsSyncState(BaseModel):
    """Totals carried across continue-as-new, for the query and Temporal UI."""

    applied: int = 0
    failed: int = 0
    drains: int = 0
    wakes: int = 0
    reconciles: int = 0
    last_drain_at: datetime | None = None


class ChannelsSyncInput(BaseModel):
    mode: Literal["drain", "reconcile"] = Field(
        default="drain", description="drain: the singleton `channels-sync`; reconcile: one scheduled pass")
    batch_size: int = Field(default=20, ge=1, le=500)
    lease_seconds: int = Field(default=120, ge=5)
    wakes_per_run: int = Field(default=200, ge=1, description="continue-as-new after this many wakes")
    state: ChannelsSyncState = Field(default_factory=ChannelsSyncState)


class DrainResult(BaseModel):
    applied: int = 0
    failed: int = 0
    more: bool = False


class ReconcileResult(BaseModel):
    products_checked: int = 0
    products_taken_off: int = 0
    window_items_checked: int = 0
    window_items_requeued: int = 0
