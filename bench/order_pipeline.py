"""Orders/s of the full order pipeline (API → OrderWorkflow → PostgreSQL, WeChat Pay sandbox,
logistics sandbox, every webhook) against a bare workflow running the same number of no-op
activities, both on one Temporal dev server in one run. Prints the ratio.

    make bench            # or: .venv/bin/python bench/order_pipeline.py --orders 200 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import create_app as create_api  # noqa: E402
from api.auth import issue_token  # noqa: E402
from db.embedded import start_embedded_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.catalog_models import Notification  # noqa: E402
from db.models import Order, Sku  # noqa: E402
from db.session import get_engine  # noqa: E402
from domain.order_status import OrderStatus  # noqa: E402
from integrations.http import make_client, route_to_app  # noqa: E402
from sandbox.app import create_app as create_sandbox  # noqa: E402
from sandbox.credentials import load_or_create  # noqa: E402
from cli.seed import seed_demo  # noqa: E402
from settings import Settings  # noqa: E402
from integrations.temporal import SEARCH_ATTRIBUTES, ensure_search_attributes  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.messages import MessageDrainWorkflow  # noqa: E402
from workflows.order import OrderWorkflow, workflow_id  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_workflow import BareWorkflow, noop  # noqa: E402

# place_order, create_payment, verify_payment, record_payment, record_shipment, subscribe_tracking,
# record_tracking, mark_received, complete_order: checked against an order's history each run
ACTIVITIES_PER_ORDER = 9
ADDRESS = {"receiver": "王小明", "phone": "13800138000", "province": "上海", "city": "上海",
           "detail": "世纪大道 100 号"}


async def one_order(api: httpx.AsyncClient, sandbox: httpx.AsyncClient, client, demo, buyer, supplier, i: int):
    r = await api.post("/orders", headers=buyer, json={
        "window_id": demo.window_id, "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}], "address": ADDRESS})
    r.raise_for_status()
    no = r.json()["order_no"]
    await sandbox.post(f"/sandbox/pay/{no}")
    handle = client.get_workflow_handle(workflow_id(no))
    while (await handle.query(OrderWorkflow.progress)).status != OrderStatus.PAID:
        await asyncio.sleep(0.05)
    waybill = f"SF{i:010d}"
    (await api.post(f"/orders/{no}/shipments", headers=supplier,
                    json={"carrier": "shunfeng", "waybill_no": waybill})).raise_for_status()
    while (await handle.query(OrderWorkflow.progress)).status != OrderStatus.SHIPPED:
        await asyncio.sleep(0.05)
    await sandbox.post("/sandbox/logistics/advance", json={"company": "shunfeng", "number": waybill, "state": "3"})
    result = await handle.result()
    assert result["status"] == "COMPLETED", result


async def run_pipeline(env, settings, sessions, n: int, concurrency: int) -> float:
    sandbox_app = create_sandbox(load_or_create(settings.sandbox_dir), notify_retry_scale=0.001,
                                 callback_client=lambda: make_client(timeout=5.0))
    route_to_app(settings.resolved_sandbox_url, sandbox_app)
    api_app = create_api(settings, sessions=sessions, temporal_client=env.client)
    route_to_app(settings.resolved_public_base_url, api_app)
    with sessions.begin() as s:
        demo = seed_demo(s)
        s.execute(update(Sku).values(stock=10**6))
        buyer = {"Authorization": f"Bearer {issue_token(settings, s, demo.buyer_user_id, 'buyer')}"}
        supplier = {"Authorization": f"Bearer {issue_token(settings, s, demo.supplier_user_id, 'supplier')}"}
    gate = asyncio.Semaphore(concurrency)
    with ThreadPoolExecutor(max_workers=32) as executor:
        async with build_worker(env.client, settings, executor, sessions=sessions), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://api.bench") as api, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox_app), base_url="http://sandbox.bench") as sb:
            async def guarded(i):
                async with gate:
                    await one_order(api, sb, env.client, demo, buyer, supplier, i)

            (await sb.post("/sandbox/messages/subscriptions", json={  # the buyer accepts order messages
                "openid": demo.buyer_openid, "template_id": settings.message_template_order_status,
                "count": 5 * n})).raise_for_status()
            # the outbox's listener sends the buyers' subscribe messages, as `messages-drain` runs it
            sender = await env.client.start_workflow(MessageDrainWorkflow.run, 3600, id=f"messages-{uuid.uuid4().hex[:6]}",
                                                     task_queue=settings.task_queue)
            start = time.perf_counter()
            await asyncio.gather(*(guarded(i) for i in range(n)))
            elapsed = time.perf_counter() - start
            with sessions() as s:
                first = s.scalar(select(Order.order_no).order_by(Order.created_at).limit(1))
                sent = s.scalar(select(func.count()).select_from(Notification).where(
                    Notification.kind.like("order_%"), Notification.delivery_status == "sent"))
            await sender.terminate("benchmark over")
    history = await env.client.get_workflow_handle(workflow_id(first)).fetch_history()
    ran = sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))
    print(f"subscribe messages sent while orders ran: {sent} ({sent / n:.1f} per order)")
    if ran != ACTIVITIES_PER_ORDER:
        raise SystemExit(f"an order ran {ran} activities, the bare workflow {ACTIVITIES_PER_ORDER}: "
                         "set ACTIVITIES_PER_ORDER to compare like with like")
    return elapsed


async def run_bare(env, n: int, concurrency: int) -> float:
    queue = f"bare-{uuid.uuid4().hex[:6]}"
    gate = asyncio.Semaphore(concurrency)
    with ThreadPoolExecutor(max_workers=32) as executor:
        async with Worker(env.client, task_queue=queue, workflows=[BareWorkflow], activities=[noop],
                          activity_executor=executor, max_concurrent_activities=32):
            async def one(i):
                async with gate:
                    await env.client.execute_workflow(BareWorkflow.run, ACTIVITIES_PER_ORDER,
                                                      id=f"bare-{queue}-{i}", task_queue=queue)

            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chuchuang-bench-"))
    url = start_embedded_postgres(workdir / "pg", "bench")
    upgrade(url)
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal, data_converter=pydantic_data_converter,
        dev_server_extra_args=["--log-level", "error"])
    async with env:
        await ensure_search_attributes(env.client)
        settings = Settings(_env_file=None, data_dir=workdir, database_url=url, sandbox_url="http://sandbox.bench",
                            public_base_url="http://api.bench", task_queue=f"bench-{uuid.uuid4().hex[:6]}",
                            jwt_secret="bench-secret-bench-secret-bench-secret-0123",
                            auto_confirm_after=timedelta(seconds=0), refund_window=timedelta(seconds=0))
        sessions = sessionmaker(get_engine(settings), expire_on_commit=False)
        bare = await run_bare(env, args.orders, args.concurrency)
        pipeline = await run_pipeline(env, settings, sessions, args.orders, args.concurrency)
    n = args.orders
    print(f"orders={n} concurrency={args.concurrency} activities/order={ACTIVITIES_PER_ORDER} "
          f"search attributes={len(SEARCH_ATTRIBUTES)}")
    print(f"bare workflow      : {n / bare:8.1f} workflows/s  ({bare:.2f} s)")
    print(f"full order pipeline: {n / pipeline:8.1f} orders/s     ({pipeline:.2f} s)")
    print(f"ratio pipeline/bare: {bare / pipeline:.2f}  (1.00 = as fast as bare Temporal)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
