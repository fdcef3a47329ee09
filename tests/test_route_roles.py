"""Every route × every role, generated from the app's route table (the same routes the OpenAPI
document lists, plus those left out of it): each route declares who may call it
(api/access.py), every role outside that set is refused with 403 and a caller without a token
with 401; and on every GET route it may call (order and refund detail and lists among them) a
promoter or a supplier never reads the buyer's full name, phone, street address or openid
(api/views.py decides what each role sees)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends
from sqlalchemy import select

from api.access import Access, access_table, declare, public, undeclared
from api.app import create_app
from api.auth import ROLES, current_principal, require_roles
from db.models import OrderLine, Product, Sku, Supplier, User, WindowProduct
from domain.order_status import OrderStatus
from domain.refunds import RefundStatus
from tests.helpers import ADDRESS, pay, wait_refund, wait_status

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "1"), path)


def _role_users(sessions) -> dict[str, int]:
    """One real, active user per role, so a token is refused for its role and nothing else."""
    with sessions.begin() as s:
        ids = {}
        for role in ROLES:
            user = User(role=role, username=f"walker-{role}", display_name=role,
                        openid=f"oWALKER{role}" if role in ("buyer", "promoter") else None)
            s.add(user)
            s.flush()
            ids[role] = user.id
        return ids


async def walk_refusals(client, app, headers_by_role: dict[str, dict]) -> list[str]:
    """Call every route as every caller its declaration leaves out: no token must give 401,
    a token of another role 403. Returns what went wrong, one line per route and caller."""
    problems = []
    for (method, path), access in access_table(app).items():
        if access is None:
            problems.append(f"{method} {path}: declares no roles (api/access.py)")
            continue
        callers = [(None, {})] + list(headers_by_role.items())
        for role, headers in callers:
            if access.allows(role):
                continue
            answer = await client.request(method, _fill(path, {}), headers=headers,
                                          json={} if method in WRITES and method != "DELETE" else None)
            wanted = 401 if role is None else 403
            if answer.status_code != wanted:
                problems.append(f"{method} {path} as {role or 'anonymous'}: {answer.status_code}, wanted {wanted}")
    return problems


# --- the declarations -------------------------------------------------------------------------
def test_every_route_declares_who_may_call_it(settings, sessions):
    app = create_app(settings, sessions=sessions, pay=object())
    table = access_table(app)
    assert undeclared(app) == []
    documented = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    assert documented <= set(table), documented - set(table)  # the walk covers the whole document
    assert len(table) >= 90
    # routes open to anyone say why, and there are few of them
    open_routes = {key: a.why for key, a in table.items() if a.anonymous}
    assert all(open_routes.values()), open_routes
    console = {key for key in open_routes if key[1].startswith("/console")}
    # the console's pages check their own session cookie; each action there goes through the API
    assert all("session cookie" in open_routes[key] for key in console) and len(console) >= 10
    assert set(open_routes) - console == {
        ("POST", "/auth/wechat"), ("POST", "/auth/miniprogram"), ("POST", "/auth/token"), ("POST", "/webhooks/wechatpay"),
        ("POST", "/webhooks/logistics"), ("GET", "/webhooks/channels"), ("POST", "/webhooks/channels"),
        ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/outlets"),
        ("POST", "/suppliers")}
    assert table[("POST", "/suppliers")].roles == {"supplier"}  # anonymous applies; other roles may not
    assert table[("GET", "/coupons")].roles == {"supplier", "support", "operator"}
    assert table[("POST", "/windows/{window_id}/events")].roles == {"buyer", "promoter"}


def test_the_walker_flags_a_new_route_that_forgets_its_check(settings, sessions):
    app = create_app(settings, sessions=sessions, pay=object())
    assert undeclared(app) == []

    @app.get("/leaky/{order_no}")
    def leaky(order_no: str, principal=Depends(current_principal)):  # signed in, but which role?
        return {"order_no": order_no}

    extra = APIRouter(prefix="/extra")

    @extra.post("/things")
    def things():
        return {}

    @extra.get("/fine", dependencies=[Depends(require_roles("operator"))])
    def fine():
        return {}

    @extra.get("/open", dependencies=[Depends(public("a throwaway route open to all"))])
    def open_():
        return {}

    app.include_router(extra)
    assert undeclared(app) == [("GET", "/leaky/{order_no}"), ("POST", "/extra/things")]
    assert access_table(app)[("GET", "/extra/fine")].roles == {"operator"}
    assert access_table(app)[("GET", "/extra/open")].anonymous
    # a router-wide declaration covers every route of the router, narrowed by the route's own
    narrowed = APIRouter(prefix="/narrowed", dependencies=[Depends(require_roles("support", "operator"))])

    @narrowed.get("/x", dependencies=[Depends(require_roles("operator", "buyer"))])
    def x():
        return {}

    app.include_router(narrowed)
    assert access_table(app)[("GET", "/narrowed/x")].roles == {"operator"}
    try:
        public("  ")
    except ValueError:
        pass
    else:
        raise AssertionError("a public route must say why")


# --- every route × every role, over HTTP ---------------------------------------------------------
async def test_each_role_outside_a_routes_declaration_is_refused(api, stack, sessions, token):
    users = _role_users(sessions)
    headers = {role: token(user_id, role) for role, user_id in users.items()}
    problems = await walk_refusals(api, stack, headers)
    assert problems == [], "\n".join(problems)


async def test_the_walk_catches_a_declaration_the_route_does_not_enforce(settings, sessions, token):
    import httpx

    app = create_app(settings, sessions=sessions, pay=object())
    claims_operator_only = declare(lambda: None, Access(frozenset({"operator"})))  # declares, checks nothing

    @app.get("/claims", dependencies=[Depends(claims_operator_only)])
    def claims():
        return {"secret": "for operators"}

    @app.get("/forgot")
    def forgot(principal=Depends(current_principal)):
        return {}

    users = {"buyer": 1, "operator": 2}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://walk.test") as client:
        problems = [p for p in await walk_refusals(
            client, app, {role: token(uid, role) for role, uid in users.items()}) if "/claims" in p or "/forgot" in p]
    assert problems == ["GET /claims as anonymous: 200, wanted 401", "GET /claims as buyer: 200, wanted 403",
                        "GET /forgot: declares no roles (api/access.py)"]


# --- what each role reads of a real order ---------------------------------------------------------
def _second_supplier(sessions, demo) -> tuple[int, int, int]:
    """(supplier id, owner user id, sku id) of another supplier whose product is in the demo window."""
    with sessions.begin() as s:
        owner = User(role="supplier", username="second-supplier", display_name="第二家")
        s.add(owner)
        s.flush()
        supplier = Supplier(owner_user_id=owner.id, name="第二家供应商", service_fee_bps=200)
        s.add(supplier)
        s.flush()
        product = Product(supplier_id=supplier.id, title="手工红糖", category="food")
        s.add(product)
        s.flush()
        sku = Sku(product_id=product.id, spec="500g", price_fen=5_000, stock=50, commission_bps=1_000)
        s.add(sku)
        s.add(WindowProduct(window_id=demo.window_id, product_id=product.id))
        s.flush()
        return supplier.id, owner.id, sku.id


def _pii(demo) -> list[str]:
    return [ADDRESS["receiver"], ADDRESS["phone"], ADDRESS["detail"], ADDRESS["district"], demo.buyer_openid]


async def _reads(api, stack, role: str, headers, values) -> dict[tuple[str, str], object]:
    """Every GET route this caller's role may call, with the order's, refund's, window's... ids."""
    out = {}
    for (method, path), access in access_table(stack).items():
        if method == "GET" and access is not None and access.allows(role):
            out[(method, path)] = await api.get(_fill(path, values), headers=headers)
    return out


async def test_promoters_and_suppliers_see_buyers_masked_and_suppliers_only_their_lines(
        api, stack, sandbox, demo, token, temporal_env, sessions):
    other_id, other_user, other_sku = _second_supplier(sessions, demo)
    buyer, promoter = token(demo.buyer_user_id, "buyer"), token(demo.promoter_user_id, "promoter")
    supplier_a, supplier_b = token(demo.supplier_user_id, "supplier"), token(other_user, "supplier")
    users = _role_users(sessions)
    staff, support = token(users["outlet_staff"], "outlet_staff"), token(users["support"], "support")
    placed = await api.post("/orders", headers=buyer, json={
        "window_id": demo.window_id, "address": ADDRESS,
        "lines": [{"sku_id": demo.sku_ids[0], "quantity": 2}, {"sku_id": other_sku, "quantity": 1}]})
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    with sessions() as s:
        lines = {ln.supplier_id: ln for ln in s.scalars(select(OrderLine).where(OrderLine.order_no == order_no))}
    line_a, line_b = lines[demo.supplier_id], lines[other_id]

    # a refund over both suppliers' lines: each supplier sees only its own part of it
    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={
        "kind": "cancel", "lines": [{"line_id": line_a.id, "quantity": 1}, {"line_id": line_b.id, "quantity": 1}]})
    assert asked.status_code == 201, asked.text
    refund_no = asked.json()["refund_no"]
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    values = {"order_no": order_no, "refund_no": refund_no, "window_id": str(demo.window_id),
              "product_id": str(demo.product_id), "sku_id": str(demo.sku_ids[0]), "promoter_id": str(demo.promoter_id),
              "supplier_id": str(demo.supplier_id)}

    # the buyer (and the platform's staff) see everything of the order
    for headers in (buyer, support):
        mine = (await api.get(f"/orders/{order_no}", headers=headers)).json()
        assert mine["shipping_address"] == ADDRESS and mine["view"] == "full" and len(mine["lines"]) == 2

    pii = _pii(demo)
    read = 0
    for who, role, headers in (("promoter", "promoter", promoter), ("supplier A", "supplier", supplier_a),
                               ("supplier B", "supplier", supplier_b), ("outlet staff", "outlet_staff", staff)):
        for (method, path), answer in (await _reads(api, stack, role, headers, values)).items():
            read += answer.status_code == 200
            if path == "/orders/{order_no}/ship-to":
                continue  # the supplier's shipping label, checked below
            leaked = [v for v in pii if v in answer.text]
            assert not leaked, f"{method} {path} shows {who} {leaked}: {answer.text}"
    assert read >= 20  # the walk did read real answers, not only refusals

    # the promoter: the order from their window, buyer masked, no payment id or notes
    seen = (await api.get(f"/orders/{order_no}", headers=promoter)).json()
    assert seen["view"] == "promoter"
    assert seen["shipping_address"] == {"receiver": "王*明", "phone": "138****8000", "province": "上海", "city": "上海"}
    assert seen["transaction_id"] is None and all(e["note"] == "" for e in seen["history"])
    listed = (await api.get("/orders", headers=promoter)).json()
    assert [o["order_no"] for o in listed] == [order_no] and listed[0]["shipping_address"]["phone"] == "138****8000"
    assert (await api.get(f"/refunds/{refund_no}", headers=promoter)).status_code == 404  # not their purchase
    assert (await api.get("/refunds", headers=promoter)).json() == []

    # each supplier: only its own lines and what they came to
    for headers, line in ((supplier_a, line_a), (supplier_b, line_b)):
        order = (await api.get(f"/orders/{order_no}", headers=headers)).json()
        assert order["view"] == "supplier" and [ln["id"] for ln in order["lines"]] == [line.id]
        assert order["total_fen"] == line.paid_fen and order["promoter_id"] is None
        assert order["shipping_address"]["receiver"] == "王*明"
        assert [o["order_no"] for o in (await api.get("/orders", headers=headers)).json()] == [order_no]
        refund = (await api.get(f"/refunds/{refund_no}", headers=headers)).json()
        assert [ln["order_line_id"] for ln in refund["lines"]] == [line.id]
        assert refund["amount_fen"] == refund["lines"][0]["amount_fen"] and refund["review_reasons"] == ""
        assert [r["refund_no"] for r in (await api.get("/refunds", headers=headers)).json()] == [refund_no]
    whole = (await api.get(f"/refunds/{refund_no}", headers=buyer)).json()
    assert len(whole["lines"]) == 2 and whole["amount_fen"] == sum(ln["amount_fen"] for ln in whole["lines"])

    # the full address: only to a supplier that still has lines of the order to ship
    label = await api.get(f"/orders/{order_no}/ship-to", headers=supplier_a)
    assert label.status_code == 200, label.text
    assert label.json()["address"] == ADDRESS and [ln["id"] for ln in label.json()["lines"]] == [line_a.id]
    gone = await api.get(f"/orders/{order_no}/ship-to", headers=supplier_b)  # its only unit was refunded
    assert (gone.status_code, gone.json()["code"]) == (409, "NOTHING_TO_SHIP")
    for headers in (buyer, promoter, staff):
        assert (await api.get(f"/orders/{order_no}/ship-to", headers=headers)).status_code == 403
    shipped = await api.post(f"/orders/{order_no}/shipments", headers=supplier_a,
                             json={"carrier": "shunfeng", "waybill_no": "SF5550001111"})
    assert shipped.status_code == 200, shipped.text
    await wait_status(temporal_env.client, order_no, OrderStatus.SHIPPED)
    after = await api.get(f"/orders/{order_no}/ship-to", headers=supplier_a)
    assert (after.status_code, after.json()["code"]) == (409, "NOTHING_TO_SHIP")
    order = (await api.get(f"/orders/{order_no}", headers=supplier_a)).text
    assert not [v for v in pii if v in order]
    # outlet staff read no orders at all
    assert (await api.get(f"/orders/{order_no}", headers=staff)).status_code == 403
