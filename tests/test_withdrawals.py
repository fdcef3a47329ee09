"""Withdrawals of commission to WeChat change through the API, the WithdrawalWorkflow and the
sandbox's merchant transfer bills: paid when the user confirms, money back when the transfer
fails, is never confirmed, or support rejects it; bad requests write nothing; concurrent
requests on one wallet never overdraw; repeated or forged notifications change nothing."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
from datetime import timedelta

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select, text

from activities import ledger
from db.models import LedgerEntry, LedgerTransaction, Promoter, User
from db.catalog_models import Notification
from db.withdrawal_models import Withdrawal
from domain import ledger as rules
from domain.withdrawals import (
    WithdrawalProgress,
    WithdrawalRefused,
    WithdrawalRules,
    WithdrawalStatus,
    check_withdrawal,
    needs_review,
    out_bill_no,
    status_for_bill,
    withdrawal_id_of,
)
from sandbox.notify import OUTBOX
from sandbox.signing import aes_gcm_encrypt, platform_headers
from sandbox.transfers import BILL
from workflows.withdrawal import WithdrawalWorkflow, workflow_id
from tests.helpers import assert_books_balance, keep_run_history, make_user, result_skipping_time
from tests.promoter_helpers import become_promoter

NEVER_CONFIRMS = {"transfer_never_confirms": True}
RULES = WithdrawalRules(min_fen=100, daily_limit_fen=2_000_000, review_above_fen=500_000)


# --- pure rules ------------------------------------------------------------------------------
def test_rules():
    check_withdrawal(100, available_fen=100, withdrawn_today_fen=1_999_900, rules=RULES)
    for amount, available, today, code in [
        (99, 10_000, 0, "BELOW_MINIMUM"), (0, 10_000, 0, "INVALID_AMOUNT"), (True, 10_000, 0, "INVALID_AMOUNT"),
        (1_001, 1_000, 0, "INSUFFICIENT_BALANCE"), (100, -50, 0, "INSUFFICIENT_BALANCE"),
        (200, 10_000_000, 1_999_900, "DAILY_LIMIT_EXCEEDED"), (2_000_001, 10**9, 0, "DAILY_LIMIT_EXCEEDED"),
    ]:
        with pytest.raises(WithdrawalRefused) as refused:
            check_withdrawal(amount, available_fen=available, withdrawn_today_fen=today, rules=RULES)
        assert refused.value.code == code, (amount, available, today)
    # WeChat Pay's own floor holds whatever the setting says
    with pytest.raises(WithdrawalRefused):
        check_withdrawal(9, available_fen=100, withdrawn_today_fen=0, rules=WithdrawalRules(1, 100, 100))
    assert needs_review(500_001, RULES) and not needs_review(500_000, RULES)
    assert out_bill_no(42) == "WD000000000042" and withdrawal_id_of("WD000000000042") == 42
    assert withdrawal_id_of("TB20240001") is None and withdrawal_id_of("WD42") is None
    assert status_for_bill("SUCCESS") == WithdrawalStatus.SUCCESS and status_for_bill("FAIL") == WithdrawalStatus.FAILED
    assert status_for_bill("ACCEPTED") == WithdrawalStatus.WAIT_USER_CONFIRM
    assert {s.final for s in WithdrawalStatus} == {True, False}


# --- helpers ---------------------------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="session")
async def faults_cleared(sandbox):
    yield
    await sandbox.delete("/sandbox/faults")


_test_no = itertools.count(1)


@pytest.fixture(autouse=True)
def fresh_ids(clean_db, engine) -> range:
    """Withdrawal ids (and so workflow ids and out_bill_nos) restart with every test's fresh
    database, while Temporal and the sandbox live for the whole session: give each test its
    own range, as a real database never reuses one."""
    first = next(_test_no) * 100_000 + 1
    with engine.begin() as c:
        c.execute(text(f"ALTER SEQUENCE withdrawals_id_seq RESTART WITH {first}"))
    return range(first, first + 100_000)


def fund(sessions, promoter_id: int, amount_fen: int, n: int = 0) -> None:
    """Commission paid for goods and released: money came in at WeChat Pay, is now the promoter's."""
    with sessions.begin() as s:
        ledger.post(s, f"test:fund:{promoter_id}:{n}", "commission_release",
                    rules.transfer(rules.CLEARING, rules.promoter_available(promoter_id), amount_fen, rule="t"))


