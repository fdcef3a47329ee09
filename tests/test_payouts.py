"""Payouts nobody's request started: automatic payout after the monthly statement for the
promoters who chose it (once per month, within the withdrawal rules, only on final statements),
and the sweep that hands a withdrawal whose workflow never started back to it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import itertools

import pytest
from sqlalchemy import select, text, update

from activities.withdrawals import open_withdrawal
from db.models import User
from db.catalog_models import Notification
from db.withdrawal_models import Withdrawal
from domain.settlement import CommissionRunInput, CommissionRunProgress, StatementReview, run_workflow_id
from domain.withdrawals import (
    REAL_NAME_REQUIRED_FROM_FEN,
    PayoutRunInput,
    PayoutRunProgress,
    WithdrawalProgress,
    WithdrawalRules,
    WithdrawalStatus,
    auto_payout_amount,
)
from sandbox.transfers import BILL
from workflows.payouts import PayoutWorkflow, payouts_workflow_id
from workflows.settlement import CommissionSettlementWorkflow
from workflows.withdrawal import workflow_id
from tests.helpers import assert_books_balance, keep_run_history, make_user, result_skipping_time
from tests.test_settlement import TZ, earn, make_promoters, rerun, this_month, wait_run
from tests.test_withdrawals import balances

RULES = WithdrawalRules(min_fen=100, daily_limit_fen=2_000_000, review_above_fen=500_000)
_test_no = itertools.count(1)


@pytest.fixture(autouse=True)
def own_withdrawal_ids(clean_db, engine) -> None:
    """Withdrawal ids restart with each test's fresh database while the sandbox keeps every
    transfer bill of the session: this module's ids (and out_bill_nos) are its own."""
    with engine.begin() as c:
        c.execute(text(f"ALTER SEQUENCE withdrawals_id_seq RESTART WITH {500_000_000 + next(_test_no) * 100_000}"))


def test_auto_payout_amount():
    assert auto_payout_amount(12_345, 0, RULES) == 12_345
    assert auto_payout_amount(99, 0, RULES) is None                     # below the minimum
    assert auto_payout_amount(-500, 0, RULES) is None                   # a carried negative balance
    assert auto_payout_amount(10**9, 0, RULES) == REAL_NAME_REQUIRED_FROM_FEN - 1
    assert auto_payout_amount(10**9, 1_950_000, RULES) == 50_000        # what the daily limit leaves
    assert auto_payout_amount(10**9, 1_999_950, RULES) is None


def bills_for(sandbox_app, withdrawal_ids) -> list[dict]:
    wanted = {f"WD{i:012d}" for i in withdrawal_ids}
    return [b for b in sandbox_app.state.sandbox.store.all(BILL) if b["out_bill_no"] in wanted]


