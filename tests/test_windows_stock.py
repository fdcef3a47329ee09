"""Selection centre, windows (mount, hide, remove, order, stats), stock and suspension."""

from __future__ import annotations

from sqlalchemy import select

from db.catalog_models import ProductDetail
from db.models import Product, Promoter, Sku, User, Window, WindowProduct
from tests.catalog_helpers import active_supplier, notifications
from tests.helpers import ADDRESS, wait_status
from domain.order_status import OrderStatus


def listed_product(sessions, supplier_id: int, title: str, *, category="general", stock=(10,), price=10_000,
                   commission_bps=1_000, newbie=False) -> tuple[int, list[int]]:
    with sessions.begin() as s:
        p = Product(supplier_id=supplier_id, title=title, category=category, status="listed")
        s.add(p)
        s.flush()
        skus = [Sku(product_id=p.id, spec=f"规格{i}", price_fen=price, stock=n, commission_bps=commission_bps)
                for i, n in enumerate(stock)]
        s.add_all(skus)
        s.add(ProductDetail(product_id=p.id, description="", images=["https://img.example.com/a.jpg"],
                            materials=[], newbie_pick=newbie))
        s.flush()
        return p.id, [k.id for k in skus]


def second_promoter(sessions) -> tuple[int, int]:
    with sessions.begin() as s:
        user = User(role="promoter", openid="oPROMOTER2", display_name="二号")
        s.add(user)
        s.flush()
        promoter = Promoter(user_id=user.id, nickname="二号")
        s.add(promoter)
        s.flush()
        window = Window(promoter_id=promoter.id, name="二号的橱窗")
        s.add(window)
        s.flush()
        return user.id, window.id


async def test_selection_centre_filters_and_window_management(api, demo, sessions, token):
    _, supplier_id = active_supplier(sessions, 1)
    cheap, _ = listed_product(sessions, supplier_id, "低佣金袜子", commission_bps=500)
    rich, _ = listed_product(sessions, supplier_id, "高佣金围巾", commission_bps=3_000, newbie=True)
    gone, _ = listed_product(sessions, supplier_id, "售罄手套", stock=(0,))
    promoter = token(demo.promoter_user_id, "promoter")

    async def ids(**params):
        response = await api.get("/products", params=params, headers=promoter)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()]

    assert set(await ids()) == {demo.product_id, cheap, rich, gone}
    assert await ids(min_commission_bps=2_000) == [rich]
    assert await ids(newbie_pick=True) == [rich]
    assert set(await ids(newbie_pick=False)) == {demo.product_id, cheap, gone}
    assert await ids(in_stock=False) == [gone]
    assert await ids(category="food") == [demo.product_id]
    assert (await ids(sort="commission"))[0] == rich
    assert await ids(q="围巾") == [rich]

    # mount in one call; sold-out and unknown products are refused
    mounted = await api.post("/windows/me/products", json={"product_id": rich}, headers=promoter)
    assert mounted.status_code == 201, mounted.text
    assert mounted.json()["status"] == "mounted"
    assert (await api.post("/windows/me/products", json={"product_id": cheap}, headers=promoter)).status_code == 201
    sold_out = await api.post("/windows/me/products", json={"product_id": gone}, headers=promoter)
    assert (sold_out.status_code, sold_out.json()["code"]) == (409, "SOLD_OUT")
    assert (await api.post("/windows/me/products", json={"product_id": 999_999}, headers=promoter)).status_code == 404
    assert (await api.post("/windows/me/products", json={"product_id": rich},
                           headers=token(demo.buyer_user_id, "buyer"))).status_code == 403

    window = (await api.get("/windows/me", headers=promoter)).json()
    assert [i["product"]["id"] for i in window["items"]] == [demo.product_id, rich, cheap]
    reordered = await api.put("/windows/me/order", json={"product_ids": [cheap, rich]}, headers=promoter)
    assert [i["product"]["id"] for i in reordered.json()["items"]] == [cheap, rich, demo.product_id]
    bad = await api.put("/windows/me/order", json={"product_ids": [gone]}, headers=promoter)
    assert (bad.status_code, bad.json()["code"]) == (422, "BAD_ORDER")

    hidden = await api.patch(f"/windows/me/products/{rich}", json={"hidden": True}, headers=promoter)
    assert hidden.status_code == 200
    public = (await api.get(f"/windows/{demo.window_id}", headers=promoter)).json()
    assert [p["id"] for p in public["products"]] == [cheap, demo.product_id]
    assert (await api.delete(f"/windows/me/products/{cheap}", headers=promoter)).status_code == 204
    public = (await api.get(f"/windows/{demo.window_id}", headers=promoter)).json()
    assert [p["id"] for p in public["products"]] == [demo.product_id]

    # stats: exposures and clicks counted per window item and viewer (once per WINDOW_EVENT_DEDUP),
    # never the window's own promoter; orders from paid orders
    from tests.helpers import make_user

    other_buyer = make_user(sessions, "buyer", "window-viewer")
    for viewer, kind in ((token(demo.buyer_user_id, "buyer"), "exposure"), (token(demo.buyer_user_id, "buyer"), "exposure"),
                         (token(other_buyer, "buyer"), "exposure"), (token(demo.buyer_user_id, "buyer"), "click"),
                         (promoter, "exposure")):
        counted = await api.post(f"/windows/{demo.window_id}/events", json={"product_id": demo.product_id, "kind": kind},
                                 headers=viewer)
        assert counted.status_code == 204
    stats = {row["product_id"]: row for row in (await api.get("/windows/me/stats", headers=promoter)).json()}
    assert (stats[demo.product_id]["exposures"], stats[demo.product_id]["clicks"]) == (2, 1)
    assert stats[rich]["exposures"] == 0