def balances(sessions, promoter_id: int) -> tuple[int, int]:
    with sessions() as s:
        return (ledger.balance(s, rules.promoter_available(promoter_id)),
                ledger.balance(s, rules.promoter_withdrawing(promoter_id)))


async def withdraw(api, headers, amount_fen: int, key: str | None = None, **extra):
    if key:
        headers = headers | {"Idempotency-Key": key}
    return await api.post("/withdrawals", json={"amount_fen": amount_fen} | extra, headers=headers)


async def wait_status(api, headers, withdrawal_id: int, *statuses: str, timeout: float = 20.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = (await api.get(f"/withdrawals/{withdrawal_id}", headers=headers)).json()
        if got["status"] in statuses:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"withdrawal {withdrawal_id} stuck at {got['status']}, wanted {statuses}")
        await asyncio.sleep(0.05)


async def finished(env, withdrawal_id: int) -> WithdrawalProgress:
    return await result_skipping_time(env, workflow_id(withdrawal_id), WithdrawalProgress)


def bills_of(sandbox_app, ids: range) -> list[dict]:
    """The sandbox's transfer bills for this test's withdrawals."""
    return [b for b in sandbox_app.state.sandbox.store.all(BILL)
            if (withdrawal_id_of(b["out_bill_no"]) or 0) in ids]


def another_promoter(sessions, n: int) -> tuple[int, int]:
    with sessions.begin() as s:
        user = User(role="promoter", openid=f"oWDOTHER{n:020d}", display_name=f"推客{n}")
        s.add(user)
        s.flush()
        promoter = Promoter(user_id=user.id, nickname=f"推客{n}")
        s.add(promoter)
        s.flush()
        return user.id, promoter.id


def nothing_written(sessions) -> None:
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Withdrawal)) == 0
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)
                        .where(LedgerTransaction.kind.like("withdrawal%"))) == 0


# --- the process -----------------------------------------------------------------------------
async def test_small_withdrawal_paid_when_the_user_confirms(api, sandbox, sandbox_app, demo, token, sessions,
                                                          temporal_env, faults_cleared):
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 10_000)
    await sandbox.put("/sandbox/faults", json=NEVER_CONFIRMS)  # the user takes their time
    made = await withdraw(api, headers, 3_000)
    assert made.status_code == 201, made.text
    wid = made.json()["id"]
    assert made.json()["needs_review"] is False
    assert balances(sessions, demo.promoter_id) == (7_000, 3_000)
    assert (await api.get("/wallet", headers=headers)).json()["available_fen"] == 7_000

    waiting = await wait_status(api, headers, wid, "WAIT_USER_CONFIRM")
    mchid, appid = sandbox_app.state.sandbox.credentials.mchid, sandbox_app.state.sandbox.credentials.appid
    bill_no = waiting["out_bill_no"]
    assert bill_no == f"WD{wid:012d}" and waiting["bill_state"] == "WAIT_USER_CONFIRM"
    assert waiting["transfer"]["mchid"] == mchid and waiting["transfer"]["appid"] == appid
    assert waiting["transfer"]["package_info"] == sandbox_app.state.sandbox.store.get(BILL, bill_no)["package_info"]
    described = await temporal_env.client.get_workflow_handle(workflow_id(wid)).describe()
    attrs = {k.name: v for k, v in described.typed_search_attributes}
    assert attrs["PromoterId"] == str(demo.promoter_id) and attrs["BusinessStatus"] == "WITHDRAWAL_WAIT_USER_CONFIRM"

    # nobody else sees it; support does, without the one-time package
    other_user, _ = another_promoter(sessions, 1)
    assert (await api.get(f"/withdrawals/{wid}", headers=token(other_user, "promoter"))).status_code == 404
    assert (await api.get("/withdrawals", headers=token(other_user, "promoter"))).json() == []
    assert (await api.get(f"/withdrawals/{wid}", headers=token(demo.buyer_user_id, "buyer"))).status_code == 403
    support = make_user(sessions, "support", "support-wd1")
    seen = (await api.get(f"/withdrawals/{wid}", headers=token(support, "support"))).json()
    assert seen["status"] == "WAIT_USER_CONFIRM" and seen["transfer"] is None

    await sandbox.delete("/sandbox/faults")
    confirmed = await sandbox.post(f"/sandbox/transfers/{bill_no}/confirm")  # wx.requestMerchantTransfer
    assert confirmed.json()["state"] == "SUCCESS", confirmed.text
    await wait_status(api, headers, wid, "SUCCESS")
    result = await finished(temporal_env, wid)
    assert (result.status, result.bill_state) == (WithdrawalStatus.SUCCESS, "SUCCESS")
    await keep_run_history(temporal_env, workflow_id(wid), None, "withdrawal_paid")

    done = (await api.get(f"/withdrawals/{wid}", headers=headers)).json()
    assert done["status"] == "SUCCESS" and done["transfer"] is None and done["finished_at"]
    assert [w["id"] for w in (await api.get("/withdrawals", headers=headers)).json()] == [wid]
    assert balances(sessions, demo.promoter_id) == (7_000, 0)
    with sessions() as s:
        assert ledger.balance(s, rules.CLEARING) == 7_000  # 3,000 fen left the platform
        assert s.get(Withdrawal, wid).package_info is None
        assert s.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "withdrawal_paid")) == 1
        assert_books_balance(s)
    described = await temporal_env.client.get_workflow_handle(workflow_id(wid)).describe()
    assert {k.name: v for k, v in described.typed_search_attributes}["BusinessStatus"] == "WITHDRAWAL_SUCCESS"


