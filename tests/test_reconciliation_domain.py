"""Reconciliation rules, pure: reading WeChat Pay's trade bill format and comparing it with
our books, in exact fen."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.reconciliation import (
    BillFormatError,
    DifferenceKind,
    OurPayment,
    OurRefund,
    ReconciliationError,
    Totals,
    check_bill_date,
    day_bounds,
    day_to_reconcile_at,
    fen_to_yuan,
    millifen_to_yuan,
    parse_trade_bill,
    previous_day,
    reconcile,
    run_workflow_id,
    yuan_to_fen,
    yuan_to_millifen,
)

ALL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
              "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
              "手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
PAY_A = ("`2026-11-30 10:06:33,`wxe1696e7c7db8e7f4,`1579507281,`0,`,`4200002360202611301150650780,`CC0001,"
         "`oVgfJ5TrnzDOSuaxbFc33mw-5LUY,`JSAPI,`SUCCESS,`OTHERS,`CNY,`60.00,`0.00,`0,`0,`0.00,`0.00,`,`,`茶叶,`,"
         "`0.36000,`0.60%,`60.00,`0.00,`")
PAY_B = ("`2026-11-30 23:59:59,`wxe1696e7c7db8e7f4,`1579507281,`0,`,`4200002360202611301150650781,`CC0002,"
         "`oVgfJ5TrnzDOSuaxbFc33mw-5LUY,`JSAPI,`SUCCESS,`OTHERS,`CNY,`199.01,`0.00,`0,`0,`0.00,`0.00,`,`,`茶叶,`,"
         "`1.19000,`0.60%,`199.01,`0.00,`")
REFUND_A = ("`2026-11-30 18:30:00,`wxe1696e7c7db8e7f4,`1579507281,`0,`,`4200002166202611300324636876,`CC0003,"
            "`oVgfJ5d35c6iAXrRCnfhOGF9aHT8,`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50302709992026113091956632208,"
            "`RF0001,`50.00,`0.00,`ORIGINAL,`SUCCESS,`茶叶,`,`-0.30000,`0.60%,`0.00,`50.00,`")


def bill_text(*rows: str, summary: str | None = None, newline: str = "\r\n") -> str:
    if summary is None:
        summary = "`3,`259.01,`50.00,`0.00,`1.25000,`259.01,`50.00"
    return newline.join([ALL_HEADER, *rows, SUMMARY, summary]) + newline


# --- amounts ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "fen"), [("0.01", 1), ("60.00", 6000), ("199.01", 19901), ("-0.27", -27),
                                           ("1300", 130000), ("", 0), ("0.10", 10)])
def test_yuan_become_exact_fen(text, fen):
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["0.001", "abc", "1e400x", "NaN"])
def test_amounts_that_are_not_whole_fen_are_refused(text):
    with pytest.raises(BillFormatError):
        yuan_to_fen(text)


def test_fees_keep_five_decimals_as_thousandths_of_a_fen():
    assert yuan_to_millifen("0.32000") == 32_000
    assert yuan_to_millifen("-0.27000") == -27_000
    assert yuan_to_millifen("4.33001") == 433_001
    with pytest.raises(BillFormatError):
        yuan_to_millifen("0.000001")
    assert fen_to_yuan(-27) == "-0.27" and fen_to_yuan(19901) == "199.01"
    assert millifen_to_yuan(125_000) == "1.25000" and millifen_to_yuan(-27_000) == "-0.27000"
    assert millifen_to_yuan(433_001) == "4.33001" and millifen_to_yuan(0) == "0.00000"


# --- the bill format ------------------------------------------------------------------------------
def test_an_all_bill_is_read_into_typed_rows():
    bill = parse_trade_bill(bill_text(PAY_A, PAY_B, REFUND_A))
    assert [r.key for r in bill.rows] == ["CC0001", "CC0002", "RF0001"]
    a, _, refund = bill.rows
    assert (a.settlement_fen, a.order_fen, a.fee_millifen, a.refund_id, a.out_refund_no, a.is_refund) == (
        6000, 6000, 36_000, None, None, False)
    assert a.traded_at.isoformat() == "2026-11-30T10:06:33+08:00"
    assert a.transaction_id == "4200002360202611301150650780" and a.rate == "0.60%"
    assert (refund.is_refund, refund.refund_fen, refund.settlement_fen, refund.refund_status) == (True, 5000, 0, "SUCCESS")
    assert (refund.out_refund_no, refund.refund_id, refund.out_trade_no) == (
        "RF0001", "50302709992026113091956632208", "CC0003")
    s = bill.summary
    assert (s.count, s.settlement_fen, s.refund_fen, s.fee_millifen, s.order_fen, s.applied_refund_fen) == (
        3, 25901, 5000, 125_000, 25901, 5000)


def test_the_bill_is_read_by_header_name_with_lf_endings_and_a_bom():
    # columns in another order, a refund-only (REFUND) layout, "\n" line ends and a BOM
    header = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
              "应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,"
              "退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
    row = ("`2026-11-30 20:53:36,`wx1,`m1,`0,`,`4200001,`CC9,`o1,`JSAPI,`REFUND,`CFT,`CNY,`0.00,`0.00,"
           "`2026-11-30 20:53:36,`2026-11-30 20:53:40,`5030001,`RF9,`0.01,`0.00,`ORIGINAL,`PROCESSING,`x,`y,"
           "`0.00000,`0.60%,`0.00,`0.01,`")
    bill = parse_trade_bill("\ufeff" + "\n".join([header, row, SUMMARY, "`1,`0.00,`0.01,`0.00,`0.00000,`0.00,`0.01"]))
    assert [(r.key, r.refund_fen, r.refund_status) for r in bill.rows] == [("RF9", 1, "PROCESSING")]


def test_a_day_with_only_the_summary_has_no_rows():
    bill = parse_trade_bill(bill_text(summary="`0,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00"))
    assert bill.rows == [] and bill.summary.count == 0


@pytest.mark.parametrize(("text", "problem"), [
    (bill_text(PAY_A, PAY_B, REFUND_A, summary="`4,`259.01,`50.00,`0.00,`1.25000,`259.01,`50.00"), "总交易单数 4"),
    (bill_text(PAY_A, PAY_B, REFUND_A, summary="`3,`259.00,`50.00,`0.00,`1.25000,`259.01,`50.00"), "应结订单总金额"),
    (bill_text(PAY_A, PAY_B, REFUND_A, summary="`3,`259.01,`5.00,`0.00,`1.25000,`259.01,`50.00"), "退款总金额"),
    (bill_text(PAY_A, PAY_B, REFUND_A)[:-60], "summary"),
    (bill_text(PAY_A[:-3], summary="`1,`60.00,`0.00,`0.00,`0.36000,`60.00,`0.00"), "fields"),
    ("交易时间,商户订单号\r\n总交易单数\r\n`0\r\n", "header lacks"),
    (bill_text(PAY_A.replace("2026-11-30 10:06:33", "2026/11/30"),
               summary="`1,`60.00,`0.00,`0.00,`0.36000,`60.00,`0.00"), "交易时间"),
])
def test_a_bill_that_contradicts_itself_is_refused(text, problem):
    with pytest.raises(BillFormatError, match=problem):
        parse_trade_bill(text)


# --- days -------------------------------------------------------------------------------------------
def test_days_and_workflow_ids():
    now = datetime(2026, 12, 1, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
    assert day_to_reconcile_at(now, "Asia/Shanghai") == "2026-11-30"
    assert day_to_reconcile_at(datetime(2026, 12, 1, 17, 0, tzinfo=UTC), "Asia/Shanghai") == "2026-12-01"
    assert check_bill_date("2026-12-01", now, "Asia/Shanghai") == "2026-12-01"  # today: waits for its bill
    with pytest.raises(ReconciliationError, match="not begun") as err:
        check_bill_date("2026-12-02", now, "Asia/Shanghai")
    assert err.value.code == "DATE_IN_FUTURE"
    for bad in ("2026-13-01", "2026-11-31", "yesterday", "20261130"):
        with pytest.raises(ReconciliationError) as err:
            check_bill_date(bad, now, "Asia/Shanghai")
        assert err.value.code == "BAD_DATE"
    start, end = day_bounds("2026-11-30", "Asia/Shanghai")
    assert (start.isoformat(), end.isoformat()) == ("2026-11-30T00:00:00+08:00", "2026-12-01T00:00:00+08:00")
    assert previous_day("2026-12-01") == "2026-11-30"
    assert run_workflow_id("2026-11-30") == "reconciliation-2026-11-30"
    assert run_workflow_id("2026-11-30", 3) == "reconciliation-2026-11-30-3"


# --- the comparison -----------------------------------------------------------------------------------
DAY = "2026-11-30"


def paid(no: str, fen: int, on: str = DAY, booked: int | None = None) -> OurPayment:
    return OurPayment(out_trade_no=no, amount_fen=fen, status="SUCCESS", booked_fen=fen if booked is None else booked,
                      booked_on=on)


def refunded(no: str, order: str, fen: int, on: str | None = DAY, status: str = "REFUNDED") -> OurRefund:
    return OurRefund(out_refund_no=no, out_trade_no=order, amount_fen=fen, status=status,
                     booked_fen=fen if on else None, booked_on=on)


def ledger(payments: list[int], refunds: list[int]) -> Totals:
    return Totals(payments=len(payments), payments_fen=sum(payments), refunds=len(refunds), refunds_fen=sum(refunds))


def the_bill():
    return parse_trade_bill(bill_text(PAY_A, PAY_B, REFUND_A))


def test_books_that_agree_with_the_bill_are_clean():
    ours_p = {"CC0001": paid("CC0001", 6000), "CC0002": paid("CC0002", 19901)}
    ours_r = {"RF0001": refunded("RF0001", "CC0003", 5000)}
    out = reconcile(DAY, the_bill(), ours_p, ours_r, ledger([6000, 19901], [5000]))
    assert out.clean and out.matched == 3 and out.timing == []
    assert (out.bill.payments, out.bill.payments_fen, out.bill.refunds_fen, out.bill.net_fen) == (2, 25901, 5000, 20901)
    assert out.ours.net_fen == 20901 and out.fee_millifen == 125_000


def test_every_kind_of_difference_is_reported_exactly():
    bill = the_bill()
    ours_p = {
        # CC0001 unknown to us: a payment at WeChat Pay not in our books
        "CC0002": paid("CC0002", 19900),            # amount changed
        "CC0004": paid("CC0004", 1234),             # we booked it, WeChat Pay has no such payment
    }
    ours_r = {"RF0001": refunded("RF0001", "CC0003", 5000, on=None, status="REFUNDING")}  # bill: SUCCESS, we: not booked
    out = reconcile(DAY, bill, ours_p, ours_r, ledger([19900, 1234], []))
    got = [(d.kind, d.subject, d.out_trade_no, d.out_refund_no, d.ours_fen, d.bill_fen) for d in out.differences]
    assert got == [
        (DifferenceKind.MISSING_IN_LEDGER, "payment", "CC0001", None, None, 6000),
        (DifferenceKind.AMOUNT_MISMATCH, "payment", "CC0002", None, 19900, 19901),
        (DifferenceKind.STATE_MISMATCH, "refund", "CC0003", "RF0001", None, 5000),
        (DifferenceKind.MISSING_AT_WECHATPAY, "payment", "CC0004", None, 1234, None),
    ]
    assert out.matched == 0 and out.differences[1].delta_fen == 1
    assert (out.bill.net_fen, out.ours.net_fen) == (20901, 21134)   # the items explain it all: no totals line


def test_we_think_refunded_but_the_bill_says_not():
    text = bill_text(PAY_A, PAY_B, REFUND_A.replace("`ORIGINAL,`SUCCESS", "`ORIGINAL,`ABNORMAL"))
    out = reconcile(DAY, parse_trade_bill(text), {"CC0001": paid("CC0001", 6000), "CC0002": paid("CC0002", 19901)},
                    {"RF0001": refunded("RF0001", "CC0003", 5000)}, ledger([6000, 19901], [5000]))
    [d] = out.differences
    assert (d.kind, d.our_state, d.bill_state, d.ours_fen, d.bill_fen) == (
        DifferenceKind.STATE_MISMATCH, "REFUNDED", "ABNORMAL", 5000, 5000)


def test_a_refund_still_processing_on_both_sides_is_not_a_difference():
    text = bill_text(PAY_A, PAY_B, REFUND_A.replace("`ORIGINAL,`SUCCESS", "`ORIGINAL,`PROCESSING"))
    out = reconcile(DAY, parse_trade_bill(text), {"CC0001": paid("CC0001", 6000), "CC0002": paid("CC0002", 19901)},
                    {"RF0001": refunded("RF0001", "CC0003", 5000, on=None, status="REFUNDING")}, ledger([6000, 19901], []))
    assert out.clean and out.matched == 3


def test_a_refund_amount_that_differs_and_an_unknown_refund():
    text = bill_text(PAY_A, PAY_B, REFUND_A)
    out = reconcile(DAY, parse_trade_bill(text), {"CC0001": paid("CC0001", 6000), "CC0002": paid("CC0002", 19901)},
                    {"RF0001": refunded("RF0001", "CC0003", 4999)}, ledger([6000, 19901], [4999]))
    [d] = out.differences
    assert (d.kind, d.ours_fen, d.bill_fen, d.delta_fen) == (DifferenceKind.AMOUNT_MISMATCH, 4999, 5000, 1)
    out = reconcile(DAY, parse_trade_bill(text), {"CC0001": paid("CC0001", 6000), "CC0002": paid("CC0002", 19901)},
                    {}, ledger([6000, 19901], []))
    [d] = out.differences
    assert (d.kind, d.subject, d.out_refund_no, d.bill_fen) == (DifferenceKind.MISSING_IN_LEDGER, "refund", "RF0001", 5000)


def test_payments_across_midnight_are_timing_not_differences():
    # CC0002 paid at 23:59:59 on the 30th, booked by us on the 1st; on the 1st, CC0002 is ours but
    # on the 30th's bill
    bill = parse_trade_bill(bill_text(PAY_A, PAY_B, REFUND_A))
    ours_p = {"CC0001": paid("CC0001", 6000), "CC0002": paid("CC0002", 19901, on="2026-12-01")}
    out = reconcile(DAY, bill, ours_p, {"RF0001": refunded("RF0001", "CC0003", 5000)}, ledger([6000], [5000]))
    assert out.clean and out.timing == ["payment CC0002 on this bill, booked 2026-12-01"]
    out = reconcile("2026-12-01", None, {"CC0002": ours_p["CC0002"]}, {}, ledger([19901], []),
                    elsewhere={"CC0002": DAY})
    assert out.clean and out.timing == ["payment CC0002 booked 2026-12-01, on WeChat Pay's 2026-11-30 bill"]
    assert not out.bill_exists


def test_a_clearing_movement_no_record_explains_is_a_totals_mismatch():
    ours_p = {"CC0001": paid("CC0001", 6000), "CC0002": paid("CC0002", 19901)}
    ours_r = {"RF0001": refunded("RF0001", "CC0003", 5000)}
    out = reconcile(DAY, the_bill(), ours_p, ours_r, ledger([6000, 19901, 700], [5000]))
    [d] = out.differences
    assert (d.kind, d.subject, d.ours_fen, d.bill_fen, d.delta_fen) == (
        DifferenceKind.TOTALS_MISMATCH, "totals", 21601, 20901, -700)
    assert "-7.00 is not explained" in d.note


def test_no_bill_for_a_day_we_booked_payments_on():
    out = reconcile(DAY, None, {"CC0009": paid("CC0009", 100)}, {"RF9": refunded("RF9", "CC0009", 40)},
                    ledger([100], [40]))
    assert [(d.kind, d.subject, d.ours_fen) for d in out.differences] == [
        (DifferenceKind.MISSING_AT_WECHATPAY, "payment", 100), (DifferenceKind.MISSING_AT_WECHATPAY, "refund", 40)]
    assert reconcile(DAY, None, {}, {}, ledger([], [])).clean
