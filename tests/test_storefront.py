"""The storefront through the API, the sandbox and the order workflow: mini-program and
official-account logins landing on one account, phone binding (masked + keyed hash only), the
address book, freight templates and quotes, cart checkout into one order per supplier and window
with the right commission, and freight coming back with a whole refund before shipment. Money
in exact fen; the books balance."""

from __future__ import annotations

from sqlalchemy import select, text

from activities.ledger import balance
from db.models import OrderLine, Product, Promoter, Sku, User, Window, WindowProduct
from db.storefront_models import CartItem, OrderFreight, UserPhone, WechatAccount
from domain import ledger as rules
from domain.order_status import OrderStatus
from domain.privacy import phone_hash
from domain.refunds import RefundStatus
from tests.catalog_helpers import active_supplier
from tests.helpers import assert_books_balance, pay, run_to_end, wait_refund, wait_status

HOME = {"receiver": "王小明", "phone": "13800138000", "province": "上海市", "city": "上海市",
        "district": "浦东新区", "detail": "世纪大道 100 号", "region_code": "310115"}
# demo supplier: by weight, 1 kg 8.00 then 2.00 per 500 g begun; never to 香港
BY_WEIGHT = {"name": "按重量", "rules": {
    "kind": "weight", "excluded_regions": ["810000"],
    "default": {"first_units": 1000, "first_fee_fen": 800, "additional_units": 500, "additional_fee_fen": 200},
    "regions": [{"regions": ["650000"], "first_units": 1000, "first_fee_fen": 2000, "additional_units": 500,
                 "additional_fee_fen": 1000}]}}
# second supplier: by the piece, 6.00 then 1.00 a piece, free from 200.00
BY_PIECE = {"name": "按件", "rules": {
    "kind": "piece", "free_above_fen": 20_000,
    "default": {"first_units": 1, "first_fee_fen": 600, "additional_units": 1, "additional_fee_fen": 100}}}


async def _freight_for(api, headers, product_id: int, template: dict, weights: dict[int, int]) -> int:
    made = await api.post("/freight-templates", headers=headers, json=template)
    assert made.status_code == 201, made.text
    set_ = await api.put(f"/products/{product_id}/freight", headers=headers,
                         json={"template_id": made.json()["id"], "weights_g": {str(k): v for k, v in weights.items()}})
    assert set_.status_code == 200, set_.text
    return made.json()["id"]


def _second_shop(sessions) -> dict:
    """Another supplier (fee 3 %) with a SKU at 50.00 (commission 20 %), sold in another
    promoter's window."""
    supplier_user, supplier_id = active_supplier(sessions, 2)
    with sessions.begin() as s:
        product = Product(supplier_id=supplier_id, title="丹东草莓", category="food")
        s.add(product)
        s.flush()
        sku = Sku(product_id=product.id, spec="1斤", price_fen=5_000, stock=50, commission_bps=2_000)
        user = User(role="promoter", openid="oSECONDpromoter00000000000001", display_name="小美")
        s.add_all([sku, user])
        s.flush()
        promoter = Promoter(user_id=user.id, nickname="小美带货")
        s.add(promoter)
        s.flush()
        window = Window(promoter_id=promoter.id, name="小美的橱窗")
        s.add(window)
        s.flush()
        s.add(WindowProduct(window_id=window.id, product_id=product.id))
        return {"supplier_user": supplier_user, "supplier_id": supplier_id, "product_id": product.id,
                "sku_id": sku.id, "promoter_id": promoter.id, "window_id": window.id}


async def _address(api, headers, **change) -> int:
    made = await api.post("/addresses", headers=headers, json=HOME | change)
    assert made.status_code == 201, made.text
    return made.json()["id"]


