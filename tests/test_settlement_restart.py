"""Settlement runs survive their worker being stopped mid-run: a worker of the test's own runs
the settlement (its own task queue), is shut down while activities are in flight, a new
worker takes over, and the run completes as if nothing happened. Under injected WeChat Pay
profit-sharing faults: each split out_order_no is made once at the sandbox and booked once,
bills and statements equal the ledger, the books balance."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import func, select, text
from temporalio.worker import Worker

from activities.ledger import balance
from db.models import LedgerTransaction
from db.settlement_models import CommissionStatement, SupplierBill, SupplierSettlement
from db.settlement_models import SupplierSettlementLine
from domain import ledger as rules
from domain.settlement import (
    CommissionRunInput,
    CommissionRunProgress,
    SupplierRunInput,
    SupplierRunProgress,
    run_workflow_id,
    split_out_order_no,
    unfreeze_out_order_no,
)
from worker import WORKFLOWS, activities
from workflows.settlement import CommissionSettlementWorkflow, SupplierSettlementWorkflow
from tests.helpers import assert_books_balance, result_skipping_time
from tests.test_settlement import (
    PROFIT_SHARING_FAULTS,
    TZ,
    complete_order,
    earn,
    give_demo_supplier_a_wechatpay_account,
    make_promoters,
    reverse,
    seed_many_promoters,
    split_orders_at_wechat,
    this_month,
    today,
    transaction_ids,
)


class OwnWorker:
    """A worker of the test's own on its own task queue, that the test can stop at any moment
    (shut down with no grace period: activities in flight are cancelled and their results
    lost, as when the process dies) and replace by a fresh one."""

    def __init__(self, env, settings, sessions):
        self.env, self.sessions = env, sessions
        self.settings = settings.model_copy(update={"task_queue": f"restart-{uuid.uuid4().hex[:8]}"})
        self.generation = 0
        self._worker: Worker | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def task_queue(self) -> str:
        return self.settings.task_queue

    def start(self) -> None:
        assert self._worker is None
        self.generation += 1
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"worker{self.generation}")
        # what build_worker builds, without a workflow cache: no sticky task queue, so no task
        # waits on the stopped worker's sticky queue, and every workflow task is replayed from
        # its history, as by a freshly started process
        self._worker = Worker(self.env.client, task_queue=self.task_queue, workflows=WORKFLOWS,
                              activities=activities(self.settings, sessions=self.sessions),
                              activity_executor=self._executor, max_concurrent_activities=16,
                              max_cached_workflows=0)
        self._task = asyncio.create_task(self._worker.run())

    async def stop(self) -> None:
        worker, task, executor = self._worker, self._task, self._executor
        self._worker = self._task = self._executor = None
        await worker.shutdown()
        await task
        executor.shutdown(wait=True)


async def pending_activity_types(client, wf_ids: list[str]) -> list[str]:
    out = []
    for wf_id in wf_ids:
        try:
            described = await client.get_workflow_handle(wf_id).describe()
        except Exception:  # noqa: BLE001 - a child not started yet
            continue
        out += [a.activity_type.name for a in described.raw_description.pending_activities]
    return out


async def let_payouts_finish(env, month: str) -> None:
    """A final commission run starts the month's automatic payouts (when the code has them):
    let that run end on our worker before the worker goes."""
    try:
        from workflows.payouts import payouts_workflow_id
    except ImportError:
        return
    from temporalio.service import RPCError

    try:
        await env.client.get_workflow_handle(payouts_workflow_id(month)).describe()
    except RPCError:
        return   # none started
    await result_skipping_time(env, payouts_workflow_id(month), None)


async def test_supplier_settlement_survives_a_worker_restarted_mid_run_under_profit_sharing_faults(
        api, sandbox, sandbox_app, demo, token, temporal_env, sessions, settings):
    give_demo_supplier_a_wechatpay_account(sessions, demo)
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    orders = [await complete_order(api, sandbox, temporal_env, buyer, supplier, demo, f"SF760000000{i}",
                                   quantity=i % 3 + 1, sku_index=i % 2) for i in range(5)]
    txns = transaction_ids(sessions, orders)
    day, wf_id = today(), run_workflow_id("supplier", today())
    workers = OwnWorker(temporal_env, settings, sessions)
    assert (await sandbox.put("/sandbox/faults", json=PROFIT_SHARING_FAULTS)).status_code == 200
    try:
        workers.start()
        await temporal_env.client.start_workflow(
            SupplierSettlementWorkflow.run, SupplierRunInput(period=day, timezone=TZ, max_ratio_bps=10_000,
                                                             parallel_orders=5),
            id=wf_id, task_queue=workers.task_queue)
        # the first split request is processed at WeChat Pay but its answer is held (the timeout
        # fault): the worker goes down right then, with that call (and others) in flight
        deadline = asyncio.get_running_loop().time() + 30
        while not split_orders_at_wechat(sandbox_app, set(txns.values())):
            assert asyncio.get_running_loop().time() < deadline, "no split reached WeChat Pay"
            await asyncio.sleep(0.01)
        in_flight = await pending_activity_types(temporal_env.client, [wf_id])
        await workers.stop()
        assert "split_order" in in_flight, in_flight
        with sessions() as s:
            done_before = s.scalar(select(func.count()).select_from(SupplierSettlement)
                                   .where(SupplierSettlement.status == "DONE"))
        assert done_before < len(orders)   # the run was cut off part-way
        workers.start()                    # a new worker (process) picks the run up
        result = await result_skipping_time(temporal_env, wf_id, SupplierRunProgress, budget=200)
        stats = (await sandbox.get("/sandbox/faults")).json()["stats"]
    finally:
        await sandbox.delete("/sandbox/faults")
        if workers._worker is not None:
            await workers.stop()
    assert stats.get("timeout") == 1 and stats.get("error_500"), stats
    assert (result.status, result.orders_settled, result.failed_orders, result.outstanding_fen) == (
        "done", len(orders), [], 0)

    # at WeChat Pay: exactly one split and one unfreeze per payment, for the planned amounts
    at_wechat = split_orders_at_wechat(sandbox_app, set(txns.values()))
    assert sorted(at_wechat) == sorted(f(no) for no in orders for f in (split_out_order_no, unfreeze_out_order_no))
    with sessions() as s:
        for no in orders:
            row = s.get(SupplierSettlement, no)
            (line,) = s.scalars(select(SupplierSettlementLine).where(SupplierSettlementLine.order_no == no)).all()
            split, unfreeze = at_wechat[split_out_order_no(no)], at_wechat[unfreeze_out_order_no(no)]
            assert row.status == "DONE" and split["state"] == "FINISHED"
            assert [(r["amount"], r["result"]) for r in split["receivers"]] == [(line.share_fen, "SUCCESS")]
            assert row.wechat_order_id == split["order_id"] and row.unfreeze_order_id == unfreeze["order_id"]
            assert unfreeze["receivers"][0]["amount"] == row.paid_fen - row.split_fen
            # booked once per (order, supplier)
            assert s.scalars(select(LedgerTransaction.idempotency_key).where(
                LedgerTransaction.kind == "supplier_split", LedgerTransaction.order_no == no)).all() == [
                f"settlement:supplier:{no}:{demo.supplier_id}"]
        # the bill equals the ledger: everything split, nothing left owed to the supplier
        bill = s.get(SupplierBill, (datetime.fromisoformat(day).date(), demo.supplier_id))
        assert (bill.orders, bill.outstanding_fen, bill.split_fen) == (len(orders), 0, bill.net_fen)
        booked = -s.scalar(text(
            "SELECT COALESCE(SUM(e.amount_fen), 0) FROM ledger_entries e JOIN ledger_transactions t"
            " ON t.id = e.transaction_id WHERE t.kind = 'supplier_split' AND e.amount_fen < 0"))
        assert bill.split_fen == booked == result.split_fen
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == 0
        assert_books_balance(s)


async def test_commission_settlement_survives_a_worker_restarted_mid_run(
        api, temporal_env, sessions, settings, engine):
    """A month of orders, refunds and reversals over 200 promoters, built in 100 batches of 2;
    the worker is stopped once some batches are done and others in flight."""
    earners = make_promoters(sessions, 8)
    expected: dict[int, tuple[int, int]] = {}   # promoter → (released, reversed)
    for n, (pid, _) in enumerate(earners):
        released = reversed_ = 0
        for k in range(n % 3 + 1):
            amount = 1_000 + 137 * n + k
            earn(sessions, pid, amount, f"restart:{pid}:{k}")
            released += amount
        if n % 2:
            reverse(sessions, pid, 300 + n, f"restart:{pid}:refund")   # a refund after release
            reversed_ += 300 + n
        if n == 7:
            reverse(sessions, pid, released + 50, f"restart:{pid}:refund2")   # more than earned: carried negative
            reversed_ += released + 50
        expected[pid] = (released, reversed_)
    seed_many_promoters(engine, 192)
    month = this_month()
    wf_id = run_workflow_id("commission", month)
    workers = OwnWorker(temporal_env, settings, sessions)
    handle = temporal_env.client.get_workflow_handle(wf_id)
    try:
        workers.start()
        await temporal_env.client.start_workflow(
            CommissionSettlementWorkflow.run, CommissionRunInput(period=month, timezone=TZ, batch_size=2,
                                                                 batches_per_child=5, parallel_children=2,
                                                                 review_above_fen=10**9),
            id=wf_id, task_queue=workers.task_queue)
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            try:
                progress = await handle.query(CommissionSettlementWorkflow.progress)
            except Exception:  # noqa: BLE001 - not started yet
                progress = None
            if progress is not None and progress.batches_done >= 10:
                break
            assert asyncio.get_running_loop().time() < deadline, progress
            await asyncio.sleep(0.005)
        await workers.stop()
        with sessions() as s:
            made_before = s.scalar(select(func.count()).select_from(CommissionStatement)
                                   .where(CommissionStatement.month == month))
        # (a query needs a worker: what the run showed just before its worker went)
        assert progress.batches_done < progress.batches_total == 100 and made_before < 200, (progress, made_before)
        workers.start()
        result = await result_skipping_time(temporal_env, wf_id, CommissionRunProgress, budget=200)
        await let_payouts_finish(temporal_env, month)
    finally:
        if workers._worker is not None:
            await workers.stop()
    assert (result.status, result.batches_total, result.batches_done) == ("final", 100, 100)
    assert result.totals.statements == 200

    with sessions() as s:
        statements = {st.promoter_id: st for st in s.scalars(
            select(CommissionStatement).where(CommissionStatement.month == month))}
        assert len(statements) == 200   # one per promoter, none twice (also unique by constraint)
        for pid, st in statements.items():   # every statement closes at the ledger's balance
            assert st.closing_fen == balance(s, rules.promoter_available(pid))
            assert st.closing_fen == st.opening_fen + st.released_fen - st.reversed_fen - st.withdrawn_fen + st.other_fen
        for pid, (released, reversed_) in expected.items():
            st = statements[pid]
            assert (st.released_fen, st.reversed_fen, st.opening_fen) == (released, reversed_, 0)
            assert st.closing_fen == released - reversed_   # negative for one of them: carried into next month
        for field in ("opening_fen", "released_fen", "reversed_fen", "withdrawn_fen", "other_fen", "closing_fen"):
            assert getattr(result.totals, field) == sum(getattr(st, field) for st in statements.values()), field
        ledger_total = s.scalar(text("SELECT SUM(balance_fen) FROM ledger_accounts WHERE code LIKE :p"),
                                {"p": "promoter:%:available"})
        assert result.totals.closing_fen == ledger_total
        assert_books_balance(s)