async def test_stock_updates_low_stock_alert_and_sold_out_leaves_every_window(api, demo, sessions, token, sandbox,
                                                                              temporal_env, stack, sandbox_app):
    # Some partner tests call clear_routes(); put the session's sandbox and API routes back.
    from integrations.http import route_to_app
    from tests.conftest import API_URL, SANDBOX_URL

    route_to_app(SANDBOX_URL, sandbox_app)
    route_to_app(API_URL, stack)
    supplier = token(demo.supplier_user_id, "supplier")
    other_user, other_window = second_promoter(sessions)
    with sessions.begin() as s:
        s.add(WindowProduct(window_id=other_window, product_id=demo.product_id))
    sku_a, sku_b = demo.sku_ids

    # only the owner may touch a SKU
    stranger, _ = active_supplier(sessions, 9)
    assert (await api.patch(f"/skus/{sku_a}", json={"stock": 1}, headers=token(stranger, "supplier"))).status_code == 404
    assert (await api.patch(f"/skus/{sku_a}", json={"stock": -1}, headers=supplier)).status_code == 422
    too_cheap = await api.patch(f"/skus/{sku_b}", json={"price_fen": 800}, headers=supplier)  # fixed 800 commission
    assert (too_cheap.status_code, too_cheap.json()["code"]) == (422, "COMMISSION_TOO_HIGH")

    low = await api.patch(f"/skus/{sku_a}", json={"stock": 3}, headers=supplier)
    assert low.status_code == 200 and low.json()["low_stock"] is True
    assert len(notifications(sessions, "low_stock", recipient_user_id=demo.supplier_user_id)) == 1
    await api.patch(f"/skus/{sku_a}", json={"stock": 2}, headers=supplier)
    assert len(notifications(sessions, "low_stock")) == 1  # once per crossing

    await api.patch(f"/skus/{sku_b}", json={"stock": 0}, headers=supplier)
    assert notifications(sessions, "window_product_off_sale") == []  # the other SKU still sells
    # The last two units sell: the product leaves both windows, both promoters are told.
    placed = await api.post("/orders", headers=token(demo.buyer_user_id, "buyer"), json={
        "window_id": demo.window_id, "lines": [{"sku_id": sku_a, "quantity": 2}], "address": ADDRESS})
    assert placed.status_code == 201, placed.text
    with sessions() as s:
        statuses = {wp.window_id: (wp.status, wp.off_reason) for wp in s.scalars(
            select(WindowProduct).where(WindowProduct.product_id == demo.product_id))}
    assert statuses == {demo.window_id: ("off_sale", "sold_out"), other_window: ("off_sale", "sold_out")}
    told = {n.recipient_user_id for n in notifications(sessions, "window_product_off_sale")}
    assert told == {demo.promoter_user_id, other_user}
    public = (await api.get(f"/windows/{demo.window_id}", headers=supplier)).json()
    assert public["products"] == []

    paid = await sandbox.post(f"/sandbox/pay/{placed.json()['order_no']}")
    assert paid.status_code == 200
    await wait_status(temporal_env.client, placed.json()["order_no"], OrderStatus.PAID)
    stats = (await api.get("/windows/me/stats", headers=token(demo.promoter_user_id, "promoter"))).json()
    assert [(r["orders"], r["units"], r["gmv_fen"]) for r in stats] == [(1, 2, 2 * 19_900)]

    # Restocked: back in the windows it left.
    await api.patch(f"/skus/{sku_b}", json={"stock": 50}, headers=supplier)
    with sessions() as s:
        assert {wp.status for wp in s.scalars(select(WindowProduct))} == {"mounted"}
    assert {n.recipient_user_id for n in notifications(sessions, "window_product_back")} == {
        demo.promoter_user_id, other_user}