# --- login -------------------------------------------------------------------------------------
async def test_mini_program_and_official_account_logins_are_one_account_by_unionid(api, sandbox, sessions):
    code = (await sandbox.post("/sandbox/miniprogram/login", json={"unionid": "oUNIONbuyer0000000000000001"})).json()
    mini = await api.post("/auth/miniprogram", json={"code": code["code"]})
    assert mini.status_code == 200, mini.text
    assert "session_key" not in mini.text and mini.json()["role"] == "buyer"
    again = await api.post("/auth/miniprogram", json={"code": code["code"]})
    assert again.status_code == 401 and again.json()["code"] == "WECHAT_CODE_REJECTED"  # 40163 code been used
    bogus = await api.post("/auth/miniprogram", json={"code": "not-a-code"})
    assert bogus.status_code == 401  # 40029 invalid code

    oauth = (await sandbox.post("/sandbox/oauth/code", json={"unionid": "oUNIONbuyer0000000000000001"})).json()
    assert oauth["openid"] != code["openid"]  # each app has its own openid
    web = await api.post("/auth/wechat", json={"code": oauth["code"]})
    assert web.status_code == 200, web.text
    assert web.json()["user_id"] == mini.json()["user_id"]

    # the other way round: official account first, then the mini program
    first = (await sandbox.post("/sandbox/oauth/code", json={"unionid": "oUNIONbuyer0000000000000002"})).json()
    by_web = (await api.post("/auth/wechat", json={"code": first["code"]})).json()
    later = (await sandbox.post("/sandbox/miniprogram/login", json={"unionid": "oUNIONbuyer0000000000000002"})).json()
    by_mini = (await api.post("/auth/miniprogram", json={"code": later["code"]})).json()
    assert by_mini["user_id"] == by_web["user_id"] != mini.json()["user_id"]
    # without a unionid a mini-program user is their own
    lone = (await sandbox.post("/sandbox/miniprogram/login", json={})).json()
    by_lone = (await api.post("/auth/miniprogram", json={"code": lone["code"]})).json()
    assert by_lone["user_id"] not in (by_web["user_id"], mini.json()["user_id"])

    me = await api.get("/auth/me", headers={"Authorization": f"Bearer {web.json()['access_token']}"})
    assert me.json()["user_id"] == mini.json()["user_id"]
    with sessions() as s:
        accounts = s.execute(select(WechatAccount.app, WechatAccount.openid).where(
            WechatAccount.user_id == mini.json()["user_id"]).order_by(WechatAccount.app)).all()
        assert accounts == [("mini_program", code["openid"]), ("official_account", oauth["openid"])]
        # the mini program's openid is the one its payments are made for
        assert s.get(User, mini.json()["user_id"]).openid == code["openid"]


async def test_phone_binding_keeps_only_the_masked_number_and_a_keyed_hash(api, sandbox, sessions, settings):
    code = (await sandbox.post("/sandbox/miniprogram/login", json={"unionid": "oUNIONphone0000000000000001"})).json()
    login = (await api.post("/auth/miniprogram", json={"code": code["code"]})).json()
    buyer = {"Authorization": f"Bearer {login['access_token']}"}
    phone_code = (await sandbox.post("/sandbox/miniprogram/phone-code", json={"phone_number": "13800138000"})).json()
    bound = await api.put("/auth/phone", headers=buyer, json={"code": phone_code["code"]})
    assert bound.status_code == 200, bound.text
    assert bound.json() == {"phone": "138****8000", "country_code": "86"}
    reused = await api.put("/auth/phone", headers=buyer, json={"code": phone_code["code"]})
    assert reused.status_code == 422 and reused.json()["code"] == "PHONE_CODE_REJECTED"
    with sessions() as s:
        row = s.get(UserPhone, login["user_id"])
        assert (row.phone_masked, row.country_code) == ("138****8000", "86")
        assert row.phone_hash == phone_hash("86-13800138000", settings.identity_hash_keys.current)
        dumped = s.execute(text("SELECT row_to_json(p)::text FROM user_phones p")).scalars().all()
        assert dumped and not any("13800138000" in r for r in dumped)

    other_code = (await sandbox.post("/sandbox/miniprogram/login", json={})).json()
    other = (await api.post("/auth/miniprogram", json={"code": other_code["code"]})).json()
    same_number = (await sandbox.post("/sandbox/miniprogram/phone-code", json={"phone_number": "13800138000"})).json()
    taken = await api.put("/auth/phone", headers={"Authorization": f"Bearer {other['access_token']}"},
                          json={"code": same_number["code"]})
    assert taken.status_code == 409 and taken.json()["code"] == "PHONE_IN_USE"
    assert "13800138000" not in taken.text


