"""PromoterLifecycleWorkflow and RevivalWorkflow with time skipped: sales (never head-count)
decide; failing pauses new commission only; revival needs sales or support, never a purchase."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from activities import ledger
from db.models import Promoter, User
from db.catalog_models import Notification
from db.promoter_models import AssessmentCycle, Revival
from domain import ledger as rules
from domain.search_attributes import BUSINESS_STATUS
from workflows.promoter_lifecycle import PromoterLifecycleWorkflow, workflow_id
from workflows.revival import RevivalWorkflow
from workflows.revival import workflow_id as revival_id
from tests.promoter_helpers import (
    become_promoter,
    completed_orders,
    cycle_progress,
    eventually,
    keep_run_history,
    stop_promoter_workflows,  # noqa: F401
)

pytestmark = pytest.mark.usefixtures("stop_promoter_workflows")


def _status(sessions, promoter_id: int) -> str:
    with sessions() as s:
        return s.get(Promoter, promoter_id).status


def _support(sessions) -> int:
    with sessions.begin() as s:
        user = User(role="support", username="support1")
        s.add(user)
        s.flush()
        return user.id


async def test_cycles_pause_then_lapse_then_revival_and_a_passed_cycle(api, token, sessions, temporal_env):
    a = await become_promoter(api, token, sessions, 40)
    pid, window = a["promoter_id"], a["window_id"]
    handle = temporal_env.client.get_workflow_handle(workflow_id(pid))
    cycle1 = await cycle_progress(temporal_env, pid, 1)
    first_run = (await handle.describe()).run_id
    with sessions.begin() as s:  # commission already earned must survive every outcome
        ledger.post(s, "test:earned", "commission_release",
                    rules.transfer(rules.ORDERS_HELD, rules.promoter_available(pid), 777))
    completed_orders(sessions, pid, window, cycle1.cycle_started_at + timedelta(hours=1), 2)
    completed_orders(sessions, pid, window, cycle1.cycle_started_at + timedelta(hours=1), 1,
                     buyer_user_id=a["user_id"])  # buying from yourself never counts

    await temporal_env.sleep(timedelta(days=28))

    async def reminded():
        with sessions() as s:
            return s.scalar(select(Notification).where(
                Notification.subject_type == "promoter", Notification.subject_id == str(pid),
                Notification.kind == "assessment_reminder"))
    reminder = await eventually(reminded, what="reminder")
    assert "2 of 3 orders, 2 days left" in reminder.message
    progress = await handle.query(PromoterLifecycleWorkflow.progress)
    assert progress.text.startswith("2 of 3 orders") and progress.completed_orders == 2
    me = (await api.get("/promoters/me/progress", headers=a["headers"])).json()
    assert me["text"].startswith("2 of 3 orders")

    await temporal_env.sleep(timedelta(days=2, hours=1))
    await cycle_progress(temporal_env, pid, 2)
    assert _status(sessions, pid) == "paused"
    with sessions() as s:
        cycle = s.scalar(select(AssessmentCycle).where(AssessmentCycle.promoter_id == pid))
        assert (cycle.completed_orders, cycle.passed, cycle.status_after) == (2, False, "paused")
    await keep_run_history(temporal_env, workflow_id(pid), first_run, "promoter_cycle_failed_paused")

    await temporal_env.sleep(timedelta(days=30, hours=1))  # a second cycle without sales
    lapsed = await cycle_progress(temporal_env, pid, 3)
    assert lapsed.status == "lapsed" and _status(sessions, pid) == "lapsed"
    described = await handle.describe()
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "lapsed"
    lapsed_run = described.run_id
    with sessions() as s:
        assert ledger.balance(s, rules.promoter_available(pid)) == 777  # never confiscated

    started = await api.post("/promoters/me/revival", headers=a["headers"])
    assert started.status_code == 202, started.text
    assert started.json()["target_orders"] == 10
    support = token(_support(sessions), "support")
    blank = await api.post(f"/promoters/{pid}/revival/approve", headers=support, json={"note": "  "})
    assert (blank.status_code, blank.json()["code"]) == (409, "NOTE_REQUIRED")
    approved = await api.post(f"/promoters/{pid}/revival/approve", headers=support,
                              json={"note": "long illness, documented"})
    assert approved.status_code == 200, approved.text
    await eventually(lambda: _async(_status(sessions, pid) == "active"), what="revived")
    cycle4 = await cycle_progress(temporal_env, pid, 4)
    assert cycle4.status == "active" and cycle4.failed_in_row == 0
    await keep_run_history(temporal_env, workflow_id(pid), lapsed_run, "promoter_lapsed_then_revived")
    revived = (await api.get("/promoters/me/revival", headers=a["headers"])).json()
    assert revived["status"] == "revived" and "support" in revived["how"]
    await keep_run_history(temporal_env, revival_id(pid, 1), None, "revival_approved_by_support")

    completed_orders(sessions, pid, window, cycle4.cycle_started_at + timedelta(days=3), 3)
    await temporal_env.sleep(timedelta(days=30, hours=1))
    await cycle_progress(temporal_env, pid, 5)
    with sessions() as s:
        passed = s.scalar(select(AssessmentCycle).where(AssessmentCycle.promoter_id == pid,
                                                        AssessmentCycle.cycle_no == 4))
        assert (passed.completed_orders, passed.passed, passed.status_after) == (3, True, "active")
        assert ledger.balance(s, rules.promoter_available(pid)) == 777


async def _async(value):
    return value


async def test_revival_by_sales_restarts_the_cycle(api, token, sessions, temporal_env):
    a = await become_promoter(api, token, sessions, 50)
    pid = a["promoter_id"]
    await cycle_progress(temporal_env, pid, 1)
    early = await api.post("/promoters/me/revival", headers=a["headers"])
    assert (early.status_code, early.json()["code"]) == (409, "NOT_REVIVABLE")
    with sessions.begin() as s:
        s.execute(update(Promoter).where(Promoter.id == pid).values(status="paused"))
    started = await api.post("/promoters/me/revival", headers=a["headers"])
    assert started.status_code == 202, started.text
    twice = await api.post("/promoters/me/revival", headers=a["headers"])
    assert (twice.status_code, twice.json()["code"]) == (409, "REVIVAL_OPEN")

    async def opened():
        r = await api.get("/promoters/me/revival", headers=a["headers"])
        return r.json() if r.status_code == 200 and r.json().get("started_at") else None
    revival = await eventually(opened, what="revival open")
    from datetime import datetime

    at = datetime.fromisoformat(revival["started_at"]) + timedelta(days=2)
    completed_orders(sessions, pid, a["window_id"], at, 10)
    await temporal_env.sleep(timedelta(days=2, hours=7))
    await eventually(lambda: _async(_status(sessions, pid) == "active"), what="revived by sales")
    again = await cycle_progress(temporal_env, pid, 2)  # the lifecycle started a fresh cycle
    assert again.status == "active"
    with sessions() as s:
        row = s.scalar(select(Revival).where(Revival.promoter_id == pid))
        assert (row.status, row.completed_orders) == ("revived", 10)
    await keep_run_history(temporal_env, revival_id(pid, 1), None, "revival_by_sales")


async def test_revival_expires_without_sales_and_takes_nothing(api, token, sessions, temporal_env):
    a = await become_promoter(api, token, sessions, 60)
    pid = a["promoter_id"]
    await cycle_progress(temporal_env, pid, 1)
    await temporal_env.client.get_workflow_handle(workflow_id(pid)).terminate("isolate the revival")
    with sessions.begin() as s:
        s.execute(update(Promoter).where(Promoter.id == pid).values(status="lapsed"))
        ledger.post(s, "test:earned60", "commission_release",
                    rules.transfer(rules.ORDERS_HELD, rules.promoter_available(pid), 500))
    assert (await api.post("/promoters/me/revival", headers=a["headers"])).status_code == 202
    handle = temporal_env.client.get_workflow_handle(revival_id(pid, 1))
    async with temporal_env.time_skipping_unlocked():
        result = await handle.result(rpc_timeout=timedelta(seconds=30))
    assert result["status"] == "expired" if isinstance(result, dict) else result.status == "expired"
    assert _status(sessions, pid) == "lapsed"
    with sessions() as s:
        assert ledger.balance(s, rules.promoter_available(pid)) == 500
    late = await api.post(f"/promoters/{pid}/revival/approve", headers=token(_support(sessions), "support"),
                          json={"note": "too late"})
    assert (late.status_code, late.json()["code"]) == (409, "REVIVAL_NOT_OPEN")
    await keep_run_history(temporal_env, revival_id(pid, 1), None, "revival_expired")
    progress = await handle.query(RevivalWorkflow.progress)
    assert progress.status == "expired"
