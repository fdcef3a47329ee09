"""`chuchuang dev` for real, as a subprocess: the worker killed with -9 mid-order comes back by
itself and the order completes; a waiting `chuchuang reconcile` in a "second terminal" is stopped
with Ctrl-C and leaves nothing behind (the embedded PostgreSQL keeps serving the stack); then
SIGINT to the stack's process group stops every process it started, PostgreSQL included."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psutil
import pytest

from tests.test_devstack import free_port, pg_tmp  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parent.parent
REFUND_WINDOW_SECONDS = 10
START_TIMEOUT = 150.0  # a loaded 2-core machine: initdb, Temporal, migrations, three Python children

pytestmark = pytest.mark.timeout(420)


class Output:
    """A process's output, read by a thread, searchable while it runs."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, process: subprocess.Popen[str] | None = None) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            if process is not None and process.poll() is not None:
                self._thread.join(timeout=5)
                found = re.search(pattern, self.text())
                if found:
                    return found
                raise AssertionError(f"exited ({process.returncode}) before {pattern!r}:\n{self.text()[-6000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout:.0f} s:\n{self.text()[-6000:]}")


def as_in_a_terminal() -> None:
    """In the child: Ctrl-C acts as in a terminal even when pytest runs in the background (where
    the shell makes SIGINT ignored, and an ignored signal stays ignored across exec). With
    start_new_session the child is in a process group of its own, as a terminal's job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def until(check, timeout: float, what: str, every: float = 0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, psutil.Error) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


async def no_activity_running(temporal_port: int, order_no: str) -> bool:
    from temporalio.client import Client

    from workflows.order import workflow_id

    client = await Client.connect(f"127.0.0.1:{temporal_port}")
    described = await client.get_workflow_handle(workflow_id(order_no)).describe()
    return not described.raw_description.pending_activities


def children_named(stack: psutil.Process, name: str) -> list[psutil.Process]:
    found = []
    for process in stack.children():
        try:
            if process.cmdline()[-2:] == ["cli", name]:
                found.append(process)
        except psutil.Error:
            continue
    return found


def postmaster(pgdata: Path) -> psutil.Process | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        return psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def family(process: psutil.Process | None) -> list[psutil.Process]:
    if process is None:
        return []
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_the_dev_stack_survives_a_killed_worker_and_stops_everything(pg_tmp: Path) -> None:
    data = pg_tmp / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "SANDBOX_URL",
                                                             "PUBLIC_BASE_URL")}
    ports = {name: free_port() for name in ("API_PORT", "SANDBOX_PORT", "TEMPORAL_PORT", "TEMPORAL_UI_PORT",
                                            "WORKER_METRICS_PORT")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(DATA_DIR=str(data), PYTHONUNBUFFERED="1", COLUMNS="400", PAYMENT_TIMEOUT="PT5M",
               AUTO_CONFIRM_AFTER="PT5M", REFUND_WINDOW=f"PT{REFUND_WINDOW_SECONDS}S",
               DEV_RESTART_BACKOFF="PT0.5S", SANDBOX_SETTLE_DELAY="1")
    api_url = f"http://127.0.0.1:{ports['API_PORT']}"
    sandbox_url = f"http://127.0.0.1:{ports['SANDBOX_PORT']}"

    stack = subprocess.Popen([sys.executable, "-m", "cli", "dev"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                             start_new_session=True, preexec_fn=as_in_a_terminal)
    out = Output(stack)
    seen: list[psutil.Process] = []  # every process of the stack we saw, checked at the end
    try:
        out.wait_for("Chuchuang dev stack is up", START_TIMEOUT, stack)
        stack_process = psutil.Process(stack.pid)
        server = postmaster(data / "pg")
        assert server is not None and alive(server)
        seen += family(stack_process) + family(server)
        http = httpx.Client(timeout=30)

        # a second terminal: demo data and tokens (a guest of the stack's PostgreSQL)
        seeded = subprocess.run([sys.executable, "-m", "cli", "seed-demo"], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=120)
        assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        tokens = dict(re.findall(r"export (BUYER|SUPPLIER)=(\S+)", seeded.stdout))
        window, sku = re.search(r"window #(\d+)", seeded.stdout), re.search(r"SKUs \[(\d+)", seeded.stdout)
        buyer = {"Authorization": f"Bearer {tokens['BUYER']}"}
        supplier = {"Authorization": f"Bearer {tokens['SUPPLIER']}"}
        assert postmaster(data / "pg").pid == server.pid  # the guest neither restarted nor stopped it

        # an order, paid, shipped, delivered and received: it waits out the refund window
        placed = http.post(f"{api_url}/orders", headers=buyer, json={
            "window_id": int(window.group(1)), "lines": [{"sku_id": int(sku.group(1)), "quantity": 1}],
            "address": {"receiver": "王小明", "phone": "13800138000", "province": "上海", "city": "上海",
                        "district": "浦东新区", "detail": "世纪大道 100 号"}})
        assert placed.status_code == 201, placed.text
        order_no = placed.json()["order_no"]

        def status() -> str:
            return http.get(f"{api_url}/orders/{order_no}", headers=buyer).json()["status"]

        def reaches(wanted: str, timeout: float = 60) -> None:
            until(lambda: status() == wanted, timeout, f"order {order_no} {wanted} (now {status()})")

        assert http.post(f"{sandbox_url}/sandbox/pay/{order_no}").status_code == 200
        reaches("PAID")
        shipped = http.post(f"{api_url}/orders/{order_no}/shipments", headers=supplier,
                            json={"carrier": "shunfeng", "waybill_no": "SF20261203001"})
        assert shipped.status_code == 200, shipped.text
        reaches("SHIPPED")
        until(lambda: http.post(f"{sandbox_url}/sandbox/logistics/advance", json={  # once tracking is subscribed
            "company": "shunfeng", "number": "SF20261203001", "state": "3"}).json()["delivered"], 60, "delivered")
        reaches("DELIVERED")
        received = http.post(f"{api_url}/orders/{order_no}/confirm-receipt", headers=buyer)
        assert received.status_code == 200, received.text
        reaches("RECEIVED")

        # kill -9 the worker while the order waits out its refund window, once the receipt's
        # messages are sent (an activity in flight on a killed worker is retried only after its
        # start-to-close timeout: Temporal's rule, not the stack's)
        until(lambda: asyncio.run(no_activity_running(ports["TEMPORAL_PORT"], order_no)), 60, "receipt activities done")
        # kill -9 the worker while the order waits: the stack starts another one
        [worker] = children_named(stack_process, "worker")
        worker.send_signal(signal.SIGKILL)
        out.wait_for(r"worker exited \(-9, SIGKILL\) after [\d.]+ s; restarting it in", 30, stack)
        out.wait_for(r"worker restarted \(pid \d+", 30, stack)
        [again] = until(lambda: children_named(stack_process, "worker"), 30, "a new worker")
        assert again.pid != worker.pid and stack.poll() is None
        seen += family(again)

        # a waiting command in a second terminal, stopped midway with Ctrl-C
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()  # its bill is not out until tomorrow
        waiting = subprocess.Popen([sys.executable, "-m", "cli", "reconcile", "--date", today], cwd=REPO, env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace", start_new_session=True,
                                   preexec_fn=as_in_a_terminal)
        said = Output(waiting)
        said.wait_for(r"reconciliation-\S+: waiting for .*\(may take ", 90, waiting)
        waiting_family = family(psutil.Process(waiting.pid))
        os.killpg(waiting.pid, signal.SIGINT)
        assert waiting.wait(timeout=30) == 130
        said.wait_for(r"stopped waiting for reconciliation-\S+ after \d+ s; .* carries on in Temporal", 10)
        assert not [p for p in waiting_family if alive(p)]
        assert postmaster(data / "pg").pid == server.pid and alive(server)  # the stack's, still serving it

        # the order the killed worker had in hand completes under the new one
        reaches("COMPLETED", timeout=REFUND_WINDOW_SECONDS + 90)
        assert stack.poll() is None

        # Ctrl-C in the stack's terminal: everything it started stops, PostgreSQL too
        seen += family(stack_process) + family(postmaster(data / "pg"))
        os.killpg(stack.pid, signal.SIGINT)
        assert stack.wait(timeout=60) == 0
        out.wait_for(r"stopped api \(pid \d+, [\d.]+ s\), worker .*sandbox .*temporal .*PostgreSQL \(pid \d+, [\d.]+ s\)", 10)
        left = [p for p in seen if alive(p)]
        assert not left, f"still running: {[(p.pid, p.name()) for p in left]}\n{out.text()[-3000:]}"
        assert postmaster(data / "pg") is None or not alive(postmaster(data / "pg"))
        for port in ports.values():
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait(timeout=30)
        for process in seen:
            if alive(process):
                process.kill()
        from db.embedded import stop_embedded_postgres

        stop_embedded_postgres(data / "pg")
