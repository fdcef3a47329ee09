"""Settlement rules without I/O: periods in the settlement time zone, WeChat Pay's split cap
(a split never exceeds the cap or the supplier's share, and nothing is lost), bill and statement
arithmetic, and the schedules built from settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings as hyp_settings
from hypothesis import strategies as st

from domain.refunds import remaining_share, share_of
from domain.settlement import (
    LedgerSums,
    PeriodError,
    SupplierShare,
    allocate_splits,
    check_period,
    commission_period_at,
    day_bounds,
    line_figures,
    month_bounds,
    parse_period,
    run_workflow_id,
    split_cap,
    split_ledger_key,
    split_out_order_no,
    split_room,
    statement_figures,
    supplier_period_at,
    unfreeze_out_order_no,
)

TZ = "Asia/Shanghai"
fen = st.integers(min_value=0, max_value=10**12)
bps = st.integers(min_value=0, max_value=10_000)


# --- periods ---------------------------------------------------------------------------------
def test_supplier_period_is_yesterday_in_shanghai():
    # 2026-10-04 15:59 UTC is 23:59 in Shanghai; a minute later it is the 5th there
    assert supplier_period_at(datetime(2026, 10, 4, 15, 59, tzinfo=UTC), TZ) == "2026-10-03"
    assert supplier_period_at(datetime(2026, 10, 4, 16, 0, tzinfo=UTC), TZ) == "2026-10-04"
    assert supplier_period_at(datetime(2026, 10, 4, 18, 0, tzinfo=UTC), TZ, delay_days=2) == "2026-10-03"
    assert supplier_period_at(datetime(2026, 1, 1, 2, 0, tzinfo=UTC), TZ) == "2025-12-31"


def test_commission_period_is_last_month_in_shanghai():
    assert commission_period_at(datetime(2026, 11, 4, 19, 0, tzinfo=UTC), TZ) == "2026-10"   # 5th 03:00
    assert commission_period_at(datetime(2026, 1, 4, 19, 0, tzinfo=UTC), TZ) == "2025-12"
    # 31 Oct 17:00 UTC is already 1 Nov in Shanghai
    assert commission_period_at(datetime(2026, 10, 31, 17, 0, tzinfo=UTC), TZ) == "2026-10"
    assert commission_period_at(datetime(2026, 10, 31, 15, 0, tzinfo=UTC), TZ) == "2026-09"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_the_settled_period_has_ended_when_the_run_is_due(moment):
    day, month = supplier_period_at(moment, TZ), commission_period_at(moment, TZ)
    assert day_bounds(day, TZ)[1] <= moment < day_bounds(day, TZ)[1] + timedelta(days=1)
    start, end = month_bounds(month, TZ)
    assert start < end <= moment < month_bounds(commission_period_at(moment + timedelta(days=32), TZ), TZ)[1]


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_days_and_months_tile_time(d):
    start, end = day_bounds(d.isoformat(), TZ)
    assert end == day_bounds((d + timedelta(days=1)).isoformat(), TZ)[0]
    assert end - start == timedelta(days=1)  # no daylight saving in Asia/Shanghai
    m_start, m_end = month_bounds(f"{d.year:04d}-{d.month:02d}", TZ)
    assert m_start <= start < m_end
    nxt = m_end.date()
    assert month_bounds(f"{nxt.year:04d}-{nxt.month:02d}", TZ)[0] == m_end


@pytest.mark.parametrize(("kind", "text", "code"), [
    ("supplier", "2026-13-01", "BAD_PERIOD"), ("supplier", "2026-02-30", "BAD_PERIOD"),
    ("supplier", "2026-10", "BAD_PERIOD"), ("commission", "2026-10-01", "BAD_PERIOD"),
    ("commission", "2026-00", "BAD_PERIOD"), ("commission", "26-10", "BAD_PERIOD"),
    ("refund", "2026-10", "BAD_KIND"),
])
def test_malformed_periods_are_refused(kind, text, code):
    with pytest.raises(PeriodError) as err:
        parse_period(kind, text)
    assert err.value.code == code


def test_which_periods_an_operator_may_run():
    now = datetime(2026, 10, 15, 4, 0, tzinfo=UTC)  # 12:00 on 15 Oct in Shanghai
    assert check_period("supplier", "2026-10-14", now, TZ) == "2026-10-14"
    assert check_period("supplier", "2026-10-15", now, TZ) == "2026-10-15"  # today: what completed so far
    assert check_period("commission", "2026-09", now, TZ) == "2026-09"
    for kind, period, code in [("supplier", "2026-10-16", "PERIOD_IN_FUTURE"),
                               ("commission", "2026-11", "PERIOD_IN_FUTURE"),
                               ("commission", "2026-10", "PERIOD_NOT_ENDED")]:
        with pytest.raises(PeriodError) as err:
            check_period(kind, period, now, TZ)
        assert err.value.code == code
    assert check_period("commission", "2026-10", now, TZ, allow_open=True) == "2026-10"


def test_business_keys():
    assert run_workflow_id("supplier", "2026-10-04") == "settlement-supplier-2026-10-04"
    assert run_workflow_id("commission", "2026-10") == "settlement-commission-2026-10"
    no = "CC2026100412000012345678"
    assert (split_out_order_no(no), unfreeze_out_order_no(no)) == (f"SS{no}", f"SU{no}")
    assert split_ledger_key(no, 7) == f"settlement:supplier:{no}:7"
    assert len(split_out_order_no(no)) <= 64


# --- the split cap ---------------------------------------------------------------------------
def test_split_cap_examples():
    assert split_cap(39_800, 3000) == 11_940
    assert split_cap(10, 3000) == 3            # rounded down: the rest stays with us
    assert split_room(39_800, 19_900, 3000) == 11_940
    assert split_room(39_800, 39_800, 3000) == 0
    assert split_room(1000, 0, 3000, unsplit_fen=800) == 100   # 200 already split elsewhere
    assert split_room(1000, 0, 3000, unsplit_fen=0) == 0


@given(paid=fen, refunded_part=st.floats(0, 1), ratio=bps, unsplit=st.none() | fen)
def test_split_room_never_exceeds_the_cap_nor_the_money_held(paid, refunded_part, ratio, unsplit):
    refunded = int(paid * refunded_part)
    room = split_room(paid, refunded, ratio, unsplit)
    assert 0 <= room <= split_cap(paid, ratio)
    assert room <= paid - refunded
    if unsplit is not None:
        assert room <= unsplit
        assert room + (paid - min(unsplit, paid)) <= split_cap(paid, ratio) or room == 0


shares = st.lists(st.builds(SupplierShare, supplier_id=st.integers(1, 10**6), share_fen=st.integers(-10**6, 10**9),
                            can_receive=st.booleans()),
                  max_size=12, unique_by=lambda s: s.supplier_id)


@given(room=st.integers(-10**6, 10**10), shares=shares)
def test_splits_never_exceed_the_room_or_a_share_and_nothing_is_lost(room, shares):
    plan = allocate_splits(room, shares)
    assert sorted(p.supplier_id for p in plan) == sorted(s.supplier_id for s in shares)
    by_id = {s.supplier_id: s for s in shares}
    for p in plan:
        share = by_id[p.supplier_id]
        assert 0 <= p.split_fen <= max(share.share_fen, 0)
        assert p.split_fen + p.outstanding_fen == share.share_fen       # never lost
        if not share.can_receive:
            assert p.split_fen == 0
    total_split = sum(p.split_fen for p in plan)
    assert total_split <= max(room, 0)
    # as much as allowed is split: the cap, or every receivable share, whichever is smaller
    assert total_split == min(max(room, 0), sum(max(s.share_fen, 0) for s in shares if s.can_receive))


@given(paid=st.integers(1, 10**10), ratio=bps, parts=st.lists(st.integers(0, 10**4), min_size=1, max_size=6),
       receivable=st.lists(st.booleans(), min_size=6, max_size=6))
def test_a_payment_split_to_its_suppliers_respects_the_cap(paid, ratio, parts, receivable):
    total = sum(parts) or 1
    supplier_shares = [paid * p // total for p in parts]  # the suppliers' shares are within the payment
    plan = allocate_splits(split_room(paid, 0, ratio), [
        SupplierShare(supplier_id=i + 1, share_fen=s, can_receive=receivable[i])
        for i, s in enumerate(supplier_shares)])
    assert sum(p.split_fen for p in plan) <= split_cap(paid, ratio)
    assert sum(p.split_fen + p.outstanding_fen for p in plan) == sum(supplier_shares)


# --- bills -----------------------------------------------------------------------------------
@given(quantity=st.integers(1, 50), unit=st.integers(1, 10**6), fee_bps=st.integers(100, 500),
       commission_bps=st.integers(0, 5000), data=st.data())
def test_a_bill_line_nets_to_what_completion_books_for_the_supplier(quantity, unit, fee_bps, commission_bps, data):
    paid = unit * quantity
    fee, commission = paid * fee_bps // 10_000, paid * commission_bps // 10_000
    refunds = data.draw(st.lists(st.integers(1, quantity), max_size=quantity))
    claimed, refunded_fen = 0, 0
    for n in refunds:  # refunds one after another, as open_refund records them
        if claimed + n > quantity:
            break
        refunded_fen += share_of(paid, quantity, claimed, n)
        claimed += n
    f = line_figures(paid_fen=paid, service_fee_fen=fee, commission_fen=commission, quantity=quantity,
                     refunded_units=claimed, refunded_fen=refunded_fen)
    booked = (remaining_share(paid, quantity, claimed) - remaining_share(fee, quantity, claimed)
              - remaining_share(commission, quantity, claimed))
    assert f.net_fen == booked
    assert f.sales_fen - f.refunds_fen == remaining_share(paid, quantity, claimed)


# --- statements ------------------------------------------------------------------------------
def test_statement_examples():
    f = statement_figures(LedgerSums(opening_fen=-500, released_fen=3_000, reversed_fen=200, withdrawn_fen=1_000,
                                     other_fen=0, entries=4), review_above_fen=2_999)
    assert (f.closing_fen, f.carried_negative_fen, f.needs_review) == (1_300, 500, True)
    assert not statement_figures(LedgerSums(released_fen=3_000), review_above_fen=3_000).needs_review


ENTRY_KINDS = ["commission_release", "refund", "withdrawal_request", "withdrawal_returned", "correction"]


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(ENTRY_KINDS), st.integers(1, 10**6)), max_size=40),
       st.integers(0, 10**6))
@hyp_settings(max_examples=200)
def test_monthly_statements_chain_and_equal_the_ledger(entries, threshold):
    """Entries of four months on one `available` account: each month's statement closes at the
    account's balance at the month's end, and the next opens where it closed."""
    sign = {"commission_release": 1, "refund": -1, "withdrawal_request": -1, "withdrawal_returned": 1,
            "correction": 1}
    previous_closing = 0
    for month in range(4):
        before = [(k, a) for m, k, a in entries if m < month]
        within = [(k, a) for m, k, a in entries if m == month]
        sums = LedgerSums(
            opening_fen=sum(sign[k] * a for k, a in before),
            released_fen=sum(a for k, a in within if k == "commission_release"),
            reversed_fen=sum(a for k, a in within if k == "refund"),
            withdrawn_fen=sum(-sign[k] * a for k, a in within if k.startswith("withdrawal")),
            other_fen=sum(sign[k] * a for k, a in within if k == "correction"), entries=len(within))
        f = statement_figures(sums, threshold)
        assert f.opening_fen == previous_closing
        assert f.closing_fen == sum(sign[k] * a for m, k, a in entries if m <= month)  # = the ledger balance
        assert f.needs_review == (f.released_fen > threshold)
        assert f.carried_negative_fen == max(0, -f.opening_fen)
        previous_closing = f.closing_fen


# --- schedules -------------------------------------------------------------------------------
def test_schedules_follow_the_settings(tmp_path):
    """Temporal's time-skipping test server has no schedules (CreateSchedule is unimplemented),
    so what the schedules are is checked here, and against a real dev server in
    tests/test_settlement.py."""
    from temporalio.client import ScheduleOverlapPolicy

    from workflows.schedules import COMMISSION_SCHEDULE_ID, SUPPLIER_SCHEDULE_ID, schedules
    from settings import Settings

    built = schedules(Settings(_env_file=None, data_dir=tmp_path, task_queue="q"))
    supplier, commission = built[SUPPLIER_SCHEDULE_ID], built[COMMISSION_SCHEDULE_ID]
    assert supplier.spec.cron_expressions == ["0 2 * * *"] and supplier.spec.time_zone_name == TZ
    assert commission.spec.cron_expressions == ["0 3 5 * *"] and commission.spec.time_zone_name == TZ
    for schedule, workflow in [(supplier, "SupplierSettlementWorkflow"), (commission, "CommissionSettlementWorkflow")]:
        assert schedule.action.workflow == workflow and schedule.action.task_queue == "q"
        (arg,) = schedule.action.args
        assert arg.period is None   # the run works out which period from when it was due
        assert schedule.policy.overlap == ScheduleOverlapPolicy.ALLOW_ALL
    assert supplier.action.args[0].max_ratio_bps == 3000
    assert commission.action.args[0].review_above_fen == 500_000 and commission.action.args[0].batch_size == 500

    other = schedules(Settings(_env_file=None, data_dir=tmp_path, supplier_settlement_cron="30 1 * * *",
                               commission_settlement_day=28, commission_settlement_hour=6,
                               settlement_timezone="Asia/Urumqi"))
    assert other[SUPPLIER_SCHEDULE_ID].spec.cron_expressions == ["30 1 * * *"]
    assert other[COMMISSION_SCHEDULE_ID].spec.cron_expressions == ["0 6 28 * *"]
    assert other[COMMISSION_SCHEDULE_ID].spec.time_zone_name == "Asia/Urumqi"


def test_settlement_settings_are_checked(tmp_path):
    from pydantic import ValidationError

    from settings import Settings

    for bad in ({"commission_settlement_day": 31}, {"profit_sharing_max_ratio_bps": 10_001},
                {"settlement_batch_size": 0}):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, data_dir=tmp_path, **bad)
    assert Settings(_env_file=None, data_dir=tmp_path, profit_sharing_poll_every="30").profit_sharing_poll_every \
        == timedelta(seconds=30)
