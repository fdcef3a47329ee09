"""Dashboard rules: the periods figures are kept for (day, ISO week, month in the settlement
time zone), the figures derived from the stored ones, period-over-period change, and the
repeat-purchase alert. Pure: no I/O."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel


class Grain(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Dim(StrEnum):
    ALL = "all"
    SUPPLIER = "supplier"
    CATEGORY = "category"
    PRODUCT = "product"
    PROVINCE = "province"
    CITY = "city"
    PROMOTER = "promoter"
    TIER = "tier"


DIM_LABELS = {Dim.ALL: "全平台", Dim.SUPPLIER: "供应商", Dim.CATEGORY: "类目", Dim.PRODUCT: "商品",
              Dim.PROVINCE: "省份", Dim.CITY: "城市", Dim.PROMOTER: "推客", Dim.TIER: "佣金层级"}
GRAIN_LABELS = {Grain.DAY: "日", Grain.WEEK: "周", Grain.MONTH: "月"}

# stored measures (rollup_facts columns), in the order tables and CSV files show them
MEASURES = ("gmv_fen", "paid_orders", "paying_buyers", "repeat_buyers", "units", "refund_fen",
            "refunded_orders", "commission_fen", "exposures", "clicks", "new_promoters", "active_promoters")
# derived from the stored ones (basis points and fen, integers)
DERIVED = ("aov_fen", "refund_rate_bps", "conversion_bps", "repeat_rate_bps")
LABELS = {
    "gmv_fen": "GMV(分)", "paid_orders": "支付订单数", "paying_buyers": "支付买家数", "repeat_buyers": "复购买家数",
    "units": "件数", "refund_fen": "退款金额(分)", "refunded_orders": "退款订单数", "commission_fen": "佣金(分)",
    "exposures": "曝光", "clicks": "点击", "new_promoters": "新增推客", "active_promoters": "活跃推客",
    "aov_fen": "客单价(分)", "refund_rate_bps": "退款率(基点)", "conversion_bps": "曝光→下单转化(基点)",
    "repeat_rate_bps": "复购率(基点)",
}
TIER_LABELS = {"0": "区域奖励", "1": "一级佣金", "2": "二级佣金", "3": "三级佣金"}


def period_start(day: date, grain: Grain) -> date:
    if grain == Grain.DAY:
        return day
    if grain == Grain.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(start: date, grain: Grain) -> date:
    """The first day after the period."""
    if grain == Grain.DAY:
        return start + timedelta(days=1)
    if grain == Grain.WEEK:
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def previous_start(start: date, grain: Grain) -> date:
    return period_start(start - timedelta(days=1), grain)


def last_periods(today: date, grain: Grain, count: int) -> list[date]:
    """The `count` periods ending with today's, oldest first."""
    starts = [period_start(today, grain)]
    while len(starts) < count:
        starts.append(previous_start(starts[-1], grain))
    return starts[::-1]


def bounds(start: date, grain: Grain, tz: str) -> tuple[datetime, datetime]:
    """The period as instants: local midnight to local midnight in `tz`."""
    zone = ZoneInfo(tz)
    return (datetime.combine(start, time(), zone), datetime.combine(period_end(start, grain), time(), zone))


def periods_touched(days: list[date]) -> set[tuple[Grain, date]]:
    """Every (grain, start) a change on one of these days can alter."""
    return {(grain, period_start(d, grain)) for d in days for grain in Grain}


def ratio_bps(part: int, whole: int) -> int | None:
    return None if whole <= 0 else part * 10_000 // whole


def derived(row: dict) -> dict:
    """The figures computed from the stored ones (None when their base is zero)."""
    return {
        "aov_fen": row["gmv_fen"] // row["paid_orders"] if row["paid_orders"] else None,
        "refund_rate_bps": ratio_bps(row["refund_fen"], row["gmv_fen"]),
        "conversion_bps": ratio_bps(row["paid_orders"], row["exposures"]),
        "repeat_rate_bps": ratio_bps(row["repeat_buyers"], row["paying_buyers"]),
    }


def change_bps(current: int | None, previous: int | None) -> int | None:
    """Period-over-period change (环比) in basis points; None with nothing to compare to."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) * 10_000 // abs(previous)


class Alert(BaseModel):
    code: str
    message: str


def alerts(row: dict, repeat_rate_alert_bps: int) -> list[Alert]:
    rate = derived(row)["repeat_rate_bps"]
    if rate is not None and rate < repeat_rate_alert_bps:
        return [Alert(code="REPEAT_RATE_LOW",
                      message=f"复购率 {rate / 100:.2f}% 低于预警线 {repeat_rate_alert_bps / 100:.2f}%")]
    return []


def yuan(fen: int | None) -> str:
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def percent(bps: int | None) -> str:
    return "—" if bps is None else f"{bps / 100:.2f}%"
