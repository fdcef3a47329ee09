"""Small helpers the order tests share."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sqlalchemy import func, select

from db.models import LedgerAccount
from integrations.http import make_client
from domain import ledger as rules
from domain.order_status import OrderStatus
from workflows.order import OrderWorkflow, workflow_id


def routed_client():
    """The sandbox's callback client in tests: notifications reach the in-process receivers."""
    return make_client(timeout=5.0)


ADDRESS = {"receiver": "王小明", "phone": "13800138000", "province": "上海", "city": "上海",
           "district": "浦东新区", "detail": "世纪大道 100 号"}


async def place(api, headers, demo, *, sku_index: int = 0, quantity: int = 2, **extra):
    body = {"window_id": demo.window_id, "lines": [{"sku_id": demo.sku_ids[sku_index], "quantity": quantity}],
            "address": ADDRESS} | extra
    return await api.post("/orders", json=body, headers=headers)


async def wait_status(client, order_no: str, status: OrderStatus, timeout: float = 15.0):
    handle = client.get_workflow_handle(workflow_id(order_no))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        progress = await handle.query(OrderWorkflow.progress)
        if progress is not None and progress.status == status:
            return progress
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"order {order_no} stuck at {progress.status if progress else None}, wanted {status}")
        await asyncio.sleep(0.05)


def assert_books_balance(session) -> None:
    """Every transaction balances, every chain verifies, and what all parties are owed equals
    what was collected (payments − refunds), through WeChat Pay and the Channels shop."""
    from activities.ledger import verify

    assert verify(session) == []
    owed = session.scalar(select(func.coalesce(func.sum(LedgerAccount.balance_fen), 0))
                          .where(LedgerAccount.normal_side == "credit"))
    collected = session.scalar(select(func.coalesce(func.sum(LedgerAccount.balance_fen), 0))
                               .where(LedgerAccount.code.in_(rules.DEBIT_ACCOUNTS)))
    assert owed == collected


async def run_to_end(env, order_no: str):
    """Let Temporal's test server skip time until the order's workflow finishes."""
    from domain.orders import OrderProgress

    return await result_skipping_time(env, workflow_id(order_no), OrderProgress)


async def result_skipping_time(env, wf_id: str, result_type, budget: float = 120.0):
    """A workflow's result with time skipped. The test server ends a result long poll that
    outlasts its timeout with no event (the SDK then says "No completion event found" or the
    RPC times out) where a real server would hand back a page token: ask again."""
    from temporalio.service import RPCError

    handle = env.client.get_workflow_handle(wf_id, result_type=result_type)
    deadline = asyncio.get_running_loop().time() + budget
    seen = -1
    while True:
        try:
            async with env.time_skipping_unlocked():
                return await handle.result()
        except (RuntimeError, RPCError) as err:
            if "No completion event found" not in str(err) and "Timeout expired" not in str(err):
                raise
            seen = await _release_leaked_time_lock(env, handle, seen)
            if asyncio.get_running_loop().time() > deadline:
                described = await handle.describe()
                pending = [(a.activity_type, a.attempt, a.last_failure.message if a.last_failure else None)
                           for a in described.raw_description.pending_activities]
                try:
                    state = await handle.query("progress")
                except Exception as query_err:  # noqa: BLE001
                    state = query_err
                raise AssertionError(f"{wf_id} did not finish: {state}, pending activities "
                                     f"{pending}, history length {described.raw_description.workflow_execution_info.history_length}") from err


async def _release_leaked_time_lock(env, handle, seen: int) -> int:
    """The test server sometimes keeps a time-skipping lock an earlier workflow took (see
    end_workflows) and then never skips again: a workflow with nothing in flight sits on a
    timer through a whole unlocked result poll. Give that lock back (one unlock; the server
    tolerates one too many). Returns the history length seen, for the next poll's check."""
    from temporalio.api.testservice.v1 import UnlockTimeSkippingRequest
    from temporalio.client import WorkflowExecutionStatus

    described = await handle.describe()
    raw = described.raw_description
    length = raw.workflow_execution_info.history_length
    idle = (described.status == WorkflowExecutionStatus.RUNNING and not raw.pending_activities
            and not raw.pending_children and not raw.HasField("pending_workflow_task"))
    if idle and length == seen and await _waits_on_a_timer(handle):
        print(f"{handle.id}: the test server held a leaked time-skipping lock; released")  # noqa: T201
        await env.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    return length


async def _waits_on_a_timer(handle) -> bool:
    started, ended = set(), set()
    async for event in handle.fetch_history_events():
        if event.HasField("timer_started_event_attributes"):
            started.add(event.timer_started_event_attributes.timer_id)
        elif event.HasField("timer_fired_event_attributes"):
            ended.add(event.timer_fired_event_attributes.timer_id)
        elif event.HasField("timer_canceled_event_attributes"):
            ended.add(event.timer_canceled_event_attributes.timer_id)
    return bool(started - ended)


