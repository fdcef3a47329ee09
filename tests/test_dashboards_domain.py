"""The dashboards' pure rules: periods in the settlement time zone, derived figures, 环比, alerts."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from domain.dashboards import (
    Grain,
    alerts,
    bounds,
    change_bps,
    derived,
    last_periods,
    period_end,
    period_start,
    previous_start,
)


def test_periods():
    d = date(2026, 12, 3)  # a Thursday
    assert period_start(d, Grain.DAY) == d
    assert period_start(d, Grain.WEEK) == date(2026, 11, 30)
    assert period_start(d, Grain.MONTH) == date(2026, 12, 1)
    assert period_end(date(2026, 12, 1), Grain.MONTH) == date(2027, 1, 1)
    assert period_end(date(2026, 2, 1), Grain.MONTH) == date(2026, 3, 1)
    assert previous_start(date(2026, 1, 1), Grain.MONTH) == date(2025, 12, 1)
    assert last_periods(d, Grain.WEEK, 3) == [date(2026, 11, 16), date(2026, 11, 23), date(2026, 11, 30)]
    since, until = bounds(date(2026, 11, 1), Grain.DAY, "Asia/Shanghai")
    assert since == datetime(2026, 10, 31, 16, tzinfo=ZoneInfo("UTC")) and (until - since).days == 1


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.sampled_from(list(Grain)))
def test_every_day_lies_in_exactly_its_period(d, grain):
    start = period_start(d, grain)
    assert start <= d < period_end(start, grain)
    assert period_end(previous_start(start, grain), grain) == start


def test_derived_change_and_alert():
    row = {"gmv_fen": 10_000, "paid_orders": 3, "paying_buyers": 5, "repeat_buyers": 1, "refund_fen": 2_500,
           "exposures": 0}
    assert derived(row) == {"aov_fen": 3_333, "refund_rate_bps": 2_500, "conversion_bps": None, "repeat_rate_bps": 2_000}
    assert change_bps(150, 100) == 5_000 and change_bps(50, 100) == -5_000
    assert change_bps(10, 0) is None and change_bps(None, 5) is None
    assert [a.code for a in alerts(row, 4_000)] == ["REPEAT_RATE_LOW"]
    assert alerts(row, 2_000) == []
    assert alerts(row | {"paying_buyers": 0}, 4_000) == []   # no buyers: nothing to alert on
