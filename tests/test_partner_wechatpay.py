"""Refunds, profit sharing, merchant transfer bills and injected faults: the unmodified
`wechatpayv3` library (raw and through `WeChatPayClient`) against the in-process sandbox, every
2xx response signature checked by the library, every notification verified and decrypted."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request, Response
from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType
from wechatpayv3.utils import build_authorization, load_private_key

from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations import http as http_module
from integrations.http import clear_routes, make_client, route_to_app
from integrations.wechatpay import (
    Refund,
    SplitReceiver,
    Transaction,
    TransferBill,
    WeChatPayClient,
)
from sandbox.app import create_app
from tests.helpers import routed_client
from sandbox.credentials import SandboxCredentials, load_or_create
from sandbox.faults import FaultConfig
from sandbox.signing import rsa_verify
from settings import Settings

SANDBOX = "http://sandbox.test"
API = "http://api.test"
BUYER = "oBuyer000000000000000000000001"
PROMOTER = "oPromoter0000000000000000000001"


class Receiver:
    def __init__(self):
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.app = FastAPI()

        @self.app.post("/webhooks/wechatpay")
        async def webhook(request: Request):
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=200)

    def events(self) -> list[str]:
        return [json.loads(body)["event_type"] for _, body in self.received]


@pytest.fixture(autouse=True)
def _restore_routes():
    """Other test files share the session's routes (the stack's sandbox and API): put them back."""
    saved = dict(http_module._routes)
    yield
    http_module._routes.clear()
    http_module._routes.update(saved)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("data"), sandbox_url=SANDBOX,
                    public_base_url=API, wechatpay_mchid=None, wechatpay_base_url=None)


@pytest.fixture(scope="module")
def creds(settings) -> SandboxCredentials:
    return load_or_create(settings.sandbox_dir)


def start(creds, settings, **app_kwargs):
    app_kwargs.setdefault("settle_delay", None)
    app_kwargs.setdefault("notify_retry_scale", 0.001)
    app = create_app(creds, callback_client=routed_client, **app_kwargs)
    receiver = Receiver()
    route_to_app(SANDBOX, app)
    route_to_app(API, receiver.app)
    return app, receiver


@pytest.fixture
async def env(creds, settings):
    app, receiver = start(creds, settings)
    async with WeChatPayClient.from_settings(settings) as client:
        yield SimpleNamespace(app=app, receiver=receiver, client=client, sb=app.state.sandbox)
    await app.state.sandbox.cancel_tasks()
    clear_routes()


async def control(method: str, path: str, **kwargs):
    async with make_client(SANDBOX) as http:
        return await http.request(method, path, **kwargs)


async def paid_order(client: WeChatPayClient, out_trade_no: str, total: int) -> str:
    await client.create_jsapi(out_trade_no, "橱窗-商品", total, BUYER)
    paid = (await control("POST", f"/sandbox/pay/{out_trade_no}")).json()
    return paid["transaction_id"]


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def raw_library(creds: SandboxCredentials, *, public_key: str | None = None) -> AsyncWeChatPay:
    pay = AsyncWeChatPay(
        WeChatPayType.JSAPI, mchid=creds.mchid, private_key=creds.merchant_private_key_pem,
        cert_serial_no=creds.merchant_cert_serial_no, appid=creds.appid, apiv3_key=creds.apiv3_key,
        notify_url=API + "/webhooks/wechatpay", public_key=public_key or creds.platform_public_key_pem,
        public_key_id=creds.platform_public_key_id,
    )
    pay._core._gate_way = SANDBOX
    pay._core._client = make_client(SANDBOX)
    return pay


@functools.cache
def impostor_public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def notices(env, event_prefix: str) -> list[dict]:
    out = []
    for headers, body in env.receiver.received:
        if json.loads(body)["event_type"].startswith(event_prefix):
            parsed = env.client.parse_notification(headers, body)
            assert parsed is not None, "every sandbox notification must verify and decrypt"
            out.append(parsed)
    return out


# --- refunds --------------------------------------------------------------------------------


async def test_refund_lifecycle(env, creds):
    client = env.client
    txn_id = await paid_order(client, "RF20240001", 1000)

    first = await client.refund("RFD0001", refund_fen=300, total_fen=1000, out_trade_no="RF20240001", reason="退货")
    assert (first.status, first.amount.refund, first.transaction_id, first.final) == ("PROCESSING", 300, txn_id, False)
    again = await client.refund("RFD0001", refund_fen=300, total_fen=1000, out_trade_no="RF20240001")
    assert again.refund_id == first.refund_id  # idempotent by out_refund_no
    with pytest.raises(PartnerRejected) as changed:
        await client.refund("RFD0001", refund_fen=301, total_fen=1000, out_trade_no="RF20240001")
    assert (changed.value.code, changed.value.status) == ("INVALID_REQUEST", 400)

    queried: Transaction = await client.query("RF20240001")
    assert (queried.trade_state, queried.paid) == ("REFUND", True)

    # 申请退款 (https://pay.weixin.qq.com/wiki/doc/apiv3/apis/chapter3_1_9.shtml): more than is left
    # to refund is 400 INVALID_REQUEST "申请退款金额超过订单可退金额"; NOT_ENOUGH (403) is the merchant
    # balance being short (test_refund_with_the_merchant_balance_short_is_403_not_enough)
    with pytest.raises(PartnerRejected) as too_much:
        await client.refund("RFD0002", refund_fen=701, total_fen=1000, transaction_id=txn_id)
    assert (too_much.value.code, too_much.value.status) == ("INVALID_REQUEST", 400)
    assert "申请退款金额超过订单可退金额" in too_much.value.message
    rest = await client.refund("RFD0002", refund_fen=700, total_fen=1000, transaction_id=txn_id)
    assert rest.status == "PROCESSING"

    settled = (await control("POST", "/sandbox/refunds/RFD0001/settle")).json()
    assert settled["status"] == "SUCCESS" and settled["success_time"]
    done = await client.query_refund("RFD0001")
    assert done.status == "SUCCESS" and done.final and done.success_time.utcoffset().total_seconds() == 8 * 3600
    again = await control("POST", "/sandbox/refunds/RFD0001/settle")
    assert again.status_code == 400

    await wait_for(lambda: len(env.receiver.received) >= 2)  # payment + refund notifications
    (notice,) = notices(env, "REFUND.")
    assert notice["event_type"] == "REFUND.SUCCESS" and notice["summary"] == "退款成功"
    assert notice["resource"]["mchid"] == creds.mchid
    assert json.loads(env.receiver.received[-1][1])["resource"]["original_type"] == "refund"
    refund = Refund.model_validate(notice["resource"])
    assert (refund.out_refund_no, refund.status, refund.amount.refund, refund.amount.payer_refund) == (
        "RFD0001", "SUCCESS", 300, 300)

    code, body = await raw_library(creds).query_refund(out_refund_no="RFD0002")
    assert code == 200 and json.loads(body)["status"] == "PROCESSING"
    with pytest.raises(PartnerRejected) as missing:
        await client.query_refund("RFD_NOPE")
    assert (missing.value.code, missing.value.status) == ("RESOURCE_NOT_EXISTS", 404)


async def test_refund_of_unpaid_order_and_bad_amounts(env):
    await env.client.create_jsapi("RF20240002", "goods", 500, BUYER)
    with pytest.raises(PartnerRejected) as unpaid:
        await env.client.refund("RFD0003", refund_fen=100, total_fen=500, out_trade_no="RF20240002")
    assert unpaid.value.code == "INVALID_REQUEST"
    await control("POST", "/sandbox/pay/RF20240002")
    with pytest.raises(PartnerRejected) as wrong_total:
        await env.client.refund("RFD0003", refund_fen=100, total_fen=499, out_trade_no="RF20240002")
    assert wrong_total.value.code == "PARAM_ERROR"
    with pytest.raises(ValueError):
        await env.client.refund("RFD0003", refund_fen=0, total_fen=500, out_trade_no="RF20240002")


async def test_refund_end_states_abnormal_and_closed(env):
    await paid_order(env.client, "RF20240003", 900)
    await control("PUT", "/sandbox/faults", json={"refund_outcome": "ABNORMAL"})
    await env.client.refund("RFD0004", refund_fen=100, total_fen=900, out_trade_no="RF20240003")
    await control("POST", "/sandbox/refunds/RFD0004/settle")
    assert (await env.client.query_refund("RFD0004")).status == "ABNORMAL"

    await env.client.refund("RFD0005", refund_fen=100, total_fen=900, out_trade_no="RF20240003")
    await control("POST", "/sandbox/refunds/RFD0005/settle", json={"status": "CLOSED"})
    assert (await env.client.query_refund("RFD0005")).status == "CLOSED"
    # a CLOSED refund frees its amount again; the ABNORMAL one still holds its 100
    assert (await env.client.refund("RFD0006", refund_fen=800, total_fen=900, out_trade_no="RF20240003")).status == "PROCESSING"

    await wait_for(lambda: len(env.receiver.received) >= 3)
    events = [n["event_type"] for n in notices(env, "REFUND.")]
    assert events == ["REFUND.ABNORMAL", "REFUND.CLOSED"]
    assert [Refund.model_validate(n["resource"]).status for n in notices(env, "REFUND.")] == ["ABNORMAL", "CLOSED"]


async def test_refund_settles_on_its_own_after_the_delay(creds, settings):
    app, receiver = start(creds, settings, settle_delay=0.01)
    try:
        async with WeChatPayClient.from_settings(settings) as client:
            await paid_order(client, "RF20240004", 100)
            await client.refund("RFD0007", refund_fen=100, total_fen=100, out_trade_no="RF20240004")
            await wait_for(lambda: "REFUND.SUCCESS" in receiver.events())
            assert (await client.query_refund("RFD0007")).status == "SUCCESS"
    finally:
        await app.state.sandbox.cancel_tasks()
        clear_routes()


# --- profit sharing -------------------------------------------------------------------------


async def test_split_cap_settle_unfreeze(env, creds):
    client = env.client
    txn_id = await paid_order(client, "PS20240001", 1000)
    line = SplitReceiver(account=PROMOTER, amount=200, description="带货佣金")

    with pytest.raises(PartnerRejected) as unknown:
        await client.split(txn_id, "PSO0001", [line])
    assert unknown.value.code == "INVALID_REQUEST"

    added = await client.add_receiver(PROMOTER, name="张三")  # name goes RSA-encrypted
    assert (added.type, added.account, added.relation_type) == ("PERSONAL_OPENID", PROMOTER, "DISTRIBUTOR")

    order = await client.split(txn_id, "PSO0001", [line])
    assert order.state == "PROCESSING" and [r.result for r in order.receivers] == ["PENDING"]
    assert (await client.split(txn_id, "PSO0001", [line])).order_id == order.order_id  # idempotent
    with pytest.raises(PartnerRejected) as changed:
        await client.split(txn_id, "PSO0001", [line.model_copy(update={"amount": 201})])
    assert changed.value.code == "INVALID_REQUEST"

    # 30% of 1000 may be split: 200 taken, 101 more is over the cap, 100 is not
    with pytest.raises(PartnerRejected) as capped:
        await client.split(txn_id, "PSO0002", [line.model_copy(update={"amount": 101})])
    assert (capped.value.code, capped.value.status) == ("INVALID_REQUEST", 400)
    assert await client.unsplit_amount(txn_id) == 800

    with pytest.raises(PartnerRejected) as busy:
        await client.unfreeze(txn_id, "PSU0001", "解冻")
    assert busy.value.code == "INVALID_REQUEST"
    await control("POST", "/sandbox/profitsharing/PSO0001/settle")
    finished = await client.query_split(txn_id, "PSO0001")
    assert finished.state == "FINISHED" and finished.receivers[0].result == "SUCCESS"
    assert finished.receivers[0].finish_time is not None

    unfrozen = await client.unfreeze(txn_id, "PSU0001", "分账完成，解冻剩余资金")
    assert unfrozen.state == "FINISHED"
    assert [(r.type, r.account, r.amount) for r in unfrozen.receivers] == [("MERCHANT_ID", creds.mchid, 800)]
    assert await client.unsplit_amount(txn_id) == 0
    with pytest.raises(PartnerRejected):
        await client.split(txn_id, "PSO0003", [line.model_copy(update={"amount": 50})])

    await client.delete_receiver(PROMOTER)
    txn2 = await paid_order(client, "PS20240002", 1000)
    with pytest.raises(PartnerRejected):
        await client.split(txn2, "PSO0004", [line])
    with pytest.raises(PartnerRejected) as missing:
        await client.query_split(txn_id, "PSO_NOPE")
    assert missing.value.status == 404


async def test_split_closed_receiver_and_unfreeze_unsplit(env):
    client = env.client
    txn_id = await paid_order(client, "PS20240003", 1000)
    await client.add_receiver(PROMOTER)
    await client.split(txn_id, "PSO0005", [SplitReceiver(account=PROMOTER, amount=300, description="佣金")],
                       unfreeze_unsplit=True)
    closed = (await control("POST", "/sandbox/profitsharing/PSO0005/settle", json={"result": "CLOSED"})).json()
    assert closed["state"] == "FINISHED"
    assert closed["receivers"][0]["result"] == "CLOSED" and closed["receivers"][0]["fail_reason"]
    order = await client.query_split(txn_id, "PSO0005")
    # the closed share went back, and unfreeze_unsplit handed all 1000 back to the merchant
    assert [(r.type, r.amount, r.result) for r in order.receivers] == [
        ("PERSONAL_OPENID", 300, "CLOSED"), ("MERCHANT_ID", 1000, "SUCCESS")]
    assert await client.unsplit_amount(txn_id) == 0


async def test_split_return_to_merchant_receiver(env):
    client = env.client
    txn_id = await paid_order(client, "PS20240004", 2000)
    supplier = "1900000109"
    await client.add_receiver(supplier, type="MERCHANT_ID", relation_type="SUPPLIER", name="某某供应链有限公司")
    await client.split(txn_id, "PSO0006", [SplitReceiver(type="MERCHANT_ID", account=supplier, amount=500,
                                                          description="供货分账", name="某某供应链有限公司")])
    await control("POST", "/sandbox/profitsharing/PSO0006/settle")

    ret = await client.return_split("PSO0006", "PSR0001", supplier, 300, "用户退款")
    assert (ret.result, ret.amount, ret.return_mchid) == ("SUCCESS", 300, supplier)
    assert (await client.return_split("PSO0006", "PSR0001", supplier, 300, "用户退款")).return_id == ret.return_id
    # 请求分账回退 (https://pay.weixin.qq.com/doc/v3/partner/4012467097): more than is left to take
    # back is 400 INVALID_REQUEST "剩余可回退的金额不足", not NOT_ENOUGH (a short balance, 403)
    with pytest.raises(PartnerRejected) as too_much:
        await client.return_split("PSO0006", "PSR0002", supplier, 201, "用户退款")
    assert (too_much.value.code, too_much.value.status) == ("INVALID_REQUEST", 400)
    assert "剩余可回退的金额不足" in too_much.value.message
    assert (await client.query_return("PSO0006", "PSR0001")).return_id == ret.return_id


async def test_only_a_payment_ordered_for_profit_sharing_can_be_split(env, creds):
    """WeChat Pay freezes a payment for splitting only when the JSAPI order said
    settle_info.profit_sharing=true; our client always says so unless configured off."""
    pay = raw_library(creds)
    code, _ = await pay.pay(description="goods", out_trade_no="PS20240009", amount={"total": 800},
                            payer={"openid": BUYER})
    assert code == 200
    txn_id = (await control("POST", "/sandbox/pay/PS20240009")).json()["transaction_id"]
    await env.client.add_receiver(PROMOTER)
    with pytest.raises(PartnerRejected) as refused:
        await env.client.split(txn_id, "PSO0009", [SplitReceiver(account=PROMOTER, amount=100, description="佣金")])
    assert refused.value.code == "INVALID_REQUEST" and "profit_sharing" in refused.value.message
    with pytest.raises(PartnerRejected):
        await env.client.unfreeze(txn_id, "PSU0009", "解冻")

    ours = await paid_order(env.client, "PS20240010", 800)
    assert env.sb.store.get("wechatpay.order", "PS20240010")["settle_info"] == {"profit_sharing": True}
    split = await env.client.split(ours, "PSO0010", [SplitReceiver(account=PROMOTER, amount=100, description="佣金")])
    assert split.state == "PROCESSING"


async def test_add_receiver_refuses_a_name_not_encrypted_for_the_platform(env, creds):
    pay = raw_library(creds, public_key=impostor_public_key())
    pay._core._public_key_id = creds.platform_public_key_id  # encrypts with the wrong key
    code, body = await pay.profitsharing_add_receiver("MERCHANT_ID", "1900000109", "SUPPLIER", name="某公司")
    assert code == 400 and json.loads(body)["code"] == "PARAM_ERROR"


# --- merchant transfer bills ----------------------------------------------------------------


async def test_transfer_user_confirms(env, creds):
    client = env.client
    bill = await client.create_transfer("TB20240001", PROMOTER, 1500, "11月佣金")
    assert bill.state == "WAIT_USER_CONFIRM" and bill.package_info and len(bill.transfer_bill_no) == 40
    assert (await client.create_transfer("TB20240001", PROMOTER, 1500, "11月佣金")).transfer_bill_no == bill.transfer_bill_no
    with pytest.raises(PartnerRejected) as changed:
        await client.create_transfer("TB20240001", PROMOTER, 1600, "11月佣金")
    assert changed.value.code == "INVALID_REQUEST"

    confirmed = (await control("POST", "/sandbox/transfers/TB20240001/confirm")).json()
    assert confirmed["state"] == "SUCCESS"
    queried = await client.query_transfer("TB20240001")
    assert (queried.state, queried.transfer_amount, queried.openid, queried.final) == ("SUCCESS", 1500, PROMOTER, True)
    with pytest.raises(PartnerRejected) as late:
        await client.cancel_transfer("TB20240001")
    assert late.value.code == "INVALID_REQUEST"

    await wait_for(lambda: "MCHTRANSFER.BILL.FINISHED" in env.receiver.events())
    (notice,) = notices(env, "MCHTRANSFER.")
    assert json.loads(env.receiver.received[-1][1])["resource"]["original_type"] == "mch_payment"
    finished = TransferBill.model_validate(notice["resource"])
    assert (finished.out_bill_no, finished.state, finished.transfer_bill_no) == ("TB20240001", "SUCCESS", bill.transfer_bill_no)
    # 商家转账回调通知 / 商户单号查询转账单 (WeChat Pay merchant docs) name the merchant `mch_id`
    assert notice["resource"]["mch_id"] == creds.mchid and "mchid" not in notice["resource"]
    assert finished.mchid == creds.mchid and queried.mchid == creds.mchid


async def test_refund_with_the_merchant_balance_short_is_403_not_enough(env):
    """申请退款 (https://pay.weixin.qq.com/wiki/doc/apiv3/apis/chapter3_1_9.shtml): 403 NOT_ENOUGH
    余额不足 is the merchant account's balance, not the order's refundable rest."""
    client = env.client
    txn_id = await paid_order(client, "RF20240009", 1000)
    env.sb.faults.set(FaultConfig(balance_short=["refund"]))
    with pytest.raises(PartnerRejected) as short:
        await client.refund("RFD0009", refund_fen=100, total_fen=1000, transaction_id=txn_id)
    assert (short.value.code, short.value.status) == ("NOT_ENOUGH", 403)
    assert "余额不足" in short.value.message
    env.sb.faults.set(FaultConfig())  # topped up: the same refund goes through
    assert (await client.refund("RFD0009", refund_fen=100, total_fen=1000, transaction_id=txn_id)).status == "PROCESSING"


async def test_split_return_with_the_receiver_balance_short_is_403_not_enough(env, creds):
    """请求分账回退 (https://pay.weixin.qq.com/doc/v3/partner/4012467097) and as merchants meet it
    (https://developers.weixin.qq.com/community/pay/doc/000e04ec2343e03247bd419a356000): a short
    balance is NOT_ENOUGH "可用余额不足，请充值后重新发起"."""
    client = env.client
    txn_id = await paid_order(client, "PS20240009", 2000)
    supplier = "1900000109"
    await client.add_receiver(supplier, type="MERCHANT_ID", relation_type="SUPPLIER", name="某某供应链有限公司")
    await client.split(txn_id, "PSO0009", [SplitReceiver(type="MERCHANT_ID", account=supplier, amount=500,
                                                          description="供货分账", name="某某供应链有限公司")])
    await control("POST", "/sandbox/profitsharing/PSO0009/settle")
    env.sb.faults.set(FaultConfig(balance_short=["profitsharing_return"]))
    with pytest.raises(PartnerRejected) as short:
        await client.return_split("PSO0009", "PSR0009", supplier, 100, "用户退款")
    assert (short.value.code, short.value.status) == ("NOT_ENOUGH", 403)
    env.sb.faults.set(FaultConfig())
    assert (await client.return_split("PSO0009", "PSR0009", supplier, 100, "用户退款")).result == "SUCCESS"


def test_transfer_bill_reads_both_spellings_of_the_merchant_id():
    """商户单号查询转账单 (https://pay.weixin.qq.com/docs/merchant/apis/mch-trans/transfer-bill/
    get-transfer-bill-by-out-no.html) says `mch_id`; https://wechatpay.js.org/webhook/v3/
    MCHTRANSFER.BILL.FINISHED shows `mchid`."""
    base = {"out_bill_no": "WD000000000001", "transfer_bill_no": "1330" + "0" * 36, "state": "SUCCESS"}
    assert TransferBill.model_validate(base | {"mch_id": "1900001109"}).mchid == "1900001109"
    assert TransferBill.model_validate(base | {"mchid": "1900001109"}).mchid == "1900001109"


async def test_transfer_cancel_fail_and_scene_rules(env, creds):
    client = env.client
    await client.create_transfer("TB20240002", PROMOTER, 100, "佣金")
    cancelled = await client.cancel_transfer("TB20240002")  # library POSTs with no body
    assert cancelled.state == "CANCELING"
    assert (await client.query_transfer("TB20240002")).state == "CANCELLED"
    assert (await client.cancel_transfer("TB20240002")).state == "CANCELING"  # repeat is harmless

    await client.create_transfer("TB20240003", PROMOTER, 100, "佣金")
    failed = (await control("POST", "/sandbox/transfers/TB20240003/fail", json={"fail_reason": "PAYEE_ACCOUNT_ABNORMAL"})).json()
    assert (failed["state"], failed["fail_reason"]) == ("FAIL", "PAYEE_ACCOUNT_ABNORMAL")
    assert (await client.query_transfer("TB20240003")).fail_reason == "PAYEE_ACCOUNT_ABNORMAL"

    with pytest.raises(PartnerRejected) as no_infos:
        await client.create_transfer("TB20240004", PROMOTER, 100, "奖励", scene_id="1000")
    assert no_infos.value.code == "PARAM_ERROR"
    with pytest.raises(PartnerRejected) as missing:
        await client.query_transfer("TB_NOPE1")
    assert (missing.value.code, missing.value.status) == ("NOT_FOUND", 404)

    await wait_for(lambda: len(env.receiver.received) >= 2)
    states = sorted(TransferBill.model_validate(n["resource"]).state for n in notices(env, "MCHTRANSFER."))
    assert states == ["CANCELLED", "FAIL"]


async def test_transfer_user_name_is_decrypted_and_checked_against_the_wechat_account(env, creds):
    """`user_name` travels RSA-OAEP encrypted with the platform public key named by
    Wechatpay-Serial; WeChat compares it with the account's real name."""
    client = env.client
    await control("PUT", f"/sandbox/transfers/real-names/{PROMOTER}", json={"name": "王小明"})
    right = await client.create_transfer("TB20240010", PROMOTER, 250_000, "佣金", user_name="王小明")
    assert right.state == "WAIT_USER_CONFIRM"
    wrong = await client.create_transfer("TB20240011", PROMOTER, 250_000, "佣金", user_name="王小红")
    assert (wrong.state, wrong.fail_reason) == ("FAIL", "NAME_NOT_CORRECT")

    pay = raw_library(creds, public_key=impostor_public_key())
    pay._core._public_key_id = creds.platform_public_key_id  # encrypts with the wrong key
    code, body = await pay.mch_transfer_bills("TB20240012", "1005", PROMOTER, 250_000, "佣金", user_name="王小明",
                                              transfer_scene_report_infos=[{"info_type": "岗位类型", "info_content": "推广员"},
                                                                           {"info_type": "报酬说明", "info_content": "佣金"}])
    assert code == 400 and "user_name" in json.loads(body)["message"]


async def test_transfer_the_user_never_confirms(creds, settings):
    app, receiver = start(creds, settings, settle_delay=0.01, faults=FaultConfig(transfer_never_confirms=True))
    try:
        async with WeChatPayClient.from_settings(settings) as client:
            await client.create_transfer("TB20240005", PROMOTER, 100, "佣金")
            await asyncio.sleep(0.05)
            assert (await client.query_transfer("TB20240005")).state == "WAIT_USER_CONFIRM"
            assert (await control("POST", "/sandbox/transfers/TB20240005/confirm")).status_code == 400
            await control("DELETE", "/sandbox/faults")
            await client.create_transfer("TB20240006", PROMOTER, 100, "佣金")  # auto-confirmed now
            await wait_for(lambda: receiver.events().count("MCHTRANSFER.BILL.FINISHED") == 1)
            assert (await client.query_transfer("TB20240006")).state == "SUCCESS"
            assert (await client.cancel_transfer("TB20240005")).state == "CANCELING"
    finally:
        await app.state.sandbox.cancel_tasks()
        clear_routes()


# --- signatures -----------------------------------------------------------------------------


async def test_new_endpoints_sign_responses_and_refuse_tampered_requests(env, creds):
    txn_id = await paid_order(env.client, "SG20240001", 100)
    wrong = raw_library(creds, public_key=impostor_public_key())
    for call in (
        wrong.query_refund(out_refund_no="RFD_X"),  # 404: not verified by the library, so skip
    ):
        code, _ = await call
        assert code == 404
    await env.client.refund("RFD0100", refund_fen=10, total_fen=100, transaction_id=txn_id)
    await env.client.create_transfer("TB20240100", PROMOTER, 100, "佣金")
    for call in (
        wrong.query_refund(out_refund_no="RFD0100"),
        wrong.profitsharing_amount_query(transaction_id=txn_id),
        wrong.mch_transfer_bills_query(out_bill_no="TB20240100"),
    ):
        with pytest.raises(Exception, match="failed to verify the signature"):
            await call

    path = "/v3/refund/domestic/refunds"
    body = {"out_refund_no": "RFD0101", "transaction_id": txn_id,
            "amount": {"refund": 10, "total": 100, "currency": "CNY"}}
    auth = build_authorization(path, "POST", creds.mchid, creds.merchant_cert_serial_no,
                               load_private_key(creds.merchant_private_key_pem), data=body)
    tampered = await control("POST", path, content=json.dumps({**body, "amount": {"refund": 90, "total": 100}}),
                             headers={"Authorization": auth, "Content-Type": "application/json"})
    assert tampered.status_code == 401 and tampered.json()["code"] == "SIGN_ERROR"
    # error answers are signed too
    h = tampered.headers
    assert rsa_verify(serialization.load_pem_public_key(creds.platform_public_key_pem.encode()),
                      f"{h['wechatpay-timestamp']}\n{h['wechatpay-nonce']}\n{tampered.text}\n", h["wechatpay-signature"])
    ok = await control("POST", path, content=json.dumps(body),
                       headers={"Authorization": auth, "Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json()["status"] == "PROCESSING"
    unsigned = await control("POST", "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/TB20240100/cancel")
    assert unsigned.status_code == 401


# --- faults ---------------------------------------------------------------------------------


async def test_endpoint_errors_are_retryable_and_seeded_deterministic(env):
    client = env.client
    txn_id = await paid_order(client, "FT20240001", 100)
    await control("PUT", "/sandbox/faults", json={"endpoints": [
        {"path": "/v3/refund/*", "error_rate": 1, "error_status": 429, "times": 1}]})
    with pytest.raises(PartnerUnavailable, match="429"):
        await client.refund("RFD0200", refund_fen=10, total_fen=100, transaction_id=txn_id)
    assert (await client.refund("RFD0200", refund_fen=10, total_fen=100, transaction_id=txn_id)).status == "PROCESSING"

    async def pattern(seed: int) -> list[bool]:
        await control("PUT", "/sandbox/faults", json={"seed": seed, "endpoints": [
            {"path": "/v3/refund/domestic/refunds/*", "method": "GET", "error_rate": 0.5}]})
        outcomes = []
        for _ in range(12):
            try:
                await client.query_refund("RFD0200")
                outcomes.append(True)
            except PartnerUnavailable:
                outcomes.append(False)
        return outcomes

    first = await pattern(7)
    assert first == await pattern(7) and True in first and False in first
    stats = (await control("GET", "/sandbox/faults")).json()["stats"]
    assert stats["error_500"] == first.count(False)
    await control("DELETE", "/sandbox/faults")
    assert (await client.query_refund("RFD0200")).status == "PROCESSING"


async def test_latency_and_timeout_after_processing(env, creds, settings):
    await control("PUT", "/sandbox/faults", json={"endpoints": [
        {"path": "/v3/fund-app/*", "method": "GET", "latency_ms": 60},
        {"path": "/v3/fund-app/mch-transfer/transfer-bills", "method": "POST", "timeout_seconds": 30, "times": 1}]})
    async with WeChatPayClient.from_settings(settings) as hasty:
        hasty.timeout = 0.2
        started = time.monotonic()
        with pytest.raises(PartnerUnavailable, match="timed out"):
            await hasty.create_transfer("TB20240200", PROMOTER, 100, "佣金")
        assert time.monotonic() - started < 2
        # the bill was created even though the answer never came: retrying is safe
        started = time.monotonic()
        bill = await hasty.query_transfer("TB20240200")
        assert time.monotonic() - started >= 0.05  # 60 ms injected
        again = await hasty.create_transfer("TB20240200", PROMOTER, 100, "佣金")
        assert again.transfer_bill_no == bill.transfer_bill_no


async def test_notification_drop_duplicate_bad_signature(env):
    client = env.client
    await control("PUT", "/sandbox/faults", json={"notifications": {"event_types": ["TRANSACTION.*"], "drop_rate": 1}})
    await client.create_jsapi("NF20240001", "goods", 100, BUYER)
    paid = (await control("POST", "/sandbox/pay/NF20240001")).json()
    assert (paid["delivered"], paid["status"]) == (False, 0) and env.receiver.received == []
    await control("DELETE", "/sandbox/faults")  # the network heals: the next attempt gets through
    resent = (await control("POST", "/sandbox/notify/NF20240001/resend")).json()
    assert resent["delivered"] is True
    await wait_for(lambda: len(env.receiver.received) >= 1)
    record = (await control("GET", "/sandbox/pay/NF20240001")).json()
    assert record["notify_attempts"][0]["status"] == 0 and record["notify_delivered"]
    assert notices(env, "TRANSACTION.")[0]["resource"]["out_trade_no"] == "NF20240001"

    await control("PUT", "/sandbox/faults", json={"notifications": {"event_types": ["REFUND.*"], "duplicate_rate": 1}})
    await client.refund("RFD0300", refund_fen=10, total_fen=100, out_trade_no="NF20240001")
    await control("POST", "/sandbox/refunds/RFD0300/settle")
    await wait_for(lambda: env.receiver.events().count("REFUND.SUCCESS") == 2)
    a, b = notices(env, "REFUND.")
    assert a["id"] == b["id"] and a["resource"] == b["resource"]

    await control("PUT", "/sandbox/faults", json={"notifications": {"invalid_signature_rate": 1}})
    await client.refund("RFD0301", refund_fen=10, total_fen=100, out_trade_no="NF20240001")
    await control("POST", "/sandbox/refunds/RFD0301/settle")
    await wait_for(lambda: env.receiver.events().count("REFUND.SUCCESS") == 3)
    headers, body = [r for r in env.receiver.received if json.loads(r[1])["event_type"] == "REFUND.SUCCESS"][-1]
    assert json.loads(body)["id"] not in (a["id"], b["id"])
    assert client.parse_notification(headers, body) is None


async def test_notifications_delayed_and_out_of_order(env):
    client = env.client
    await paid_order(client, "NF20240002", 1000)
    await control("PUT", "/sandbox/faults", json={"notifications": {"event_types": ["REFUND.*"], "out_of_order": True}})
    for no in ("RFD0400", "RFD0401", "RFD0402"):
        await client.refund(no, refund_fen=100, total_fen=1000, out_trade_no="NF20240002")
        await control("POST", f"/sandbox/refunds/{no}/settle")
    await asyncio.sleep(0.02)
    assert env.receiver.events() == ["TRANSACTION.SUCCESS"]
    held = (await control("GET", "/sandbox/notifications?event_type=REFUND.SUCCESS")).json()
    assert [n["held"] for n in held] == [True, True, True]
    released = (await control("POST", "/sandbox/notifications/release")).json()
    assert all(r["delivered"] for r in released)
    order = [Refund.model_validate(n["resource"]).out_refund_no for n in notices(env, "REFUND.")]
    assert order == ["RFD0402", "RFD0401", "RFD0400"]

    await control("PUT", "/sandbox/faults", json={"notifications": {"delay_seconds": 0.3}})
    await client.create_jsapi("NF20240003", "goods", 100, BUYER)
    assert (await control("POST", "/sandbox/pay/NF20240003")).json()["delivered"] is False
    await client.refund("RFD0403", refund_fen=100, total_fen=1000, out_trade_no="NF20240002")
    await control("POST", "/sandbox/refunds/RFD0403/settle")
    assert env.receiver.events().count("REFUND.SUCCESS") == 3  # not yet: 0.3 s to go
    await wait_for(lambda: env.receiver.events().count("REFUND.SUCCESS") == 4)
    await wait_for(lambda: env.receiver.events().count("TRANSACTION.SUCCESS") == 2)  # the delayed payment one


async def test_faults_from_the_constructor_and_admin_api_roundtrip(creds, settings):
    app, _ = start(creds, settings, faults=FaultConfig(seed=3, endpoints=[{"path": "/v3/pay/*", "error_rate": 1}]))
    try:
        async with WeChatPayClient.from_settings(settings) as client:
            with pytest.raises(PartnerUnavailable):
                await client.query("NOPE000001")
            current = (await control("GET", "/sandbox/faults")).json()
            assert current["config"]["seed"] == 3 and current["stats"] == {"error_500": 1}
            bad = await control("PUT", "/sandbox/faults", json={"endpoints": [{"path": "/x", "error_rate": 2}]})
            assert bad.status_code == 422
            assert (await control("GET", "/sandbox/health")).status_code == 200  # controls are never faulted
    finally:
        await app.state.sandbox.cancel_tasks()
        clear_routes()


async def test_unacknowledged_refund_notification_survives_a_restart(tmp_path, creds, settings):
    state = tmp_path / "sandbox.sqlite3"
    down = FastAPI()

    @down.post("/webhooks/wechatpay")
    async def refuse():
        return Response(status_code=503)

    try:
        first = create_app(creds, callback_client=routed_client, state_path=state, settle_delay=None, notify_retry_scale=1000)
        route_to_app(SANDBOX, first)
        route_to_app(API, down)
        async with WeChatPayClient.from_settings(settings) as client:
            await paid_order(client, "RS20240001", 100)
            await client.refund("RFD0500", refund_fen=100, total_fen=100, out_trade_no="RS20240001")
            await control("POST", "/sandbox/refunds/RFD0500/settle")
            await wait_for(lambda: any(n["attempts"] for n in first.state.sandbox.store.all("wechatpay.notification")))
        await first.state.sandbox.cancel_tasks()  # the sandbox stops; next retry was hours away

        receiver = Receiver()
        route_to_app(API, receiver.app)
        restarted = create_app(creds, callback_client=routed_client, state_path=state, settle_delay=None, notify_retry_scale=0.001)
        async with restarted.router.lifespan_context(restarted):
            await wait_for(lambda: "REFUND.SUCCESS" in receiver.events())
            record = [n for n in restarted.state.sandbox.store.all("wechatpay.notification")
                      if n["event_type"] == "REFUND.SUCCESS"][0]
            assert [a["status"] for a in record["attempts"]] == [503, 200] and record["delivered"]
        (refund_push,) = [r for r in receiver.received if json.loads(r[1])["event_type"] == "REFUND.SUCCESS"]
        async with WeChatPayClient.from_settings(settings) as client:
            assert Refund.model_validate(client.parse_notification(*refund_push)["resource"]).status == "SUCCESS"
    finally:
        clear_routes()
