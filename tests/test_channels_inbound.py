"""Channels shop inbound (issue 20): orders paid and after-sales opened in the WeChat Channels
shop reach our order, commission and refund processes. The sandbox's shop plays the buyer and
pushes its events in security mode to our webhook over HTTP (the API through its ASGI app);
Temporal's test server skips the waits."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from activities.channels_sync import ensure_shop_product
from activities.ledger import balance
from db.channels_models import ChannelsEvent, ChannelsPullCursor
from db.models import LedgerTransaction, Order, Payment, Sku
from domain import ledger as rules
from domain.channels_inbound import ChannelsPullInput, ShopOrderProgress, shop_order_no, shop_workflow_id
from domain.order_status import OrderStatus
from domain.orders import OrderProgress
from domain.refunds import RefundOutcome, RefundStatus, shop_refund_no
from integrations.channels import ChannelsClient
from workflows.channels_pull import ChannelsPullWorkflow
from workflows.order import workflow_id as order_workflow_id
from workflows.refund import workflow_id as refund_workflow_id
from tests.channels_helpers import listed, promoter, world  # noqa: F401 - world is a fixture
from tests.conftest import API_URL
from tests.helpers import (
    assert_books_balance,
    keep_run_history,
    make_user,
    result_skipping_time,
    wait_refund,
    wait_status,
)
from tests.promoter_helpers import eventually

BUYER = "oShopBuyer0000000000000000001"
PRICE = 9_900


@pytest.fixture
async def shop(settings, api):
    async with ChannelsClient.from_settings(settings) as client:
        yield client


@pytest.fixture
async def pushes(sandbox, api):
    """The sandbox's shop pushes to our webhook (the URL check passes first), no faults."""
    saved = await sandbox.put("/sandbox/channels/push", json={"url": f"{API_URL}/webhooks/channels"})
    assert saved.status_code == 200 and saved.json()["verified"] is True, saved.text

    async def configure(**faults):
        answer = await sandbox.put("/sandbox/channels/push", json={"url": f"{API_URL}/webhooks/channels", **faults})
        assert answer.status_code == 200, answer.text

    yield configure
    await sandbox.put("/sandbox/channels/push", json={"url": None})


async def shop_product(sessions, shop, world, stock: int = 10) -> dict:
    pid, sku_id = listed(sessions, world["supplier_id"], f"凤庆滇红 {world['block']}", stock=stock, price=PRICE)
    channels_id = await ensure_shop_product(sessions, shop, pid, on_sale=True)
    return {"product_id": pid, "sku_id": sku_id, "channels_id": channels_id}


async def buy_in_shop(sandbox, product: dict, finder: str | None, count: int = 2) -> str:
    made = await sandbox.post("/sandbox/channels/orders", json={
        "openid": BUYER, "product_id": product["channels_id"], "count": count, "finder_id": finder})
    assert made.status_code == 200, made.text
    shop_order_id = made.json()["order_id"]
    paid = await sandbox.post(f"/sandbox/channels/orders/{shop_order_id}/pay")
    assert paid.status_code == 200, paid.text
    return shop_order_id


async def order_exists(sessions, order_no: str):
    async def check():
        with sessions() as s:
            return s.get(Order, order_no)
    return await eventually(check, timeout=30, what=f"order {order_no}")


