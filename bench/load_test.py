"""Real processes under load, each figure beside its yardstick in one run:

  1. orders: the API under uvicorn, the worker and the sandbox as separate processes (as
     `make dev` runs them), `--clients` concurrent buyers placing and paying orders: orders/s
     until every order is PAID and POST /orders latency p50/p95/p99 — against a bare FastAPI
     endpoint that starts a bare workflow of as many no-op activities, on its own worker process;
  2. scaling: the same load on 2 worker processes, orders/s against 1;
  3. flash sale: `--flash-buyers` buyers at once on `--flash-units` units: exactly that many sold,
     answer p99 and claims/s;
  4. worker memory: RSS of one worker process holding `--cached` order workflows (each waiting
     for its payment) in its cache, against the same worker idle.

    .venv/bin/python bench/load_test.py [--orders 300 --clients 50 --quick] [--parts orders,flash,memory]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import sessionmaker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.auth import issue_token  # noqa: E402
from cli.seed import seed_demo  # noqa: E402
from db.embedded import start_embedded_postgres  # noqa: E402
from db.flash_models import FlashSale  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Order, Sku, User  # noqa: E402
from integrations.temporal import ensure_search_attributes  # noqa: E402
from settings import Settings  # noqa: E402

ADDRESS = {"receiver": "王小明", "phone": "13800138000", "province": "上海", "city": "上海",
           "district": "浦东新区", "detail": "世纪大道 100 号"}
PAID_OR_LATER = ("PAID", "SHIPPED", "DELIVERED", "RECEIVED", "COMPLETED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


class Processes:
    def __init__(self, workdir: Path):
        self.workdir, self.running = workdir, []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        self.running.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.running = [(n, p) for n, p in self.running if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.running)):
            self.stop(proc)


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                await client.get(url, timeout=2)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def drive(n: int, clients: int, call) -> tuple[float, list[float]]:
    """`n` calls by `clients` concurrent clients; (seconds, each call's latency)."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def client_loop():
        for i in counter:
            began = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - began)

    start = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return time.perf_counter() - start, latencies


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


