"""The contract a frontend builds on: the payment of an unpaid order can always be fetched again
(GET /orders/{no}/payment), POST /orders answers 202 instead of holding the request, every
error has the one documented shape, and bad text or numbers are a 422, never a 500."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from temporalio.worker import Replayer

from api.contract import INT_MAX
from domain.order_status import OrderStatus
from tests.helpers import ADDRESS, assert_books_balance, keep_history, make_user, place, wait_status, replay_converter
from workflows.order import OrderWorkflow, workflow_id

ERROR_KEYS = {"code", "message"}


def _is_error(body: dict, code: str | None = None) -> bool:
    return ERROR_KEYS <= body.keys() <= ERROR_KEYS | {"details"} and (code is None or body["code"] == code)


async def test_buyer_who_lost_the_answer_pays_through_get_payment(api, sandbox, demo, token, temporal_env, sessions):
    buyer = token(demo.buyer_user_id, "buyer")
    # The mini program places the order, then loses the answer (app killed, network gone).
    lost = await place(api, buyer, demo, quantity=1)
    assert lost.status_code == 201, lost.text
    del lost

    # Back in the app: the buyer's unpaid orders, and the payment of the one just placed.
    pending = (await api.get("/orders", params={"status": "PENDING_PAYMENT"}, headers=buyer)).json()
    assert len(pending) == 1
    order_no = pending[0]["order_no"]
    first = await api.get(f"/orders/{order_no}/payment", headers=buyer)
    assert first.status_code == 200, first.text
    payment = first.json()
    assert payment["order_no"] == order_no and payment["status"] == "PENDING_PAYMENT"
    assert payment["total_fen"] == 19_900
    prepay = payment["prepay"]
    assert prepay["package"] == f"prepay_id={prepay['prepay_id']}" and prepay["signType"] == "RSA"
    assert {"appId", "timeStamp", "nonceStr", "paySign"} <= prepay.keys()
    # Asked again while it is valid: the same prepay.
    again = (await api.get(f"/orders/{order_no}/payment", headers=buyer)).json()
    assert again["prepay"] == prepay

    # Nobody else may fetch it: another buyer's view is a 404, a supplier's role a 403.
    stranger = make_user(sessions, "buyer", "stranger")
    other = await api.get(f"/orders/{order_no}/payment", headers=token(stranger, "buyer"))
    assert other.status_code == 404 and _is_error(other.json(), "NOT_FOUND")
    supplier = await api.get(f"/orders/{order_no}/payment", headers=token(demo.supplier_user_id, "supplier"))
    assert supplier.status_code == 403 and _is_error(supplier.json(), "FORBIDDEN")

    # wx.requestPayment with what GET gave: WeChat Pay takes that prepay_id.
    paid = await sandbox.post(f"/sandbox/pay/{order_no}", params={"prepay_id": prepay["prepay_id"]})
    assert paid.status_code == 200, paid.text
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)

    after = await api.get(f"/orders/{order_no}/payment", headers=buyer)
    assert after.status_code == 409 and _is_error(after.json(), "ORDER_NOT_PAYABLE"), after.text
    with sessions() as s:
        assert_books_balance(s)


async def test_an_expired_prepay_is_made_again(api, sandbox, demo, token, temporal_env, settings, monkeypatch):
    # periods in real seconds: skipping time on the test server stalls once an earlier test's
    # workflow ended with an activity in flight (see tests/helpers.py result_skipping_time)
    monkeypatch.setattr(settings, "prepay_valid_for", timedelta(seconds=1))
    buyer = token(demo.buyer_user_id, "buyer")
    placed = await place(api, buyer, demo, quantity=1)
    assert placed.status_code == 201, placed.text
    order_no, old = placed.json()["order_no"], placed.json()["prepay"]

    # Time passes at WeChat Pay (its prepay_id expires) and in the workflow (1 s, well within the
    # 15 min payment timeout).
    await sandbox.post(f"/sandbox/pay/{order_no}/expire-prepay")
    await asyncio.sleep(1.5)
    refused = await sandbox.post(f"/sandbox/pay/{order_no}", params={"prepay_id": old["prepay_id"]})
    assert refused.status_code == 400 and refused.json()["code"] == "PREPAY_EXPIRED"

    fresh = await api.get(f"/orders/{order_no}/payment", headers=buyer)
    assert fresh.status_code == 200, fresh.text
    new = fresh.json()["prepay"]
    assert new["prepay_id"] != old["prepay_id"] and new["package"] == f"prepay_id={new['prepay_id']}"
    # the fresh one is kept: asked again, the same
    assert (await api.get(f"/orders/{order_no}/payment", headers=buyer)).json()["prepay"] == new

    paid = await sandbox.post(f"/sandbox/pay/{order_no}", params={"prepay_id": new["prepay_id"]})
    assert paid.status_code == 200, paid.text
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await keep_history(temporal_env, order_no, "order_prepay_refreshed")
    history = await temporal_env.client.get_workflow_handle(workflow_id(order_no)).fetch_history()
    await Replayer(workflows=[OrderWorkflow], data_converter=replay_converter()).replay_workflow(history)


async def test_place_answers_202_and_the_payment_follows(api, sandbox, demo, token, temporal_env, settings, monkeypatch):
    buyer = token(demo.buyer_user_id, "buyer")
    monkeypatch.setattr(settings, "order_prepay_wait_seconds", 0.0)  # do not wait at all
    placed = await place(api, buyer, demo, quantity=1)
    assert placed.status_code == 202, placed.text
    body = placed.json()
    order_no = body["order_no"]
    assert body["status"] == "PENDING_PAYMENT" and body["prepay"] is None
    assert body["payment_url"] == placed.headers["location"] == f"/orders/{order_no}/payment"
    not_yet = await api.get(body["payment_url"], headers=buyer)
    assert not_yet.status_code == 503 and _is_error(not_yet.json(), "PAYMENT_NOT_READY")
    assert not_yet.headers["retry-after"]

    monkeypatch.setattr(settings, "order_prepay_wait_seconds", 10.0)
    fetched = await api.get(body["payment_url"], headers=buyer)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["prepay"]["package"].startswith("prepay_id=")
    # the same Idempotency-Key again answers the same order, now with its prepay
    again = await place(api, buyer, demo, quantity=1)
    assert again.status_code in (201, 202)


async def test_a_closed_order_is_not_payable(api, demo, token, temporal_env, settings, monkeypatch):
    monkeypatch.setattr(settings, "payment_timeout", timedelta(seconds=1))
    buyer = token(demo.buyer_user_id, "buyer")
    placed = await place(api, buyer, demo, quantity=1)
    order_no = placed.json()["order_no"]
    await wait_status(temporal_env.client, order_no, OrderStatus.CANCELLED)  # unpaid past the timeout: closed
    closed = await api.get(f"/orders/{order_no}/payment", headers=buyer)
    assert closed.status_code == 409 and _is_error(closed.json(), "ORDER_NOT_PAYABLE"), closed.text


async def test_bad_text_and_numbers_are_422_in_the_one_error_shape(api, demo, token):
    buyer = token(demo.buyer_user_id, "buyer")
    operator = token(demo.supplier_user_id, "supplier")  # any authenticated role
    cases = [
        ("post", "/orders", {"json": {"window_id": demo.window_id, "lines": [{"sku_id": demo.sku_ids[0],
                                                                                "quantity": 1}],
                                      "address": ADDRESS | {"detail": "世纪大道\x00100 号"}}}, buyer),
        ("post", "/orders", {"json": {"window_id": 2**31, "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}],
                                      "address": ADDRESS}}, buyer),
        ("post", "/orders", {"json": {"window_id": demo.window_id, "lines": [{"sku_id": 2**63, "quantity": 1}],
                                      "address": ADDRESS}}, buyer),
        ("post", "/orders", {"content": '{"lines": [{"sku_id": 1, "quantity": NaN}]}',
                             "headers": {"content-type": "application/json"}}, buyer),
        ("post", "/orders", {"content": json.dumps({"window_id": demo.window_id,  # a lone surrogate, escaped
                                                    "lines": [{"sku_id": 1, "quantity": 1}],
                                                    "address": ADDRESS | {"receiver": "\ud800"}}),
                             "headers": {"content-type": "application/json"}}, buyer),
        ("get", "/orders", {"params": {"offset": -1}}, buyer),
        ("post", "/withdrawals", {"json": {"amount_fen": 2**53}}, token(demo.promoter_user_id, "promoter")),
        ("get", "/orders", {"params": {"limit": 2**40}}, buyer),
        ("get", f"/products/{2**31}", {}, operator),
        ("get", "/products", {"params": {"q": "tea\x07"}}, buyer),
        ("get", "/orders/CC%00123456/payment", {}, buyer),
    ]
    for method, path, kwargs, headers in cases:
        extra = kwargs.pop("headers", {})
        answer = await api.request(method.upper(), path, headers=headers | extra, **kwargs)
        assert answer.status_code == 422, (path, kwargs, answer.status_code, answer.text)
        body = answer.json()
        assert _is_error(body, "VALIDATION_ERROR"), body
        assert body["details"] and {"loc", "msg", "type"} <= body["details"][0].keys()

    # a distance sort from the ends of the earth is an answer, not a 500
    for lat, lng in ((90, 180), (-90, -180), (0, 180), (-90, 0)):
        near = await api.get("/outlets", params={"lat": lat, "lng": lng})
        assert near.status_code == 200, near.text
    beyond = await api.get("/outlets", params={"lat": 91, "lng": 0})
    assert beyond.status_code == 422 and _is_error(beyond.json(), "VALIDATION_ERROR")
    nan = await api.get("/outlets", params={"lat": "nan", "lng": "inf"})
    assert nan.status_code == 422 and _is_error(nan.json(), "VALIDATION_ERROR")


def test_every_operation_documents_its_errors_in_one_schema(stack):
    doc = stack.openapi()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and set(schemas["Error"]["required"]) == {"code", "message"}
    webhooks = {"/webhooks/wechatpay", "/webhooks/logistics"}
    plain_text = {"/webhooks/channels"}  # the Channels shop reads a plain "success" and its refusals
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
            assert "503" in errors, (method, path)
            for status, response in errors.items():
                if path in plain_text and "text/plain" in response["content"]:
                    continue
                ref = response["content"]["application/json"]["schema"]["$ref"]
                if path not in webhooks:
                    assert ref == "#/components/schemas/Error", (method, path, status)
            if operation.get("security"):
                assert {"401", "403"} <= errors.keys(), (method, path)
            if "{" in path:
                assert "404" in errors, (method, path)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in errors, (method, path)
    payment = doc["paths"]["/orders/{order_no}/payment"]["get"]["responses"]
    assert {"200", "401", "403", "404", "409", "422", "503"} <= payment.keys()
    assert "202" in doc["paths"]["/orders"]["post"]["responses"]
    # input bounds are in the document too
    line = schemas.get("LineRequest-Request", schemas.get("LineRequest"))
    assert line["properties"]["sku_id"]["maximum"] == INT_MAX