# --- address book --------------------------------------------------------------------------------
async def test_address_book_is_each_buyers_own(api, demo, token, sessions):
    buyer, other = token(demo.buyer_user_id, "buyer"), token(9001, "buyer")
    first = await _address(api, buyer)
    second = await _address(api, buyer, receiver="李四", region_code="440105", province="广东省", city="广州市",
                            district="海珠区", is_default=True)
    listed = (await api.get("/addresses", headers=buyer)).json()
    assert [(a["id"], a["is_default"]) for a in listed] == [(second, True), (first, False)]
    changed = await api.put(f"/addresses/{first}", headers=buyer, json=HOME | {"detail": "世纪大道 200 号"})
    assert changed.status_code == 200 and changed.json()["detail"] == "世纪大道 200 号"
    assert (await api.put(f"/addresses/{first}/default", headers=buyer)).json()["is_default"] is True
    assert [a["id"] for a in (await api.get("/addresses", headers=buyer)).json() if a["is_default"]] == [first]

    # another buyer neither sees nor changes them; other roles are refused outright
    for method, path, body in (("GET", f"/addresses/{first}", None), ("PUT", f"/addresses/{first}", HOME),
                               ("PUT", f"/addresses/{first}/default", None), ("DELETE", f"/addresses/{first}", None)):
        answer = await api.request(method, path, headers=other, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    assert (await api.get("/addresses", headers=other)).json() == []
    assert (await api.get("/addresses", headers=token(demo.supplier_user_id, "supplier"))).status_code == 403
    assert (await api.get("/addresses")).status_code == 401

    bad = await api.post("/addresses", headers=buyer, json=HOME | {"region_code": "440105"})  # 广东 code, 上海
    assert bad.status_code == 422 and bad.json()["code"] == "BAD_REGION"
    assert (await api.post("/addresses", headers=buyer, json=HOME | {"region_code": "990101"})).status_code == 422
    assert (await api.delete(f"/addresses/{first}", headers=buyer)).status_code == 204
    left = (await api.get("/addresses", headers=buyer)).json()
    assert [(a["id"], a["is_default"]) for a in left] == [(second, True)]  # the default moved on


# --- freight -----------------------------------------------------------------------------------
async def test_freight_quote_by_region_and_weight(api, demo, token, sessions):
    supplier, buyer = token(demo.supplier_user_id, "supplier"), token(demo.buyer_user_id, "buyer")
    await _freight_for(api, supplier, demo.product_id, BY_WEIGHT, {demo.sku_ids[0]: 1200, demo.sku_ids[1]: 300})
    home = await _address(api, buyer)
    urumqi = await _address(api, buyer, province="新疆维吾尔自治区", city="乌鲁木齐市", district="天山区",
                            region_code="650102")
    hong_kong = await _address(api, buyer, province="香港特别行政区", city="香港", district="中西区",
                               region_code="810101")
    lines = [{"sku_id": demo.sku_ids[0], "quantity": 2}, {"sku_id": demo.sku_ids[1], "quantity": 1}]  # 2 700 g
    quoted = await api.post("/cart/quote", headers=buyer, json={"address_id": home, "lines": lines})
    assert quoted.status_code == 200, quoted.text
    goods = 2 * 19_900 + 6_800
    assert quoted.json()["orders"] == [{"supplier_id": demo.supplier_id, "window_id": None, "item_ids": [],
                                        "goods_fen": goods, "freight_fen": 800 + 4 * 200,
                                        "total_fen": goods + 1_600, "suggested_coupon": None}]
    far = (await api.post("/cart/quote", headers=buyer, json={"address_id": urumqi, "lines": lines})).json()
    assert far["freight_fen"] == 2_000 + 4 * 1_000
    refused = await api.post("/cart/quote", headers=buyer, json={"address_id": hong_kong, "lines": lines})
    assert refused.status_code == 422 and refused.json()["code"] == "NOT_DELIVERABLE"
    # someone else's template is not found; a by-weight template needs every SKU's weight
    other_user, _ = active_supplier(sessions, 3)
    assert (await api.get("/freight-templates/1", headers=token(other_user, "supplier"))).status_code == 404
    missing = await api.put(f"/products/{demo.product_id}/freight", headers=supplier,
                            json={"template_id": 1, "weights_g": {str(demo.sku_ids[0]): 100}})
    assert missing.status_code == 422 and missing.json()["code"] == "WEIGHT_REQUIRED"


# --- cart checkout -------------------------------------------------------------------------------
async def test_cart_checkout_across_two_suppliers_keeps_each_lines_window(
        api, sandbox, demo, token, temporal_env, sessions):
    shop = _second_shop(sessions)
    buyer = token(demo.buyer_user_id, "buyer")
    await _freight_for(api, token(demo.supplier_user_id, "supplier"), demo.product_id, BY_WEIGHT,
                       {demo.sku_ids[0]: 1200, demo.sku_ids[1]: 300})
    await _freight_for(api, token(shop["supplier_user"], "supplier"), shop["product_id"], BY_PIECE, {})
    home = await _address(api, buyer)
    added = [await api.post("/cart/items", headers=buyer, json=body) for body in (
        {"sku_id": demo.sku_ids[0], "quantity": 1, "window_id": demo.window_id},
        {"sku_id": shop["sku_id"], "quantity": 2, "window_id": shop["window_id"]})]
    assert [a.status_code for a in added] == [201, 201], [a.text for a in added]
    not_there = await api.post("/cart/items", headers=buyer, json={"sku_id": shop["sku_id"], "window_id": demo.window_id})
    assert not_there.status_code == 422 and not_there.json()["code"] == "NOT_IN_WINDOW"
    assert len((await api.get("/cart", headers=buyer)).json()) == 2

    checked = await api.post("/cart/checkout", headers=buyer | {"Idempotency-Key": "cart-1"},
                             json={"address_id": home})
    assert checked.status_code == 201, checked.text
    orders = {o["supplier_id"]: o for o in checked.json()["orders"]}
    first, second = orders[demo.supplier_id], orders[shop["supplier_id"]]
    # goods + freight; commission on the goods only, each order for its own window's promoter
    assert (first["window_id"], first["freight_fen"], first["total_fen"]) == (demo.window_id, 1_000, 19_900 + 1_000)
    assert (second["window_id"], second["freight_fen"], second["total_fen"]) == (shop["window_id"], 700, 10_000 + 700)
    assert all(o["prepay"] for o in orders.values())
    assert (await api.get("/cart", headers=buyer)).json() == []  # checked out
    for o in orders.values():
        await pay(sandbox, o["order_no"])
        await wait_status(temporal_env.client, o["order_no"], OrderStatus.PAID)

    shown = (await api.get(f"/orders/{first['order_no']}", headers=buyer)).json()
    assert (shown["promoter_id"], shown["freight_fen"], shown["total_fen"]) == (demo.promoter_id, 1_000, 20_900)
    assert shown["shipping_address"]["receiver"] == "王小明"
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 2_985   # 15 % of 199.00
        assert balance(s, rules.promoter_pending(shop["promoter_id"])) == 2_000  # 20 % of 100.00
        assert balance(s, rules.ORDERS_HELD) == 20_900 + 10_700 - 2_985 - 2_000
        assert s.get(OrderFreight, first["order_no"]).freight_fen == 1_000
        assert s.scalar(select(OrderLine.commission_fen).where(OrderLine.order_no == second["order_no"])) == 2_000
        assert s.get(Sku, shop["sku_id"]).stock == 48
        assert_books_balance(s)


async def test_lines_of_one_supplier_from_two_windows_become_two_orders(api, demo, token, sessions):
    buyer = token(demo.buyer_user_id, "buyer")
    with sessions.begin() as s:  # a second promoter mounts the demo product too
        user = User(role="promoter", openid="oTHIRDpromoter000000000000001", display_name="阿强")
        s.add(user)
        s.flush()
        promoter = Promoter(user_id=user.id, nickname="阿强")
        s.add(promoter)
        s.flush()
        window = Window(promoter_id=promoter.id, name="阿强的橱窗")
        s.add(window)
        s.flush()
        s.add(WindowProduct(window_id=window.id, product_id=demo.product_id))
        window_id = window.id
    home = await _address(api, buyer)
    await api.post("/cart/items", headers=buyer, json={"sku_id": demo.sku_ids[0], "window_id": demo.window_id})
    await api.post("/cart/items", headers=buyer, json={"sku_id": demo.sku_ids[1], "window_id": window_id})
    # the same SKU again from another window: more units, the first window kept
    again = await api.post("/cart/items", headers=buyer, json={"sku_id": demo.sku_ids[0], "window_id": window_id})
    assert (again.json()["quantity"], again.json()["window_id"]) == (2, demo.window_id)
    quoted = (await api.post("/cart/quote", headers=buyer, json={"address_id": home})).json()
    assert [(o["window_id"], o["goods_fen"], o["freight_fen"]) for o in quoted["orders"]] == [
        (demo.window_id, 2 * 19_900, 0), (window_id, 6_800, 0)]  # no template: ships free
    with sessions() as s:
        assert s.scalar(select(CartItem.window_id).where(CartItem.sku_id == demo.sku_ids[1])) == window_id


async def test_freight_comes_back_with_the_refund_that_cancels_the_whole_order(
        api, sandbox, demo, token, temporal_env, sessions, stack):
    buyer = token(demo.buyer_user_id, "buyer")
    await _freight_for(api, token(demo.supplier_user_id, "supplier"), demo.product_id, BY_WEIGHT,
                       {demo.sku_ids[0]: 1200, demo.sku_ids[1]: 300})
    home = await _address(api, buyer)
    await api.post("/cart/items", headers=buyer, json={"sku_id": demo.sku_ids[0], "quantity": 2,
                                                       "window_id": demo.window_id})
    await api.post("/cart/items", headers=buyer, json={"sku_id": demo.sku_ids[1], "window_id": demo.window_id})
    checked = await api.post("/cart/checkout", headers=buyer, json={"address_id": home})
    assert checked.status_code == 201, checked.text
    (order,) = checked.json()["orders"]
    goods, freight = 2 * 19_900 + 6_800, 800 + 4 * 200  # 2 700 g
    assert (order["total_fen"], order["freight_fen"]) == (goods + freight, freight)
    order_no = order["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    with sessions() as s:
        lines = {ln.sku_id: ln.id for ln in s.scalars(select(OrderLine).where(OrderLine.order_no == order_no))}

    # a cancel of some lines: their goods only
    part = await api.post(f"/orders/{order_no}/refunds", headers=buyer,
                          json={"kind": "cancel", "lines": [{"line_id": lines[demo.sku_ids[1]], "quantity": 1}]})
    assert part.status_code == 201, part.text
    assert part.json()["amount_fen"] == 6_800
    await wait_refund(temporal_env.client, part.json()["refund_no"], RefundStatus.REFUNDED)
    # the cancel that leaves nothing: the rest of the goods and the freight
    rest = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "cancel"})
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount_fen"] == 2 * 19_900 + freight
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.REFUNDED
    at_wechat = await stack.state.pay.query_refund(rest.json()["refund_no"])
    assert (at_wechat.status, at_wechat.amount.refund, at_wechat.amount.total) == ("SUCCESS", 41_400, 48_200)
    with sessions() as s:
        assert s.get(OrderFreight, order_no).refund_no == rest.json()["refund_no"]
        assert balance(s, rules.CLEARING) == 0
        assert balance(s, rules.ORDERS_HELD) == 0
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == 0
        assert_books_balance(s)
