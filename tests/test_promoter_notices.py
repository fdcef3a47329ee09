"""Every promoter and supplier notice reaches its person: each is written to the notification
outbox (the one buyers' messages go through), listed at GET /notifications and sent as a
subscribe message by MessageDrainWorkflow (checked at the sandbox's messages API). The notices
are made by the code that makes them in production: an order completing (commission credited),
a withdrawal paid, the automatic payout, the assessment cycle's reminder and result, a revival,
a window closed for fake trades, a supplier suspended."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from activities import bonuses
from activities.catalog import suspend_supplier
from activities.payouts import PayoutActivities
from activities.promoters import PromoterActivities
from db.catalog_models import Notification
from db.models import User
from domain.assessment import AssessCycleInput, RevivalInput, RevivalOutcome, RevivalTimings
from domain.messages import NOTICE_LABELS
from domain.order_status import OrderStatus
from domain.withdrawals import WithdrawalProgress, WithdrawalStatus
from workflows.messages import MessageDrainWorkflow
from workflows.withdrawal import workflow_id
from tests.helpers import (
    assert_books_balance,
    make_user,
    pay,
    place,
    result_skipping_time,
    run_to_end,
    ship_and_deliver,
    wait_status,
)

PROMOTER_OPENID = "oDEMOpromoter000000000000001"
SUPPLIER_OPENID = "oDEMOsupplier00000000000000001"
PROMOTER_KINDS = ["commission_credited", "withdrawal_paid", "auto_payout", "assessment_reminder",
                  "assessment_result", "revival_revived", "window_closed"]


async def test_each_promoter_and_supplier_notice_is_listed_and_sent(api, sandbox, demo, token, sessions, settings,
                                                                    temporal_env):
    promoter, supplier = token(demo.promoter_user_id, "promoter"), token(demo.supplier_user_id, "supplier")
    with sessions.begin() as s:  # the supplier's owner signed in with WeChat once
        s.execute(update(User).where(User.id == demo.supplier_user_id).values(openid=SUPPLIER_OPENID))
    for openid, template in [(PROMOTER_OPENID, settings.message_template_promoter),
                             (SUPPLIER_OPENID, settings.message_template_supplier)]:
        consent = await sandbox.post("/sandbox/messages/subscriptions",
                                     json={"openid": openid, "template_id": template, "count": 20})
        assert consent.status_code == 200, consent.text

    # an order completes: the seller's commission becomes available
    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=2)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SFNOTE000001")
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    # a withdrawal of part of it is paid (the sandbox's user confirms)
    made = await api.post("/withdrawals", json={"amount_fen": 1_000}, headers=promoter)
    assert made.status_code == 201, made.text
    done = await result_skipping_time(temporal_env, workflow_id(made.json()["id"]), WithdrawalProgress)
    assert done.status == WithdrawalStatus.SUCCESS
    # the monthly automatic payout opens one for the rest
    month = datetime.now(ZoneInfo(settings.settlement_timezone)).strftime("%Y-%m")
    payouts = PayoutActivities(sessions, settings.withdrawal_rules, settings.withdrawal_timings(),
                               settings.settlement_timezone)
    with sessions.begin() as s:
        assert payouts._open_one(s, demo.promoter_id, month, datetime.now(UTC).date()) is not None
    # the assessment cycle's reminder and result, a revival, as the lifecycle workflows call them
    activities, now = PromoterActivities(sessions), datetime.now(UTC)
    assert activities.remind(demo.promoter_id, 1, "本期还差 2 单，剩 2 天")
    activities.assess_cycle(AssessCycleInput(promoter_id=demo.promoter_id, cycle_no=1, started_at=now - timedelta(days=30),
                                             ends_at=now, target_orders=1, failed_in_row=0))
    assert activities.open_revival(RevivalInput(promoter_id=demo.promoter_id, n=1, timings=RevivalTimings(
        window=timedelta(days=30), target_orders=1, refresh_every=timedelta(hours=1))), now, now + timedelta(days=30))
    activities.resolve_revival(RevivalOutcome(promoter_id=demo.promoter_id, n=1, status="revived",
                                              completed_orders=1, how="1 order"))
    support = make_user(sessions, "support", "kf-notices")
    with sessions.begin() as s:  # confirmed fake trades close the window; violations suspend the supplier
        assert bonuses.close_window(s, demo.promoter_id, 3) is not None
        suspend_supplier(s, demo.supplier_id, "售假", support)

    wf_id = f"messages-drain-{uuid.uuid4().hex[:6]}"
    await temporal_env.client.start_workflow(MessageDrainWorkflow.run, id=wf_id, task_queue=settings.task_queue)
    await result_skipping_time(temporal_env, wf_id, int)

    listed = (await api.get("/notifications", headers=promoter)).json()
    assert set(PROMOTER_KINDS) <= {n["kind"] for n in listed}, [n["kind"] for n in listed]
    assert "supplier_suspended" in {n["kind"] for n in (await api.get("/notifications", headers=supplier)).json()}
    with sessions() as s:
        rows = s.scalars(select(Notification).where(Notification.kind.in_([*PROMOTER_KINDS, "supplier_suspended"]))
                         ).all()
        assert {n.kind: n.delivery_status for n in rows} == {k: "sent" for k in [*PROMOTER_KINDS, "supplier_suspended"]}
        assert all(n.delivery_note.startswith("msgid ") for n in rows)
    sent = (await sandbox.get("/sandbox/messages", params={"touser": PROMOTER_OPENID})).json()
    labels = [m["data"]["phrase1"]["value"] for m in sent if m["template_id"] == settings.message_template_promoter]
    assert sorted(labels) == sorted(NOTICE_LABELS[k] for k in PROMOTER_KINDS)
    to_supplier = (await sandbox.get("/sandbox/messages", params={"touser": SUPPLIER_OPENID})).json()
    assert [(m["template_id"], m["data"]["phrase1"]["value"], m["data"]["character_string2"]["value"])
            for m in to_supplier] == [(settings.message_template_supplier, "店铺暂停", str(demo.supplier_id))]
    with sessions() as s:
        assert_books_balance(s)
