"""拼团 group buying: a supplier offers a SKU at a group price to groups of `group_size` buyers who
all pay within `time_limit` of the group opening.

A buyer opens a group by ordering at the group price; once the opener has paid, others join
through the shared link until every place is taken. A place is taken in the API's request, under
the group's row lock, before any payment is asked for: a burst of joins on the last place gives
exactly one buyer the place and every other one a clear answer, and nobody else is charged. An
order cancelled unpaid gives its place back.

No commission is booked and no goods leave until the group forms: when every place is paid, each
member's order goes into fulfilment. A group that does not fill in time is refunded, every
member in full and at once (or, with GROUP_PLATFORM_FILL, a group one place short forms as if
the platform took that place: nobody is charged for it and no goods are sent for it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

MIN_SIZE, MAX_SIZE = 2, 50
MIN_TIME_LIMIT = timedelta(minutes=5)
MAX_TIME_LIMIT = timedelta(days=7)


class GroupStatus(StrEnum):
    OPENING = "opening"    # the opener's order is not paid yet: nobody can join
    FORMING = "forming"    # the opener paid: others join until it is full or its time is up
    FORMED = "formed"      # every place paid: the members' orders are fulfilled
    FAILED = "failed"      # not full in time: every paid member refunded
    ABANDONED = "abandoned"  # the opener never paid


class SeatStatus(StrEnum):
    HELD = "held"      # taken, the order not paid yet
    PAID = "paid"
    LEFT = "left"      # the order was cancelled unpaid: the place is free again


TAKEN = (SeatStatus.HELD, SeatStatus.PAID)


class GroupRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class GroupBuyInput(BaseModel):
    group_id: int
    deadline: datetime


class GroupDecision(BaseModel):
    group_id: int
    status: GroupStatus
    members: list[str]  # order numbers of the paid members, told the decision
    platform_filled: bool = False


class GroupJoined(BaseModel):
    """What a member's order learns when its payment is counted."""
    group_id: int
    status: GroupStatus
    deadline: datetime
    opener: bool


def workflow_id(group_id: int) -> str:
    return f"group-{group_id}"


def group_refund_no(order_no: str) -> str:
    return f"RG{order_no}"


def check_new_deal(*, group_price_fen: int, list_price_fen: int, group_size: int, time_limit: timedelta,
                   starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    if not 0 < group_price_fen < list_price_fen:
        raise GroupRefused("PRICE_NOT_LOWER", f"a group price must be above 0 and below the SKU's {list_price_fen} fen")
    if not MIN_SIZE <= group_size <= MAX_SIZE:
        raise GroupRefused("BAD_GROUP_SIZE", f"a group has between {MIN_SIZE} and {MAX_SIZE} members")
    if not MIN_TIME_LIMIT <= time_limit <= MAX_TIME_LIMIT:
        raise GroupRefused("BAD_TIME_LIMIT", f"a group's time limit is between {MIN_TIME_LIMIT} and {MAX_TIME_LIMIT}")
    if ends_at <= max(starts_at, now):
        raise GroupRefused("ENDS_TOO_EARLY", "a group deal must end after it starts, in the future")


def why_not_join(*, status: str, deadline: datetime | None, now: datetime, taken: int, size: int,
                 member: bool) -> GroupRefused | None:
    """Why a buyer cannot take a place in the group now, or None."""
    if member:
        return GroupRefused("GROUP_ALREADY_JOINED", "you have a place in this group already")
    if status == GroupStatus.OPENING:
        return GroupRefused("GROUP_NOT_OPEN", "the group opens once its opener has paid")
    if status != GroupStatus.FORMING or (deadline is not None and now >= deadline):
        return GroupRefused("GROUP_ENDED", "this group has ended; open a new one")
    if taken >= size:
        return GroupRefused("GROUP_FULL", f"all {size} places are taken")
    return None


def decide(*, paid: int, size: int, deadline_passed: bool, platform_fill: bool) -> tuple[GroupStatus, bool] | None:
    """The group's fate, with whether the platform took the last place; None while it may still fill."""
    if paid >= size:
        return GroupStatus.FORMED, False
    if not deadline_passed:
        return None
    if platform_fill and paid == size - 1:
        return GroupStatus.FORMED, True
    return GroupStatus.FAILED, False
