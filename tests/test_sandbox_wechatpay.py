"""The WeChat Pay sandbox, driven by the unmodified `wechatpayv3` library (raw and through our
`WeChatPayClient`), with a second in-process app receiving the payment notifications."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256
from fastapi import FastAPI, Request, Response
from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType
from wechatpayv3.utils import build_authorization, load_private_key

from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.http import clear_routes, make_client, route_to_app
from integrations.wechatpay import Transaction, WeChatPayClient, WeChatPayConfig
from sandbox.app import create_app
from tests.helpers import routed_client
from sandbox.credentials import SandboxCredentials, load_or_create
from sandbox.signing import rsa_sign
from settings import Settings

SANDBOX = "http://sandbox.test"
API = "http://api.test"


def make_settings(tmp_path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        sandbox_url=SANDBOX,
        public_base_url=API,
        wechatpay_mchid=None,
        wechatpay_base_url=None,
    )


class Receiver:
    """Our side of the notification: records every delivery, answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.app = FastAPI()

        @self.app.post("/webhooks/wechatpay")
        async def webhook(request: Request):
            self.received.append((dict(request.headers), await request.body()))
            status = self.statuses.pop(0) if self.statuses else 200
            return Response(status_code=status)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def creds(settings) -> SandboxCredentials:  # RSA key generation is slow: once per module
    return load_or_create(settings.sandbox_dir)


@pytest.fixture
def receiver() -> Receiver:
    receiver = Receiver()
    route_to_app(API, receiver.app)
    return receiver


@pytest.fixture
async def client(creds, settings, receiver):
    route_to_app(SANDBOX, create_app(creds, callback_client=routed_client))
    async with WeChatPayClient.from_settings(settings) as client:
        yield client
    clear_routes()


def raw_library(creds: SandboxCredentials, *, private_key: str | None = None, public_key: str | None = None):
    pay = AsyncWeChatPay(
        WeChatPayType.JSAPI,
        mchid=creds.mchid,
        private_key=private_key or creds.merchant_private_key_pem,
        cert_serial_no=creds.merchant_cert_serial_no,
        appid=creds.appid,
        apiv3_key=creds.apiv3_key,
        notify_url=API + "/webhooks/wechatpay",
        public_key=public_key or creds.platform_public_key_pem,
        public_key_id=creds.platform_public_key_id,
    )
    pay._core._gate_way = SANDBOX
    pay._core._client = make_client(SANDBOX)
    return pay


