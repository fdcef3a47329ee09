"""Reconciliation with WeChat Pay's daily trade bill (交易账单). Pure: no I/O.

WeChat Pay publishes the bill of day D (Asia/Shanghai, cut at 00:00) after about 10:00 on D+1.
The file is text: a header row in Chinese, one row per payment (by 支付成功时间) and per refund
(by 商户退款受理成功时间, its status a snapshot taken when the bill was made), then a summary
header (总交易单数,应结订单总金额,退款总金额,...) and the summary row. Every data and summary
field starts with a back-tick ` (so Excel keeps long numbers); amounts are yuan with two
decimals, fees with five. Columns are found by header name (WeChat says their order may move).

`reconcile` compares the bill with our books — payments (`payments` rows and their
`wechatpay:clearing` debit), refunds (their `wechatpay:clearing` credit) — and lists every
difference in exact integer fen:

* MISSING_IN_LEDGER     WeChat Pay has the payment/refund, our books do not
* MISSING_AT_WECHATPAY  we booked it on that day, no bill (of that day or one we fetched before) has it
* AMOUNT_MISMATCH       both have it, amounts differ
* STATE_MISMATCH        both have it, states disagree (we think refunded, the bill says not; or
                        the bill says refunded and we never booked it)
* TOTALS_MISMATCH       the bill's totals and our day's totals differ by more than the items explain
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

# WeChat Pay cuts its bills at 00:00 Beijing time, whatever our settlement time zone is.
WECHATPAY_TIMEZONE = "Asia/Shanghai"
CST = ZoneInfo(WECHATPAY_TIMEZONE)
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SUMMARY_FIRST = "总交易单数"
# header name → field of BillRow (ALL, SUCCESS and REFUND bills use subsets of these)
COLUMNS = {
    "交易时间": "traded_at", "公众账号ID": "appid", "商户号": "mchid", "特约商户号": "sub_mchid",
    "设备号": "device_info", "微信订单号": "transaction_id", "商户订单号": "out_trade_no",
    "用户标识": "openid", "交易类型": "trade_type", "交易状态": "trade_state", "付款银行": "bank_type",
    "货币种类": "currency", "应结订单金额": "settlement", "代金券金额": "coupon",
    "退款申请时间": "refund_requested_at", "退款成功时间": "refund_succeeded_at",
    "微信退款单号": "refund_id", "商户退款单号": "out_refund_no", "退款金额": "refund",
    "充值券退款金额": "recharge_refund", "退款类型": "refund_channel", "退款状态": "refund_status",
    "商品名称": "description", "商户数据包": "attach", "手续费": "fee", "费率": "rate",
    "订单金额": "order_amount", "申请退款金额": "applied_refund", "费率备注": "rate_note",
}
SUMMARY_COLUMNS = {
    "总交易单数": "count", "应结订单总金额": "settlement_fen", "退款总金额": "refund_fen",
    "充值券退款总金额": "recharge_refund_fen", "手续费总金额": "fee_millifen", "订单总金额": "order_fen",
    "申请退款总金额": "applied_refund_fen",
}
REQUIRED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额")


class BillFormatError(ValueError):
    """The file is not a trade bill we can read, or it contradicts itself."""


class ReconciliationError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# --- amounts ---------------------------------------------------------------------------------
def _decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip() or "0")
    except InvalidOperation as err:
        raise BillFormatError(f"{what}: {text!r} is not an amount") from err
    if not value.is_finite():
        raise BillFormatError(f"{what}: {text!r} is not an amount")
    return value


def yuan_to_fen(text: str, what: str = "amount") -> int:
    """'12.30' → 1230, exactly; more than whole fen is refused."""
    fen = _decimal(text, what) * 100
    if fen != fen.to_integral_value():
        raise BillFormatError(f"{what}: {text!r} has a fraction of a fen")
    return int(fen)


def yuan_to_millifen(text: str, what: str = "fee") -> int:
    """Fees have five decimals of yuan: '0.32000' → 32000 (thousandths of a fen), exactly."""
    milli = _decimal(text, what) * 100_000
    if milli != milli.to_integral_value():
        raise BillFormatError(f"{what}: {text!r} has more than five decimals")
    return int(milli)


def fen_to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def millifen_to_yuan(millifen: int) -> str:
    """Fees as the bill shows them, five decimals: 125000 → '1.25000'."""
    sign = "-" if millifen < 0 else ""
    return f"{sign}{abs(millifen) // 100_000}.{abs(millifen) % 100_000:05d}"


# --- the bill --------------------------------------------------------------------------------
class BillRow(BaseModel):
    """One row of a trade bill. Money in fen (fees in thousandths of a fen)."""

    traded_at: datetime
    appid: str = ""
    mchid: str = ""
    transaction_id: str
    out_trade_no: str
    openid: str = ""
    trade_type: str = ""
    trade_state: str                 # SUCCESS (a payment) | REFUND (a refund) | REVOKED ...
    settlement_fen: int = 0          # 应结订单金额 (order amount less non-recharge coupons)
    coupon_fen: int = 0
    refund_id: str | None = None
    out_refund_no: str | None = None
    refund_fen: int = 0
    refund_status: str | None = None  # SUCCESS | PROCESSING | ABNORMAL | CLOSED (refund rows)
    description: str = ""
    fee_millifen: int = 0
    rate: str = ""
    order_fen: int = 0
    applied_refund_fen: int = 0

    @property
    def is_refund(self) -> bool:
        return self.trade_state == "REFUND"

    @property
    def key(self) -> str:
        return (self.out_refund_no or "") if self.is_refund else self.out_trade_no


class BillSummary(BaseModel):
    count: int = 0
    settlement_fen: int = 0
    refund_fen: int = 0
    recharge_refund_fen: int = 0
    fee_millifen: int = 0
    order_fen: int = 0
    applied_refund_fen: int = 0


class TradeBill(BaseModel):
    rows: list[BillRow]
    summary: BillSummary


def _fields(line: str) -> list[str]:
    return [f[1:] if f.startswith("`") else f for f in line.split(",")]


def _none_if_zero(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", "0") else text


def parse_trade_bill(text: str) -> TradeBill:
    """Parse a trade bill (ALL, SUCCESS or REFUND) into typed rows; its summary must agree with
    its rows (count, 应结订单总金额 = Σ payments, 退款总金额 = Σ refunds), or BillFormatError."""
    lines = [ln for ln in text.lstrip("\ufeff").replace("\r\n", "\n").split("\n") if ln.strip()]
    if len(lines) < 3:
        raise BillFormatError("a trade bill has a header, a summary header and a summary row")
    header = [h.strip() for h in lines[0].split(",")]
    missing = [h for h in REQUIRED if h not in header]
    if missing:
        raise BillFormatError(f"header lacks {', '.join(missing)}")
    try:
        at = next(i for i, ln in enumerate(lines) if ln.startswith(SUMMARY_FIRST))
    except StopIteration:
        raise BillFormatError("no summary (总交易单数,...) at the end") from None
    if at != len(lines) - 2:
        raise BillFormatError("the summary must be the last two lines")
    rows = [_row(header, _fields(ln), n) for n, ln in enumerate(lines[1:at], start=2)]
    summary = _summary([h.strip() for h in lines[at].split(",")], _fields(lines[at + 1]))
    _check_summary(rows, summary)
    return TradeBill(rows=rows, summary=summary)


def _row(header: list[str], values: list[str], n: int) -> BillRow:
    if len(values) != len(header):
        raise BillFormatError(f"line {n} has {len(values)} fields, the header {len(header)}")
    raw = {COLUMNS[h]: v for h, v in zip(header, values, strict=True) if h in COLUMNS}
    try:
        traded_at = datetime.strptime(raw["traded_at"].strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)
    except ValueError as err:
        raise BillFormatError(f"line {n}: 交易时间 {raw['traded_at']!r}") from err
    where = f"line {n}"
    return BillRow(
        traded_at=traded_at, appid=raw.get("appid", ""), mchid=raw.get("mchid", ""),
        transaction_id=raw["transaction_id"].strip(), out_trade_no=raw["out_trade_no"].strip(),
        openid=raw.get("openid", ""), trade_type=raw.get("trade_type", ""), trade_state=raw["trade_state"].strip(),
        settlement_fen=yuan_to_fen(raw["settlement"], f"{where} 应结订单金额"),
        coupon_fen=yuan_to_fen(raw.get("coupon", "0"), f"{where} 代金券金额"),
        refund_id=_none_if_zero(raw.get("refund_id", "")), out_refund_no=_none_if_zero(raw.get("out_refund_no", "")),
        refund_fen=yuan_to_fen(raw.get("refund", "0"), f"{where} 退款金额"),
        refund_status=raw.get("refund_status", "").strip() or None, description=raw.get("description", ""),
        fee_millifen=yuan_to_millifen(raw.get("fee", "0"), f"{where} 手续费"), rate=raw.get("rate", ""),
        order_fen=yuan_to_fen(raw.get("order_amount", "0"), f"{where} 订单金额"),
        applied_refund_fen=yuan_to_fen(raw.get("applied_refund", "0"), f"{where} 申请退款金额"))


def _summary(header: list[str], values: list[str]) -> BillSummary:
    if len(values) != len(header):
        raise BillFormatError("the summary row does not match its header")
    out: dict[str, int] = {}
    for h, v in zip(header, values, strict=True):
        field = SUMMARY_COLUMNS.get(h)
        if field == "count":
            if not v.strip().isdigit():
                raise BillFormatError(f"总交易单数 {v!r}")
            out[field] = int(v)
        elif field == "fee_millifen":
            out[field] = yuan_to_millifen(v, h)
        elif field:
            out[field] = yuan_to_fen(v, h)
    return BillSummary(**out)


def _check_summary(rows: list[BillRow], s: BillSummary) -> None:
    payments = sum(r.settlement_fen for r in rows if not r.is_refund)
    refunds = sum(r.refund_fen for r in rows if r.is_refund)
    problems = []
    if s.count != len(rows):
        problems.append(f"总交易单数 {s.count} but {len(rows)} rows")
    if s.settlement_fen != payments:
        problems.append(f"应结订单总金额 {fen_to_yuan(s.settlement_fen)} but the rows add up to {fen_to_yuan(payments)}")
    if s.refund_fen != refunds:
        problems.append(f"退款总金额 {fen_to_yuan(s.refund_fen)} but the rows add up to {fen_to_yuan(refunds)}")
    if problems:
        raise BillFormatError("; ".join(problems))


# --- days ------------------------------------------------------------------------------------
def parse_bill_date(text: str) -> date:
    if not isinstance(text, str) or not DAY.match(text):
        raise ReconciliationError("BAD_DATE", f"a bill date is YYYY-MM-DD, not {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise ReconciliationError("BAD_DATE", f"{text} is not a calendar day") from err


def check_bill_date(text: str, now: datetime, tz: str) -> str:
    """A day an operator may reconcile: well formed and begun (today's run waits for its bill)."""
    day = parse_bill_date(text)
    if day > now.astimezone(ZoneInfo(tz)).date():
        raise ReconciliationError("DATE_IN_FUTURE", f"{day} has not begun yet; WeChat Pay has no bill for it")
    return day.isoformat()


def day_bounds(day: str, tz: str) -> tuple[datetime, datetime]:
    d = parse_bill_date(day)
    zone = ZoneInfo(tz)
    return datetime.combine(d, time(), zone), datetime.combine(d + timedelta(days=1), time(), zone)


def previous_day(day: str) -> str:
    return (parse_bill_date(day) - timedelta(days=1)).isoformat()


def day_to_reconcile_at(moment: datetime, tz: str) -> str:
    """The day a run due at `moment` reconciles: yesterday (the newest published bill)."""
    return (moment.astimezone(ZoneInfo(tz)).date() - timedelta(days=1)).isoformat()


def run_workflow_id(day: str, attempt: int = 1) -> str:
    """`reconciliation-{date}`; an operator's explicit re-run n ≥ 2 is `reconciliation-{date}-{n}`,
    so an earlier report is never replaced."""
    return f"reconciliation-{day}" if attempt == 1 else f"reconciliation-{day}-{attempt}"


# --- our side --------------------------------------------------------------------------------
class OurPayment(BaseModel):
    out_trade_no: str
    amount_fen: int                   # what we asked WeChat Pay for (payments.amount_fen)
    status: str                       # our payments.status
    transaction_id: str | None = None
    booked_fen: int | None = None     # the wechatpay:clearing debit of the payment, None: not booked
    booked_on: str | None = None      # the day (settlement time zone) it was booked


class OurRefund(BaseModel):
    out_refund_no: str
    out_trade_no: str
    amount_fen: int
    status: str                       # our refunds.status (REFUNDED, REFUNDING, ABNORMAL, ...)
    booked_fen: int | None = None     # the wechatpay:clearing credit of the refund, None: not booked
    booked_on: str | None = None


class DifferenceKind(StrEnum):
    MISSING_IN_LEDGER = "MISSING_IN_LEDGER"
    MISSING_AT_WECHATPAY = "MISSING_AT_WECHATPAY"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    STATE_MISMATCH = "STATE_MISMATCH"
    TOTALS_MISMATCH = "TOTALS_MISMATCH"


class Difference(BaseModel):
    kind: DifferenceKind
    subject: Literal["payment", "refund", "totals"]
    out_trade_no: str | None = None
    out_refund_no: str | None = None
    ours_fen: int | None = None
    bill_fen: int | None = None
    our_state: str | None = None
    bill_state: str | None = None
    note: str = ""

    @property
    def delta_fen(self) -> int:
        """What the bill has more than our books (signed)."""
        return (self.bill_fen or 0) - (self.ours_fen or 0)


class Totals(BaseModel):
    payments: int = 0
    payments_fen: int = 0
    refunds: int = 0
    refunds_fen: int = 0

    @property
    def net_fen(self) -> int:
        return self.payments_fen - self.refunds_fen


class ReconciliationOutcome(BaseModel):
    day: str
    bill_exists: bool
    bill: Totals
    ours: Totals
    fee_millifen: int = 0
    matched: int = 0
    timing: list[str] = Field(default_factory=list, description="booked on this day, on another day's bill")
    differences: list[Difference] = Field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


# refund states at WeChat Pay that mean the money went back to the buyer / did not
_REFUNDED = {"SUCCESS"}
_NOT_REFUNDED = {"ABNORMAL", "CLOSED"}


def reconcile(day: str, bill: TradeBill | None, payments: dict[str, OurPayment], refunds: dict[str, OurRefund],
              ledger: Totals, *, elsewhere: dict[str, str] | None = None) -> ReconciliationOutcome:
    """Compare day `day`'s bill (None: WeChat Pay has no bill, NO_STATEMENT_EXIST) with our books.

    `payments` / `refunds`: ours, by out_trade_no / out_refund_no: every one the bill names
    (whenever we booked it) and every one we booked on `day`. `ledger`: the day's
    `wechatpay:clearing` payment debits and refund credits, summed by the ledger itself.
    `elsewhere`: key → date of another day's bill that lists it (a payment booked just after
    midnight, a refund accepted the day before it completed): a timing item, not a difference.

    Totals check: the bill's net minus the ledger's net must be exactly what the items (and
    timing items) explain; anything else is a TOTALS_MISMATCH (a clearing movement no record
    accounts for)."""
    elsewhere = elsewhere or {}
    out = ReconciliationOutcome(day=day, bill_exists=bill is not None, bill=Totals(), ours=ledger,
                                fee_millifen=bill.summary.fee_millifen if bill else 0)
    gap = 0  # Σ (bill side − our day's side), record by record
    seen: set[tuple[str, str]] = set()
    for row in bill.rows if bill else []:
        if row.is_refund:
            out.bill.refunds += 1
            out.bill.refunds_fen += row.refund_fen
            seen.add(("refund", row.key))
            ours = refunds.get(row.key)
            gap -= row.refund_fen - (ours.booked_fen or 0 if ours and ours.booked_on == day else 0)
            _refund_row(day, row, ours, out)
        else:
            out.bill.payments += 1
            out.bill.payments_fen += row.settlement_fen
            seen.add(("payment", row.key))
            ours = payments.get(row.key)
            gap += row.settlement_fen - (ours.booked_fen or 0 if ours and ours.booked_on == day else 0)
            _payment_row(day, row, ours, out)

    for p in sorted(payments.values(), key=lambda p: p.out_trade_no):
        if p.booked_on != day or p.booked_fen is None or ("payment", p.out_trade_no) in seen:
            continue
        gap -= p.booked_fen
        if p.out_trade_no in elsewhere:
            out.timing.append(f"payment {p.out_trade_no} booked {day}, on WeChat Pay's {elsewhere[p.out_trade_no]} bill")
            continue
        out.differences.append(Difference(
            kind=DifferenceKind.MISSING_AT_WECHATPAY, subject="payment", out_trade_no=p.out_trade_no,
            ours_fen=p.booked_fen, our_state=p.status, note="booked as paid; WeChat Pay's bill has no such payment"))
    for r in sorted(refunds.values(), key=lambda r: r.out_refund_no):
        if r.booked_on != day or r.booked_fen is None or ("refund", r.out_refund_no) in seen:
            continue
        gap += r.booked_fen
        if r.out_refund_no in elsewhere:
            out.timing.append(f"refund {r.out_refund_no} booked {day}, on WeChat Pay's {elsewhere[r.out_refund_no]} bill")
            continue
        out.differences.append(Difference(
            kind=DifferenceKind.MISSING_AT_WECHATPAY, subject="refund", out_trade_no=r.out_trade_no,
            out_refund_no=r.out_refund_no, ours_fen=r.booked_fen, our_state=r.status,
            note="booked as refunded; WeChat Pay's bill has no such refund"))

    unexplained = (out.bill.net_fen - out.ours.net_fen) - gap
    if unexplained:
        out.differences.append(Difference(
            kind=DifferenceKind.TOTALS_MISMATCH, subject="totals", ours_fen=out.ours.net_fen, bill_fen=out.bill.net_fen,
            note=f"net {fen_to_yuan(out.bill.net_fen)} at WeChat Pay, {fen_to_yuan(out.ours.net_fen)} in the ledger: "
                 f"{fen_to_yuan(unexplained)} is not explained by any payment or refund"))
    return out


def _payment_row(day: str, row: BillRow, ours: OurPayment | None, out: ReconciliationOutcome) -> None:
    if ours is None or ours.booked_fen is None:
        out.differences.append(Difference(
            kind=DifferenceKind.MISSING_IN_LEDGER, subject="payment", out_trade_no=row.out_trade_no,
            bill_fen=row.settlement_fen, bill_state=row.trade_state, our_state=ours.status if ours else None,
            note=f"WeChat Pay {row.transaction_id} collected it; "
                 + ("no such payment in our books" if ours is None else "our payment was never booked")))
    elif ours.booked_fen != row.settlement_fen:
        out.differences.append(Difference(
            kind=DifferenceKind.AMOUNT_MISMATCH, subject="payment", out_trade_no=row.out_trade_no,
            ours_fen=ours.booked_fen, bill_fen=row.settlement_fen, our_state=ours.status, bill_state=row.trade_state,
            note=f"WeChat Pay {row.transaction_id}"))
    else:
        out.matched += 1
        if ours.booked_on != day:
            out.timing.append(f"payment {row.out_trade_no} on this bill, booked {ours.booked_on}")


def _refund_row(day: str, row: BillRow, ours: OurRefund | None, out: ReconciliationOutcome) -> None:
    status = row.refund_status or ""
    booked = ours is not None and ours.booked_fen is not None
    if ours is None:
        out.differences.append(Difference(
            kind=DifferenceKind.MISSING_IN_LEDGER, subject="refund", out_trade_no=row.out_trade_no,
            out_refund_no=row.out_refund_no, bill_fen=row.refund_fen, bill_state=status,
            note=f"WeChat Pay refund {row.refund_id} of {row.out_trade_no}; no such refund in our books"))
    elif booked and status in _NOT_REFUNDED:
        out.differences.append(Difference(
            kind=DifferenceKind.STATE_MISMATCH, subject="refund", out_trade_no=row.out_trade_no,
            out_refund_no=row.out_refund_no, ours_fen=ours.booked_fen, bill_fen=row.refund_fen,
            our_state=ours.status, bill_state=status, note=f"we booked it refunded; WeChat Pay says {status}"))
    elif not booked and status in _REFUNDED:
        out.differences.append(Difference(
            kind=DifferenceKind.STATE_MISMATCH, subject="refund", out_trade_no=row.out_trade_no,
            out_refund_no=row.out_refund_no, bill_fen=row.refund_fen, our_state=ours.status, bill_state=status,
            note="WeChat Pay refunded it; our books have not booked the refund"))
    elif (ours.booked_fen if booked else ours.amount_fen) != row.refund_fen:
        out.differences.append(Difference(
            kind=DifferenceKind.AMOUNT_MISMATCH, subject="refund", out_trade_no=row.out_trade_no,
            out_refund_no=row.out_refund_no, ours_fen=ours.booked_fen if booked else ours.amount_fen,
            bill_fen=row.refund_fen, our_state=ours.status, bill_state=status,
            note=f"WeChat Pay refund {row.refund_id}"))
    else:
        out.matched += 1
        if booked and ours.booked_on != day:
            out.timing.append(f"refund {row.out_refund_no} on this bill, booked {ours.booked_on}")


# --- what workflows and activities pass ------------------------------------------------------
class ReconciliationInput(BaseModel):
    day: str | None = None            # None: started by the schedule, reconcile yesterday
    attempt: int = 1
    timezone: str = WECHATPAY_TIMEZONE   # the bill day: always WeChat Pay's (Beijing time)
    retry_every: timedelta = timedelta(minutes=30)
    wait_at_most: timedelta = timedelta(days=2)


class BillFetch(BaseModel):
    day: str
    exists: bool                      # False: WeChat Pay answered NO_STATEMENT_EXIST
    hash_value: str | None = None
    rows: int = 0
    payments_fen: int = 0
    refunds_fen: int = 0


class RunResult(BaseModel):
    day: str
    attempt: int
    status: str                       # clean | differences | bill_unavailable
    bill_exists: bool = False
    matched: int = 0
    differences: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)
    bill_net_fen: int = 0
    ledger_net_fen: int = 0


class ReconciliationProgress(BaseModel):
    day: str
    attempt: int = 1
    status: str                       # scheduled | delegated | fetching | waiting_for_bill | comparing |
                                      # clean | differences | bill_unavailable | already_run
    bill_requests: int = 0
    waiting_since: datetime | None = None
    note: str = ""
    delegated_to: str | None = None
    result: RunResult | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