class Bench:
    def __init__(self, args, workdir: Path, db_url: str, temporal: str):
        self.args, self.workdir, self.db_url, self.temporal = args, workdir, db_url, temporal
        self.procs = Processes(workdir)
        self.api_port, self.sandbox_port = free_port(), free_port()
        self.engine = create_engine(db_url, pool_size=5)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.env = {**os.environ, "DATA_DIR": str(workdir), "DATABASE_URL": db_url, "TEMPORAL_ADDRESS": temporal,
                    "TASK_QUEUE": f"load-{uuid.uuid4().hex[:6]}", "API_PORT": str(self.api_port),
                    "SANDBOX_PORT": str(self.sandbox_port), "WORKER_METRICS_PORT": "0",
                    "JWT_SECRET": "load-test-secret-load-test-secret-0123456789",
                    "SANDBOX_SETTLE_DELAY": "1", "PYTHONUNBUFFERED": "1"}
        self.settings = Settings(_env_file=None, data_dir=workdir, database_url=db_url,
                                 jwt_secret=self.env["JWT_SECRET"])
        self.workers: list[subprocess.Popen] = []
        self.tokens: dict[tuple[int, str], dict[str, str]] = {}

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli", *args]

    async def start_stack(self) -> None:
        self.procs.start("sandbox", self.cli("sandbox"), self.env)
        await wait_http(f"http://127.0.0.1:{self.sandbox_port}/docs")
        self.procs.start("api", self.cli("api"), self.env)
        await wait_http(f"http://127.0.0.1:{self.api_port}/docs")
        await self.scale_workers(1)

    async def scale_workers(self, n: int) -> None:
        while len(self.workers) > n:
            self.procs.stop(self.workers.pop())
        while len(self.workers) < n:
            self.workers.append(self.procs.start(f"worker{len(self.workers)}", self.cli("worker"), self.env))
        await asyncio.sleep(3)  # workers connect and poll

    def seed(self, buyers: int) -> tuple:
        with self.sessions.begin() as s:
            demo = seed_demo(s)
            s.execute(update(Sku).values(stock=10**7))
            users = [User(role="buyer", openid=f"oLOAD{uuid.uuid4().hex[:23]}") for _ in range(buyers)]
            s.add_all(users)
            s.flush()
            return demo, [u.id for u in users]

    def token(self, user_id: int, role: str) -> dict[str, str]:
        if (user_id, role) not in self.tokens:
            with self.sessions.begin() as s:
                self.tokens[user_id, role] = {"Authorization": f"Bearer {issue_token(self.settings, s, user_id, role)}"}
        return self.tokens[user_id, role]

    def paid(self, numbers: set[str]) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count()).select_from(Order).where(
                Order.order_no.in_(numbers), Order.status.in_(PAID_OR_LATER))) or 0

    async def orders(self, n: int, demo, buyers: list[int]) -> tuple[float, list[float]]:
        numbers: set[str] = set()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.api_port}", timeout=60) as api, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.sandbox_port}", timeout=60) as sandbox:
            placed_latencies: list[float] = []

            async def place_and_pay(i: int) -> None:
                headers = {**self.token(buyers[i % len(buyers)], "buyer"), "Idempotency-Key": uuid.uuid4().hex}
                body = {"window_id": demo.window_id, "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}],
                        "address": ADDRESS}
                began = time.perf_counter()
                r = await api.post("/orders", headers=headers, json=body)
                placed_latencies.append(time.perf_counter() - began)
                while r.status_code == 504:  # placed, WeChat Pay order not ready yet: ask again
                    r = await api.post("/orders", headers=headers, json=body)
                r.raise_for_status()
                no = r.json()["order_no"]
                numbers.add(no)
                for _ in range(200):  # the WeChat Pay order may still be on its way (202)
                    if (await sandbox.post(f"/sandbox/pay/{no}")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)

            start = time.perf_counter()
            await drive(n, self.args.clients, place_and_pay)
            await until(lambda: self.paid(numbers) == n, 600, f"{n} orders paid")
            return time.perf_counter() - start, placed_latencies

    async def bare(self, n: int) -> tuple[float, list[float]]:
        port = free_port()
        env = {**self.env, "TASK_QUEUE": f"bare-{uuid.uuid4().hex[:6]}"}
        bare_api = self.procs.start("bare-api", [sys.executable, "bench/bare_stack.py", "api", str(port)], env)
        bare_worker = self.procs.start("bare-worker", [sys.executable, "bench/bare_stack.py", "worker"], env)
        await wait_http(f"http://127.0.0.1:{port}/docs")
        client = await Client.connect(self.temporal)
        ids: list[str] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as api:
            async def start_one(_: int) -> None:
                r = await api.post("/bare")
                r.raise_for_status()
                ids.append(r.json()["id"])

            start = time.perf_counter()
            _, latencies = await drive(n, self.args.clients, start_one)
            await asyncio.gather(*(client.get_workflow_handle(i).result() for i in ids))
            took = time.perf_counter() - start
        self.procs.stop(bare_api)
        self.procs.stop(bare_worker)
        return took, latencies

    async def flash(self, demo, buyers: list[int]) -> tuple[float, list[float], int]:
        units = self.args.flash_units
        now = datetime.now(UTC)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.api_port}", timeout=60) as api:
            r = await api.post("/flash-sales", headers=self.token(demo.supplier_user_id, "supplier"), json={
                "sku_id": demo.sku_ids[1], "price_fen": 100, "quantity": units, "per_buyer_limit": 1,
                "starts_at": (now - timedelta(seconds=1)).isoformat(),
                "ends_at": (now + timedelta(hours=1)).isoformat()})
            r.raise_for_status()
            sale_id = r.json()["id"]
            answers: list[int] = []

            async def claim(i: int) -> None:
                r = await api.post(f"/flash-sales/{sale_id}/orders", headers=self.token(buyers[i], "buyer"),
                                   json={"quantity": 1, "window_id": demo.window_id, "address": ADDRESS})
                answers.append(r.status_code)

            took, latencies = await drive(self.args.flash_buyers, self.args.flash_buyers, claim)
        with self.sessions() as s:
            sold = s.get(FlashSale, sale_id).sold
        assert answers.count(202) == units == sold, (answers.count(202), units, sold)
        assert set(answers) <= {202, 409}, set(answers)
        return took, latencies, sold

    async def memory(self, demo, buyers: list[int]) -> tuple[float, float]:
        await self.scale_workers(1)
        await asyncio.sleep(2)
        idle = rss_mib(self.workers[0].pid)
        n = self.args.cached
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.api_port}", timeout=60) as api:
            async def place(i: int) -> None:
                headers = {**self.token(buyers[i % len(buyers)], "buyer"), "Idempotency-Key": uuid.uuid4().hex}
                body = {"window_id": demo.window_id, "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}],
                        "address": ADDRESS}
                while (r := await api.post("/orders", headers=headers, json=body)).status_code == 504:
                    pass
                r.raise_for_status()

            await drive(n, self.args.clients, place)
        await asyncio.sleep(3)
        return idle, rss_mib(self.workers[0].pid)


