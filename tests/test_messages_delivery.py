"""Subscribe messages from the notification outbox, checked at the sandbox's messages API, and
the shipment of a Channels shop order sent to the shop (checked at the sandbox's Channels API)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from sqlalchemy import select
from temporalio.client import ScheduleOverlapPolicy
from temporalio.testing import ActivityEnvironment

from activities.catalog import notify
from activities.channels_delivery import ChannelsDeliveryActivities
from activities.messages import MessageActivities
from db.catalog_models import ChannelsListing, Notification
from domain.messages import MessageTemplates
from domain.order_status import OrderStatus
from domain.orders import ShipmentInput
from integrations.channels import ChannelsClient, ProductDraft, Sku
from integrations.messages import MessagesClient
from workflows.schedules import MESSAGES_DRAIN_SCHEDULE_ID, schedules
from settings import Settings
from workflows.messages import MessageDrainWorkflow
from tests.helpers import (
    assert_books_balance,
    keep_history,
    keep_run_history,
    pay,
    place,
    result_skipping_time,
    run_to_end,
    ship_and_deliver,
    wait_status,
)


def _messages(settings, sessions, **options) -> MessageActivities:
    return MessageActivities(sessions, MessagesClient.from_settings(settings), MessageTemplates(
        order_status=settings.message_template_order_status, presale_balance=settings.message_template_presale_balance,
        refund=settings.message_template_refund, general=settings.message_template_general,
        promoter=settings.message_template_promoter, supplier=settings.message_template_supplier), **options)


async def test_each_order_change_is_one_subscribe_message_at_the_sandbox(
        api, sandbox, demo, token, temporal_env, sessions, settings):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    template = settings.message_template_order_status
    consent = await sandbox.post("/sandbox/messages/subscriptions",
                                 json={"openid": demo.buyer_openid, "template_id": template, "count": 20})
    assert consent.status_code == 200, consent.text
    before = len((await sandbox.get("/sandbox/messages", params={"touser": demo.buyer_openid})).json())

    order_no = (await place(api, buyer, demo, quantity=1)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF8000000001")
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    # the order itself sends nothing: the outbox's sender does (here one drain; in the stack the
    # listener, test below)
    assert len((await sandbox.get("/sandbox/messages", params={"touser": demo.buyer_openid})).json()) == before
    assert await _messages(settings, sessions).deliver_messages() == 5
    await keep_history(temporal_env, order_no, "order_completed_messages_by_listener")

    sent = [m for m in (await sandbox.get("/sandbox/messages", params={"touser": demo.buyer_openid})).json()
            if m["template_id"] == template and m["data"]["character_string1"]["value"] == order_no]
    assert len((await sandbox.get("/sandbox/messages", params={"touser": demo.buyer_openid})).json()) - before == 5
    assert [m["data"]["phrase2"]["value"] for m in sent] == ["待发货", "待收货", "待收货", "已收货", "已完成"]
    with sessions() as s:
        rows = s.scalars(select(Notification).where(Notification.subject_id == order_no,
                                                    Notification.kind.like("order_%")).order_by(Notification.id)).all()
        assert [n.kind for n in rows] == ["order_paid", "order_shipped", "order_delivered", "order_received",
                                          "order_completed"]
        assert all(n.delivery_status == "sent" and n.sent_at is not None and n.delivery_note.startswith("msgid ")
                   for n in rows)
        assert sorted(n.delivery_note for n in rows) == sorted(f"msgid {m['msgid']}" for m in sent)
    # draining again sends nothing twice
    assert await _messages(settings, sessions).deliver_messages() == 0
    assert len([m for m in (await sandbox.get("/sandbox/messages", params={"touser": demo.buyer_openid})).json()
                if m["data"].get("character_string1", {}).get("value") == order_no]) == 5
    listed = (await api.get("/notifications", headers=buyer)).json()  # stored notifications stay listed
    assert {"order_paid", "order_completed"} <= {n["kind"] for n in listed}
    with sessions() as s:
        assert_books_balance(s)


async def test_no_openid_refused_or_role_only_notifications_are_skipped(api, sandbox, demo, sessions, settings):
    with sessions.begin() as s:
        notify(s, user_id=demo.buyer_user_id, kind="refund_succeeded", subject_type="refund", subject_id="RFTEST01",
               message="退款 1.00 元已原路退回", key="test:refused")                # no consent for this template
        notify(s, user_id=demo.supplier_user_id, kind="order_paid", subject_type="order", subject_id="CCTEST01",
               message="订单已支付", key="test:no-openid")                         # staff log in without WeChat
        notify(s, role="support", kind="refund_review", subject_type="refund", subject_id="RFTEST02",
               message="退款待审核", key="test:role")
        notify(s, user_id=demo.buyer_user_id, kind="shipment_overdue", subject_type="order", subject_id="CCTEST02",
               message="发货提醒", key="test:no-template")                        # general template is empty
    before = (await sandbox.get("/sandbox/messages")).json()
    assert await _messages(settings, sessions).deliver_messages() == 0
    assert (await sandbox.get("/sandbox/messages")).json() == before
    with sessions() as s:
        outcome = {n.idempotency_key: (n.delivery_status, n.delivery_note)
                   for n in s.scalars(select(Notification).where(Notification.idempotency_key.like("test:%")))}
    assert outcome == {
        "test:refused": ("skipped", "user refused or has no consent left"),
        "test:no-openid": ("skipped", "user has no openid"),
        "test:role": ("skipped", "no single recipient (role notification)"),
        "test:no-template": ("skipped", "no template for shipment_overdue"),
    }
    # consent given: a new notification goes out, once
    await sandbox.post("/sandbox/messages/subscriptions", json={
        "openid": demo.buyer_openid, "template_id": settings.message_template_refund, "count": 1})
    with sessions.begin() as s:
        notify(s, user_id=demo.buyer_user_id, kind="refund_succeeded", subject_type="refund", subject_id="RFTEST03",
               message="退款 2.00 元已原路退回", key="test:consented")
    assert await _messages(settings, sessions).deliver_messages() == 1
    assert await _messages(settings, sessions).deliver_messages() == 0
    got = [m for m in (await sandbox.get("/sandbox/messages", params={"touser": demo.buyer_openid})).json()
           if m["data"].get("character_string1", {}).get("value") == "RFTEST03"]
    assert len(got) == 1 and got[0]["template_id"] == settings.message_template_refund


async def test_the_drain_sends_what_a_process_other_than_an_order_wrote(
        api, sandbox, demo, temporal_env, sessions, settings):
    """No order drains the outbox here: the `messages-drain` schedule's workflow sends it."""
    await sandbox.post("/sandbox/messages/subscriptions", json={
        "openid": demo.buyer_openid, "template_id": settings.message_template_refund, "count": 1})
    with sessions.begin() as s:   # as RefundActivities.complete_refund writes it
        notify(s, user_id=demo.buyer_user_id, kind="refund_succeeded", subject_type="refund", subject_id="RFDRAIN01",
               message="退款 3.00 元已原路退回", key="test:drain")
    wf_id = f"messages-drain-{uuid.uuid4().hex[:6]}"
    await temporal_env.client.start_workflow(MessageDrainWorkflow.run, id=wf_id, task_queue=settings.task_queue)
    assert await result_skipping_time(temporal_env, wf_id, int) == 1
    with sessions() as s:
        row = s.scalar(select(Notification).where(Notification.idempotency_key == "test:drain"))
        assert (row.delivery_status, row.sent_at is not None) == ("sent", True)
    got = [m for m in (await sandbox.get("/sandbox/messages", params={"touser": demo.buyer_openid})).json()
           if m["data"].get("character_string1", {}).get("value") == "RFDRAIN01"]
    assert len(got) == 1 and got[0]["template_id"] == settings.message_template_refund
    assert row.delivery_note == f"msgid {got[0]['msgid']}"
    await keep_run_history(temporal_env, wf_id, None, "messages_drain")
    again = f"messages-drain-{uuid.uuid4().hex[:6]}"  # a second run sends nothing twice
    await temporal_env.client.start_workflow(MessageDrainWorkflow.run, id=again, task_queue=settings.task_queue)
    assert await result_skipping_time(temporal_env, again, int) == 0