async def test_a_shop_order_through_a_window_completes_with_commission_and_supplier_share(
        api, sandbox, world, sessions, shop, pushes, token, temporal_env):
    product = await shop_product(sessions, shop, world)
    seller = promoter(sessions, "小橙", f"sph_in{world['block']}")
    shop_order_id = await buy_in_shop(sandbox, product, seller["finder"], count=2)
    order_no = shop_order_no(shop_order_id)

    await order_exists(sessions, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID, timeout=30)
    paid = 2 * PRICE
    commission = paid * 1_000 // 10_000  # the SKU's 10 % to the seller's window, tier 1
    fee = paid * 300 // 10_000
    with sessions() as s:
        order = s.get(Order, order_no)
        assert (order.window_id, order.source, order.channels_order_id) == (seller["window_id"], "channels",
                                                                            shop_order_id)
        payment = s.scalar(select(Payment).where(Payment.order_no == order_no))
        assert (payment.kind, payment.amount_fen, payment.status) == ("channels", paid, "SUCCESS")
        assert balance(s, rules.CHANNELS_CLEARING) == paid and balance(s, rules.CLEARING) == 0
        assert balance(s, rules.promoter_pending(order.promoter_id)) == commission
        assert s.get(Sku, product["sku_id"]).stock == 8  # the shop sold two: ours follows
        assert_books_balance(s)

    supplier = token(world["supplier_user_id"], "supplier")
    shipped = await api.post(f"/orders/{order_no}/shipments", headers=supplier,
                             json={"carrier": "shunfeng", "waybill_no": f"SF{shop_order_id[-10:]}"})
    assert shipped.status_code == 200, shipped.text
    await wait_status(temporal_env.client, order_no, OrderStatus.SHIPPED)
    shop_order = await shop.get_order(shop_order_id)
    assert shop_order.status == 30  # the parcel reached the shop: 待收货

    confirmed = await sandbox.post(f"/sandbox/channels/orders/{shop_order_id}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    await wait_status(temporal_env.client, order_no, OrderStatus.RECEIVED, timeout=30)
    result = await result_skipping_time(temporal_env, order_workflow_id(order_no), OrderProgress)
    assert result.status == OrderStatus.COMPLETED

    with sessions() as s:
        promoter_id = s.get(Order, order_no).promoter_id
        assert balance(s, rules.promoter_pending(promoter_id)) == 0
        assert balance(s, rules.promoter_available(promoter_id)) == commission
        assert balance(s, rules.supplier_payable(world["supplier_id"])) == paid - fee - commission
        assert balance(s, rules.PLATFORM_REVENUE) == fee
        assert_books_balance(s)
    shop_run = await result_skipping_time(temporal_env, shop_workflow_id(shop_order_id), ShopOrderProgress)
    assert shop_run.order_no == order_no and shop_run.failure is None
    await keep_run_history(temporal_env, order_workflow_id(order_no), None, "order_paid_in_channels_shop")
    await keep_run_history(temporal_env, shop_workflow_id(shop_order_id), None, "shop_order_confirmed")


async def test_a_shop_after_sale_refund_reverses_commission_and_share(
        api, sandbox, world, sessions, shop, pushes, token, temporal_env):
    product = await shop_product(sessions, shop, world)
    seller = promoter(sessions, "小柚", f"sph_as{world['block']}")
    shop_order_id = await buy_in_shop(sandbox, product, seller["finder"], count=1)
    order_no = shop_order_no(shop_order_id)
    await order_exists(sessions, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID, timeout=30)

    # the buyer cannot refund a shop-paid order through us: it is the shop's after-sale
    with sessions() as s:
        buyer_id = s.get(Order, order_no).buyer_user_id
    asked = await api.post(f"/orders/{order_no}/refunds", headers=token(buyer_id, "buyer"),
                           json={"kind": "cancel", "reason": "不想要了"})
    assert asked.status_code == 409 and asked.json()["code"] == "REFUND_IN_SHOP", asked.text

    opened = await sandbox.post("/sandbox/channels/aftersales", json={"order_id": shop_order_id, "type": "REFUND"})
    assert opened.status_code == 200, opened.text
    refund_no = shop_refund_no(opened.json()["after_sale_order_id"])
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED, timeout=30)
    outcome = await result_skipping_time(temporal_env, refund_workflow_id(refund_no), RefundOutcome)
    assert outcome.status == RefundStatus.REFUNDED
    after_sale = await shop.get_aftersale(opened.json()["after_sale_order_id"])
    assert after_sale.status == "MERCHANT_REFUND_SUCCESS"  # we accepted: the shop paid the buyer back

    result = await result_skipping_time(temporal_env, order_workflow_id(order_no), OrderProgress)
    assert result.status == OrderStatus.REFUNDED
    with sessions() as s:
        promoter_id = s.get(Order, order_no).promoter_id
        assert balance(s, rules.promoter_pending(promoter_id)) == 0
        assert balance(s, rules.promoter_available(promoter_id)) == 0
        assert balance(s, rules.supplier_payable(world["supplier_id"])) == 0
        assert balance(s, rules.PLATFORM_REVENUE) == 0
        assert balance(s, rules.CHANNELS_CLEARING) == 0
        assert s.get(Sku, product["sku_id"]).stock == 10  # cancelled before shipping: back on sale
        assert_books_balance(s)
    await keep_run_history(temporal_env, refund_workflow_id(refund_no), None, "refund_channels_aftersale")