def report(name: str, seconds: float, n: int, latencies: list[float]) -> float:
    rate = n / seconds
    print(f"{name:<34} {rate:8.1f}/s  p50 {pct(latencies, 50):7.1f} ms  p95 {pct(latencies, 95):7.1f} ms  "
          f"p99 {pct(latencies, 99):7.1f} ms  (n={n}, {seconds:.1f} s)")
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--flash-buyers", type=int, default=1000)
    parser.add_argument("--flash-units", type=int, default=100)
    parser.add_argument("--cached", type=int, default=1000)
    parser.add_argument("--parts", default="orders,flash,memory", help="which figures, comma separated")
    parser.add_argument("--quick", action="store_true", help="100 orders, 200 flash buyers on 20 units, 200 cached")
    args = parser.parse_args()
    if args.quick:
        args.orders, args.flash_buyers, args.flash_units, args.cached = 100, 200, 20, 200
    workdir = Path(tempfile.mkdtemp(prefix="chuchuang-load-"))
    db_url = start_embedded_postgres(workdir / "pg", "load")
    upgrade(db_url)
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=binary, data_converter=pydantic_data_converter,
                                                dev_server_extra_args=["--log-level", "error"])
    async with env:
        await ensure_search_attributes(env.client)
        bench = Bench(args, workdir, db_url, env.client.service_client.config.target_host)
        try:
            await bench.start_stack()
            demo, buyers = bench.seed(max(args.flash_buyers, args.clients))
            print(f"2-core machine; {args.clients} concurrent clients; API, sandbox and each worker are processes")
            if "orders" in args.parts:
                bare_s, bare_lat = await bench.bare(args.orders)
                bare_rate = report("bare endpoint + bare workflow", bare_s, args.orders, bare_lat)
                one_s, one_lat = await bench.orders(args.orders, demo, buyers)
                one_rate = report("orders placed and paid, 1 worker", one_s, args.orders, one_lat)
                print(f"ratio orders/bare: {one_rate / bare_rate:.2f}; POST /orders p99 / bare p99: "
                      f"{pct(one_lat, 99) / pct(bare_lat, 99):.1f}")
                await bench.scale_workers(2)
                two_s, two_lat = await bench.orders(args.orders, demo, buyers)
                two_rate = report("orders placed and paid, 2 workers", two_s, args.orders, two_lat)
                print(f"scaling 2 workers / 1 worker: {two_rate / one_rate:.2f}")
            if "flash" in args.parts:
                flash_s, flash_lat, sold = await bench.flash(demo, buyers)
                report(f"flash sale claims ({sold} sold exactly)", flash_s, args.flash_buyers, flash_lat)
            if "memory" in args.parts:
                idle, busy = await bench.memory(demo, buyers)
                print(f"worker RSS: before {idle:.0f} MiB, with {args.cached} more cached order workflows "
                      f"{busy:.0f} MiB (+{(busy - idle) / args.cached * 1024:.0f} KiB each)")
        finally:
            bench.procs.stop_all()
            bench.engine.dispose()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