async def test_transfer_never_confirmed_is_cancelled_and_money_returned(api, sandbox, sandbox_app, demo, token,
                                                                        sessions, temporal_env, settings,
                                                                        monkeypatch, faults_cleared):
    monkeypatch.setattr(settings, "withdrawal_poll_every", timedelta(hours=2))
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 10_000)
    await sandbox.put("/sandbox/faults", json=NEVER_CONFIRMS)
    wid = (await withdraw(api, headers, 5_000)).json()["id"]
    await wait_status(api, headers, wid, "WAIT_USER_CONFIRM")
    result = await finished(temporal_env, wid)  # 24 hours pass
    assert (result.status, result.bill_state) == (WithdrawalStatus.CANCELLED, "CANCELLED")
    await keep_run_history(temporal_env, workflow_id(wid), None, "withdrawal_cancelled_unconfirmed")

    got = (await api.get(f"/withdrawals/{wid}", headers=headers)).json()
    assert (got["status"], got["fail_reason"], got["transfer"]) == ("CANCELLED", "NOT_CONFIRMED_IN_TIME", None)
    assert sandbox_app.state.sandbox.store.get(BILL, got["out_bill_no"])["state"] == "CANCELLED"
    assert balances(sessions, demo.promoter_id) == (10_000, 0)
    with sessions() as s:
        assert ledger.balance(s, rules.CLEARING) == 10_000
        assert_books_balance(s)


async def test_a_long_wait_for_the_transfer_continues_as_new_and_still_returns_the_money(
        api, sandbox, sandbox_app, demo, token, sessions, temporal_env, settings, monkeypatch, faults_cleared):
    """Polling a bill that stays unconfirmed keeps the history small: after
    WITHDRAWAL_POLLS_PER_RUN queries the workflow continues as new where it was."""
    monkeypatch.setattr(settings, "withdrawal_poll_every", timedelta(hours=2))
    monkeypatch.setattr(settings, "withdrawal_polls_per_run", 3)
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 10_000)
    await sandbox.put("/sandbox/faults", json=NEVER_CONFIRMS)
    wid = (await withdraw(api, headers, 5_000)).json()["id"]
    await wait_status(api, headers, wid, "WAIT_USER_CONFIRM")
    first_run = (await temporal_env.client.get_workflow_handle(workflow_id(wid)).describe()).run_id
    result = await finished(temporal_env, wid)  # 24 hours pass: 12 queries, 4 runs
    assert (result.status, result.bill_state) == (WithdrawalStatus.CANCELLED, "CANCELLED")
    described = await temporal_env.client.get_workflow_handle(workflow_id(wid)).describe()
    assert described.run_id != first_run
    assert described.raw_description.workflow_execution_info.history_length < 60
    assert balances(sessions, demo.promoter_id) == (10_000, 0)
    with sessions() as s:
        assert ledger.balance(s, rules.CLEARING) == 10_000
        assert_books_balance(s)