async def test_the_listener_sends_a_notification_as_soon_as_it_is_committed(sandbox, demo, sessions, settings):
    """Woken by the outbox's NOTIFY, not by looking: it looks on its own only every 60 s here."""
    await sandbox.post("/sandbox/messages/subscriptions", json={
        "openid": demo.buyer_openid, "template_id": settings.message_template_refund, "count": 2})
    listener = _messages(settings, sessions, look_every=timedelta(seconds=60))
    heartbeats: list = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    listening = asyncio.create_task(env.run(listener.send_as_written, 6))
    await asyncio.sleep(1)  # listening by now
    assert heartbeats, "the listener heartbeats after its first drain"

    async def arrived(subject_id: str) -> float:
        written = time.monotonic()
        with sessions.begin() as s:
            notify(s, user_id=demo.buyer_user_id, kind="refund_succeeded", subject_type="refund",
                   subject_id=subject_id, message="退款 1.00 元已原路退回", key=f"test:{subject_id}")
        while time.monotonic() - written < 4:
            got = (await sandbox.get("/sandbox/messages", params={"touser": demo.buyer_openid})).json()
            if any(m["data"].get("character_string1", {}).get("value") == subject_id for m in got):
                return time.monotonic() - written
            await asyncio.sleep(0.05)
        raise AssertionError(f"{subject_id} not sent within 4 s")

    assert await arrived("RFLISTEN01") < 2
    assert await arrived("RFLISTEN02") < 2  # and again: it went back to listening
    assert await listening == 2
    with sessions() as s:
        assert {n.delivery_status for n in s.scalars(
            select(Notification).where(Notification.idempotency_key.like("test:RFLISTEN%")))} == {"sent"}


