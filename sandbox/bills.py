"""WeChat Pay v3 bills: 申请交易账单 / 申请资金账单 and the bill download, built from the
sandbox's own payments and refunds of the day (Asia/Shanghai, cut at 00:00).

* `GET /v3/bill/tradebill?bill_date=YYYY-MM-DD&bill_type=ALL|SUCCESS|REFUND[&tar_type=GZIP]`
* `GET /v3/bill/fundflowbill?bill_date=YYYY-MM-DD&account_type=BASIC|OPERATION|FEES[&tar_type=GZIP]`
  answer (signed, like every 2xx) `{hash_type: "SHA1", hash_value, download_url}`; the hash is
  of the uncompressed file;
* `GET /v3/billdownload/file?token=...` serves the file (signed request, unsigned answer, as the
  real one: the SDK's verification does not apply), gzip-compressed when asked.

As WeChat Pay: a day's bill exists from about 10:00 the next day (`400 STATEMENT_CREATING
账单生成中` before); a day without payments or refunds (or a future day) has none
(`400 NO_STATEMENT_EXIST 请求的账单文件不存在`). Once the day is over the file is a snapshot:
asked again, the same bytes (refund states in it do not move).

Controls (the merchant's bad days, for tests and demos):
* `PUT /sandbox/bills/config` `{publish: "next_day"|"immediate", not_ready_times: N}`: publish
  bills at once (even today's, unfrozen), or answer STATEMENT_CREATING to the next N requests;
* `POST /sandbox/bills/tamper` `{out_trade_no | out_refund_no, amount_fen?, refund_status?, drop?}`:
  the bill shows that record with another amount / refund state, or not at all;
* `POST /sandbox/bills/offline-payment` `{out_trade_no, amount_fen}`: a payment collected on the
  merchant's account that no JSAPI order of ours made (a cashier's QR code, say), never notified.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import secrets
import string
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, Field, StrictInt

from sandbox.context import CST, Sandbox, now_cst
from sandbox.refunds import REFUND
from sandbox.wechatpay import (
    ORDER,
    TRANSACTION_ID,
    WeChatPayError,
    authenticate_request,
)

BILL_FILE = "wechatpay.bill_file"
BILL_SNAPSHOT = "wechatpay.bill_snapshot"
TAMPER = "wechatpay.bill_tamper"
CONFIG = "wechatpay.bill_config"
PUBLISH_HOUR = 10
FEE_RATE = Decimal("0.006")  # 0.60%, WeChat Pay's usual rate
RATE_TEXT = "0.60%"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

ALL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
              "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
              "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
SUCCESS_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                  "货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注")
REFUND_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                 "货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
                 "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
FUND_HEADER = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,资金变更提交申请人,备注,业务凭证号"
FUND_SUMMARY_HEADER = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额"


class BillConfig(BaseModel):
    publish: Literal["next_day", "immediate"] = Field(
        default="next_day", description="next_day: from 10:00 the day after, as WeChat Pay; immediate: at once")
    not_ready_times: int = Field(default=0, ge=0, description="answer STATEMENT_CREATING to the next N requests")


class TamperRequest(BaseModel):
    out_trade_no: str | None = None
    out_refund_no: str | None = None
    amount_fen: StrictInt | None = Field(default=None, ge=0)
    refund_status: Literal["SUCCESS", "PROCESSING", "ABNORMAL", "CLOSED"] | None = None
    drop: bool = False


class OfflinePayment(BaseModel):
    out_trade_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*]{6,32}$")
    amount_fen: StrictInt = Field(gt=0)
    openid: str = "o_offline_payer"
    description: str = "线下收款"


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _fee_fen(amount_fen: int) -> int:
    return int((Decimal(amount_fen) * FEE_RATE).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _fee(fen: int) -> str:
    return f"{_yuan(fen)}000"  # five decimals of yuan: WeChat Pay rounds fees to the fen


def _local(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(CST)


def _stamp(iso: str | None) -> str:
    return _local(iso).strftime("%Y-%m-%d %H:%M:%S") if iso else ""


def _line(fields: list[Any]) -> str:
    return ",".join(f"`{f}" for f in fields)


class _Day:
    """What happened at WeChat Pay on one day, with the tampering applied."""

    def __init__(self, sb: Sandbox, day: date):
        tamper = dict(sb.store.items(TAMPER))
        self.payments: list[dict[str, Any]] = []
        self.refunds: list[dict[str, Any]] = []
        for order in sb.store.all(ORDER):
            if order.get("success_time") and _local(order["success_time"]).date() == day:
                t = tamper.get(f"pay:{order['out_trade_no']}", {})
                if not t.get("drop"):
                    amount = t.get("amount_fen") if t.get("amount_fen") is not None else order["amount"]["total"]
                    self.payments.append(order | {"bill_amount": amount})
        orders = {o["out_trade_no"]: o for o in sb.store.all(ORDER)}
        for refund in sb.store.all(REFUND):
            if _local(refund["create_time"]).date() == day:
                t = tamper.get(f"refund:{refund['out_refund_no']}", {})
                if not t.get("drop"):
                    amount = t.get("amount_fen") if t.get("amount_fen") is not None else refund["amount"]["refund"]
                    self.refunds.append(refund | {"bill_amount": amount,
                                                  "bill_status": t.get("refund_status") or refund["status"],
                                                  "order": orders.get(refund["out_trade_no"], {})})
        self.payments.sort(key=lambda o: o["success_time"])
        self.refunds.sort(key=lambda r: r["create_time"])

    def trade_bill(self, sb: Sandbox, bill_type: str) -> str | None:
        mchid = sb.credentials.mchid
        pays = self.payments if bill_type in ("ALL", "SUCCESS") else []
        refs = self.refunds if bill_type in ("ALL", "REFUND") else []
        if not pays and not refs:
            return None
        header = {"ALL": ALL_HEADER, "SUCCESS": SUCCESS_HEADER, "REFUND": REFUND_HEADER}[bill_type]
        lines = [header]
        fees = 0
        for o in pays:
            amount, fee = o["bill_amount"], _fee_fen(o["bill_amount"])
            fees += fee
            head = [_stamp(o["success_time"]), o["appid"], mchid, "0", "", o["transaction_id"], o["out_trade_no"],
                    o["payer"]["openid"], "JSAPI", "SUCCESS", "OTHERS", "CNY", _yuan(amount), "0.00"]
            tail = [o["description"], o.get("attach", ""), _fee(fee), RATE_TEXT, _yuan(amount)]
            if bill_type == "ALL":
                lines.append(_line(head + ["0", "0", "0.00", "0.00", "", ""] + tail + ["0.00", ""]))
            else:
                lines.append(_line(head + tail + [""]))
        for r in refs:
            o, amount = r["order"], r["bill_amount"]
            fee = -_fee_fen(amount)
            fees += fee
            head = [_stamp(r["create_time"]), o.get("appid", sb.credentials.appid), mchid, "0", "", r["transaction_id"],
                    r["out_trade_no"], o.get("payer", {}).get("openid", ""), "JSAPI", "REFUND", "OTHERS", "CNY",
                    "0.00", "0.00"]
            refund = [r["refund_id"], r["out_refund_no"], _yuan(amount), "0.00", "ORIGINAL", r["bill_status"]]
            tail = [o.get("description", ""), o.get("attach", ""), _fee(fee), RATE_TEXT, "0.00", _yuan(amount), ""]
            if bill_type == "ALL":
                lines.append(_line(head + refund + tail))
            else:
                lines.append(_line(head + [_stamp(r["create_time"]), _stamp(r.get("success_time"))] + refund + tail))
        paid = sum(o["bill_amount"] for o in pays)
        refunded = sum(r["bill_amount"] for r in refs)
        lines.append(SUMMARY_HEADER)
        lines.append(_line([len(pays) + len(refs), _yuan(paid), _yuan(refunded), "0.00", _fee(fees), _yuan(paid),
                            _yuan(refunded)]))
        return "\r\n".join(lines) + "\r\n"

    def fundflow_bill(self, account_type: str) -> str | None:
        """The basic account's money in (payments, less fees) and out (successful refunds)."""
        if account_type != "BASIC":
            return None
        moves: list[tuple[str, str, str, str, int]] = []
        for o in self.payments:
            moves.append((o["success_time"], o["transaction_id"], "交易", "收入", o["bill_amount"]))
            moves.append((o["success_time"], o["transaction_id"], "扣除交易手续费", "支出", _fee_fen(o["bill_amount"])))
        for r in self.refunds:
            if r["bill_status"] == "SUCCESS":
                moves.append((r.get("success_time") or r["create_time"], r["refund_id"], "退款", "支出", r["bill_amount"]))
        moves = [m for m in moves if m[4]]
        if not moves:
            return None
        moves.sort(key=lambda m: m[0])
        lines, balance = [FUND_HEADER], 0
        for n, (at, ref, kind, direction, fen) in enumerate(moves, 1):
            balance += fen if direction == "收入" else -fen
            lines.append(_line([_stamp(at), ref, f"{ref[-20:]}{n:06d}", kind, kind, direction, _yuan(fen),
                                _yuan(balance), "system", "", ref]))
        income = [m for m in moves if m[3] == "收入"]
        spent = [m for m in moves if m[3] == "支出"]
        lines.append(FUND_SUMMARY_HEADER)
        lines.append(_line([len(moves), len(income), _yuan(sum(m[4] for m in income)), len(spent),
                            _yuan(sum(m[4] for m in spent))]))
        return "\r\n".join(lines) + "\r\n"