async def test_failed_transfer_returns_the_money(api, sandbox, demo, token, sessions, temporal_env, faults_cleared):
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 2_000)
    await sandbox.put("/sandbox/faults", json=NEVER_CONFIRMS)
    wid = (await withdraw(api, headers, 2_000)).json()["id"]
    bill_no = (await wait_status(api, headers, wid, "WAIT_USER_CONFIRM"))["out_bill_no"]
    failed = await sandbox.post(f"/sandbox/transfers/{bill_no}/fail", json={"fail_reason": "PAYEE_ACCOUNT_ABNORMAL"})
    assert failed.status_code == 200, failed.text
    await wait_status(api, headers, wid, "FAILED")
    result = await finished(temporal_env, wid)
    assert (result.status, result.bill_state) == (WithdrawalStatus.FAILED, "FAIL")
    got = (await api.get(f"/withdrawals/{wid}", headers=headers)).json()
    assert got["fail_reason"] == "PAYEE_ACCOUNT_ABNORMAL"
    assert balances(sessions, demo.promoter_id) == (2_000, 0)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "withdrawal_returned")) == 1
        assert_books_balance(s)


async def test_large_withdrawal_rejected_by_support(api, token, sessions, temporal_env, sandbox_app, clean_db):
    promoter = await become_promoter(api, token, sessions, 501)
    pid, headers = promoter["promoter_id"], promoter["headers"]
    fund(sessions, pid, 1_000_000)
    assert (await withdraw(api, headers, 600_000)).json()["code"] == "REAL_NAME_REQUIRED"
    assert (await withdraw(api, headers, 600_000, real_name="李四")).json()["code"] == "REAL_NAME_MISMATCH"
    made = await withdraw(api, headers, 600_000, real_name="王小明")
    assert made.status_code == 201 and made.json()["needs_review"] is True, made.text
    wid = made.json()["id"]
    await wait_status(api, headers, wid, "REVIEWING")
    support = make_user(sessions, "support", "support-wd2")
    with sessions() as s:
        assert s.scalar(select(Notification.message).where(Notification.kind == "withdrawal_review",
                                                           Notification.recipient_role == "support"))
    listed = (await api.get("/withdrawals", params={"status": "REVIEWING"}, headers=token(support, "support"))).json()
    assert [w["id"] for w in listed] == [wid]

    url = f"/withdrawals/{wid}/review"
    assert (await api.post(url, json={"approve": False}, headers=headers)).status_code == 403
    no_note = await api.post(url, json={"approve": False}, headers=token(support, "support"))
    assert (no_note.status_code, no_note.json()["code"]) == (422, "INVALID_DECISION"), no_note.text
    rejected = await api.post(url, json={"approve": False, "note": "收款账户异常，请核实"},
                              headers=token(support, "support"))
    assert rejected.status_code == 200, rejected.text
    result = await finished(temporal_env, wid)
    assert result.status == WithdrawalStatus.REJECTED
    await keep_run_history(temporal_env, workflow_id(wid), None, "withdrawal_rejected")

    again = await api.post(url, json={"approve": True}, headers=token(support, "support"))
    assert (again.status_code, again.json()["code"]) == (409, "PROCESS_ENDED")
    got = (await api.get(f"/withdrawals/{wid}", headers=headers)).json()
    assert (got["status"], got["review_decision"], got["review_note"]) == ("REJECTED", "reject", "收款账户异常，请核实")
    assert got["out_bill_no"] is None and sandbox_app.state.sandbox.store.get(BILL, out_bill_no(wid)) is None
    assert balances(sessions, pid) == (1_000_000, 0)
    with sessions() as s:
        assert s.get(Withdrawal, wid).payee_name is None  # personal data not kept
        told = s.scalar(select(Notification.message).where(Notification.subject_id == str(pid),
                                                           Notification.kind == "withdrawal_returned"))
        assert "收款账户异常" in told
        assert_books_balance(s)