async def test_the_drain_workflow_runs_the_listener(sandbox, demo, temporal_env, sessions, settings):
    await sandbox.post("/sandbox/messages/subscriptions", json={
        "openid": demo.buyer_openid, "template_id": settings.message_template_refund, "count": 1})
    with sessions.begin() as s:
        notify(s, user_id=demo.buyer_user_id, kind="refund_succeeded", subject_type="refund", subject_id="RFLISTEN03",
               message="退款 4.00 元已原路退回", key="test:listen-run")
    wf_id = f"messages-drain-{uuid.uuid4().hex[:6]}"
    await temporal_env.client.start_workflow(MessageDrainWorkflow.run, 1, id=wf_id, task_queue=settings.task_queue)
    assert await result_skipping_time(temporal_env, wf_id, int) == 1
    await keep_run_history(temporal_env, wf_id, None, "messages_listener")


def test_the_drain_schedule_runs_every_messages_drain_every(settings):
    drain = schedules(settings.model_copy(update={"messages_drain_every": timedelta(seconds=20)}))[
        MESSAGES_DRAIN_SCHEDULE_ID]
    assert [i.every for i in drain.spec.intervals] == [timedelta(seconds=20)]
    assert drain.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE  # one listener after another
    assert drain.action.workflow == "MessageDrainWorkflow" and drain.action.task_queue == settings.task_queue
    assert drain.action.args == [20]  # each run listens for the whole interval
    assert Settings.model_fields["messages_drain_every"].default == timedelta(minutes=1)


async def test_a_channels_order_is_shipped_through_the_channels_shop(
        api, sandbox, demo, token, temporal_env, sessions, settings):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    shop = ChannelsClient.from_settings(settings)
    product_id = await shop.add_product(ProductDraft(
        title="普洱 357g", head_imgs=["https://img.example/tea.jpg"], out_product_id=f"cc-product-{demo.product_id}",
        skus=[Sku(out_sku_id=f"cc-sku-{demo.sku_ids[0]}", sale_price=19_900, stock_num=100)]))
    await shop.list_product(product_id)
    with sessions.begin() as s:
        s.add(ChannelsListing(product_id=demo.product_id, out_product_id=f"cc-product-{demo.product_id}",
                              status="LISTED", channels_product_id=product_id))
    made = await sandbox.post("/sandbox/channels/orders", json={"openid": demo.buyer_openid, "product_id": product_id,
                                                                "count": 2})
    assert made.status_code == 200, made.text
    channels_order_id = made.json()["order_id"]
    await sandbox.post(f"/sandbox/channels/orders/{channels_order_id}/pay")

    missing = await place(api, buyer, demo, quantity=2, source="channels")
    assert missing.status_code == 422
    placed = await place(api, buyer, demo, quantity=2, source="channels", channels_order_id=channels_order_id)
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    twice = await place(api, buyer, demo, quantity=2, source="channels", channels_order_id=channels_order_id)
    assert twice.status_code == 409 and twice.json()["code"] == "CHANNELS_ORDER_TAKEN"
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF9000000001")

    at_shop = await shop.get_order(channels_order_id)
    deliveries = at_shop.order_detail["delivery_info"]["delivery_product_info"]
    assert at_shop.status == 30
    assert [(d["waybill_id"], d["delivery_id"], d["product_infos"][0]["product_cnt"]) for d in deliveries] == [
        ("SF9000000001", "SF", 2)]
    # a repeated send (a retried activity) is success and changes nothing at the shop
    again = await ChannelsDeliveryActivities(sessions, shop).send_channels_delivery(
        order_no, ShipmentInput(supplier_id=demo.supplier_id, carrier="shunfeng", waybill_no="SF9000000001"))
    assert again == "already"
    assert len((await shop.get_order(channels_order_id)).order_detail["delivery_info"]["delivery_product_info"]) == 1
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    with sessions() as s:
        assert_books_balance(s)