def install(app: FastAPI, sb: Sandbox) -> None:
    api = APIRouter(prefix="/v3", tags=["wechatpay v3 bills"])
    control = APIRouter(prefix="/sandbox/bills", tags=["sandbox controls"])

    def config() -> BillConfig:
        return BillConfig.model_validate(sb.store.get(CONFIG, "config") or {})

    def bill_day(text: str | None) -> date:
        if not text or not _DAY.match(text):
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: bill_date 格式应为 YYYY-MM-DD",
                                 {"location": "query", "field": "bill_date", "issue": "format"})
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: bill_date 不是有效日期") from None

    def check_ready(day: date) -> bool:
        """Raises as WeChat Pay does for a bill not made (yet); True when the day is over
        and published (its file is then a snapshot)."""
        now = now_cst()
        if day > now.date():
            raise WeChatPayError(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在")
        cfg = config()
        if cfg.not_ready_times:
            sb.store.put(CONFIG, "config", cfg.model_copy(update={"not_ready_times": cfg.not_ready_times - 1})
                         .model_dump())
            raise WeChatPayError(400, "STATEMENT_CREATING", "账单生成中")
        published = now >= datetime(day.year, day.month, day.day, PUBLISH_HOUR, tzinfo=CST) + timedelta(days=1)
        if not published and cfg.publish != "immediate":
            raise WeChatPayError(400, "STATEMENT_CREATING", "账单生成中")
        return day < now.date()

    def answer(request: Request, snapshot_key: str, frozen: bool, make) -> Response:
        text = None
        if frozen:
            kept = sb.store.get(BILL_SNAPSHOT, snapshot_key)
            text = kept["text"] if kept else None
        if text is None:
            text = make()
            if text is None:
                raise WeChatPayError(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在")
            if frozen:
                sb.store.put(BILL_SNAPSHOT, snapshot_key, {"text": text})
        tar = request.query_params.get("tar_type")
        if tar not in (None, "GZIP"):
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: tar_type 仅支持 GZIP")
        token = secrets.token_urlsafe(32)
        sb.store.put(BILL_FILE, token, {"text": text, "gzip": tar == "GZIP", "created": now_cst().isoformat()})
        url = f"{str(request.base_url).rstrip('/')}/v3/billdownload/file?token={token}"
        if tar == "GZIP":
            url += "&tartype=gzip"
        return sb.platform_signed(200, {"hash_type": "SHA1",
                                        "hash_value": hashlib.sha1(text.encode()).hexdigest(),
                                        "download_url": url})

    @api.get("/bill/tradebill")
    async def trade_bill(request: Request, bill_date: str | None = None, bill_type: str = "ALL"):
        await authenticate_request(sb, request)
        day = bill_day(bill_date)
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: bill_type 应为 ALL、SUCCESS 或 REFUND")
        frozen = check_ready(day)
        return answer(request, f"trade:{day}:{bill_type}", frozen, lambda: _Day(sb, day).trade_bill(sb, bill_type))

    @api.get("/bill/fundflowbill")
    async def fundflow_bill(request: Request, bill_date: str | None = None, account_type: str = "BASIC"):
        await authenticate_request(sb, request)
        day = bill_day(bill_date)
        if account_type not in ("BASIC", "OPERATION", "FEES"):
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: account_type 应为 BASIC、OPERATION 或 FEES")
        frozen = check_ready(day)
        return answer(request, f"fund:{day}:{account_type}", frozen, lambda: _Day(sb, day).fundflow_bill(account_type))

    @api.get("/billdownload/file")
    async def download(request: Request, token: str | None = None):
        await authenticate_request(sb, request)
        kept = sb.store.get(BILL_FILE, token or "")
        if kept is None:
            raise WeChatPayError(400, "INVALID_REQUEST", "账单下载链接无效或已过期")
        data = kept["text"].encode()
        if kept["gzip"]:
            return Response(gzip.compress(data, mtime=0), 200, media_type="application/octet-stream")
        return Response(data, 200, media_type="text/plain; charset=utf-8")

    # --- controls ---------------------------------------------------------------------------
    @control.get("/config")
    async def get_config() -> BillConfig:
        return config()

    @control.put("/config")
    async def put_config(cfg: BillConfig) -> BillConfig:
        sb.store.put(CONFIG, "config", cfg.model_dump())
        return cfg

    @control.post("/tamper")
    async def tamper(req: TamperRequest) -> dict[str, Any]:
        if bool(req.out_trade_no) == bool(req.out_refund_no):
            raise WeChatPayError(400, "PARAM_ERROR", "out_trade_no 和 out_refund_no 必须二选一")
        key = f"pay:{req.out_trade_no}" if req.out_trade_no else f"refund:{req.out_refund_no}"
        sb.store.put(TAMPER, key, req.model_dump(exclude_none=True))
        for snapshot_key, _ in sb.store.items(BILL_SNAPSHOT):   # the next bill shows the change
            sb.store.delete(BILL_SNAPSHOT, snapshot_key)
        return {"tampered": key, **req.model_dump(exclude_none=True)}

    @control.post("/offline-payment")
    async def offline_payment(req: OfflinePayment) -> dict[str, Any]:
        if sb.store.get(ORDER, req.out_trade_no) is not None:
            raise WeChatPayError(400, "INVALID_REQUEST", "商户订单号重复")
        now = now_cst()
        transaction_id = "4200" + now.strftime("%Y%m%d") + "".join(secrets.choice(string.digits) for _ in range(16))
        sb.store.put(ORDER, req.out_trade_no, {
            "appid": sb.credentials.appid, "mchid": sb.credentials.mchid, "description": req.description,
            "out_trade_no": req.out_trade_no, "notify_url": "", "amount": {"total": req.amount_fen, "currency": "CNY"},
            "payer": {"openid": req.openid}, "prepay_id": "", "trade_state": "SUCCESS", "create_time": now.isoformat(),
            "transaction_id": transaction_id, "success_time": now.isoformat(), "notify_delivered": True,
            "notify_attempts": []})
        sb.store.put(TRANSACTION_ID, transaction_id, {"out_trade_no": req.out_trade_no})
        return {"out_trade_no": req.out_trade_no, "transaction_id": transaction_id}

    app.include_router(api)
    app.include_router(control)