async def test_a_lost_push_is_found_by_the_pull(api, sandbox, world, sessions, shop, pushes, temporal_env, settings):
    product = await shop_product(sessions, shop, world)
    seller = promoter(sessions, "小梨", f"sph_lp{world['block']}")
    await asyncio.sleep(1.1)  # the shop's clock counts seconds: earlier tests' changes fall before the cursor
    with sessions.begin() as s:  # the last pull ended just now: only this test's changes are new
        for name in ("orders", "aftersales"):
            s.merge(ChannelsPullCursor(name=name, until=int(time.time()), updated_at=func.now()))
    await pushes(lose=10)
    shop_order_id = await buy_in_shop(sandbox, product, seller["finder"])
    order_no = shop_order_no(shop_order_id)
    with sessions() as s:
        assert s.get(Order, order_no) is None  # both pushes were lost

    pull = ChannelsPullInput(lookback=timedelta(0), order_timings=settings.order_timings(),
                             linger=settings.shop_order_linger)
    handle = await temporal_env.client.start_workflow(ChannelsPullWorkflow.run, pull, id="channels-pull-test",
                                                      task_queue=settings.task_queue)
    found = await handle.result()
    assert (found.orders, found.new_events) == (1, 1)
    await order_exists(sessions, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID, timeout=30)

    again = await temporal_env.client.execute_workflow(ChannelsPullWorkflow.run, pull, id="channels-pull-test-2",
                                                       task_queue=settings.task_queue)
    assert again.new_events == 0  # nothing changed since: nothing handed over twice
    await keep_run_history(temporal_env, "channels-pull-test", None, "channels_pull")


async def test_duplicated_and_reordered_pushes_change_nothing_twice(
        api, sandbox, world, sessions, shop, pushes, temporal_env):
    product = await shop_product(sessions, shop, world)
    seller = promoter(sessions, "小桃", f"sph_dr{world['block']}")
    await pushes(hold=True, duplicate=True)
    shop_order_id = await buy_in_shop(sandbox, product, seller["finder"])
    released = await sandbox.post("/sandbox/channels/push/release")  # newest first: paid before created
    assert released.json()["sent"] == 2
    order_no = shop_order_no(shop_order_id)
    await order_exists(sessions, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID, timeout=30)

    await pushes(duplicate=True)
    opened = await sandbox.post("/sandbox/channels/aftersales",
                                json={"order_id": shop_order_id, "type": "REFUND", "amount": 100})
    refund_no = shop_refund_no(opened.json()["after_sale_order_id"])
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED, timeout=30)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Order).where(Order.channels_order_id == shop_order_id)) == 1
        kinds = sorted(s.scalars(select(LedgerTransaction.kind).where(LedgerTransaction.order_no == order_no)))
        assert kinds.count("payment") == 1 and kinds.count("refund") == 1
        keys = list(s.scalars(select(ChannelsEvent.key).where(ChannelsEvent.shop_order_id == shop_order_id)))
        assert len(keys) == len(set(keys)) >= 3  # created, paid, after-sale: each kept once
        assert_books_balance(s)


async def test_a_push_with_a_bad_signature_is_refused(api, sandbox, sessions, clean_db):
    good = await sandbox.put("/sandbox/channels/push", json={"url": f"{API_URL}/webhooks/channels"})
    assert good.json()["verified"] is True
    assert (await api.get("/webhooks/channels", params={"signature": "0" * 40, "timestamp": "1", "nonce": "2",
                                                         "echostr": "abc"})).status_code == 401
    refused = await api.post("/webhooks/channels", params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "2"},
                             content=b'{"ToUserName": "gh_x", "Encrypt": "AAAA"}')
    assert refused.status_code == 401 and refused.text == "signature verification failed"
    garbage = await api.post("/webhooks/channels", content=b"not json")
    assert garbage.status_code == 401
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(ChannelsEvent)) == 0
    await sandbox.put("/sandbox/channels/push", json={"url": None})