@functools.cache
def fresh_key_pair() -> tuple[str, str]:
    """An impostor's RSA key pair (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


async def buyer_pays(out_trade_no: str) -> httpx.Response:
    async with make_client(SANDBOX) as http:
        return await http.post(f"/sandbox/pay/{out_trade_no}")


# --- credentials ----------------------------------------------------------------------------


async def test_credentials_are_created_once_and_exported(tmp_path):
    first = load_or_create(tmp_path / "sb")
    again = load_or_create(tmp_path / "sb")
    assert first == again
    files = {p.name for p in (tmp_path / "sb").iterdir()}
    assert {"credentials.json", "merchant_private_key.pem", "platform_public_key.pem", "platform_private_key.pem"} <= files
    assert (tmp_path / "sb" / "platform_public_key.pem").read_text() == first.platform_public_key_pem
    assert len(first.apiv3_key) == 32 and first.platform_public_key_id.startswith("PUB_KEY_ID_")
    assert len(first.merchant_cert_serial_no) == 40


async def test_config_uses_sandbox_credentials_without_merchant_keys(settings, creds):
    config = WeChatPayConfig.from_settings(settings)
    assert (config.mchid, config.public_key_id) == (creds.mchid, creds.platform_public_key_id)
    assert config.base_url == SANDBOX
    assert config.notify_url == API + "/webhooks/wechatpay"


# --- orders ---------------------------------------------------------------------------------


async def test_create_query_close(client, creds):
    prepay = await client.create_jsapi("CC20240001", "橱窗-测试商品", 1999, "oBuyer0000000000000000000001")
    assert prepay.prepay_id.startswith("wx") and len(prepay.prepay_id) == 36

    params = prepay.request_payment()
    assert params["package"] == f"prepay_id={prepay.prepay_id}" and params["signType"] == "RSA"
    message = "\n".join([params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]) + "\n"
    merchant_public = serialization.load_pem_public_key(creds.merchant_public_key_pem.encode())
    merchant_public.verify(base64.b64decode(params["paySign"]), message.encode(), PKCS1v15(), SHA256())

    txn = await client.query("CC20240001")
    assert (txn.trade_state, txn.amount.total, txn.paid) == ("NOTPAY", 1999, False)
    assert txn.transaction_id is None

    await client.close("CC20240001")
    await client.close("CC20240001")  # idempotent
    assert (await client.query("CC20240001")).trade_state == "CLOSED"

    with pytest.raises(PartnerRejected) as closed:
        await client.create_jsapi("CC20240001", "橱窗-测试商品", 1999, "oBuyer0000000000000000000001")
    assert closed.value.code == "ORDER_CLOSED"
    async with make_client(SANDBOX) as http:
        refused = await http.post("/sandbox/pay/CC20240001")
    assert refused.status_code == 400 and refused.json()["code"] == "ORDER_CLOSED"


async def test_recreate_is_idempotent_but_changed_terms_are_refused(client):
    first = await client.create_jsapi("CC20240002", "goods", 500, "oBuyer")
    again = await client.create_jsapi("CC20240002", "goods", 500, "oBuyer")
    assert again.prepay_id == first.prepay_id
    with pytest.raises(PartnerRejected) as changed:
        await client.create_jsapi("CC20240002", "goods", 501, "oBuyer")
    assert (changed.value.code, changed.value.status) == ("INVALID_REQUEST", 400)


async def test_unknown_order_and_bad_params(client, creds):
    with pytest.raises(PartnerRejected) as missing:
        await client.query("CC_NOPE_0001")
    assert (missing.value.code, missing.value.status) == ("ORDER_NOT_EXIST", 404)
    code, body = await raw_library(creds).pay(
        description="x", out_trade_no="CC20240003", amount={"total": -5}, payer={"openid": "o"}
    )
    assert code == 400 and json.loads(body)["code"] == "PARAM_ERROR"
    with pytest.raises(ValueError):
        await client.create_jsapi("CC20240003", "x", 9.99, "o")


async def test_payment_notification_is_delivered_verified_and_decrypted(client, receiver, creds):
    await client.create_jsapi("CC20240004", "goods", 2500, "oPayer")
    paid = (await buyer_pays("CC20240004")).json()
    assert paid["delivered"] is True and paid["status"] == 200

    headers, body = receiver.received[0]
    notice = client.parse_notification(headers, body)
    assert notice["event_type"] == "TRANSACTION.SUCCESS" and notice["resource_type"] == "encrypt-resource"
    txn = Transaction.model_validate(notice["resource"])
    assert (txn.out_trade_no, txn.trade_state, txn.amount.total, txn.amount.payer_total) == (
        "CC20240004", "SUCCESS", 2500, 2500,
    )
    assert txn.transaction_id == paid["transaction_id"] and txn.payer.openid == "oPayer"
    assert txn.success_time.utcoffset().total_seconds() == 8 * 3600

    queried = await client.query("CC20240004")
    assert queried.paid and queried.transaction_id == paid["transaction_id"]
    assert queried.trade_type == "JSAPI" and queried.bank_type

    code, by_id = await raw_library(creds).query(transaction_id=paid["transaction_id"])
    assert code == 200 and json.loads(by_id)["out_trade_no"] == "CC20240004"

    with pytest.raises(PartnerRejected) as orderpaid:
        await client.close("CC20240004")
    assert orderpaid.value.code == "ORDERPAID"
    assert (await buyer_pays("CC20240004")).json()["code"] == "ORDERPAID"

    async with make_client(SANDBOX) as http:
        resent = (await http.post("/sandbox/notify/CC20240004/resend")).json()
    assert resent["delivered"] is True
    duplicate = client.parse_notification(*receiver.received[1])
    assert duplicate["id"] == notice["id"] and duplicate["resource"] == notice["resource"]


async def test_tampered_or_stale_notifications_are_refused(client, receiver, creds, settings):
    await client.create_jsapi("CC20240005", "goods", 100, "oPayer")
    await buyer_pays("CC20240005")
    headers, body = receiver.received[0]
    assert client.parse_notification(headers, body) is not None

    doc = json.loads(body)
    doc["summary"] = "支付成功!"
    assert client.parse_notification(headers, json.dumps(doc).encode()) is None
    assert client.parse_notification({**headers, "wechatpay-signature": "AAAA"}, body) is None
    assert client.parse_notification({**headers, "wechatpay-serial": "PUB_KEY_ID_OTHER"}, body) is None

    platform_key = serialization.load_pem_private_key(creds.platform_private_key_pem.encode(), None)
    impostor_key = load_private_key(fresh_key_pair()[0])

    def signed(text: str, key, timestamp: int | None = None) -> dict[str, str]:
        ts, nonce = str(timestamp or int(time.time())), "N" * 32
        return {**headers, "wechatpay-timestamp": ts, "wechatpay-nonce": nonce,
                "wechatpay-signature": rsa_sign(key, f"{ts}\n{nonce}\n{text}\n")}

    assert client.parse_notification(signed(body.decode(), impostor_key), body) is None
    assert client.parse_notification(signed(body.decode(), platform_key, int(time.time()) - 3600), body) is None
    # validly signed, but the ciphertext was altered: AES-GCM refuses it
    ct = bytearray(base64.b64decode(doc["resource"]["ciphertext"]))
    ct[0] ^= 1
    doc = json.loads(body)
    doc["resource"]["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    forged = json.dumps(doc)
    assert client.parse_notification(signed(forged, platform_key), forged.encode()) is None
    assert client.parse_notification(signed(body.decode(), platform_key), body) is not None


async def test_notification_is_retried_until_acknowledged(creds, settings):
    receiver = Receiver(statuses=[500, 503])
    route_to_app(API, receiver.app)
    route_to_app(SANDBOX, create_app(creds, callback_client=routed_client, notify_retry_scale=0.001))
    try:
        async with WeChatPayClient.from_settings(settings) as client:
            await client.create_jsapi("CC20240006", "goods", 100, "oPayer")
            paid = (await buyer_pays("CC20240006")).json()
            assert (paid["delivered"], paid["status"]) == (False, 500)
            for _ in range(200):
                if len(receiver.received) >= 3:
                    break
                await asyncio.sleep(0.01)
            async with make_client(SANDBOX) as http:
                record = (await http.get("/sandbox/pay/CC20240006")).json()
            assert [a["status"] for a in record["notify_attempts"]] == [500, 503, 200]
            assert record["notify_delivered"] is True
            assert client.parse_notification(*receiver.received[-1])["resource"]["trade_state"] == "SUCCESS"
    finally:
        clear_routes()


# --- signatures -----------------------------------------------------------------------------


async def test_every_response_is_signed_by_the_platform(client, creds):
    """The library verifies every 2xx (the 204 of close included); a wrong platform key fails all."""
    good = raw_library(creds)
    assert (await good.pay(description="g", out_trade_no="CC20240007", amount={"total": 1},
                           payer={"openid": "o"}))[0] == 200
    assert (await good.close(out_trade_no="CC20240007"))[0] == 204

    wrong = raw_library(creds, public_key=fresh_key_pair()[1])
    for call in (
        wrong.pay(description="g", out_trade_no="CC20240008", amount={"total": 1}, payer={"openid": "o"}),
        wrong.query(out_trade_no="CC20240008"),
        wrong.close(out_trade_no="CC20240008"),
    ):
        with pytest.raises(Exception, match="failed to verify the signature"):
            await call

    async with WeChatPayClient(client.config.model_copy(update={"public_key_pem": fresh_key_pair()[1]})) as fooled:
        with pytest.raises(PartnerUnavailable):
            await fooled.query("CC20240007")

    async with make_client(SANDBOX) as http:
        auth = build_authorization(f"/v3/pay/transactions/out-trade-no/CC20240007?mchid={creds.mchid}", "GET",
                                   creds.mchid, creds.merchant_cert_serial_no,
                                   load_private_key(creds.merchant_private_key_pem))
        r = await http.get(f"/v3/pay/transactions/out-trade-no/CC20240007?mchid={creds.mchid}",
                           headers={"Authorization": auth})
    assert r.headers["wechatpay-serial"] == creds.platform_public_key_id
    assert r.headers["wechatpay-signature-type"] == "WECHATPAY2-SHA256-RSA2048"
    assert r.headers["request-id"] and r.headers["content-type"].startswith("application/json")


async def test_unsigned_or_tampered_requests_get_401(client, creds):
    path = "/v3/pay/transactions/jsapi"
    body = {"appid": creds.appid, "mchid": creds.mchid, "description": "x", "out_trade_no": "CC20240009",
            "notify_url": API + "/webhooks/wechatpay", "amount": {"total": 100}, "payer": {"openid": "o"}}
    merchant_key = load_private_key(creds.merchant_private_key_pem)
    signed_for = build_authorization(path, "POST", creds.mchid, creds.merchant_cert_serial_no, merchant_key, data=body)

    async def post(headers: dict[str, str], payload: dict) -> httpx.Response:
        async with make_client(SANDBOX) as http:
            return await http.post(path, content=json.dumps(payload),
                                   headers={"Content-Type": "application/json", **headers})

    assert (await post({"Authorization": signed_for}, body)).status_code == 200
    tampered = await post({"Authorization": signed_for}, {**body, "amount": {"total": 1}})
    assert tampered.status_code == 401 and tampered.json()["code"] == "SIGN_ERROR"
    missing = await post({}, body)
    assert missing.status_code == 401 and missing.json()["code"] == "SIGN_ERROR"
    impostor = build_authorization(path, "POST", creds.mchid, creds.merchant_cert_serial_no,
                                   load_private_key(fresh_key_pair()[0]), data=body)
    assert (await post({"Authorization": impostor}, body)).json()["code"] == "SIGN_ERROR"

    code, text = await raw_library(creds, private_key=fresh_key_pair()[0]).query(out_trade_no="CC20240009")
    assert code == 401 and json.loads(text)["code"] == "SIGN_ERROR"
    async with WeChatPayClient(client.config.model_copy(update={"private_key_pem": fresh_key_pair()[0]})) as wrong:
        with pytest.raises(PartnerRejected) as rejected:
            await wrong.query("CC20240009")
    assert (rejected.value.code, rejected.value.status) == ("SIGN_ERROR", 401)


# --- failures and persistence ---------------------------------------------------------------


async def test_partner_outage_is_retryable(client):
    outage = FastAPI()

    @outage.api_route("/{path:path}", methods=["GET", "POST"])
    async def down(path: str):
        return Response('{"code":"SYSTEM_ERROR","message":"系统错误"}', 500, media_type="application/json")

    route_to_app("http://down.test", outage)
    async with WeChatPayClient(client.config.model_copy(update={"base_url": "http://down.test"})) as down_client:
        with pytest.raises(PartnerUnavailable):
            await down_client.query("CC20240010")
    async with WeChatPayClient(client.config.model_copy(update={"base_url": "http://127.0.0.1:9"})) as refused:
        with pytest.raises(PartnerUnavailable):
            await refused.create_jsapi("CC20240010", "goods", 100, "o")


async def test_orders_survive_a_sandbox_restart(tmp_path, creds, settings):
    state = tmp_path / "sandbox.sqlite3"
    try:
        route_to_app(SANDBOX, create_app(creds, callback_client=routed_client, state_path=state))
        async with WeChatPayClient.from_settings(settings) as client:
            created = await client.create_jsapi("CC20240011", "goods", 100, "o")
        route_to_app(SANDBOX, create_app(creds, callback_client=routed_client, state_path=state))
        async with WeChatPayClient.from_settings(settings) as client:
            assert (await client.create_jsapi("CC20240011", "goods", 100, "o")).prepay_id == created.prepay_id
            assert (await client.query("CC20240011")).trade_state == "NOTPAY"
    finally:
        clear_routes()


async def test_unacknowledged_notification_is_resumed_after_restart(tmp_path, creds, settings):
    state = tmp_path / "sandbox.sqlite3"
    try:
        route_to_app(API, Receiver(statuses=[500]).app)
        first = create_app(creds, callback_client=routed_client, state_path=state, notify_retry_scale=1000)  # next retry: hours away
        route_to_app(SANDBOX, first)
        async with WeChatPayClient.from_settings(settings) as client:
            await client.create_jsapi("CC20240012", "goods", 100, "o")
            assert (await buyer_pays("CC20240012")).json()["delivered"] is False
        await first.state.sandbox.cancel_tasks()  # the sandbox process stops

        receiver = Receiver()
        route_to_app(API, receiver.app)
        restarted = create_app(creds, callback_client=routed_client, state_path=state, notify_retry_scale=0.001)
        async with restarted.router.lifespan_context(restarted):
            for _ in range(200):
                if receiver.received:
                    break
                await asyncio.sleep(0.01)
        assert json.loads(receiver.received[0][1])["event_type"] == "TRANSACTION.SUCCESS"
    finally:
        clear_routes()