async def end_workflows(client, wf_ids, why: str = "test finished") -> None:
    """Terminate workflows a test leaves running (skipped time is shared by the whole module and
    would wake them in a later test). Each is first let go quiet: the test server leaks the
    time-skipping lock of an activity or workflow task that is in flight when its workflow is
    terminated, and with that lock held no timer fires again on that server."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    for wf_id in dict.fromkeys(wf_ids):
        handle = client.get_workflow_handle(wf_id)
        deadline = asyncio.get_running_loop().time() + 30   # a loaded 2-core machine is slow
        try:
            while True:
                described = await handle.describe()
                if described.status != WorkflowExecutionStatus.RUNNING:
                    break
                raw = described.raw_description
                busy = raw.pending_activities or raw.HasField("pending_workflow_task")
                if not busy or asyncio.get_running_loop().time() > deadline:
                    await handle.terminate(why)
                    break
                await asyncio.sleep(0.02)
        except RPCError:
            pass  # never started, or ended meanwhile


HISTORIES = Path(__file__).parent / "histories"
# The tests' master key: payload keys derive from it, so histories recorded by the tests (their
# payloads encrypted) replay in tests/test_replay.py with the same converter.
TEST_MASTER_KEY = "test-master-key-test-master-key-0123456789abcdef"


def replay_converter():
    """The data converter the tests' Temporal environment and the replay tests use."""
    from integrations.temporal import data_converter
    from settings import Settings

    return data_converter(Settings(_env_file=None, master_key=TEST_MASTER_KEY))


async def keep_run_history(env, wf_id: str, run_id: str | None, name: str) -> None:
    """With CHUCHUANG_RECORD_HISTORIES=1, save a workflow run's history for the replay tests."""
    if os.environ.get("CHUCHUANG_RECORD_HISTORIES") != "1":
        return
    history = await env.client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json())


async def keep_history(env, order_no: str, name: str) -> None:
    await keep_run_history(env, workflow_id(order_no), None, name)


async def pay(sandbox, order_no: str, **params) -> dict:
    paid = await sandbox.post(f"/sandbox/pay/{order_no}", params=params)
    assert paid.status_code == 200, paid.text
    return paid.json()


async def ship_and_deliver(api, sandbox, client, headers, order_no: str, waybill_no: str,
                           carrier: str = "shunfeng") -> None:
    shipped = await api.post(f"/orders/{order_no}/shipments", headers=headers,
                             json={"carrier": carrier, "waybill_no": waybill_no})
    assert shipped.status_code == 200, shipped.text
    await wait_status(client, order_no, OrderStatus.SHIPPED)
    pushed = await sandbox.post("/sandbox/logistics/advance", json={"company": carrier, "number": waybill_no, "state": "3"})
    assert pushed.json()["delivered"] is True, pushed.text
    await wait_status(client, order_no, OrderStatus.DELIVERED)


def make_user(sessions, role: str, name: str) -> int:
    from db.models import User

    with sessions.begin() as s:
        user = User(role=role, username=name, display_name=name)
        s.add(user)
        s.flush()
        return user.id


async def wait_refund(client, refund_no: str, status, timeout: float = 15.0):
    from workflows.refund import RefundWorkflow
    from workflows.refund import workflow_id as refund_workflow_id

    handle = client.get_workflow_handle(refund_workflow_id(refund_no))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            progress = await handle.query(RefundWorkflow.progress)
        except Exception:  # noqa: BLE001 - not started yet
            progress = None
        if progress is not None and progress.status == status:
            return progress
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"refund {refund_no} stuck at {progress.status if progress else None}, wanted {status}")
        await asyncio.sleep(0.05)


async def return_one_unit(api, client, buyer, supplier, order_no: str, line_id: int, waybill_no: str) -> str:
    """A quality return of one unit of a line, shipped back and received: returns the refund
    number once it is REFUNDED."""
    from domain.refunds import RefundStatus

    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer,
                           json={"kind": "quality_return", "lines": [{"line_id": line_id, "quantity": 1}],
                                 "reason": "破损"})
    assert asked.status_code == 201, asked.text
    refund_no = asked.json()["refund_no"]
    await wait_refund(client, refund_no, RefundStatus.AWAITING_RETURN)
    await api.post(f"/refunds/{refund_no}/return-parcel", headers=buyer,
                   json={"carrier": "yuantong", "waybill_no": waybill_no})
    await wait_refund(client, refund_no, RefundStatus.RETURN_SHIPPED)
    await api.post(f"/refunds/{refund_no}/confirm-return", headers=supplier)
    await wait_refund(client, refund_no, RefundStatus.REFUNDED)
    return refund_no