async def shipped_shop_order(api, sandbox, world, sessions, shop, token, temporal_env, finder: str) -> tuple[str, str]:
    product = await shop_product(sessions, shop, world)
    shop_order_id = await buy_in_shop(sandbox, product, finder, count=1)
    order_no = shop_order_no(shop_order_id)
    await order_exists(sessions, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID, timeout=30)
    shipped = await api.post(f"/orders/{order_no}/shipments", headers=token(world["supplier_user_id"], "supplier"),
                             json={"carrier": "yuantong", "waybill_no": f"YT{shop_order_id[-10:]}"})
    assert shipped.status_code == 200, shipped.text
    await wait_status(temporal_env.client, order_no, OrderStatus.SHIPPED)
    return shop_order_id, order_no


async def test_a_shop_return_waits_for_the_goods_and_the_suppliers_receipt(
        api, sandbox, world, sessions, shop, pushes, token, temporal_env):
    seller = promoter(sessions, "小杏", f"sph_rt{world['block']}")
    shop_order_id, order_no = await shipped_shop_order(api, sandbox, world, sessions, shop, token, temporal_env,
                                                       seller["finder"])
    opened = await sandbox.post("/sandbox/channels/aftersales", json={"order_id": shop_order_id, "type": "RETURN"})
    after_sale_id = opened.json()["after_sale_order_id"]
    refund_no = shop_refund_no(after_sale_id)
    await wait_refund(temporal_env.client, refund_no, RefundStatus.AWAITING_RETURN, timeout=30)
    assert (await shop.get_aftersale(after_sale_id)).status == "USER_WAIT_RETURN"  # accepted once: send it back

    sent_back = await sandbox.post(f"/sandbox/channels/aftersales/{after_sale_id}/returned")
    assert sent_back.status_code == 200, sent_back.text
    await wait_refund(temporal_env.client, refund_no, RefundStatus.RETURN_SHIPPED, timeout=30)
    with sessions() as s:
        promoter_id = s.get(Order, order_no).promoter_id
        assert balance(s, rules.promoter_pending(promoter_id)) == PRICE * 1_000 // 10_000  # not reversed yet
    received = await api.post(f"/refunds/{refund_no}/confirm-return",
                              headers=token(world["supplier_user_id"], "supplier"))
    assert received.status_code == 200, received.text
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED, timeout=30)
    assert (await shop.get_aftersale(after_sale_id)).status == "MERCHANT_REFUND_SUCCESS"
    with sessions() as s:
        assert balance(s, rules.promoter_pending(promoter_id)) == 0
        assert balance(s, rules.CHANNELS_CLEARING) == 0
        assert_books_balance(s)


async def test_a_rejected_quality_claim_goes_back_to_the_shop_with_its_reason(
        api, sandbox, world, sessions, shop, pushes, token, temporal_env):
    seller = promoter(sessions, "小柿", f"sph_qc{world['block']}")
    shop_order_id, order_no = await shipped_shop_order(api, sandbox, world, sessions, shop, token, temporal_env,
                                                       seller["finder"])
    opened = await sandbox.post("/sandbox/channels/aftersales",
                                json={"order_id": shop_order_id, "type": "REFUND", "reason": "不新鲜"})
    after_sale_id = opened.json()["after_sale_order_id"]
    refund_no = shop_refund_no(after_sale_id)
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REVIEWING, timeout=30)
    support = token(make_user(sessions, "support", "kefu-shop"), "support")
    decided = await api.post(f"/refunds/{refund_no}/review", headers=support,
                             json={"approve": False, "note": "签收照片完好，请补充开箱视频"})
    assert decided.status_code == 200, decided.text
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REJECTED, timeout=30)
    at_shop = await shop.get_aftersale(after_sale_id)
    assert at_shop.status == "MERCHANT_REJECT_REFUND"
    assert at_shop.details["reject_reason"] == "签收照片完好，请补充开箱视频"
    with sessions() as s:
        assert balance(s, rules.promoter_pending(s.get(Order, order_no).promoter_id)) == PRICE * 1_000 // 10_000
        assert_books_balance(s)