async def test_large_withdrawal_approved_and_paid(api, token, sessions, temporal_env, sandbox_app, clean_db):
    promoter = await become_promoter(api, token, sessions, 502)
    pid, headers = promoter["promoter_id"], promoter["headers"]
    fund(sessions, pid, 1_000_000)
    wid = (await withdraw(api, headers, 800_000, real_name="王小明")).json()["id"]
    await wait_status(api, headers, wid, "REVIEWING")
    support = make_user(sessions, "support", "support-wd3")
    approved = await api.post(f"/withdrawals/{wid}/review", json={"approve": True, "note": "ok"},
                              headers=token(support, "support"))
    assert approved.status_code == 200, approved.text
    await wait_status(api, headers, wid, "SUCCESS")  # the sandbox's user confirms on their own
    result = await finished(temporal_env, wid)
    assert result.status == WithdrawalStatus.SUCCESS
    with sessions() as s:
        w = s.get(Withdrawal, wid)
        assert (w.review_decision, w.reviewed_by_user_id, w.payee_name) == ("approve", support, None)
        assert ledger.balance(s, rules.CLEARING) == 200_000
        assert_books_balance(s)
    assert balances(sessions, pid) == (200_000, 0)
    assert sandbox_app.state.sandbox.store.get(BILL, f"WD{wid:012d}")["transfer_amount"] == 800_000


# --- refusals --------------------------------------------------------------------------------
async def test_bad_requests_are_refused_and_write_nothing(api, demo, token, sessions):
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 1_000)
    for amount, status, code in [(50, 422, "BELOW_MINIMUM"), (1_001, 409, "INSUFFICIENT_BALANCE"),
                                 (2_000_001, 409, "DAILY_LIMIT_EXCEEDED"), (0, 422, "VALIDATION_ERROR"),
                                 ("100", 422, "VALIDATION_ERROR"), (1.5, 422, "VALIDATION_ERROR")]:
        r = await withdraw(api, headers, amount)
        assert (r.status_code, r.json()["code"]) == (status, code), (amount, r.text)
        assert r.json()["message"]
    assert (await withdraw(api, token(demo.buyer_user_id, "buyer"), 100)).status_code == 403
    nobody = make_user(sessions, "promoter", "no-profile")
    r = await withdraw(api, token(nobody, "promoter"), 100)
    assert (r.status_code, r.json()["code"]) == (404, "NOT_A_PROMOTER")
    nothing_written(sessions)

    # a negative balance carried after refunds blocks withdrawal until earnings cover it
    with sessions.begin() as s:
        ledger.post(s, "test:reversal", "commission_reversal",
                    rules.transfer(rules.promoter_available(demo.promoter_id), rules.CLEARING, 1_500))
    r = await withdraw(api, headers, 100)
    assert (r.status_code, r.json()["code"]) == (409, "INSUFFICIENT_BALANCE")
    nothing_written(sessions)
    assert balances(sessions, demo.promoter_id) == (-500, 0)


async def test_daily_limit_counts_what_is_not_returned(api, sandbox, demo, token, sessions, settings, monkeypatch,
                                                       temporal_env, faults_cleared):
    """Paused promoters withdraw too (earned money is theirs); a withdrawal the promoter
    cancels frees its part of the day's limit."""
    monkeypatch.setattr(settings, "withdrawal_daily_limit_fen", 1_500)
    headers = token(demo.promoter_user_id, "promoter")
    with sessions.begin() as s:
        s.get(Promoter, demo.promoter_id).status = "paused"
    fund(sessions, demo.promoter_id, 5_000)
    await sandbox.put("/sandbox/faults", json=NEVER_CONFIRMS)
    first = await withdraw(api, headers, 1_000)
    assert first.status_code == 201, first.text
    over = await withdraw(api, headers, 600)
    assert (over.status_code, over.json()["code"]) == (409, "DAILY_LIMIT_EXCEEDED"), over.text
    assert "500" in over.json()["message"]
    wid = first.json()["id"]
    await wait_status(api, headers, wid, "WAIT_USER_CONFIRM")
    other_user, _ = another_promoter(sessions, 2)
    assert (await api.post(f"/withdrawals/{wid}/cancel", json={}, headers=token(other_user, "promoter"))).status_code == 404
    cancelled = await api.post(f"/withdrawals/{wid}/cancel", json={"reason": "换个时间"}, headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    again = await api.post(f"/withdrawals/{wid}/cancel", json={}, headers=headers)
    assert again.status_code == 409, again.text
    await wait_status(api, headers, wid, "CANCELLED")
    result = await finished(temporal_env, wid)
    assert result.status == WithdrawalStatus.CANCELLED
    assert (await api.get(f"/withdrawals/{wid}", headers=headers)).json()["fail_reason"] == "CANCELLED_BY_PROMOTER"
    assert balances(sessions, demo.promoter_id) == (5_000, 0)
    assert (await withdraw(api, headers, 1_500)).status_code == 201
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Withdrawal)) == 2


