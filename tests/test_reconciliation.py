"""Reconciliation with WeChat Pay's daily bills end to end: real orders paid (and refunded)
through the sandbox, the bill requested, downloaded (gzip, SHA1 checked) and parsed through
`wechatpayv3`, compared with the ledger by ReconciliationWorkflow, the report read through the
API (JSON and CSV) and the CLI; planted differences reported exactly and alerted; a bill not
made yet asked for again. The daily schedule is checked on a real Temporal dev server."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
import structlog
from prometheus_client import REGISTRY
from sqlalchemy import select

from db.catalog_models import Notification
from db.reconciliation_models import ReconciliationBillRow, ReconciliationRun
from domain.order_status import OrderStatus
from domain.reconciliation import ReconciliationProgress, day_to_reconcile_at, run_workflow_id
from domain.refunds import RefundStatus
from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.http import make_client, route_to_app
from domain.search_attributes import BUSINESS_STATUS
from workflows.reconciliation import ReconciliationWorkflow
from tests.conftest import SANDBOX_URL
from tests.helpers import (
    assert_books_balance,
    end_workflows,
    keep_run_history,
    make_user,
    pay,
    place,
    result_skipping_time,
    wait_refund,
    wait_status,
)

TZ = "Asia/Shanghai"


def today() -> str:
    return datetime.now(ZoneInfo(TZ)).date().isoformat()


def days_ago(n: int) -> str:
    return (datetime.now(ZoneInfo(TZ)).date() - timedelta(days=n)).isoformat()


@pytest_asyncio.fixture(loop_scope="session")
async def sandbox(api, settings):
    """A sandbox of this test's own: the session's sandbox keeps every payment other test
    modules made today (their rows are truncated from the database, their bills would not be)."""
    from sandbox.app import create_app
    from sandbox.credentials import load_or_create

    app = create_app(load_or_create(settings.sandbox_dir), notify_retry_scale=0.001, settle_delay=0.3,
                     callback_client=lambda: make_client(timeout=5.0))
    route_to_app(SANDBOX_URL, app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SANDBOX_URL) as client:
        yield client
        await app.state.sandbox.cancel_tasks()


def differences_counted(kind: str) -> float:
    return REGISTRY.get_sample_value("chuchuang_reconciliation_differences_total", {"kind": kind}) or 0.0


async def publish_now(sandbox, not_ready_times: int = 0) -> None:
    answer = await sandbox.put("/sandbox/bills/config", json={"publish": "immediate", "not_ready_times": not_ready_times})
    assert answer.status_code == 200, answer.text


async def run_day(api, env, operator, day: str, *, rerun: bool = False, expect: int = 201) -> ReconciliationProgress:
    started = await api.post("/reconciliations/runs", headers=operator, json={"date": day, "rerun": rerun})
    assert started.status_code == expect, started.text
    return await result_skipping_time(env, started.json()["run_id"], ReconciliationProgress)


async def test_a_day_reconciles_clean_then_planted_differences_are_reported_and_alerted(
        api, sandbox, demo, token, temporal_env, sessions, stack):
    buyer = token(demo.buyer_user_id, "buyer")
    operator = token(make_user(sessions, "operator", "finance"), "operator")
    orders = []
    for sku, quantity in [(0, 1), (1, 2), (0, 2)]:
        placed = await place(api, buyer, demo, sku_index=sku, quantity=quantity)
        assert placed.status_code == 201, placed.text
        orders.append(placed.json()["order_no"])
        await pay(sandbox, orders[-1])
    for no in orders:
        await wait_status(temporal_env.client, no, OrderStatus.PAID)
    asked = await api.post(f"/orders/{orders[1]}/refunds", headers=buyer, json={"kind": "cancel", "reason": "不要了"})
    assert asked.status_code == 201, asked.text
    refund_no = asked.json()["refund_no"]
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    day = today()

    # before 10:00 tomorrow WeChat Pay has no bill for today; the sandbox can publish at once
    with pytest.raises(PartnerRejected) as not_yet:
        await stack.state.pay.trade_bill(day)
    assert not_yet.value.code == "STATEMENT_CREATING"
    await publish_now(sandbox)
    found = await stack.state.pay.trade_bill(day)
    text = await stack.state.pay.download_bill(found)   # gzip, SHA1 checked
    assert text.startswith("交易时间,公众账号ID,商户号,特约商户号") and "\r\n总交易单数,应结订单总金额,退款总金额" in text
    assert f"`{orders[0]}," in text and "`REFUND," in text
    tampered = found.model_copy(update={"hash_value": "0" * 40})
    with pytest.raises(PartnerUnavailable, match="does not match its hash"):
        await stack.state.pay.download_bill(tampered)
    fund = await stack.state.pay.download_bill(await stack.state.pay.fundflow_bill(day))
    assert fund.startswith("记账时间,微信支付业务单号") and "`退款,`退款,`支出,`136.00" in fund

    # --- a clean day ---------------------------------------------------------------------------
    clean = await run_day(api, temporal_env, operator, day)
    assert (clean.status, clean.result.status, clean.result.matched, clean.result.differences) == ("clean", "clean", 4, 0)
    paid_fen, refunded_fen = 19_900 + 2 * 6_800 + 2 * 19_900, 2 * 6_800
    report = (await api.get(f"/reconciliations/{day}", headers=operator)).json()
    assert (report["status"], report["attempt"], report["attempts"], report["differences"]) == ("clean", 1, [1], [])
    assert report["totals"]["bill"] == report["totals"]["ledger"] == {
        "payments": 3, "payments_fen": paid_fen, "refunds": 1, "refunds_fen": refunded_fen,
        "net_fen": paid_fen - refunded_fen}
    assert report["bill_hash"] == found.hash_value and report["run_id"] == run_workflow_id(day)
    again = await api.post("/reconciliations/runs", headers=operator, json={"date": day})
    assert again.status_code == 200 and again.json()["run_id"] == run_workflow_id(day)   # the same run, kept
    await keep_run_history(temporal_env, run_workflow_id(day), None, "reconciliation_clean")

    # --- planted differences: a payment we never booked, an amount and a refund state changed ----
    offline = await sandbox.post("/sandbox/bills/offline-payment", json={"out_trade_no": "OFFLINE000001", "amount_fen": 5_000})
    assert offline.status_code == 200, offline.text
    assert (await sandbox.post("/sandbox/bills/tamper", json={"out_trade_no": orders[2], "amount_fen": 39_700})).status_code == 200
    assert (await sandbox.post("/sandbox/bills/tamper",
                               json={"out_refund_no": refund_no, "refund_status": "ABNORMAL"})).status_code == 200
    counted = {k: differences_counted(k) for k in ("MISSING_IN_LEDGER", "AMOUNT_MISMATCH", "STATE_MISMATCH")}
    with structlog.testing.capture_logs() as logs:
        rerun = await run_day(api, temporal_env, operator, day, rerun=True)
    assert (rerun.status, rerun.attempt, rerun.result.differences, rerun.result.matched) == ("differences", 2, 3, 2)
    report = (await api.get(f"/reconciliations/{day}", headers=operator)).json()
    assert (report["status"], report["attempt"], report["attempts"], report["run_id"]) == (
        "differences", 2, [1, 2], run_workflow_id(day, 2))
    got = {(d["kind"], d["subject"], d["out_trade_no"], d["out_refund_no"], d["ours_fen"], d["bill_fen"], d["delta_fen"],
            d["our_state"], d["bill_state"]) for d in report["differences"]}
    assert got == {
        ("MISSING_IN_LEDGER", "payment", "OFFLINE000001", None, None, 5_000, 5_000, None, "SUCCESS"),
        ("AMOUNT_MISMATCH", "payment", orders[2], None, 39_800, 39_700, -100, "SUCCESS", "SUCCESS"),
        ("STATE_MISMATCH", "refund", orders[1], refund_no, refunded_fen, refunded_fen, 0, "REFUNDED", "ABNORMAL"),
    }
    assert report["totals"]["bill"]["net_fen"] == paid_fen + 5_000 - 100 - refunded_fen
    assert report["totals"]["ledger"]["net_fen"] == paid_fen - refunded_fen
    # the first report is kept as it was
    first = (await api.get(f"/reconciliations/{day}?attempt=1", headers=operator)).json()
    assert (first["status"], first["differences"]) == ("clean", [])

    # alerted: finance's notification (once), an error event, the counters
    with sessions() as s:
        alerts = s.scalars(select(Notification).where(Notification.kind == "reconciliation_differences")).all()
    assert [(n.recipient_role, n.subject_id) for n in alerts] == [("operator", f"{day}#2")]
    assert "3 处差异" in alerts[0].message and "相差 49.00 元" in alerts[0].message   # +50.00 −1.00
    shown = (await api.get("/notifications", headers=operator, params={"kind": "reconciliation_differences"})).json()
    assert [n["subject_id"] for n in shown] == [f"{day}#2"]
    [event] = [e for e in logs if e["event"] == "reconciliation.differences"]
    assert (event["log_level"], event["differences"], event["by_kind"]) == (
        "error", 3, {"AMOUNT_MISMATCH": 1, "MISSING_IN_LEDGER": 1, "STATE_MISMATCH": 1})
    assert {k: differences_counted(k) - v for k, v in counted.items()} == {
        "MISSING_IN_LEDGER": 1, "AMOUNT_MISMATCH": 1, "STATE_MISMATCH": 1}
    metrics = (await api.get("/metrics")).text
    assert 'chuchuang_reconciliation_differences_total{kind="AMOUNT_MISMATCH"}' in metrics
    described = await temporal_env.client.get_workflow_handle(run_workflow_id(day, 2)).describe()
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "reconciliation_differences"

    # finance's CSV
    for url, params in [(f"/reconciliations/{day}.csv", {}), (f"/reconciliations/{day}", {"format": "csv"})]:
        exported = await api.get(url, headers=operator, params=params)
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))
        assert rows[0] == ["对账日期", day] and ["结果", "有差异"] in rows and ["差异数", "3"] in rows
        fees = sum(round(f * 6 / 1000) for f in (19_900, 13_600, 39_700, 5_000)) - round(13_600 * 6 / 1000)
        assert ["手续费（元）", f"{fees // 100}.{fees % 100:02d}000", ""] in rows
        lines = {r[2]: r for r in rows if len(r) > 10 and r[0].isdigit()}
        assert lines["AMOUNT_MISMATCH"][1:9] == ["金额不符", "AMOUNT_MISMATCH", "支付", orders[2], "", "398.00", "397.00",
                                                 "-1.00"]
        assert lines["MISSING_IN_LEDGER"][4] == "OFFLINE000001" and lines["MISSING_IN_LEDGER"][7] == "50.00"

    # the bill kept with the report: its rows, by their business keys
    with sessions() as s:
        kept = {(r.kind, r.key): r.amount_fen for r in s.scalars(select(ReconciliationBillRow))}
    assert kept == {("payment", orders[0]): 19_900, ("payment", orders[1]): 13_600, ("payment", orders[2]): 39_700,
                    ("payment", "OFFLINE000001"): 5_000, ("refund", refund_no): 13_600}
    await keep_run_history(temporal_env, run_workflow_id(day, 2), None, "reconciliation_differences")
    with sessions() as s:
        assert_books_balance(s)


async def test_a_bill_not_made_yet_is_asked_for_again_until_it_is(api, sandbox, token, temporal_env, sessions):
    operator = token(make_user(sessions, "operator", "finance"), "operator")
    await publish_now(sandbox, not_ready_times=2)
    faults = {"endpoints": [{"path": "/v3/bill/tradebill", "error_rate": 1.0, "error_status": 500, "times": 2}]}
    assert (await sandbox.put("/sandbox/faults", json=faults)).status_code == 200
    day = days_ago(1)
    progress = await run_day(api, temporal_env, operator, day)
    # two 500s (the activity retries), STATEMENT_CREATING twice (30 min apart, time skipped),
    # then the answer: no payments that day
    assert (progress.status, progress.bill_requests, progress.result.bill_exists) == ("clean", 3, False)
    assert (await sandbox.get("/sandbox/faults")).json()["stats"] == {"error_500": 2}
    assert progress.waiting_since is not None
    assert (await sandbox.get("/sandbox/bills/config")).json()["not_ready_times"] == 0
    report = (await api.get(f"/reconciliations/{day}", headers=operator)).json()
    assert (report["status"], report["bill_exists"], report["differences"]) == ("clean", False, [])
    await keep_run_history(temporal_env, run_workflow_id(day), None, "reconciliation_bill_retried")


async def test_a_bill_that_never_comes_ends_the_run_and_alerts(api, sandbox, token, temporal_env, sessions, settings,
                                                              monkeypatch):
    operator = token(make_user(sessions, "operator", "finance"), "operator")
    monkeypatch.setattr(settings, "reconciliation_bill_wait_at_most", timedelta(hours=1))
    await publish_now(sandbox, not_ready_times=100)
    day = days_ago(2)
    started = await api.post("/reconciliations/runs", headers=operator, json={"date": day})
    assert started.status_code == 201, started.text
    handle = temporal_env.client.get_workflow_handle(run_workflow_id(day))
    deadline = asyncio.get_running_loop().time() + 15
    while (waiting := await handle.query(ReconciliationWorkflow.progress)) is None or waiting.status != "waiting_for_bill":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    busy = await api.post("/reconciliations/runs", headers=operator, json={"date": day, "rerun": True})
    assert (busy.status_code, busy.json()["code"]) == (409, "RUN_IN_PROGRESS")
    progress = await result_skipping_time(temporal_env, run_workflow_id(day), ReconciliationProgress)
    assert (progress.status, progress.bill_requests) == ("bill_unavailable", 2)   # at 0 and 30 min; 60 is too late
    assert "BILL_NOT_READY" in progress.note
    with sessions() as s:
        run = s.get(ReconciliationRun, (datetime.fromisoformat(day).date(), 1))
        assert run.status == "bill_unavailable"
        [alert] = s.scalars(select(Notification).where(Notification.kind == "reconciliation_differences")).all()
    assert "账单未能获取" in alert.message
    # an explicit re-run is a new attempt; the ended one is kept
    await sandbox.put("/sandbox/bills/config", json={"publish": "immediate", "not_ready_times": 0})
    rerun = await run_day(api, temporal_env, operator, day, rerun=True)
    assert (rerun.status, rerun.attempt) == ("clean", 2)
    assert (await api.get(f"/reconciliations/{day}", headers=operator)).json()["attempts"] == [1, 2]


async def test_a_run_that_was_terminated_is_started_again_under_its_own_id(api, sandbox, token, temporal_env, sessions):
    operator = token(make_user(sessions, "operator", "finance"), "operator")
    await publish_now(sandbox, not_ready_times=100)
    day = days_ago(4)
    assert (await api.post("/reconciliations/runs", headers=operator, json={"date": day})).status_code == 201
    handle = temporal_env.client.get_workflow_handle(run_workflow_id(day))
    deadline = asyncio.get_running_loop().time() + 15
    while (waiting := await handle.query(ReconciliationWorkflow.progress)) is None or waiting.status != "waiting_for_bill":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await end_workflows(temporal_env.client, [run_workflow_id(day)], "operator gave up")
    with sessions() as s:   # its report never ended
        assert s.get(ReconciliationRun, (datetime.fromisoformat(day).date(), 1)).status == "running"
    await publish_now(sandbox)
    again = await run_day(api, temporal_env, operator, day, rerun=True)
    assert (again.status, again.attempt) == ("clean", 1)
    assert (await api.get(f"/reconciliations/{day}", headers=operator)).json()["attempts"] == [1]


async def test_bad_requests_change_nothing(api, token, sessions, demo):
    operator = token(make_user(sessions, "operator", "finance"), "operator")
    for body, code in [({"date": "2026-13-01"}, "BAD_DATE"), ({"date": "yesterday"}, "BAD_DATE"),
                       ({"date": (datetime.now(UTC) + timedelta(days=2)).date().isoformat()}, "DATE_IN_FUTURE")]:
        refused = await api.post("/reconciliations/runs", headers=operator, json=body)
        assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text
    buyer = await api.post("/reconciliations/runs", headers=token(demo.buyer_user_id, "buyer"), json={"date": today()})
    assert buyer.status_code == 403
    assert (await api.get("/reconciliations/2020-01-01", headers=operator)).status_code == 404
    assert (await api.get("/reconciliations/2020-02-30", headers=operator)).json()["code"] == "BAD_DATE"
    assert (await api.get(f"/reconciliations/{today()}", headers=token(demo.buyer_user_id, "buyer"))).status_code == 403
    with sessions() as s:
        assert s.scalars(select(ReconciliationRun)).all() == []


async def test_the_sandbox_answers_like_wechat_pay(api, sandbox, stack):
    pay = stack.state.pay
    for day, code in [("2020-01-01", "NO_STATEMENT_EXIST"),
                      ((datetime.now(UTC) + timedelta(days=3)).date().isoformat(), "NO_STATEMENT_EXIST"),
                      ("2026-1-1", "PARAM_ERROR")]:
        with pytest.raises(PartnerRejected) as err:
            await pay.trade_bill(day)
        assert err.value.code == code
    with pytest.raises(PartnerRejected) as err:
        await pay.trade_bill(days_ago(1), "WEIRD")
    assert err.value.code == "PARAM_ERROR"
    unsigned = await sandbox.get("/v3/bill/tradebill", params={"bill_date": days_ago(1)})
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "SIGN_ERROR")


async def test_cli_reconcile_follows_the_run_and_prints_the_report(api, sandbox, temporal_env, sessions, settings,
                                                                   monkeypatch):
    from rich.console import Console

    from cli import reconcile as reconciliation_cli
    from integrations import temporal

    async def test_server(_settings):
        return temporal_env.client

    monkeypatch.setattr(temporal, "connect", test_server)
    await publish_now(sandbox)
    day = days_ago(3)
    console = Console(record=True, width=160)
    assert await reconciliation_cli.reconcile(settings, console, day, follow=True) == 0
    out = console.export_text()
    assert f"started {run_workflow_id(day)}" in out and f"Reconciliation {day} (attempt 1): clean" in out
    assert "0 matched, 0 difference(s)" in out and "no bill for the day" in out
    assert await reconciliation_cli.reconcile(settings, console, day, follow=False) == 0
    assert f"found {run_workflow_id(day)}" in console.export_text()
    assert await reconciliation_cli.reconcile(settings, console, "2026-02-30", follow=False) == 2


async def test_a_scheduled_start_reconciles_yesterday_under_that_days_id(api, sandbox, temporal_env, settings):
    from domain.reconciliation import ReconciliationInput

    await publish_now(sandbox)
    launcher = await temporal_env.client.start_workflow(
        ReconciliationWorkflow.run, ReconciliationInput(timezone=TZ),
        id=f"reconciliation-scheduled-{uuid.uuid4().hex[:6]}", task_queue=settings.task_queue)
    result = await result_skipping_time(temporal_env, launcher.id, ReconciliationProgress)
    assert result.delegated_to is not None and result.delegated_to.startswith("reconciliation-")
    assert result.status in ("clean", "already_run")
    await keep_run_history(temporal_env, launcher.id, None, "reconciliation_scheduled")


# --- the schedule on a real Temporal dev server ---------------------------------------------------
@pytest.mark.timeout(180)
async def test_the_daily_schedule_exists_at_10_30_and_reconciles_yesterday(tmp_path, api, sandbox, sessions, settings):
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.client import WorkflowExecutionStatus

    from cli import devstack
    from integrations.wechatpay import WeChatPayClient, WeChatPayConfig
    from workflows.schedules import RECONCILIATION_SCHEDULE_ID, ensure_schedules
    from integrations.temporal import connect
    from sandbox.credentials import load_or_create
    from worker import build_worker
    from tests.test_settlement import free_port, quiet_stack

    await publish_now(sandbox)
    dev = settings.model_copy(update={"data_dir": tmp_path, "temporal_port": free_port(),
                                      "temporal_ui_port": free_port(), "task_queue": f"recon-{uuid.uuid4().hex[:6]}"})
    load_or_create(dev.sandbox_dir)  # the sandbox merchant kit, which `chuchuang dev` writes first
    stack = quiet_stack()
    try:
        server = devstack.start_temporal(stack, dev)
        await devstack.wait_for_temporal(dev.resolved_temporal_address, dev.temporal_namespace, timeout=60,
                                         server=server)
        await devstack.prepare_temporal(dev, server)
        client = await connect(dev)
        assert RECONCILIATION_SCHEDULE_ID in await ensure_schedules(client, dev)   # again: updated, not doubled
        handle = client.get_schedule_handle(RECONCILIATION_SCHEDULE_ID)
        described = await handle.describe()
        assert described.schedule.spec.time_zone_name == TZ
        upcoming = described.info.next_action_times[0].astimezone(ZoneInfo(TZ))
        assert (upcoming.hour, upcoming.minute) == (10, 30)
        with ThreadPoolExecutor(max_workers=8) as executor:
            pay = WeChatPayClient(WeChatPayConfig.from_settings(settings))
            async with build_worker(client, dev, executor, sessions=sessions, pay=pay):
                await handle.trigger()
                deadline = asyncio.get_running_loop().time() + 60
                while not (await handle.describe()).info.recent_actions:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.2)
                action = (await handle.describe()).info.recent_actions[0]
                launched = client.get_workflow_handle(action.action.workflow_id,
                                                      run_id=action.action.first_execution_run_id,
                                                      result_type=ReconciliationProgress)
                result = await asyncio.wait_for(launched.result(), 60)
                day = day_to_reconcile_at(action.scheduled_at, TZ)
                assert (result.delegated_to, result.status, result.day) == (run_workflow_id(day), "clean", day)
                done = await client.get_workflow_handle(run_workflow_id(day)).describe()
                assert done.status == WorkflowExecutionStatus.COMPLETED
    finally:
        stack.stop(grace=5)

