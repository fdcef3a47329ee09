"""The operations console through its pages (ASGI, as a browser would post its forms): login with
the API's password login, queues with counts, ages and Temporal UI links, decisions that go
through the API and reach the waiting workflows, CSRF and role refusals, look-ups, the policy
change, the audit trail; and the dashboard-rollups workflow keeping the figures current."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from db.console_models import RollupFact, StaffAudit
from db.models import Product, Supplier
from db.order_models import Refund
from domain.order_status import OrderStatus
from domain.refunds import RefundStatus
from tests.console_helpers import console_login, csrf_of, fill_queues, staff_user
from tests.helpers import keep_run_history, pay, place, run_to_end, wait_refund, wait_status
from workflows.rollups import DashboardRollupWorkflow
from workflows.schedules import ROLLUP_SCHEDULE_ID, rollup_input, schedules

HX = {"HX-Request": "true"}


async def test_support_decides_from_the_queues_and_the_workflows_move_on(
        api, sandbox, temporal_env, sessions, token, demo):
    waiting = await fill_queues(api, sandbox, temporal_env, sessions, token, demo)
    staff_user(sessions, "support", "kefu")

    assert (await api.get("/console/queues")).status_code == 303  # not signed in: to the login form
    wrong = await console_login(api, "kefu", "not-the-password")
    assert wrong.status_code == 303 and "error" in wrong.headers["location"]
    signed = await console_login(api, "kefu")
    assert (signed.status_code, signed.headers["location"]) == (303, "/console")
    assert "httponly" in signed.headers["set-cookie"].lower() and "samesite=strict" in signed.headers["set-cookie"].lower()

    page = await api.get("/console/queues")
    assert page.status_code == 200, page.text
    html = page.text
    csrf = csrf_of(html)
    assert "供应商入驻审核" in html and "商品审核" in html and "退款审核" in html
    for count_id in ("count-suppliers", "count-products", "count-refunds"):
        assert f'id="{count_id}"' in html
    # each item links to its workflow in Temporal UI, filtered by its search attribute
    assert f"query=SupplierId%3D%22{waiting.supplier_id}%22" in html
    assert f"query=OrderNo%3D%22{waiting.order_no}%22" in html
    assert "http://127.0.0.1:8233/namespaces/default/workflows" in html

    # a forged post (no or a wrong CSRF token) is refused and changes nothing
    forged = await api.post(f"/console/queues/suppliers/{waiting.supplier_id}/decide", headers=HX,
                            data={"decision": "approve", "service_fee_bps": "300", "csrf": "0" * 64})
    assert forged.status_code == 403 and forged.json()["code"] == "CSRF_REJECTED"
    with sessions() as s:
        assert s.get(Supplier, waiting.supplier_id).status == "pending_review"

    # the API's own validation answers through the console (fee outside 1%–5%), and is audited
    refused = await api.post(f"/console/queues/suppliers/{waiting.supplier_id}/decide", headers=HX,
                             data={"decision": "approve", "service_fee_bps": "900", "reason": "试试", "csrf": csrf})
    assert refused.status_code == 200 and 'data-outcome="refused"' in refused.text and "INVALID_DECISION" in refused.text

    decided = await api.post(f"/console/queues/suppliers/{waiting.supplier_id}/decide", headers=HX | {"X-CSRF-Token": csrf},
                             data={"decision": "approve", "service_fee_bps": "300", "reason": "资质齐全"})
    assert 'data-outcome="ok"' in decided.text and "APPROVED" in decided.text, decided.text
    listed = await api.post(f"/console/queues/products/{waiting.product_id}/decide", headers=HX,
                            data={"decision": "approve", "reason": "图文合规", "csrf": csrf})
    assert 'data-outcome="ok"' in listed.text and "LISTED" in listed.text, listed.text
    refund = await api.post(f"/console/queues/refunds/{waiting.refund_no}/decide", headers=HX,
                            data={"decision": "approve", "reason": "照片显示破损，同意退款", "csrf": csrf})
    assert 'data-outcome="ok"' in refund.text, refund.text

    # the workflows moved on
    assert (await run_to_end(temporal_env, waiting.order_no)).status == OrderStatus.REFUNDED
    await wait_refund(temporal_env.client, waiting.refund_no, RefundStatus.REFUNDED)
    with sessions() as s:
        assert s.get(Supplier, waiting.supplier_id).status == "active"
        assert s.get(Supplier, waiting.supplier_id).service_fee_bps == 300
        assert s.get(Product, waiting.product_id).status == "listed"
        assert s.get(Refund, waiting.refund_no).status == RefundStatus.REFUNDED
        trail = [(a.action, a.subject_id, a.outcome, a.reason) for a in s.scalars(select(StaffAudit).order_by(StaffAudit.id))]
    assert trail == [("supplier.approve", str(waiting.supplier_id), "refused", "试试"),
                     ("supplier.approve", str(waiting.supplier_id), "ok", "资质齐全"),
                     ("product.approve", str(waiting.product_id), "ok", "图文合规"),
                     ("refund.approve", waiting.refund_no, "ok", "照片显示破损，同意退款")]
    audit = await api.get("/console/audit")
    assert audit.status_code == 200 and "资质齐全" in audit.text and "被拒绝" in audit.text
    again = await api.get("/console/queues")
    assert waiting.refund_no not in again.text and "没有待处理的事项" in again.text

    # look-ups: the order with its history, refunds and ledger entries
    order = await api.get(f"/console/orders/{waiting.order_no}")
    assert order.status_code == 200 and "已退款" in order.text and "wechatpay:clearing" in order.text
    found = await api.get("/console/lookup", params={"kind": "supplier", "q": "优选"})
    assert f"/console/suppliers/{waiting.supplier_id}" in found.text
    detail = await api.get(f"/console/suppliers/{waiting.supplier_id}")
    assert detail.status_code == 200 and "active" in detail.text
    buyer = await api.get(f"/console/buyers/{demo.buyer_user_id}")
    assert buyer.status_code == 200 and waiting.order_no in buyer.text
    # disabling a buyer: audited, and the WeChat login refuses the account from then on
    disabled = await api.post(f"/console/buyers/{demo.buyer_user_id}/disable", data={"reason": "恶意退款", "csrf": csrf})
    assert disabled.status_code == 303
    code = (await sandbox.post("/sandbox/oauth/code", json={"openid": demo.buyer_openid})).json()["code"]
    assert (await api.post("/auth/wechat", json={"code": code})).status_code == 403
    with sessions() as s:
        assert s.scalars(select(StaffAudit.action).order_by(StaffAudit.id.desc())).first() == "account.disable"


async def test_roles_policy_and_users(api, temporal_env, sessions, demo, settings, monkeypatch):
    monkeypatch.setattr(settings, "commission_tiers", 3)  # the ceiling the policies below stay within
    staff_user(sessions, "support", "kefu2")
    staff_user(sessions, "operator", "yunying")
    with sessions.begin() as s:
        from api.auth import hash_password
        from db.models import User

        s.get(User, demo.supplier_user_id).password_hash = hash_password("console-pass-1")
    # support cannot change the commission policy (the API's rule), nor manage users
    await console_login(api, "kefu2")
    csrf = csrf_of((await api.get("/console/policy")).text)
    refused = await api.post("/console/policy", data={"tiers": "2", "tier_rates": "8000,2000", "reason": "试",
                                                      "csrf": csrf})
    assert refused.status_code == 303 and "error" in refused.headers["location"]
    assert (await api.get("/console/users")).status_code == 403
    # a risk flag in its queue, cleared through the API's review
    from db.risk_models import RiskFlag

    with sessions.begin() as s:
        flag = RiskFlag(kind="frequent_returns", subject_type="buyer", subject_id=str(demo.buyer_user_id),
                        buyer_user_id=demo.buyer_user_id, detail="30天内退款4次", related={})
        s.add(flag)
        s.flush()
        flag_id = flag.id
    queue = await api.get("/console/queues")
    assert "30天内退款4次" in queue.text and 'id="count-risk"><small>风控标记</small><b>1</b>' in queue.text
    cleared = await api.post(f"/console/queues/risk/{flag_id}/decide", headers={"HX-Request": "true"},
                             data={"decision": "cleared", "reason": "正常售后", "csrf": csrf})
    assert 'data-outcome="ok"' in cleared.text, cleared.text
    with sessions() as s:
        flag = s.get(RiskFlag, flag_id)
        assert (flag.status, flag.review_note) == ("cleared", "正常售后")

    await console_login(api, "yunying")
    csrf = csrf_of((await api.get("/console/policy")).text)
    too_deep = await api.post("/console/policy", data={"tiers": "4", "tier_rates": "7000,1000,1000,1000",
                                                       "reason": "试四级", "csrf": csrf})
    assert "error" in too_deep.headers["location"]
    changed = await api.post("/console/policy", data={"tiers": "2", "tier_rates": "8000,2000",
                                                      "reason": "双十二活动", "csrf": csrf})
    assert changed.status_code == 303 and "message" in changed.headers["location"], changed.headers
    policy = (await api.get("/commission-policy", headers={"Authorization": "Bearer " + api.cookies["cc_console"]})).json()
    assert (policy["current"]["tiers"], policy["current"]["tier_rates_bps"]) == (2, [8000, 2000])

    # the console's CSV links: the dashboards' export through the session (a link carries no bearer header)
    exported = await api.get("/console/export/platform/breakdown", params={"dim": "city", "grain": "month"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"] and "GMV" in exported.text
    as_json = await api.get("/console/export/platform", params={"grain": "week", "format": "json"})
    assert as_json.status_code == 200 and as_json.json()["grain"] == "week"
    assert (await api.get("/console/export/auth/me")).status_code == 404   # only the dashboards

    knobs = await api.get("/console/settings")
    assert knobs.status_code == 200 and "REFUND_WINDOW" in knobs.text and "REPEAT_PURCHASE_ALERT_BPS" in knobs.text
    assert "JWT_SECRET" not in knobs.text and settings.resolved_jwt_secret() not in knobs.text

    made = await api.post("/console/users", data={"username": "kefu3", "role": "support", "reason": "新员工",
                                                  "csrf": csrf})
    assert "message" in made.headers["location"]
    with sessions() as s:
        from db.models import User

        kefu3 = s.scalar(select(User).where(User.username == "kefu3"))
        assert kefu3.role == "support" and kefu3.active
    await api.post(f"/console/users/{kefu3.id}/disable", data={"reason": "离职", "csrf": csrf})
    with sessions() as s:
        assert not s.get(User, kefu3.id).active
        actions = [a.action for a in s.scalars(select(StaffAudit).order_by(StaffAudit.id))]
    assert actions == ["policy.commission", "risk.cleared", "policy.commission", "policy.commission", "user.create",
                       "user.disable"]

    # a supplier has its analytics, never the queues or another supplier's figures
    await console_login(api, "demo-supplier")
    assert (await api.get("/console/queues")).status_code == 403
    mine = await api.get("/console/supplier")
    assert mine.status_code == 200 and f"供应商 #{demo.supplier_id}" in mine.text
    assert (await api.get("/console/supplier", params={"supplier_id": demo.supplier_id + 99})).status_code == 403


async def test_the_rollup_schedule_keeps_the_dashboard_current(api, sandbox, temporal_env, sessions, token, demo,
                                                               settings):
    assert ROLLUP_SCHEDULE_ID in schedules(settings)
    buyer = token(demo.buyer_user_id, "buyer")
    order = (await place(api, buyer, demo, quantity=1)).json()
    await pay(sandbox, order["order_no"])
    await wait_status(temporal_env.client, order["order_no"], OrderStatus.PAID)
    # the test server's clock runs ahead of the wall clock once a test has skipped time: the run is
    # given today's time, as an operator's backfill would be
    inp = rollup_input(settings).model_copy(update={"as_of": datetime.now(UTC)})
    result = await temporal_env.client.execute_workflow(
        DashboardRollupWorkflow.run, inp, id="dashboard-rollups-test",
        task_queue=settings.task_queue, execution_timeout=timedelta(minutes=2))
    assert result.periods >= 3 and result.rows > 0
    await keep_run_history(temporal_env, "dashboard-rollups-test", None, "dashboard_rollups")
    staff = token(staff_user(sessions, "operator", "yunying2"), "operator")
    today = (await api.get("/dashboards/platform", headers=staff, params={"grain": "day", "periods": 1})).json()
    assert today["current"]["gmv_fen"] == order["total_fen"] and today["current"]["paid_orders"] == 1
    assert today["current"]["commission_fen"] > 0
    with sessions() as s:
        assert s.scalar(select(RollupFact.gmv_fen).where(RollupFact.dim == "supplier",
                                                         RollupFact.key == str(demo.supplier_id),
                                                         RollupFact.grain == "month")) == order["total_fen"]


async def test_the_demo_staff_logins_open_the_console(api, sessions, clean_db):
    from cli.seed import DEMO_STAFF, seed_staff

    with sessions.begin() as s:
        first = seed_staff(s)
    with sessions.begin() as s:
        assert seed_staff(s) == first   # run again: the same accounts
    for username, (role, password, _) in DEMO_STAFF.items():
        signed = await console_login(api, username, password)
        assert (signed.status_code, signed.headers["location"]) == (303, "/console"), username
        assert (await api.get("/console")).headers["location"] == "/console/queues"


async def test_support_moderates_reviews_and_content_edits_from_the_queues(
        api, sandbox, temporal_env, sessions, token, demo):
    from db.review_models import ProductReview
    from domain.catalog import ProductStatus
    from tests.test_product_edit import wait_review_status
    from tests.test_reviews import received_order

    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no, line_id = await received_order(api, sandbox, demo, token, temporal_env, sessions, "SFCONSOLE001")
    held = await api.post(f"/orders/{order_no}/reviews", headers=buyer,
                          json={"line_id": line_id, "rating": 5, "text": "喝了包治百病"})
    assert held.json()["status"] == "pending_moderation", held.text
    edit = await api.patch(f"/products/{demo.product_id}", headers=supplier, json={"title": "明前龙井 新茶 250g"})
    assert edit.status_code == 202, edit.text
    await wait_review_status(temporal_env, edit.json()["workflow_id"], ProductStatus.PENDING_REVIEW)

    staff_user(sessions, "support", "kefu-reviews")
    await console_login(api, "kefu-reviews")
    page = await api.get("/console/queues")
    assert 'id="count-edits"><small>商品修改审核</small><b>1</b>' in page.text
    assert 'id="count-reviews"><small>评价审核</small><b>1</b>' in page.text
    assert "明前龙井 新茶 250g" in page.text and "包治百病" in page.text
    csrf = csrf_of(page.text)

    rejected = await api.post(f"/console/queues/reviews/{held.json()['id']}/decide", headers=HX,
                              data={"decision": "reject", "reason": "含医疗功效用语", "csrf": csrf})
    assert 'data-outcome="ok"' in rejected.text, rejected.text
    approved = await api.post(f"/console/queues/edits/{edit.json()['edit_id']}/decide", headers=HX,
                              data={"decision": "approve", "reason": "标题合规", "csrf": csrf})
    assert 'data-outcome="ok"' in approved.text and "LISTED" in approved.text, approved.text
    with sessions() as s:
        assert s.get(ProductReview, held.json()["id"]).status == "rejected"
        assert s.get(Product, demo.product_id).title == "明前龙井 新茶 250g"
        trail = [(a.action, a.outcome) for a in s.scalars(select(StaffAudit).order_by(StaffAudit.id))]
    assert trail == [("review.reject", "ok"), ("product_edit.approve", "ok")]
    again = await api.get("/console/queues")
    assert 'id="count-edits"><small>商品修改审核</small><b>0</b>' in again.text