async def test_retried_request_with_the_same_key_is_one_withdrawal(api, demo, token, sessions, temporal_env):
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 10_000)
    tries = await asyncio.gather(*[withdraw(api, headers, 1_000, key="wd-retry-1") for _ in range(5)])
    assert sorted(r.status_code for r in tries) == [200, 200, 200, 200, 201], [r.text for r in tries]
    (wid,) = {r.json()["id"] for r in tries}
    conflict = await withdraw(api, headers, 2_000, key="wd-retry-1")
    assert (conflict.status_code, conflict.json()["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    other_user, other_id = another_promoter(sessions, 3)  # keys belong to one promoter
    fund(sessions, other_id, 1_000)
    theirs = await withdraw(api, token(other_user, "promoter"), 1_000, key="wd-retry-1")
    assert theirs.status_code == 201 and theirs.json()["id"] != wid
    # (time is skipped only once nothing else waits: the test server cannot cancel a timer it
    # is firing at the same moment)
    await wait_status(api, headers, wid, "SUCCESS")
    await wait_status(api, token(other_user, "promoter"), theirs.json()["id"], "SUCCESS")
    assert (await finished(temporal_env, wid)).status == WithdrawalStatus.SUCCESS
    late_retry = await withdraw(api, headers, 1_000, key="wd-retry-1")
    assert (late_retry.status_code, late_retry.json()["id"], late_retry.json()["status"]) == (200, wid, "SUCCESS")
    assert balances(sessions, demo.promoter_id) == (9_000, 0)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)
                        .where(LedgerTransaction.kind == "withdrawal_request")) == 2


# --- concurrency and partner faults ----------------------------------------------------------
PARTNER_FAULTS = {
    "seed": 5,
    "endpoints": [
        # bounded, so no bill waits through minutes of retry backoff
        {"path": "/v3/fund-app/mch-transfer/transfer-bills", "method": "POST", "error_rate": 0.5, "error_status": 500,
         "times": 10},
        {"path": "/v3/fund-app/mch-transfer/transfer-bills", "method": "POST", "error_rate": 0.3, "error_status": 429,
         "times": 6},
        {"path": "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/*", "method": "GET", "error_rate": 0.5,
         "error_status": 500, "times": 6},
    ],
    "notifications": {"event_types": ["MCHTRANSFER.*"], "duplicate_rate": 1.0, "invalid_signature_rate": 0.4},
}


async def test_concurrent_withdrawals_never_overdraw_and_each_is_paid_once(api, sandbox, sandbox_app, demo, token,
                                                                           sessions, temporal_env, faults_cleared,
                                                                           fresh_ids):
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 10_000)
    assert (await sandbox.put("/sandbox/faults", json=PARTNER_FAULTS)).status_code == 200
    answers = await asyncio.gather(*[withdraw(api, headers, 700) for _ in range(30)])
    accepted = [r.json()["id"] for r in answers if r.status_code == 201]
    refused = [r.json()["code"] for r in answers if r.status_code != 201]
    assert len(accepted) == 10_000 // 700 == 14, [r.text for r in answers]
    assert refused == ["INSUFFICIENT_BALANCE"] * 16
    # every accepted amount left `available` at once; some may already be paid by now
    available, withdrawing = balances(sessions, demo.promoter_id)
    assert available == 10_000 - 14 * 700 and withdrawing % 700 == 0 and withdrawing <= 14 * 700
    for wid in accepted:
        await wait_status(api, headers, wid, "SUCCESS", timeout=60)
    stats = (await sandbox.get("/sandbox/faults")).json()["stats"]
    assert stats.get("notification_duplicated") and stats.get("notification_bad_signature") and stats.get("error_500"), stats
    for wid in accepted:
        assert (await finished(temporal_env, wid)).status == WithdrawalStatus.SUCCESS

    bills = bills_of(sandbox_app, fresh_ids)
    assert sorted(b["out_bill_no"] for b in bills) == sorted(f"WD{w:012d}" for w in accepted)
    assert all(b["state"] == "SUCCESS" and b["transfer_amount"] == 700 for b in bills)
    assert balances(sessions, demo.promoter_id) == (200, 0)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)
                        .where(LedgerTransaction.kind == "withdrawal_paid")) == 14
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)
                        .where(LedgerTransaction.kind == "withdrawal_returned")) == 0
        assert ledger.balance(s, rules.CLEARING) == 200
        assert_books_balance(s)


