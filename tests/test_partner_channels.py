"""WeChat Channels shop + subscribe messages: our clients against the in-process sandbox over
real HTTP, with security-mode event pushes received, verified and decrypted by our side."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request, Response

from integrations import wxcrypt
from integrations.channels import (
    ChannelsClient,
    Delivery,
    OrderStatus,
    ProductDraft,
    ProductStatus,
    Sku,
)
from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations import http as http_module
from integrations.http import clear_routes, make_client, route_to_app
from integrations.messages import MessagesClient
from sandbox.app import create_app
from tests.helpers import routed_client
from sandbox.credentials import SandboxCredentials, load_or_create
from settings import Settings

SANDBOX = "http://sandbox.test"
API = "http://api.test"
BUYER = "oBuyer000000000000000000000001"


class PushReceiver:
    def __init__(self):
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.app = FastAPI()

        @self.app.get("/webhooks/channels")
        async def url_check(echostr: str = ""):  # a bare receiver: echoes what WeChat's URL check sends
            return Response(echostr, media_type="text/plain")

        @self.app.post("/webhooks/channels")
        async def webhook(request: Request):
            self.received.append((dict(request.query_params), await request.body()))
            return Response("success", media_type="text/plain")


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
                    public_base_url=API, wechat_app_secret=None)


@pytest.fixture(scope="module")
def creds(settings) -> SandboxCredentials:
    return load_or_create(settings.sandbox_dir)


async def control(method: str, path: str, **kwargs):
    async with make_client(SANDBOX) as http:
        response = await http.request(method, path, **kwargs)
    return response


@pytest.fixture
async def env(creds, settings):
    app = create_app(creds, callback_client=routed_client, settle_delay=None)
    pushes = PushReceiver()
    route_to_app(SANDBOX, app)
    route_to_app(API, pushes.app)
    await control("PUT", "/sandbox/channels/push", json={"url": API + "/webhooks/channels"})
    async with ChannelsClient.from_settings(settings) as shop:
        yield SimpleNamespace(app=app, shop=shop, pushes=pushes)
    clear_routes()


def draft(title: str = "云南小粒咖啡豆 500g", price: int = 5900, stock: int = 100) -> ProductDraft:
    return ProductDraft(title=title, head_imgs=["https://img.example/1.jpg"],
                        skus=[Sku(sale_price=price, stock_num=stock, out_sku_id="SKU-1")], out_product_id="SPU-1")


async def listed_product(shop: ChannelsClient, **kwargs) -> str:
    pid = await shop.add_product(draft(**kwargs))
    await shop.list_product(pid)
    return pid


async def new_order(product_id: str, count: int = 1) -> dict:
    r = await control("POST", "/sandbox/channels/orders", json={"openid": BUYER, "product_id": product_id, "count": count})
    assert r.status_code == 200, r.text
    return r.json()


def events(env) -> list[dict]:
    out = []
    for query, body in env.pushes.received:
        event = env.shop.parse_push(query, body)
        assert event is not None, "every sandbox push must verify and decrypt"
        out.append(event)
    return out


# --- tokens ---------------------------------------------------------------------------------


async def test_token_endpoints(env, creds):
    bad = (await control("GET", "/cgi-bin/token", params={"grant_type": "client_credential",
                                                          "appid": creds.channels_appid, "secret": "nope"})).json()
    assert bad["errcode"] == 40125
    assert (await control("GET", "/cgi-bin/token", params={"grant_type": "password"})).json()["errcode"] == 40002
    got = (await control("GET", "/cgi-bin/token", params={"grant_type": "client_credential",
                                                          "appid": creds.channels_appid,
                                                          "secret": creds.channels_secret})).json()
    assert got["expires_in"] == 7200 and len(got["access_token"]) > 100

    body = {"grant_type": "client_credential", "appid": creds.channels_appid, "secret": creds.channels_secret}
    stable = (await control("POST", "/cgi-bin/stable_token", json=body)).json()
    assert (await control("POST", "/cgi-bin/stable_token", json=body)).json()["access_token"] == stable["access_token"]
    forced = (await control("POST", "/cgi-bin/stable_token", json={**body, "force_refresh": True})).json()
    assert forced["access_token"] != stable["access_token"]

    assert (await control("POST", "/channels/ec/order/get", json={"order_id": "1"})).json()["errcode"] == 41001
    bogus = await control("POST", "/channels/ec/order/get", params={"access_token": "bogus"}, json={"order_id": "1"})
    assert bogus.status_code == 200 and bogus.json()["errcode"] == 40001


async def test_client_caches_and_refreshes_tokens(env):
    shop = env.shop
    await shop.list_products()
    await shop.list_products()
    assert shop.token_fetches == 1
    assert (await control("POST", "/sandbox/channels/tokens/expire")).json()["expired"] >= 1
    await shop.list_products()  # 42001 -> refresh -> retried
    assert shop.token_fetches == 2
    shop._token = "revoked-or-rotated-elsewhere"
    await shop.list_products()  # 40001 -> refresh -> retried
    assert shop.token_fetches == 3


async def test_wrong_app_secret_is_rejected(env, creds, settings):
    async with ChannelsClient(SANDBOX, creds.channels_appid, "0" * 32) as wrong:
        with pytest.raises(PartnerRejected) as rejected:
            await wrong.list_products()
    assert rejected.value.code == "40125"


# --- products and window --------------------------------------------------------------------


async def test_product_lifecycle(env):
    shop = env.shop
    pid = await shop.add_product(draft())
    fresh = await shop.get_product(pid, draft=True)
    assert (fresh.status, fresh.edit_status, fresh.min_price) == (ProductStatus.INITIAL, 4, 5900)
    assert fresh.skus[0].sku_id and fresh.skus[0].out_sku_id == "SKU-1"

    await shop.list_product(pid)
    assert (await shop.get_product(pid)).status == ProductStatus.ON_SALE
    await shop.update_product(pid, draft(title="云南小粒咖啡豆 1kg", price=9900))
    online = await shop.get_product(pid)
    assert (online.title, online.min_price) == ("云南小粒咖啡豆 1kg", 9900)
    assert online.skus[0].sku_id == fresh.skus[0].sku_id  # same SKU, edited

    other = await shop.add_product(draft(title="另一个商品"))
    on_sale = await shop.list_products(status=ProductStatus.ON_SALE)
    assert pid in on_sale.ids and other not in on_sale.ids
    first = await shop.list_products(page_size=1)
    assert len(first.ids) == 1 and first.has_more and first.total >= 2
    assert (await shop.list_products(page_size=1, next_key=first.next_key)).ids != first.ids

    await shop.delist_product(pid)
    assert (await shop.get_product(pid)).status == ProductStatus.DELISTED
    with pytest.raises(PartnerRejected) as missing:
        await shop.get_product("999")
    assert missing.value.code == "10020052"
    with pytest.raises(PartnerRejected) as malformed:
        await shop.call("/channels/ec/product/add", {"title": "no images", "skus": []})
    assert malformed.value.code == "47001"


async def test_window_products(env):
    shop = env.shop
    unlisted = await shop.add_product(draft(title="未上架"))
    with pytest.raises(PartnerRejected):
        await shop.add_window_product(unlisted)
    pid = await listed_product(shop, title="橱窗商品")
    await shop.add_window_product(pid)
    item = await shop.get_window_product(pid)
    assert (item.product_id, item.title, item.min_price, item.is_hide_for_window) == (pid, "橱窗商品", 5900, False)
    assert pid in (await shop.list_window_products()).ids
    await shop.remove_window_product(pid)
    with pytest.raises(PartnerRejected):
        await shop.get_window_product(pid)
    assert pid not in (await shop.list_window_products()).ids


async def test_window_list_pages_by_last_buffer(env):
    """获取已添加到橱窗的商品列表 (https://developers.weixin.qq.com/doc/channels/API/windowproduct/list_get.html):
    page_size, page_index or last_buffer in; products, last_buffer and (need_total_num) total_num out."""
    shop = env.shop
    pids = [await listed_product(shop, title=f"橱窗{i}") for i in range(5)]
    for pid in pids:
        await shop.add_window_product(pid)
    raw = await shop.call("/channels/ec/window/product/list/get", {"appid": shop.appid, "page_size": 2})
    assert len(raw["products"]) == 2 and raw["last_buffer"] and "total_num" not in raw and "next_key" not in raw
    second = await shop.call("/channels/ec/window/product/list/get",
                             {"appid": shop.appid, "page_size": 2, "page_index": 2, "need_total_num": True})
    assert second["total_num"] == 5 and second["products"][0]["product_id"] not in {
        p["product_id"] for p in raw["products"]}
    seen, key = [], None
    while True:
        page = await shop.list_window_products(page_size=2, next_key=key)
        seen += page.ids
        if not page.has_more:
            break
        key = page.next_key
    assert sorted(seen) == sorted(pids)


# --- orders, delivery, after-sale, pushes ---------------------------------------------------


async def test_order_flow_with_partial_delivery_and_pushes(env):
    shop = env.shop
    pid = await listed_product(shop)
    created = await new_order(pid, count=2)
    oid, sku_id = created["order_id"], created["order_detail"]["product_infos"][0]["sku_id"]
    order = await shop.get_order(oid)
    assert (order.status, order.order_price, order.products[0].sku_cnt) == (OrderStatus.UNPAID, 11800, 2)
    assert oid in (await shop.list_orders(start_time=0, end_time=int(time.time()) + 10, status=10)).ids

    with pytest.raises(PartnerRejected):  # not paid yet
        await shop.send_delivery(oid, [Delivery(delivery_id="SF", waybill_id="SF1", products=[(pid, sku_id, 1)])])
    await control("POST", f"/sandbox/channels/orders/{oid}/pay")
    paid = await shop.get_order(oid)
    assert paid.status == OrderStatus.TO_SHIP and paid.transaction_id

    await shop.send_delivery(oid, [Delivery(delivery_id="SF", waybill_id="SF1", products=[(pid, sku_id, 1)])])
    assert (await shop.get_order(oid)).status == OrderStatus.PARTLY_SHIPPED
    with pytest.raises(PartnerRejected) as over:
        await shop.send_delivery(oid, [Delivery(delivery_id="SF", waybill_id="SF2", products=[(pid, sku_id, 2)])])
    assert over.value.code == "47001"
    await shop.send_delivery(oid, [Delivery(delivery_id="SF", waybill_id="SF2", products=[(pid, sku_id, 1)])])
    assert (await shop.get_order(oid)).status == OrderStatus.SHIPPED
    await control("POST", f"/sandbox/channels/orders/{oid}/confirm")
    assert (await shop.get_order(oid)).status == OrderStatus.COMPLETED

    unpaid = (await new_order(pid))["order_id"]
    await control("POST", f"/sandbox/channels/orders/{unpaid}/cancel")
    assert (await shop.get_order(unpaid)).status == OrderStatus.CANCELLED

    mine = [e for e in events(env) if e.get("order_info", {}).get("order_id") == oid]
    assert [e["Event"] for e in mine] == [
        "channels_ec_order_new", "channels_ec_order_pay", "channels_ec_order_deliver",
        "channels_ec_order_deliver", "channels_ec_order_confirm"]
    assert [e["order_info"]["finish_delivery"] for e in mine if e["Event"] == "channels_ec_order_deliver"] == [0, 1]
    assert all(e["MsgType"] == "event" for e in mine)

    query, body = env.pushes.received[0]
    assert query["encrypt_type"] == "aes"
    assert shop.parse_push({**query, "msg_signature": "0" * 40}, body) is None
    assert shop.parse_push({**query, "timestamp": str(int(query["timestamp"]) + 1)}, body) is None
    assert shop.parse_push(query, body.replace(b'"Encrypt": "', b'"Encrypt": "A')) is None


async def test_aftersale_accept_and_reject(env):
    shop = env.shop
    pid = await listed_product(shop, price=3000)
    oid = (await new_order(pid))["order_id"]
    await control("POST", f"/sandbox/channels/orders/{oid}/pay")
    aid = (await control("POST", "/sandbox/channels/aftersales", json={"order_id": oid, "type": "REFUND"})).json()["after_sale_order_id"]
    a = await shop.get_aftersale(aid)
    assert (a.status, a.type, a.refund_amount, a.order_id) == ("MERCHANT_PROCESSING", "REFUND", 3000, oid)
    await shop.accept_aftersale(aid)
    assert (await shop.get_aftersale(aid)).status == "MERCHANT_REFUND_SUCCESS"
    assert (await shop.get_order(oid)).status == OrderStatus.AFTERSALE_CANCELLED
    with pytest.raises(PartnerRejected):
        await shop.accept_aftersale(aid)

    oid2 = (await new_order(pid))["order_id"]
    await control("POST", f"/sandbox/channels/orders/{oid2}/pay")
    aid2 = (await control("POST", "/sandbox/channels/aftersales", json={"order_id": oid2, "type": "RETURN"})).json()["after_sale_order_id"]
    await shop.reject_aftersale(aid2, "商品已影响二次销售")
    assert (await shop.get_aftersale(aid2)).status == "MERCHANT_REJECT_RETURN"
    updates = [e["finder_shop_aftersale_status_update"] for e in events(env) if e["Event"] == "channels_ec_aftersale_update"]
    assert [(u["after_sale_order_id"], u["status"]) for u in updates] == [
        (aid, "MERCHANT_PROCESSING"), (aid, "MERCHANT_REFUND_SUCCESS"),
        (aid2, "MERCHANT_PROCESSING"), (aid2, "MERCHANT_REJECT_RETURN")]


async def test_shop_faults_are_retryable(env):
    await control("PUT", "/sandbox/faults", json={"endpoints": [
        {"path": "/channels/ec/product/list/get", "error_rate": 1, "times": 1},
        {"path": "/channels/ec/product/get", "error_rate": 1, "error_status": 429, "times": 1}]})
    with pytest.raises(PartnerUnavailable, match="-1"):
        await env.shop.list_products()
    await env.shop.list_products()
    with pytest.raises(PartnerUnavailable, match="45011"):
        await env.shop.get_product("1")
    with pytest.raises(PartnerRejected):
        await env.shop.get_product("1")


# --- subscribe messages ---------------------------------------------------------------------


async def test_subscribe_messages_need_consent(env, settings):
    template = "TPL_ORDER_SHIPPED_0001"
    data = {"character_string1": "CC20240001", "thing2": "顺丰速运", "time3": "2024-11-22 12:00"}
    async with MessagesClient.from_settings(settings) as messages:
        with pytest.raises(PartnerRejected) as refused:
            await messages.send_subscribe(BUYER, template, data)
        assert refused.value.code == "43101"
        await control("POST", "/sandbox/messages/subscriptions", json={"openid": BUYER, "template_id": template})
        sent = await messages.send_subscribe(BUYER, template, data, page="pages/order/detail?id=1")
        assert sent.msgid > 0
        with pytest.raises(PartnerRejected) as used_up:
            await messages.send_subscribe(BUYER, template, data)
        assert used_up.value.code == "43101"
        with pytest.raises(PartnerRejected) as bad_openid:
            await messages.send_subscribe("nobody", template, data)
        assert bad_openid.value.code == "40003"
    log = (await control("GET", "/sandbox/messages", params={"touser": BUYER})).json()
    assert [(m["msgid"], m["data"]["thing2"]["value"]) for m in log] == [(str(sent.msgid), "顺丰速运")]


# --- crypto ---------------------------------------------------------------------------------


def test_wxcrypt_roundtrip_and_refusals(creds):
    key, appid = creds.channels_encoding_aes_key, creds.channels_appid
    secret = wxcrypt.encrypt(key, appid, '{"Event":"channels_ec_order_new"}')
    assert wxcrypt.decrypt(key, appid, secret) == '{"Event":"channels_ec_order_new"}'
    with pytest.raises(wxcrypt.WxCryptError):
        wxcrypt.decrypt(key, "wx0000000000000000", secret)
    sig = wxcrypt.sha1_signature("tok", "1", "2", secret)
    assert wxcrypt.verify_and_decrypt(token="tok", encoding_aes_key=key, appid=appid, timestamp="1", nonce="2",
                                      msg_signature=sig, encrypted=secret)
    with pytest.raises(wxcrypt.WxCryptError):
        wxcrypt.verify_and_decrypt(token="other", encoding_aes_key=key, appid=appid, timestamp="1", nonce="2",
                                   msg_signature=sig, encrypted=secret)


async def test_a_return_is_accepted_only_with_the_merchants_return_address(env, creds):
    pid = await listed_product(env.shop)
    order = await new_order(pid)
    assert (await control("POST", f"/sandbox/channels/orders/{order['order_id']}/pay")).status_code == 200
    opened = (await control("POST", "/sandbox/channels/aftersales",
                            json={"order_id": order["order_id"], "type": "RETURN"})).json()
    with pytest.raises(PartnerRejected) as refused:
        await env.shop.accept_aftersale(opened["after_sale_order_id"])
    assert refused.value.code == "10021060"  # 缺少退货地址address_id参数
    await env.shop.accept_aftersale(opened["after_sale_order_id"], address_id="addr-1")
    after = await env.shop.get_aftersale(opened["after_sale_order_id"])
    assert (after.status, after.details["return_address_id"]) == ("USER_WAIT_RETURN", "addr-1")
