"""Official-account OAuth and 快递100-style logistics in the sandbox, through our clients."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi import FastAPI, Request

from integrations import logistics, oauth
from integrations.errors import PartnerRejected
from integrations.http import clear_routes, make_client, route_to_app
from sandbox.app import create_app
from tests.helpers import routed_client
from sandbox.credentials import SandboxCredentials, load_or_create
from settings import Settings

SANDBOX = "http://sandbox.test"
API = "http://api.test"
CALLBACK = API + "/webhooks/logistics"


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("data"),
        sandbox_url=SANDBOX,
        public_base_url=API,
        wechat_app_secret=None,
        wechat_oauth_base_url=None,
        logistics_key=None,
        logistics_base_url=None,
    )


@pytest.fixture(scope="module")
def creds(settings) -> SandboxCredentials:
    return load_or_create(settings.sandbox_dir)


@pytest.fixture
def sandbox(creds):
    route_to_app(SANDBOX, create_app(creds, callback_client=routed_client))
    yield
    clear_routes()


class PushReceiver:
    """Our logistics webhook: records pushes, answers as 快递100 expects (or refuses)."""

    def __init__(self, acknowledge: bool = True):
        self.pushes: list[dict[str, str]] = []
        self.app = FastAPI()

        @self.app.post("/webhooks/logistics")
        async def webhook(request: Request):
            self.pushes.append(dict(await request.form()))
            return logistics.PUSH_ACK if acknowledge else {"result": False, "returnCode": "500", "message": "x"}


async def control(path: str, payload: dict) -> dict:
    async with make_client(SANDBOX) as http:
        return (await http.post(path, json=payload)).json()


# --- OAuth ----------------------------------------------------------------------------------


async def test_oauth_code_exchanges_once_for_the_openid(settings, sandbox):
    """返回码说明 (https://developers.weixin.qq.com/doc/oplatform/Return_codes/Return_code_descriptions_new.html):
    40163 oauth_code已使用 for a code used again, 40029 无效的 oauth_code for an unknown one."""
    issued = await control("/sandbox/oauth/code", {"openid": "oChuchuangBuyer000000000001"})
    assert await oauth.exchange_code(issued["code"], settings) == "oChuchuangBuyer000000000001"
    with pytest.raises(PartnerRejected) as reused:
        await oauth.exchange_code(issued["code"], settings)
    assert reused.value.code == "40163" and reused.value.message.startswith("code been used, rid: ")
    with pytest.raises(PartnerRejected) as unknown:
        await oauth.exchange_code("not-a-code", settings)
    assert unknown.value.code == "40029"

    fresh = await control("/sandbox/oauth/code", {})
    assert fresh["openid"].startswith("o") and len(fresh["openid"]) == 28
    assert await oauth.exchange_code(fresh["code"], settings) == fresh["openid"]


async def test_oauth_wire_format_and_bad_secret(settings, creds, sandbox):
    code = (await control("/sandbox/oauth/code", {}))["code"]
    async with make_client(SANDBOX) as http:
        bad = await http.get("/sns/oauth2/access_token", params={
            "appid": creds.appid, "secret": "wrong", "code": code, "grant_type": "authorization_code"})
        good = await http.get("/sns/oauth2/access_token", params={
            "appid": creds.appid, "secret": creds.app_secret, "code": code, "grant_type": "authorization_code"})
    assert bad.status_code == 200 and bad.json() == {"errcode": 40125, "errmsg": "invalid appsecret"}
    token = good.json()
    assert token["expires_in"] == 7200 and token["scope"] == "snsapi_base"
    assert token["access_token"] and token["refresh_token"] and token["openid"]

    wrong = settings.model_copy(update={
        "wechat_app_secret": "wrong", "wechatpay_appid": creds.appid, "wechat_oauth_base_url": SANDBOX})
    code = (await control("/sandbox/oauth/code", {}))["code"]
    with pytest.raises(PartnerRejected) as rejected:
        await oauth.exchange_code(code, wrong)
    assert rejected.value.code == "40125"


# --- logistics ------------------------------------------------------------------------------


async def test_subscribe_advance_push_and_query(settings, sandbox):
    receiver = PushReceiver()
    route_to_app(API, receiver.app)
    await logistics.subscribe("shunfeng", "SF1234567890", CALLBACK, settings)
    await logistics.subscribe("shunfeng", "SF1234567890", CALLBACK, settings)  # duplicate is fine

    for state in ("1", "0", "5", "3"):
        pushed = await control("/sandbox/logistics/advance",
                               {"company": "shunfeng", "number": "SF1234567890", "state": state})
        assert (pushed["delivered"], pushed["status"]) == (True, 200)
    assert len(receiver.pushes) == 4

    salt = logistics.callback_salt(settings)
    for push in receiver.pushes:
        assert logistics.verify_push(push["param"], push["sign"], salt)
    last = receiver.pushes[-1]
    assert not logistics.verify_push(last["param"].replace("签收", "拒收"), last["sign"], salt)
    assert not logistics.verify_push(last["param"], last["sign"], "other-salt")

    first = logistics.parse_push(receiver.pushes[0]["param"])
    assert (first.state, first.is_delivered, len(first.steps)) == ("1", False, 1)
    final = logistics.parse_push(last["param"])
    assert final.is_delivered and final.is_checked and final.state_name == "签收"
    assert [s.context for s in final.steps][0].endswith("签收人：本人")
    assert final.steps[0].time >= final.steps[-1].time and final.steps[0].time.utcoffset() is not None
    assert json.loads(last["param"])["status"] == "shutdown"

    queried = await logistics.query("shunfeng", "SF1234567890", settings)
    assert queried.model_dump() == final.model_dump()
    assert queried.model_dump()["delivered"] is True and queried.carrier == "shunfeng"

    nothing_yet = await logistics.query("yuantong", "YT0000000001", settings)
    assert (nothing_yet.state, nothing_yet.steps, nothing_yet.is_delivered) == (None, [], False)


async def test_logistics_key_and_query_sign_are_checked(settings, creds, sandbox):
    wrong_key = settings.model_copy(update={"logistics_key": "wrong", "logistics_customer": creds.logistics_customer,
                                            "logistics_base_url": SANDBOX})
    with pytest.raises(PartnerRejected) as bad_key:
        await logistics.subscribe("shunfeng", "SF0000000001", CALLBACK, wrong_key)
    assert bad_key.value.code == "600"
    with pytest.raises(PartnerRejected) as bad_sign:
        await logistics.query("shunfeng", "SF0000000001", wrong_key)
    assert bad_sign.value.code == "400"

    param = json.dumps({"com": "shunfeng", "num": "SF0000000001"})
    good_sign = hashlib.md5((param + creds.logistics_key + creds.logistics_customer).encode()).hexdigest().upper()
    async with make_client(SANDBOX) as http:
        tampered = await http.post("/poll/query.do", data={
            "customer": creds.logistics_customer, "sign": good_sign, "param": param.replace("SF0", "SF9")})
        signed = await http.post("/poll/query.do", data={
            "customer": creds.logistics_customer, "sign": good_sign, "param": param})
    assert tampered.json()["returnCode"] == "400" and tampered.json()["result"] is False
    assert signed.json()["returnCode"] == "500"  # signature fine, nothing tracked yet


async def test_unacknowledged_or_unsubscribed_push_is_not_delivered(settings, sandbox):
    route_to_app(API, PushReceiver(acknowledge=False).app)
    await logistics.subscribe("zhongtong", "ZT1234567890", CALLBACK, settings)
    refused = await control("/sandbox/logistics/advance", {"company": "zhongtong", "number": "ZT1234567890", "state": "0"})
    assert (refused["delivered"], refused["status"]) == (False, 200)

    unsubscribed = await control("/sandbox/logistics/advance", {"company": "ems", "number": "EM1234567890", "state": "0"})
    assert unsubscribed["delivered"] is False and unsubscribed["subscribed"] is False
    assert (await logistics.query("ems", "EM1234567890", settings)).state == "0"