def _forged_transfer_notice(creds, bill_no: str, state: str) -> tuple[dict, bytes]:
    resource = {"mchid": creds.mchid, "out_bill_no": bill_no, "transfer_bill_no": "1330" + "0" * 36,
                "state": state, "transfer_amount": 1_000, "openid": "oDEMOpromoter000000000000001"}
    encrypted = aes_gcm_encrypt(creds.apiv3_key, json.dumps(resource), "mch_payment")
    body = json.dumps({"id": secrets.token_hex(8), "event_type": "MCHTRANSFER.BILL.FINISHED",
                       "resource_type": "encrypt-resource", "summary": "商家转账单据终态通知",
                       "resource": {**encrypted, "original_type": "mch_payment"}})
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return platform_headers(impostor, creds.platform_public_key_id, body) | {"Content-Type": "application/json"}, \
        body.encode()


async def test_forged_and_repeated_notifications_change_nothing(api, sandbox, sandbox_app, demo, token, sessions,
                                                                temporal_env, faults_cleared):
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 3_000)
    await sandbox.put("/sandbox/faults", json=NEVER_CONFIRMS)
    wid = (await withdraw(api, headers, 1_000)).json()["id"]
    bill_no = (await wait_status(api, headers, wid, "WAIT_USER_CONFIRM"))["out_bill_no"]
    creds = sandbox_app.state.sandbox.credentials
    forged_headers, forged_body = _forged_transfer_notice(creds, bill_no, "SUCCESS")
    forged = await api.post("/webhooks/wechatpay", content=forged_body, headers=forged_headers)
    assert forged.status_code == 401, forged.text
    await asyncio.sleep(0.3)
    progress = await temporal_env.client.get_workflow_handle(workflow_id(wid)).query(WithdrawalWorkflow.progress)
    assert progress.status == WithdrawalStatus.WAIT_USER_CONFIRM
    assert (await api.get(f"/withdrawals/{wid}", headers=headers)).json()["status"] == "WAIT_USER_CONFIRM"

    await sandbox.put("/sandbox/faults", json={"notifications": {"event_types": ["MCHTRANSFER.*"],
                                                                  "duplicate_rate": 1.0}})
    await sandbox.post(f"/sandbox/transfers/{bill_no}/confirm")
    await wait_status(api, headers, wid, "SUCCESS")
    assert (await finished(temporal_env, wid)).status == WithdrawalStatus.SUCCESS
    # WeChat Pay re-delivers the same (genuine) notice after the workflow ended
    outbox = [n for n in sandbox_app.state.sandbox.store.all(OUTBOX)
              if n["event_type"] == "MCHTRANSFER.BILL.FINISHED" and bill_no in _decrypt(creds, n["body"])]
    assert outbox
    replay = await api.post("/webhooks/wechatpay", content=outbox[-1]["body"].encode(),
                            headers=sandbox_app.state.sandbox.notification_headers(outbox[-1]["body"]))
    assert replay.status_code == 204, replay.text
    assert balances(sessions, demo.promoter_id) == (2_000, 0)
    with sessions() as s:
        paid = s.scalars(select(LedgerTransaction.id).where(LedgerTransaction.kind == "withdrawal_paid")).all()
        assert len(paid) == 1
        assert s.scalar(select(func.count()).select_from(LedgerEntry)
                        .where(LedgerEntry.transaction_id == paid[0])) == 2
        assert_books_balance(s)