async def test_promoters_who_chose_it_are_paid_after_a_final_statement_once(
        api, sandbox_app, token, temporal_env, sessions, settings):
    (auto, auto_user), (manual, _), (held, held_user), (poor, poor_user), (rich, rich_user), (nowx, nowx_user) = \
        make_promoters(sessions, 6)
    for user in (auto_user, held_user, poor_user, rich_user, nowx_user):
        chose = await api.put("/withdrawals/auto-payout", json={"enabled": True}, headers=token(user, "promoter"))
        assert (chose.status_code, chose.json()) == (200, {"enabled": True}), chose.text
    assert (await api.get("/withdrawals/auto-payout", headers=token(auto_user, "promoter"))).json() == {"enabled": True}
    with sessions.begin() as s:   # lost the WeChat login after choosing: nothing can be paid to them
        s.execute(update(User).where(User.id == nowx_user).values(openid=None))
    no_wechat = await api.put("/withdrawals/auto-payout", json={"enabled": True}, headers=token(nowx_user, "promoter"))
    assert (no_wechat.status_code, no_wechat.json()["code"]) == (409, "NO_WECHAT_ACCOUNT")
    bad = await api.put("/withdrawals/auto-payout", json={"enabled": "sometimes"}, headers=token(auto_user, "promoter"))
    assert bad.status_code == 422

    earn(sessions, auto, 12_345, "p:auto")
    earn(sessions, manual, 5_000, "p:manual")
    earn(sessions, held, 300_000, "p:held")        # above the review threshold: support rejects it
    earn(sessions, poor, 50, "p:poor")             # below the smallest withdrawal
    earn(sessions, rich, 250_000, "p:rich")        # more than may be paid without the real name
    earn(sessions, nowx, 7_000, "p:nowx")
    month = this_month()
    run_id = run_workflow_id("commission", month)
    inp = CommissionRunInput(period=month, timezone=TZ, review_above_fen=260_000)
    await temporal_env.client.start_workflow(CommissionSettlementWorkflow.run, inp, id=run_id,
                                             task_queue=settings.task_queue)
    await wait_run(temporal_env, run_id, "awaiting_review")
    support = make_user(sessions, "support", "kefu-payout")
    await temporal_env.client.get_workflow_handle(run_id).execute_update(
        CommissionSettlementWorkflow.review,
        StatementReview(promoter_id=held, approve=False, note="疑似刷单", reviewer_user_id=support))
    assert (await result_skipping_time(temporal_env, run_id, CommissionRunProgress)).status == "final"

    payouts = await result_skipping_time(temporal_env, payouts_workflow_id(month), PayoutRunProgress)
    assert (payouts.started, payouts.skipped, payouts.done) == (2, 2, True)   # auto, rich; poor, nowx
    with sessions() as s:
        made = {w.promoter_id: w for w in s.scalars(select(Withdrawal))}
        assert {p: (w.amount_fen, w.request_key) for p, w in made.items()} == {
            auto: (12_345, f"auto:{month}"), rich: (REAL_NAME_REQUIRED_FROM_FEN - 1, f"auto:{month}")}
        told = s.scalars(select(Notification.subject_id).where(Notification.kind == "auto_payout"))
        assert sorted(told) == sorted([str(auto), str(rich)])
    for w in made.values():   # the sandbox's user confirms after its settle delay
        result = await result_skipping_time(temporal_env, workflow_id(w.id), WithdrawalProgress)
        assert result.status == WithdrawalStatus.SUCCESS
    assert balances(sessions, auto) == (0, 0)
    assert balances(sessions, rich) == (250_000 - REAL_NAME_REQUIRED_FROM_FEN + 1, 0)
    assert balances(sessions, manual) == (5_000, 0) and balances(sessions, held) == (300_000, 0)
    assert balances(sessions, poor) == (50, 0) and balances(sessions, nowx) == (7_000, 0)
    assert sorted(b["transfer_amount"] for b in bills_for(sandbox_app, [w.id for w in made.values()])) == [
        12_345, REAL_NAME_REQUIRED_FROM_FEN - 1]
    await keep_run_history(temporal_env, payouts_workflow_id(month), None, "payouts_after_statement")

    # the month settled again, and its payouts asked again: nothing is paid twice
    assert (await rerun(temporal_env, settings, CommissionSettlementWorkflow.run, inp, run_id,
                        CommissionRunProgress)).status == "final"
    again = await rerun(temporal_env, settings, PayoutWorkflow.run, PayoutRunInput(month=month),
                        f"payouts-again-{uuid.uuid4().hex[:6]}", PayoutRunProgress)
    assert again.started == 0
    with sessions() as s:
        assert len(s.scalars(select(Withdrawal)).all()) == 2
        assert_books_balance(s)
    assert len(bills_for(sandbox_app, [w.id for w in made.values()])) == 2


async def test_the_sweep_hands_a_stranded_withdrawal_to_its_workflow(
        api, sandbox_app, temporal_env, sessions, settings):
    """The API commits a withdrawal (money into `withdrawing`) and then starts its workflow; if
    it dies in between, the sweep starts the workflow, and the money is paid, not stuck."""
    (promoter, _), = make_promoters(sessions, 1)
    earn(sessions, promoter, 10_000, "sweep:earn")
    day = datetime.now(ZoneInfo(TZ)).date()
    with sessions.begin() as s:
        stranded, _ = open_withdrawal(s, promoter_id=promoter, amount_fen=3_000, request_key="k1", local_day=day,
                                      rules_=settings.withdrawal_rules)
        fresh, _ = open_withdrawal(s, promoter_id=promoter, amount_fen=1_000, request_key="k2", local_day=day,
                                   rules_=settings.withdrawal_rules)
        s.flush()
        stranded_id, fresh_id = stranded.id, fresh.id
        stranded.created_at = datetime.now(UTC) - timedelta(hours=1)
    assert balances(sessions, promoter) == (6_000, 4_000)

    sweep = PayoutRunInput(stranded_after=timedelta(minutes=10))
    sweep_id = f"withdrawals-sweep-{uuid.uuid4().hex[:6]}"
    swept = await rerun(temporal_env, settings, PayoutWorkflow.run, sweep, sweep_id, PayoutRunProgress)
    assert (swept.started, swept.already_running) == (1, 0)   # the fresh one may still be on its way
    result = await result_skipping_time(temporal_env, workflow_id(stranded_id), WithdrawalProgress)
    assert result.status == WithdrawalStatus.SUCCESS
    assert balances(sessions, promoter) == (6_000, 1_000)
    again = await rerun(temporal_env, settings, PayoutWorkflow.run, sweep, f"withdrawals-sweep-{uuid.uuid4().hex[:6]}",
                        PayoutRunProgress)
    assert again.started == 0
    assert [b["out_bill_no"] for b in bills_for(sandbox_app, [stranded_id, fresh_id])] == [f"WD{stranded_id:012d}"]
    await keep_run_history(temporal_env, sweep_id, None, "payouts_sweep")
    with sessions() as s:
        assert s.get(Withdrawal, fresh_id).status == WithdrawalStatus.REQUESTED
        assert_books_balance(s)