async def test_suspension_delists_everything_and_reinstatement_restores_it(api, demo, sessions, token):
    operator, support = token(1, "operator"), token(2, "support")
    _, window2 = second_promoter(sessions)
    with sessions.begin() as s:
        s.add(WindowProduct(window_id=window2, product_id=demo.product_id, status="hidden"))
    assert (await api.post(f"/suppliers/{demo.supplier_id}/suspend", json={"reason": "售假"},
                           headers=token(demo.promoter_user_id, "promoter"))).status_code == 403
    suspended = await api.post(f"/suppliers/{demo.supplier_id}/suspend", json={"reason": "销售假冒商品"}, headers=operator)
    assert suspended.status_code == 200, suspended.text
    assert (suspended.json()["products"], suspended.json()["window_entries"]) == (1, 2)
    again = await api.post(f"/suppliers/{demo.supplier_id}/suspend", json={"reason": "x" * 3}, headers=support)
    assert again.status_code == 409
    with sessions() as s:
        assert s.get(Product, demo.product_id).status == "suspended"
        assert {wp.status for wp in s.scalars(select(WindowProduct))} == {"off_sale"}
    assert len(notifications(sessions, "window_product_off_sale")) == 2
    assert notifications(sessions, "supplier_suspended")
    assert (await api.get("/products", headers=operator)).json() == []
    order = await api.post("/orders", headers=token(demo.buyer_user_id, "buyer"), json={
        "window_id": demo.window_id, "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}], "address": ADDRESS})
    assert order.status_code == 409
    mount = await api.post("/windows/me/products", json={"product_id": demo.product_id},
                           headers=token(demo.promoter_user_id, "promoter"))
    assert mount.status_code == 404

    reinstated = await api.post(f"/suppliers/{demo.supplier_id}/reinstate", headers=support)
    assert reinstated.status_code == 200, reinstated.text
    with sessions() as s:
        assert s.get(Product, demo.product_id).status == "listed"
        assert {wp.status for wp in s.scalars(select(WindowProduct))} == {"mounted"}
    assert (await api.post(f"/suppliers/{demo.supplier_id}/reinstate", headers=support)).status_code == 409


async def test_support_suspends_one_product_and_only_its_reinstatement_brings_it_back(api, demo, sessions, token):
    support, operator = token(2, "support"), token(1, "operator")
    supplier = token(demo.supplier_user_id, "supplier")
    user2, window2 = second_promoter(sessions)
    other, _ = listed_product(sessions, demo.supplier_id, "同店的另一件")
    with sessions.begin() as s:
        s.add(WindowProduct(window_id=window2, product_id=demo.product_id, status="hidden"))
    url = f"/products/{demo.product_id}"
    assert (await api.post(f"{url}/suspend", json={"reason": "假冒"}, headers=supplier)).status_code == 403
    blank = await api.post(f"{url}/suspend", json={"reason": "   "}, headers=support)
    assert blank.status_code == 422, blank.text

    suspended = await api.post(f"{url}/suspend", json={"reason": "  标签与实物不符 "}, headers=support)
    assert suspended.status_code == 200, suspended.text
    assert suspended.json() == {"product_id": demo.product_id, "status": "product_suspended",
                                "suspended_reason": "标签与实物不符", "window_entries": 2}
    again = await api.post(f"{url}/suspend", json={"reason": "再来一次"}, headers=support)
    assert (again.status_code, again.json()["code"]) == (409, "NOT_SUSPENDABLE")
    with sessions() as s:
        assert {(wp.status, wp.off_reason) for wp in s.scalars(select(WindowProduct))} == {
            ("off_sale", "product_suspended")}
    assert {n.recipient_user_id for n in notifications(sessions, "window_product_off_sale")} == {
        demo.promoter_user_id, user2}
    assert [n.recipient_user_id for n in notifications(sessions, "product_suspended")] == [demo.supplier_user_id]
    assert [p["id"] for p in (await api.get("/products", headers=operator)).json()] == [other]
    order = await api.post("/orders", headers=token(demo.buyer_user_id, "buyer"), json={
        "window_id": demo.window_id, "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}], "address": ADDRESS})
    assert order.status_code == 409, order.text
    mine = {p["id"]: p for p in (await api.get("/products/mine", headers=supplier)).json()}
    assert mine[demo.product_id]["suspended_reason"] == "标签与实物不符"

    # The supplier's suspension and reinstatement move only its other product.
    assert (await api.post(f"/suppliers/{demo.supplier_id}/suspend", json={"reason": "资质过期"},
                           headers=operator)).json()["products"] == 1
    assert (await api.post(f"/suppliers/{demo.supplier_id}/reinstate", headers=operator)).json()["products"] == 1
    with sessions() as s:
        assert (s.get(Product, demo.product_id).status, s.get(Product, other).status) == ("product_suspended", "listed")
        assert {wp.status for wp in s.scalars(select(WindowProduct))} == {"off_sale"}

    reinstated = await api.post(f"{url}/reinstate", headers=support)
    assert reinstated.status_code == 200, reinstated.text
    assert (reinstated.json()["status"], reinstated.json()["window_entries"]) == ("listed", 2)
    with sessions() as s:
        assert s.get(Product, demo.product_id).suspended_reason is None
        assert {wp.status for wp in s.scalars(select(WindowProduct))} == {"mounted"}
    assert [n.recipient_user_id for n in notifications(sessions, "product_reinstated")] == [demo.supplier_user_id]
    assert (await api.post(f"{url}/reinstate", headers=support)).json()["code"] == "NOT_SUSPENDED"
    assert (await api.post("/products/999999/suspend", json={"reason": "不存在"}, headers=support)).status_code == 404


async def test_a_product_reinstated_while_its_supplier_is_suspended_or_sold_out_waits_for_that(
        api, demo, sessions, token):
    operator = token(1, "operator")
    url = f"/products/{demo.product_id}"
    assert (await api.post(f"{url}/suspend", json={"reason": "投诉较多"}, headers=operator)).status_code == 200
    assert (await api.post(f"/suppliers/{demo.supplier_id}/suspend", json={"reason": "售假"},
                           headers=operator)).status_code == 200
    waiting = await api.post(f"{url}/reinstate", headers=operator)
    assert (waiting.json()["status"], waiting.json()["window_entries"]) == ("suspended", 0)
    with sessions.begin() as s:
        assert {wp.off_reason for wp in s.scalars(select(WindowProduct))} == {"supplier_suspended"}
        for sku in s.scalars(select(Sku).where(Sku.product_id == demo.product_id)):
            sku.stock = 0
    back = await api.post(f"/suppliers/{demo.supplier_id}/reinstate", headers=operator)
    assert back.json()["products"] == 1
    with sessions() as s:
        assert s.get(Product, demo.product_id).status == "listed"
        # sold out meanwhile: off until restocked
        assert {(wp.status, wp.off_reason) for wp in s.scalars(select(WindowProduct))} == {("off_sale", "sold_out")}