def _decrypt(creds, body: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    r = json.loads(body)["resource"]
    return AESGCM(creds.apiv3_key.encode()).decrypt(
        r["nonce"].encode(), base64.b64decode(r["ciphertext"]), r["associated_data"].encode()).decode()


@pytest.mark.parametrize("merchant_key", ["mch_id", "mchid"])
async def test_a_transfer_notice_names_the_merchant_either_way(api, sandbox, sandbox_app, demo, token, sessions,
                                                               temporal_env, faults_cleared, merchant_key):
    """商家转账回调通知: WeChat's merchant docs name the merchant `mch_id` (商户单号查询转账单,
    https://pay.weixin.qq.com/docs/merchant/apis/mch-trans/transfer-bill/get-transfer-bill-by-out-no.html),
    other sources `mchid` (https://wechatpay.js.org/webhook/v3/MCHTRANSFER.BILL.FINISHED). A genuine
    notice with either finishes the withdrawal at once, not at the next poll (10 min away);
    one for another merchant is refused."""
    headers = token(demo.promoter_user_id, "promoter")
    fund(sessions, demo.promoter_id, 3_000)
    # the sandbox's own notices are lost: only ours below can tell the workflow
    await sandbox.put("/sandbox/faults", json={"notifications": {"event_types": ["MCHTRANSFER.*"], "drop_rate": 1.0}})
    wid = (await withdraw(api, headers, 1_000)).json()["id"]
    bill_no = (await wait_status(api, headers, wid, "WAIT_USER_CONFIRM", "TRANSFERING", "SUCCESS"))["out_bill_no"]
    sb = sandbox_app.state.sandbox
    bill = sb.store.get(BILL, bill_no)
    for _ in range(50):
        if sb.store.get(BILL, bill_no)["state"] == "SUCCESS":
            break
        await asyncio.sleep(0.1)
    else:
        await sandbox.post(f"/sandbox/transfers/{bill_no}/confirm")

    def notice(mchid: str) -> str:
        resource = {merchant_key: mchid, "out_bill_no": bill_no, "transfer_bill_no": bill["transfer_bill_no"],
                    "state": "SUCCESS", "transfer_amount": 1_000, "openid": bill["openid"],
                    "create_time": bill["create_time"], "update_time": bill["create_time"]}
        encrypted = aes_gcm_encrypt(sb.credentials.apiv3_key, json.dumps(resource), "mch_payment")
        return json.dumps({"id": secrets.token_hex(8), "create_time": bill["create_time"],
                           "event_type": "MCHTRANSFER.BILL.FINISHED", "resource_type": "encrypt-resource",
                           "summary": "商家转账单据终态通知", "resource": {**encrypted, "original_type": "mch_payment"}})

    other = notice("1999999999")
    refused = await api.post("/webhooks/wechatpay", content=other.encode(), headers=sb.notification_headers(other))
    assert refused.status_code == 400 and refused.json()["code"] == "FAIL"
    genuine = notice(sb.credentials.mchid)
    accepted = await api.post("/webhooks/wechatpay", content=genuine.encode(), headers=sb.notification_headers(genuine))
    assert accepted.status_code == 204, accepted.text
    assert (await wait_status(api, headers, wid, "SUCCESS", timeout=10.0))["status"] == "SUCCESS"


async def test_the_payees_real_name_goes_to_wechat_encrypted_and_wechat_checks_it(
        api, token, sessions, temporal_env, sandbox, clean_db):
    """From 2,000 yuan the verified full name travels in the bill's `user_name`, RSA-OAEP
    encrypted with the platform public key (the sandbox decrypts it, as WeChat Pay does, and
    refuses it in clear); WeChat compares it with the account's real name."""
    promoter = await become_promoter(api, token, sessions, 503)
    pid, headers = promoter["promoter_id"], promoter["headers"]
    fund(sessions, pid, 1_000_000)
    with sessions() as s:
        openid = s.get(User, promoter["user_id"]).openid
    # same masked form (王**), another person: refused before any money moves
    other = await withdraw(api, headers, 250_000, real_name="王大明")
    assert (other.status_code, other.json()["code"]) == (422, "REAL_NAME_MISMATCH")

    # WeChat knows this account as 王小红: the bill fails, the money comes back
    await sandbox.put(f"/sandbox/transfers/real-names/{openid}", json={"name": "王小红"})
    wid = (await withdraw(api, headers, 250_000, key="name-1", real_name="王小明")).json()["id"]
    await wait_status(api, headers, wid, "FAILED")
    assert (await api.get(f"/withdrawals/{wid}", headers=headers)).json()["fail_reason"] == "NAME_NOT_CORRECT"
    assert balances(sessions, pid) == (1_000_000, 0)

    await sandbox.put(f"/sandbox/transfers/real-names/{openid}", json={"name": "王小明"})
    paid = (await withdraw(api, headers, 250_000, key="name-2", real_name="王小明")).json()["id"]
    await wait_status(api, headers, paid, "SUCCESS")
    assert balances(sessions, pid) == (750_000, 0)
    with sessions() as s:
        assert s.get(Withdrawal, paid).payee_name is None  # not kept once paid
        assert_books_balance(s)
